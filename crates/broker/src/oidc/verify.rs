//! ID-token verification: signature (by a key of the provider's key set, asymmetric
//! algorithms only), issuer, audience, expiry and nonce; then the claims the broker reads.

use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, IssuerUrl, Nonce, SignatureVerificationError,
};
use portcullis_proto::b64;
use serde_json::{Map, Value};

/// The most group values read from a claim.
const MAX_GROUP_VALUES: usize = 1000;

/// Why an ID token was refused (for the operator's log; users see a plain sentence).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Signed with a key id the provider's key set does not have (yet).
    #[error("the ID token is signed with a key the provider does not publish")]
    UnknownKey,
    /// Any other failed check (signature, issuer, audience, expiry, nonce, format).
    #[error("the ID token was refused: {0}")]
    Invalid(String),
}

/// A verified ID token's subject and claims.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `sub`: the provider's stable id of the user.
    pub subject: String,
    /// Every claim of the token.
    pub claims: Map<String, Value>,
}

/// The signature algorithms accepted: the asymmetric ones (not `none`, not the `HS*`
/// algorithms keyed by the client secret).
fn allowed_algorithms() -> [CoreJwsSigningAlgorithm; 10] {
    use CoreJwsSigningAlgorithm as A;
    [
        A::RsaSsaPkcs1V15Sha256,
        A::RsaSsaPkcs1V15Sha384,
        A::RsaSsaPkcs1V15Sha512,
        A::RsaSsaPssSha256,
        A::RsaSsaPssSha384,
        A::RsaSsaPssSha512,
        A::EcdsaP256Sha256,
        A::EcdsaP384Sha384,
        A::EcdsaP521Sha512,
        A::EdDsa,
    ]
}

/// Verifies `token` for `client_id` from `issuer` with `keys` and the expected `nonce`.
pub fn verify_id_token(
    token: &CoreIdToken,
    client_id: &ClientId,
    issuer: &IssuerUrl,
    keys: &CoreJsonWebKeySet,
    nonce: &Nonce,
) -> Result<Identity, TokenError> {
    let verifier =
        CoreIdTokenVerifier::new_public_client(client_id.clone(), issuer.clone(), keys.clone())
            .set_allowed_algs(allowed_algorithms());
    let claims = token
        .claims(&verifier, nonce)
        .map_err(|error| match error {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => TokenError::UnknownKey,
            other => TokenError::Invalid(other.to_string()),
        })?;
    let subject = claims.subject().as_str().to_owned();
    Ok(Identity {
        subject,
        claims: payload(token)?,
    })
}

/// The claims of a (verified) compact JWT, as JSON.
fn payload(token: &CoreIdToken) -> Result<Map<String, Value>, TokenError> {
    let invalid = |what: &str| TokenError::Invalid(format!("unreadable claims: {what}"));
    let compact = serde_json::to_value(token).map_err(|_| invalid("not serializable"))?;
    let part = compact
        .as_str()
        .and_then(|text| text.split('.').nth(1))
        .ok_or_else(|| invalid("not a compact JWT"))?;
    let mut standard: String = part
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    while standard.len() % 4 != 0 {
        standard.push('=');
    }
    let json = b64::decode(&standard, "ID token").map_err(|_| invalid("not base64url"))?;
    serde_json::from_slice(&json).map_err(|_| invalid("not a JSON object"))
}

impl Identity {
    /// A claim that is a non-empty string.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The values of a claim that is a string or a list of strings (others ignored).
    pub fn strings(&self, name: &str) -> Vec<String> {
        match self.claims.get(name) {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(values)) => values
                .iter()
                .filter_map(Value::as_str)
                .take(MAX_GROUP_VALUES)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `email_verified`, as a boolean or the strings `"true"`/`"false"`.
    pub fn email_verified(&self) -> Option<bool> {
        match self.claims.get("email_verified") {
            Some(Value::Bool(verified)) => Some(*verified),
            Some(Value::String(text)) => text.parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
