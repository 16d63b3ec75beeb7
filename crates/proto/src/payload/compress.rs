//! bzip2 for the `script` and `params` fields, with bounded decompression.
//!
//! The launcher decompresses data that only the broker (or a man in the middle, before
//! signatures are checked) controls, so decompression is capped at [`MAX_DECOMPRESSED`]
//! bytes and never allocates more than the cap, however far the stream claims to expand.

use std::io::{ErrorKind, Read, Write};

use bzip2::Compression;
use bzip2::read::BzDecoder;
use bzip2::write::BzEncoder;
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// The most bytes a `script` or `params` field may decompress to: 8 MiB.
pub const MAX_DECOMPRESSED: usize = 8 * 1024 * 1024;

/// Bytes of input per bzip2 block-size step (the "level" of bzip2 is its block size in
/// units of 100 kB).
const BLOCK_STEP: usize = 100_000;

/// Size of the stack buffer decompressed data passes through.
const CHUNK: usize = 16 * 1024;

/// Compresses `data` into one bzip2 stream.
///
/// The block size is the smallest that holds the whole input (100 kB steps, at most
/// 900 kB): for inputs up to 900 kB the output is what the largest block size gives,
/// while the encoder and the launcher's decoder need far less memory for the small
/// `params` documents built on every exchange. Fails ([`Error::Crypto`], the backend
/// failure kind) only if the encoder itself fails, which in-memory output does not cause.
pub fn compress(data: &[u8]) -> Result<Vec<u8>, Error> {
    let level = data.len().div_ceil(BLOCK_STEP).clamp(1, 9);
    // `level` is 1..=9, so the conversion cannot fail.
    let level = u32::try_from(level).unwrap_or(9);
    let mut encoder = BzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::new(level),
    );
    encoder
        .write_all(data)
        .map_err(|_| Error::Crypto("bzip2 compression"))?;
    encoder
        .finish()
        .map_err(|_| Error::Crypto("bzip2 compression"))
}

/// Decompresses one bzip2 stream of at most [`MAX_DECOMPRESSED`] bytes.
///
/// `what` names the field in errors. See [`decompress_with_limit`].
pub fn decompress(data: &[u8], what: &'static str) -> Result<Zeroizing<Vec<u8>>, Error> {
    decompress_with_limit(data, what, MAX_DECOMPRESSED)
}

/// Decompresses exactly one bzip2 stream that must expand to at most `limit` bytes.
///
/// Refuses a corrupt or truncated stream and bytes after the end of the stream
/// ([`Error::Decompress`]), and a stream that expands beyond `limit`
/// ([`Error::DecompressedTooLarge`]). At most `limit + 1` bytes are ever read from the
/// decoder, and the output buffer never grows beyond `limit` bytes. The output (which may
/// hold secrets, such as the passwords in `params`) is zeroized on drop, and so is every
/// intermediate buffer.
pub fn decompress_with_limit(
    data: &[u8],
    what: &'static str,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut decoder = BzDecoder::new(data);
    let mut out = Zeroizing::new(Vec::new());
    let mut chunk = Zeroizing::new([0u8; CHUNK]);
    {
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let mut bounded = (&mut decoder).take(cap);
        loop {
            let read = match bounded.read(chunk.as_mut_slice()) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(Error::Decompress(what)),
            };
            let needed = out.len() + read;
            if needed > limit {
                return Err(Error::DecompressedTooLarge { what, limit });
            }
            if needed > out.capacity() {
                // Grow by doubling but never past the limit, copying into a fresh buffer so
                // that the old one is zeroized rather than freed with its contents.
                let capacity = out.capacity().saturating_mul(2).max(needed).min(limit);
                let mut bigger = Vec::with_capacity(capacity);
                bigger.extend_from_slice(&out);
                out.zeroize();
                *out = bigger;
            }
            out.extend_from_slice(&chunk[..read]);
        }
    }
    let consumed = usize::try_from(decoder.total_in()).unwrap_or(usize::MAX);
    if consumed != data.len() {
        return Err(Error::Decompress(what));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for data in [&b""[..], b"x", b"// js sample script", &[7u8; 300_000]] {
            let packed = compress(data).unwrap();
            assert!(packed.starts_with(b"BZh"));
            assert_eq!(decompress(&packed, "test").unwrap().as_slice(), data);
        }
    }

    #[test]
    fn block_size_follows_the_input() {
        assert_eq!(&compress(b"small").unwrap()[..4], b"BZh1");
        assert_eq!(&compress(&[1u8; 250_000]).unwrap()[..4], b"BZh3");
        assert_eq!(&compress(&[1u8; 2_000_000]).unwrap()[..4], b"BZh9");
    }

    #[test]
    fn decompresses_python_output() {
        // bz2.compress(b"// js sample script") as sent by OpenUDS 5 (block size 9).
        let packed = crate::b64::decode(
            "QlpoOTFBWSZTWXJ1UTUAAAIRgEAAqjZcACAAIiBtIe1CAaAMudG48I6NihWLuSKcKEg5OqiagA==",
            "t",
        )
        .unwrap();
        assert_eq!(
            decompress(&packed, "script").unwrap().as_slice(),
            b"// js sample script"
        );
    }

    #[test]
    fn limit_is_exact() {
        let data = vec![0u8; 1000];
        let packed = compress(&data).unwrap();
        assert_eq!(
            decompress_with_limit(&packed, "f", 1000).unwrap().len(),
            1000
        );
        assert_eq!(
            decompress_with_limit(&packed, "f", 999).unwrap_err(),
            Error::DecompressedTooLarge {
                what: "f",
                limit: 999
            }
        );
    }

    #[test]
    fn a_bomb_is_refused_without_growing_past_the_limit() {
        let bomb = compress(&vec![0u8; 9 * 1024 * 1024]).unwrap();
        assert!(bomb.len() < 1024, "{} bytes", bomb.len());
        assert_eq!(
            decompress(&bomb, "params").unwrap_err(),
            Error::DecompressedTooLarge {
                what: "params",
                limit: MAX_DECOMPRESSED
            }
        );
        let exactly = compress(&vec![0u8; MAX_DECOMPRESSED]).unwrap();
        let out = decompress(&exactly, "params").unwrap();
        assert_eq!(out.len(), MAX_DECOMPRESSED);
        assert!(out.capacity() <= MAX_DECOMPRESSED);
    }

    #[test]
    fn corrupt_input_is_refused() {
        let packed = compress(b"hello hello hello").unwrap();
        assert_eq!(decompress(b"", "f").unwrap_err(), Error::Decompress("f"));
        assert_eq!(
            decompress(b"not bzip2", "f").unwrap_err(),
            Error::Decompress("f")
        );
        assert_eq!(
            decompress(&packed[..packed.len() - 3], "f").unwrap_err(),
            Error::Decompress("f")
        );
        let mut flipped = packed.clone();
        flipped[20] ^= 0x55;
        assert_eq!(
            decompress(&flipped, "f").unwrap_err(),
            Error::Decompress("f")
        );
        let mut trailing = packed;
        trailing.extend_from_slice(b"junk");
        assert_eq!(
            decompress(&trailing, "f").unwrap_err(),
            Error::Decompress("f")
        );
    }
}
