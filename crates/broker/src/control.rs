//! Where the tunnel servers' control requests wait (docs/protocol.md §7.8): one broker's
//! held requests per tunnel server, woken when an end is asked for.
//!
//! An end asked for on this broker wakes the server's held requests at once
//! ([`ControlHub::wake`]). One asked for on another broker of the database, or by
//! `portcullis admin`, is noticed by the watcher: while any request is held, it reads the
//! pending ends per tunnel server every [`WATCH_INTERVAL`] and wakes the servers whose
//! count or latest request changed. The hub also keeps this broker's share of the channel's
//! bounds: at most [`MAX_HELD_PER_SERVER`] held requests per server, one byte report
//! recorded per server and second, an end delivered again at most every
//! [`REDELIVERY_INTERVAL_MS`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::clock::{Clock, Millis};
use crate::store::{Store, TunnelServerId};
use crate::tickets::crypto::TicketHash;

/// How often the watcher reads the pending ends while requests are held.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// Held control requests per tunnel server on one broker; one more answers the oldest.
pub const MAX_HELD_PER_SERVER: usize = 2;
/// The least time between two recorded byte reports of one tunnel server.
pub const REPORT_INTERVAL_MS: Millis = 1_000;
/// The least time between two deliveries of one session's end by this broker.
pub const REDELIVERY_INTERVAL_MS: Millis = 2_000;
/// The least time between two `last_seen_at` updates of one tunnel server for its `start`
/// and `stop` calls.
const TOUCH_INTERVAL_MS: Millis = 10_000;

/// Why a held request stopped waiting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wake {
    /// An end may have been asked for this server: look again.
    Changed,
    /// The request's wait is over.
    Deadline,
    /// A newer request of the same server replaced this one, or the broker is stopping:
    /// answer now.
    Answer,
}

#[derive(Debug)]
struct Held {
    id: u64,
    replaced: watch::Sender<bool>,
}

#[derive(Debug)]
struct Server {
    wake: watch::Sender<u64>,
    held: VecDeque<Held>,
}

#[derive(Debug, Default)]
struct Inner {
    servers: HashMap<TunnelServerId, Server>,
    next_id: u64,
    watching: bool,
    /// When this broker last delivered each session's end.
    delivered: HashMap<TicketHash, Millis>,
    /// When this broker last recorded each server's byte report.
    reported: HashMap<TunnelServerId, Millis>,
    /// When this broker last noted each server's `start` or `stop`.
    touched: HashMap<TunnelServerId, Millis>,
    /// The watcher's last reading: per server, pending ends and the latest request time.
    pending: HashMap<TunnelServerId, (i64, i64)>,
}

/// One broker's held control requests.
pub struct ControlHub {
    store: Store,
    clock: Clock,
    inner: Mutex<Inner>,
    stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for ControlHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHub")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A control request waiting for something to answer.
#[derive(Debug)]
pub struct Holder {
    hub: Arc<ControlHub>,
    server: TunnelServerId,
    id: u64,
    wake: watch::Receiver<u64>,
    replaced: watch::Receiver<bool>,
    stopping: watch::Receiver<bool>,
}

impl ControlHub {
    /// A hub reading pending ends from `store`, on `clock`.
    pub fn new(store: Store, clock: Clock) -> Self {
        Self {
            store,
            clock,
            inner: Mutex::new(Inner::default()),
            stopping: watch::Sender::new(false),
        }
    }

    /// Registers a control request of `server`, answering its oldest one if it already
    /// has [`MAX_HELD_PER_SERVER`]; starts the watcher if it is not running.
    pub fn hold(self: &Arc<Self>, server: TunnelServerId) -> Holder {
        let mut inner = self.inner.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let entry = inner.servers.entry(server).or_insert_with(|| Server {
            wake: watch::Sender::new(0),
            held: VecDeque::new(),
        });
        while entry.held.len() >= MAX_HELD_PER_SERVER {
            if let Some(oldest) = entry.held.pop_front() {
                oldest.replaced.send_replace(true);
            }
        }
        let replaced = watch::Sender::new(false);
        let holder = Holder {
            hub: Arc::clone(self),
            server,
            id,
            wake: entry.wake.subscribe(),
            replaced: replaced.subscribe(),
            stopping: self.stopping.subscribe(),
        };
        entry.held.push_back(Held { id, replaced });
        if !inner.watching {
            inner.watching = true;
            tokio::spawn(watch_pending(Arc::clone(self)));
        }
        holder
    }

    /// Wakes the held requests of `server`: an end was asked for on this broker.
    pub fn wake(&self, server: TunnelServerId) {
        if let Some(entry) = self.inner.lock().servers.get(&server) {
            entry
                .wake
                .send_modify(|version| *version = version.wrapping_add(1));
        }
    }

    /// Wakes every held request (after a change that may end sessions of any server).
    pub fn wake_all(&self) {
        for entry in self.inner.lock().servers.values() {
            entry
                .wake
                .send_modify(|version| *version = version.wrapping_add(1));
        }
    }

    /// Answers every held request now and every later one at once: the broker stops.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Of the `pending` ends of a server, those this broker did not deliver within
    /// [`REDELIVERY_INTERVAL_MS`]; they count as delivered now.
    pub fn deliverable(&self, pending: Vec<TicketHash>) -> Vec<TicketHash> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        inner
            .delivered
            .retain(|_, at| now.saturating_sub(*at) < REDELIVERY_INTERVAL_MS);
        pending
            .into_iter()
            .filter(|session| match inner.delivered.get(session) {
                Some(_) => false,
                None => {
                    inner.delivered.insert(*session, now);
                    true
                }
            })
            .collect()
    }

    /// Whether `server`'s byte report may be recorded now (one per
    /// [`REPORT_INTERVAL_MS`]); if so, the time counts as its last.
    pub fn may_record_report(&self, server: TunnelServerId) -> bool {
        let now = (self.clock)();
        Self::throttle(
            &mut self.inner.lock().reported,
            server,
            now,
            REPORT_INTERVAL_MS,
        )
    }

    /// Whether `server`'s `last_seen_at` should be written for a `start` or `stop` now.
    pub fn may_touch(&self, server: TunnelServerId) -> bool {
        let now = (self.clock)();
        Self::throttle(
            &mut self.inner.lock().touched,
            server,
            now,
            TOUCH_INTERVAL_MS,
        )
    }

    fn throttle(
        last: &mut HashMap<TunnelServerId, Millis>,
        server: TunnelServerId,
        now: Millis,
        interval: Millis,
    ) -> bool {
        match last.get(&server) {
            Some(at) if now.saturating_sub(*at) < interval && now >= *at => false,
            _ => {
                last.insert(server, now);
                true
            }
        }
    }

    fn release(&self, server: TunnelServerId, id: u64) {
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.servers.get_mut(&server) {
            entry.held.retain(|held| held.id != id);
            if entry.held.is_empty() {
                inner.servers.remove(&server);
            }
        }
    }

    fn is_held(&self) -> bool {
        self.inner
            .lock()
            .servers
            .values()
            .any(|entry| !entry.held.is_empty())
    }
}

impl Holder {
    /// Snapshots the wake-ups seen so far: call before looking for pending ends, so that
    /// one asked for meanwhile wakes the next [`Holder::wait`].
    pub fn mark(&mut self) {
        self.wake.borrow_and_update();
    }

    /// Waits for a wake-up of this server, a replacement, the broker's stop, or
    /// `deadline`, whichever comes first.
    pub async fn wait(&mut self, deadline: tokio::time::Instant) -> Wake {
        if *self.replaced.borrow() || *self.stopping.borrow() {
            return Wake::Answer;
        }
        tokio::select! {
            changed = self.wake.changed() => match changed {
                Ok(()) => Wake::Changed,
                Err(_) => Wake::Answer,
            },
            _ = self.replaced.changed() => Wake::Answer,
            _ = self.stopping.changed() => Wake::Answer,
            () = tokio::time::sleep_until(deadline) => Wake::Deadline,
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.hub.release(self.server, self.id);
    }
}

/// While any request is held: reads the pending ends per server every
/// [`WATCH_INTERVAL`] and wakes the servers whose pending ends changed (asked for on
/// another broker, or by `portcullis admin`).
async fn watch_pending(hub: Arc<ControlHub>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        if !hub.is_held() {
            let mut inner = hub.inner.lock();
            // Checked again under the lock: a request registered meanwhile saw `watching`.
            if inner.servers.values().all(|entry| entry.held.is_empty()) {
                inner.watching = false;
                inner.pending.clear();
                return;
            }
        }
        let summary = match hub.store.pending_end_summary((hub.clock)()).await {
            Ok(summary) => {
                if failing {
                    tracing::info!("reading pending session ends works again");
                    failing = false;
                }
                summary
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot read pending session ends; retrying");
                    failing = true;
                }
                continue;
            }
        };
        let mut inner = hub.inner.lock();
        let mut changed = Vec::new();
        let mut now_pending = HashMap::with_capacity(summary.len());
        for (server, count, latest) in summary {
            if inner.pending.get(&server) != Some(&(count, latest)) {
                changed.push(server);
            }
            now_pending.insert(server, (count, latest));
        }
        inner.pending = now_pending;
        for server in changed {
            if let Some(entry) = inner.servers.get(&server) {
                entry
                    .wake
                    .send_modify(|version| *version = version.wrapping_add(1));
            }
        }
    }
}
