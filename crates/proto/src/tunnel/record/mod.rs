//! The record layer: length-prefixed AES-256-GCM frames with typed contents.
//!
//! ```text
//! frame  = header [4] || ciphertext || tag [16]
//! header = u32 length of (ciphertext || tag) = 1 + body length + 16
//! inner plaintext = content type u8 || body
//! nonce  = base IV XOR (0x00000000 || record counter u64)
//! AAD    = header
//! ```
//!
//! Each direction has its own key, base IV and implicit counter that starts at 0 on every
//! connection. [`RecordSealer`] and [`RecordOpener`] work in place in the caller's buffers.

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, Nonce, UnboundKey};

use crate::Error;

mod control;
mod open;
mod seal;

pub use control::{Control, MAX_ERROR_MESSAGE};
pub use open::{Record, RecordOpener};
pub use seal::RecordSealer;

/// Length of the record header (the `u32` length).
pub const HEADER_LEN: usize = 4;
/// Length of the AES-256-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to its body: header, content type and tag.
pub const OVERHEAD: usize = HEADER_LEN + 1 + TAG_LEN;
/// Where the body starts in a frame (after the header and the content type).
pub const PAYLOAD_OFFSET: usize = HEADER_LEN + 1;
/// The largest body of a record.
pub const MAX_PLAINTEXT: usize = 65536;
/// The body size senders use for data by default.
pub const DEFAULT_PLAINTEXT: usize = 16384;
/// The largest frame, header included.
pub const MAX_RECORD_LEN: usize = OVERHEAD + MAX_PLAINTEXT;
/// Records one direction of a connection may carry before the sender must close it.
pub const DEFAULT_RECORD_LIMIT: u64 = 1 << 24;

/// Length of an AES-256-GCM key.
pub(crate) const KEY_LEN: usize = 32;
/// Length of a base IV (and of a nonce).
pub(crate) const IV_LEN: usize = 12;

/// Smallest value of the header's length field: content type and tag.
const MIN_SEALED_LEN: usize = 1 + TAG_LEN;
/// Largest value of the header's length field.
const MAX_SEALED_LEN: usize = MAX_RECORD_LEN - HEADER_LEN;

/// Content types of the inner plaintext.
pub(crate) mod content_type {
    pub(crate) const DATA: u8 = 0x00;
    pub(crate) const ACK: u8 = 0x01;
    pub(crate) const PING: u8 = 0x02;
    pub(crate) const PONG: u8 = 0x03;
    pub(crate) const CLOSE: u8 = 0x04;
    pub(crate) const END_SESSION: u8 = 0x05;
    pub(crate) const ERROR: u8 = 0x06;
    pub(crate) const SESSION_ENDED: u8 = 0x07;
}

/// Checks a header and returns the length of the frame it announces, header included.
fn frame_len(header: [u8; HEADER_LEN]) -> Result<usize, Error> {
    let sealed = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if sealed > MAX_SEALED_LEN {
        return Err(Error::TooLarge {
            what: "tunnel record",
            got: sealed,
            max: MAX_SEALED_LEN,
        });
    }
    if sealed < MIN_SEALED_LEN {
        return Err(Error::Invalid {
            what: "tunnel record",
            reason: "length shorter than a content type and a tag",
        });
    }
    Ok(HEADER_LEN + sealed)
}

/// The header of a frame whose total length (header included) is `frame_len`.
fn header(frame_len: usize) -> [u8; HEADER_LEN] {
    // Callers bound `frame_len` by MAX_RECORD_LEN, far below u32::MAX.
    u32::try_from(frame_len.saturating_sub(HEADER_LEN))
        .unwrap_or(u32::MAX)
        .to_be_bytes()
}

/// The AEAD key and base IV of one direction.
struct DirectionKey {
    key: LessSafeKey,
    iv: zeroize::Zeroizing<[u8; IV_LEN]>,
}

impl DirectionKey {
    fn new(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN]) -> Result<Self, Error> {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Crypto("AES-256-GCM key"))?;
        Ok(Self {
            key,
            iv: zeroize::Zeroizing::new(*iv),
        })
    }

    /// `base IV XOR (0x00000000 || counter)`.
    fn nonce(&self, counter: u64) -> Nonce {
        let mut nonce = *self.iv;
        for (byte, counter_byte) in nonce[IV_LEN - 8..].iter_mut().zip(counter.to_be_bytes()) {
            *byte ^= counter_byte;
        }
        Nonce::assume_unique_for_key(nonce)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
