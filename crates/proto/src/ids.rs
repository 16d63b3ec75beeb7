//! Identifiers that cross the wire: ticket ids, scramblers, session and connection ids.

use core::fmt;

use zeroize::Zeroize;

use crate::Error;
use crate::random;

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Fills `out` with characters drawn uniformly from `[A-Za-z0-9]`.
fn fill_alphanumeric(out: &mut [u8]) -> Result<(), Error> {
    let mut filled = 0;
    let mut pool = [0u8; 64];
    while filled < out.len() {
        random::fill(&mut pool)?;
        // 248 = 4 * 62: rejecting larger bytes keeps the draw uniform.
        for &b in pool.iter().filter(|&&b| b < 248) {
            if filled == out.len() {
                break;
            }
            out[filled] = ALPHANUMERIC[usize::from(b % 62)];
            filled += 1;
        }
    }
    pool.zeroize();
    Ok(())
}

/// A one-use ticket id: exactly 48 characters of `[A-Za-z0-9]`.
///
/// A ticket id is a bearer credential. `Display` and `Debug` show only its first 8
/// characters; [`TicketId::expose`] gives the whole id where the protocol needs it
/// (URLs, HKDF salts, API bodies). The bytes are zeroized on drop.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TicketId([u8; TicketId::LEN]);

impl TicketId {
    /// Length of a ticket id in characters (and bytes).
    pub const LEN: usize = 48;
    /// How many characters `Display` and `Debug` show.
    pub const SHOWN: usize = 8;

    /// Draws a fresh ticket id from the system CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut id = [0u8; Self::LEN];
        fill_alphanumeric(&mut id)?;
        Ok(Self(id))
    }

    /// Parses a ticket id, refusing anything but 48 characters of `[A-Za-z0-9]`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::from_bytes(text.as_bytes())
    }

    /// Parses a ticket id from its ASCII bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let id: [u8; Self::LEN] = bytes.try_into().map_err(|_| Error::Invalid {
            what: "ticket id",
            reason: "must be 48 characters",
        })?;
        if !id.iter().all(u8::is_ascii_alphanumeric) {
            return Err(Error::Invalid {
                what: "ticket id",
                reason: "only A-Z, a-z and 0-9 are allowed",
            });
        }
        Ok(Self(id))
    }

    /// The whole id. Never log it.
    pub fn expose(&self) -> &str {
        // Construction admits ASCII alphanumerics only.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The whole id as the 48 ASCII bytes used as HKDF salt.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The first 8 characters, safe to log.
    pub fn prefix(&self) -> &str {
        &self.expose()[..Self::SHOWN]
    }
}

impl Drop for TicketId {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.prefix())
    }
}

impl fmt::Debug for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketId({}…)", self.prefix())
    }
}

/// The scrambler of a launch URL: 1 to 64 characters of `[A-Za-z0-9]`.
///
/// OpenUDS 5 launchers echo it back in the ticket request; it is not secret.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Scrambler(String);

impl Scrambler {
    /// Longest accepted scrambler.
    pub const MAX_LEN: usize = 64;
    /// Length of a generated scrambler.
    pub const GENERATED_LEN: usize = 32;

    /// Draws a fresh 32-character scrambler.
    pub fn generate() -> Result<Self, Error> {
        let mut text = [0u8; Self::GENERATED_LEN];
        fill_alphanumeric(&mut text)?;
        Ok(Self(text.iter().map(|&b| char::from(b)).collect()))
    }

    /// Parses a scrambler.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(Error::Invalid {
                what: "scrambler",
                reason: "must be 1 to 64 characters",
            });
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Invalid {
                what: "scrambler",
                reason: "only A-Z, a-z and 0-9 are allowed",
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// The scrambler text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scrambler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a tunnel session: 16 random bytes, shown as 32 hex digits.
///
/// Not a credential: attaching to a session also needs a proof under the session key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; SessionId::LEN]);

impl SessionId {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// Draws a fresh session id.
    pub fn generate() -> Result<Self, Error> {
        let mut id = [0u8; Self::LEN];
        random::fill(&mut id)?;
        Ok(Self(id))
    }

    /// Draws a fresh session id of a cluster member: its node id, then 14 random bytes
    /// (docs/protocol.md §8.16).
    pub fn generate_on(node: NodeId) -> Result<Self, Error> {
        let mut id = Self::generate()?;
        id.0[..2].copy_from_slice(&node.get().to_be_bytes());
        Ok(id)
    }

    /// The first two bytes as a `u16`: the owner's node id, if a cluster member made it.
    pub fn node(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }

    /// Wraps 16 bytes received on the wire.
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A tunnel server's node id in a cluster: 1 … 65535, the first two bytes of the session
/// ids it makes (docs/protocol.md §8.16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NodeId(core::num::NonZeroU16);

impl NodeId {
    /// A node id; `None` for 0.
    pub const fn new(id: u16) -> Option<Self> {
        match core::num::NonZeroU16::new(id) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The id of one connection inside a tunnel session, assigned by the tunnel server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnectionId(pub u32);

impl ConnectionId {
    /// The id of a session's hold (docs/protocol.md §8.7.7); never a data connection's.
    pub const HOLD: Self = Self(0);
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ticket_ids_are_valid_and_distinct() {
        let a = TicketId::generate().unwrap();
        let b = TicketId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(TicketId::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn ticket_id_display_hides_all_but_the_prefix() {
        let id = TicketId::parse("c6s9FAa5fhb854BVMckqUBJ4hOXg2iE5i1FYPCuktks4eNZD").unwrap();
        assert_eq!(id.to_string(), "c6s9FAa5…");
        assert_eq!(format!("{id:?}"), "TicketId(c6s9FAa5…)");
    }

    #[test]
    fn ticket_id_parse_refuses_bad_input() {
        assert!(TicketId::parse("").is_err());
        assert!(TicketId::parse(&"a".repeat(47)).is_err());
        assert!(TicketId::parse(&"a".repeat(49)).is_err());
        assert!(TicketId::parse(&format!("{}-", "a".repeat(47))).is_err());
        assert!(TicketId::parse(&format!("{}é", "a".repeat(46))).is_err());
    }

    #[test]
    fn scrambler_rules() {
        let s = Scrambler::generate().unwrap();
        assert_eq!(s.as_str().len(), 32);
        assert_eq!(Scrambler::parse(s.as_str()).unwrap(), s);
        assert!(Scrambler::parse("").is_err());
        assert!(Scrambler::parse(&"x".repeat(65)).is_err());
        assert!(Scrambler::parse("a/b").is_err());
    }

    #[test]
    fn session_id_displays_as_hex() {
        let id = SessionId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
    }

    #[test]
    fn a_cluster_members_session_ids_start_with_its_node_id() {
        assert_eq!(NodeId::new(0), None);
        let node = NodeId::new(0x0203).unwrap();
        let a = SessionId::generate_on(node).unwrap();
        let b = SessionId::generate_on(node).unwrap();
        assert_eq!((a.node(), b.node()), (0x0203, 0x0203));
        assert_eq!(&a.as_bytes()[..2], &[2, 3]);
        assert_ne!(a, b, "14 random bytes");
    }
}
