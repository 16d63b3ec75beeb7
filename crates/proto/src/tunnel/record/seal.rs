//! Sealing records: one direction's key, base IV and counter.

use core::fmt;

use aws_lc_rs::aead::Aad;

use super::{
    Control, DEFAULT_RECORD_LIMIT, DirectionKey, HEADER_LEN, IV_LEN, KEY_LEN, MAX_PLAINTEXT,
    OVERHEAD, PAYLOAD_OFFSET, TAG_LEN, content_type, header,
};
use crate::Error;

/// Seals the records one side sends on one connection.
///
/// The counter starts at 0 and increases by one per record; once [`Self::record_limit`]
/// records are sealed every further call returns [`Error::CounterExhausted`] and the
/// connection must be closed (and may be resumed, which brings fresh keys).
pub struct RecordSealer {
    key: DirectionKey,
    sealed: u64,
    limit: u64,
}

impl RecordSealer {
    pub(crate) fn new(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN]) -> Result<Self, Error> {
        Ok(Self {
            key: DirectionKey::new(key, iv)?,
            sealed: 0,
            limit: DEFAULT_RECORD_LIMIT,
        })
    }

    /// Sets how many records this direction may seal (default [`DEFAULT_RECORD_LIMIT`]).
    pub fn set_record_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// How many records this direction may seal.
    pub fn record_limit(&self) -> u64 {
        self.limit
    }

    /// How many records were sealed so far (the next record's counter).
    pub fn records_sealed(&self) -> u64 {
        self.sealed
    }

    /// Seals a Data record in place.
    ///
    /// The caller wrote `payload_len` bytes of application data at
    /// `frame[PAYLOAD_OFFSET..]`; `frame` must hold at least `OVERHEAD + payload_len` bytes.
    /// Writes header, content type, ciphertext and tag, and returns the frame's length
    /// (`OVERHEAD + payload_len`), to be written to the connection in one piece.
    pub fn seal_in_place(&mut self, frame: &mut [u8], payload_len: usize) -> Result<usize, Error> {
        if payload_len > MAX_PLAINTEXT {
            return Err(Error::TooLarge {
                what: "tunnel record payload",
                got: payload_len,
                max: MAX_PLAINTEXT,
            });
        }
        let frame = frame
            .get_mut(..OVERHEAD + payload_len)
            .ok_or(Error::Misuse(
                "frame too small for the payload and the record overhead",
            ))?;
        self.seal_frame(content_type::DATA, frame)?;
        Ok(frame.len())
    }

    /// Seals `data` as one Data record appended to `out` (at most [`MAX_PLAINTEXT`] bytes).
    pub fn seal_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.resize(start + OVERHEAD + data.len(), 0);
        out[start + PAYLOAD_OFFSET..start + PAYLOAD_OFFSET + data.len()].copy_from_slice(data);
        match self.seal_in_place(&mut out[start..], data.len()) {
            Ok(_) => Ok(()),
            Err(error) => {
                out.truncate(start);
                Err(error)
            }
        }
    }

    /// Seals a control record appended to `out`.
    pub fn seal_control(&mut self, control: &Control, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.resize(start + PAYLOAD_OFFSET, 0);
        let sealed = control.encode_body(out).and_then(|()| {
            out.resize(out.len() + TAG_LEN, 0);
            self.seal_frame(control.content_type(), &mut out[start..])
        });
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }

    /// Seals `frame` = header space, content type space, body, tag space.
    pub(super) fn seal_frame(&mut self, content_type: u8, frame: &mut [u8]) -> Result<(), Error> {
        if self.sealed >= self.limit {
            return Err(Error::CounterExhausted);
        }
        let header = header(frame.len());
        frame[..HEADER_LEN].copy_from_slice(&header);
        frame[HEADER_LEN] = content_type;
        let tag_start = frame.len() - TAG_LEN;
        let (sealed, tag_space) = frame.split_at_mut(tag_start);
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(
                self.key.nonce(self.sealed),
                Aad::from(header),
                &mut sealed[HEADER_LEN..],
            )
            .map_err(|_| Error::Crypto("AES-256-GCM seal"))?;
        tag_space.copy_from_slice(tag.as_ref());
        self.sealed += 1;
        Ok(())
    }
}

impl fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSealer")
            .field("sealed", &self.sealed)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
