//! [`Storage`] in memory: the model RocksDB is checked against, and a fast
//! backend for tests that do not need durability.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{
    BatchOp, Cf, CompactionFilterFactory, KvIter, ScanCounter, SortedFile, Storage, SyncMode,
    WriteBatch,
};
use crate::engine::error::{Error, Result};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// In-memory storage: one ordered map per column family.
pub struct Memory {
    families: RwLock<BTreeMap<Cf, Map>>,
    filter: Option<Arc<dyn CompactionFilterFactory>>,
    /// Row versions scans have read (see [`Storage::entries_scanned`]).
    scanned: ScanCounter,
}

impl Memory {
    /// Empty storage; `filter` runs over the rows family on [`Storage::compact`].
    pub fn new(filter: Option<Arc<dyn CompactionFilterFactory>>) -> Memory {
        let families = Cf::ALL.into_iter().map(|cf| (cf, Map::new())).collect();
        Memory {
            families: RwLock::new(families),
            filter,
            scanned: Default::default(),
        }
    }
}

fn range<'a>(
    map: &'a Map,
    from: &[u8],
    to: Option<&[u8]>,
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> {
    let upper = to.map_or(Bound::Unbounded, |t| Bound::Excluded(t.to_vec()));
    let empty = matches!(&upper, Bound::Excluded(t) if t.as_slice() <= from);
    let bounds = if empty {
        (
            Bound::Excluded(from.to_vec()),
            Bound::Excluded(from.to_vec()),
        )
    } else {
        (Bound::Included(from.to_vec()), upper)
    };
    // BTreeMap::range panics on an empty Excluded..Excluded range of equal keys.
    let iter = if empty { None } else { Some(map.range(bounds)) };
    iter.into_iter().flatten()
}

impl Storage for Memory {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.families.read()[&cf].get(key).cloned())
    }

    fn seek_prefix(
        &self,
        cf: Cf,
        key: &[u8],
        prefix_len: usize,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let prefix = &key[..prefix_len.min(key.len())];
        let families = self.families.read();
        let found = range(&families[&cf], key, None)
            .next()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()));
        Ok(found)
    }

    fn scan(&self, cf: Cf, from: &[u8], to: Option<&[u8]>) -> KvIter<'_> {
        let families = self.families.read();
        let items: Vec<_> = range(&families[&cf], from, to)
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        self.scanned.count(cf, items.into_iter())
    }

    fn entries_scanned(&self) -> u64 {
        self.scanned.total()
    }

    fn write(&self, batch: WriteBatch, _sync: SyncMode) -> Result<()> {
        let mut families = self.families.write();
        for op in batch.ops {
            match op {
                BatchOp::Put { cf, key, value } => {
                    families
                        .get_mut(&cf)
                        .expect("all families exist")
                        .insert(key, value);
                }
                BatchOp::Delete { cf, key } => {
                    families
                        .get_mut(&cf)
                        .expect("all families exist")
                        .remove(&key);
                }
                BatchOp::DeleteRange { cf, from, to } => {
                    let map = families.get_mut(&cf).expect("all families exist");
                    let doomed: Vec<_> = range(map, &from, Some(&to))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        map.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    fn compact(&self, cf: Cf) -> Result<()> {
        let (Cf::Rows, Some(factory)) = (cf, &self.filter) else {
            return Ok(());
        };
        let mut filter = factory.create(true);
        self.families
            .write()
            .get_mut(&cf)
            .expect("all families exist")
            .retain(|k, v| filter.keep(k, v));
        Ok(())
    }

    fn sorted_file(&self, _cf: Cf, path: &std::path::Path) -> Result<Box<dyn SortedFile + '_>> {
        Ok(Box::new(MemoryFile {
            path: path.to_path_buf(),
            entries: Vec::new(),
            size: 0,
        }))
    }

    fn ingest(&self, cf: Cf, files: &[std::path::PathBuf]) -> Result<()> {
        let mut batch = WriteBatch::new();
        for path in files {
            let bytes = std::fs::read(path).map_err(|e| Error::io("reading a sorted file", e))?;
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let key = take_bytes(&mut rest)?;
                let value = take_bytes(&mut rest)?;
                batch.put(cf, key, value);
            }
        }
        self.write(batch, SyncMode::Durable)?;
        for path in files {
            std::fs::remove_file(path).map_err(|e| Error::io("removing an ingested file", e))?;
        }
        Ok(())
    }

    fn checkpoint(&self, _dir: &std::path::Path) -> Result<()> {
        Err(crate::engine::Error::Unsupported(
            "backing up a database that lives in memory".into(),
        ))
    }
}

/// A sorted file of the in-memory store: length-prefixed keys and values.
struct MemoryFile {
    path: std::path::PathBuf,
    entries: Vec<u8>,
    size: u64,
}

impl SortedFile for MemoryFile {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        for bytes in [key, value] {
            self.entries
                .extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            self.entries.extend_from_slice(bytes);
        }
        self.size = self.entries.len() as u64;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn finish(self: Box<Self>) -> Result<()> {
        std::fs::write(&self.path, &self.entries)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }
}

/// The next length-prefixed byte string of a [`MemoryFile`].
fn take_bytes(rest: &mut &[u8]) -> Result<Vec<u8>> {
    let corrupt = || Error::Corruption("a sorted file ends inside an entry".into());
    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = u32::from_be_bytes(*len) as usize;
    let bytes = tail.get(..len).ok_or_else(corrupt)?.to_vec();
    *rest = &tail[len..];
    Ok(bytes)
}
