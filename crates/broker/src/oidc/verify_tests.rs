//! ID tokens crafted with keys made here: each check refuses its fault, and the unknown
//! key id is told apart (the caller refetches the key set for it, bounded).

use openidconnect::core::{
    CoreEdDsaPrivateSigningKey, CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{ClientId, IssuerUrl, JsonWebKeyId, Nonce, PrivateSigningKey};
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://id.example.com";
const CLIENT: &str = "portcullis";

fn key(kid: &str) -> CoreEdDsaPrivateSigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    CoreEdDsaPrivateSigningKey::from_ed25519_pem(
        &pair.serialize_pem(),
        Some(JsonWebKeyId::new(kid.to_owned())),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(changes: Value) -> CoreIdTokenClaims {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": [CLIENT],
        "sub": "user-1",
        "exp": now() + 300,
        "iat": now(),
        "nonce": "the-nonce",
        "preferred_username": "alice",
    });
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    serde_json::from_value(claims).unwrap()
}

fn token(signer: &CoreEdDsaPrivateSigningKey, changes: Value) -> CoreIdToken {
    CoreIdToken::new(
        claims(changes),
        signer,
        CoreJwsSigningAlgorithm::EdDsa,
        None,
        None,
    )
    .unwrap()
}

fn verify(
    token: &CoreIdToken,
    published: &CoreEdDsaPrivateSigningKey,
) -> Result<Identity, TokenError> {
    let keys = CoreJsonWebKeySet::new(vec![published.as_verification_key()]);
    verify_id_token(
        token,
        &ClientId::new(CLIENT.to_owned()),
        &IssuerUrl::new(ISSUER.to_owned()).unwrap(),
        &keys,
        &Nonce::new("the-nonce".to_owned()),
    )
}

fn refused(result: Result<Identity, TokenError>) -> String {
    match result {
        Err(TokenError::Invalid(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_token_gives_its_subject_and_claims() {
    let signer = key("k1");
    let identity = verify(&token(&signer, json!({})), &signer).unwrap();
    assert_eq!(identity.subject, "user-1");
    assert_eq!(identity.string("preferred_username"), Some("alice"));
}

#[test]
fn group_claims_are_a_string_or_a_list_of_strings() {
    let identity = Identity {
        subject: "s".into(),
        claims: json!({ "groups": ["vpn-users", 7, "admins"], "role": "ops", "n": 3 })
            .as_object()
            .unwrap()
            .clone(),
    };
    assert_eq!(identity.strings("groups"), ["vpn-users", "admins"]);
    assert_eq!(identity.strings("role"), ["ops"]);
    assert!(identity.strings("n").is_empty());
    assert!(identity.strings("missing").is_empty());
}

#[test]
fn a_wrong_nonce_is_refused() {
    let signer = key("k1");
    let reason = refused(verify(
        &token(&signer, json!({ "nonce": "other" })),
        &signer,
    ));
    assert!(reason.to_lowercase().contains("nonce"), "{reason}");
}

#[test]
fn an_expired_token_is_refused() {
    let signer = key("k1");
    let expired = json!({ "exp": now() - 600, "iat": now() - 900 });
    let reason = refused(verify(&token(&signer, expired), &signer));
    assert!(reason.to_lowercase().contains("expired"), "{reason}");
}

#[test]
fn a_key_the_provider_does_not_publish_is_an_unknown_key() {
    let published = key("k1");
    let other = key("k2");
    assert!(matches!(
        verify(&token(&other, json!({})), &published),
        Err(TokenError::UnknownKey)
    ));
}

#[test]
fn a_forged_signature_under_a_published_key_id_is_refused() {
    let published = key("k1");
    let forger = key("k1");
    let reason = refused(verify(&token(&forger, json!({})), &published));
    assert!(reason.to_lowercase().contains("signature"), "{reason}");
}

#[test]
fn an_audience_for_another_client_is_refused() {
    let signer = key("k1");
    let reason = refused(verify(
        &token(&signer, json!({ "aud": ["other"] })),
        &signer,
    ));
    assert!(reason.to_lowercase().contains("audience"), "{reason}");
}

#[test]
fn another_issuer_is_refused() {
    let signer = key("k1");
    let reason = refused(verify(
        &token(&signer, json!({ "iss": "https://evil.example.com" })),
        &signer,
    ));
    assert!(reason.to_lowercase().contains("issuer"), "{reason}");
}
