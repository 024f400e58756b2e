//! Statistics for the planner: how many rows a scan returns, and what
//! `ANALYZE` found in each column, so DataFusion chooses the smaller side
//! of a join to build its hash table from and estimates what filters keep.
//!
//! Row counts need no ANALYZE: a table with a key directory knows its keys;
//! others are estimated from the sizes of the table's storage files
//! (RocksDB's estimates, free to ask). A scan of key ranges gets the share
//! of the table's bytes its ranges hold. `ANALYZE [table [(columns)]]` reads
//! the table once and keeps per column the NULL count, an estimate of the
//! distinct values (HyperLogLog) and the minimum and maximum, in the meta
//! family (`stats.<table id>`), where every later plan finds them.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Int64Type, SchemaRef, UInt64Type};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::sql::sqlparser::ast;
use parking_lot::RwLock;

use super::execute::{table_name, Output};
use super::pg_catalog::quote_ident;
use super::provider::Read;
use crate::engine::catalog::Table;
use crate::engine::directory::Directories;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::mvcc::split_versioned;
use crate::engine::session::Session;
use crate::engine::storage::{Cf, Storage, SyncMode, WriteBatch};
use crate::engine::types::DataType;

/// Text longer than this is not kept as a column's minimum or maximum.
const MAX_BOUND_BYTES: usize = 64;

/// What ANALYZE found in one table.
#[derive(Debug, Default)]
pub struct Analyzed {
    /// Rows.
    rows: u64,
    /// The bytes the table's files held then (0 while all were in memory).
    bytes: u64,
    /// By column name.
    columns: HashMap<String, ColumnFacts>,
}

#[derive(Clone, Debug, Default)]
pub struct ColumnFacts {
    pub nulls: u64,
    pub distinct: Option<u64>,
    /// The smallest and largest value, as text.
    pub min: Option<String>,
    pub max: Option<String>,
}

impl Analyzed {
    /// Rows when ANALYZE ran.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// What it found in column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnFacts> {
        self.columns.get(name)
    }
}

/// The statistics of every table.
pub struct Stats {
    storage: Arc<dyn Storage>,
    directories: Arc<Directories>,
    /// What ANALYZE recorded, by table id, read from storage once.
    analyzed: RwLock<HashMap<u32, Option<Arc<Analyzed>>>>,
}

fn stats_key(id: u32) -> Vec<u8> {
    let mut key = b"stats.".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl Stats {
    pub fn new(storage: Arc<dyn Storage>, directories: Arc<Directories>) -> Stats {
        Stats {
            storage,
            directories,
            analyzed: RwLock::default(),
        }
    }

    /// What the last ANALYZE of table `id` recorded.
    pub fn analyzed(&self, id: u32) -> Option<Arc<Analyzed>> {
        if let Some(known) = self.analyzed.read().get(&id) {
            return known.clone();
        }
        // A record that does not read is as if ANALYZE never ran.
        let stored = self.storage.get(Cf::Meta, &stats_key(id)).ok().flatten();
        let analyzed = stored.and_then(|bytes| decode(&bytes)).map(Arc::new);
        self.analyzed.write().insert(id, analyzed.clone());
        analyzed
    }

    fn record(&self, id: u32, analyzed: Analyzed) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(Cf::Meta, stats_key(id), encode(&analyzed).into_bytes());
        self.storage.write(batch, SyncMode::Buffered)?;
        self.analyzed.write().insert(id, Some(Arc::new(analyzed)));
        Ok(())
    }

    /// The rows of `table`, about; None when nothing tells.
    pub fn table_rows(&self, table: &Table) -> Option<u64> {
        if let Some(keys) = self.directories.len(table.id) {
            return Some(keys as u64);
        }
        let now = self
            .storage
            .estimate(Cf::Rows, &table.key_prefix(), &table.key_end());
        match self.analyzed(table.id) {
            Some(a) if a.bytes > 0 && now.bytes > 0 => {
                Some((a.rows as u128 * now.bytes as u128 / a.bytes as u128) as u64)
            }
            Some(a) => Some(a.rows),
            None => (now.entries > 0).then_some(now.entries),
        }
    }

    /// Row keys that cut a full scan of `table` into `parts` slices of
    /// about equal bytes, found from its storage files; none when its files
    /// hold fewer than `min_rows` rows.
    pub fn cuts(&self, table: &Table, parts: usize, min_rows: u64) -> Vec<Vec<u8>> {
        let (from, to) = (table.key_prefix(), table.key_end());
        if parts < 2 || self.storage.estimate(Cf::Rows, &from, &to).entries < min_rows {
            return Vec::new();
        }
        // A cut between two versions of one row would let two slices each
        // read a version of it: cut before the row's first version instead.
        let mut cuts: Vec<Vec<u8>> = self
            .storage
            .cuts(Cf::Rows, &from, &to, parts)
            .iter()
            .filter_map(|key| split_versioned(key).map(|(row, _)| row.to_vec()))
            .filter(|row| *row > from && *row < to)
            .collect();
        cuts.dedup();
        cuts
    }

    /// The planner's statistics of a scan of `table` that makes `reads`
    /// and returns the columns of `schema`.
    pub fn scan(&self, table: &Table, reads: &[&Read], schema: &SchemaRef) -> Statistics {
        let mut statistics = Statistics::new_unknown(schema);
        let gets = reads.iter().filter(|r| matches!(r, Read::Get(_))).count();
        let whole = matches!(reads, [Read::Scan(from, to)]
            if *from == table.key_prefix() && *to == table.key_end());
        let rows = if gets == reads.len() {
            Some(gets as u64)
        } else if whole {
            self.table_rows(table)
        } else if reads.iter().any(|r| matches!(r, Read::Index(..))) {
            None
        } else {
            // The share of the table's bytes the ranges hold (asked only
            // when the table's rows are known: planning a range read of a
            // keyed table costs a few size lookups, no file listing).
            self.table_rows(table).and_then(|rows| {
                let bytes =
                    |from: &[u8], to: &[u8]| self.storage.approximate_bytes(Cf::Rows, from, to);
                let all = bytes(&table.key_prefix(), &table.key_end());
                let part: u64 = reads
                    .iter()
                    .map(|r| match r {
                        Read::Scan(from, to) => bytes(from, to),
                        _ => 0,
                    })
                    .sum();
                (all > 0).then(|| {
                    let share = rows as u128 * part.min(all) as u128 / all as u128;
                    share as u64 + gets as u64
                })
            })
        };
        if let Some(rows) = rows {
            statistics.num_rows = Precision::Inexact(rows as usize);
        }
        if let Some(analyzed) = self.analyzed(table.id) {
            for (field, column) in schema
                .fields()
                .iter()
                .zip(&mut statistics.column_statistics)
            {
                if let Some(facts) = analyzed.columns.get(field.name()) {
                    *column = facts.column_statistics(field.data_type());
                }
            }
        }
        statistics
    }
}

impl ColumnFacts {
    fn column_statistics(
        &self,
        arrow: &datafusion::arrow::datatypes::DataType,
    ) -> ColumnStatistics {
        let bound = |text: &Option<String>| {
            text.as_ref()
                .and_then(|t| ScalarValue::try_from_string(t.clone(), arrow).ok())
                .map_or(Precision::Absent, Precision::Inexact)
        };
        ColumnStatistics {
            null_count: Precision::Inexact(self.nulls as usize),
            min_value: bound(&self.min),
            max_value: bound(&self.max),
            distinct_count: self
                .distinct
                .map_or(Precision::Absent, |d| Precision::Inexact(d as usize)),
            ..ColumnStatistics::new_unknown()
        }
    }
}

fn encode(analyzed: &Analyzed) -> String {
    let columns: serde_json::Map<String, serde_json::Value> = analyzed
        .columns
        .iter()
        .map(|(name, facts)| {
            let value = serde_json::json!({
                "nulls": facts.nulls,
                "distinct": facts.distinct,
                "min": facts.min,
                "max": facts.max,
            });
            (name.clone(), value)
        })
        .collect();
    serde_json::json!({
        "rows": analyzed.rows,
        "bytes": analyzed.bytes,
        "columns": columns,
    })
    .to_string()
}

fn decode(bytes: &[u8]) -> Option<Analyzed> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let columns = value["columns"]
        .as_object()?
        .iter()
        .map(|(name, facts)| {
            let facts = ColumnFacts {
                nulls: facts["nulls"].as_u64().unwrap_or(0),
                distinct: facts["distinct"].as_u64(),
                min: text(&facts["min"]),
                max: text(&facts["max"]),
            };
            (name.clone(), facts)
        })
        .collect();
    Some(Analyzed {
        rows: value["rows"].as_u64()?,
        bytes: value["bytes"].as_u64().unwrap_or(0),
        columns,
    })
}

impl Session {
    /// `ANALYZE [table [(columns)]]`: the statistics of one table, or of every table.
    pub(super) fn analyze_sql(&mut self, analyze: ast::Analyze) -> Result<Output> {
        if analyze.partitions.is_some() || analyze.noscan || analyze.cache_metadata {
            return Err(Error::Unsupported(
                "ANALYZE with PARTITION, NOSCAN or CACHE METADATA".into(),
            ));
        }
        let tables = match &analyze.table_name {
            Some(name) => vec![self.table(&table_name(name)?)?],
            None => {
                let _scope = self.catalog_scope();
                self.shared.catalog.tables()
            }
        };
        let only: Vec<String> = analyze.columns.iter().map(super::ident).collect();
        for name in &only {
            if !tables[0].columns.iter().any(|c| &c.name == name) {
                return Err(Error::NotFound {
                    code: SqlState::UNDEFINED_COLUMN,
                    message: format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        tables[0].name
                    ),
                });
            }
        }
        for table in tables {
            self.analyze_table(&table, &only)?;
        }
        Ok(Output::command("ANALYZE"))
    }

    /// Reads `table` once and records its statistics (of the columns
    /// `only`, or all of them).
    fn analyze_table(&mut self, table: &Table, only: &[String]) -> Result<()> {
        let columns: Vec<_> = table
            .columns
            .iter()
            .filter(|c| only.is_empty() || only.contains(&c.name))
            .collect();
        let mut items = vec!["count(*)".to_string()];
        for column in &columns {
            let q = quote_ident(&column.name);
            items.push(format!("count({q})"));
            items.push(match column.data_type {
                // HyperLogLog takes no floats: their text stands for them.
                DataType::Float32 | DataType::Float64 => {
                    format!("approx_distinct(CAST({q} AS TEXT))")
                }
                _ => format!("approx_distinct({q})"),
            });
            let ordered = !matches!(column.data_type, DataType::Bytes | DataType::Interval);
            let bound = |f: &str| match ordered {
                true => format!("CAST({f}({q}) AS TEXT)"),
                false => "CAST(NULL AS TEXT)".into(),
            };
            items.push(bound("min"));
            items.push(bound("max"));
        }
        let sql = format!(
            "SELECT {} FROM {}",
            items.join(", "),
            quote_ident(&table.name)
        );
        let query = super::parse(&sql)?.remove(0);
        let Output::Rows(rows) = self.query(query)? else {
            return Err(Error::Internal("ANALYZE's query returned no rows".into()));
        };
        let batch = rows
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::Internal("ANALYZE's query returned no rows".into()))?;
        let count = |i: usize| -> u64 {
            let column = batch.column(i);
            match column.data_type() {
                datafusion::arrow::datatypes::DataType::UInt64 => {
                    column.as_primitive::<UInt64Type>().value(0)
                }
                _ => column.as_primitive::<Int64Type>().value(0).max(0) as u64,
            }
        };
        let text = |i: usize| -> Option<String> {
            super::format::text(batch.column(i).as_ref(), 0).filter(|t| t.len() <= MAX_BOUND_BYTES)
        };
        let rows = count(0);
        let mut analyzed = match self.shared.stats.analyzed(table.id) {
            // Columns not named keep what an earlier ANALYZE found.
            Some(earlier) if !only.is_empty() => Analyzed {
                columns: earlier.columns.clone(),
                ..Analyzed::default()
            },
            _ => Analyzed::default(),
        };
        analyzed.rows = rows;
        analyzed.bytes = self
            .shared
            .mvcc
            .storage()
            .estimate(Cf::Rows, &table.key_prefix(), &table.key_end())
            .bytes;
        for (c, column) in columns.iter().enumerate() {
            let at = 1 + 4 * c;
            let facts = ColumnFacts {
                nulls: rows.saturating_sub(count(at)),
                distinct: Some(count(at + 1)),
                min: text(at + 2),
                max: text(at + 3),
            };
            analyzed.columns.insert(column.name.clone(), facts);
        }
        self.shared.stats.record(table.id, analyzed)
    }
}
