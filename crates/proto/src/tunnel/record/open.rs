//! Opening records: one direction's key, base IV and counter, with sticky errors.

use core::fmt;

use aws_lc_rs::aead::Aad;

use super::{
    Control, DEFAULT_RECORD_LIMIT, DirectionKey, HEADER_LEN, IV_LEN, KEY_LEN, TAG_LEN,
    content_type, frame_len,
};
use crate::Error;

/// An opened record.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// Application bytes, decrypted in place in the caller's buffer.
    Data(&'a [u8]),
    /// A control record.
    Control(Control),
}

/// Opens the records one side receives on one connection.
///
/// Errors stick: after a failed call (bad header, failed authentication, unknown content,
/// exhausted counter) every later call returns the same error, so a connection that saw
/// one bad record can never be driven further.
pub struct RecordOpener {
    key: DirectionKey,
    opened: u64,
    limit: u64,
    failure: Option<Error>,
}

impl RecordOpener {
    pub(crate) fn new(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN]) -> Result<Self, Error> {
        Ok(Self {
            key: DirectionKey::new(key, iv)?,
            opened: 0,
            limit: DEFAULT_RECORD_LIMIT,
            failure: None,
        })
    }

    /// Sets how many records this direction may open (default [`DEFAULT_RECORD_LIMIT`]).
    pub fn set_record_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// How many records this direction may open.
    pub fn record_limit(&self) -> u64 {
        self.limit
    }

    /// How many records were opened so far (the next record's counter).
    pub fn records_opened(&self) -> u64 {
        self.opened
    }

    /// The error that ended this direction, if any.
    pub fn failure(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    /// The length of the frame at the start of `buf` (header included) once its header is
    /// there: `Ok(None)` for fewer than 4 bytes, an error for a length out of bounds.
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
        match buf.first_chunk::<HEADER_LEN>() {
            Some(header) => frame_len(*header).map(Some),
            None => Ok(None),
        }
    }

    /// Opens the record at the start of `buf`, decrypting it in place.
    ///
    /// Returns `Ok(None)` until `buf` holds a whole frame, then the record and the number of
    /// bytes it used. A header that announces a length out of bounds is an error as soon as
    /// its 4 bytes are there.
    pub fn open_in_place<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Option<(Record<'a>, usize)>, Error> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        match self.open(buf) {
            Ok(opened) => Ok(opened),
            Err(error) => {
                self.failure = Some(error.clone());
                Err(error)
            }
        }
    }

    fn open<'a>(&mut self, buf: &'a mut [u8]) -> Result<Option<(Record<'a>, usize)>, Error> {
        let Some(frame_len) = Self::frame_len(buf)? else {
            return Ok(None);
        };
        let Some(frame) = buf.get_mut(..frame_len) else {
            return Ok(None);
        };
        if self.opened >= self.limit {
            return Err(Error::CounterExhausted);
        }
        let (header, sealed) = frame.split_at_mut(HEADER_LEN);
        let plaintext = self
            .key
            .key
            .open_in_place(self.key.nonce(self.opened), Aad::from(&*header), sealed)
            .map_err(|_| Error::DecryptFailed)?;
        self.opened += 1;
        debug_assert_eq!(plaintext.len(), frame_len - HEADER_LEN - TAG_LEN);
        // `frame_len` refuses frames too short for a content type, so this cannot fail; if
        // it did, the bytes came from the peer: malformed input, not misuse.
        let (&mut content, body) = plaintext.split_first_mut().ok_or(Error::Invalid {
            what: "tunnel record",
            reason: "no content type",
        })?;
        let record = if content == content_type::DATA {
            Record::Data(body)
        } else {
            Record::Control(Control::decode(content, body)?)
        };
        Ok(Some((record, frame_len)))
    }
}

impl fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordOpener")
            .field("opened", &self.opened)
            .field("limit", &self.limit)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}
