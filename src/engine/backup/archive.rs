//! The commit log of point-in-time recovery.
//!
//! A database opened with an archive (`omen serve --archive DIR`) appends
//! every write it makes to storage to segment files under `DIR/archive/`,
//! before the write reaches RocksDB and, at full durability, fsynced with it:
//! one record per commit (its timestamp, the previous commit's timestamp and
//! its operations) and one per write outside the commit order (a sequence
//! reserving values). A restore replays the records after a base backup's
//! commit timestamp, up to a target, over the restored files.
//!
//! ```text
//!   segment:  "OMENARC1" | database id (16) | start ts (8) | record...
//!   record:   payload length (4) | checksum (8, blake3) | payload
//!   payload:  kind (1: commit, 2: aside) | prev ts (8) | ts (8) | operation...
//!   op:       tag (1: put, 2: delete, 3: range delete) | family (1) | key | value or end
//!             (each byte string: length (4) | bytes)
//! ```
//!
//! Each process that opens the database starts a new segment whose start ts
//! is the newest commit in storage. Records of an older segment past the next
//! segment's start ts never reached storage (the process stopped between the
//! log and the write) and are skipped. A commit whose previous timestamp is
//! not the one replayed last means commits are missing (the database was
//! opened without the archive): replay stops with an error naming the gap.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::engine::error::{Error, Result};
use crate::engine::mvcc::{now_micros, put_last_ts};
use crate::engine::storage::{
    BatchOp, Cf, CommitMark, KvIter, RangeEstimate, Storage, SyncMode, Visit, WriteBatch,
};

const MAGIC: &[u8; 8] = b"OMENARC1";
const HEADER_LEN: usize = 8 + 16 + 8;
const COMMIT: u8 = 1;
const ASIDE: u8 = 2;
/// A segment past this size is closed and a new one started.
const SEGMENT_BYTES: u64 = 64 << 20;
/// The largest record a reader accepts: a bound on memory for damaged files.
const MAX_RECORD: usize = 1 << 30;
/// The directory under an archive (a backup repository) holding segments.
pub const ARCHIVE_DIR: &str = "archive";

/// Appends a database's writes to its archive.
pub struct Archive {
    dir: PathBuf,
    database: [u8; 16],
    segment: Mutex<Segment>,
}

struct Segment {
    file: File,
    path: PathBuf,
    len: u64,
    last_ts: u64,
}

impl Archive {
    /// Starts a new segment in `repository`'s archive for the database
    /// `database` whose newest commit is `last_ts`.
    pub fn open(repository: &Path, database: [u8; 16], last_ts: u64) -> Result<Archive> {
        let dir = repository.join(ARCHIVE_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating the archive {}", dir.display()), e))?;
        let segment = Segment::create(&dir, &database, last_ts)?;
        Ok(Archive {
            dir,
            database,
            segment: Mutex::new(segment),
        })
    }

    /// Logs one batch and then hands it to `inner`, holding the log so that
    /// records are in the order storage applied them.
    fn write(
        &self,
        inner: &dyn Storage,
        batch: WriteBatch,
        sync: SyncMode,
        commits: &[CommitMark],
    ) -> Result<()> {
        let mut segment = self.segment.lock();
        let mut bytes = Vec::new();
        if commits.is_empty() {
            encode_record(&mut bytes, ASIDE, 0, now_micros(), batch.ops());
        } else {
            let mut start = 0;
            for mark in commits {
                let end = mark.end.min(batch.len());
                encode_record(
                    &mut bytes,
                    COMMIT,
                    mark.prev_ts,
                    mark.ts,
                    &batch.ops()[start..end],
                );
                start = end;
            }
        }
        let path = segment.path.clone();
        let failed = |e| Error::io(format!("appending to the archive {}", path.display()), e);
        segment.file.write_all(&bytes).map_err(failed)?;
        if sync == SyncMode::Durable {
            segment.file.sync_data().map_err(failed)?;
        }
        segment.len += bytes.len() as u64;
        if let Some(last) = commits.last() {
            segment.last_ts = last.ts;
        }
        inner.write(batch, sync)?;
        if segment.len >= SEGMENT_BYTES {
            *segment = Segment::create(&self.dir, &self.database, segment.last_ts)?;
        }
        Ok(())
    }
}

impl Segment {
    fn create(dir: &Path, database: &[u8; 16], start_ts: u64) -> Result<Segment> {
        let failed = |path: &Path, e| Error::io(format!("creating {}", path.display()), e);
        // Named by creation time, so names sort in the order segments were
        // written; a name taken (two opens in one microsecond) moves on.
        let mut stamp = now_micros();
        let (file, path) = loop {
            let path = dir.join(format!("{stamp:020}.omenlog"));
            match File::options().append(true).create_new(true).open(&path) {
                Ok(file) => break (file, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => stamp += 1,
                Err(e) => return Err(failed(&path, e)),
            }
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(database);
        header.extend_from_slice(&start_ts.to_be_bytes());
        let mut segment = Segment {
            file,
            path,
            len: HEADER_LEN as u64,
            last_ts: start_ts,
        };
        segment
            .file
            .write_all(&header)
            .and_then(|()| segment.file.sync_all())
            .map_err(|e| failed(&segment.path, e))?;
        super::sync_dir(dir)?;
        Ok(segment)
    }
}

/// Storage whose every write is logged to an [`Archive`] first.
pub struct Archived {
    inner: Arc<dyn Storage>,
    archive: Archive,
}

impl Archived {
    /// `inner`, logging to `archive`.
    pub fn new(inner: Arc<dyn Storage>, archive: Archive) -> Archived {
        Archived { inner, archive }
    }
}

impl Storage for Archived {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(cf, key)
    }

    fn seek_prefix(
        &self,
        cf: Cf,
        key: &[u8],
        prefix_len: usize,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.inner.seek_prefix(cf, key, prefix_len)
    }

    fn scan(&self, cf: Cf, from: &[u8], to: Option<&[u8]>) -> KvIter<'_> {
        self.inner.scan(cf, from, to)
    }

    fn write(&self, batch: WriteBatch, sync: SyncMode) -> Result<()> {
        self.archive.write(self.inner.as_ref(), batch, sync, &[])
    }

    fn write_commits(
        &self,
        batch: WriteBatch,
        sync: SyncMode,
        commits: &[CommitMark],
    ) -> Result<()> {
        self.archive
            .write(self.inner.as_ref(), batch, sync, commits)
    }

    fn compact(&self, cf: Cf) -> Result<()> {
        self.inner.compact(cf)
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        self.inner.checkpoint(dir)
    }

    fn entries_scanned(&self) -> u64 {
        self.inner.entries_scanned()
    }

    fn scan_each(&self, cf: Cf, from: &[u8], to: Option<&[u8]>, each: Visit<'_>) -> Result<()> {
        self.inner.scan_each(cf, from, to, each)
    }

    fn approximate_bytes(&self, cf: Cf, from: &[u8], to: &[u8]) -> u64 {
        self.inner.approximate_bytes(cf, from, to)
    }

    fn estimate(&self, cf: Cf, from: &[u8], to: &[u8]) -> RangeEstimate {
        self.inner.estimate(cf, from, to)
    }

    fn cuts(&self, cf: Cf, from: &[u8], to: &[u8], parts: usize) -> Vec<Vec<u8>> {
        self.inner.cuts(cf, from, to, parts)
    }

    fn sorted_file(
        &self,
        cf: Cf,
        path: &Path,
    ) -> Result<Box<dyn crate::engine::storage::SortedFile + '_>> {
        self.inner.sorted_file(cf, path)
    }

    /// Ingested files bypass the commit log, so a database that archives
    /// its commits takes every write through it.
    fn ingest(&self, _cf: Cf, _files: &[PathBuf]) -> Result<()> {
        Err(Error::Unsupported(
            "loading files directly while commits are archived".into(),
        ))
    }

    fn ingests(&self) -> bool {
        false
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode_record(out: &mut Vec<u8>, kind: u8, prev_ts: u64, ts: u64, ops: &[BatchOp]) {
    let mut payload = Vec::with_capacity(17 + ops.len() * 32);
    payload.push(kind);
    payload.extend_from_slice(&prev_ts.to_be_bytes());
    payload.extend_from_slice(&ts.to_be_bytes());
    for op in ops {
        let (tag, cf, first, second) = match op {
            BatchOp::Put { cf, key, value } => (1u8, cf, key, Some(value)),
            BatchOp::Delete { cf, key } => (2, cf, key, None),
            BatchOp::DeleteRange { cf, from, to } => (3, cf, from, Some(to)),
        };
        payload.push(tag);
        payload.push(
            Cf::ALL
                .iter()
                .position(|c| c == cf)
                .expect("a known family") as u8,
        );
        put_bytes(&mut payload, first);
        if let Some(second) = second {
            put_bytes(&mut payload, second);
        }
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
}

fn checksum(bytes: &[u8]) -> u64 {
    let hash = blake3::hash(bytes);
    u64::from_be_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// One record read back.
struct Record {
    commit: bool,
    prev_ts: u64,
    ts: u64,
    batch: WriteBatch,
}

fn decode_payload(payload: &[u8]) -> Option<Record> {
    let mut at = 17;
    let kind = *payload.first()?;
    let prev_ts = u64::from_be_bytes(payload.get(1..9)?.try_into().ok()?);
    let ts = u64::from_be_bytes(payload.get(9..17)?.try_into().ok()?);
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let bytes = payload.get(*at..*at + n)?;
        *at += n;
        Some(bytes)
    };
    let mut batch = WriteBatch::new();
    while at < payload.len() {
        let head = take(&mut at, 2)?;
        let (tag, cf) = (head[0], *Cf::ALL.get(head[1] as usize)?);
        let bytes = |at: &mut usize| -> Option<Vec<u8>> {
            let len = u32::from_be_bytes(take(at, 4)?.try_into().ok()?) as usize;
            take(at, len).map(<[u8]>::to_vec)
        };
        let first = bytes(&mut at)?;
        match tag {
            1 => batch.put(cf, first, bytes(&mut at)?),
            2 => batch.delete(cf, first),
            3 => batch.delete_range(cf, first, bytes(&mut at)?),
            _ => return None,
        }
    }
    matches!(kind, COMMIT | ASIDE).then_some(Record {
        commit: kind == COMMIT,
        prev_ts,
        ts,
        batch,
    })
}

/// A segment of the archive, as found on disk.
struct SegmentFile {
    path: PathBuf,
    start_ts: u64,
}

/// The segments of `database` in `repository`'s archive, oldest first.
fn segments(repository: &Path, database: &[u8; 16]) -> Result<Vec<SegmentFile>> {
    let dir = repository.join(ARCHIVE_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("omenlog") {
            continue;
        }
        let mut header = [0u8; HEADER_LEN];
        let read = File::open(&path).and_then(|mut f| f.read_exact(&mut header));
        if read.is_err() || &header[..8] != MAGIC {
            // A segment whose header never reached the disk holds no records.
            continue;
        }
        if header[8..24] == database[..] {
            let start_ts = u64::from_be_bytes(header[24..].try_into().expect("8 bytes"));
            found.push(SegmentFile { path, start_ts });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Reads the records of one segment; a record cut short at the end (a
/// crash while appending) ends it, a damaged one before the end is an error.
fn read_segment(segment: &SegmentFile, mut each: impl FnMut(Record) -> Result<bool>) -> Result<()> {
    let path = &segment.path;
    let damaged = |offset: u64| {
        Error::Corruption(format!(
            "the archive segment {} is damaged at byte {offset}",
            path.display()
        ))
    };
    let file = File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut offset = HEADER_LEN as u64;
    loop {
        let mut head = [0u8; 12];
        if size - offset < 12 {
            return Ok(());
        }
        reader
            .read_exact(&mut head)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let sum = u64::from_be_bytes(head[4..].try_into().expect("8 bytes"));
        let end = offset + 12 + len as u64;
        if end > size {
            return Ok(());
        }
        if len > MAX_RECORD {
            return Err(damaged(offset));
        }
        let mut payload = vec![0u8; len];
        reader
            .read_exact(&mut payload)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let record = (checksum(&payload) == sum)
            .then(|| decode_payload(&payload))
            .flatten();
        let Some(record) = record else {
            if end == size {
                return Ok(());
            }
            return Err(damaged(offset));
        };
        if !each(record)? {
            return Ok(());
        }
        offset = end;
    }
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replayed {
    /// Commits applied.
    pub commits: u64,
    /// The newest commit applied, or the base's when none was.
    pub last_ts: u64,
}

/// Applies to `storage` (a restored backup whose newest commit is
/// `base_ts`) every archived write of `database` after it, up to the commits
/// at or before `target` (all of them when None).
pub fn replay(
    repository: &Path,
    database: &[u8; 16],
    base_ts: u64,
    target: Option<u64>,
    storage: &dyn Storage,
) -> Result<Replayed> {
    let segments = segments(repository, database)?;
    let mut done = Replayed {
        commits: 0,
        last_ts: base_ts,
    };
    let mut finished = false;
    for (i, segment) in segments.iter().enumerate() {
        if finished {
            break;
        }
        // Records past the next segment's start never reached storage.
        let limit = segments.get(i + 1).map(|next| next.start_ts);
        let mut log_ts = segment.start_ts;
        read_segment(segment, |record| {
            if record.commit {
                if limit.is_some_and(|limit| record.ts > limit) {
                    return Ok(false);
                }
                log_ts = record.ts;
                if record.ts <= base_ts {
                    return Ok(true);
                }
                if target.is_some_and(|target| record.ts > target) {
                    finished = true;
                    return Ok(false);
                }
                if record.prev_ts != done.last_ts {
                    return Err(Error::Corruption(format!(
                        "the archive lacks the commits between timestamps {} and {} \
                         (was the database opened without --archive?); it can restore \
                         up to {}",
                        done.last_ts, record.prev_ts, done.last_ts
                    )));
                }
                let mut batch = record.batch;
                put_last_ts(&mut batch, record.ts);
                storage.write(batch, SyncMode::Buffered)?;
                done.commits += 1;
                done.last_ts = record.ts;
            } else if log_ts >= base_ts {
                storage.write(record.batch, SyncMode::Buffered)?;
            }
            Ok(true)
        })?;
    }
    // One durable write makes every buffered one before it durable.
    let mut batch = WriteBatch::new();
    put_last_ts(&mut batch, done.last_ts);
    storage.write(batch, SyncMode::Durable)?;
    Ok(done)
}

/// Removes the segments of every database whose records all precede
/// `keep_from` (the oldest backup kept): the newest segment of each database
/// always stays, since its process may still be appending.
pub fn prune(repository: &Path, database: &[u8; 16], keep_from: u64) -> Result<usize> {
    let segments = segments(repository, database)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        if pair[1].start_ts <= keep_from {
            std::fs::remove_file(&pair[0].path)
                .map_err(|e| Error::io(format!("removing {}", pair[0].path.display()), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::storage::Memory;

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_a_segment() {
        let mut bytes = Vec::new();
        let mut batch = WriteBatch::new();
        batch.put(Cf::Rows, b"k".to_vec(), b"v".to_vec());
        batch.delete(Cf::Meta, b"m".to_vec());
        batch.delete_range(Cf::Catalog, b"a".to_vec(), b"b".to_vec());
        encode_record(&mut bytes, COMMIT, 3, 4, batch.ops());
        let record = decode_payload(&bytes[12..]).expect("decodes");
        assert!(record.commit);
        assert_eq!((record.prev_ts, record.ts), (3, 4));
        assert_eq!(record.batch, batch);

        let repo = tempfile::tempdir().unwrap();
        let archive = Archive::open(repo.path(), [7; 16], 10).unwrap();
        let storage = Memory::new(None);
        let mut first = WriteBatch::new();
        first.put(Cf::Rows, b"a".to_vec(), b"1".to_vec());
        let mark = |prev, ts, end| CommitMark {
            prev_ts: prev,
            ts,
            end,
        };
        archive
            .write(&storage, first, SyncMode::Durable, &[mark(10, 11, 1)])
            .unwrap();
        let mut second = WriteBatch::new();
        second.put(Cf::Rows, b"b".to_vec(), b"2".to_vec());
        second.put(Cf::Rows, b"c".to_vec(), b"3".to_vec());
        archive
            .write(
                &storage,
                second,
                SyncMode::Durable,
                &[mark(11, 12, 1), mark(12, 13, 2)],
            )
            .unwrap();
        let path = archive.segment.lock().path.clone();
        drop(archive);

        let restored = Memory::new(None);
        let done = replay(repo.path(), &[7; 16], 10, Some(12), &restored).unwrap();
        assert_eq!((done.commits, done.last_ts), (2, 12));
        assert!(restored.get(Cf::Rows, b"b").unwrap().is_some());
        assert!(restored.get(Cf::Rows, b"c").unwrap().is_none());

        // A crash in the middle of the last record: the rest replays.
        let len = std::fs::metadata(&path).unwrap().len();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let restored = Memory::new(None);
        let done = replay(repo.path(), &[7; 16], 10, None, &restored).unwrap();
        assert_eq!((done.commits, done.last_ts), (2, 12));

        // A base the archive does not reach is a gap, not a silent restore.
        let restored = Memory::new(None);
        let err = replay(repo.path(), &[7; 16], 5, None, &restored).unwrap_err();
        assert!(err.to_string().contains("lacks the commits"), "{err}");
    }
}
