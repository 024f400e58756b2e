//! The catalog: table definitions, persisted in the catalog column family and
//! held in memory for every session.
//!
//! A table's columns change with ALTER TABLE; each change makes a new schema
//! version, and the table keeps the column list of every version it has had.
//! A stored row names the version it was written under, so it decodes without
//! being rewritten:
//!
//! ```text
//!   version 1: [id: int, name: text]                   row written at v1: (7, "a")
//!   version 2: [id: int, name: text, score: real=0.5]  read at v2 as (7, "a", 0.5)
//!   version 3: [id: int, score: real=0.5]              read at v3 as (7, 0.5)
//! ```
//!
//! Columns are matched across versions by a stable column id, never by position
//! or name. Table ids are never reused, so a key prefix belongs to one table
//! for the life of the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::engine::encoding::{keycode, row};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::storage::{Cf, Storage, WriteBatch};
use crate::engine::types::{DataType, Value};

/// What a user declares for a column.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Column type.
    pub data_type: DataType,
    /// Whether NULL is allowed (primary key columns never allow it).
    pub nullable: bool,
    /// The value an INSERT that omits the column stores.
    pub default: Option<Value>,
    /// A default that is an expression (`now()`, `random()`), as SQL text,
    /// evaluated for each row an INSERT or COPY writes; None for a constant.
    pub default_expr: Option<String>,
}

impl ColumnDef {
    /// A nullable column without default.
    pub fn new(name: impl Into<String>, data_type: DataType) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            data_type,
            nullable: true,
            default: None,
            default_expr: None,
        }
    }

    /// The same column, NOT NULL.
    pub fn not_null(mut self) -> ColumnDef {
        self.nullable = false;
        self
    }

    /// The same column with a default value.
    pub fn default(mut self, value: Value) -> ColumnDef {
        self.default = Some(value);
        self
    }
}

/// One change an ALTER TABLE makes.
#[derive(Clone, Debug, PartialEq)]
pub enum TableChange {
    /// ADD COLUMN.
    AddColumn(ColumnDef),
    /// DROP COLUMN, by name.
    DropColumn(String),
    /// ADD CONSTRAINT ... CHECK; `validate`: existing rows must pass it
    /// (not for NOT VALID).
    AddCheck { check: CheckDef, validate: bool },
    /// DROP CONSTRAINT [IF EXISTS] name.
    DropConstraint { name: String, if_exists: bool },
}

/// A CHECK constraint as a statement declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckDef {
    /// Its name, when the statement gives one.
    pub name: Option<String>,
    /// The condition, as SQL text over the table's column names.
    pub expr: String,
}

/// A CHECK constraint of a table: a row is written only if the condition is
/// true or NULL for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    /// The condition, as SQL text over the table's column names.
    pub expr: String,
    /// The ids of the columns it reads (dropping one drops the constraint).
    pub columns: Vec<u32>,
    /// False for one added NOT VALID: the rows already there were not checked.
    pub validated: bool,
}

/// The most CHECK constraints a table may have.
pub const MAX_CHECKS: usize = 64;

/// A column of a stored table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Column {
    /// Stable id, unique within the table.
    pub id: u32,
    /// Column name.
    pub name: String,
    /// Column type.
    pub data_type: DataType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The value an INSERT that omits the column stores.
    pub default: Option<Value>,
    /// A default that is an expression, evaluated for each row written
    /// (see [`ColumnDef::default_expr`]).
    #[serde(default)]
    pub default_expr: Option<String>,
    /// The value rows written before the column existed read as.
    pub fill: Value,
}

impl Column {
    /// The SQL text of the column's default, as PostgreSQL shows it; None
    /// when it has none.
    pub fn default_text(&self) -> Option<String> {
        match (&self.default_expr, &self.default) {
            (Some(expr), _) => Some(expr.clone()),
            (None, Some(value)) => Some(default_text(value, self.data_type)),
            (None, None) => None,
        }
    }
}

/// A table definition at its current schema version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    /// Id, the first bytes of every key of the table.
    pub id: u32,
    /// Table name.
    pub name: String,
    /// Current columns, in order.
    pub columns: Vec<Column>,
    /// Ids of the primary key columns, in key order.
    pub primary_key: Vec<u32>,
    /// Current schema version.
    pub schema_version: u32,
    /// The columns (id, type) of every schema version, for reading old rows.
    versions: BTreeMap<u32, Vec<(u32, DataType)>>,
    next_column_id: u32,
    /// CHECK constraints, in the order they were added.
    #[serde(default)]
    pub checks: Vec<Check>,
}

impl Table {
    /// Validates a definition and builds the table at schema version 1.
    pub fn new(id: u32, name: &str, defs: Vec<ColumnDef>, primary_key: &[String]) -> Result<Table> {
        if defs.is_empty() {
            return Err(Error::invalid(
                SqlState::INVALID_TABLE_DEFINITION,
                "a table needs at least one column",
            ));
        }
        let mut table = Table {
            id,
            name: name.to_string(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            schema_version: 0,
            versions: BTreeMap::new(),
            next_column_id: 0,
            checks: Vec::new(),
        };
        for def in defs {
            table.push_column(def, Value::Null)?;
        }
        for key in primary_key {
            let index = table.column_index(key)?;
            let column = &mut table.columns[index];
            if !column.data_type.is_key_type() {
                return Err(Error::Unsupported(format!(
                    "a {} column in a primary key",
                    column.data_type
                )));
            }
            if table.primary_key.contains(&column.id) {
                return Err(Error::invalid(
                    SqlState::INVALID_TABLE_DEFINITION,
                    format!("column \"{key}\" appears twice in the primary key"),
                ));
            }
            column.nullable = false;
            table.primary_key.push(column.id);
        }
        table.new_version();
        Ok(table)
    }

    fn push_column(&mut self, def: ColumnDef, fill: Value) -> Result<()> {
        if self.columns.iter().any(|c| c.name == def.name) {
            return Err(Error::AlreadyExists {
                code: SqlState::DUPLICATE_COLUMN,
                message: format!("column \"{}\" specified more than once", def.name),
            });
        }
        if let Some(default) = &def.default {
            check_type(&def.name, def.data_type, default)?;
        }
        self.columns.push(Column {
            id: self.next_column_id,
            name: def.name,
            data_type: def.data_type,
            nullable: def.nullable,
            // An expression's value at definition time is only the fill.
            default: def.default.filter(|_| def.default_expr.is_none()),
            default_expr: def.default_expr,
            fill,
        });
        self.next_column_id += 1;
        Ok(())
    }

    fn new_version(&mut self) {
        self.schema_version += 1;
        let layout = self.columns.iter().map(|c| (c.id, c.data_type)).collect();
        self.versions.insert(self.schema_version, layout);
    }

    /// The position of column `name`, or 42703 with a close name when there is one.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::NotFound {
                code: SqlState::UNDEFINED_COLUMN,
                message: format!(
                    "column \"{name}\" of relation \"{}\" does not exist{}",
                    self.name,
                    did_you_mean(name, self.columns.iter().map(|c| c.name.as_str()))
                ),
            })
    }

    /// Positions of the primary key columns, in key order.
    pub fn primary_key_indices(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .map(|id| {
                self.columns
                    .iter()
                    .position(|c| c.id == *id)
                    .expect("key columns cannot be dropped")
            })
            .collect()
    }

    /// The first key of the table's key range.
    pub fn key_prefix(&self) -> Vec<u8> {
        self.id.to_be_bytes().to_vec()
    }

    /// The first key after the table's key range.
    pub fn key_end(&self) -> Vec<u8> {
        (self.id as u64 + 1).to_be_bytes()[4..].to_vec()
    }

    /// A row of every column's default (NULL where there is none), which an
    /// INSERT fills in with the values it names.
    pub fn default_row(&self) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| c.default.clone().unwrap_or(Value::Null))
            .collect()
    }

    /// The positions of the columns whose default is an expression.
    pub fn expression_defaults(&self) -> impl Iterator<Item = (usize, &str)> {
        self.columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.default_expr.as_deref().map(|e| (i, e)))
    }

    /// Whether rows are keyed by a hidden row id, the table having no primary key.
    pub fn has_row_ids(&self) -> bool {
        self.primary_key.is_empty()
    }

    /// The storage key of the row with hidden row id `id` (tables without a primary key).
    pub fn row_id_key(&self, id: i64) -> Vec<u8> {
        let mut out = self.key_prefix();
        keycode::encode_value(&Value::Int64(id), &mut out).expect("bigints always encode");
        out
    }

    /// The storage key of the row whose primary key is `key`.
    pub fn key(&self, key: &[Value]) -> Result<Vec<u8>> {
        let indices = self.primary_key_indices();
        if indices.is_empty() {
            return Err(Error::invalid(
                SqlState::INVALID_PARAMETER_VALUE,
                format!(
                    "table \"{}\" has no primary key to address rows by",
                    self.name
                ),
            ));
        }
        if key.len() != indices.len() {
            return Err(Error::invalid(
                SqlState::INVALID_PARAMETER_VALUE,
                format!(
                    "the primary key of \"{}\" has {} columns, not {}",
                    self.name,
                    indices.len(),
                    key.len()
                ),
            ));
        }
        let mut out = self.key_prefix();
        for (value, index) in key.iter().zip(indices) {
            let column = &self.columns[index];
            if value.is_null() {
                return Err(not_null(&self.name, &column.name));
            }
            check_type(&column.name, column.data_type, value)?;
            keycode::encode_value(value, &mut out)?;
        }
        Ok(out)
    }

    /// The key prefix of rows whose leading primary key columns equal `prefix`.
    pub fn key_prefix_of(&self, prefix: &[Value]) -> Result<Vec<u8>> {
        let indices = self.primary_key_indices();
        let mut out = self.key_prefix();
        for (value, index) in prefix.iter().zip(indices) {
            check_type(
                &self.columns[index].name,
                self.columns[index].data_type,
                value,
            )?;
            keycode::encode_value(value, &mut out)?;
        }
        Ok(out)
    }

    /// The storage key of a full row.
    pub fn row_key(&self, row: &[Value]) -> Result<Vec<u8>> {
        let key: Vec<Value> = self
            .primary_key_indices()
            .into_iter()
            .map(|i| row[i].clone())
            .collect();
        self.key(&key)
    }

    /// Checks a full row against the columns (count, types, NOT NULL, lengths)
    /// and returns it as stored (CHAR(n) padded).
    pub fn check_row(&self, mut row: Vec<Value>) -> Result<Vec<Value>> {
        if row.len() != self.columns.len() {
            return Err(Error::invalid(
                SqlState::INVALID_PARAMETER_VALUE,
                format!(
                    "table \"{}\" has {} columns but {} values were given",
                    self.name,
                    self.columns.len(),
                    row.len()
                ),
            ));
        }
        for (value, column) in row.iter_mut().zip(&self.columns) {
            if value.is_null() {
                if !column.nullable {
                    return Err(not_null(&self.name, &column.name));
                }
                continue;
            }
            check_type(&column.name, column.data_type, value)?;
            if let Value::Interval(interval) = value {
                interval.nanoseconds()?;
            }
            if let Value::Text(text) = value {
                match column.data_type {
                    DataType::Varchar(n) | DataType::Char(n) => {
                        // As in PostgreSQL, trailing spaces past the limit are cut, not an error.
                        let chars = text.chars().count();
                        if chars > n as usize {
                            let keep: String = text.chars().take(n as usize).collect();
                            if text[keep.len()..].chars().any(|c| c != ' ') {
                                return Err(Error::invalid(
                                    SqlState::STRING_DATA_RIGHT_TRUNCATION,
                                    format!("value too long for type {}", column.data_type),
                                ));
                            }
                            *text = keep;
                        }
                        if let DataType::Char(n) = column.data_type {
                            let pad = n as usize - text.chars().count();
                            text.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(row)
    }

    /// Encodes a checked row under the current schema version.
    pub fn encode_row(&self, row: &[Value]) -> Result<Vec<u8>> {
        let types: Vec<_> = self.columns.iter().map(|c| c.data_type).collect();
        row::encode_row(self.schema_version, &types, row)
    }

    /// Decodes a stored row, written under any schema version, into the current columns.
    pub fn decode_row(&self, bytes: &[u8]) -> Result<Vec<Value>> {
        let version = row::row_schema_version(bytes)?;
        let layout = self.versions.get(&version).ok_or_else(|| {
            Error::Corruption(format!(
                "row of \"{}\" has unknown schema version {version}",
                self.name
            ))
        })?;
        let types: Vec<_> = layout.iter().map(|(_, t)| *t).collect();
        let mut values = row::decode_row(bytes, &types)?;
        if version == self.schema_version {
            return Ok(values);
        }
        let mut by_id: HashMap<u32, Value> = layout
            .iter()
            .map(|(id, _)| *id)
            .zip(values.drain(..))
            .collect();
        Ok(self
            .columns
            .iter()
            .map(|c| by_id.remove(&c.id).unwrap_or_else(|| c.fill.clone()))
            .collect())
    }

    /// The table with `def` added at a new schema version. Existing rows read
    /// the column's default (or NULL).
    pub fn with_column(&self, def: ColumnDef) -> Result<Table> {
        let mut table = self.clone();
        let fill = def.default.clone().unwrap_or(Value::Null);
        table.push_column(def, fill)?;
        table.new_version();
        Ok(table)
    }

    /// The table without column `name`, at a new schema version.
    pub fn without_column(&self, name: &str) -> Result<Table> {
        let index = self.column_index(name)?;
        if self.primary_key.contains(&self.columns[index].id) {
            return Err(Error::Unsupported(format!(
                "dropping primary key column \"{name}\""
            )));
        }
        if self.columns.len() == 1 {
            return Err(Error::invalid(
                SqlState::INVALID_TABLE_DEFINITION,
                "a table needs at least one column",
            ));
        }
        let mut table = self.clone();
        let id = table.columns.remove(index).id;
        // As in PostgreSQL, the constraints that read the column go with it.
        table.checks.retain(|c| !c.columns.contains(&id));
        table.new_version();
        Ok(table)
    }

    /// The name of the primary key constraint.
    pub fn primary_key_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    /// A name for a new CHECK constraint, as PostgreSQL chooses it: the
    /// table's and, for a check of one column, the column's, then `check`,
    /// numbered when taken.
    pub fn check_name(&self, column: Option<&str>) -> String {
        let base = match column {
            Some(column) => format!("{}_{column}_check", self.name),
            None => format!("{}_check", self.name),
        };
        let taken = |name: &str| self.constraint_named(name);
        std::iter::once(base.clone())
            .chain((1..).map(|n| format!("{base}{n}")))
            .find(|name| !taken(name))
            .expect("a free name")
    }

    fn constraint_named(&self, name: &str) -> bool {
        (!self.has_row_ids() && self.primary_key_name() == name)
            || self.checks.iter().any(|c| c.name == name)
    }

    /// A table just defined with its CHECK constraints (no new version:
    /// no row was written under the first).
    pub fn with_initial_checks(mut self, checks: Vec<Check>) -> Result<Table> {
        for check in checks {
            let mut with = self.with_check(check)?;
            with.schema_version = self.schema_version;
            with.versions = std::mem::take(&mut self.versions);
            self = with;
        }
        Ok(self)
    }

    /// The table with CHECK constraint `check` added, at a new schema version.
    pub fn with_check(&self, check: Check) -> Result<Table> {
        if self.constraint_named(&check.name) {
            return Err(Error::AlreadyExists {
                code: SqlState::DUPLICATE_OBJECT,
                message: format!(
                    "constraint \"{}\" for relation \"{}\" already exists",
                    check.name, self.name
                ),
            });
        }
        if self.checks.len() >= MAX_CHECKS {
            return Err(Error::LimitExceeded {
                code: SqlState::PROGRAM_LIMIT_EXCEEDED,
                message: format!("a table has at most {MAX_CHECKS} CHECK constraints"),
            });
        }
        let mut table = self.clone();
        table.checks.push(check);
        table.new_version();
        Ok(table)
    }

    /// The table without constraint `name`, at a new schema version; None
    /// when there is no such constraint and `if_exists` says that is fine.
    pub fn without_constraint(&self, name: &str, if_exists: bool) -> Result<Option<Table>> {
        if !self.has_row_ids() && name == self.primary_key_name() {
            return Err(Error::Unsupported("dropping a primary key".into()));
        }
        let Some(index) = self.checks.iter().position(|c| c.name == name) else {
            if if_exists {
                return Ok(None);
            }
            return Err(Error::NotFound {
                code: SqlState::UNDEFINED_OBJECT,
                message: format!(
                    "constraint \"{name}\" of relation \"{}\" does not exist",
                    self.name
                ),
            });
        };
        let mut table = self.clone();
        table.checks.remove(index);
        table.new_version();
        Ok(Some(table))
    }
}

/// The SQL text PostgreSQL shows for a column default.
fn default_text(value: &Value, data_type: DataType) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) | Value::Decimal(_) => {
            value.to_string()
        }
        Value::Float32(_) | Value::Float64(_) => format!("'{value}'::{data_type}"),
        other => format!("'{}'::{}", other.to_string().replace('\'', "''"), data_type),
    }
}

fn check_type(column: &str, data_type: DataType, value: &Value) -> Result<()> {
    if data_type.admits(value) {
        return Ok(());
    }
    Err(Error::invalid(
        SqlState::DATATYPE_MISMATCH,
        format!("column \"{column}\" is of type {data_type} but the value {value} is not"),
    ))
}

fn not_null(table: &str, column: &str) -> Error {
    Error::ConstraintViolation {
        code: SqlState::NOT_NULL_VIOLATION,
        message: format!("null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"),
    }
}

/// ", did you mean \"x\"?" for the closest candidate within a small edit distance.
pub fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!("; did you mean \"{c}\"?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + (ca != *cb) as usize)
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

const TABLE_KEY_PREFIX: &[u8] = b"table/";
const NEXT_TABLE_ID_KEY: &[u8] = b"catalog.next_table_id";
const ROLE_KEY_PREFIX: &[u8] = b"role/";

/// Every catalog entry under `prefix`, decoded (`what` names them in errors).
fn load_all<T: serde::de::DeserializeOwned>(
    storage: &dyn Storage,
    prefix: &[u8],
    what: &str,
) -> Result<Vec<T>> {
    storage
        .scan(Cf::Catalog, prefix, Some(&prefix_end(prefix)))
        .map(|entry| {
            let (_, value) = entry?;
            serde_json::from_slice(&value)
                .map_err(|e| Error::Corruption(format!("{what} does not decode: {e}")))
        })
        .collect()
}

/// The id after `id`; table ids are never reused, so running out is an error.
fn next_id(id: u32) -> Result<u32> {
    id.checked_add(1)
        .ok_or_else(|| Error::limit("the database has used every table id"))
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

/// A role: who may log in to the server, and with what password.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// Role name.
    pub name: String,
    /// Whether the role may create, change and drop roles.
    pub superuser: bool,
    /// Whether the role may log in.
    pub login: bool,
    /// The password's SCRAM-SHA-256 verifier in PostgreSQL's text form;
    /// never the password. A role without one cannot log in with a password.
    pub verifier: Option<String>,
}

/// Every table, by name and id, and every role.
#[derive(Default)]
pub struct Catalog {
    state: RwLock<State>,
    /// Counts table definitions installed or removed, so a prepared
    /// statement knows when the tables it was planned against may differ.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct State {
    by_name: HashMap<String, Arc<Table>>,
    by_id: HashMap<u32, Arc<Table>>,
    next_table_id: u32,
    roles: BTreeMap<String, Arc<Role>>,
}

impl Catalog {
    /// Loads every table definition from storage.
    ///
    /// The next table id is the larger of the stored counter and one past
    /// every id in use, so an id is never handed out twice. Two definitions
    /// claiming one id or one name mean the catalog is corrupt: opening fails
    /// rather than guessing which one owns the rows.
    pub fn load(storage: &dyn Storage) -> Result<Catalog> {
        let mut state = State {
            next_table_id: 1,
            ..State::default()
        };
        let prefix = TABLE_KEY_PREFIX;
        for entry in storage.scan(Cf::Catalog, prefix, Some(&prefix_end(prefix))) {
            let (key, value) = entry?;
            let table: Table = serde_json::from_slice(&value)
                .map_err(|e| Error::Corruption(format!("table definition does not encode: {e}")))?;
            if key != Self::table_key(table.id) {
                return Err(Error::Corruption(format!(
                    "the definition of table \"{}\" (id {}) is stored under another table's key",
                    table.name, table.id
                )));
            }
            if let Some(other) = state.by_name.get(&table.name) {
                return Err(Error::Corruption(format!(
                    "two table definitions (ids {} and {}) are both named \"{}\"",
                    other.id, table.id, table.name
                )));
            }
            state.next_table_id = state.next_table_id.max(next_id(table.id)?);
            let table = Arc::new(table);
            state.by_id.insert(table.id, table.clone());
            state.by_name.insert(table.name.clone(), table);
        }
        for role in load_all::<Role>(storage, ROLE_KEY_PREFIX, "role")? {
            state.roles.insert(role.name.clone(), Arc::new(role));
        }
        if let Some(bytes) = storage.get(Cf::Meta, NEXT_TABLE_ID_KEY)? {
            let stored = u32::from_be_bytes(
                bytes
                    .try_into()
                    .map_err(|_| Error::Corruption("next table id is not 4 bytes".into()))?,
            );
            state.next_table_id = state.next_table_id.max(stored);
        }
        Ok(Catalog {
            state: RwLock::new(state),
            generation: Default::default(),
        })
    }

    /// The table called `name`, or 42P01 with a close name when there is one.
    pub fn table(&self, name: &str) -> Result<Arc<Table>> {
        let state = self.state.read();
        state
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                code: SqlState::UNDEFINED_TABLE,
                message: format!(
                    "relation \"{name}\" does not exist{}",
                    did_you_mean(name, state.by_name.keys().map(String::as_str))
                ),
            })
    }

    /// Whether a table with this id exists now.
    pub fn contains_id(&self, id: u32) -> bool {
        self.state.read().by_id.contains_key(&id)
    }

    /// Every table, ordered by name.
    pub fn tables(&self) -> Vec<Arc<Table>> {
        let mut tables: Vec<_> = self.state.read().by_name.values().cloned().collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    /// The id the next new table gets.
    pub fn next_table_id(&self) -> u32 {
        self.state.read().next_table_id
    }

    /// The writes that record `table`, and for a table with an id at or past
    /// the counter, the counter moved past it. The counter only grows: saving
    /// an older table (an ALTER) leaves it where it is.
    pub fn put_entries(&self, table: &Table) -> Result<WriteBatch> {
        let value = serde_json::to_vec(table)
            .map_err(|e| Error::Internal(format!("table definition does not encode: {e}")))?;
        let mut batch = WriteBatch::new();
        batch.put(Cf::Catalog, Self::table_key(table.id), value);
        let next = next_id(table.id)?;
        if next > self.next_table_id() {
            batch.put(
                Cf::Meta,
                NEXT_TABLE_ID_KEY.to_vec(),
                next.to_be_bytes().to_vec(),
            );
        }
        Ok(batch)
    }

    /// The write that moves the id counter to `next` (ids below it are taken).
    pub fn counter_entry(next: u32) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(
            Cf::Meta,
            NEXT_TABLE_ID_KEY.to_vec(),
            next.to_be_bytes().to_vec(),
        );
        batch
    }

    /// Moves the id counter in memory to at least `next` (after
    /// [`counter_entry`](Catalog::counter_entry) is durable).
    pub fn advance_next_id(&self, next: u32) {
        let mut state = self.state.write();
        state.next_table_id = state.next_table_id.max(next);
    }

    /// The catalog key of table `id`.
    pub fn table_key(id: u32) -> Vec<u8> {
        let mut key = TABLE_KEY_PREFIX.to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        key
    }

    /// Adds or replaces a table in memory (after its entries are durable).
    pub fn install(&self, table: Table) {
        self.bump();
        let mut state = self.state.write();
        if let Some(old) = state.by_id.get(&table.id).cloned() {
            state.by_name.remove(&old.name);
        }
        state.next_table_id = state.next_table_id.max(table.id.saturating_add(1));
        let table = Arc::new(table);
        state.by_id.insert(table.id, table.clone());
        state.by_name.insert(table.name.clone(), table);
    }

    /// Changes with every table definition installed or removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Option<Arc<Role>> {
        self.state.read().roles.get(name).cloned()
    }

    /// Every role, ordered by name.
    pub fn roles(&self) -> Vec<Arc<Role>> {
        self.state.read().roles.values().cloned().collect()
    }

    /// The catalog key of role `name`.
    pub fn role_key(name: &str) -> Vec<u8> {
        let mut key = ROLE_KEY_PREFIX.to_vec();
        key.extend_from_slice(name.as_bytes());
        key
    }

    /// The write that records `role`.
    pub fn put_role(role: &Role) -> Result<WriteBatch> {
        let value = serde_json::to_vec(role)
            .map_err(|e| Error::Internal(format!("role does not encode: {e}")))?;
        let mut batch = WriteBatch::new();
        batch.put(Cf::Catalog, Self::role_key(&role.name), value);
        Ok(batch)
    }

    /// Adds or replaces a role in memory (after it is durable).
    pub fn install_role(&self, role: Role) {
        self.state
            .write()
            .roles
            .insert(role.name.clone(), Arc::new(role));
    }

    /// Removes a role from memory (after its removal is durable).
    pub fn uninstall_role(&self, name: &str) {
        self.state.write().roles.remove(name);
    }

    /// Removes a table from memory (after its removal is durable).
    pub fn uninstall(&self, id: u32) {
        self.bump();
        let mut state = self.state.write();
        if let Some(old) = state.by_id.remove(&id) {
            state.by_name.remove(&old.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::new(
            7,
            "t",
            vec![
                ColumnDef::new("id", DataType::Int32),
                ColumnDef::new("name", DataType::Text),
            ],
            &["id".to_string()],
        )
        .unwrap()
    }

    #[test]
    fn old_rows_read_under_new_schema() {
        let v1 = table();
        let old = v1
            .encode_row(&[Value::Int32(7), Value::Text("a".into())])
            .unwrap();
        let v2 = v1
            .with_column(ColumnDef::new("score", DataType::Float64).default(Value::Float64(0.5)))
            .unwrap();
        assert_eq!(
            v2.decode_row(&old).unwrap(),
            vec![
                Value::Int32(7),
                Value::Text("a".into()),
                Value::Float64(0.5)
            ]
        );
        let v3 = v2.without_column("name").unwrap();
        assert_eq!(
            v3.decode_row(&old).unwrap(),
            vec![Value::Int32(7), Value::Float64(0.5)]
        );
        let new = v3
            .encode_row(&[Value::Int32(8), Value::Float64(1.0)])
            .unwrap();
        assert_eq!(
            v3.decode_row(&new).unwrap(),
            vec![Value::Int32(8), Value::Float64(1.0)]
        );
        // A column added again under an old name is a new column: old rows read its default.
        let v4 = v3
            .with_column(ColumnDef::new("name", DataType::Text))
            .unwrap();
        assert_eq!(v4.decode_row(&old).unwrap()[2], Value::Null);
    }

    fn stored(entries: &[(u32, &Table)], counter: Option<u32>) -> crate::engine::storage::Memory {
        use crate::engine::storage::{Memory, SyncMode};
        let storage = Memory::new(None);
        let mut batch = WriteBatch::new();
        for (key, table) in entries {
            batch.put(
                Cf::Catalog,
                Catalog::table_key(*key),
                serde_json::to_vec(table).unwrap(),
            );
        }
        if let Some(counter) = counter {
            batch.put(
                Cf::Meta,
                NEXT_TABLE_ID_KEY.to_vec(),
                counter.to_be_bytes().to_vec(),
            );
        }
        storage.write(batch, SyncMode::Buffered).unwrap();
        storage
    }

    #[test]
    fn the_next_table_id_is_past_every_id_in_use() {
        // Bug: a stored counter behind the ids in use was trusted, so a new
        // table took an existing table's id and rows.
        let (a, mut b) = (table(), table());
        b.id = 9;
        b.name = "u".into();
        let catalog = Catalog::load(&stored(&[(7, &a), (9, &b)], Some(8))).unwrap();
        assert_eq!(catalog.next_table_id(), 10);
        // Saving an older table leaves the counter alone.
        let batch = catalog.put_entries(&a).unwrap();
        assert_eq!(batch.len(), 1);
        let batch = catalog
            .put_entries(&Table {
                id: 12,
                ..b.clone()
            })
            .unwrap();
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn two_definitions_with_one_id_or_name_are_corruption() {
        let (a, mut b) = (table(), table());
        let err = Catalog::load(&stored(&[(7, &a), (8, &a)], None))
            .err()
            .unwrap();
        assert_eq!(err.sqlstate(), SqlState::DATA_CORRUPTED, "{err}");
        b.id = 8;
        let err = Catalog::load(&stored(&[(7, &a), (8, &b)], None))
            .err()
            .unwrap();
        assert!(err.to_string().contains("both named"), "{err}");
    }

    #[test]
    fn rows_are_checked() {
        let t = table();
        let err = t.check_row(vec![Value::Null, Value::Null]).unwrap_err();
        assert_eq!(err.sqlstate(), SqlState::NOT_NULL_VIOLATION);
        let err = t
            .check_row(vec![Value::Text("x".into()), Value::Null])
            .unwrap_err();
        assert_eq!(err.sqlstate(), SqlState::DATATYPE_MISMATCH);
        let err = t.column_index("nme").unwrap_err();
        assert!(err.to_string().contains("did you mean \"name\""), "{err}");
    }

    #[test]
    fn varchar_and_char_lengths() {
        let t = Table::new(
            1,
            "s",
            vec![
                ColumnDef::new("v", DataType::Varchar(3)),
                ColumnDef::new("c", DataType::Char(4)),
            ],
            &["v".to_string()],
        )
        .unwrap();
        let row = t
            .check_row(vec![Value::Text("ab  ".into()), Value::Text("x".into())])
            .unwrap();
        assert_eq!(
            row,
            vec![Value::Text("ab ".into()), Value::Text("x   ".into())]
        );
        let err = t
            .check_row(vec![Value::Text("abcd".into()), Value::Null])
            .unwrap_err();
        assert_eq!(err.sqlstate(), SqlState::STRING_DATA_RIGHT_TRUNCATION);
    }
}
