//! PostgreSQL's system catalogs, as far as clients read them: `pg_catalog`
//! (pg_class, pg_attribute, pg_type, pg_namespace, pg_index, pg_constraint,
//! pg_roles, pg_database, ...) and `information_schema` (tables, columns,
//! schemata, table_constraints, key_column_usage), built from the engine's
//! catalog each time a statement reads them.
//!
//! Object ids are derived, not stored: a table's oid is `16384 + 2 * id` and
//! its primary key index's the next one; a role's is 10 for the first
//! superuser (PostgreSQL's bootstrap superuser) and a hash of its name
//! otherwise. Relations omen has nothing to put in (policies, publications,
//! inheritance, triggers, ...) exist with PostgreSQL's columns and no rows, so
//! clients that ask get the answer PostgreSQL gives for a database without
//! them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float32Array, Int16Array, Int16Builder, Int32Array, Int64Array,
    ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;

use crate::engine::activity::Activity;
use crate::engine::catalog::{Catalog, Index, Role, Table};
use crate::engine::locks::{Locks, Target};
use crate::engine::types::DataType;

/// The oid of namespace `pg_catalog`.
pub const PG_CATALOG_OID: u32 = 11;
/// The oid of namespace `public`.
pub const PUBLIC_OID: u32 = 2200;
/// The oid of namespace `information_schema`.
pub const INFORMATION_SCHEMA_OID: u32 = 13_000;
/// The oid of the one database, `omen`.
pub const DATABASE_OID: u32 = 16_383;
/// The oid of the role that owns every table: the first superuser.
pub const OWNER_OID: u32 = 10;
const FIRST_TABLE_OID: u32 = 16_384;
const HEAP_AM: u32 = 2;
const BTREE_AM: u32 = 403;

/// The oid of the table with id `id`.
pub fn table_oid(id: u32) -> u32 {
    FIRST_TABLE_OID + 2 * id
}

/// The oid of the primary key index of the table with id `id`.
pub fn index_oid(id: u32) -> u32 {
    table_oid(id) + 1
}

/// Oids of CHECK constraints: past every table's, 64 for each table.
const FIRST_CHECK_OID: u32 = 3_000_000_000;
/// Table ids whose constraints have oids of their own (beyond, they repeat).
const CHECK_OID_TABLES: u32 = 1_000_000;

/// The oid of CHECK constraint `n` (from 0) of the table with id `id`.
pub fn check_oid(id: u32, n: usize) -> u32 {
    FIRST_CHECK_OID + (id % CHECK_OID_TABLES) * crate::engine::catalog::MAX_CHECKS as u32 + n as u32
}

/// The table and CHECK constraint of a constraint oid made by [`check_oid`].
pub fn check_of(catalog: &Catalog, oid: u32) -> Option<(Arc<Table>, usize)> {
    let per_table = crate::engine::catalog::MAX_CHECKS;
    numbered_of(catalog, oid, FIRST_CHECK_OID, per_table, |t| t.checks.len())
}

/// The table and number of the constraint with oid `oid`, among oids from
/// `first` on, `per_table` for each table, of which a table has `count`.
fn numbered_of(
    catalog: &Catalog,
    oid: u32,
    first: u32,
    per_table: usize,
    count: impl Fn(&Table) -> usize,
) -> Option<(Arc<Table>, usize)> {
    let offset = oid.checked_sub(first)?;
    let (id, n) = (offset / per_table as u32, offset as usize % per_table);
    if id >= CHECK_OID_TABLES {
        return None;
    }
    let table = catalog
        .tables()
        .into_iter()
        .find(|t| t.id % CHECK_OID_TABLES == id && n < count(t))?;
    Some((table, n))
}

/// Oids of FOREIGN KEY constraints: past the CHECK constraints', 64 for each table.
const FIRST_FOREIGN_KEY_OID: u32 =
    FIRST_CHECK_OID + CHECK_OID_TABLES * crate::engine::catalog::MAX_CHECKS as u32;

/// The oid of FOREIGN KEY constraint `n` (from 0) of the table with id `id`.
pub fn foreign_key_oid(id: u32, n: usize) -> u32 {
    FIRST_FOREIGN_KEY_OID
        + (id % CHECK_OID_TABLES) * crate::engine::catalog::MAX_FOREIGN_KEYS as u32
        + n as u32
}

/// The table and FOREIGN KEY constraint of an oid made by [`foreign_key_oid`].
pub fn foreign_key_of(catalog: &Catalog, oid: u32) -> Option<(Arc<Table>, usize)> {
    let per_table = crate::engine::catalog::MAX_FOREIGN_KEYS;
    numbered_of(catalog, oid, FIRST_FOREIGN_KEY_OID, per_table, |t| {
        t.foreign_keys.len()
    })
}

/// The definition pg_get_constraintdef gives a FOREIGN KEY constraint, in
/// PostgreSQL's words and order (which ORMs parse).
pub fn foreign_key_definition(catalog: &Catalog, table: &Table, n: usize) -> String {
    let fk = &table.foreign_keys[n];
    let names = |t: &Table, ids: &[u32]| {
        t.positions(ids)
            .into_iter()
            .map(|p| quote_ident(&t.columns[p].name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let parent = catalog.table_by_id(fk.parent);
    let (parent_name, parent_columns) = match &parent {
        Some(parent) => (quote_ident(&parent.name), names(parent, &fk.parent_columns)),
        None => (String::new(), String::new()),
    };
    let mut text = format!(
        "FOREIGN KEY ({}) REFERENCES {parent_name}({parent_columns})",
        names(table, &fk.columns)
    );
    if fk.on_update != crate::engine::catalog::Action::NoAction {
        text.push_str(&format!(" ON UPDATE {}", fk.on_update.sql()));
    }
    if fk.on_delete != crate::engine::catalog::Action::NoAction {
        text.push_str(&format!(" ON DELETE {}", fk.on_delete.sql()));
    }
    if fk.deferrable {
        text.push_str(" DEFERRABLE");
    }
    if fk.initially_deferred {
        text.push_str(" INITIALLY DEFERRED");
    }
    if !fk.validated {
        text.push_str(" NOT VALID");
    }
    text
}

/// The definition pg_get_constraintdef gives a CHECK constraint.
pub fn check_definition(table: &Table, n: usize) -> String {
    format!("CHECK (({}))", table.checks[n].expr)
}

/// The table id of a table or index oid, and whether it is the index.
pub fn relation_of(oid: u32) -> Option<(u32, bool)> {
    let offset = oid.checked_sub(FIRST_TABLE_OID)?;
    Some((offset / 2, offset % 2 == 1))
}

/// The roles clients see: the catalog's, or, on a database without roles
/// (trust authentication), the session's user as its superuser.
pub fn visible_roles(catalog: &Catalog, user: &str) -> Vec<(u32, Arc<Role>)> {
    let mut roles = catalog.roles();
    if roles.is_empty() {
        roles.push(Arc::new(Role {
            name: user.to_string(),
            superuser: true,
            login: true,
            verifier: None,
        }));
    }
    let owner = roles.iter().position(|r| r.superuser).unwrap_or(0);
    roles
        .into_iter()
        .enumerate()
        .map(|(i, role)| {
            let oid = if i == owner {
                OWNER_OID
            } else {
                role_oid(&role.name)
            };
            (oid, role)
        })
        .collect()
}

/// A stable oid for a role that is not the owner: FNV-1a of its name, kept
/// clear of the oids PostgreSQL reserves and of table oids.
fn role_oid(name: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    1_000_000 + hash % 1_000_000_000
}

/// A built-in type as pg_type lists it.
pub struct PgType {
    pub oid: u32,
    pub name: &'static str,
    /// The name format_type gives it.
    pub sql_name: &'static str,
    pub len: i16,
    pub category: &'static str,
    /// The oid of its array type, or of its element type for an array type.
    pub array: u32,
    pub element: u32,
}

const fn ty(
    oid: u32,
    name: &'static str,
    sql_name: &'static str,
    len: i16,
    category: &'static str,
    array: u32,
) -> PgType {
    PgType {
        oid,
        name,
        sql_name,
        len,
        category,
        array,
        element: 0,
    }
}

/// The types omen stores or returns, and those clients look up by name.
pub const TYPES: &[PgType] = &[
    ty(16, "bool", "boolean", 1, "B", 1000),
    ty(17, "bytea", "bytea", -1, "U", 1001),
    ty(18, "char", "\"char\"", 1, "Z", 1002),
    ty(19, "name", "name", 64, "S", 1003),
    ty(20, "int8", "bigint", 8, "N", 1016),
    ty(21, "int2", "smallint", 2, "N", 1005),
    ty(23, "int4", "integer", 4, "N", 1007),
    ty(25, "text", "text", -1, "S", 1009),
    ty(26, "oid", "oid", 4, "N", 1028),
    ty(114, "json", "json", -1, "U", 199),
    ty(700, "float4", "real", 4, "N", 1021),
    ty(701, "float8", "double precision", 8, "N", 1022),
    ty(705, "unknown", "unknown", -2, "X", 0),
    ty(1042, "bpchar", "character", -1, "S", 1014),
    ty(1043, "varchar", "character varying", -1, "S", 1015),
    ty(1082, "date", "date", 4, "D", 1182),
    ty(1083, "time", "time without time zone", 8, "D", 1183),
    ty(
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        "D",
        1115,
    ),
    ty(
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        "D",
        1185,
    ),
    ty(1186, "interval", "interval", 16, "T", 1187),
    ty(1700, "numeric", "numeric", -1, "N", 1231),
    ty(2205, "regclass", "regclass", 4, "N", 2210),
    ty(2206, "regtype", "regtype", 4, "N", 2211),
    ty(2249, "record", "record", -1, "P", 2287),
    ty(2278, "void", "void", 4, "P", 0),
    ty(2950, "uuid", "uuid", 16, "U", 2951),
    ty(3802, "jsonb", "jsonb", -1, "U", 3807),
    ty(4089, "regnamespace", "regnamespace", 4, "N", 4090),
];

/// Every type: [`TYPES`] and their array types (`_int4`, ...).
pub fn all_types() -> Vec<PgType> {
    let mut types = Vec::new();
    for t in TYPES {
        types.push(PgType { ..*t });
        if t.array != 0 {
            types.push(PgType {
                oid: t.array,
                name: array_name(t.name),
                sql_name: t.sql_name,
                len: -1,
                category: "A",
                array: 0,
                element: t.oid,
            });
        }
    }
    types
}

fn array_name(name: &'static str) -> &'static str {
    // The array type names PostgreSQL gives: an underscore before the name.
    match name {
        "bool" => "_bool",
        "bytea" => "_bytea",
        "char" => "_char",
        "name" => "_name",
        "int8" => "_int8",
        "int2" => "_int2",
        "int4" => "_int4",
        "text" => "_text",
        "oid" => "_oid",
        "json" => "_json",
        "float4" => "_float4",
        "float8" => "_float8",
        "bpchar" => "_bpchar",
        "varchar" => "_varchar",
        "date" => "_date",
        "time" => "_time",
        "timestamp" => "_timestamp",
        "timestamptz" => "_timestamptz",
        "interval" => "_interval",
        "numeric" => "_numeric",
        "regclass" => "_regclass",
        "regtype" => "_regtype",
        "record" => "_record",
        "uuid" => "_uuid",
        "jsonb" => "_jsonb",
        "regnamespace" => "_regnamespace",
        _ => "_unknown",
    }
}

/// The type oid and type modifier of an omen column type.
pub fn type_of(data_type: DataType) -> (u32, i32) {
    match data_type {
        DataType::Bool => (16, -1),
        DataType::Int16 => (21, -1),
        DataType::Int32 => (23, -1),
        DataType::Int64 => (20, -1),
        DataType::Float32 => (700, -1),
        DataType::Float64 => (701, -1),
        DataType::Decimal { precision, scale } => {
            (1700, ((precision as i32) << 16 | scale as i32) + 4)
        }
        DataType::Text => (25, -1),
        DataType::Varchar(n) => (1043, n as i32 + 4),
        DataType::Char(n) => (1042, n as i32 + 4),
        DataType::Bytes => (17, -1),
        DataType::Date => (1082, -1),
        DataType::Time => (1083, -1),
        DataType::Timestamp => (1114, -1),
        DataType::TimestampTz => (1184, -1),
        DataType::Interval => (1186, -1),
    }
}

/// PostgreSQL's format_type: the SQL name of type `oid` with modifier
/// `typmod`, or None for an unknown oid.
pub fn format_type(oid: u32, typmod: i32) -> Option<String> {
    let types = all_types();
    let t = types.iter().find(|t| t.oid == oid)?;
    let modifier = match (t.oid, typmod) {
        (1043 | 1042, m) if m >= 4 => format!("({})", m - 4),
        (1700, m) if m >= 4 => format!("({},{})", (m - 4) >> 16, (m - 4) & 0xffff),
        _ => String::new(),
    };
    let array = if t.element != 0 { "[]" } else { "" };
    Some(format!("{}{modifier}{array}", t.sql_name))
}

/// The oid of the type named `name` (`int4`, `integer`, `pg_catalog.text`,
/// `character varying`, `_int4`, `int4[]`).
pub fn type_named(name: &str) -> Option<u32> {
    let name = name.trim().trim_start_matches("pg_catalog.").to_lowercase();
    let (base, array) = match name.strip_suffix("[]") {
        Some(base) => (base.trim().to_string(), true),
        None => (name.clone(), false),
    };
    let base = base
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let alias = match base.as_str() {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "\"char\"" => "char",
        other => other,
    };
    let types = all_types();
    let t = types.iter().find(|t| t.name == alias)?;
    Some(if array { t.array } else { t.oid })
}

/// The name a `::regtype` cast shows for type `oid`.
pub fn type_name(oid: u32) -> Option<String> {
    format_type(oid, -1)
}

/// The definition pg_get_indexdef gives a table's primary key index.
pub fn index_definition(table: &Table) -> String {
    format!(
        "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
        quote_ident(&table.primary_key_name()),
        quote_ident(&table.name),
        key_columns(table).join(", ")
    )
}

/// The table whose secondary index has id `id`, with the index.
pub fn secondary_index(catalog: &Catalog, id: u32) -> Option<(Arc<Table>, Index)> {
    catalog.tables().into_iter().find_map(|t| {
        let index = t.visible_indexes().find(|i| i.id == id)?.clone();
        Some((t, index))
    })
}

/// The definition pg_get_indexdef gives a secondary index.
pub fn secondary_index_definition(table: &Table, index: &Index) -> String {
    format!(
        "CREATE {}INDEX {} ON public.{} USING btree ({}){}",
        if index.unique { "UNIQUE " } else { "" },
        quote_ident(&index.name),
        quote_ident(&table.name),
        index_column_names(table, index).join(", "),
        if index.nulls_not_distinct {
            " NULLS NOT DISTINCT"
        } else {
            ""
        }
    )
}

/// The definition pg_get_constraintdef gives a UNIQUE constraint.
pub fn unique_definition(table: &Table, index: &Index) -> String {
    format!(
        "UNIQUE {}({})",
        if index.nulls_not_distinct {
            "NULLS NOT DISTINCT "
        } else {
            ""
        },
        index_column_names(table, index).join(", ")
    )
}

fn index_column_names(table: &Table, index: &Index) -> Vec<String> {
    table
        .index_columns(index)
        .into_iter()
        .map(|i| quote_ident(&table.columns[i].name))
        .collect()
}

fn index_attnums(table: &Table, index: &Index) -> Vec<i16> {
    table
        .index_columns(index)
        .into_iter()
        .map(|i| i as i16 + 1)
        .collect()
}

/// The definition pg_get_constraintdef gives a table's primary key.
pub fn constraint_definition(table: &Table) -> String {
    format!("PRIMARY KEY ({})", key_columns(table).join(", "))
}

/// The attribute numbers (from 1) of a table's primary key columns.
fn key_attnums(table: &Table) -> Vec<i16> {
    table
        .primary_key_indices()
        .into_iter()
        .map(|i| i as i16 + 1)
        .collect()
}

fn key_columns(table: &Table) -> Vec<String> {
    table
        .primary_key_indices()
        .into_iter()
        .map(|i| quote_ident(&table.columns[i].name))
        .collect()
}

/// An identifier quoted as PostgreSQL's quote_ident does: only when it needs it.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A column's type in a catalog relation.
#[derive(Clone, Copy)]
enum Kind {
    Oid,
    Text,
    Bool,
    I16,
    I32,
    I64,
    F32,
    TextList,
    I16List,
    OidList,
    Timestamptz,
}

/// One value of a catalog row.
enum Cell {
    Oid(u32),
    Text(String),
    Bool(bool),
    Int(i64),
    I16List(Vec<i16>),
    Time(std::time::SystemTime),
    Float(f64),
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Cell {
        Cell::Bool(b)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Cell {
        Cell::Int(n)
    }
}

fn oid(n: u32) -> Cell {
    Cell::Oid(n)
}

/// A row: values by column name; columns it leaves out are false, zero or NULL.
type Row = Vec<(&'static str, Cell)>;

type Columns = &'static [(&'static str, Kind)];

use Kind::*;

const PG_NAMESPACE: Columns = &[
    ("oid", Oid),
    ("nspname", Text),
    ("nspowner", Oid),
    ("nspacl", TextList),
];
const PG_STATS: Columns = &[
    ("schemaname", Text),
    ("tablename", Text),
    ("attname", Text),
    ("inherited", Bool),
    ("null_frac", F32),
    ("avg_width", I32),
    ("n_distinct", F32),
    ("histogram_bounds", Text),
    ("correlation", F32),
];
const PG_CLASS: Columns = &[
    ("oid", Oid),
    ("relname", Text),
    ("relnamespace", Oid),
    ("reltype", Oid),
    ("reloftype", Oid),
    ("relowner", Oid),
    ("relam", Oid),
    ("relfilenode", Oid),
    ("reltablespace", Oid),
    ("relpages", I32),
    ("reltuples", F32),
    ("relallvisible", I32),
    ("reltoastrelid", Oid),
    ("relhasindex", Bool),
    ("relisshared", Bool),
    ("relpersistence", Text),
    ("relkind", Text),
    ("relnatts", I16),
    ("relchecks", I16),
    ("relhasrules", Bool),
    ("relhastriggers", Bool),
    ("relhassubclass", Bool),
    ("relrowsecurity", Bool),
    ("relforcerowsecurity", Bool),
    ("relispopulated", Bool),
    ("relreplident", Text),
    ("relispartition", Bool),
    ("relrewrite", Oid),
    ("relfrozenxid", I64),
    ("relminmxid", I64),
    ("relacl", TextList),
    ("reloptions", TextList),
    ("relpartbound", Text),
];
const PG_ATTRIBUTE: Columns = &[
    ("attrelid", Oid),
    ("attname", Text),
    ("atttypid", Oid),
    ("attstattarget", I32),
    ("attlen", I16),
    ("attnum", I16),
    ("attndims", I32),
    ("attcacheoff", I32),
    ("atttypmod", I32),
    ("attbyval", Bool),
    ("attalign", Text),
    ("attstorage", Text),
    ("attcompression", Text),
    ("attnotnull", Bool),
    ("atthasdef", Bool),
    ("atthasmissing", Bool),
    ("attidentity", Text),
    ("attgenerated", Text),
    ("attisdropped", Bool),
    ("attislocal", Bool),
    ("attinhcount", I32),
    ("attcollation", Oid),
    ("attacl", TextList),
    ("attoptions", TextList),
    ("attfdwoptions", TextList),
];
const PG_TYPE: Columns = &[
    ("oid", Oid),
    ("typname", Text),
    ("typnamespace", Oid),
    ("typowner", Oid),
    ("typlen", I16),
    ("typbyval", Bool),
    ("typtype", Text),
    ("typcategory", Text),
    ("typispreferred", Bool),
    ("typisdefined", Bool),
    ("typdelim", Text),
    ("typrelid", Oid),
    ("typsubscript", Text),
    ("typelem", Oid),
    ("typarray", Oid),
    ("typinput", Text),
    ("typoutput", Text),
    ("typreceive", Text),
    ("typsend", Text),
    ("typmodin", Text),
    ("typmodout", Text),
    ("typanalyze", Text),
    ("typalign", Text),
    ("typstorage", Text),
    ("typnotnull", Bool),
    ("typbasetype", Oid),
    ("typtypmod", I32),
    ("typndims", I32),
    ("typcollation", Oid),
    ("typdefaultbin", Text),
    ("typdefault", Text),
    ("typacl", TextList),
];
const PG_ATTRDEF: Columns = &[
    ("oid", Oid),
    ("adrelid", Oid),
    ("adnum", I16),
    ("adbin", Text),
];
const PG_INDEX: Columns = &[
    ("indexrelid", Oid),
    ("indrelid", Oid),
    ("indnatts", I16),
    ("indnkeyatts", I16),
    ("indisunique", Bool),
    ("indnullsnotdistinct", Bool),
    ("indisprimary", Bool),
    ("indisexclusion", Bool),
    ("indimmediate", Bool),
    ("indisclustered", Bool),
    ("indisvalid", Bool),
    ("indcheckxmin", Bool),
    ("indisready", Bool),
    ("indislive", Bool),
    ("indisreplident", Bool),
    ("indkey", I16List),
    ("indclass", I16List),
    // An int2vector, which clients read in its text form ("0 0").
    ("indoption", Text),
    ("indexprs", Text),
    ("indpred", Text),
];
const PG_CONSTRAINT: Columns = &[
    ("oid", Oid),
    ("conname", Text),
    ("connamespace", Oid),
    ("contype", Text),
    ("condeferrable", Bool),
    ("condeferred", Bool),
    ("convalidated", Bool),
    ("conrelid", Oid),
    ("contypid", Oid),
    ("conindid", Oid),
    ("conparentid", Oid),
    ("confrelid", Oid),
    ("confupdtype", Text),
    ("confdeltype", Text),
    ("confmatchtype", Text),
    ("conislocal", Bool),
    ("coninhcount", I32),
    ("connoinherit", Bool),
    ("conkey", I16List),
    ("confkey", I16List),
    ("conbin", Text),
];
const PG_AM: Columns = &[
    ("oid", Oid),
    ("amname", Text),
    ("amhandler", Text),
    ("amtype", Text),
];
const PG_DATABASE: Columns = &[
    ("oid", Oid),
    ("datname", Text),
    ("datdba", Oid),
    ("encoding", I32),
    ("datlocprovider", Text),
    ("datistemplate", Bool),
    ("datallowconn", Bool),
    ("datconnlimit", I32),
    ("datfrozenxid", I64),
    ("datminmxid", I64),
    ("dattablespace", Oid),
    ("datcollate", Text),
    ("datctype", Text),
    ("daticulocale", Text),
    ("datcollversion", Text),
    ("datacl", TextList),
];
const PG_ROLES: Columns = &[
    ("rolname", Text),
    ("rolsuper", Bool),
    ("rolinherit", Bool),
    ("rolcreaterole", Bool),
    ("rolcreatedb", Bool),
    ("rolcanlogin", Bool),
    ("rolreplication", Bool),
    ("rolconnlimit", I32),
    ("rolpassword", Text),
    ("rolvaliduntil", Text),
    ("rolbypassrls", Bool),
    ("rolconfig", TextList),
    ("oid", Oid),
];
const PG_USER: Columns = &[
    ("usename", Text),
    ("usesysid", Oid),
    ("usecreatedb", Bool),
    ("usesuper", Bool),
    ("userepl", Bool),
    ("usebypassrls", Bool),
    ("passwd", Text),
    ("valuntil", Text),
    ("useconfig", TextList),
];
const PG_AUTH_MEMBERS: Columns = &[
    ("oid", Oid),
    ("roleid", Oid),
    ("member", Oid),
    ("grantor", Oid),
    ("admin_option", Bool),
];
const PG_COLLATION: Columns = &[
    ("oid", Oid),
    ("collname", Text),
    ("collnamespace", Oid),
    ("collowner", Oid),
    ("collprovider", Text),
    ("collisdeterministic", Bool),
    ("collencoding", I32),
    ("collcollate", Text),
    ("collctype", Text),
];
const PG_TABLESPACE: Columns = &[
    ("oid", Oid),
    ("spcname", Text),
    ("spcowner", Oid),
    ("spcacl", TextList),
    ("spcoptions", TextList),
];
const PG_DESCRIPTION: Columns = &[
    ("objoid", Oid),
    ("classoid", Oid),
    ("objsubid", I32),
    ("description", Text),
];
const PG_INHERITS: Columns = &[
    ("inhrelid", Oid),
    ("inhparent", Oid),
    ("inhseqno", I32),
    ("inhdetachpending", Bool),
];
const PG_POLICY: Columns = &[
    ("oid", Oid),
    ("polname", Text),
    ("polrelid", Oid),
    ("polcmd", Text),
    ("polpermissive", Bool),
    ("polroles", OidList),
    ("polqual", Text),
    ("polwithcheck", Text),
];
const PG_STATISTIC_EXT: Columns = &[
    ("oid", Oid),
    ("stxrelid", Oid),
    ("stxname", Text),
    ("stxnamespace", Oid),
    ("stxowner", Oid),
    ("stxstattarget", I32),
    ("stxkeys", I16List),
    ("stxkind", TextList),
    ("stxexprs", Text),
];
const PG_PUBLICATION: Columns = &[
    ("oid", Oid),
    ("pubname", Text),
    ("pubowner", Oid),
    ("puballtables", Bool),
    ("pubinsert", Bool),
    ("pubupdate", Bool),
    ("pubdelete", Bool),
    ("pubtruncate", Bool),
    ("pubviaroot", Bool),
];
const PG_PUBLICATION_REL: Columns = &[
    ("oid", Oid),
    ("prpubid", Oid),
    ("prrelid", Oid),
    ("prqual", Text),
    ("prattrs", I16List),
];
const PG_PUBLICATION_NAMESPACE: Columns = &[("oid", Oid), ("pnpubid", Oid), ("pnnspid", Oid)];
const PG_OPCLASS: Columns = &[
    ("oid", Oid),
    ("opcmethod", Oid),
    ("opcname", Text),
    ("opcnamespace", Oid),
    ("opcowner", Oid),
    ("opcfamily", Oid),
    ("opcintype", Oid),
    ("opcdefault", Bool),
    ("opckeytype", Oid),
];
const PG_TRIGGER: Columns = &[
    ("oid", Oid),
    ("tgrelid", Oid),
    ("tgparentid", Oid),
    ("tgname", Text),
    ("tgfoid", Oid),
    ("tgtype", I16),
    ("tgenabled", Text),
    ("tgisinternal", Bool),
    ("tgconstrrelid", Oid),
    ("tgconstrindid", Oid),
    ("tgconstraint", Oid),
];
const PG_REWRITE: Columns = &[
    ("oid", Oid),
    ("rulename", Text),
    ("ev_class", Oid),
    ("ev_type", Text),
    ("ev_enabled", Text),
    ("is_instead", Bool),
];
const PG_ENUM: Columns = &[
    ("oid", Oid),
    ("enumtypid", Oid),
    ("enumsortorder", F32),
    ("enumlabel", Text),
];
const PG_EVENT_TRIGGER: Columns = &[
    ("oid", Oid),
    ("evtname", Text),
    ("evtevent", Text),
    ("evtowner", Oid),
    ("evtfoid", Oid),
    ("evtenabled", Text),
    ("evttags", TextList),
];
const PG_RANGE: Columns = &[
    ("rngtypid", Oid),
    ("rngsubtype", Oid),
    ("rngmultitypid", Oid),
    ("rngcollation", Oid),
];
const PG_EXTENSION: Columns = &[
    ("oid", Oid),
    ("extname", Text),
    ("extowner", Oid),
    ("extnamespace", Oid),
    ("extrelocatable", Bool),
    ("extversion", Text),
];
const PG_PROC: Columns = &[
    ("oid", Oid),
    ("proname", Text),
    ("pronamespace", Oid),
    ("proowner", Oid),
    ("prokind", Text),
    ("prorettype", Oid),
    ("proargtypes", Text),
];
const PG_SEQUENCE: Columns = &[
    ("seqrelid", Oid),
    ("seqtypid", Oid),
    ("seqstart", I64),
    ("seqincrement", I64),
    ("seqmax", I64),
    ("seqmin", I64),
    ("seqcache", I64),
    ("seqcycle", Bool),
];
const PG_LOCKS: Columns = &[
    ("locktype", Text),
    ("database", Oid),
    ("relation", Oid),
    ("page", I32),
    ("tuple", I16),
    ("virtualxid", Text),
    ("transactionid", I64),
    ("classid", Oid),
    ("objid", Oid),
    ("objsubid", I16),
    ("virtualtransaction", Text),
    ("pid", I32),
    ("mode", Text),
    ("granted", Bool),
    ("fastpath", Bool),
    ("waitstart", Timestamptz),
];
const PG_STAT_ACTIVITY: Columns = &[
    ("datid", Oid),
    ("datname", Text),
    ("pid", I32),
    ("leader_pid", I32),
    ("usesysid", Oid),
    ("usename", Text),
    ("application_name", Text),
    ("client_addr", Text),
    ("client_hostname", Text),
    ("client_port", I32),
    ("backend_start", Timestamptz),
    ("xact_start", Timestamptz),
    ("query_start", Timestamptz),
    ("state_change", Timestamptz),
    ("wait_event_type", Text),
    ("wait_event", Text),
    ("state", Text),
    ("backend_xid", I64),
    ("backend_xmin", I64),
    ("query_id", I64),
    ("query", Text),
    ("backend_type", Text),
];
const PG_TABLES: Columns = &[
    ("schemaname", Text),
    ("tablename", Text),
    ("tableowner", Text),
    ("tablespace", Text),
    ("hasindexes", Bool),
    ("hasrules", Bool),
    ("hastriggers", Bool),
    ("rowsecurity", Bool),
];
const PG_INDEXES: Columns = &[
    ("schemaname", Text),
    ("tablename", Text),
    ("indexname", Text),
    ("tablespace", Text),
    ("indexdef", Text),
];
const PG_VIEWS: Columns = &[
    ("schemaname", Text),
    ("viewname", Text),
    ("viewowner", Text),
    ("definition", Text),
];

/// The relations of `pg_catalog`, in the order `\dS` would list them.
const PG_CATALOG: &[(&str, Columns)] = &[
    ("pg_am", PG_AM),
    ("pg_attrdef", PG_ATTRDEF),
    ("pg_attribute", PG_ATTRIBUTE),
    ("pg_auth_members", PG_AUTH_MEMBERS),
    ("pg_class", PG_CLASS),
    ("pg_collation", PG_COLLATION),
    ("pg_constraint", PG_CONSTRAINT),
    ("pg_database", PG_DATABASE),
    ("pg_description", PG_DESCRIPTION),
    ("pg_enum", PG_ENUM),
    ("pg_event_trigger", PG_EVENT_TRIGGER),
    ("pg_extension", PG_EXTENSION),
    ("pg_index", PG_INDEX),
    ("pg_inherits", PG_INHERITS),
    ("pg_locks", PG_LOCKS),
    ("pg_namespace", PG_NAMESPACE),
    ("pg_policy", PG_POLICY),
    ("pg_proc", PG_PROC),
    ("pg_publication", PG_PUBLICATION),
    ("pg_publication_namespace", PG_PUBLICATION_NAMESPACE),
    ("pg_publication_rel", PG_PUBLICATION_REL),
    ("pg_range", PG_RANGE),
    ("pg_rewrite", PG_REWRITE),
    ("pg_roles", PG_ROLES),
    ("pg_sequence", PG_SEQUENCE),
    ("pg_stat_activity", PG_STAT_ACTIVITY),
    ("pg_stats", PG_STATS),
    ("pg_statistic_ext", PG_STATISTIC_EXT),
    ("pg_indexes", PG_INDEXES),
    ("pg_tables", PG_TABLES),
    ("pg_tablespace", PG_TABLESPACE),
    ("pg_opclass", PG_OPCLASS),
    ("pg_trigger", PG_TRIGGER),
    ("pg_type", PG_TYPE),
    ("pg_user", PG_USER),
    ("pg_views", PG_VIEWS),
];

/// The relations of `pg_catalog` that omen has nothing to put in.
const ALWAYS_EMPTY: &[&str] = &[
    "pg_auth_members",
    // Only the default operator classes exist, and pg_opclass holds no row
    // for them here: clients look up the non-default ones.
    "pg_opclass",
    "pg_description",
    "pg_enum",
    "pg_event_trigger",
    "pg_extension",
    "pg_inherits",
    "pg_policy",
    "pg_proc",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_range",
    "pg_rewrite",
    "pg_statistic_ext",
    "pg_trigger",
    "pg_views",
];

/// Whether `name` is a relation of `pg_catalog` that never has rows.
pub fn is_always_empty(name: &str) -> bool {
    ALWAYS_EMPTY.contains(&name)
}

/// Whether `name` is a relation of `pg_catalog`.
pub fn is_catalog_relation(name: &str) -> bool {
    PG_CATALOG.iter().any(|(n, _)| *n == name)
}

/// The rows of a `pg_catalog` relation.
fn pg_rows(name: &str, catalog: &Catalog, user: &str) -> Vec<Row> {
    let tables = catalog.tables();
    let roles = visible_roles(catalog, user);
    let owner = roles
        .iter()
        .find(|(oid, _)| *oid == OWNER_OID)
        .map(|(_, r)| r.name.clone())
        .unwrap_or_default();
    match name {
        "pg_namespace" => [
            (PG_CATALOG_OID, "pg_catalog"),
            (PUBLIC_OID, "public"),
            (INFORMATION_SCHEMA_OID, "information_schema"),
        ]
        .into_iter()
        .map(|(o, n)| {
            vec![
                ("oid", oid(o)),
                ("nspname", n.into()),
                ("nspowner", oid(OWNER_OID)),
            ]
        })
        .collect(),
        "pg_class" => {
            let mut rows = Vec::new();
            for t in &tables {
                let keyed = !t.has_row_ids();
                rows.push(vec![
                    ("oid", oid(table_oid(t.id))),
                    ("relname", t.name.clone().into()),
                    ("relnamespace", oid(PUBLIC_OID)),
                    ("relowner", oid(OWNER_OID)),
                    ("relam", oid(HEAP_AM)),
                    ("relfilenode", oid(table_oid(t.id))),
                    (
                        "relhasindex",
                        (keyed || t.visible_indexes().next().is_some()).into(),
                    ),
                    ("relpersistence", "p".into()),
                    ("relkind", "r".into()),
                    (
                        "relhastriggers",
                        (!t.foreign_keys.is_empty() || !catalog.referencing(t.id).is_empty())
                            .into(),
                    ),
                    ("relnatts", (t.columns.len() as i64).into()),
                    ("relispopulated", true.into()),
                    ("relreplident", "d".into()),
                    ("reltuples", (-1).into()),
                ]);
                if keyed {
                    rows.push(vec![
                        ("oid", oid(index_oid(t.id))),
                        ("relname", t.primary_key_name().into()),
                        ("relnamespace", oid(PUBLIC_OID)),
                        ("relowner", oid(OWNER_OID)),
                        ("relam", oid(BTREE_AM)),
                        ("relfilenode", oid(index_oid(t.id))),
                        ("relpersistence", "p".into()),
                        ("relkind", "i".into()),
                        ("relnatts", (t.primary_key.len() as i64).into()),
                        ("relispopulated", true.into()),
                        ("relreplident", "n".into()),
                        ("reltuples", (-1).into()),
                    ]);
                }
                for index in t.visible_indexes() {
                    rows.push(vec![
                        ("oid", oid(table_oid(index.id))),
                        ("relname", index.name.clone().into()),
                        ("relnamespace", oid(PUBLIC_OID)),
                        ("relowner", oid(OWNER_OID)),
                        ("relam", oid(BTREE_AM)),
                        ("relfilenode", oid(table_oid(index.id))),
                        ("relpersistence", "p".into()),
                        ("relkind", "i".into()),
                        ("relnatts", (index.columns.len() as i64).into()),
                        ("relispopulated", true.into()),
                        ("relreplident", "n".into()),
                        ("reltuples", (-1).into()),
                    ]);
                }
            }
            rows
        }
        "pg_attribute" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (i, c) in t.columns.iter().enumerate() {
                    let (type_oid, typmod) = type_of(c.data_type);
                    let len = TYPES
                        .iter()
                        .find(|ty| ty.oid == type_oid)
                        .map_or(-1, |ty| ty.len);
                    rows.push(vec![
                        ("attrelid", oid(table_oid(t.id))),
                        ("attname", c.name.clone().into()),
                        ("atttypid", oid(type_oid)),
                        ("attstattarget", (-1).into()),
                        ("attlen", (len as i64).into()),
                        ("attnum", (i as i64 + 1).into()),
                        ("attcacheoff", (-1).into()),
                        ("atttypmod", (typmod as i64).into()),
                        ("attbyval", (len > 0 && len <= 8).into()),
                        ("attalign", "i".into()),
                        ("attstorage", if len > 0 { "p" } else { "x" }.into()),
                        ("attcompression", "".into()),
                        ("attnotnull", (!c.nullable).into()),
                        ("atthasdef", c.catalog_default().is_some().into()),
                        ("attidentity", c.identity_code().into()),
                        ("attgenerated", "".into()),
                        ("attislocal", true.into()),
                        (
                            "attcollation",
                            oid(if matches!(type_oid, 25 | 1042 | 1043) {
                                100
                            } else {
                                0
                            }),
                        ),
                    ]);
                }
                let keys = (!t.has_row_ids())
                    .then(|| (index_oid(t.id), t.primary_key_indices()))
                    .into_iter()
                    .chain(
                        t.visible_indexes()
                            .map(|i| (table_oid(i.id), t.index_columns(i))),
                    );
                for (relation, columns) in keys {
                    for (n, i) in columns.into_iter().enumerate() {
                        let c = &t.columns[i];
                        let (type_oid, typmod) = type_of(c.data_type);
                        rows.push(vec![
                            ("attrelid", oid(relation)),
                            ("attname", c.name.clone().into()),
                            ("atttypid", oid(type_oid)),
                            ("attnum", (n as i64 + 1).into()),
                            ("atttypmod", (typmod as i64).into()),
                            ("attnotnull", (!c.nullable).into()),
                            ("attidentity", "".into()),
                            ("attgenerated", "".into()),
                            ("attislocal", true.into()),
                        ]);
                    }
                }
            }
            rows
        }
        "pg_type" => all_types()
            .into_iter()
            .map(|t| {
                let collation = if t.category == "S" && t.oid != 19 {
                    100
                } else {
                    0
                };
                vec![
                    ("oid", oid(t.oid)),
                    ("typname", t.name.into()),
                    ("typnamespace", oid(PG_CATALOG_OID)),
                    ("typowner", oid(OWNER_OID)),
                    ("typlen", (t.len as i64).into()),
                    ("typbyval", (t.len > 0 && t.len <= 8).into()),
                    ("typtype", if t.category == "P" { "p" } else { "b" }.into()),
                    ("typcategory", t.category.into()),
                    ("typisdefined", true.into()),
                    ("typdelim", ",".into()),
                    ("typelem", oid(t.element)),
                    ("typarray", oid(t.array)),
                    ("typinput", format!("{}in", t.name).into()),
                    ("typoutput", format!("{}out", t.name).into()),
                    ("typreceive", format!("{}recv", t.name).into()),
                    ("typsend", format!("{}send", t.name).into()),
                    ("typalign", "i".into()),
                    ("typstorage", if t.len > 0 { "p" } else { "x" }.into()),
                    ("typtypmod", (-1).into()),
                    ("typcollation", oid(collation)),
                ]
            })
            .collect(),
        "pg_attrdef" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (i, c) in t.columns.iter().enumerate() {
                    if let Some(text) = c.catalog_default() {
                        rows.push(vec![
                            ("oid", oid(table_oid(t.id))),
                            ("adrelid", oid(table_oid(t.id))),
                            ("adnum", (i as i64 + 1).into()),
                            ("adbin", text.into()),
                        ]);
                    }
                }
            }
            rows
        }
        "pg_index" => tables
            .iter()
            .filter(|t| !t.has_row_ids())
            .map(|t| {
                let key = key_attnums(t);
                vec![
                    ("indexrelid", oid(index_oid(t.id))),
                    ("indrelid", oid(table_oid(t.id))),
                    ("indnatts", (key.len() as i64).into()),
                    ("indnkeyatts", (key.len() as i64).into()),
                    ("indisunique", true.into()),
                    ("indisprimary", true.into()),
                    ("indimmediate", true.into()),
                    ("indisvalid", true.into()),
                    ("indisready", true.into()),
                    ("indislive", true.into()),
                    ("indclass", Cell::I16List(vec![0; key.len()])),
                    ("indoption", vec!["0"; key.len()].join(" ").into()),
                    ("indkey", Cell::I16List(key)),
                ]
            })
            .chain(tables.iter().flat_map(|t| {
                t.visible_indexes().map(|index| {
                    let key = index_attnums(t, index);
                    vec![
                        ("indexrelid", oid(table_oid(index.id))),
                        ("indrelid", oid(table_oid(t.id))),
                        ("indnatts", (key.len() as i64).into()),
                        ("indnkeyatts", (key.len() as i64).into()),
                        ("indisunique", index.unique.into()),
                        ("indnullsnotdistinct", index.nulls_not_distinct.into()),
                        ("indisprimary", false.into()),
                        ("indimmediate", true.into()),
                        ("indisvalid", true.into()),
                        ("indisready", true.into()),
                        ("indislive", true.into()),
                        ("indclass", Cell::I16List(vec![0; key.len()])),
                        ("indoption", vec!["0"; key.len()].join(" ").into()),
                        ("indkey", Cell::I16List(key)),
                    ]
                })
            }))
            .collect(),
        "pg_constraint" => tables
            .iter()
            .flat_map(|t| {
                t.checks.iter().enumerate().map(|(n, check)| {
                    let columns = check
                        .columns
                        .iter()
                        .filter_map(|id| t.columns.iter().position(|c| c.id == *id))
                        .map(|i| i as i16 + 1)
                        .collect();
                    vec![
                        ("oid", oid(check_oid(t.id, n))),
                        ("conname", check.name.clone().into()),
                        ("connamespace", oid(PUBLIC_OID)),
                        ("contype", "c".into()),
                        ("convalidated", check.validated.into()),
                        ("conrelid", oid(table_oid(t.id))),
                        ("conindid", oid(0)),
                        ("confupdtype", " ".into()),
                        ("confdeltype", " ".into()),
                        ("confmatchtype", " ".into()),
                        ("conislocal", true.into()),
                        ("connoinherit", false.into()),
                        ("conkey", Cell::I16List(columns)),
                    ]
                })
            })
            .chain(tables.iter().filter(|t| !t.has_row_ids()).map(|t| {
                let key = key_attnums(t);
                vec![
                    ("oid", oid(index_oid(t.id))),
                    ("conname", t.primary_key_name().into()),
                    ("connamespace", oid(PUBLIC_OID)),
                    ("contype", "p".into()),
                    ("convalidated", true.into()),
                    ("conrelid", oid(table_oid(t.id))),
                    ("conindid", oid(index_oid(t.id))),
                    ("confupdtype", " ".into()),
                    ("confdeltype", " ".into()),
                    ("confmatchtype", " ".into()),
                    ("conislocal", true.into()),
                    ("connoinherit", true.into()),
                    ("conkey", Cell::I16List(key)),
                ]
            }))
            .chain(tables.iter().flat_map(|t| {
                t.indexes.iter().filter(|i| i.constraint).map(|index| {
                    vec![
                        ("oid", oid(index_oid(index.id))),
                        ("conname", index.name.clone().into()),
                        ("connamespace", oid(PUBLIC_OID)),
                        ("contype", "u".into()),
                        ("convalidated", true.into()),
                        ("conrelid", oid(table_oid(t.id))),
                        ("conindid", oid(table_oid(index.id))),
                        ("confupdtype", " ".into()),
                        ("confdeltype", " ".into()),
                        ("confmatchtype", " ".into()),
                        ("conislocal", true.into()),
                        ("connoinherit", true.into()),
                        ("conkey", Cell::I16List(index_attnums(t, index))),
                    ]
                })
            }))
            .chain(tables.iter().flat_map(|t| {
                t.foreign_keys.iter().enumerate().filter_map(|(n, fk)| {
                    let parent = catalog.table_by_id(fk.parent)?;
                    let attnums = |table: &Table, ids: &[u32]| {
                        table
                            .positions(ids)
                            .into_iter()
                            .map(|p| p as i16 + 1)
                            .collect()
                    };
                    let index = match fk.parent_index {
                        None => index_oid(parent.id),
                        Some(id) => table_oid(id),
                    };
                    Some(vec![
                        ("oid", oid(foreign_key_oid(t.id, n))),
                        ("conname", fk.name.clone().into()),
                        ("connamespace", oid(PUBLIC_OID)),
                        ("contype", "f".into()),
                        ("condeferrable", fk.deferrable.into()),
                        ("condeferred", fk.initially_deferred.into()),
                        ("convalidated", fk.validated.into()),
                        ("conrelid", oid(table_oid(t.id))),
                        ("conindid", oid(index)),
                        ("confrelid", oid(table_oid(parent.id))),
                        ("conparentid", oid(0)),
                        ("confupdtype", fk.on_update.code().into()),
                        ("confdeltype", fk.on_delete.code().into()),
                        ("confmatchtype", "s".into()),
                        ("conislocal", true.into()),
                        ("connoinherit", true.into()),
                        ("conkey", Cell::I16List(attnums(t, &fk.columns))),
                        (
                            "confkey",
                            Cell::I16List(attnums(&parent, &fk.parent_columns)),
                        ),
                    ])
                })
            }))
            .collect(),
        "pg_am" => vec![
            vec![
                ("oid", oid(HEAP_AM)),
                ("amname", "heap".into()),
                ("amhandler", "heap_tableam_handler".into()),
                ("amtype", "t".into()),
            ],
            vec![
                ("oid", oid(BTREE_AM)),
                ("amname", "btree".into()),
                ("amhandler", "bthandler".into()),
                ("amtype", "i".into()),
            ],
        ],
        "pg_database" => vec![vec![
            ("oid", oid(DATABASE_OID)),
            ("datname", "omen".into()),
            ("datdba", oid(OWNER_OID)),
            ("encoding", 6.into()),
            ("datlocprovider", "c".into()),
            ("datallowconn", true.into()),
            ("datconnlimit", (-1).into()),
            ("dattablespace", oid(1663)),
            ("datcollate", "C".into()),
            ("datctype", "C".into()),
        ]],
        "pg_roles" => roles
            .iter()
            .map(|(o, r)| {
                vec![
                    ("rolname", r.name.clone().into()),
                    ("rolsuper", r.superuser.into()),
                    ("rolinherit", true.into()),
                    ("rolcreaterole", r.superuser.into()),
                    ("rolcreatedb", r.superuser.into()),
                    ("rolcanlogin", r.login.into()),
                    ("rolconnlimit", (-1).into()),
                    ("rolpassword", "********".into()),
                    ("rolbypassrls", r.superuser.into()),
                    ("oid", oid(*o)),
                ]
            })
            .collect(),
        "pg_user" => roles
            .iter()
            .filter(|(_, r)| r.login)
            .map(|(o, r)| {
                vec![
                    ("usename", r.name.clone().into()),
                    ("usesysid", oid(*o)),
                    ("usecreatedb", r.superuser.into()),
                    ("usesuper", r.superuser.into()),
                    ("usebypassrls", r.superuser.into()),
                    ("passwd", "********".into()),
                ]
            })
            .collect(),
        "pg_collation" => [(100, "default", "d"), (950, "C", "c"), (951, "POSIX", "c")]
            .into_iter()
            .map(|(o, n, provider)| {
                vec![
                    ("oid", oid(o)),
                    ("collname", n.into()),
                    ("collnamespace", oid(PG_CATALOG_OID)),
                    ("collowner", oid(OWNER_OID)),
                    ("collprovider", provider.into()),
                    ("collisdeterministic", true.into()),
                    ("collencoding", (-1).into()),
                ]
            })
            .collect(),
        "pg_tablespace" => [(1663, "pg_default"), (1664, "pg_global")]
            .into_iter()
            .map(|(o, n)| {
                vec![
                    ("oid", oid(o)),
                    ("spcname", n.into()),
                    ("spcowner", oid(OWNER_OID)),
                ]
            })
            .collect(),
        "pg_tables" => tables
            .iter()
            .map(|t| {
                vec![
                    ("schemaname", "public".into()),
                    ("tablename", t.name.clone().into()),
                    ("tableowner", owner.clone().into()),
                    (
                        "hasindexes",
                        (!t.has_row_ids() || t.visible_indexes().next().is_some()).into(),
                    ),
                ]
            })
            .collect(),
        "pg_indexes" => tables
            .iter()
            .flat_map(|t| {
                let primary =
                    (!t.has_row_ids()).then(|| (t.primary_key_name(), index_definition(t)));
                let secondary = t
                    .visible_indexes()
                    .map(|i| (i.name.clone(), secondary_index_definition(t, i)));
                primary
                    .into_iter()
                    .chain(secondary)
                    .map(|(name, definition)| {
                        vec![
                            ("schemaname", "public".into()),
                            ("tablename", t.name.clone().into()),
                            ("indexname", name.into()),
                            ("indexdef", definition.into()),
                        ]
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => Vec::new(),
    }
}

const IS_TABLES: Columns = &[
    ("table_catalog", Text),
    ("table_schema", Text),
    ("table_name", Text),
    ("table_type", Text),
    ("self_referencing_column_name", Text),
    ("reference_generation", Text),
    ("user_defined_type_catalog", Text),
    ("user_defined_type_schema", Text),
    ("user_defined_type_name", Text),
    ("is_insertable_into", Text),
    ("is_typed", Text),
    ("commit_action", Text),
];
const IS_COLUMNS: Columns = &[
    ("table_catalog", Text),
    ("table_schema", Text),
    ("table_name", Text),
    ("column_name", Text),
    ("ordinal_position", I32),
    ("column_default", Text),
    ("is_nullable", Text),
    ("data_type", Text),
    ("character_maximum_length", I32),
    ("character_octet_length", I32),
    ("numeric_precision", I32),
    ("numeric_precision_radix", I32),
    ("numeric_scale", I32),
    ("datetime_precision", I32),
    ("interval_type", Text),
    ("udt_catalog", Text),
    ("udt_schema", Text),
    ("udt_name", Text),
    ("is_identity", Text),
    ("identity_generation", Text),
    ("is_generated", Text),
    ("is_updatable", Text),
];
const IS_SCHEMATA: Columns = &[
    ("catalog_name", Text),
    ("schema_name", Text),
    ("schema_owner", Text),
];
const IS_TABLE_CONSTRAINTS: Columns = &[
    ("constraint_catalog", Text),
    ("constraint_schema", Text),
    ("constraint_name", Text),
    ("table_catalog", Text),
    ("table_schema", Text),
    ("table_name", Text),
    ("constraint_type", Text),
    ("is_deferrable", Text),
    ("initially_deferred", Text),
    ("enforced", Text),
];
const IS_KEY_COLUMN_USAGE: Columns = &[
    ("constraint_catalog", Text),
    ("constraint_schema", Text),
    ("constraint_name", Text),
    ("table_catalog", Text),
    ("table_schema", Text),
    ("table_name", Text),
    ("column_name", Text),
    ("ordinal_position", I32),
    ("position_in_unique_constraint", I32),
];
const IS_REFERENTIAL_CONSTRAINTS: Columns = &[
    ("constraint_catalog", Text),
    ("constraint_schema", Text),
    ("constraint_name", Text),
    ("unique_constraint_catalog", Text),
    ("unique_constraint_schema", Text),
    ("unique_constraint_name", Text),
    ("match_option", Text),
    ("update_rule", Text),
    ("delete_rule", Text),
];
const IS_VIEWS: Columns = &[
    ("table_catalog", Text),
    ("table_schema", Text),
    ("table_name", Text),
    ("view_definition", Text),
];

/// The relations of `information_schema`.
const INFORMATION_SCHEMA: &[(&str, Columns)] = &[
    ("columns", IS_COLUMNS),
    ("key_column_usage", IS_KEY_COLUMN_USAGE),
    ("referential_constraints", IS_REFERENTIAL_CONSTRAINTS),
    ("schemata", IS_SCHEMATA),
    ("table_constraints", IS_TABLE_CONSTRAINTS),
    ("tables", IS_TABLES),
    ("views", IS_VIEWS),
];

fn information_rows(name: &str, catalog: &Catalog, user: &str) -> Vec<Row> {
    let tables = catalog.tables();
    let named = |t: &Table| -> Row {
        vec![
            ("table_catalog", "omen".into()),
            ("table_schema", "public".into()),
            ("table_name", t.name.clone().into()),
        ]
    };
    match name {
        "tables" => tables
            .iter()
            .map(|t| {
                let mut row = named(t);
                row.push(("table_type", "BASE TABLE".into()));
                row.push(("is_insertable_into", "YES".into()));
                row.push(("is_typed", "NO".into()));
                row
            })
            .collect(),
        "columns" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (i, c) in t.columns.iter().enumerate() {
                    let (type_oid, _) = type_of(c.data_type);
                    let udt = TYPES
                        .iter()
                        .find(|ty| ty.oid == type_oid)
                        .map_or("", |ty| ty.name);
                    let mut row = named(t);
                    let data_type = format_type(type_oid, -1).unwrap_or_default();
                    row.extend([
                        ("column_name", c.name.clone().into()),
                        ("ordinal_position", (i as i64 + 1).into()),
                        ("is_nullable", if c.nullable { "YES" } else { "NO" }.into()),
                        ("data_type", data_type.into()),
                        ("udt_catalog", "omen".into()),
                        ("udt_schema", "pg_catalog".into()),
                        ("udt_name", udt.into()),
                        (
                            "is_identity",
                            if c.identity.is_some() { "YES" } else { "NO" }.into(),
                        ),
                        ("is_generated", "NEVER".into()),
                        ("is_updatable", "YES".into()),
                    ]);
                    if let Some(text) = c.catalog_default() {
                        row.push(("column_default", text.into()));
                    }
                    if let Some(identity) = c.identity {
                        let generation = match identity {
                            crate::engine::catalog::Identity::Always => "ALWAYS",
                            crate::engine::catalog::Identity::ByDefault => "BY DEFAULT",
                        };
                        row.push(("identity_generation", generation.into()));
                    }
                    match c.data_type {
                        DataType::Varchar(n) | DataType::Char(n) => {
                            row.push(("character_maximum_length", (n as i64).into()));
                        }
                        DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                            let bits = match c.data_type {
                                DataType::Int16 => 16,
                                DataType::Int32 => 32,
                                _ => 64,
                            };
                            row.push(("numeric_precision", bits.into()));
                            row.push(("numeric_precision_radix", 2.into()));
                            row.push(("numeric_scale", 0.into()));
                        }
                        DataType::Decimal { precision, scale } => {
                            row.push(("numeric_precision", (precision as i64).into()));
                            row.push(("numeric_precision_radix", 10.into()));
                            row.push(("numeric_scale", (scale as i64).into()));
                        }
                        _ => {}
                    }
                    rows.push(row);
                }
            }
            rows
        }
        "schemata" => ["pg_catalog", "public", "information_schema"]
            .into_iter()
            .map(|s| {
                vec![
                    ("catalog_name", "omen".into()),
                    ("schema_name", s.into()),
                    ("schema_owner", user.into()),
                ]
            })
            .collect(),
        "table_constraints" => tables
            .iter()
            .flat_map(|t| {
                key_constraints(catalog, t)
                    .into_iter()
                    .map(|key| {
                        let yes_no = |b: bool| if b { "YES" } else { "NO" };
                        let mut row = named(t);
                        row.extend([
                            ("constraint_catalog", "omen".into()),
                            ("constraint_schema", "public".into()),
                            ("constraint_name", key.name.into()),
                            ("constraint_type", key.kind.into()),
                            ("is_deferrable", yes_no(key.deferrable).into()),
                            ("initially_deferred", yes_no(key.deferred).into()),
                            ("enforced", "YES".into()),
                        ]);
                        row
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        "referential_constraints" => tables
            .iter()
            .flat_map(|t| {
                t.foreign_keys.iter().filter_map(|fk| {
                    let parent = catalog.table_by_id(fk.parent)?;
                    let unique = match fk.parent_index {
                        None => parent.primary_key_name(),
                        Some(id) => parent.indexes.iter().find(|i| i.id == id)?.name.clone(),
                    };
                    Some(vec![
                        ("constraint_catalog", "omen".into()),
                        ("constraint_schema", "public".into()),
                        ("constraint_name", fk.name.clone().into()),
                        ("unique_constraint_catalog", "omen".into()),
                        ("unique_constraint_schema", "public".into()),
                        ("unique_constraint_name", unique.into()),
                        ("match_option", "NONE".into()),
                        ("update_rule", fk.on_update.sql().into()),
                        ("delete_rule", fk.on_delete.sql().into()),
                    ])
                })
            })
            .collect(),
        "key_column_usage" => {
            let mut rows = Vec::new();
            for t in tables.iter() {
                for key in key_constraints(catalog, t) {
                    for (n, i) in key.columns.into_iter().enumerate() {
                        let mut row = named(t);
                        row.extend([
                            ("constraint_catalog", "omen".into()),
                            ("constraint_schema", "public".into()),
                            ("constraint_name", key.name.clone().into()),
                            ("column_name", t.columns[i].name.clone().into()),
                            ("ordinal_position", (n as i64 + 1).into()),
                        ]);
                        if let Some(position) = key.referenced.get(n) {
                            row.push(("position_in_unique_constraint", (*position).into()));
                        }
                        rows.push(row);
                    }
                }
            }
            rows
        }
        _ => Vec::new(),
    }
}

/// A key constraint as information_schema shows it.
struct KeyConstraint {
    name: String,
    /// PRIMARY KEY, UNIQUE or FOREIGN KEY.
    kind: &'static str,
    /// Column positions.
    columns: Vec<usize>,
    deferrable: bool,
    deferred: bool,
    /// For a foreign key, each column's referenced column's position (from
    /// 1) in the parent's key.
    referenced: Vec<i64>,
}

/// A table's primary key, UNIQUE and FOREIGN KEY constraints.
fn key_constraints(catalog: &Catalog, t: &Table) -> Vec<KeyConstraint> {
    let key = |name: String, kind, columns| KeyConstraint {
        name,
        kind,
        columns,
        deferrable: false,
        deferred: false,
        referenced: Vec::new(),
    };
    let primary = (!t.has_row_ids())
        .then(|| key(t.primary_key_name(), "PRIMARY KEY", t.primary_key_indices()));
    let uniques = t
        .indexes
        .iter()
        .filter(|i| i.constraint)
        .map(|i| key(i.name.clone(), "UNIQUE", t.index_columns(i)));
    let foreign = t.foreign_keys.iter().map(|fk| {
        let parent_key = catalog
            .table_by_id(fk.parent)
            .map(|parent| match fk.parent_index {
                None => parent.primary_key.clone(),
                Some(id) => parent
                    .indexes
                    .iter()
                    .find(|i| i.id == id)
                    .map(|i| i.columns.clone())
                    .unwrap_or_default(),
            });
        let referenced = fk
            .parent_columns
            .iter()
            .map(|c| {
                parent_key
                    .as_ref()
                    .and_then(|k| k.iter().position(|k| k == c))
                    .map_or(0, |p| p as i64 + 1)
            })
            .collect();
        KeyConstraint {
            deferrable: fk.deferrable,
            deferred: fk.initially_deferred,
            referenced,
            ..key(fk.name.clone(), "FOREIGN KEY", t.positions(&fk.columns))
        }
    });
    primary.into_iter().chain(uniques).chain(foreign).collect()
}

/// The rows the sequences add to pg_class and pg_sequence.
fn sequence_rows(name: &str, sequences: &crate::engine::sequences::Sequences) -> Vec<Row> {
    let all = sequences.all();
    match name {
        "pg_class" => all
            .iter()
            .map(|s| {
                vec![
                    ("oid", oid(table_oid(s.def.id))),
                    ("relname", s.def.name.clone().into()),
                    ("relnamespace", oid(PUBLIC_OID)),
                    ("relowner", oid(OWNER_OID)),
                    ("relfilenode", oid(table_oid(s.def.id))),
                    ("relpersistence", "p".into()),
                    ("relkind", "S".into()),
                    ("relnatts", 3.into()),
                    ("relispopulated", true.into()),
                    ("relreplident", "n".into()),
                    ("reltuples", 1.into()),
                ]
            })
            .collect(),
        "pg_sequence" => all
            .iter()
            .map(|s| {
                let (type_oid, _) = type_of(s.def.data_type);
                vec![
                    ("seqrelid", oid(table_oid(s.def.id))),
                    ("seqtypid", oid(type_oid)),
                    ("seqstart", s.def.start.into()),
                    ("seqincrement", s.def.increment.into()),
                    ("seqmax", s.def.max.into()),
                    ("seqmin", s.def.min.into()),
                    ("seqcache", s.def.cache.into()),
                    ("seqcycle", s.def.cycle.into()),
                ]
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The rows of pg_locks: every lock held or awaited.
fn lock_rows(live: &Live) -> Vec<Row> {
    live.locks
        .rows()
        .into_iter()
        .map(|lock| {
            let pid = live.activity.pid(lock.session).unwrap_or(0);
            let mut row = vec![
                ("database", oid(DATABASE_OID)),
                ("virtualtransaction", format!("{}/1", lock.session).into()),
                ("pid", i64::from(pid).into()),
                ("mode", lock.mode.name(&lock.target).into()),
                ("granted", lock.granted.into()),
                ("fastpath", false.into()),
            ];
            if let Some(since) = lock.waitstart {
                let waited = since.elapsed();
                row.push((
                    "waitstart",
                    Cell::Time(std::time::SystemTime::now() - waited),
                ));
            }
            match &lock.target {
                Target::Advisory(key) => {
                    // As PostgreSQL: a bigint key in classid (high) and objid
                    // (low) with objsubid 1, a pair of integers with 2.
                    let pair = key >> 64 != 0;
                    row.extend([
                        ("locktype", "advisory".into()),
                        ("classid", oid((*key >> 32) as u32)),
                        ("objid", oid(*key as u32)),
                        ("objsubid", (if pair { 2 } else { 1 }).into()),
                    ]);
                }
                Target::Row(key) => {
                    let table = key
                        .get(..4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    row.extend([
                        ("locktype", "tuple".into()),
                        ("relation", oid(table_oid(table))),
                        ("page", 0.into()),
                        ("tuple", 0.into()),
                    ]);
                }
                Target::Table(table) => {
                    row.extend([
                        ("locktype", "relation".into()),
                        ("relation", oid(table_oid(*table))),
                    ]);
                }
            }
            row
        })
        .collect()
}

/// The rows of pg_stat_activity: every session.
/// pg_class.reltuples of tables: their row counts, as the planner
/// estimates them (-1, PostgreSQL's "never counted", where nothing tells).
fn set_reltuples(rows: &mut [Row], catalog: &Catalog, stats: &super::Stats) {
    let counts: HashMap<u32, f64> = catalog
        .tables()
        .iter()
        .filter_map(|t| Some((table_oid(t.id), stats.table_rows(t)? as f64)))
        .collect();
    for row in rows {
        let id = row.iter().find_map(|(c, v)| match (*c, v) {
            ("oid", Cell::Oid(o)) => Some(*o),
            _ => None,
        });
        if let Some(&n) = id.and_then(|o| counts.get(&o)) {
            for cell in row.iter_mut().filter(|(c, _)| *c == "reltuples") {
                cell.1 = Cell::Float(n);
            }
        }
    }
}

/// pg_stats: what ANALYZE found in each column of each table. The minimum
/// and maximum are the histogram's bounds (one bucket).
fn stats_rows(catalog: &Catalog, stats: &super::Stats) -> Vec<Row> {
    let mut rows = Vec::new();
    for table in catalog.tables() {
        let Some(analyzed) = stats.analyzed(table.id) else {
            continue;
        };
        let total = analyzed.rows().max(1) as f64;
        for column in &table.columns {
            let Some(facts) = analyzed.column(&column.name) else {
                continue;
            };
            let mut row = vec![
                ("schemaname", "public".into()),
                ("tablename", table.name.clone().into()),
                ("attname", column.name.clone().into()),
                ("inherited", false.into()),
                ("null_frac", Cell::Float(facts.nulls as f64 / total)),
                ("avg_width", 0.into()),
            ];
            if let Some(d) = facts.distinct {
                row.push(("n_distinct", Cell::Float(d as f64)));
            }
            if let (Some(min), Some(max)) = (&facts.min, &facts.max) {
                let bounds = format!("{{{},{}}}", array_element(min), array_element(max));
                row.push(("histogram_bounds", bounds.into()));
            }
            rows.push(row);
        }
    }
    rows
}

/// `text` as an element of an array literal, quoted where PostgreSQL would.
fn array_element(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.eq_ignore_ascii_case("null")
        && !text
            .chars()
            .any(|c| matches!(c, '"' | '\\' | '{' | '}' | ',') || c.is_whitespace());
    if plain {
        return text.to_string();
    }
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn activity_rows(live: &Live) -> Vec<Row> {
    live.activity
        .all()
        .into_iter()
        .map(|(id, b)| {
            let waiting = live.locks.waiting_for(id);
            let mut row = vec![
                ("datid", oid(DATABASE_OID)),
                ("datname", "omen".into()),
                ("pid", i64::from(b.pid).into()),
                ("usesysid", oid(OWNER_OID)),
                ("usename", b.user.into()),
                ("application_name", b.application_name.into()),
                ("client_port", (-1).into()),
                ("backend_start", Cell::Time(b.backend_start)),
                ("state_change", Cell::Time(b.state_change)),
                ("state", b.state.into()),
                ("query", b.query.into()),
                ("backend_type", "client backend".into()),
            ];
            if let Some(t) = b.xact_start {
                row.push(("xact_start", Cell::Time(t)));
            }
            if let Some(t) = b.query_start {
                row.push(("query_start", Cell::Time(t)));
            }
            if let Some(target) = waiting {
                let event = match target {
                    Target::Advisory(_) => "advisory",
                    Target::Row(_) => "tuple",
                    Target::Table(_) => "relation",
                };
                row.push(("wait_event_type", "Lock".into()));
                row.push(("wait_event", event.into()));
            }
            row
        })
        .collect()
}

/// A record batch of `columns` holding `rows`. Values a row leaves out are
/// NULL with `absent_null`, else false or zero (text and lists: NULL).
fn batch(
    columns: Columns,
    rows: &[Row],
    absent_null: bool,
) -> Result<RecordBatch, DataFusionError> {
    fn cell<'a>(row: &'a Row, name: &str) -> Option<&'a Cell> {
        row.iter().find(|(n, _)| *n == name).map(|(_, c)| c)
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for &(name, kind) in columns {
        let cells = rows.iter().map(|r| cell(r, name));
        let int = |c: Option<&Cell>| match c {
            Some(Cell::Int(n)) => Some(*n),
            Some(Cell::Oid(n)) => Some(*n as i64),
            _ if absent_null => None,
            _ => Some(0),
        };
        let (data_type, array): (ArrowType, ArrayRef) = match kind {
            Oid => (
                ArrowType::UInt32,
                Arc::new(UInt32Array::from_iter(
                    cells.map(|c| int(c).map(|n| n as u32)),
                )),
            ),
            I16 => (
                ArrowType::Int16,
                Arc::new(Int16Array::from_iter(
                    cells.map(|c| int(c).map(|n| n as i16)),
                )),
            ),
            I32 => (
                ArrowType::Int32,
                Arc::new(Int32Array::from_iter(
                    cells.map(|c| int(c).map(|n| n as i32)),
                )),
            ),
            I64 => (
                ArrowType::Int64,
                Arc::new(Int64Array::from_iter(cells.map(int))),
            ),
            F32 => (
                ArrowType::Float32,
                Arc::new(Float32Array::from_iter(cells.map(|c| match c {
                    Some(Cell::Float(f)) => Some(*f as f32),
                    c => int(c).map(|n| n as f32),
                }))),
            ),
            Bool => (
                ArrowType::Boolean,
                Arc::new(BooleanArray::from(
                    cells
                        .map(|c| match c {
                            Some(Cell::Bool(b)) => Some(*b),
                            _ if absent_null => None,
                            _ => Some(false),
                        })
                        .collect::<Vec<_>>(),
                )),
            ),
            Text => (
                ArrowType::Utf8,
                Arc::new(StringArray::from(
                    cells
                        .map(|c| match c {
                            Some(Cell::Text(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                )),
            ),
            TextList => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for _ in cells {
                    b.append_null();
                }
                let array = b.finish();
                (array.data_type().clone(), Arc::new(array))
            }
            OidList => {
                let mut b = ListBuilder::new(datafusion::arrow::array::UInt32Builder::new());
                for _ in cells {
                    b.append_null();
                }
                let array = b.finish();
                (array.data_type().clone(), Arc::new(array))
            }
            I16List => {
                let mut b = ListBuilder::new(Int16Builder::new());
                for c in cells {
                    match c {
                        Some(Cell::I16List(values)) => {
                            b.values().append_slice(values);
                            b.append(true);
                        }
                        _ => b.append_null(),
                    }
                }
                let array = b.finish();
                (array.data_type().clone(), Arc::new(array))
            }
            Timestamptz => {
                let micros = cells.map(|c| match c {
                    Some(Cell::Time(t)) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
                        Ok(d) => d.as_micros() as i64,
                        Err(e) => -(e.duration().as_micros() as i64),
                    }),
                    _ => None,
                });
                let array = TimestampMicrosecondArray::from_iter(micros).with_timezone("UTC");
                (array.data_type().clone(), Arc::new(array))
            }
        };
        fields.push(Field::new(name, data_type, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// Which system schema a [`SystemSchema`] serves.
#[derive(Clone, Copy, Debug)]
pub enum System {
    PgCatalog,
    InformationSchema,
}

/// `pg_catalog` or `information_schema`, built from the catalog as a
/// statement reads it.
pub struct SystemSchema {
    system: System,
    catalog: Arc<Catalog>,
    user: String,
    live: Option<Live>,
}

/// What the views of running sessions (pg_locks, pg_stat_activity) read,
/// and the sequences (pg_class, pg_sequence).
#[derive(Clone)]
pub struct Live {
    pub locks: Arc<Locks>,
    pub activity: Arc<Activity>,
    pub sequences: Option<Arc<crate::engine::sequences::Sequences>>,
    pub stats: Arc<super::Stats>,
}

impl SystemSchema {
    pub fn new(
        system: System,
        catalog: Arc<Catalog>,
        user: &str,
        live: Option<Live>,
    ) -> SystemSchema {
        SystemSchema {
            system,
            catalog,
            user: user.to_string(),
            live,
        }
    }

    fn relations(&self) -> &'static [(&'static str, Columns)] {
        match self.system {
            System::PgCatalog => PG_CATALOG,
            System::InformationSchema => INFORMATION_SCHEMA,
        }
    }
}

impl fmt::Debug for SystemSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.system)
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        self.relations()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some((name, columns)) = self.relations().iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        let rows = match (self.system, &self.live) {
            (System::PgCatalog, Some(live)) if *name == "pg_locks" => lock_rows(live),
            (System::PgCatalog, Some(live)) if *name == "pg_stat_activity" => activity_rows(live),
            (System::PgCatalog, Some(live)) if *name == "pg_stats" => {
                stats_rows(&self.catalog, &live.stats)
            }
            (System::PgCatalog, live) => {
                let mut rows = pg_rows(name, &self.catalog, &self.user);
                if let Some(sequences) = live.as_ref().and_then(|l| l.sequences.as_ref()) {
                    rows.extend(sequence_rows(name, sequences));
                }
                if let (Some(live), "pg_class") = (live, *name) {
                    set_reltuples(&mut rows, &self.catalog, &live.stats);
                }
                rows
            }
            (System::InformationSchema, _) => information_rows(name, &self.catalog, &self.user),
        };
        let batch = batch(
            columns,
            &rows,
            matches!(self.system, System::InformationSchema),
        )?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.relations().iter().any(|(n, _)| *n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        assert_eq!(format_type(23, -1).as_deref(), Some("integer"));
        assert_eq!(
            format_type(1043, 14).as_deref(),
            Some("character varying(10)")
        );
        assert_eq!(
            format_type(1700, (12 << 16 | 2) + 4).as_deref(),
            Some("numeric(12,2)")
        );
        assert_eq!(format_type(1007, -1).as_deref(), Some("integer[]"));
        assert_eq!(type_named("pg_catalog.int4"), Some(23));
        assert_eq!(type_named("character varying"), Some(1043));
        assert_eq!(type_named("int4[]"), Some(1007));
        assert_eq!(type_named("nonsense"), None);
        let (oid, typmod) = type_of(DataType::Decimal {
            precision: 12,
            scale: 2,
        });
        assert_eq!(format_type(oid, typmod).as_deref(), Some("numeric(12,2)"));
    }

    #[test]
    fn every_relation_builds() {
        let catalog = Catalog::default();
        for (name, columns) in PG_CATALOG {
            batch(columns, &pg_rows(name, &catalog, "omen"), false).unwrap();
        }
        for (name, columns) in INFORMATION_SCHEMA {
            batch(columns, &information_rows(name, &catalog, "omen"), true).unwrap();
        }
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(quote_ident("abc_1"), "abc_1");
        assert_eq!(quote_ident("Abc"), "\"Abc\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
