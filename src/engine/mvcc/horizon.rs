//! What the database can see and what it must keep: the newest visible
//! commit timestamp and the snapshots of running transactions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// The visibility horizon shared by transactions, the commit pipeline and
/// garbage collection.
///
/// Invariant: a snapshot is registered in `active` under the same lock that
/// reads `visible`, and the garbage-collection watermark is computed under
/// that lock too, so the watermark never passes a snapshot being taken.
pub struct Horizon {
    visible: AtomicU64,
    active: Mutex<BTreeMap<u64, usize>>,
    retention_micros: u64,
    /// Versions that snapshots taken in a window must not see (bulk loads).
    hidden: parking_lot::RwLock<Vec<Hidden>>,
    /// The end of the latest window in `hidden`: snapshots at or after it
    /// read as they are.
    hidden_until: AtomicU64,
}

/// Versions at timestamp `at` of keys under `prefix`, which snapshots
/// taken from `at` up to `until` (exclusive) read past, as if taken at
/// `at - 1`: the rows of a bulk load, stamped at a timestamp reserved before
/// they were written and made visible by the commit at `until`.
struct Hidden {
    prefix: Vec<u8>,
    at: u64,
    until: u64,
}

impl Horizon {
    /// A horizon whose newest visible commit is `visible`.
    pub fn new(visible: u64, retention_micros: u64) -> Horizon {
        Horizon {
            visible: AtomicU64::new(visible),
            active: Mutex::new(BTreeMap::new()),
            retention_micros,
            hidden: Default::default(),
            hidden_until: AtomicU64::new(0),
        }
    }

    /// Makes snapshots taken from `at` up to `until` read keys under
    /// `prefix` as of `at - 1`, so that versions written at `at` (a
    /// reserved timestamp) appear at `until`. The writer must keep every
    /// other write away from those keys meanwhile (a table lock). Until no
    /// such snapshot is left, garbage collection keeps what they read.
    pub fn hide(&self, prefix: Vec<u8>, at: u64, until: u64) {
        let oldest = self.oldest_snapshot();
        let mut hidden = self.hidden.write();
        hidden.retain(|h| h.until > oldest);
        hidden.push(Hidden { prefix, at, until });
        self.hidden_until.fetch_max(until, Ordering::AcqRel);
    }

    /// The timestamp a snapshot at `read_ts` reads `key` (or a range
    /// starting there) at: `read_ts`, unless [`Horizon::hide`] says otherwise.
    pub fn snapshot_for(&self, key: &[u8], read_ts: u64) -> u64 {
        if read_ts >= self.hidden_until.load(Ordering::Acquire) {
            return read_ts;
        }
        self.hidden
            .read()
            .iter()
            .find(|h| (h.at..h.until).contains(&read_ts) && key.starts_with(&h.prefix))
            .map_or(read_ts, |h| h.at - 1)
    }

    /// The newest commit timestamp readers may see.
    pub fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Makes every commit up to `ts` visible. Only the commit pipeline calls this.
    pub(super) fn publish(&self, ts: u64) {
        self.visible.store(ts, Ordering::Release);
    }

    /// Takes a snapshot at the newest visible commit and registers it.
    pub fn register(&self) -> u64 {
        let mut active = self.active.lock();
        let ts = self.visible();
        *active.entry(ts).or_insert(0) += 1;
        ts
    }

    /// Forgets a snapshot taken by [`Horizon::register`].
    pub fn deregister(&self, ts: u64) {
        let mut active = self.active.lock();
        let count = active
            .get_mut(&ts)
            .expect("deregistered a snapshot that was registered");
        *count -= 1;
        if *count == 0 {
            active.remove(&ts);
        }
    }

    /// The oldest snapshot still in use (the newest visible commit when none is).
    pub fn oldest_snapshot(&self) -> u64 {
        let active = self.active.lock();
        active
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.visible())
    }

    /// Versions shadowed by a newer version at or below this timestamp can be
    /// removed: no running snapshot and no time-travel read within the
    /// retention window can see them.
    pub fn gc_watermark(&self) -> u64 {
        let active = self.active.lock();
        let visible = self.visible();
        let oldest = active.keys().next().copied().unwrap_or(visible);
        let retained = now_micros().saturating_sub(self.retention_micros);
        // Snapshots a bulk load's window moves back read what was there
        // before it: keep that.
        let hidden = self
            .hidden
            .read()
            .iter()
            .filter(|h| h.until > oldest)
            .map(|h| h.at - 1)
            .min()
            .unwrap_or(u64::MAX);
        oldest.min(visible).min(retained).min(hidden)
    }
}

/// Microseconds since the Unix epoch by the wall clock.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
