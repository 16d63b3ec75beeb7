//! The launcher's side of a session's hold (docs/protocol.md §8.7.7): once the session is
//! open, one connection that dials nothing keeps it alive for as long as the local listener
//! is open, is re-established after every drop, carries `EndSession` at the end, and is
//! where the forwarder learns that the session ended (then it stops listening).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis_proto::tunnel::{
    EndReason, ErrorCode, HoldEvent, HoldLink, SessionCredentials, client,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{ClientError, ClientShared, SessionEnd, handshake};
use crate::stream::TunnelStream;

/// The first wait before re-establishing a hold that could not be re-established at once.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Holds the session until the forwarder stops or the session ends.
pub(super) async fn keep(shared: Arc<ClientShared>, credentials: Arc<SessionCredentials>) {
    let mut wait = Duration::ZERO;
    loop {
        if shared.stop.is_cancelled() {
            if shared.ending.load(Ordering::SeqCst) {
                // No hold is up: one of our own, just for EndSession.
                let _ = end_on_new_hold(&shared, &credentials).await;
            }
            break;
        }
        match handshake(&shared, |random, out| {
            client::hold(&credentials, random, out)
        })
        .await
        {
            Ok((stream, established)) => {
                let link = HoldLink::client(established.sealer, established.opener, now());
                shared.held.store(true, Ordering::SeqCst);
                let end = run(&shared, stream, link).await;
                shared.held.store(false, Ordering::SeqCst);
                match end {
                    HoldRun::Ended(end) => {
                        shared.session_ended(end);
                        break;
                    }
                    HoldRun::Stopped => break,
                    // Re-establish at once.
                    HoldRun::Dropped => wait = Duration::ZERO,
                }
                continue;
            }
            Err(ClientError::Refused(ErrorCode::SessionUnknown | ErrorCode::AccessDenied)) => {
                shared.session_ended(SessionEnd::Unknown);
                break;
            }
            Err(ClientError::Refused(ErrorCode::Malformed)) => {
                tracing::info!("the tunnel server does not know holds; going on without one");
                break;
            }
            Err(error) => {
                tracing::debug!(%error, "cannot hold the session; retrying");
            }
        }
        wait = (wait * 2).clamp(BACKOFF_START, BACKOFF_MAX);
        tokio::select! {
            () = shared.stop.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    shared.holding.store(false, Ordering::SeqCst);
}

/// How one hold connection ended.
enum HoldRun {
    /// The session ended.
    Ended(SessionEnd),
    /// The forwarder stopped (after its `EndSession` when it ends the session).
    Stopped,
    /// The connection dropped, failed or went silent: open a new one.
    Dropped,
}

/// Runs one hold connection.
async fn run(shared: &ClientShared, mut stream: TunnelStream, mut link: HoldLink) -> HoldRun {
    let mut inbox = [0u8; HoldLink::MAX_FRAME];
    let mut filled = 0;
    let mut out = Vec::new();
    loop {
        out.clear();
        if link.poll_transmit(&mut out, now()).is_err() {
            return HoldRun::Dropped;
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return HoldRun::Dropped;
        }
        let timeout = Instant::from_std(link.poll_timeout());
        tokio::select! {
            () = shared.stop.cancelled() => {
                if shared.ending.load(Ordering::SeqCst) {
                    out.clear();
                    if link.end_session(&mut out, now()).is_ok() {
                        let _ = stream.write_all(&out).await;
                        let _ = stream.flush().await;
                        drain(&mut stream).await;
                    }
                }
                return HoldRun::Stopped;
            }
            () = tokio::time::sleep_until(timeout) => {
                if link.handle_timeout(now()).is_err() {
                    tracing::debug!("the hold went silent; re-establishing it");
                    return HoldRun::Dropped;
                }
            }
            read = stream.read(&mut inbox[filled..]) => {
                match read {
                    Ok(0) | Err(_) => return HoldRun::Dropped,
                    Ok(n) => filled += n,
                }
                loop {
                    match link.handle_input(&mut inbox[..filled], now()) {
                        Ok(Some((event, used))) => {
                            inbox.copy_within(used..filled, 0);
                            filled -= used;
                            if let HoldEvent::SessionEnded(reason) = event {
                                return HoldRun::Ended(SessionEnd::Ended(reason));
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return HoldRun::Dropped,
                    }
                }
            }
        }
    }
}

/// `EndSession` on a hold of its own: ending a session dials nothing (§8.7.5).
pub(super) async fn end_on_new_hold(
    shared: &ClientShared,
    credentials: &SessionCredentials,
) -> Result<(), ClientError> {
    let (mut stream, established) =
        handshake(shared, |random, out| client::hold(credentials, random, out)).await?;
    let mut link = HoldLink::client(established.sealer, established.opener, now());
    let mut out = Vec::new();
    link.end_session(&mut out, now())?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    drain(&mut stream).await;
    Ok(())
}

/// Waits, briefly, for the server to close the hold after `EndSession`.
async fn drain(stream: &mut TunnelStream) {
    let mut sink = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Now, on tokio's clock (paused in tests).
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ended(EndReason::Unknown(code)) => {
                write!(f, "the tunnel server ended the session (reason {code})")
            }
            Self::Ended(reason) => write!(f, "the tunnel server ended the session: {reason}"),
            Self::Unknown => f.write_str(
                "the tunnel server no longer knows the session (it restarted, or the session \
                 ended while the launcher could not reach it)",
            ),
        }
    }
}
