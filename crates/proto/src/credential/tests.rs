//! Known answers (computed independently with Python's `hmac`, `hashlib` and
//! `cryptography` AES-GCM) and the refusals of [`CredentialKey::open`].

use super::*;
use crate::hex;

const TOKEN: &[u8] = b"c2Vzc2lvbiB0b2tlbiBmb3IgYSBrbm93biBhbnN3ZXI=";
const TICKET: &str = "PortcullisCredentialKnownAnswerTicket01234567890";
const SCRAMBLER: &str = "Scr4mblerKnownAnswer0123456789ab";
const PASSWORD: &[u8] = b"correct horse battery staple";

fn session_key() -> CredentialKey {
    CredentialKey::for_session(&[0x11; 32], TOKEN).unwrap()
}

#[test]
fn session_key_known_answer() {
    let key = session_key();
    assert_eq!(
        hex::encode(key.expose()),
        "5a9afe290ea07a49763d7254880e98e6a85228bb2d26b10a63ae4291e337b2ea"
    );
    assert_eq!(hex::encode(&key.id()), "c67aeed3579618a2");
}

#[test]
fn ticket_key_known_answer() {
    let key = CredentialKey::for_ticket(
        &TicketId::parse(TICKET).unwrap(),
        &Scrambler::parse(SCRAMBLER).unwrap(),
    )
    .unwrap();
    assert_eq!(
        hex::encode(key.expose()),
        "2fef651c0128bb1b8f9bf3f90cc48a6e634dae809bd5d96bc8b0d4616ba1e671"
    );
    assert_eq!(hex::encode(&key.id()), "d175d02da1689885");
}

#[test]
fn box_known_answer_and_round_trip() {
    let key = session_key();
    let aad = kdf::sha256(TOKEN);
    let nonce: [u8; 12] = core::array::from_fn(|i| i as u8);
    let sealed = key.seal_with_nonce(nonce, &aad, PASSWORD).unwrap();
    assert_eq!(
        hex::encode(&sealed),
        "01c67aeed3579618a2000102030405060708090a0b32206e62f76137b6570a5e80117359f0258f23fe\
         86350b4076f8e0ff0fc8ff0830357fa8600fd57bdeb2c3ce"
    );
    assert_eq!(key.open(&aad, &sealed).unwrap().expose(), PASSWORD);
    // A fresh nonce every time: two boxes of one secret differ.
    assert_ne!(
        key.seal(&aad, PASSWORD).unwrap(),
        key.seal(&aad, PASSWORD).unwrap()
    );
}

#[test]
fn scrambler_hash_known_answer() {
    assert_eq!(
        hex::encode(&scrambler_hash(SCRAMBLER)),
        "feb8e76094423f89e45115025a903dbfed45340d7dae2b4202713651108a1962"
    );
}

#[test]
fn neither_share_alone_gives_the_session_key() {
    let key = session_key();
    let other_row = CredentialKey::for_session(&[0x12; 32], TOKEN).unwrap();
    let other_cookie = CredentialKey::for_session(&[0x11; 32], b"another token").unwrap();
    let sealed = key.seal(b"row", PASSWORD).unwrap();
    for wrong in [other_row, other_cookie] {
        assert!(matches!(
            wrong.open(b"row", &sealed),
            Err(Error::Unsupported { .. })
        ));
    }
}

#[test]
fn another_scrambler_or_ticket_does_not_open() {
    let ticket = TicketId::parse(TICKET).unwrap();
    let key = CredentialKey::for_ticket(&ticket, &Scrambler::parse(SCRAMBLER).unwrap()).unwrap();
    let sealed = key.seal(b"t", PASSWORD).unwrap();
    let wrong_scrambler =
        CredentialKey::for_ticket(&ticket, &Scrambler::parse("Other").unwrap()).unwrap();
    assert!(wrong_scrambler.open(b"t", &sealed).is_err());
    let wrong_ticket = CredentialKey::for_ticket(
        &TicketId::generate().unwrap(),
        &Scrambler::parse(SCRAMBLER).unwrap(),
    )
    .unwrap();
    assert!(wrong_ticket.open(b"t", &sealed).is_err());
}

#[test]
fn tampering_another_row_and_malformed_boxes_are_refused() {
    let key = CredentialKey::generate().unwrap();
    let sealed = key.seal(b"row 1", PASSWORD).unwrap();
    assert_eq!(
        key.open(b"row 2", &sealed).unwrap_err(),
        Error::DecryptFailed
    );
    for index in 1 + KEY_ID_LEN..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x80;
        assert_eq!(
            key.open(b"row 1", &tampered).unwrap_err(),
            Error::DecryptFailed,
            "byte {index}"
        );
    }
    let mut wrong_version = sealed.clone();
    wrong_version[0] = 2;
    assert!(matches!(
        key.open(b"row 1", &wrong_version),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        key.open(b"row 1", &sealed[..BOX_OVERHEAD - 1]),
        Err(Error::Invalid { .. })
    ));
    // An empty secret seals and opens.
    let empty = key.seal(b"", b"").unwrap();
    assert_eq!(empty.len(), BOX_OVERHEAD);
    assert!(key.open(b"", &empty).unwrap().expose().is_empty());
}

#[test]
fn oversized_secrets_are_refused_and_debug_shows_nothing_secret() {
    let key = CredentialKey::from_bytes([0x41; 32]);
    assert!(matches!(
        key.seal(b"", &[0; MAX_SECRET_LEN + 1]),
        Err(Error::TooLarge { .. })
    ));
    let shown = format!("{key:?}");
    assert!(
        shown.starts_with("CredentialKey(id ") && !shown.contains("4141"),
        "{shown}"
    );
    let secret = key.open(b"", &key.seal(b"", PASSWORD).unwrap()).unwrap();
    assert_eq!(format!("{secret:?}"), "Secret(<28 bytes>)");
    assert_eq!(&*secret.to_text().unwrap(), "correct horse battery staple");
}
