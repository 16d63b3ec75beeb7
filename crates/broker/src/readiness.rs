//! Readiness of a service's target: does its TCP port accept a connection?

use std::time::Duration;

use tokio::net::TcpStream;

/// Tries to open (and immediately closes) a TCP connection to `host:port` within `timeout`.
pub async fn target_answers(host: &str, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_and_closed_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(target_answers("127.0.0.1", port, Duration::from_secs(1)).await);
        drop(listener);
        assert!(!target_answers("127.0.0.1", port, Duration::from_secs(1)).await);
    }
}
