#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::*;

/// The clock's reading in these tests: 2025-12-06T05:46:40Z.
const NOW: crate::clock::Millis = 1_765_000_000_000;

/// The seed and fingerprint of the payload known-answer vector
/// (`docs/protocol.md` §10.3).
const KNOWN_SEED: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KNOWN_FINGERPRINT: &str = "d666806e11cee19a7c989f7445f90dd419cf4d2d51db8c0fdb4c0f0a542238c9";

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn write_key_file(dir: &Path, contents: &str, mode: u32) -> PathBuf {
    let path = key_path(dir);
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Every entry of `dir` but the key file and its `.old` copies: there must be none.
fn stray_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != KEY_FILE_NAME && !name.ends_with(".old"))
        .collect()
}

#[test]
fn first_start_creates_then_loads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let (created, status) = load_or_create(dir.path()).unwrap();
    assert_eq!(status, KeyStatus::Created);

    let path = key_path(dir.path());
    assert_eq!(mode_of(&path), 0o600);
    let contents = fs::read_to_string(&path).unwrap();
    assert_eq!(contents, format!("{}\n", hex::encode(created.seed())));
    assert!(
        stray_files(dir.path()).is_empty(),
        "{:?}",
        stray_files(dir.path())
    );

    let (loaded, status) = load_or_create(dir.path()).unwrap();
    assert_eq!(status, KeyStatus::Loaded);
    assert_eq!(loaded.verifying_key(), created.verifying_key());
}

#[test]
fn a_missing_data_dir_is_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("a/b/data");
    let (_, status) = load_or_create(&data_dir).unwrap();
    assert_eq!(status, KeyStatus::Created);
    assert_eq!(mode_of(&data_dir), 0o700);
    assert!(key_path(&data_dir).is_file());
}

#[test]
fn load_reads_the_stored_seed() {
    let dir = tempfile::tempdir().unwrap();
    write_key_file(dir.path(), &format!("{KNOWN_SEED}\n"), 0o600);
    let key = load(dir.path()).unwrap();
    assert_eq!(key.verifying_key().fingerprint(), KNOWN_FINGERPRINT);

    // The trailing newline is optional, and hex may be uppercase.
    write_key_file(dir.path(), &KNOWN_SEED.to_uppercase(), 0o400);
    let key = load(dir.path()).unwrap();
    assert_eq!(key.verifying_key().fingerprint(), KNOWN_FINGERPRINT);
}

#[test]
fn load_without_a_key_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let error = load(dir.path()).unwrap_err();
    assert!(matches!(error, KeyError::NotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("portcullis admin keys init"), "{message}");
    assert!(message.contains(&key_path(dir.path()).display().to_string()));
}

#[test]
fn a_key_readable_by_others_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o640, 0o604, 0o660, 0o644, 0o610] {
        let path = write_key_file(dir.path(), &format!("{KNOWN_SEED}\n"), mode);
        let error = load(dir.path()).unwrap_err();
        assert!(
            matches!(error, KeyError::InsecurePermissions { mode: m, .. } if m == mode),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        // load_or_create must not paper over it by making a new key.
        assert!(load_or_create(dir.path()).is_err());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{KNOWN_SEED}\n")
        );
    }
}

#[test]
fn malformed_key_files_are_refused_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let secretish = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
    for contents in [
        String::new(),
        "\n".to_owned(),
        format!("{}\n", &KNOWN_SEED[..62]),
        format!("{KNOWN_SEED}00\n"),
        format!("{}zz\n", &KNOWN_SEED[..62]),
        format!("{KNOWN_SEED}\n\n"),
        format!("{KNOWN_SEED}\r\n"),
        format!(" {KNOWN_SEED}\n"),
        format!("{secretish}\nextra line\n"),
        "é".repeat(32),
    ] {
        write_key_file(dir.path(), &contents, 0o600);
        let error = load(dir.path()).unwrap_err();
        assert!(
            matches!(error, KeyError::Malformed { .. }),
            "{contents:?}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("64 hex digits") && !message.contains(secretish),
            "{message}"
        );
    }
}

#[test]
fn a_directory_in_place_of_the_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(key_path(dir.path())).unwrap();
    fs::set_permissions(key_path(dir.path()), fs::Permissions::from_mode(0o700)).unwrap();
    let error = load(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            KeyError::Malformed {
                reason: "not a regular file",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn init_creates_a_key_in_an_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    let init = init(dir.path(), false, NOW).unwrap();
    assert!(init.previous.is_none());
    assert_eq!(
        init.to_string(),
        PublicKeyInfo::new(init.key.verifying_key()).to_string()
    );
    assert_eq!(
        load(dir.path()).unwrap().verifying_key(),
        init.key.verifying_key()
    );
    assert_eq!(mode_of(&key_path(dir.path())), 0o600);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key_file(dir.path(), &format!("{KNOWN_SEED}\n"), 0o600);
    let error = init(dir.path(), false, NOW).unwrap_err();
    assert!(matches!(error, KeyError::AlreadyExists { .. }), "{error:?}");
    assert!(error.to_string().contains("--force"), "{error}");
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{KNOWN_SEED}\n")
    );
    assert!(
        stray_files(dir.path()).is_empty(),
        "{:?}",
        stray_files(dir.path())
    );
}

#[test]
fn init_with_force_rotates_and_keeps_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    write_key_file(dir.path(), &format!("{KNOWN_SEED}\n"), 0o600);

    let first = init(dir.path(), true, NOW).unwrap();
    let previous = first.previous.clone().unwrap();
    let name = previous.file_name().unwrap().to_str().unwrap().to_owned();
    let time = name
        .strip_prefix("signing-key.")
        .and_then(|rest| rest.strip_suffix(".old"))
        .unwrap();
    assert_eq!(time, "1765000000", "{name}");
    assert_eq!(
        fs::read_to_string(&previous).unwrap(),
        format!("{KNOWN_SEED}\n")
    );
    assert_eq!(mode_of(&previous), 0o600);
    let current = load(dir.path()).unwrap();
    assert_eq!(current.verifying_key(), first.key.verifying_key());
    assert_ne!(current.verifying_key().fingerprint(), KNOWN_FINGERPRINT);

    let shown = first.to_string();
    assert!(
        shown.contains(&first.key.verifying_key().fingerprint()),
        "{shown}"
    );
    assert!(
        shown.ends_with(&format!("\nprevious:    {}", previous.display())),
        "{shown}"
    );

    // A second rotation within the same second keeps both old keys.
    let second = init(dir.path(), true, NOW).unwrap();
    let kept = second.previous.unwrap();
    assert_ne!(kept, previous);
    assert_eq!(
        load(dir.path()).unwrap().verifying_key(),
        second.key.verifying_key()
    );
    assert_eq!(
        fs::read_to_string(&kept).unwrap(),
        format!("{}\n", hex::encode(first.key.seed()))
    );
    assert!(
        stray_files(dir.path()).is_empty(),
        "{:?}",
        stray_files(dir.path())
    );
}

#[test]
fn init_with_force_replaces_a_broken_key_and_works_without_one() {
    let dir = tempfile::tempdir().unwrap();
    write_key_file(dir.path(), "garbage", 0o644);
    let init_result = init(dir.path(), true, NOW).unwrap();
    assert!(init_result.previous.is_some());
    assert_eq!(mode_of(&key_path(dir.path())), 0o600);
    load(dir.path()).unwrap();

    let empty = tempfile::tempdir().unwrap();
    let fresh = init(empty.path(), true, NOW).unwrap();
    assert!(fresh.previous.is_none());
    load(empty.path()).unwrap();
}

#[test]
fn public_key_info_shows_base64_and_fingerprint() {
    let key = SigningKey::from_seed(&hex::decode_array(KNOWN_SEED, "seed").unwrap()).unwrap();
    let info = PublicKeyInfo::from(key.verifying_key());
    assert_eq!(info.fingerprint, KNOWN_FINGERPRINT);
    assert_eq!(info.public_key_b64.len(), 2604);
    assert_eq!(
        &VerifyingKey::from_base64(&info.public_key_b64).unwrap(),
        key.verifying_key()
    );
    let shown = info.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines,
        [
            "algorithm:   ML-DSA-65",
            &format!("fingerprint: {KNOWN_FINGERPRINT}"),
            &format!("public key:  {}", info.public_key_b64),
        ]
    );
}
