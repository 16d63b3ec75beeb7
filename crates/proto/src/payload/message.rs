//! The canonical message of the payload signature (docs/protocol.md §9, difference 5).
//!
//! ```text
//! message = "portcullis payload signature v1"   31 ASCII bytes
//!        || 0x00                                  1 byte
//!        || SHA-256(script)                      32 bytes (uncompressed script)
//!        || SHA-256(params)                      32 bytes (uncompressed params JSON)
//!        || ticket id                            48 ASCII bytes (the client ticket)
//!        || SHA-256(client encapsulation key)    32 bytes (the raw 1184-byte ML-KEM-768 key)
//!                                               176 bytes in all
//! payload_signature = ML-DSA-65.Sign(broker key, message, context = empty)
//! ```
//!
//! Every part has a fixed length, so the encoding is unambiguous without length prefixes.

use crate::kem::EncapsulationKey;
use crate::{TicketId, kdf};

/// The domain-separation label at the start of the message (without the 0x00 after it).
pub const PAYLOAD_SIGNATURE_LABEL: &[u8; 31] = b"portcullis payload signature v1";

/// Length of the canonical payload-signature message.
pub const PAYLOAD_SIGNATURE_MESSAGE_LEN: usize = 31 + 1 + 32 + 32 + TicketId::LEN + 32;

/// Builds the canonical message the payload signature covers, from the uncompressed
/// script and params bytes, the client ticket and the launcher's ML-KEM-768 key.
pub fn payload_signature_message(
    script: &[u8],
    params: &[u8],
    ticket: &TicketId,
    client_key: &EncapsulationKey,
) -> [u8; PAYLOAD_SIGNATURE_MESSAGE_LEN] {
    message_from_digests(
        &kdf::sha256(script),
        &kdf::sha256(params),
        ticket,
        &kdf::sha256(client_key.as_bytes()),
    )
}

/// The same message from precomputed digests.
pub(crate) fn message_from_digests(
    script_digest: &[u8; 32],
    params_digest: &[u8; 32],
    ticket: &TicketId,
    client_key_digest: &[u8; 32],
) -> [u8; PAYLOAD_SIGNATURE_MESSAGE_LEN] {
    let mut message = [0u8; PAYLOAD_SIGNATURE_MESSAGE_LEN];
    let parts: [&[u8]; 6] = [
        PAYLOAD_SIGNATURE_LABEL,
        &[0],
        script_digest,
        params_digest,
        ticket.as_bytes(),
        client_key_digest,
    ];
    let mut at = 0;
    for part in parts {
        message[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, PAYLOAD_SIGNATURE_MESSAGE_LEN);
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::kem::DecapsulationKey;

    #[test]
    fn layout() {
        assert_eq!(PAYLOAD_SIGNATURE_MESSAGE_LEN, 176);
        let pair = DecapsulationKey::generate().unwrap();
        let ticket = TicketId::generate().unwrap();
        let message = payload_signature_message(b"s", b"{}", &ticket, pair.encapsulation_key());
        assert_eq!(&message[..31], PAYLOAD_SIGNATURE_LABEL);
        assert_eq!(message[31], 0);
        assert_eq!(message[32..64], kdf::sha256(b"s"));
        assert_eq!(message[64..96], kdf::sha256(b"{}"));
        assert_eq!(&message[96..144], ticket.expose().as_bytes());
        assert_eq!(
            message[144..176],
            kdf::sha256(pair.encapsulation_key().as_bytes())
        );
    }
}
