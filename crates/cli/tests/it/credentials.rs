//! `portcullis admin` for credentials (docs/broker.md): `service set-credentials` with the
//! password read from stdin (never an argument), `clear-credentials`, `credentials
//! rotate-key` re-sealing what is stored, and `ssh-ca init|show`.

use std::os::unix::fs::PermissionsExt;

use crate::support::{run, stdout};

const SERVICE_PASSWORD: &str = "Svc-Passw0rd!from-stdin";

#[test]
fn credentials_commands_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let admin = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["admin", "--data-dir", data];
        all.extend_from_slice(args);
        run(&all, stdin)
    };
    let failure = |args: &[&str], stdin: Option<&str>| {
        let output = admin(args, stdin);
        assert!(!output.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    stdout(&admin(&["group", "add", "staff"], None));
    for (name, protocol) in [("desk", "rdp"), ("shell", "ssh")] {
        stdout(&admin(
            &[
                "service",
                "add",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                "3389",
                "--protocol",
                protocol,
                "--group",
                "staff",
            ],
            None,
        ));
    }

    // Stored: the password from stdin, sealed under the credential key (created 0600).
    let set = stdout(&admin(
        &[
            "service",
            "set-credentials",
            "desk",
            "--mode",
            "stored",
            "--username",
            "svc",
            "--domain",
            "CORP",
        ],
        Some(&format!("{SERVICE_PASSWORD}\n")),
    ));
    assert!(set.contains("now signs users in with stored"), "{set}");
    let key = dir.path().join("credential-key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = stdout(&admin(&["service", "list"], None));
    assert!(
        list.contains("desk") && list.contains("credentials=stored"),
        "{list}"
    );
    assert!(
        failure(
            &[
                "service",
                "set-credentials",
                "desk",
                "--mode",
                "stored",
                "--username",
                "svc"
            ],
            Some(""),
        )
        .contains("empty password")
    );
    assert!(
        failure(
            &["service", "set-credentials", "desk", "--mode", "stored"],
            Some("x\n")
        )
        .contains("--username")
    );
    // Modes that do not suit the protocol are refused, naming why.
    assert!(
        failure(
            &[
                "service",
                "set-credentials",
                "shell",
                "--mode",
                "pass-through"
            ],
            None
        )
        .contains("cannot use the pass-through mode")
    );
    assert!(
        failure(
            &[
                "service",
                "set-credentials",
                "desk",
                "--mode",
                "ssh-certificate"
            ],
            None
        )
        .contains("cannot use the ssh-certificate mode")
    );

    // The key rotation re-seals the stored password; the old key is kept.
    let old_key = std::fs::read_to_string(&key).unwrap();
    let rotated = admin(&["credentials", "rotate-key"], None);
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(String::from_utf8_lossy(&rotated.stderr).contains("re-sealed 1 stored password"));
    let new_key = std::fs::read_to_string(&key).unwrap();
    assert_ne!(old_key, new_key);
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with("credential-key.") && name.ends_with(".old")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read_to_string(kept[0].path()).unwrap(), old_key);

    // Nothing in the data directory holds the password in clear.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes
                    .windows(SERVICE_PASSWORD.len())
                    .any(|window| window == SERVICE_PASSWORD.as_bytes()),
                "{} holds the password",
                path.display()
            );
        }
    }

    // SSH: a CA, created once, its public line for TrustedUserCAKeys.
    assert!(failure(&["ssh-ca", "show"], None).contains("ssh-ca init"));
    let init = admin(&["ssh-ca", "init"], None);
    assert!(init.status.success(), "{init:?}");
    let line = stdout(&init);
    assert!(line.starts_with("ssh-ed25519 "), "{line}");
    let ca = dir.path().join("ssh-ca");
    assert_eq!(
        std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(stdout(&admin(&["ssh-ca", "show"], None)), line);
    assert!(failure(&["ssh-ca", "init"], None).contains("already exists"));
    let set = stdout(&admin(
        &[
            "service",
            "set-credentials",
            "shell",
            "--mode",
            "ssh-certificate",
            "--ssh-principal",
            "corp-{username}",
        ],
        None,
    ));
    assert!(set.contains("ssh-certificate"), "{set}");
    assert!(
        failure(
            &[
                "service",
                "set-credentials",
                "shell",
                "--mode",
                "ssh-certificate",
                "--ssh-principal",
                "a b",
            ],
            None,
        )
        .contains("--ssh-principal")
    );

    let cleared = stdout(&admin(&["service", "clear-credentials", "desk"], None));
    assert!(cleared.contains("no longer"), "{cleared}");
    let list = stdout(&admin(&["service", "list"], None));
    assert!(list.contains("credentials=none"), "{list}");
    let help = stdout(&admin(&["service", "set-credentials", "--help"], None));
    assert!(
        help.contains("stdin") && !help.contains("--password"),
        "{help}"
    );
}
