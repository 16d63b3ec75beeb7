//! The built-in launcher scripts under node: their syntax (`node --check`), and what they
//! ask of the launcher when run against a recording stand-in of its `runtime` module
//! (`tests/launcher_mock/runtime.js`), with params built from the broker's own types.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use portcullis_broker::model::Protocol;
use portcullis_broker::proto::TicketId;
use portcullis_broker::scripts::{
    LaunchParams, Os, RdpParams, Route, SecretString, ServiceParams, SshParams, TcpParams,
    TunnelParams, TunnelProtocol, VncParams, builtin_script, script_file_name,
};
use serde_json::{Value, json};
use tempfile::TempDir;

const MOCK_RUNTIME: &str = include_str!("launcher_mock/runtime.js");
const TICKET: &str = "TunnelTicket0123456789abcdefghijklmnopqrstuvwxyz";
const PASSWORD: &str = "Pa55-word!";
/// The local endpoint the mock's `startTunnel` answers.
const LOCAL: &str = "127.0.0.1:50000";

/// Every program the happy paths need, on every OS.
const ALL_PROGRAMS: &[&str] = &[
    "xfreerdp3",
    "ssh",
    "x-terminal-emulator",
    "vncviewer",
    "osascript",
    "open",
    "C:\\Windows\\System32\\mstsc.exe",
    "C:\\Windows\\System32\\cmdkey.exe",
    "C:\\Windows\\System32\\OpenSSH\\ssh.exe",
    "C:\\Program Files\\TigerVNC\\vncviewer.exe",
];

/// Runs node, failing with an install hint if it is missing.
fn node(args: &[&str], dir: &Path, env: &[(&str, String)]) -> Output {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        if Command::new("node").arg("--version").output().is_err() {
            panic!(
                "these tests run the launcher scripts with node (v18 or later), which is not \
                 installed: install it (Debian: `apt-get install nodejs`) and run them again"
            );
        }
    });
    Command::new("node")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .unwrap()
}

/// A directory with the mock `runtime` package, where scripts run as ES modules.
struct Sandbox(TempDir);

/// What a script did: the launcher calls it made, and the error it threw.
#[derive(Debug)]
struct Run {
    calls: Vec<Value>,
    error: Option<String>,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("node_modules/runtime");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::write(
            package.join("package.json"),
            r#"{"name": "runtime", "type": "module", "exports": "./index.js"}"#,
        )
        .unwrap();
        std::fs::write(package.join("index.js"), MOCK_RUNTIME).unwrap();
        Self(dir)
    }

    fn run(
        &self,
        protocol: Protocol,
        os: Os,
        data: &Value,
        programs: &[&str],
        portcullis: bool,
    ) -> Run {
        let file = format!("{protocol}-{os}.mjs");
        std::fs::write(self.0.path().join(&file), builtin_script(protocol, os)).unwrap();
        let env = [
            ("PORTCULLIS_MOCK_DATA", data.to_string()),
            (
                "PORTCULLIS_MOCK_EXECUTABLES",
                serde_json::to_string(programs).unwrap(),
            ),
            (
                "PORTCULLIS_MOCK_PORTCULLIS",
                if portcullis { "1" } else { "0" }.to_owned(),
            ),
        ];
        let output = node(&[&file], self.0.path(), &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = (!output.status.success()).then(|| {
            stderr
                .lines()
                .find_map(|line| line.strip_prefix("Error: "))
                .unwrap_or_else(|| panic!("{file} failed without an Error:\n{stderr}"))
                .to_owned()
        });
        let calls = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{file}: no call record\n{stderr}"));
        Run { calls, error }
    }
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(self.error, None, "{:?}", self.calls);
        self
    }

    /// The error the script threw; it must have thrown one.
    fn error(&self) -> &str {
        self.error
            .as_deref()
            .unwrap_or_else(|| panic!("no error thrown: {:?}", self.calls))
    }

    fn calls_of(&self, function: &str) -> Vec<&Value> {
        self.calls
            .iter()
            .filter(|call| call["fn"] == function)
            .collect()
    }

    /// The one program launched: its path and arguments.
    fn launched(&self) -> (String, Vec<String>) {
        let launches = self.calls_of("launch");
        assert_eq!(launches.len(), 1, "{:?}", self.calls);
        let call = launches[0];
        let args = serde_json::from_value(call["args"].clone()).unwrap();
        (call["path"].as_str().unwrap().to_owned(), args)
    }

    fn tunnel_options(&self) -> Option<Value> {
        let tunnels = self.calls_of("startTunnel");
        assert!(tunnels.len() <= 1, "{:?}", self.calls);
        tunnels.first().map(|call| call["options"].clone())
    }

    fn temp_file_content(&self) -> String {
        let files = self.calls_of("createTempFile");
        assert_eq!(files.len(), 1, "{:?}", self.calls);
        files[0]["content"].as_str().unwrap().to_owned()
    }

    /// Whether the launched app was registered as waitable.
    fn waits_for_app(&self) -> bool {
        !self.calls_of("addWaitableApp").is_empty()
    }
}

fn direct(service: ServiceParams, host: &str, port: u16) -> Value {
    to_value(&LaunchParams {
        name: "Test service".into(),
        route: Route::Direct {
            host: host.into(),
            port,
        },
        service,
    })
}

fn tunneled(service: ServiceParams) -> Value {
    to_value(&LaunchParams {
        name: "Test service".into(),
        route: Route::Tunneled {
            tunnel: TunnelParams {
                host: "tunnel.example.com".into(),
                port: 4443,
                ticket: TicketId::parse(TICKET).unwrap(),
                startup_time: 30_000,
                verify_ssl: true,
                tls: true,
                protocol: TunnelProtocol::V1,
            },
        },
        service,
    })
}

fn to_value(params: &LaunchParams) -> Value {
    serde_json::from_slice(&params.to_json().unwrap()).unwrap()
}

fn full_rdp() -> ServiceParams {
    ServiceParams::Rdp(RdpParams {
        username: Some("alice".into()),
        domain: Some("CORP".into()),
        password: Some(SecretString::new(PASSWORD.into())),
        width: Some(1600),
        height: Some(900),
        clipboard: true,
        audio: true,
        printers: true,
        drives: true,
        ..RdpParams::default()
    })
}

fn service_of(protocol: Protocol) -> ServiceParams {
    match protocol {
        Protocol::Rdp => full_rdp(),
        Protocol::Ssh => ServiceParams::Ssh(SshParams {
            username: Some("alice".into()),
            host_key_alias: Some("build.example.com".into()),
            ssh_certificate: None,
        }),
        Protocol::Vnc => ServiceParams::Vnc(VncParams::default()),
        Protocol::Tcp => ServiceParams::Tcp(TcpParams::default()),
    }
}

fn all_scripts() -> impl Iterator<Item = (Protocol, Os)> {
    Protocol::ALL
        .into_iter()
        .flat_map(|protocol| Os::ALL.into_iter().map(move |os| (protocol, os)))
}

#[test]
fn every_builtin_script_is_valid_javascript() {
    let dir = tempfile::tempdir().unwrap();
    for (protocol, os) in all_scripts() {
        // `.mjs`: the launcher evaluates scripts as ES modules.
        let file = script_file_name(protocol, os).replace(".js", ".mjs");
        std::fs::write(dir.path().join(&file), builtin_script(protocol, os)).unwrap();
        let output = node(&["--check", &file], dir.path(), &[]);
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn rdp_on_linux_picks_xfreerdp3_then_xfreerdp_then_wlfreerdp() {
    let sandbox = Sandbox::new();
    let data = direct(full_rdp(), "rdp.example.com", 3389);
    for (programs, expected) in [
        (
            &["wlfreerdp", "xfreerdp", "xfreerdp3"][..],
            "/usr/bin/xfreerdp3",
        ),
        (&["wlfreerdp", "xfreerdp"][..], "/usr/bin/xfreerdp"),
        (&["wlfreerdp", "wlfreerdp3"][..], "/usr/bin/wlfreerdp3"),
        (&["wlfreerdp"][..], "/usr/bin/wlfreerdp"),
    ] {
        let run = sandbox
            .run(Protocol::Rdp, Os::Linux, &data, programs, true)
            .ok();
        assert_eq!(run.launched().0, expected, "{programs:?}");
        assert!(run.waits_for_app());
    }
    let run = sandbox.run(Protocol::Rdp, Os::Linux, &data, &["rdesktop"], true);
    assert!(run.error().contains("No FreeRDP client was found"));
    assert!(run.calls_of("launch").is_empty());
}

#[test]
fn rdp_on_linux_passes_the_service_options_to_freerdp() {
    let sandbox = Sandbox::new();
    let data = direct(full_rdp(), "rdp.example.com", 3389);
    let (_, args) = sandbox
        .run(Protocol::Rdp, Os::Linux, &data, ALL_PROGRAMS, true)
        .ok()
        .launched();
    assert_eq!(
        args,
        [
            "/v:rdp.example.com:3389",
            "/t:Test service",
            "/u:alice",
            "/d:CORP",
            "/from-stdin:force",
            "/size:1600x900",
            "/sound",
            "/printer",
            "+home-drive",
        ]
    );

    let minimal = ServiceParams::Rdp(RdpParams {
        fullscreen: true,
        multimon: true,
        ..RdpParams::default()
    });
    let data = direct(minimal, "2001:db8::7", 3390);
    let (_, args) = sandbox
        .run(Protocol::Rdp, Os::Linux, &data, ALL_PROGRAMS, true)
        .ok()
        .launched();
    assert_eq!(
        args,
        [
            "/v:[2001:db8::7]:3390",
            "/t:Test service",
            "/f",
            "/multimon",
            "-clipboard"
        ]
    );
}

#[test]
fn tunneled_scripts_open_the_tunnel_the_params_describe() {
    let sandbox = Sandbox::new();
    for (protocol, os) in all_scripts() {
        let run = sandbox
            .run(
                protocol,
                os,
                &tunneled(service_of(protocol)),
                ALL_PROGRAMS,
                true,
            )
            .ok();
        let options = run.tunnel_options().unwrap();
        let mut expected = json!({
            "addr": "tunnel.example.com", "port": 4443, "ticket": TICKET,
            "startup_time_ms": 30000, "check_certificate": true,
            "tls": true, "protocol": "v1",
        });
        if protocol == Protocol::Tcp {
            expected["keep_listening_after_timeout"] = json!(true);
        }
        assert_eq!(options, expected, "{protocol}-{os}");
        // The client program (or the message) uses the local endpoint, never the target.
        let used = serde_json::to_string(&run.calls).unwrap();
        assert!(used.contains("127.0.0.1"), "{protocol}-{os}: {used}");
        assert!(used.contains("50000"), "{protocol}-{os}: {used}");
    }
}

#[test]
fn openuds5_launchers_get_their_shared_secret_back_and_may_answer_a_port_only() {
    let sandbox = Sandbox::new();
    for (protocol, os) in all_scripts().filter(|(protocol, _)| *protocol != Protocol::Tcp) {
        let mut data = tunneled(service_of(protocol));
        data["shared_secret"] = json!("00112233");
        let run = sandbox.run(protocol, os, &data, ALL_PROGRAMS, false).ok();
        assert_eq!(
            run.tunnel_options().unwrap()["shared_secret"],
            "00112233",
            "{protocol}-{os}"
        );
        let used = serde_json::to_string(&run.calls).unwrap();
        assert!(used.contains("127.0.0.1"), "{protocol}-{os}: {used}");
    }
}

/// Checks the syntax of an .rdp file: CRLF lines of `name:type:value`.
fn assert_valid_rdp_file(content: &str) {
    assert!(content.ends_with("\r\n"), "{content:?}");
    for line in content.strip_suffix("\r\n").unwrap().split("\r\n") {
        let mut parts = line.splitn(3, ':');
        let (name, kind, value) = (parts.next().unwrap(), parts.next(), parts.next());
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '),
            "{line:?}"
        );
        match (kind, value) {
            (Some("i"), Some(value)) => assert!(value.parse::<i64>().is_ok(), "{line:?}"),
            (Some("s"), Some(value)) => assert!(!value.contains(['\r', '\n']), "{line:?}"),
            (Some("b"), Some(value)) => {
                assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{line:?}")
            }
            _ => panic!("not name:type:value: {line:?}"),
        }
    }
}

#[test]
fn rdp_on_windows_starts_mstsc_with_a_valid_rdp_file() {
    let sandbox = Sandbox::new();
    // An OpenUDS 5 launcher: the password as a DPAPI blob in the .rdp file.
    let run = sandbox
        .run(
            Protocol::Rdp,
            Os::Windows,
            &tunneled(full_rdp()),
            ALL_PROGRAMS,
            false,
        )
        .ok();
    let content = run.temp_file_content();
    assert_valid_rdp_file(&content);
    assert_eq!(
        content.split("\r\n").collect::<Vec<_>>(),
        [
            &format!("full address:s:{LOCAL}"),
            "screen mode id:i:1",
            "use multimon:i:0",
            "dynamic resolution:i:1",
            "redirectclipboard:i:1",
            "audiomode:i:0",
            "redirectprinters:i:1",
            "drivestoredirect:s:*",
            "authentication level:i:2",
            "enablecredsspsupport:i:1",
            "desktopwidth:i:1600",
            "desktopheight:i:900",
            "username:s:CORP\\alice",
            "password 51:b:01000000d08c9ddf0115d1118c7a00c04fc297eb",
            "prompt for credentials:i:0",
            "",
        ]
    );
    assert!(!content.contains(PASSWORD));
    let (path, args) = run.launched();
    assert_eq!(path, "C:\\Windows\\System32\\mstsc.exe");
    assert_eq!(args, ["/tmp/portcullis-mock.rdp"]);
    assert_eq!(
        run.calls_of("addEarlyUnlinkableFile")[0]["path"],
        "/tmp/portcullis-mock.rdp"
    );
    assert!(run.waits_for_app());

    // Without credentials mstsc asks for them.
    let bare = ServiceParams::Rdp(RdpParams {
        fullscreen: true,
        ..RdpParams::default()
    });
    let run = sandbox
        .run(
            Protocol::Rdp,
            Os::Windows,
            &direct(bare, "rdp.example.com", 3389),
            ALL_PROGRAMS,
            true,
        )
        .ok();
    let content = run.temp_file_content();
    assert_valid_rdp_file(&content);
    assert!(content.starts_with("full address:s:rdp.example.com:3389\r\nscreen mode id:i:2\r\n"));
    assert!(!content.contains("password") && !content.contains("username"));
    assert!(run.calls_of("cryptProtectData").is_empty());

    // A line break in a value would add settings to the file: refused.
    let injected = ServiceParams::Rdp(RdpParams {
        username: Some("alice\r\nalternate shell:s:cmd.exe".into()),
        ..RdpParams::default()
    });
    let run = sandbox.run(
        Protocol::Rdp,
        Os::Windows,
        &direct(injected, "rdp.example.com", 3389),
        ALL_PROGRAMS,
        true,
    );
    assert!(run.error().contains("line break"));
    assert!(run.calls_of("createTempFile").is_empty() && run.calls_of("launch").is_empty());

    let run = sandbox.run(Protocol::Rdp, Os::Windows, &tunneled(full_rdp()), &[], true);
    assert!(run.error().contains("mstsc.exe"));
}

#[test]
fn rdp_on_macos_uses_freerdp_else_an_rdp_file_without_the_password() {
    let sandbox = Sandbox::new();
    let data = direct(full_rdp(), "rdp.example.com", 3389);
    let run = sandbox
        .run(
            Protocol::Rdp,
            Os::Macos,
            &data,
            &["open", "/opt/homebrew/bin/sdl-freerdp3"],
            true,
        )
        .ok();
    let (path, args) = run.launched();
    assert_eq!(path, "/opt/homebrew/bin/sdl-freerdp3");
    assert_eq!(args[0], "/v:rdp.example.com:3389");
    // The password on FreeRDP's input, never its command line.
    assert!(args.contains(&"/from-stdin:force".to_owned()));
    assert!(args.iter().all(|arg| !arg.contains(PASSWORD)), "{args:?}");
    assert_eq!(run.calls_of("launch")[0]["stdin"], format!("{PASSWORD}\n"));

    let run = sandbox
        .run(Protocol::Rdp, Os::Macos, &data, &["open"], true)
        .ok();
    let content = run.temp_file_content();
    assert_valid_rdp_file(&content);
    assert!(content.starts_with("full address:s:rdp.example.com:3389\r\n"));
    assert!(content.contains("username:s:CORP\\alice\r\n"));
    assert!(!content.contains("password") && !content.contains(PASSWORD));
    assert_eq!(
        run.launched(),
        (
            "/usr/bin/open".into(),
            vec!["/tmp/portcullis-mock.rdp".into()]
        )
    );
    assert_eq!(run.calls_of("addLateUnlinkableFile").len(), 1);
}

#[test]
fn ssh_on_linux_runs_in_the_first_terminal_found() {
    let sandbox = Sandbox::new();
    let data = direct(service_of(Protocol::Ssh), "build.example.com", 2222);
    let ssh = [
        "/usr/bin/ssh",
        "-p",
        "2222",
        "-l",
        "alice",
        "-o",
        "HostKeyAlias=build.example.com",
        "--",
        "build.example.com",
    ];
    for (terminal, prefix) in [
        ("x-terminal-emulator", &["-e"][..]),
        ("gnome-terminal", &["--"][..]),
        ("konsole", &["-e"][..]),
        ("kitty", &[][..]),
        ("xterm", &["-e"][..]),
    ] {
        let run = sandbox
            .run(
                Protocol::Ssh,
                Os::Linux,
                &data,
                &["ssh", terminal, "xterm"],
                true,
            )
            .ok();
        let (path, args) = run.launched();
        assert_eq!(path, format!("/usr/bin/{terminal}"));
        let expected: Vec<&str> = prefix.iter().chain(&ssh).copied().collect();
        assert_eq!(args, expected, "{terminal}");
    }
    let run = sandbox.run(Protocol::Ssh, Os::Linux, &data, &["ssh"], true);
    assert!(run.error().contains("No terminal emulator"));
    let run = sandbox.run(Protocol::Ssh, Os::Linux, &data, &["xterm"], true);
    assert!(run.error().contains("OpenSSH client"));

    // A host that ssh would read as an option is refused.
    let data = direct(service_of(Protocol::Ssh), "-oProxyCommand=evil", 22);
    let run = sandbox.run(Protocol::Ssh, Os::Linux, &data, &["ssh", "xterm"], true);
    assert!(run.error().contains("invalid host name"));
}

#[test]
fn ssh_on_windows_runs_the_openssh_client() {
    let sandbox = Sandbox::new();
    let data = direct(
        ServiceParams::Ssh(SshParams::default()),
        "build.example.com",
        22,
    );
    let (path, args) = sandbox
        .run(Protocol::Ssh, Os::Windows, &data, ALL_PROGRAMS, true)
        .ok()
        .launched();
    assert_eq!(path, "C:\\Windows\\System32\\OpenSSH\\ssh.exe");
    assert_eq!(args, ["-p", "22", "--", "build.example.com"]);
}

/// Undoes AppleScript string-literal escaping.
fn applescript_unescape(literal: &str) -> String {
    let inner = literal
        .strip_prefix('"')
        .unwrap()
        .strip_suffix('"')
        .unwrap();
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap() } else { c });
    }
    out
}

/// Splits a POSIX shell command line made of single-quoted words and `\'`.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => words.push(String::new()),
            '\'' => words
                .last_mut()
                .unwrap()
                .extend(chars.by_ref().take_while(|&c| c != '\'')),
            '\\' => words.last_mut().unwrap().push(chars.next().unwrap()),
            other => panic!("unquoted {other:?} in {command}"),
        }
    }
    words
}

#[test]
fn ssh_on_macos_quotes_for_applescript_and_the_shell() {
    let sandbox = Sandbox::new();
    let tricky = "o'brien \"x\" \\ $(id)";
    let service = ServiceParams::Ssh(SshParams {
        username: Some(tricky.into()),
        host_key_alias: None,
        ssh_certificate: None,
    });
    let run = sandbox
        .run(
            Protocol::Ssh,
            Os::Macos,
            &tunneled(service),
            ALL_PROGRAMS,
            true,
        )
        .ok();
    let (path, args) = run.launched();
    assert_eq!(path, "/usr/bin/osascript");
    assert_eq!(
        args[..4],
        ["-e", "tell application \"Terminal\"", "-e", "activate"]
    );
    assert_eq!(args[6..], ["-e", "end tell"]);
    let literal = args[5].strip_prefix("do script ").unwrap();
    assert_eq!(
        shell_words(&applescript_unescape(literal)),
        [
            "/usr/bin/ssh",
            "-p",
            "50000",
            "-l",
            tricky,
            "--",
            "127.0.0.1"
        ]
    );
}

#[test]
fn vnc_scripts_pass_the_address_to_the_viewer() {
    let sandbox = Sandbox::new();
    let data = direct(
        ServiceParams::Vnc(VncParams::default()),
        "desk.example.com",
        5901,
    );
    for (os, programs, path, args) in [
        (
            Os::Linux,
            &["vncviewer"][..],
            "/usr/bin/vncviewer",
            vec!["desk.example.com::5901"],
        ),
        (
            Os::Linux,
            &["remmina"][..],
            "/usr/bin/remmina",
            vec!["-c", "vnc://desk.example.com:5901"],
        ),
        (
            Os::Windows,
            &["C:\\Program Files\\TightVNC\\tvnviewer.exe"][..],
            "C:\\Program Files\\TightVNC\\tvnviewer.exe",
            vec!["desk.example.com::5901"],
        ),
        (
            Os::Macos,
            &["open"][..],
            "/usr/bin/open",
            vec!["vnc://desk.example.com:5901"],
        ),
    ] {
        let run = sandbox.run(Protocol::Vnc, os, &data, programs, true).ok();
        assert_eq!(
            run.launched(),
            (
                path.to_owned(),
                args.iter().map(|a| a.to_string()).collect()
            )
        );
    }
    for os in [Os::Linux, Os::Windows] {
        let run = sandbox.run(Protocol::Vnc, os, &data, &[], true);
        assert!(run.error().contains("No VNC viewer"), "{os}");
    }
}

#[test]
fn tcp_scripts_show_the_address_and_keep_the_tunnel_open() {
    let sandbox = Sandbox::new();
    for os in Os::ALL {
        let run = sandbox
            .run(
                Protocol::Tcp,
                os,
                &direct(service_of(Protocol::Tcp), "db.example.com", 5432),
                &[],
                true,
            )
            .ok();
        let message = run.calls_of("message")[0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("db.example.com:5432"), "{message}");
        assert!(run.tunnel_options().is_none());

        let fixed = ServiceParams::Tcp(TcpParams {
            local_port: Some(15432),
        });
        let run = sandbox
            .run(Protocol::Tcp, os, &tunneled(fixed), &[], true)
            .ok();
        let options = run.tunnel_options().unwrap();
        assert_eq!(options["local_port"], 15432);
        assert_eq!(options["keep_listening_after_timeout"], true);
        let text = run.calls_of("waitUntilClosed")[0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains("127.0.0.1:15432"), "{text}");

        let run = sandbox.run(
            Protocol::Tcp,
            os,
            &tunneled(service_of(Protocol::Tcp)),
            &[],
            false,
        );
        assert!(run.error().contains("needs the Portcullis launcher"));
        assert!(run.tunnel_options().is_none());
    }
}

#[test]
fn no_script_logs_or_shows_a_secret() {
    let sandbox = Sandbox::new();
    for (protocol, os) in all_scripts() {
        for portcullis in [true, false] {
            let run = sandbox.run(
                protocol,
                os,
                &tunneled(service_of(protocol)),
                ALL_PROGRAMS,
                portcullis,
            );
            for call in run.calls.iter().filter(|call| {
                ["log", "message", "waitUntilClosed"].contains(&call["fn"].as_str().unwrap())
            }) {
                let text = call.to_string();
                assert!(
                    !text.contains(PASSWORD) && !text.contains(TICKET),
                    "{protocol}-{os}: {text}"
                );
            }
            if let Some(error) = run.error {
                assert!(
                    !error.contains(PASSWORD) && !error.contains(TICKET),
                    "{error}"
                );
            }
        }
    }
}

#[test]
fn missing_client_programs_are_clear_errors() {
    let sandbox = Sandbox::new();
    for (protocol, os) in all_scripts().filter(|(protocol, _)| *protocol != Protocol::Tcp) {
        let run = sandbox.run(protocol, os, &tunneled(service_of(protocol)), &[], true);
        let error = run.error();
        assert!(error.len() > 20, "{protocol}-{os}: {error}");
        assert!(run.calls_of("launch").is_empty(), "{protocol}-{os}");
        // The check comes before the tunnel: no ticket is spent on a missing client.
        assert!(run.tunnel_options().is_none(), "{protocol}-{os}");
    }
}

#[test]
fn rdp_on_linux_hands_the_password_on_stdin_and_never_in_argv() {
    let sandbox = Sandbox::new();
    let run = sandbox
        .run(
            Protocol::Rdp,
            Os::Linux,
            &tunneled(full_rdp()),
            ALL_PROGRAMS,
            true,
        )
        .ok();
    let (_, args) = run.launched();
    assert!(args.iter().all(|arg| !arg.contains(PASSWORD)), "{args:?}");
    assert!(args.contains(&"/from-stdin:force".to_owned()));
    // The domain is on the command line, so FreeRDP asks only for the password.
    assert_eq!(run.calls_of("launch")[0]["stdin"], format!("{PASSWORD}\n"));

    // Without a domain FreeRDP asks for one first: an empty answer.
    let Value::Object(mut without_domain) = tunneled(full_rdp()) else {
        unreachable!()
    };
    without_domain.remove("domain");
    let run = sandbox
        .run(
            Protocol::Rdp,
            Os::Linux,
            &Value::Object(without_domain),
            ALL_PROGRAMS,
            true,
        )
        .ok();
    assert_eq!(
        run.calls_of("launch")[0]["stdin"],
        format!("\n{PASSWORD}\n")
    );

    // An OpenUDS 5 launcher cannot write to FreeRDP's input: FreeRDP asks the user.
    let run = sandbox
        .run(
            Protocol::Rdp,
            Os::Linux,
            &tunneled(full_rdp()),
            ALL_PROGRAMS,
            false,
        )
        .ok();
    let (_, args) = run.launched();
    assert!(
        args.iter()
            .all(|arg| !arg.contains(PASSWORD) && arg != "/from-stdin:force")
    );
    assert_eq!(run.calls_of("launch")[0]["stdin"], Value::Null);
    assert!(args.contains(&"/u:alice".to_owned()));
}

#[test]
fn rdp_on_windows_keeps_the_password_in_a_cmdkey_entry_until_mstsc_ends() {
    let sandbox = Sandbox::new();
    let run = sandbox
        .run(
            Protocol::Rdp,
            Os::Windows,
            &tunneled(full_rdp()),
            ALL_PROGRAMS,
            true,
        )
        .ok();
    let content = run.temp_file_content();
    assert_valid_rdp_file(&content);
    assert!(content.contains("username:s:CORP\\alice"));
    assert!(!content.contains("password") && !content.contains(PASSWORD));
    assert!(run.calls_of("cryptProtectData").is_empty());
    let runs = run.calls_of("launchAndWait");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["path"], "C:\\Windows\\System32\\cmdkey.exe");
    assert_eq!(
        runs[0]["args"],
        json!([
            "/generic:TERMSRV/127.0.0.1",
            "/user:CORP\\alice",
            format!("/pass:{PASSWORD}")
        ])
    );
    assert_eq!(runs[1]["args"], json!(["/delete:TERMSRV/127.0.0.1"]));
    // The entry is deleted only once mstsc has ended.
    let order: Vec<&str> = run
        .calls
        .iter()
        .filter_map(|call| call["fn"].as_str())
        .filter(|name| ["launch", "wait", "launchAndWait"].contains(name))
        .collect();
    assert_eq!(order, ["launchAndWait", "launch", "wait", "launchAndWait"]);
}

#[test]
fn ssh_on_linux_uses_the_launchs_certificate_on_portcullis_launchers() {
    let sandbox = Sandbox::new();
    let service = ServiceParams::Ssh(SshParams {
        username: Some("alice".into()),
        host_key_alias: None,
        ssh_certificate: Some("ssh-ed25519-cert-v01@openssh.com AAAA portcullis".into()),
    });
    let data = direct(service, "build.example.com", 22);
    let run = sandbox
        .run(Protocol::Ssh, Os::Linux, &data, ALL_PROGRAMS, true)
        .ok();
    let (_, args) = run.launched();
    let command = args.join(" ");
    assert!(
        command.contains("-l alice -i /tmp/portcullis-ssh-mock/id_ed25519 -o CertificateFile=/tmp/portcullis-ssh-mock/id_ed25519-cert.pub -o IdentitiesOnly=yes"),
        "{command}"
    );
    assert!(
        !command.contains("AAAA"),
        "the certificate itself is not an argument"
    );
    // The launcher stays a while, for a terminal that handed ssh to its server and exited.
    assert_eq!(run.calls_of("sleep")[0]["ms"], 20000);

    // macOS: the same options inside Terminal's command; the launcher stays a while too.
    let run = sandbox
        .run(Protocol::Ssh, Os::Macos, &data, ALL_PROGRAMS, true)
        .ok();
    let (_, args) = run.launched();
    let literal = args[5].strip_prefix("do script ").unwrap();
    let words = shell_words(&applescript_unescape(literal));
    assert_eq!(
        words[3..9],
        [
            "-l",
            "alice",
            "-i",
            "/tmp/portcullis-ssh-mock/id_ed25519",
            "-o",
            "CertificateFile=/tmp/portcullis-ssh-mock/id_ed25519-cert.pub"
        ]
    );
    assert_eq!(run.calls_of("sleep")[0]["ms"], 20000);

    let (_, args) = sandbox
        .run(Protocol::Ssh, Os::Windows, &data, ALL_PROGRAMS, true)
        .ok()
        .launched();
    assert!(
        args.join(" ")
            .contains("-l alice -i /tmp/portcullis-ssh-mock/id_ed25519 -o CertificateFile="),
        "{args:?}"
    );
    let run = sandbox
        .run(Protocol::Ssh, Os::Linux, &data, ALL_PROGRAMS, false)
        .ok();
    let (_, args) = run.launched();
    assert!(!args.join(" ").contains("CertificateFile"));
}

#[test]
fn vnc_on_linux_gives_tigervnc_a_password_file_never_an_argument() {
    let sandbox = Sandbox::new();
    let data = direct(
        ServiceParams::Vnc(VncParams {
            password: Some(SecretString::new(PASSWORD.into())),
        }),
        "desk.example.com",
        5901,
    );
    let run = sandbox
        .run(Protocol::Vnc, Os::Linux, &data, ALL_PROGRAMS, true)
        .ok();
    let (_, args) = run.launched();
    assert_eq!(
        args,
        [
            "-passwd",
            "/tmp/portcullis-vnc-mock/passwd",
            "desk.example.com::5901"
        ]
    );
    let run = sandbox
        .run(Protocol::Vnc, Os::Linux, &data, ALL_PROGRAMS, false)
        .ok();
    let (_, args) = run.launched();
    assert_eq!(args, ["desk.example.com::5901"]);
}
