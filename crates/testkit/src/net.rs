//! Addresses for servers a test configures before it starts them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A loopback address with a port free now, on an address of 127.0.0.0/8 drawn at random
/// (never 127.0.0.1).
///
/// A test that must write a server's address into a configuration before the server binds
/// it cannot hold the port in between. On 127.0.0.1 another test of the same process (or a
/// connection's ephemeral port) can take it in that gap; on an address of its own, nothing
/// else binds, so the port is still free when the server binds it.
pub fn unused_loopback_addr() -> SocketAddr {
    let [_, b, c, d] = rand_bytes();
    // 127.0.0.1 is everyone's; 127.b.c.0 and .255 are avoided for tidiness.
    let ip = Ipv4Addr::new(127, b | 1, c, d.clamp(2, 254));
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|error| {
        panic!("cannot bind a port on {ip} (loopback 127.0.0.0/8): {error}")
    });
    listener
        .local_addr()
        .unwrap_or_else(|error| panic!("no local address for {ip}: {error}"))
}

/// A port of 127.0.0.1 nothing listens on now (bound, then released): for a program a test
/// starts later, or a target that refuses.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"))
        .port()
}

/// An address of 127.0.0.1 where nothing listens: a target that refuses.
pub fn closed_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// Four bytes that differ between calls and between test processes.
fn rand_bytes() -> [u8; 4] {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    let [a, b, c, d, ..] = hasher.finish().to_le_bytes();
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::unused_loopback_addr;

    #[test]
    fn addresses_are_loopback_never_127_0_0_1_and_bindable() {
        for _ in 0..20 {
            let address = unused_loopback_addr();
            assert!(address.ip().is_loopback(), "{address}");
            assert_ne!(address.ip().to_string(), "127.0.0.1");
            std::net::TcpListener::bind(address).unwrap();
        }
    }
}
