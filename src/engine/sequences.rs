//! Sequences: CREATE SEQUENCE, SERIAL columns and `nextval`, as in
//! PostgreSQL. A sequence is not transactional: a value `nextval` hands out
//! is used up whether or not its transaction commits, and two sessions never
//! get the same value.
//!
//! Each sequence keeps its last value in memory behind its own mutex, so
//! inserters of different sequences never meet, and inserters of one meet
//! only for the moment `nextval` takes. Values are reserved on disk ahead of
//! use, a block at a time (at least [`RESERVE`] values, or the sequence's
//! CACHE): a value is handed out only once a reservation at or past it is
//! durable, so after a crash the sequence goes on past every value it ever
//! handed out (leaving a gap, as PostgreSQL does).
//!
//! ```text
//!   catalog  seq/<name>     -> definition (JSON)
//!   meta     seqval/<id>    -> reserved value (8 bytes) + called (1 byte)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result, SqlState};
use super::storage::{Cf, Storage, SyncMode, WriteBatch};
use super::types::DataType;

/// Values reserved on disk at a time, at least.
pub const RESERVE: i64 = 32;

const DEF_PREFIX: &[u8] = b"seq/";
const VALUE_PREFIX: &[u8] = b"seqval/";

/// A sequence's definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequenceDef {
    pub name: String,
    /// Its id, from the table id space (so its oid is a relation's).
    pub id: u32,
    pub data_type: DataType,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
    pub cache: i64,
    /// The column whose default it feeds (SERIAL), dropped with its table.
    pub owned_by: Option<(String, String)>,
}

impl SequenceDef {
    /// A sequence with PostgreSQL's defaults for `data_type`.
    pub fn new(name: &str, id: u32, data_type: DataType) -> SequenceDef {
        SequenceDef {
            name: name.to_string(),
            id,
            data_type,
            start: 1,
            increment: 1,
            min: 1,
            max: type_max(data_type),
            cycle: false,
            cache: 1,
            owned_by: None,
        }
    }

    /// Checks the options against each other, as CREATE SEQUENCE does.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::invalid(SqlState::INVALID_PARAMETER_VALUE, m));
        if self.increment == 0 {
            return invalid("INCREMENT must not be zero".into());
        }
        let (low, high) = (type_min(self.data_type), type_max(self.data_type));
        if self.min < low || self.max > high {
            return invalid(format!(
                "MINVALUE ({}) and MAXVALUE ({}) must fit the sequence's type",
                self.min, self.max
            ));
        }
        if self.min >= self.max {
            return invalid(format!(
                "MINVALUE ({}) must be less than MAXVALUE ({})",
                self.min, self.max
            ));
        }
        if self.start < self.min {
            return invalid(format!(
                "START value ({}) cannot be less than MINVALUE ({})",
                self.start, self.min
            ));
        }
        if self.start > self.max {
            return invalid(format!(
                "START value ({}) cannot be greater than MAXVALUE ({})",
                self.start, self.max
            ));
        }
        if self.cache < 1 {
            return invalid(format!("CACHE ({}) must be greater than zero", self.cache));
        }
        Ok(())
    }
}

/// The largest value of a sequence type.
pub fn type_max(data_type: DataType) -> i64 {
    match data_type {
        DataType::Int16 => i16::MAX.into(),
        DataType::Int32 => i32::MAX.into(),
        _ => i64::MAX,
    }
}

/// The smallest value of a sequence type.
pub fn type_min(data_type: DataType) -> i64 {
    match data_type {
        DataType::Int16 => i16::MIN.into(),
        DataType::Int32 => i32::MIN.into(),
        _ => i64::MIN,
    }
}

/// Where a sequence stands.
#[derive(Clone, Copy, Debug)]
struct Position {
    /// The last value handed out, or the first to hand out when not `called`.
    last: i64,
    called: bool,
    /// Values up to here (in the direction of the increment) are reserved on disk.
    reserved: i64,
}

/// One sequence: its definition and where it stands.
pub struct Sequence {
    pub def: SequenceDef,
    position: Mutex<Position>,
}

/// Every sequence of a database.
pub struct Sequences {
    storage: Arc<dyn Storage>,
    sync: SyncMode,
    by_name: RwLock<BTreeMap<String, Arc<Sequence>>>,
}

impl Sequences {
    /// Loads every sequence and where it stood.
    pub fn load(storage: Arc<dyn Storage>, sync: SyncMode) -> Result<Sequences> {
        let mut by_name = BTreeMap::new();
        let end = prefix_end(DEF_PREFIX);
        for entry in storage.scan(Cf::Catalog, DEF_PREFIX, Some(&end)) {
            let (_, value) = entry?;
            let def: SequenceDef = serde_json::from_slice(&value).map_err(|e| {
                Error::Corruption(format!("a sequence definition does not decode: {e}"))
            })?;
            let position = match storage.get(Cf::Meta, &value_key(def.id))? {
                Some(bytes) if bytes.len() == 9 => {
                    let value = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
                    // Everything up to the reservation may have been handed out.
                    Position {
                        last: value,
                        called: bytes[8] == 1,
                        reserved: value,
                    }
                }
                Some(_) => {
                    return Err(Error::Corruption(format!(
                        "the value of sequence \"{}\" is not 9 bytes",
                        def.name
                    )))
                }
                None => fresh(&def),
            };
            by_name.insert(
                def.name.clone(),
                Arc::new(Sequence {
                    def,
                    position: Mutex::new(position),
                }),
            );
        }
        Ok(Sequences {
            storage,
            sync,
            by_name: RwLock::new(by_name),
        })
    }

    /// The sequence called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Sequence>> {
        self.by_name.read().get(name).cloned()
    }

    /// The sequence with id `id`.
    pub fn by_id(&self, id: u32) -> Option<Arc<Sequence>> {
        self.by_name
            .read()
            .values()
            .find(|s| s.def.id == id)
            .cloned()
    }

    /// Every sequence, by name.
    pub fn all(&self) -> Vec<Arc<Sequence>> {
        self.by_name.read().values().cloned().collect()
    }

    /// The writes that record a new sequence.
    pub fn create_entries(def: &SequenceDef) -> Result<WriteBatch> {
        let mut batch = WriteBatch::new();
        batch.put(Cf::Catalog, def_key(&def.name), encode(def)?);
        batch.delete(Cf::Meta, value_key(def.id));
        Ok(batch)
    }

    /// The write that records a changed definition, keeping the sequence's value.
    pub fn def_entries(def: &SequenceDef) -> Result<WriteBatch> {
        let mut batch = WriteBatch::new();
        batch.put(Cf::Catalog, def_key(&def.name), encode(def)?);
        Ok(batch)
    }

    /// Replaces a sequence's definition in memory, keeping where it stands
    /// (after the new definition is durable).
    pub fn redefine(&self, def: SequenceDef) {
        let mut by_name = self.by_name.write();
        let position = by_name
            .get(&def.name)
            .map_or_else(|| fresh(&def), |s| *s.position.lock());
        by_name.insert(
            def.name.clone(),
            Arc::new(Sequence {
                def,
                position: Mutex::new(position),
            }),
        );
    }

    /// The writes that remove a sequence.
    pub fn drop_entries(def: &SequenceDef) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.delete(Cf::Catalog, def_key(&def.name));
        batch.delete(Cf::Meta, value_key(def.id));
        batch
    }

    /// Adds a sequence in memory (after its entries are durable).
    pub fn install(&self, def: SequenceDef) {
        let position = fresh(&def);
        self.by_name.write().insert(
            def.name.clone(),
            Arc::new(Sequence {
                def,
                position: Mutex::new(position),
            }),
        );
    }

    /// Removes a sequence from memory (after its removal is durable).
    pub fn uninstall(&self, name: &str) {
        self.by_name.write().remove(name);
    }

    /// The sequences a column of `table` owns (SERIAL), dropped with it.
    pub fn owned_by(&self, table: &str) -> Vec<Arc<Sequence>> {
        self.by_name
            .read()
            .values()
            .filter(|s| s.def.owned_by.as_ref().is_some_and(|(t, _)| t == table))
            .cloned()
            .collect()
    }

    /// The next value of `sequence`; 2200H past its end without CYCLE.
    pub fn next(&self, sequence: &Sequence) -> Result<i64> {
        let def = &sequence.def;
        let mut position = sequence.position.lock();
        let (next, wrapped) = if !position.called {
            (position.last, false)
        } else {
            match position.last.checked_add(def.increment) {
                Some(v) if v >= def.min && v <= def.max => (v, false),
                _ if def.cycle => (if def.increment > 0 { def.min } else { def.max }, true),
                _ => {
                    let (end, limit) = if def.increment > 0 {
                        ("maximum", def.max)
                    } else {
                        ("minimum", def.min)
                    };
                    return Err(Error::invalid(
                        SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                        format!(
                            "nextval: reached {end} value of sequence \"{}\" ({limit})",
                            def.name
                        ),
                    ));
                }
            }
        };
        // Whether `next` lies past what is durably reserved (a value that
        // was set but not yet handed out counts as not reserved).
        let unreserved = if def.increment > 0 {
            next > position.reserved
        } else {
            next < position.reserved
        } || !position.called && next == position.reserved;
        if wrapped || unreserved {
            // Reserve a block ahead, durably, before handing out any of it.
            let block = def.cache.max(RESERVE).saturating_mul(def.increment);
            let reserved = next
                .saturating_add(block - def.increment.signum())
                .clamp(def.min, def.max);
            self.persist(def.id, reserved, true)?;
            position.reserved = reserved;
        }
        position.last = next;
        position.called = true;
        Ok(next)
    }

    /// Sets the sequence's value (setval): the next `nextval` returns
    /// `value` + increment when `called`, else `value`.
    pub fn set(&self, sequence: &Sequence, value: i64, called: bool) -> Result<()> {
        let def = &sequence.def;
        if value < def.min || value > def.max {
            return Err(Error::invalid(
                SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                format!(
                    "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                    def.name, def.min, def.max
                ),
            ));
        }
        let mut position = sequence.position.lock();
        self.persist(def.id, value, called)?;
        *position = Position {
            last: value,
            called,
            reserved: value,
        };
        Ok(())
    }

    /// Records where each sequence stands, for a clean close: the next open
    /// goes on from the last value handed out instead of past the values
    /// reserved (which it does after a crash).
    pub fn close(&self) {
        for sequence in self.all() {
            let position = *sequence.position.lock();
            if position.called && position.last != position.reserved {
                let _ = self.persist(sequence.def.id, position.last, true);
            }
        }
    }

    fn persist(&self, id: u32, value: i64, called: bool) -> Result<()> {
        let mut bytes = value.to_be_bytes().to_vec();
        bytes.push(u8::from(called));
        let mut batch = WriteBatch::new();
        batch.put(Cf::Meta, value_key(id), bytes);
        self.storage.write(batch, self.sync)
    }
}

/// Where a new sequence stands: its start, not yet handed out.
fn fresh(def: &SequenceDef) -> Position {
    Position {
        last: def.start,
        called: false,
        // Just short of the start: nothing is reserved yet.
        reserved: if def.increment > 0 {
            def.start.saturating_sub(1)
        } else {
            def.start.saturating_add(1)
        },
    }
}

fn encode(def: &SequenceDef) -> Result<Vec<u8>> {
    serde_json::to_vec(def)
        .map_err(|e| Error::Internal(format!("a sequence definition does not encode: {e}")))
}

fn def_key(name: &str) -> Vec<u8> {
    let mut key = DEF_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

fn value_key(id: u32) -> Vec<u8> {
    let mut key = VALUE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

impl super::Session {
    /// Creates sequences in one change; with `if_not_exists`, false (and
    /// nothing created) when the first name is taken.
    pub(super) fn create_sequences(
        &mut self,
        mut defs: Vec<SequenceDef>,
        if_not_exists: bool,
    ) -> Result<bool> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        for def in &defs {
            match self.refuse_taken(&def.name) {
                Err(_) if if_not_exists => return Ok(false),
                result => result?,
            }
        }
        for def in &mut defs {
            def.owned_by = None;
        }
        self.create_relations(None, defs)?;
        Ok(true)
    }

    /// 42P07 when a table or a sequence is called `name`.
    /// Saves `table`, renamed from `old_name` or with columns renamed
    /// (`columns`: from, to, in order), and the sequences it owns under
    /// their new owner, as one change.
    pub(super) fn save_renamed_table(
        &mut self,
        table: super::catalog::Table,
        old_name: &str,
        columns: &[(String, String)],
    ) -> Result<()> {
        let shared = self.shared.clone();
        let mut batch = shared.catalog.put_entries(&table)?;
        let mut defs = Vec::new();
        for sequence in shared.sequences.owned_by(old_name) {
            let mut def = sequence.def.clone();
            if let Some((owner, column)) = &mut def.owned_by {
                owner.clone_from(&table.name);
                for (from, to) in columns {
                    if column == from {
                        column.clone_from(to);
                    }
                }
            }
            batch.extend(Sequences::def_entries(&def)?);
            defs.push(def);
        }
        let (catalog, sequences) = (shared.catalog.clone(), shared.sequences.clone());
        let tables = vec![(table.id, Some(table.clone()))];
        let apply = move |_| {
            catalog.install(table);
            for def in defs {
                sequences.redefine(def);
            }
        };
        self.commit_catalog(batch, tables, Box::new(apply), super::session::Undo::none())
    }

    pub(super) fn refuse_taken(&self, name: &str) -> Result<()> {
        if self.shared.catalog.table(name).is_ok()
            || self.shared.sequences.get(name).is_some()
            || self.shared.catalog.index_owner(name).is_some()
        {
            return Err(Error::AlreadyExists {
                code: SqlState::DUPLICATE_TABLE,
                message: format!("relation \"{name}\" already exists"),
            });
        }
        Ok(())
    }

    /// Records a new table (if any) and new sequences in one change, under
    /// the DDL lock the caller holds: the table takes the next id, the
    /// sequences the ones after it.
    pub(super) fn create_relations(
        &mut self,
        table: Option<super::catalog::Table>,
        mut defs: Vec<SequenceDef>,
    ) -> Result<()> {
        let shared = self.shared.clone();
        let first = match &table {
            Some(t) => t.indexes.iter().map(|i| i.id).fold(t.id, u32::max) + 1,
            None => shared.catalog.next_table_id(),
        };
        let mut batch = match &table {
            Some(t) => shared.catalog.put_entries(t)?,
            None => WriteBatch::new(),
        };
        for (i, def) in defs.iter_mut().enumerate() {
            def.id = first + i as u32;
            batch.extend(Sequences::create_entries(def)?);
        }
        let next = first + defs.len() as u32;
        batch.extend(super::catalog::Catalog::counter_entry(next));
        // The new table's key directory and the sequences are there before
        // the commit (a transaction block's statements use them), and go
        // again if it never comes.
        let mut undo = super::session::Undo::none();
        if let Some(table) = &table {
            undo = self.add_directory(table);
        }
        let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
        for def in defs {
            shared.sequences.install(def);
        }
        let sequences = shared.sequences.clone();
        undo = undo.and(super::session::Undo::new(move || {
            for name in names {
                sequences.uninstall(&name);
            }
        }));
        let catalog = shared.catalog.clone();
        let tables = table.iter().map(|t| (t.id, Some(t.clone()))).collect();
        let apply = move |_| {
            if let Some(table) = table {
                catalog.install(table);
            }
            catalog.advance_next_id(next);
        };
        shared.catalog.advance_next_id(next);
        self.commit_catalog(batch, tables, Box::new(apply), undo)
    }

    /// Drops sequences in one change: all or, when one is missing (and not
    /// `if_exists`, 42P01), none. Returns the names that were missing. A
    /// sequence a SERIAL column owns goes only with its table (2BP01).
    pub(super) fn drop_sequences(
        &mut self,
        names: &[String],
        if_exists: bool,
    ) -> Result<Vec<String>> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let mut batch = WriteBatch::new();
        let (mut dropped, mut missing) = (Vec::new(), Vec::new());
        for name in names {
            let Some(sequence) = shared.sequences.get(name) else {
                if if_exists {
                    missing.push(name.clone());
                    continue;
                }
                return Err(Error::NotFound {
                    code: SqlState::UNDEFINED_TABLE,
                    message: format!("sequence \"{name}\" does not exist"),
                });
            };
            if let Some((table, column)) = &sequence.def.owned_by {
                return Err(Error::ConstraintViolation {
                    code: SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                    message: format!(
                        "cannot drop sequence {name} because column {column} of table {table} \
                         requires it"
                    ),
                });
            }
            batch.extend(Sequences::drop_entries(&sequence.def));
            dropped.push(name.clone());
        }
        if dropped.is_empty() {
            return Ok(missing);
        }
        let sequences = shared.sequences.clone();
        let apply = move |_| {
            for name in dropped {
                sequences.uninstall(&name);
            }
        };
        // In a transaction block the sequence goes at COMMIT.
        self.commit_catalog(
            batch,
            Vec::new(),
            Box::new(apply),
            super::session::Undo::none(),
        )?;
        Ok(missing)
    }
}
