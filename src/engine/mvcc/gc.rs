//! Garbage collection of old versions during RocksDB compactions.
//!
//! A compaction hands the filter its entries in key order, so all versions of
//! one user key arrive together, newest first. With watermark W (see
//! [`Horizon::gc_watermark`]):
//!
//! ```text
//!   k @ 900   keep    newer than W: a running snapshot may need it
//!   k @ 400   keep    newest version <= W: what every snapshot >= W sees
//!   k @ 300   drop    shadowed at every snapshot >= W
//!   k @ 100   drop
//! ```
//!
//! A tombstone that is the newest version at or below W is dropped too, but
//! only in a full compaction, where no older version of the key can survive
//! in a file the compaction did not read. Compactions run in RocksDB's
//! background threads and never block writers.

use std::sync::Arc;

use super::horizon::Horizon;
use super::version::{decode_version, split_versioned};
use crate::engine::storage::{CompactionFilter, CompactionFilterFactory};

/// Creates a [`VersionFilter`] per compaction with the watermark of that moment.
pub struct GcFilterFactory {
    horizon: Arc<Horizon>,
}

impl GcFilterFactory {
    /// A factory reading watermarks from `horizon`.
    pub fn new(horizon: Arc<Horizon>) -> GcFilterFactory {
        GcFilterFactory { horizon }
    }
}

impl CompactionFilterFactory for GcFilterFactory {
    fn create(&self, full: bool) -> Box<dyn CompactionFilter> {
        Box::new(VersionFilter {
            watermark: self.horizon.gc_watermark(),
            full,
            current: Vec::new(),
            kept_visible: false,
        })
    }
}

/// Drops versions of one compaction that no snapshot at or above the watermark can see.
pub struct VersionFilter {
    watermark: u64,
    full: bool,
    current: Vec<u8>,
    /// Whether the current key's newest version at or below the watermark was seen.
    kept_visible: bool,
}

impl CompactionFilter for VersionFilter {
    fn keep(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some((user, ts)) = split_versioned(key) else {
            return true;
        };
        if user != self.current.as_slice() {
            self.current.clear();
            self.current.extend_from_slice(user);
            self.kept_visible = false;
        }
        if ts > self.watermark {
            return true;
        }
        if self.kept_visible {
            return false;
        }
        self.kept_visible = true;
        let tombstone = matches!(decode_version(value), Ok(None));
        !(tombstone && self.full)
    }
}
