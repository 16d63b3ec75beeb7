//! Protocol versions, compared as semver (docs/protocol.md §9, difference 6).

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A `major.minor.patch` version, as in the `version` field of ticket requests and the
/// `available_version` / `required_version` fields of the client API.
///
/// Ordering is semver precedence for release versions: numeric, major first. (OpenUDS 5
/// compares these strings lexicographically, so that `"10.0.0" < "9.0.0"`.) Pre-release
/// and build suffixes are not accepted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ProtocolVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

/// The protocol version Portcullis speaks and sends: `5.0.0`, OpenUDS 5's.
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::new(5, 0, 0);

impl ProtocolVersion {
    /// Makes a version from its three numbers.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `major.minor.patch`: three decimal numbers of at most 10 digits that fit in
    /// 32 bits, without signs, spaces or leading zeros (`0` itself is allowed).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut parts = text.split('.');
        let mut next = || parts.next().ok_or(INVALID_SHAPE).and_then(parse_number);
        let version = Self::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(INVALID_SHAPE);
        }
        Ok(version)
    }
}

const INVALID_SHAPE: Error = Error::Invalid {
    what: "version",
    reason: "must be major.minor.patch",
};

fn parse_number(part: &str) -> Result<u32, Error> {
    if part.is_empty() || part.len() > 10 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(INVALID_SHAPE);
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(Error::Invalid {
            what: "version",
            reason: "leading zeros are not allowed",
        });
    }
    part.parse().map_err(|_| Error::Invalid {
        what: "version",
        reason: "number out of range",
    })
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for ProtocolVersion {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

impl Serialize for ProtocolVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!(ProtocolVersion::parse("5.0.0").unwrap(), PROTOCOL_VERSION);
        assert_eq!(PROTOCOL_VERSION.to_string(), "5.0.0");
        assert_eq!(
            "4294967295.0.12".parse::<ProtocolVersion>().unwrap(),
            ProtocolVersion::new(u32::MAX, 0, 12)
        );
        for bad in [
            "",
            "5",
            "5.0",
            "5.0.0.0",
            "5.0.0-rc1",
            "v5.0.0",
            " 5.0.0",
            "5..0",
            "05.0.0",
            "5.0.+1",
            "4294967296.0.0",
            "99999999999.0.0",
            "5.0.x",
        ] {
            assert!(
                matches!(ProtocolVersion::parse(bad), Err(Error::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn semver_order_not_string_order() {
        let v = |text: &str| ProtocolVersion::parse(text).unwrap();
        assert!(v("10.0.0") > v("9.0.0"));
        assert!(v("5.10.0") > v("5.9.9"));
        assert!(v("5.0.1") > v("5.0.0"));
        assert!(v("4.99.99") < v("5.0.0"));
    }

    #[test]
    fn serde_as_a_string() {
        assert_eq!(
            serde_json::to_string(&PROTOCOL_VERSION).unwrap(),
            r#""5.0.0""#
        );
        assert_eq!(
            serde_json::from_str::<ProtocolVersion>(r#""5.1.2""#)
                .unwrap()
                .minor,
            1
        );
        assert!(serde_json::from_str::<ProtocolVersion>(r#""5.1""#).is_err());
        assert!(serde_json::from_str::<ProtocolVersion>("5").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(major in any::<u32>(), minor in any::<u32>(), patch in any::<u32>()) {
            let version = ProtocolVersion::new(major, minor, patch);
            prop_assert_eq!(ProtocolVersion::parse(&version.to_string()).unwrap(), version);
        }

        #[test]
        fn order_is_numeric(a in any::<(u32, u32, u32)>(), b in any::<(u32, u32, u32)>()) {
            let x = ProtocolVersion::new(a.0, a.1, a.2);
            let y = ProtocolVersion::new(b.0, b.1, b.2);
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }
}
