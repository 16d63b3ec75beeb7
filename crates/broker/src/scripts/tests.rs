#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::fs;

use portcullis_proto::TicketId;
use portcullis_proto::kem::DecapsulationKey;
use portcullis_proto::payload::{self, BuildOptions, LogSettings, SignaturePolicy, SigningKey};
use serde_json::json;

use super::*;
use crate::model::Transport;

fn key() -> SigningKey {
    SigningKey::from_seed(&[7; 32]).unwrap()
}

fn ticket(fill: char) -> TicketId {
    TicketId::parse(&fill.to_string().repeat(TicketId::LEN)).unwrap()
}

fn tunneled_rdp() -> LaunchParams {
    LaunchParams {
        name: "Finance desktop".into(),
        route: Route::Tunneled {
            tunnel: TunnelParams {
                host: "tunnel.example.com".into(),
                port: 4443,
                ticket: ticket('T'),
                startup_time: 30_000,
                verify_ssl: true,
                tls: true,
                protocol: TunnelProtocol::V1,
            },
        },
        service: ServiceParams::Rdp(RdpParams {
            username: Some("alice".into()),
            domain: Some("CORP".into()),
            password: Some(SecretString::new("Pa55-word!".into())),
            width: Some(1600),
            height: Some(900),
            clipboard: true,
            audio: true,
            ..RdpParams::default()
        }),
    }
}

#[test]
fn os_names_round_trip() {
    for os in Os::ALL {
        assert_eq!(os.to_string(), os.as_str());
        assert_eq!(os.as_str().parse::<Os>().unwrap(), os);
        assert_eq!(
            serde_json::to_string(&os).unwrap(),
            format!("\"{}\"", os.as_str())
        );
    }
    assert!("Windows".parse::<Os>().is_err());
}

#[test]
fn os_comes_from_the_client_field_then_the_user_agent() {
    const FIREFOX_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101";
    const EDGE_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15";
    const CHROMEBOOK: &str = "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36";

    for (field, agent, expected) in [
        (Some("windows"), None, Os::Windows),
        (Some("Windows"), Some(FIREFOX_LINUX), Os::Windows),
        (Some(" macos "), None, Os::Macos),
        (Some("darwin"), None, Os::Macos),
        (Some("win32"), None, Os::Windows),
        (Some("linux"), Some(SAFARI_MAC), Os::Linux),
        (Some("freebsd"), Some(EDGE_WINDOWS), Os::Windows),
        (Some(""), Some(SAFARI_MAC), Os::Macos),
        (None, Some(EDGE_WINDOWS), Os::Windows),
        (None, Some(SAFARI_MAC), Os::Macos),
        (None, Some(FIREFOX_LINUX), Os::Linux),
        (None, Some(CHROMEBOOK), Os::Linux),
        (None, Some("curl/8.5.0"), Os::Linux),
        (None, Some("windows"), Os::Windows),
        (None, Some("macos"), Os::Macos),
        (
            None,
            Some("Portal/1.0 CFNetwork/1410 Darwin/22.6.0"),
            Os::Macos,
        ),
        (None, None, Os::Linux),
    ] {
        assert_eq!(
            Os::from_client(field, agent),
            expected,
            "{field:?} {agent:?}"
        );
    }
}

#[test]
fn there_is_one_builtin_script_per_protocol_and_os() {
    let mut names = HashSet::new();
    for protocol in Protocol::ALL {
        for os in Os::ALL {
            let name = script_file_name(protocol, os);
            assert_eq!(name, format!("{}-{}.js", protocol.as_str(), os.as_str()));
            assert!(names.insert(name.clone()));
            let script = builtin_script(protocol, os);
            assert!(
                script.contains("from 'runtime'"),
                "{name} does not import the runtime"
            );
            assert!(
                script.starts_with("// Portcullis launcher script"),
                "{name}"
            );
        }
    }
    assert_eq!(names.len(), 12);
    // The index of the set relies on the enums' declaration order.
    for (position, protocol) in Protocol::ALL.into_iter().enumerate() {
        assert_eq!(protocol as usize, position);
    }
    for (position, os) in Os::ALL.into_iter().enumerate() {
        assert_eq!(os as usize, position);
    }
}

#[test]
fn every_builtin_script_loads_signs_and_verifies() {
    let key = key();
    let set = ScriptSet::load(None, &key).unwrap();
    let mut seen = 0;
    for (protocol, os, script, origin) in set.iter() {
        seen += 1;
        assert_eq!(origin, &ScriptOrigin::BuiltIn);
        assert_eq!(script.script(), builtin_script(protocol, os).as_bytes());
        assert_eq!(script.signer(), key.verifying_key());
        key.verifying_key()
            .verify(script.script(), script.signature(), "script")
            .unwrap();
        assert!(std::ptr::eq(set.get(protocol, os), script));
    }
    assert_eq!(seen, 12);
}

#[test]
fn an_operator_file_replaces_the_builtin_script_of_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let custom = "import { Process } from 'runtime';\nProcess.launch('remmina', []);\n";
    fs::write(dir.path().join("rdp-windows.js"), custom).unwrap();
    fs::write(dir.path().join("rdp-win.js"), "// misspelled, ignored").unwrap();
    fs::write(dir.path().join("README.md"), "notes").unwrap();

    let key = key();
    let set = ScriptSet::load(Some(dir.path()), &key).unwrap();
    let replaced = set.get(Protocol::Rdp, Os::Windows);
    assert_eq!(replaced.script(), custom.as_bytes());
    key.verifying_key()
        .verify(replaced.script(), replaced.signature(), "script")
        .unwrap();
    assert_eq!(
        set.origin(Protocol::Rdp, Os::Windows),
        &ScriptOrigin::File(dir.path().join("rdp-windows.js"))
    );
    for (protocol, os, script, origin) in set.iter() {
        if (protocol, os) != (Protocol::Rdp, Os::Windows) {
            assert_eq!(origin, &ScriptOrigin::BuiltIn, "{protocol}-{os}");
            assert_eq!(script.script(), builtin_script(protocol, os).as_bytes());
        }
    }
}

#[test]
fn bad_operator_files_are_errors_naming_the_file() {
    let key = key();
    let cases: [(&[u8], &str); 4] = [
        (b"", "is empty"),
        (b" \n\t\n", "is empty"),
        (
            b"// caf\xe9 in Latin-1\n",
            "is not UTF-8 text (invalid byte at offset 6)",
        ),
        (b"\xef\xbb", "is not UTF-8 text (invalid byte at offset 0)"),
    ];
    for (contents, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh-macos.js");
        fs::write(&path, contents).unwrap();
        let message = ScriptSet::load(Some(dir.path()), &key)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!("the launcher script {} {expected}", path.display())
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tcp-linux.js");
    fs::write(&path, vec![b' '; payload::MAX_DECOMPRESSED + 1]).unwrap();
    let error = ScriptSet::load(Some(dir.path()), &key).unwrap_err();
    assert!(matches!(error, ScriptError::TooLarge { .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()));

    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("vnc-linux.js")).unwrap();
    let error = ScriptSet::load(Some(dir.path()), &key).unwrap_err();
    assert!(matches!(error, ScriptError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("vnc-linux.js"), "{error}");
}

#[test]
fn a_missing_scripts_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("scripts");
    let error = ScriptSet::load(Some(&missing), &key()).unwrap_err();
    assert!(matches!(error, ScriptError::Dir { .. }), "{error:?}");
    assert!(error.to_string().contains(&missing.display().to_string()));
}

#[test]
fn params_have_the_documented_shape() {
    let params = tunneled_rdp();
    assert_eq!(params.protocol(), Protocol::Rdp);
    assert_eq!(params.transport(), Transport::Tunneled);
    let value: serde_json::Value = serde_json::from_slice(&params.to_json().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({
            "name": "Finance desktop",
            "transport": "tunneled",
            "tunnel": {
                "host": "tunnel.example.com", "port": 4443, "ticket": "T".repeat(48),
                "startup_time": 30000, "verify_ssl": true, "tls": true, "protocol": "v1"
            },
            "protocol": "rdp",
            "username": "alice", "domain": "CORP", "password": "Pa55-word!",
            "fullscreen": false, "width": 1600, "height": 900, "multimon": false,
            "clipboard": true, "audio": true, "printers": false, "drives": false
        })
    );

    let direct_ssh = LaunchParams {
        name: "Build host".into(),
        route: Route::Direct {
            host: "build.example.com".into(),
            port: 22,
        },
        service: ServiceParams::Ssh(SshParams {
            username: Some("ci".into()),
            host_key_alias: None,
            ssh_certificate: None,
        }),
    };
    assert_eq!(direct_ssh.transport(), Transport::Direct);
    let value: serde_json::Value = serde_json::from_slice(&direct_ssh.to_json().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({"name": "Build host", "transport": "direct", "host": "build.example.com",
               "port": 22, "protocol": "ssh", "username": "ci"})
    );

    for service in [
        ServiceParams::Vnc(VncParams::default()),
        ServiceParams::Tcp(TcpParams {
            local_port: Some(15432),
        }),
    ] {
        let params = LaunchParams {
            service,
            ..direct_ssh.clone()
        };
        let json = params.to_json().unwrap();
        let back: LaunchParams = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, params);
    }
}

#[test]
fn params_round_trip_and_to_json_is_exact() {
    let params = tunneled_rdp();
    let json = params.to_json().unwrap();
    assert_eq!(*json, serde_json::to_vec(&params).unwrap());
    assert_eq!(json.capacity(), json.len());
    let back: LaunchParams = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, params);

    let bad_ticket = String::from_utf8(json.to_vec())
        .unwrap()
        .replace(&"T".repeat(48), "short");
    assert!(serde_json::from_str::<LaunchParams>(&bad_ticket).is_err());
}

#[test]
fn debug_redacts_the_ticket_and_the_password() {
    let shown = format!("{:?}", tunneled_rdp());
    assert!(!shown.contains("TTTTTTTT"), "{shown}");
    assert!(!shown.contains("Pa55"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(shown.contains("tunnel.example.com"), "{shown}");
    assert_eq!(
        format!("{:?}", SecretString::from("x".to_owned())),
        "<redacted>"
    );
}

/// The broker's side of an exchange end to end: a script from the set and typed params
/// make a payload that a launcher decodes and verifies, and whose params are ours.
#[test]
fn a_script_and_params_make_a_verifiable_payload() {
    let key = key();
    let set = ScriptSet::load(None, &key).unwrap();
    let params = tunneled_rdp();
    let script = set.get(params.protocol(), Os::Windows);
    let client_ticket = ticket('C');
    let launcher_key = DecapsulationKey::generate().unwrap();
    let json = payload::build(
        script,
        &params.to_json().unwrap(),
        &LogSettings::default(),
        &key,
        &BuildOptions {
            ticket: &client_ticket,
            client_key: launcher_key.encapsulation_key(),
            payload_signature: true,
        },
    )
    .unwrap();
    let verified = payload::decode(&json)
        .unwrap()
        .verify(
            key.verifying_key(),
            &client_ticket,
            launcher_key.encapsulation_key(),
            SignaturePolicy::Required,
        )
        .unwrap();
    assert_eq!(
        verified.script(),
        builtin_script(Protocol::Rdp, Os::Windows).as_bytes()
    );
    let back: LaunchParams = serde_json::from_slice(verified.params()).unwrap();
    assert_eq!(back, params);
}
