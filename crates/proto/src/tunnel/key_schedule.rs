//! The tunnel key schedule: tunnel secret → session key → handshake MAC keys →
//! per-connection record keys.
//!
//! ```text
//! tunnel secret S   = HKDF(salt = ticket id, IKM = KEM shared secret ss,
//!                          info = "portcullis tunnel v1 secret", 32)   (legacy servers: S = ss)
//! session key (PRK) = HKDF-Extract(salt = ticket id (48 ASCII bytes), IKM = shared secret)
//! k_proof   = HKDF-Expand(PRK, "portcullis tunnel v1 proof", 32)
//! k_confirm = HKDF-Expand(PRK, "portcullis tunnel v1 confirm", 32)
//! keys      = HKDF-Expand(PRK, "portcullis tunnel v1 connection keys" || cr || sr, 88)
//! ```

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::tunnel::record::{IV_LEN, KEY_LEN, RecordOpener, RecordSealer};
use crate::tunnel::{ClientHello, MAC_LEN, Random, ServerMessage};
use crate::{ConnectionId, Error, SessionId, SharedSecret, TicketId, constant_time_eq, kdf};

/// HKDF info of the proof key.
pub(crate) const PROOF_LABEL: &[u8] = b"portcullis tunnel v1 proof";
/// HKDF info of the confirmation key.
pub(crate) const CONFIRM_LABEL: &[u8] = b"portcullis tunnel v1 confirm";
/// HKDF info prefix of the per-connection keys (followed by both randoms).
pub(crate) const CONNECTION_KEYS_LABEL: &[u8] = b"portcullis tunnel v1 connection keys";
/// HKDF info of the tunnel secret a v1 tunnel server receives in place of the KEM secret.
pub const TUNNEL_SECRET_LABEL: &[u8] = b"portcullis tunnel v1 secret";
/// Length of the per-connection key material.
pub(crate) const CONNECTION_KEYS_LEN: usize = 2 * (KEY_LEN + IV_LEN);

/// The key of a tunnel session: `HKDF-Extract(salt = ticket id, IKM = shared secret)`.
///
/// The tunnel server keeps it for the session's life; the launcher keeps it (with the
/// session id, as [`SessionCredentials`]) to attach and resume connections. No `Clone`, no
/// bytes in `Debug`, zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKey([u8; kdf::PRK_LEN]);

impl SessionKey {
    /// Derives the session key of a tunnel ticket.
    pub fn derive(secret: &SharedSecret, ticket: &TicketId) -> Self {
        Self(*kdf::extract(ticket.as_bytes(), secret.expose()))
    }

    /// An independent copy (zeroized on its own drop).
    pub(crate) fn duplicate(&self) -> Self {
        Self(self.0)
    }

    /// The proof and confirmation keys.
    pub(crate) fn handshake_keys(&self) -> Result<HandshakeKeys, Error> {
        let mut keys = HandshakeKeys {
            proof: [0; MAC_LEN],
            confirm: [0; MAC_LEN],
        };
        kdf::expand(&self.0, &[PROOF_LABEL], &mut keys.proof)?;
        kdf::expand(&self.0, &[CONFIRM_LABEL], &mut keys.confirm)?;
        Ok(keys)
    }

    /// The record keys of one connection, from both randoms.
    pub(crate) fn connection_keys(
        &self,
        client_random: &Random,
        server_random: &Random,
    ) -> Result<ConnectionKeys, Error> {
        let mut okm = Zeroizing::new([0u8; CONNECTION_KEYS_LEN]);
        let info: [&[u8]; 3] = [CONNECTION_KEYS_LABEL, client_random, server_random];
        kdf::expand(&self.0, &info, okm.as_mut_slice())?;
        let mut keys = ConnectionKeys {
            client_to_server_key: [0; KEY_LEN],
            client_to_server_iv: [0; IV_LEN],
            server_to_client_key: [0; KEY_LEN],
            server_to_client_iv: [0; IV_LEN],
        };
        let (c2s, s2c) = okm.split_at(KEY_LEN + IV_LEN);
        keys.client_to_server_key.copy_from_slice(&c2s[..KEY_LEN]);
        keys.client_to_server_iv.copy_from_slice(&c2s[KEY_LEN..]);
        keys.server_to_client_key.copy_from_slice(&s2c[..KEY_LEN]);
        keys.server_to_client_iv.copy_from_slice(&s2c[KEY_LEN..]);
        Ok(keys)
    }

    #[cfg(test)]
    pub(crate) fn expose_for_test(&self) -> &[u8; kdf::PRK_LEN] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// What a launcher keeps to attach and resume connections of a session.
#[derive(Debug)]
pub struct SessionCredentials {
    session_id: SessionId,
    key: SessionKey,
}

impl SessionCredentials {
    /// Pairs a session id with its key.
    pub fn new(session_id: SessionId, key: SessionKey) -> Self {
        Self { session_id, key }
    }

    /// The session id.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// The session key.
    pub fn key(&self) -> &SessionKey {
        &self.key
    }
}

/// The two handshake MAC keys. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct HandshakeKeys {
    proof: [u8; MAC_LEN],
    confirm: [u8; MAC_LEN],
}

impl HandshakeKeys {
    /// `proof = HMAC-SHA256(k_proof, transcript)`.
    pub(crate) fn proof(&self, transcript: &Transcript) -> [u8; MAC_LEN] {
        kdf::hmac_sha256(&self.proof, &[&transcript.0])
    }

    /// Checks a proof in constant time.
    pub(crate) fn verify_proof(
        &self,
        transcript: &Transcript,
        proof: &[u8; MAC_LEN],
    ) -> Result<(), Error> {
        if constant_time_eq(&self.proof(transcript), proof) {
            Ok(())
        } else {
            Err(Error::BadProof("proof"))
        }
    }

    /// `confirm = HMAC-SHA256(k_confirm, transcript || proof || session_id ||
    /// connection_id u32 || server_received u64)`.
    pub(crate) fn confirm(
        &self,
        transcript: &Transcript,
        proof: &[u8; MAC_LEN],
        accepted: &Accepted,
    ) -> [u8; MAC_LEN] {
        kdf::hmac_sha256(
            &self.confirm,
            &[
                &transcript.0,
                proof,
                accepted.session_id.as_bytes(),
                &accepted.connection_id.0.to_be_bytes(),
                &accepted.server_received.to_be_bytes(),
            ],
        )
    }

    /// Checks a confirmation in constant time.
    pub(crate) fn verify_confirm(
        &self,
        transcript: &Transcript,
        proof: &[u8; MAC_LEN],
        accepted: &Accepted,
        confirm: &[u8; MAC_LEN],
    ) -> Result<(), Error> {
        if constant_time_eq(&self.confirm(transcript, proof, accepted), confirm) {
            Ok(())
        } else {
            Err(Error::BadProof("confirm"))
        }
    }

    #[cfg(test)]
    pub(crate) fn expose_for_test(&self) -> (&[u8; MAC_LEN], &[u8; MAC_LEN]) {
        (&self.proof, &self.confirm)
    }
}

/// The fields of an `Accept` that its confirmation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) session_id: SessionId,
    pub(crate) connection_id: ConnectionId,
    pub(crate) server_received: u64,
}

/// The handshake transcript: the exact client hello bytes followed by the exact
/// `Challenge` bytes. Zeroized on drop (an `Open` hello holds the ticket id).
pub(crate) struct Transcript(Zeroizing<Vec<u8>>);

impl fmt::Debug for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transcript({} bytes)", self.0.len())
    }
}

impl Transcript {
    /// Encodes the transcript of `hello` answered by a challenge with `server_random`.
    pub(crate) fn new(hello: &ClientHello, server_random: &Random) -> Self {
        let mut bytes = Zeroizing::new(Vec::with_capacity(
            ClientHello::MAX_LEN + ServerMessage::CHALLENGE_LEN,
        ));
        hello.encode(&mut bytes);
        ServerMessage::Challenge {
            server_random: *server_random,
        }
        .encode(&mut bytes);
        Self(bytes)
    }
}

/// Key and base IV of both directions of one connection. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct ConnectionKeys {
    client_to_server_key: [u8; KEY_LEN],
    client_to_server_iv: [u8; IV_LEN],
    server_to_client_key: [u8; KEY_LEN],
    server_to_client_iv: [u8; IV_LEN],
}

impl ConnectionKeys {
    /// The client's sealer (client → server) and opener (server → client).
    pub(crate) fn client_side(&self) -> Result<(RecordSealer, RecordOpener), Error> {
        Ok((
            RecordSealer::new(&self.client_to_server_key, &self.client_to_server_iv)?,
            RecordOpener::new(&self.server_to_client_key, &self.server_to_client_iv)?,
        ))
    }

    /// The server's sealer (server → client) and opener (client → server).
    pub(crate) fn server_side(&self) -> Result<(RecordSealer, RecordOpener), Error> {
        Ok((
            RecordSealer::new(&self.server_to_client_key, &self.server_to_client_iv)?,
            RecordOpener::new(&self.client_to_server_key, &self.client_to_server_iv)?,
        ))
    }

    #[cfg(test)]
    pub(crate) fn expose_for_test(&self) -> [&[u8]; 4] {
        [
            &self.client_to_server_key,
            &self.client_to_server_iv,
            &self.server_to_client_key,
            &self.server_to_client_iv,
        ]
    }
}

/// The tunnel secret `S` of a ticket for a tunnel protocol v1 server:
/// `HKDF(salt = T, IKM = ss, info = TUNNEL_SECRET_LABEL, 32)`.
///
/// `ss`, the ML-KEM shared secret of the ticket exchange, also keys the payload envelope;
/// the broker hands a v1 tunnel server this derived secret instead, and the launcher
/// derives the same, so no tunnel server can open a payload envelope (docs/protocol.md
/// §6.7). Only legacy (OpenUDS 5) tunnel servers receive `ss` itself.
pub fn derive_tunnel_secret(
    kem_shared_secret: &SharedSecret,
    ticket: &TicketId,
) -> Result<SharedSecret, Error> {
    let prk = kdf::extract(ticket.as_bytes(), kem_shared_secret.expose());
    let mut secret = Zeroizing::new([0u8; SharedSecret::LEN]);
    kdf::expand(&prk, &[TUNNEL_SECRET_LABEL], secret.as_mut_slice())?;
    Ok(SharedSecret::from_bytes(*secret))
}

/// The proof a client sends after the `Challenge` of an `Open`: what the launcher computes
/// and what the broker checks.
pub fn compute_open_proof(
    secret: &SharedSecret,
    ticket: &TicketId,
    client_random: &Random,
    server_random: &Random,
) -> Result<[u8; MAC_LEN], Error> {
    let hello = ClientHello::Open {
        ticket: ticket.clone(),
        client_random: *client_random,
    };
    let transcript = Transcript::new(&hello, server_random);
    let keys = SessionKey::derive(secret, ticket).handshake_keys()?;
    Ok(keys.proof(&transcript))
}

/// The broker's check of an `Open` proof, in constant time, before it consumes the ticket.
///
/// Rebuilds the transcript (`Open` hello and `Challenge`) from the ticket and both randoms
/// the tunnel server passed on. A mismatch is `Error::BadProof("proof")`.
pub fn verify_open_proof(
    secret: &SharedSecret,
    ticket: &TicketId,
    client_random: &Random,
    server_random: &Random,
    proof: &[u8; MAC_LEN],
) -> Result<(), Error> {
    let hello = ClientHello::Open {
        ticket: ticket.clone(),
        client_random: *client_random,
    };
    let transcript = Transcript::new(&hello, server_random);
    SessionKey::derive(secret, ticket)
        .handshake_keys()?
        .verify_proof(&transcript, proof)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ticket() -> TicketId {
        TicketId::parse(&"T".repeat(48)).unwrap()
    }

    #[test]
    fn open_proof_verifies_and_rejects_changes() {
        let secret = SharedSecret::from_bytes([1; 32]);
        let proof = compute_open_proof(&secret, &ticket(), &[2; 32], &[3; 32]).unwrap();
        assert_eq!(
            verify_open_proof(&secret, &ticket(), &[2; 32], &[3; 32], &proof),
            Ok(())
        );
        let bad = Err(Error::BadProof("proof"));
        let other_secret = SharedSecret::from_bytes([9; 32]);
        assert_eq!(
            verify_open_proof(&other_secret, &ticket(), &[2; 32], &[3; 32], &proof),
            bad
        );
        let other_ticket = TicketId::parse(&"U".repeat(48)).unwrap();
        assert_eq!(
            verify_open_proof(&secret, &other_ticket, &[2; 32], &[3; 32], &proof),
            bad
        );
        assert_eq!(
            verify_open_proof(&secret, &ticket(), &[4; 32], &[3; 32], &proof),
            bad
        );
        assert_eq!(
            verify_open_proof(&secret, &ticket(), &[2; 32], &[4; 32], &proof),
            bad
        );
        let mut flipped = proof;
        flipped[31] ^= 1;
        assert_eq!(
            verify_open_proof(&secret, &ticket(), &[2; 32], &[3; 32], &flipped),
            bad
        );
    }

    #[test]
    fn the_tunnel_secret_is_bound_to_the_ticket_and_is_not_the_kem_secret() {
        let ss = SharedSecret::from_bytes([7; 32]);
        let other = TicketId::parse(&"U".repeat(48)).unwrap();
        let a = derive_tunnel_secret(&ss, &ticket()).unwrap();
        let b = derive_tunnel_secret(&ss, &other).unwrap();
        assert_ne!(a.expose(), ss.expose());
        assert_ne!(a.expose(), b.expose());
        // Deterministic: the launcher and the broker derive the same secret.
        assert_eq!(
            a.expose(),
            derive_tunnel_secret(&ss, &ticket()).unwrap().expose()
        );
        assert_eq!(TUNNEL_SECRET_LABEL.len(), 27);
    }

    #[test]
    fn different_randoms_give_different_connection_keys() {
        let key = SessionKey::derive(&SharedSecret::from_bytes([1; 32]), &ticket());
        let a = key.connection_keys(&[1; 32], &[2; 32]).unwrap();
        let b = key.connection_keys(&[1; 32], &[3; 32]).unwrap();
        let c = key.connection_keys(&[4; 32], &[2; 32]).unwrap();
        let (a, b, c) = (
            a.expose_for_test(),
            b.expose_for_test(),
            c.expose_for_test(),
        );
        for i in 0..4 {
            assert_ne!(a[i], b[i]);
            assert_ne!(a[i], c[i]);
        }
        assert_ne!(a[0], a[2], "the two directions have different keys");
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let key = SessionKey::derive(&SharedSecret::from_bytes([1; 32]), &ticket());
        let credentials = SessionCredentials::new(SessionId::from_bytes([0; 16]), key);
        let shown = format!("{credentials:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
