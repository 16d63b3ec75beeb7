//! Local side → tunnel: one vectored read into the body slots of up to [`BATCH_RECORDS`]
//! records of a buffer laid out like the wire, each sealed in place, one write for all;
//! plus the acknowledgements, pongs and retransmissions the inbound side queued.

use std::io::IoSliceMut;
use std::sync::Mutex;

use portcullis_proto::tunnel::{Connection, OVERHEAD, PAYLOAD_OFFSET};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{IDLE_RELEASE, LinkEnd, RelayContext, lock};
use crate::stream::TunnelStream;

/// Records read from the local side with one vectored read and written with one write.
pub const BATCH_RECORDS: usize = 4;
/// The record buffer's first size: room for interactive traffic.
const FRAME_START: usize = 2 * 1024;

/// Local side → tunnel, plus everything the inbound side queued.
#[allow(clippy::too_many_arguments)]
pub(super) async fn outbound<C: RelayContext>(
    context: &C,
    connection: &Mutex<Connection>,
    mut tunnel: WriteHalf<TunnelStream>,
    target: &mut OwnedReadHalf,
    target_closed: &mut bool,
    stop: &CancellationToken,
    flush: &Notify,
) -> (LinkEnd, WriteHalf<TunnelStream>) {
    let mut control = Vec::new();
    // Up to BATCH_RECORDS frames laid out like the wire, bodies read in place.
    let mut frames: Vec<u8> = Vec::new();
    let mut burst = false;
    // Retransmissions after a resume, and anything else pending, go first.
    let end = loop {
        control.clear();
        if let Err(error) = lock(connection).poll_transmit(&mut control) {
            tracing::debug!(%error, "cannot seal; link dropped");
            break LinkEnd::Dropped;
        }
        if !control.is_empty() && tunnel.write_all(&control).await.is_err() {
            break LinkEnd::Dropped;
        }
        if lock(connection).is_finished() {
            break LinkEnd::Finished;
        }
        let (sendable, record_size) = if *target_closed {
            (0, 0)
        } else {
            let connection = lock(connection);
            (connection.sendable(), connection.data_record_size())
        };
        // Everything sent was acknowledged: after a quiet moment, give the replay buffer
        // and the record buffer back, so an idle connection holds almost nothing.
        // Not during a burst (the last read filled the buffer): a timer per batch costs.
        let releasable = !burst
            && ({
                let connection = lock(connection);
                connection.buffered_memory() > 0 && connection.acknowledged() == connection.sent()
            } || !frames.is_empty());
        tokio::select! {
            biased;
            () = stop.cancelled() => break LinkEnd::Stopped,
            () = flush.notified() => continue,
            () = tokio::time::sleep(IDLE_RELEASE), if releasable => {
                let mut connection = lock(connection);
                if connection.acknowledged() == connection.sent() {
                    connection.shrink();
                }
                frames = Vec::new();
                continue;
            }
            ready = target.readable(), if sendable > 0 => {
                if ready.is_err() {
                    break LinkEnd::LocalFailed("read failed".into());
                }
            }
        }
        let stride = OVERHEAD + record_size;
        // Small first: a keystroke needs no full-size record buffer (touching one per idle
        // connection is most of its memory); a read that fills it grows it to a batch.
        let small = OVERHEAD + FRAME_START.min(sendable).min(record_size);
        if frames.len() < small {
            frames.resize(small, 0);
        }
        let mut slots = body_slots(&mut frames, stride, sendable);
        let room: usize = slots.iter().map(|slot| slot.len()).sum();
        let read = match target.try_read_vectored(&mut slots) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                burst = false;
                continue;
            }
            Err(error) => break LinkEnd::LocalFailed(error.to_string()),
        };
        drop(slots);
        if read == 0 {
            *target_closed = true;
            lock(connection).close();
            continue;
        }
        let now = tokio::time::Instant::now().into_std();
        let sealed = seal_batch(&mut lock(connection), &mut frames, stride, read, now);
        let length = match sealed {
            Ok(length) => length,
            Err(error) => {
                // The bytes are in the replay buffer: they go out after the resume.
                tracing::debug!(%error, "cannot seal; link dropped");
                break LinkEnd::Dropped;
            }
        };
        context.sent(read);
        if tunnel.write_all(&frames[..length]).await.is_err() {
            break LinkEnd::Dropped;
        }
        burst = read == room;
        let batch = BATCH_RECORDS * stride;
        if burst && frames.len() < batch && sendable > room {
            frames.resize(batch, 0);
        }
    };
    stop.cancel();
    (end, tunnel)
}

/// The body slots of the frames in `frames` (each `stride` long; a shorter buffer is one
/// small frame), holding `limit` bytes at most in all.
fn body_slots(frames: &mut [u8], stride: usize, limit: usize) -> Vec<IoSliceMut<'_>> {
    let mut left = limit;
    let mut slots = Vec::with_capacity(BATCH_RECORDS);
    for frame in frames.chunks_mut(stride) {
        let body = frame.len().saturating_sub(OVERHEAD).min(left);
        if body == 0 {
            break;
        }
        left -= body;
        slots.push(IoSliceMut::new(
            &mut frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + body],
        ));
    }
    slots
}

/// Seals the `read` bytes read into the body slots of `frames` as consecutive records;
/// returns the length of the frames to write. Every slot but the last is full, so the
/// sealed frames follow each other without gaps.
fn seal_batch(
    connection: &mut Connection,
    frames: &mut [u8],
    stride: usize,
    read: usize,
    now: std::time::Instant,
) -> Result<usize, portcullis_proto::Error> {
    let mut left = read;
    let mut length = 0;
    for frame in frames.chunks_mut(stride) {
        if left == 0 {
            break;
        }
        let body = left.min(frame.len() - OVERHEAD);
        length += connection.seal_data(frame, body, now)?;
        left -= body;
    }
    Ok(length)
}
