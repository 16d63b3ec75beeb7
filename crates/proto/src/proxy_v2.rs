//! PROXY protocol version 2 headers (the HAProxy PROXY protocol specification, §2.2), as a
//! layer-4 load balancer puts them first on a TCP connection (docs/protocol.md §8.1).
//!
//! [`decode`] is incremental and sans-io: give it the bytes received so far, and it answers
//! "need more bytes" (`Ok(None)`), a header and its length, or an error as soon as the bytes
//! cannot start a header this implementation accepts. What it accepts:
//!
//! - the 12-byte signature, then version 2;
//! - `LOCAL` (a health check of the load balancer itself) with any address family, whose
//!   address block is skipped;
//! - `PROXY` over TCP with IPv4 (`0x11`) or IPv6 (`0x21`) addresses; any other family or
//!   transport (`AF_UNSPEC`, UDP, `AF_UNIX`) is refused, since the server then has no
//!   source address to key its limits on;
//! - at most [`MAX_DATA_LEN`] (512) bytes of address and TLV data after the 16-byte fixed
//!   part, so a peer can never make the server buffer more than [`MAX_HEADER_LEN`] bytes
//!   before the tunnel handshake;
//! - TLVs (after the addresses) are skipped, except one: type [`FORWARDED_BY_TLV`] (`0xE0`,
//!   the first custom type) of length 2, which a tunnel server of a cluster adds when it
//!   forwards a launcher's connection to the server that holds its session
//!   (docs/protocol.md §8.16). A TLV that does not fit in the block ends the scan; the
//!   sender is trusted to frame them.
//!
//! [`encode`] writes a `PROXY` header, with that TLV when the header names a forwarder.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::Error;

/// The 12 bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Length of the fixed part: signature, version and command, family and transport, and the
/// 16-bit length of what follows.
pub const FIXED_LEN: usize = SIGNATURE.len() + 4;

/// The largest address and TLV block accepted (the 16-bit length field allows 65,535). An
/// IPv6 address block is 36 bytes; the rest is room for the load balancer's TLVs.
pub const MAX_DATA_LEN: usize = 512;

/// The largest header [`decode`] accepts, fixed part included.
pub const MAX_HEADER_LEN: usize = FIXED_LEN + MAX_DATA_LEN;

/// Version 2 in the high nibble of byte 12.
const VERSION: u8 = 0x2;
/// Commands (low nibble of byte 12).
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
/// The custom TLV type of a connection forwarded by a tunnel server of a cluster; its value
/// is the forwarding server's node id (`u16`).
pub const FORWARDED_BY_TLV: u8 = 0xE0;

/// Family and transport (byte 13).
const TCP_OVER_IPV4: u8 = 0x11;
const TCP_OVER_IPV6: u8 = 0x21;
/// Address block lengths: two addresses, two ports.
const IPV4_ADDRESSES_LEN: usize = 4 + 4 + 2 + 2;
const IPV6_ADDRESSES_LEN: usize = 16 + 16 + 2 + 2;

/// What a PROXY v2 header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyHeader {
    /// The load balancer's own connection (a health check): use the real TCP endpoints.
    Local,
    /// A relayed TCP connection.
    Proxy {
        /// The client's address and port, as the load balancer saw them.
        source: SocketAddr,
        /// The address and port the client connected to (at the load balancer).
        destination: SocketAddr,
        /// The node id of the cluster member that forwarded the connection
        /// ([`FORWARDED_BY_TLV`]); the tunnel bytes follow in clear (no TLS layer).
        forwarded_by: Option<u16>,
    },
}

/// The whole length of the header whose fixed part starts `buf`, as its length field says
/// (`None` until the [`FIXED_LEN`] bytes are there). Check the fixed part with [`decode`]
/// first: it refuses a length over [`MAX_DATA_LEN`].
pub fn header_len(buf: &[u8]) -> Option<usize> {
    let (&high, &low) = (buf.get(FIXED_LEN - 2)?, buf.get(FIXED_LEN - 1)?);
    Some(FIXED_LEN + usize::from(u16::from_be_bytes([high, low])))
}

/// Decodes the PROXY v2 header at the start of `buf`.
///
/// Returns `Ok(None)` while `buf` is a proper prefix of an acceptable header (more bytes
/// needed), `Ok(Some((header, used)))` once the whole header is there (`used` bytes, at most
/// [`MAX_HEADER_LEN`]; what follows belongs to the next layer), and an error as soon as the
/// bytes received cannot begin an acceptable header: a wrong signature, a version other
/// than 2, an unknown command, a `PROXY` command with another family or transport than TCP
/// over IPv4 or IPv6, an address block too short for its family, or more than
/// [`MAX_DATA_LEN`] bytes of address and TLV data.
pub fn decode(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, Error> {
    let signature_part = buf.len().min(SIGNATURE.len());
    if buf[..signature_part] != SIGNATURE[..signature_part] {
        return Err(invalid("not a PROXY protocol v2 signature"));
    }
    let Some(&version_command) = buf.get(12) else {
        return Ok(None);
    };
    if version_command >> 4 != VERSION {
        return Err(Error::Unsupported {
            what: "PROXY protocol version",
            value: (version_command >> 4).to_string(),
        });
    }
    let command = version_command & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(Error::Unsupported {
            what: "PROXY protocol v2 command",
            value: format!("{command:#x}"),
        });
    }
    let Some(&family) = buf.get(13) else {
        return Ok(None);
    };
    let addresses_len = match (command, family) {
        // LOCAL: the address block, of whatever family, is discarded.
        (CMD_LOCAL, _) => 0,
        (_, TCP_OVER_IPV4) => IPV4_ADDRESSES_LEN,
        (_, TCP_OVER_IPV6) => IPV6_ADDRESSES_LEN,
        (_, other) => {
            return Err(Error::Unsupported {
                what: "PROXY protocol v2 family and transport (only TCP over IPv4 or IPv6)",
                value: format!("{other:#04x}"),
            });
        }
    };
    let (Some(&high), Some(&low)) = (buf.get(14), buf.get(15)) else {
        return Ok(None);
    };
    let data_len = usize::from(u16::from_be_bytes([high, low]));
    if data_len > MAX_DATA_LEN {
        return Err(Error::TooLarge {
            what: "PROXY protocol v2 address and TLV data",
            got: data_len,
            max: MAX_DATA_LEN,
        });
    }
    if data_len < addresses_len {
        return Err(Error::WrongLength {
            what: "PROXY protocol v2 address block",
            expected: addresses_len,
            got: data_len,
        });
    }
    let total = FIXED_LEN + data_len;
    let Some(data) = buf.get(FIXED_LEN..total) else {
        return Ok(None);
    };
    let header = match family {
        _ if command == CMD_LOCAL => ProxyHeader::Local,
        TCP_OVER_IPV4 => {
            let (source_ip, rest) = split_array::<4>(data);
            let (destination_ip, rest) = split_array::<4>(rest);
            let (source_port, rest) = split_array::<2>(rest);
            let (destination_port, _) = split_array::<2>(rest);
            ProxyHeader::Proxy {
                source: SocketAddr::from((
                    Ipv4Addr::from(source_ip),
                    u16::from_be_bytes(source_port),
                )),
                destination: SocketAddr::from((
                    Ipv4Addr::from(destination_ip),
                    u16::from_be_bytes(destination_port),
                )),
                forwarded_by: forwarded_by(&data[addresses_len..]),
            }
        }
        _ => {
            let (source_ip, rest) = split_array::<16>(data);
            let (destination_ip, rest) = split_array::<16>(rest);
            let (source_port, rest) = split_array::<2>(rest);
            let (destination_port, _) = split_array::<2>(rest);
            ProxyHeader::Proxy {
                source: v6(source_ip, source_port),
                destination: v6(destination_ip, destination_port),
                forwarded_by: forwarded_by(&data[addresses_len..]),
            }
        }
    };
    Ok(Some((header, total)))
}

/// The value of the first [`FORWARDED_BY_TLV`] of length 2 in `tlvs`; the scan ends at a
/// TLV that does not fit.
fn forwarded_by(mut tlvs: &[u8]) -> Option<u16> {
    while let [kind, high, low, rest @ ..] = tlvs {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        let value = rest.get(..len)?;
        if *kind == FORWARDED_BY_TLV && len == 2 {
            return Some(u16::from_be_bytes([value[0], value[1]]));
        }
        tlvs = &rest[len..];
    }
    None
}

/// Encodes a header: `LOCAL`, or `PROXY` over TCP with the [`FORWARDED_BY_TLV`] when it
/// names a forwarder. A source and destination of different families are both written as
/// IPv6 (an IPv4 address as `::ffff:a.b.c.d`), since one header has one family.
pub fn encode(header: &ProxyHeader) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    let mut data = Vec::new();
    match header {
        ProxyHeader::Local => out.extend_from_slice(&[0x20, 0x00]),
        ProxyHeader::Proxy {
            source,
            destination,
            forwarded_by,
        } => {
            match (source, destination) {
                (SocketAddr::V4(source), SocketAddr::V4(destination)) => {
                    out.extend_from_slice(&[0x21, TCP_OVER_IPV4]);
                    data.extend_from_slice(&source.ip().octets());
                    data.extend_from_slice(&destination.ip().octets());
                }
                _ => {
                    out.extend_from_slice(&[0x21, TCP_OVER_IPV6]);
                    data.extend_from_slice(&as_v6(source.ip()).octets());
                    data.extend_from_slice(&as_v6(destination.ip()).octets());
                }
            }
            data.extend_from_slice(&source.port().to_be_bytes());
            data.extend_from_slice(&destination.port().to_be_bytes());
            if let Some(node) = forwarded_by {
                data.push(FORWARDED_BY_TLV);
                data.extend_from_slice(&2u16.to_be_bytes());
                data.extend_from_slice(&node.to_be_bytes());
            }
        }
    }
    // At most 36 + 5 bytes: the length always fits.
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&data);
    out
}

fn as_v6(ip: std::net::IpAddr) -> Ipv6Addr {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    }
}

fn invalid(reason: &'static str) -> Error {
    Error::Invalid {
        what: "PROXY protocol v2 header",
        reason,
    }
}

fn v6(ip: [u8; 16], port: [u8; 2]) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(ip),
        u16::from_be_bytes(port),
        0,
        0,
    ))
}

/// The first `N` bytes of `data` and the rest. `decode` checked the length first; a short
/// slice is zero-padded rather than a panic.
fn split_array<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut out = [0; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    (out, &data[n..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use proptest::prelude::*;

    /// The header's encoding with `tlvs` appended as opaque bytes.
    fn encode_with(header: &ProxyHeader, tlvs: &[u8]) -> Vec<u8> {
        let mut out = encode(header);
        out.extend_from_slice(tlvs);
        let data = u16::try_from(out.len() - FIXED_LEN).unwrap();
        out[14..16].copy_from_slice(&data.to_be_bytes());
        out
    }

    fn hex(text: &str) -> Vec<u8> {
        ::hex::decode(text.replace(' ', "")).unwrap()
    }

    /// TCP4 192.168.0.1:54321 → 192.168.0.2:443, as HAProxy sends it.
    const V4: &str = "0d0a0d0a000d0a515549540a 21 11 000c c0a80001 c0a80002 d431 01bb";
    /// TCP6 2001:db8::1:40000 → 2001:db8::2:7443.
    const V6: &str = "0d0a0d0a000d0a515549540a 21 21 0024 \
                      20010db8000000000000000000000001 20010db8000000000000000000000002 \
                      9c40 1d13";
    /// LOCAL with AF_UNSPEC and no address block: a load balancer's health check.
    const LOCAL: &str = "0d0a0d0a000d0a515549540a 20 00 0000";

    #[test]
    fn the_fixed_part_names_the_whole_length() {
        for (header, whole) in [(V4, 28), (V6, 52), (LOCAL, 16)] {
            let bytes = hex(header);
            assert_eq!(header_len(&bytes[..FIXED_LEN]), Some(whole));
            assert_eq!(bytes.len(), whole);
        }
        assert_eq!(header_len(&hex(V4)[..FIXED_LEN - 1]), None);
    }

    #[test]
    fn a_tcp4_header_decodes() {
        let bytes = hex(V4);
        assert_eq!(
            decode(&bytes).unwrap(),
            Some((
                ProxyHeader::Proxy {
                    source: "192.168.0.1:54321".parse().unwrap(),
                    destination: "192.168.0.2:443".parse().unwrap(),
                    forwarded_by: None,
                },
                28
            ))
        );
    }

    #[test]
    fn a_tcp6_header_decodes() {
        let bytes = hex(V6);
        assert_eq!(
            decode(&bytes).unwrap(),
            Some((
                ProxyHeader::Proxy {
                    source: "[2001:db8::1]:40000".parse().unwrap(),
                    destination: "[2001:db8::2]:7443".parse().unwrap(),
                    forwarded_by: None,
                },
                52
            ))
        );
    }

    #[test]
    fn a_local_header_decodes_whatever_its_address_block() {
        assert_eq!(decode(&hex(LOCAL)).unwrap(), Some((ProxyHeader::Local, 16)));
        // LOCAL with a TCP4 block (HAProxy's health checks send one): skipped.
        let mut with_block = hex(V4);
        with_block[12] = 0x20;
        assert_eq!(decode(&with_block).unwrap(), Some((ProxyHeader::Local, 28)));
        // LOCAL with AF_UNIX and UDP: still only skipped.
        let mut unix = hex(LOCAL);
        unix[13] = 0x32;
        assert_eq!(decode(&unix).unwrap(), Some((ProxyHeader::Local, 16)));
    }

    #[test]
    fn every_proper_prefix_needs_more_bytes() {
        for header in [V4, V6, LOCAL] {
            let bytes = hex(header);
            for len in 0..bytes.len() {
                assert_eq!(decode(&bytes[..len]), Ok(None), "{header} cut at {len}");
            }
        }
    }

    #[test]
    fn bytes_after_the_header_are_left_to_the_next_layer() {
        let mut bytes = hex(V4);
        bytes.extend_from_slice(b"PCTN\x01\x01");
        let (_, used) = decode(&bytes).unwrap().unwrap();
        assert_eq!(&bytes[used..], b"PCTN\x01\x01");
    }

    #[test]
    fn garbage_fails_at_its_first_wrong_byte() {
        // A tunnel hello where a PROXY header is expected: refused at the first byte.
        assert!(decode(b"P").is_err());
        assert!(decode(b"PCTN\x01\x01").is_err());
        // A PROXY v1 (text) header.
        assert!(decode(b"PROXY TCP4 ").is_err());
        // A signature wrong at its last byte.
        let mut bytes = hex(V4);
        bytes[11] = b'X';
        assert!(decode(&bytes[..12]).is_err());
        // Each of these fails with the byte that decides it, before the length arrives.
        for (index, value) in [(12, 0x11), (12, 0x22), (12, 0x2f), (13, 0x00), (13, 0x12)] {
            let mut bytes = hex(V4);
            bytes[index] = value;
            let error = decode(&bytes[..=index]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Malformed, "{index}: {value:#x}");
            assert_eq!(decode(&bytes).unwrap_err(), error);
        }
    }

    #[test]
    fn proxy_over_udp_unspec_or_unix_is_refused() {
        for family in [0x00, 0x01, 0x10, 0x12, 0x22, 0x31, 0x32] {
            let mut bytes = hex(V4);
            bytes[13] = family;
            assert!(
                matches!(decode(&bytes[..14]), Err(Error::Unsupported { .. })),
                "{family:#x}"
            );
        }
    }

    #[test]
    fn an_address_block_too_short_for_its_family_is_refused() {
        let mut bytes = hex(V6);
        bytes[15] = 12;
        assert_eq!(
            decode(&bytes[..16]),
            Err(Error::WrongLength {
                what: "PROXY protocol v2 address block",
                expected: 36,
                got: 12,
            })
        );
    }

    #[test]
    fn tlvs_are_skipped() {
        // PP2_TYPE_AUTHORITY "lb.example", then PP2_TYPE_NOOP with three bytes.
        let tlvs = hex("02 000a 6c622e6578616d706c65 04 0003 000000");
        let header = ProxyHeader::Proxy {
            source: "10.0.0.7:5000".parse().unwrap(),
            destination: "10.0.0.1:7443".parse().unwrap(),
            forwarded_by: None,
        };
        let mut bytes = encode_with(&header, &tlvs);
        assert_eq!(bytes.len(), 28 + tlvs.len());
        bytes.extend_from_slice(b"next");
        assert_eq!(decode(&bytes).unwrap(), Some((header, 28 + tlvs.len())));
    }

    #[test]
    fn a_forwarding_cluster_member_names_itself_in_a_custom_tlv() {
        let header = ProxyHeader::Proxy {
            source: "198.51.100.9:40000".parse().unwrap(),
            destination: "10.0.0.1:7443".parse().unwrap(),
            forwarded_by: Some(0x0102),
        };
        let bytes = encode(&header);
        assert_eq!(&bytes[28..], &[0xE0, 0, 2, 1, 2]);
        assert_eq!(decode(&bytes).unwrap(), Some((header, bytes.len())));
        // Among other TLVs, the first well-framed one counts; a truncated TLV ends the scan.
        let plain = ProxyHeader::Proxy {
            source: "198.51.100.9:40000".parse().unwrap(),
            destination: "10.0.0.1:7443".parse().unwrap(),
            forwarded_by: None,
        };
        let others = encode_with(&plain, &hex("02 0001 61 e0 0002 0007"));
        let Some((ProxyHeader::Proxy { forwarded_by, .. }, _)) = decode(&others).unwrap() else {
            panic!()
        };
        assert_eq!(forwarded_by, Some(7));
        let wrong_length = encode_with(&plain, &hex("e0 0003 000700"));
        assert_eq!(decode(&wrong_length).unwrap().unwrap().0, plain);
        let truncated = encode_with(&plain, &hex("02 0009 61 e0 0002 0007"));
        assert_eq!(decode(&truncated).unwrap().unwrap().0, plain);
        // A launcher on IPv6 reaching a member over IPv4: both written as IPv6.
        let mixed = ProxyHeader::Proxy {
            source: "[2001:db8::9]:40000".parse().unwrap(),
            destination: "10.0.0.1:7443".parse().unwrap(),
            forwarded_by: Some(2),
        };
        let Some((ProxyHeader::Proxy { destination, .. }, _)) = decode(&encode(&mixed)).unwrap()
        else {
            panic!()
        };
        assert_eq!(destination, "[::ffff:10.0.0.1]:7443".parse().unwrap());
    }

    #[test]
    fn more_than_512_bytes_of_data_is_refused_before_it_arrives() {
        let header = ProxyHeader::Proxy {
            source: "10.0.0.7:5000".parse().unwrap(),
            destination: "10.0.0.1:7443".parse().unwrap(),
            forwarded_by: None,
        };
        let largest = encode_with(&header, &[0; MAX_DATA_LEN - 12]);
        assert_eq!(largest.len(), MAX_HEADER_LEN);
        assert_eq!(decode(&largest).unwrap(), Some((header, MAX_HEADER_LEN)));
        let too_large = encode_with(&header, &[0; MAX_DATA_LEN - 11]);
        let expected = Err(Error::TooLarge {
            what: "PROXY protocol v2 address and TLV data",
            got: 513,
            max: 512,
        });
        assert_eq!(decode(&too_large[..FIXED_LEN]), expected);
        let mut local = hex(LOCAL);
        local[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(decode(&local), Err(Error::TooLarge { .. })));
    }

    fn any_header() -> impl Strategy<Value = ProxyHeader> {
        prop_oneof![
            Just(ProxyHeader::Local),
            (
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<[u8; 4]>(),
                any::<u16>()
            )
                .prop_map(|(source, source_port, destination, destination_port)| {
                    ProxyHeader::Proxy {
                        source: SocketAddr::from((source, source_port)),
                        destination: SocketAddr::from((destination, destination_port)),
                        forwarded_by: None,
                    }
                }),
            (
                any::<[u8; 16]>(),
                any::<u16>(),
                any::<[u8; 16]>(),
                any::<u16>()
            )
                .prop_map(|(source, source_port, destination, destination_port)| {
                    ProxyHeader::Proxy {
                        source: v6(source, source_port.to_be_bytes()),
                        destination: v6(destination, destination_port.to_be_bytes()),
                        forwarded_by: None,
                    }
                }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            header in any_header(),
            tlvs in proptest::collection::vec(any::<u8>(), 0..=MAX_DATA_LEN - 36),
            trailing in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assume!(forwarded_by(&tlvs).is_none());
            let encoded = encode_with(&header, &tlvs);
            let mut bytes = encoded.clone();
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(decode(&bytes), Ok(Some((header, encoded.len()))));
            let cut = encoded.len() / 2;
            prop_assert_eq!(decode(&encoded[..cut]), Ok(None));
        }

        #[test]
        fn decode_never_panics_and_answers_consistently(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = SIGNATURE.to_vec();
            buf.extend_from_slice(&bytes);
            if let Ok(Some((_, used))) = decode(&buf) {
                prop_assert!(used <= buf.len() && used <= MAX_HEADER_LEN);
            }
        }
    }
}
