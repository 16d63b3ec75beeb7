//! Small value types shared by the store's tables: row ids and token hashes.

use core::fmt;

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

row_id!(
    /// The row id of a user.
    UserId
);
row_id!(
    /// The row id of a group.
    GroupId
);
row_id!(
    /// The row id of a service.
    ServiceId
);
row_id!(
    /// The row id of a tunnel server.
    TunnelServerId
);

/// The stored form of a bearer token (a login session token or a tunnel server's token):
/// its SHA-256 hash.
///
/// Tokens are high-entropy random strings, so a fast hash is the right tool: a dump of the
/// database does not let anyone present a token, and lookups stay one indexed equality.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; TokenHash::LEN]);

impl TokenHash {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Hashes a token as presented by a client (`sk-…` prefixes and all: hash what is
    /// compared).
    pub fn of(token: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
        let mut out = [0u8; Self::LEN];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// Wraps 32 bytes that already are a token hash.
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The hash bytes, as stored.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_and_redacted() {
        let hash = TokenHash::of(b"abc");
        assert_eq!(
            hash.as_bytes()[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(\"abc\") starts with ba7816bf"
        );
        assert_eq!(format!("{hash:?}"), "TokenHash(<redacted>)");
    }
}
