//! Finding the programs tests run.

use std::path::PathBuf;

/// The full path of program `name` on PATH or in the usual sbin directories; panics with
/// the Debian package to install when it is missing (`bash scripts/test.sh` installs every
/// package the tests need).
pub fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing: install the Debian package {package} \
                 (bash scripts/test.sh installs it)"
            )
        })
}
