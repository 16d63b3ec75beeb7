use std::os::unix::fs::PermissionsExt as _;

use super::ssh_ca::{SshCa, render_principal, source_addresses};
use super::*;

#[test]
fn the_key_file_is_created_private_and_loaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let (key, source) = load_or_create(dir.path(), None).unwrap();
    assert_eq!(source, KeySource::File(key_path(dir.path())));
    let mode = std::fs::metadata(key_path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (again, _) = load_or_create(dir.path(), None).unwrap();
    assert_eq!(key.id(), again.id());
    std::fs::set_permissions(key_path(dir.path()), std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = load_or_create(dir.path(), None).unwrap_err().to_string();
    assert!(error.contains("chmod 600"), "{error}");
    assert!(!error.contains(&hex::encode(key.expose())));
}

#[test]
fn the_environment_variable_wins_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let value = Zeroizing::new("ab".repeat(32));
    let (key, source) = load_or_create(dir.path(), Some(("KEY", Some(value)))).unwrap();
    assert_eq!(key.expose(), &[0xab; 32]);
    assert_eq!(source, KeySource::Environment("KEY".into()));
    assert!(
        !key_path(dir.path()).exists(),
        "no file when the variable holds the key"
    );
    assert!(matches!(
        load_or_create(dir.path(), Some(("KEY", None))),
        Err(CredentialKeyError::MissingVariable(_))
    ));
    let error = load_or_create(dir.path(), Some(("KEY", Some(Zeroizing::new("zz".into())))))
        .unwrap_err()
        .to_string();
    assert_eq!(error, "KEY is malformed: expected 64 hex digits");
}

#[test]
fn stored_boxes_are_bound_to_their_service_and_key() {
    let key = CredentialKey::generate().unwrap();
    let sealed = seal_stored(&key, ServiceId(7), "Pa55word").unwrap();
    assert_eq!(
        open_stored(&key, ServiceId(7), &sealed).unwrap().expose(),
        b"Pa55word"
    );
    assert!(open_stored(&key, ServiceId(8), &sealed).is_err());
    let other = CredentialKey::generate().unwrap();
    let error = open_stored(&other, ServiceId(7), &sealed)
        .unwrap_err()
        .to_string();
    assert!(error.contains(&hex::encode(&key.id())), "{error}");
}

#[test]
fn the_ssh_ca_is_created_once_and_signs_certificates() {
    let dir = tempfile::tempdir().unwrap();
    assert!(SshCa::load(dir.path()).unwrap().is_none());
    let (ca, previous) = SshCa::init(dir.path(), false, 1_765_000_000_000).unwrap();
    assert!(previous.is_none());
    assert!(ca.public_line().starts_with("ssh-ed25519 "));
    let mode = std::fs::metadata(ssh_ca::ca_path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        SshCa::init(dir.path(), false, 1_765_000_000_000).is_err(),
        "never replaced without force"
    );
    let loaded = SshCa::load(dir.path()).unwrap().unwrap();
    assert_eq!(loaded.public_line(), ca.public_line());

    let key = portcullis_proto::ssh::Ed25519PublicKey::from_bytes(
        *ssh_key::private::Ed25519Keypair::from_seed(&[5; 32])
            .public
            .as_ref(),
    );
    let line = ca
        .sign(&ssh_ca::CertificateRequest {
            key: &key,
            principal: "alice",
            key_id: "portcullis user=alice service=1".into(),
            now_secs: 1_000_000,
            validity_secs: 300,
            source_addresses: &["192.0.2.7".into()],
        })
        .unwrap();
    let certificate = ssh_key::Certificate::from_openssh(&line).unwrap();
    assert_eq!(certificate.valid_principals(), ["alice".to_owned()]);
    assert_eq!(certificate.valid_after(), 1_000_000 - 60);
    assert_eq!(certificate.valid_before(), 1_000_300);
    assert_eq!(
        certificate.cert_type(),
        ssh_key::certificate::CertType::User
    );
    assert_eq!(
        certificate
            .critical_options()
            .get("source-address")
            .map(String::as_str),
        Some("192.0.2.7")
    );
    let ca_key = ssh_key::PublicKey::from_openssh(&ca.public_line()).unwrap();
    certificate
        .validate_at(1_000_100, [&ca_key.fingerprint(Default::default())])
        .unwrap();

    let (rotated, previous) = SshCa::init(dir.path(), true, 1_765_000_000_000).unwrap();
    assert!(previous.unwrap().exists());
    assert_ne!(rotated.public_line(), ca.public_line());
}

#[test]
fn principals_and_source_addresses() {
    assert_eq!(
        render_principal("{username}", "alice").as_deref(),
        Some("alice")
    );
    assert_eq!(
        render_principal("corp-{username}", "bob").as_deref(),
        Some("corp-bob")
    );
    assert_eq!(render_principal("{username}", "a,b"), None);
    assert_eq!(render_principal("{username}", "a b"), None);
    let client: std::net::IpAddr = "::ffff:192.0.2.9".parse().unwrap();
    assert_eq!(source_addresses(None, Some(client)), ["192.0.2.9"]);
    assert!(source_addresses(Some("none"), Some(client)).is_empty());
    assert!(source_addresses(Some("client"), None).is_empty());
    assert_eq!(
        source_addresses(Some("10.0.0.0/8, 192.0.2.1"), Some(client)),
        ["10.0.0.0/8", "192.0.2.1"]
    );
}
