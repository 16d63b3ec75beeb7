//! The tunnel server's side of a session's hold (docs/protocol.md §8.7.7): the connection
//! that keeps a session alive between data connections, dials nothing, answers the
//! launcher's pings, takes its `EndSession`, and tells it when and why the session ended.

use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::tunnel::{HoldEvent, HoldLink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::limits::ConnectionPermit;
use crate::session::{EndReason, HoldClaim, Session};
use portcullis_link::TunnelStream;

/// How long the server tries to write `SessionEnded` before it closes the hold anyway.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one hold until it drops, is replaced, goes silent, or the session ends.
pub async fn serve(
    session: Arc<Session>,
    mut stream: TunnelStream,
    permit: ConnectionPermit,
    mut link: HoldLink,
    claim: HoldClaim,
    holds: prometheus_client::metrics::gauge::Gauge,
) {
    holds.inc();
    let end = run(&session, &mut stream, &mut link, &claim).await;
    match end {
        HoldEnd::SessionEnded => farewell(&session, &mut stream, &mut link).await,
        HoldEnd::EndSession => session.end(EndReason::EndSession),
        HoldEnd::Dropped(reason) => {
            tracing::debug!(session = %session.id(), reason, "hold closed");
        }
    }
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, stream.shutdown()).await;
    drop(stream);
    drop(permit);
    holds.dec();
    session.release_hold(claim.generation);
}

#[derive(Debug)]
enum HoldEnd {
    /// The session ended: say why.
    SessionEnded,
    /// The launcher ended the session on this hold.
    EndSession,
    /// The connection ended, failed, went silent or was replaced.
    Dropped(&'static str),
}

async fn run(
    session: &Session,
    stream: &mut TunnelStream,
    link: &mut HoldLink,
    claim: &HoldClaim,
) -> HoldEnd {
    // A hold carries control records only: no frame is larger than this.
    let mut inbox = [0u8; HoldLink::MAX_FRAME];
    let mut filled = 0;
    let mut out = Vec::new();
    loop {
        out.clear();
        if link.poll_transmit(&mut out, now()).is_err() {
            return HoldEnd::Dropped("failed");
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return HoldEnd::Dropped("write failed");
        }
        let timeout = Instant::from_std(link.poll_timeout());
        tokio::select! {
            () = session.end_token().cancelled() => return HoldEnd::SessionEnded,
            () = claim.replaced.cancelled() => return HoldEnd::Dropped("replaced"),
            () = tokio::time::sleep_until(timeout) => {
                if link.handle_timeout(now()).is_err() {
                    return HoldEnd::Dropped("silent");
                }
            }
            read = stream.read(&mut inbox[filled..]) => {
                match read {
                    Ok(0) | Err(_) => return HoldEnd::Dropped("closed"),
                    Ok(n) => filled += n,
                }
                loop {
                    match link.handle_input(&mut inbox[..filled], now()) {
                        Ok(Some((event, used))) => {
                            inbox.copy_within(used..filled, 0);
                            filled -= used;
                            if event == HoldEvent::EndSession {
                                return HoldEnd::EndSession;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return HoldEnd::Dropped("bad record"),
                    }
                }
            }
        }
    }
}

/// Tells the launcher why the session ended, if it has a reason to hear.
async fn farewell(session: &Session, stream: &mut TunnelStream, link: &mut HoldLink) {
    let Some(reason) = session.end_reason().and_then(EndReason::hold_reason) else {
        return;
    };
    let mut out = Vec::new();
    if link.session_ended(reason, &mut out, now()).is_ok() {
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, stream.write_all(&out)).await;
    }
}

/// Now, on tokio's clock (paused in tests).
fn now() -> std::time::Instant {
    Instant::now().into_std()
}
