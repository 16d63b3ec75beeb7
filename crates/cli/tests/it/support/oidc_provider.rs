//! A real OpenID Connect provider for the tests: the npm package `oidc-provider`, run
//! with Node from `oidc_provider.mjs` on 127.0.0.1 (plain HTTP, loopback only). The
//! package is installed outside the repository by `scripts/test.sh`, under
//! `$HOME/.cache/portcullis/oidc-provider` (or `$PORTCULLIS_OIDC_PROVIDER_DIR`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use portcullis_testkit::program;

/// The package version `scripts/test.sh` installs.
pub(crate) const PACKAGE: &str = "oidc-provider@8.8.1";
/// The broker's client secret at the provider.
pub(crate) const CLIENT_SECRET: &str = "portcullis-test-secret-0123456789abcdef";

/// Where the package is installed (an npm prefix).
fn install_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_OIDC_PROVIDER_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set");
    PathBuf::from(home).join(".cache/portcullis/oidc-provider")
}

/// A running provider, stopped on drop.
pub(crate) struct OidcProvider {
    /// Its issuer URL, `http://127.0.0.1:<port>`.
    pub(crate) issuer: String,
    child: Child,
}

impl OidcProvider {
    /// Starts the provider on `port` with the broker's `redirect_uri` and `users`
    /// (`{"alice": {"groups": ["vpn-users"]}}`).
    pub(crate) fn start(port: u16, redirect_uri: &str, users: &serde_json::Value) -> Self {
        let dir = install_dir();
        let module = dir.join("node_modules/oidc-provider/lib/index.js");
        assert!(
            module.is_file(),
            "the npm package oidc-provider is missing ({} does not exist): install it with \
             `npm install --prefix {} {PACKAGE}` (bash scripts/test.sh does)",
            module.display(),
            dir.display()
        );
        let version = PACKAGE.trim_start_matches("oidc-provider@");
        let manifest = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
            .unwrap_or_default();
        assert!(
            manifest.contains(&format!("\"version\": \"{version}\"")),
            "{} holds another version of oidc-provider than {PACKAGE}: install it with \
             `npm install --prefix {} {PACKAGE}`",
            dir.display(),
            dir.display()
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/oidc_provider.mjs");
        let mut child = Command::new(program("node", "nodejs"))
            .arg(script)
            .env("OIDC_PROVIDER_DIR", &dir)
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("USERS", users.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready, wait) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("ready ") {
                    let _ = ready.send(issuer.to_owned());
                }
            }
        });
        let issuer = wait
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("oidc-provider did not start on port {port}"));
        Self { issuer, child }
    }

    /// Stops the provider now.
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
