//! [`Storage`] on RocksDB.
//!
//! The rows family has a prefix extractor that strips the 8-byte version
//! suffix, with bloom filters on that prefix: a point read of a key that does
//! not exist skips every SST file whose filter rules it out.

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, CompactOptions, DBCompressionType,
    IngestExternalFileOptions, Options, ReadOptions, SliceTransform, SstFileWriter, WriteOptions,
    DB,
};

use super::{
    BatchOp, Cf, CompactionFilter, CompactionFilterFactory, KvIter, RangeEstimate, ScanCounter,
    SortedFile, Storage, SyncMode, Visit, WriteBatch,
};
use crate::engine::error::{Error, Result};

/// Length of the version suffix on keys of the rows family.
const VERSION_SUFFIX: usize = 8;

/// Tuning for a RocksDB database.
#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// Block cache size in bytes, shared by all families.
    pub block_cache_bytes: usize,
    /// Memtable size per family in bytes.
    pub write_buffer_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> RocksOptions {
        RocksOptions {
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
        }
    }
}

/// Table files RocksDB keeps open (well under the usual limit of 1024 open
/// files a process has).
const MAX_OPEN_FILES: i32 = 512;

/// RocksDB-backed storage.
pub struct RocksDb {
    db: DB,
    /// Each family's options (as in [`Cf::ALL`]), which files made for
    /// ingestion are written with.
    families: Vec<Options>,
    /// Row versions scans have read (see [`Storage::entries_scanned`]).
    scanned: ScanCounter,
}

impl RocksDb {
    /// Opens (creating when missing) the database in `dir`. `filter` garbage-collects
    /// the rows family during compactions.
    pub fn open(
        dir: &Path,
        options: RocksOptions,
        filter: Option<Arc<dyn CompactionFilterFactory>>,
    ) -> Result<RocksDb> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        // Table files open when first read, at most this many at once: with
        // RocksDB's default (-1) every file opens, reading its index and
        // filter blocks, while the database opens, so opening took time in
        // proportion to the data (and a large database met the process's
        // open file limit).
        db_opts.set_max_open_files(MAX_OPEN_FILES);

        let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes);
        let family_options = Cf::ALL.map(|cf| {
            let mut opts = Options::default();
            opts.set_write_buffer_size(options.write_buffer_bytes);
            opts.set_compression_type(DBCompressionType::Lz4);
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            if cf == Cf::Rows {
                table.set_whole_key_filtering(false);
                opts.set_prefix_extractor(SliceTransform::create(
                    "omen.strip_version",
                    strip_version,
                    Some(has_version),
                ));
                if let Some(factory) = &filter {
                    opts.set_compaction_filter_factory(FilterFactory {
                        inner: factory.clone(),
                        name: CString::new("omen.gc").expect("no NUL in name"),
                    });
                }
            }
            opts.set_block_based_table_factory(&table);
            opts
        });
        let families = Cf::ALL
            .iter()
            .zip(&family_options)
            .map(|(cf, opts)| ColumnFamilyDescriptor::new(cf.name(), opts.clone()));
        let db = DB::open_cf_descriptors(&db_opts, dir, families)
            .map_err(|e| Error::io(format!("opening RocksDB in {}", dir.display()), e))?;
        Ok(RocksDb {
            db,
            families: family_options.into(),
            scanned: Default::default(),
        })
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("every family is created at open")
    }

    /// An iterator over `cf` from `from` up to `to`, in key order.
    fn iterator(&self, cf: Cf, from: &[u8], to: Option<&[u8]>) -> rocksdb::DBRawIterator<'_> {
        let mut opts = ReadOptions::default();
        opts.set_total_order_seek(true);
        if let Some(to) = to {
            opts.set_iterate_upper_bound(to.to_vec());
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), opts);
        iter.seek(from);
        iter
    }

    /// The files of `cf` with entries in `[from, to)`.
    fn files(&self, cf: Cf, from: &[u8], to: &[u8]) -> Vec<rocksdb::LiveFile> {
        let files = self.db.live_files().unwrap_or_default();
        files
            .into_iter()
            .filter(|f| f.column_family_name == cf.name())
            .filter(|f| {
                f.start_key.as_deref().is_some_and(|k| k < to)
                    && f.end_key.as_deref().is_some_and(|k| k >= from)
            })
            .collect()
    }
}

fn strip_version(key: &[u8]) -> &[u8] {
    &key[..key.len() - VERSION_SUFFIX]
}

fn has_version(key: &[u8]) -> bool {
    key.len() > VERSION_SUFFIX
}

impl Storage for RocksDb {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    fn seek_prefix(
        &self,
        cf: Cf,
        key: &[u8],
        prefix_len: usize,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut opts = ReadOptions::default();
        let prefix = &key[..prefix_len.min(key.len())];
        if cf == Cf::Rows && key.len() > VERSION_SUFFIX && prefix_len == key.len() - VERSION_SUFFIX
        {
            opts.set_prefix_same_as_start(true);
        } else {
            opts.set_total_order_seek(true);
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), opts);
        iter.seek(key);
        match (iter.key(), iter.value()) {
            (Some(k), Some(v)) if k.starts_with(prefix) => Ok(Some((k.to_vec(), v.to_vec()))),
            _ => {
                iter.status()?;
                Ok(None)
            }
        }
    }

    fn scan(&self, cf: Cf, from: &[u8], to: Option<&[u8]>) -> KvIter<'_> {
        let mut iter = self.iterator(cf, from, to);
        let mut failed = false;
        let entries = std::iter::from_fn(move || {
            if failed {
                return None;
            }
            if let (Some(k), Some(v)) = (iter.key(), iter.value()) {
                let item = (k.to_vec(), v.to_vec());
                iter.next();
                return Some(Ok(item));
            }
            match iter.status() {
                Ok(()) => None,
                Err(e) => {
                    failed = true;
                    Some(Err(e.into()))
                }
            }
        });
        self.scanned.count(cf, entries)
    }

    fn scan_each(&self, cf: Cf, from: &[u8], to: Option<&[u8]>, each: Visit<'_>) -> Result<()> {
        let mut iter = self.iterator(cf, from, to);
        let mut read = 0;
        let result = (|| {
            while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
                read += 1;
                if !each(k, v)? {
                    return Ok(());
                }
                iter.next();
            }
            iter.status().map_err(Error::from)
        })();
        self.scanned.add(cf, read);
        result
    }

    fn entries_scanned(&self) -> u64 {
        self.scanned.total()
    }

    fn approximate_bytes(&self, cf: Cf, from: &[u8], to: &[u8]) -> u64 {
        let range = rocksdb::Range::new(from, to);
        self.db.get_approximate_sizes_cf(self.cf(cf), &[range])[0]
    }

    fn estimate(&self, cf: Cf, from: &[u8], to: &[u8]) -> RangeEstimate {
        let bytes = self.approximate_bytes(cf, from, to);
        // Entries: the range's bytes at the density of the files it touches.
        let (size, entries) = self
            .files(cf, from, to)
            .iter()
            .fold((0u64, 0u64), |(s, e), f| {
                (s + f.size as u64, e + f.num_entries)
            });
        let entries = match size {
            0 => 0,
            size => (entries as u128 * bytes as u128 / size as u128) as u64,
        };
        RangeEstimate { bytes, entries }
    }

    fn cuts(&self, cf: Cf, from: &[u8], to: &[u8], parts: usize) -> Vec<Vec<u8>> {
        if parts < 2 {
            return Vec::new();
        }
        // Candidates: the first and last keys of the files in the range;
        // each is weighed by the bytes before it.
        let mut keys: Vec<Vec<u8>> = self
            .files(cf, from, to)
            .into_iter()
            .flat_map(|f| [f.start_key, f.end_key])
            .flatten()
            .filter(|k| k.as_slice() > from && k.as_slice() < to)
            .collect();
        keys.sort();
        keys.dedup();
        let mut ranges: Vec<rocksdb::Range<'_>> =
            keys.iter().map(|k| rocksdb::Range::new(from, k)).collect();
        ranges.push(rocksdb::Range::new(from, to));
        let before = self.db.get_approximate_sizes_cf(self.cf(cf), &ranges);
        let total = before[keys.len()];
        let mut cuts: Vec<Vec<u8>> = Vec::new();
        for part in 1..parts as u64 {
            let target = total * part / parts as u64;
            let Some(i) = before[..keys.len()].iter().position(|&b| b >= target) else {
                break;
            };
            if before[i] > 0 && before[i] < total && cuts.last() != Some(&keys[i]) {
                cuts.push(keys[i].clone());
            }
        }
        cuts
    }

    fn write(&self, batch: WriteBatch, sync: SyncMode) -> Result<()> {
        let mut rb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put { cf, key, value } => rb.put_cf(self.cf(cf), key, value),
                BatchOp::Delete { cf, key } => rb.delete_cf(self.cf(cf), key),
                BatchOp::DeleteRange { cf, from, to } => rb.delete_range_cf(self.cf(cf), from, to),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync == SyncMode::Durable);
        self.db.write_opt(rb, &opts)?;
        Ok(())
    }

    fn sorted_file(&self, cf: Cf, path: &Path) -> Result<Box<dyn SortedFile + '_>> {
        let index = Cf::ALL
            .iter()
            .position(|c| *c == cf)
            .expect("every family is listed");
        let writer = SstFileWriter::create(&self.families[index]);
        writer
            .open(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(Box::new(SstFile {
            writer,
            path: path.to_path_buf(),
        }))
    }

    fn ingest(&self, cf: Cf, files: &[std::path::PathBuf]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut opts = IngestExternalFileOptions::default();
        opts.set_move_files(true);
        self.db
            .ingest_external_file_cf_opts(self.cf(cf), &opts, files.to_vec())
            .map_err(|e| Error::io("loading sorted files into RocksDB", e))
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| Error::io(format!("creating a checkpoint in {}", dir.display()), e))
    }

    fn compact(&self, cf: Cf) -> Result<()> {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db.flush_cf(self.cf(cf))?;
        self.db
            .compact_range_cf_opt(self.cf(cf), None::<&[u8]>, None::<&[u8]>, &opts);
        Ok(())
    }
}

/// A table file made for [`Storage::ingest`].
struct SstFile<'a> {
    writer: SstFileWriter<'a>,
    path: std::path::PathBuf,
}

impl SortedFile for SstFile<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.writer
            .put(key, value)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    fn size(&self) -> u64 {
        self.writer.file_size()
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.writer
            .finish()
            .map_err(|e| Error::io(format!("finishing {}", self.path.display()), e))
    }
}

/// Adapts an engine [`CompactionFilterFactory`] to RocksDB's trait.
struct FilterFactory {
    inner: Arc<dyn CompactionFilterFactory>,
    name: CString,
}

impl rocksdb::compaction_filter_factory::CompactionFilterFactory for FilterFactory {
    type Filter = FilterAdapter;

    fn create(
        &mut self,
        context: rocksdb::compaction_filter_factory::CompactionFilterContext,
    ) -> FilterAdapter {
        FilterAdapter {
            inner: self.inner.create(context.is_full_compaction),
            name: self.name.clone(),
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        &self.name
    }
}

struct FilterAdapter {
    inner: Box<dyn CompactionFilter>,
    name: CString,
}

impl rocksdb::compaction_filter::CompactionFilter for FilterAdapter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> rocksdb::CompactionDecision {
        if self.inner.keep(key, value) {
            rocksdb::CompactionDecision::Keep
        } else {
            rocksdb::CompactionDecision::Remove
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        &self.name
    }
}
