//! Whether the X display that `DISPLAY` names answers, before the window opens on it: the
//! window toolkit ends the whole process when it cannot open its display, so a stale
//! `DISPLAY` (a logged-out desktop, an SSH session without forwarding) would end the
//! launcher before it said anything.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How long a display over TCP may take to accept.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// X servers listen on TCP port 6000 + the display number.
const X_TCP_BASE_PORT: u16 = 6000;

/// Where an X display listens.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum XEndpoint {
    /// A local display: `/tmp/.X11-unix/X<number>` (and, on Linux, the abstract socket of
    /// that name).
    Local(u32),
    /// A socket path given whole, as macOS's launchd gives XQuartz's.
    Path(PathBuf),
    /// A display over TCP: host and port.
    Tcp(String, u16),
}

/// The endpoint of a `DISPLAY` value `[host]:number[.screen]`, or `None` when it is not one.
pub fn endpoint(display: &str) -> Option<XEndpoint> {
    if display.starts_with('/') {
        let socket = display.rsplit_once(':').map_or(display, |(path, _)| path);
        return Some(XEndpoint::Path(socket.into()));
    }
    let (host, rest) = display.rsplit_once(':')?;
    let number: u32 = rest.split('.').next()?.parse().ok()?;
    match host {
        "" | "unix" => Some(XEndpoint::Local(number)),
        host => {
            let port = u16::try_from(number)
                .ok()
                .and_then(|number| X_TCP_BASE_PORT.checked_add(number))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(XEndpoint::Tcp(host.to_owned(), port))
        }
    }
}

/// Whether something accepts connections where the display `display` listens.
///
/// An X server that then refuses this user (another user's display, no cookie) still
/// passes; that case is rare on a desktop and the toolkit says why on stderr.
pub fn answers(display: &str) -> bool {
    match endpoint(display) {
        None => false,
        Some(XEndpoint::Local(number)) => local_answers(number),
        Some(XEndpoint::Path(path)) => UnixStream::connect(path).is_ok(),
        Some(XEndpoint::Tcp(host, port)) => (host.as_str(), port)
            .to_socket_addrs()
            .map(|addresses| {
                addresses.take(2).any(|address| {
                    TcpStream::connect_timeout(&address, TCP_CONNECT_TIMEOUT).is_ok()
                })
            })
            .unwrap_or(false),
    }
}

fn local_answers(number: u32) -> bool {
    let path = format!("/tmp/.X11-unix/X{number}");
    if UnixStream::connect(&path).is_ok() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::SocketAddr;
        if let Ok(address) = SocketAddr::from_abstract_name(path.as_bytes()) {
            return UnixStream::connect_addr(&address).is_ok();
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn display_names_map_to_their_sockets() {
        assert_eq!(endpoint(":0"), Some(XEndpoint::Local(0)));
        assert_eq!(endpoint(":12.1"), Some(XEndpoint::Local(12)));
        assert_eq!(endpoint("unix:3"), Some(XEndpoint::Local(3)));
        assert_eq!(
            endpoint("localhost:10.0"),
            Some(XEndpoint::Tcp("localhost".into(), 6010))
        );
        assert_eq!(
            endpoint("[::1]:2"),
            Some(XEndpoint::Tcp("::1".into(), 6002))
        );
        assert_eq!(
            endpoint("/private/tmp/com.apple.launchd.x/org.xquartz:0"),
            Some(XEndpoint::Path(
                "/private/tmp/com.apple.launchd.x/org.xquartz".into()
            ))
        );
        for bad in ["", "0", ":", ":x", "host:70000"] {
            assert_eq!(endpoint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_display_nobody_listens_on_does_not_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        if let Some(number) = port.checked_sub(X_TCP_BASE_PORT) {
            assert!(!answers(&format!("127.0.0.1:{number}")));
        }
        assert!(!answers("not a display"));
    }

    #[test]
    fn a_listening_tcp_display_answers() {
        // Port 6000 + n on loopback, for some free n.
        for number in 90..190u16 {
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", 6000 + number)) {
                assert!(answers(&format!("127.0.0.1:{number}")));
                drop(listener);
                return;
            }
        }
        panic!("no free port between 6090 and 6189 on 127.0.0.1");
    }
}
