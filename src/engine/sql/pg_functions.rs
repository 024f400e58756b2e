//! PostgreSQL's catalog functions (format_type, pg_get_userbyid,
//! pg_get_indexdef, ...) and the object-identifier casts `::regclass`,
//! `::regtype`, `::regnamespace` and `::regrole` (as `omen_regclass(x)`, ...,
//! see [`compat`](super::compat)): a name gives its oid, an oid its name.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, StringArray, UInt32Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::pg_catalog::{
    self, constraint_definition, format_type, index_definition, quote_ident, relation_of,
    type_name, type_named, visible_roles, INFORMATION_SCHEMA_OID, PG_CATALOG_OID, PUBLIC_OID,
};
use crate::engine::activity::Activity;
use crate::engine::catalog::Catalog;
use crate::engine::error::{Error, SqlState};
use crate::engine::locks::{Locks, Mode, Scope, SessionId, Target, Wait};
use crate::engine::{Backends, Canceller};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// An object-identifier type: its cast function, its to_reg function, the
/// error and noun for an unknown name, and its name-to-oid and oid-to-name.
type RegKind = (
    &'static str,
    &'static str,
    SqlState,
    &'static str,
    (Lookup, Name),
);
type Lookup = Arc<dyn Fn(&str) -> Option<u32> + Send + Sync>;
type Name = Arc<dyn Fn(u32) -> Option<String> + Send + Sync>;

pub(super) type Body = Box<dyn Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync>;

/// A catalog function: its name, how many arguments it takes, what it returns
/// for the argument types, and its body over whole columns.
pub(super) struct Function {
    pub name: &'static str,
    pub signature: Signature,
    pub returns: fn(&[ArrowType]) -> ArrowType,
    pub body: Body,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Function {
    fn eq(&self, other: &Function) -> bool {
        self.name == other.name
    }
}

impl Eq for Function {}

impl Hash for Function {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Function {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[ArrowType]) -> Result<ArrowType> {
        Ok((self.returns)(arg_types))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array((self.body)(&arrays, rows)?))
    }
}

/// Arguments: exactly `n` of any type, or any number (None).
fn function(
    name: &'static str,
    args: Option<usize>,
    returns: fn(&[ArrowType]) -> ArrowType,
    body: impl Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    let signature = match args {
        Some(n) => Signature::any(n, Volatility::Stable),
        None => Signature::variadic_any(Volatility::Stable),
    };
    ScalarUDF::new_from_impl(Function {
        name,
        signature,
        returns,
        body: Box::new(body),
    })
}

fn text(_: &[ArrowType]) -> ArrowType {
    ArrowType::Utf8
}

fn boolean(_: &[ArrowType]) -> ArrowType {
    ArrowType::Boolean
}

/// A name (text) gives an oid; an oid gives a name.
fn oid_or_name(args: &[ArrowType]) -> ArrowType {
    match args.first() {
        Some(ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View | ArrowType::Null)
        | None => ArrowType::UInt32,
        Some(_) => ArrowType::Utf8,
    }
}

fn oid(_: &[ArrowType]) -> ArrowType {
    ArrowType::UInt32
}

fn is_text(array: &ArrayRef) -> bool {
    matches!(
        array.data_type(),
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View | ArrowType::Null
    )
}

/// Argument `i` as oids.
fn oids(args: &[ArrayRef], i: usize) -> Result<Vec<Option<u32>>> {
    let array = cast(&args[i], &ArrowType::Int64)?;
    let array = array
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("oid argument".into()))?;
    Ok(array.iter().map(|v| v.map(|v| v as u32)).collect())
}

/// Argument `i` as text.
fn texts(args: &[ArrayRef], i: usize) -> Result<Vec<Option<String>>> {
    let array = cast(&args[i], &ArrowType::Utf8)?;
    let array = array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("text argument".into()))?;
    Ok(array.iter().map(|v| v.map(str::to_string)).collect())
}

fn text_array(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn constant_bool(value: bool, rows: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; rows]))
}

/// A cast between names and oids: text is looked up with `lookup` (an
/// unknown name is an error with `missing`), oids are named with `name` (an
/// unknown oid shows as its number, as in PostgreSQL).
fn reg_cast(
    args: &[ArrayRef],
    lookup: &dyn Fn(&str) -> Option<u32>,
    name: &dyn Fn(u32) -> Option<String>,
    missing: Option<&dyn Fn(&str) -> Error>,
) -> Result<ArrayRef> {
    if is_text(&args[0]) {
        let mut out = Vec::new();
        for value in texts(args, 0)? {
            out.push(match value {
                None => None,
                Some(text) => match text.trim().parse::<u32>() {
                    Ok(oid) => Some(oid),
                    Err(_) => match (lookup(text.trim()), missing) {
                        (Some(oid), _) => Some(oid),
                        (None, None) => None,
                        (None, Some(missing)) => {
                            return Err(DataFusionError::External(Box::new(missing(&text))))
                        }
                    },
                },
            });
        }
        return Ok(Arc::new(UInt32Array::from(out)));
    }
    Ok(text_array(
        oids(args, 0)?
            .into_iter()
            .map(|o| o.map(|o| name(o).unwrap_or_else(|| o.to_string())))
            .collect(),
    ))
}

/// The oids PostgreSQL gives its system catalogs, for `'pg_catalog.x'::regclass`
/// (clients compare `classoid` of pg_description and pg_depend rows with them).
const SYSTEM_RELATIONS: &[(&str, u32)] = &[
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_database", 1262),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_index", 2610),
    ("pg_namespace", 2615),
    ("pg_proc", 1255),
    ("pg_sequence", 2224),
    ("pg_trigger", 2620),
    ("pg_type", 1247),
];

fn system_relation_oid(name: &str) -> Option<u32> {
    let name = name.strip_prefix("pg_catalog.")?;
    SYSTEM_RELATIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, oid)| *oid)
}

fn unquote(name: &str) -> String {
    let name = name.strip_prefix("public.").unwrap_or(name);
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_lowercase(),
    }
}

/// pg_backend_pid() and pg_cancel_backend(pid): the session's process id
/// (the shell's own) and cancelling another session's statement.
pub fn backend_functions(backends: Option<Arc<dyn Backends>>, user: &str) -> Vec<ScalarUDF> {
    let pid = backends
        .as_ref()
        .map_or(std::process::id() as i32, |b| b.pid());
    let user = user.to_string();
    let backend_pid = ScalarUDF::new_from_impl(Function {
        name: "pg_backend_pid",
        signature: Signature::nullary(Volatility::Stable),
        returns: |_| ArrowType::Int32,
        body: Box::new(move |_, rows| Ok(Arc::new(Int32Array::from(vec![pid; rows])))),
    });
    let cancel = function("pg_cancel_backend", Some(1), boolean, move |args, _| {
        let mut out = Vec::new();
        for pid in oids(args, 0)? {
            out.push(match (pid, &backends) {
                (None, _) => None,
                (Some(_), None) => Some(false),
                (Some(pid), Some(b)) => Some(
                    b.cancel(pid as i32, &user)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?,
                ),
            });
        }
        Ok(Arc::new(BooleanArray::from(out)))
    });
    vec![backend_pid, cancel]
}

/// The catalog functions, reading `catalog`, for a session acting as `user`.
pub fn functions(
    catalog: Arc<Catalog>,
    user: &str,
    sequences: Option<Arc<crate::engine::sequences::Sequences>>,
) -> Vec<ScalarUDF> {
    let user = user.to_string();
    let relation_name = {
        let catalog = catalog.clone();
        let sequences = sequences.clone();
        move |oid: u32| -> Option<String> {
            let (id, index) = relation_of(oid)?;
            if let Some(s) = sequences.as_ref().and_then(|s| s.by_id(id)) {
                return (!index).then(|| quote_ident(&s.def.name));
            }
            if let Some((_, secondary)) = pg_catalog::secondary_index(&catalog, id) {
                return (!index).then(|| quote_ident(&secondary.name));
            }
            let table = catalog.tables().into_iter().find(|t| t.id == id)?;
            Some(if index {
                quote_ident(&table.primary_key_name())
            } else {
                quote_ident(&table.name)
            })
        }
    };
    let table_of = {
        let catalog = catalog.clone();
        move |oid: u32| {
            let (id, _) = relation_of(oid)?;
            catalog.tables().into_iter().find(|t| t.id == id)
        }
    };
    let namespaces = [
        (PG_CATALOG_OID, "pg_catalog"),
        (PUBLIC_OID, "public"),
        (INFORMATION_SCHEMA_OID, "information_schema"),
    ];
    let mut functions = Vec::new();

    let (c, u) = (catalog.clone(), user.clone());
    functions.push(function(
        "pg_get_userbyid",
        Some(1),
        text,
        move |args, _| {
            let roles = visible_roles(&c, &u);
            Ok(text_array(
                oids(args, 0)?
                    .into_iter()
                    .map(|o| {
                        o.map(|o| {
                            roles
                                .iter()
                                .find(|(oid, _)| *oid == o)
                                .map(|(_, r)| r.name.clone())
                                .unwrap_or_else(|| format!("unknown (OID={o})"))
                        })
                    })
                    .collect(),
            ))
        },
    ));
    for name in [
        "pg_table_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_collation_is_visible",
    ] {
        // Every relation, type and collation is in a schema of the search path.
        functions.push(function(name, Some(1), boolean, |_, rows| {
            Ok(constant_bool(true, rows))
        }));
    }
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "pg_has_role",
    ] {
        // Every role that can log in may read and write every table.
        functions.push(function(name, None, boolean, |_, rows| {
            Ok(constant_bool(true, rows))
        }));
    }
    functions.push(function(
        "pg_relation_is_publishable",
        Some(1),
        boolean,
        |_, rows| Ok(constant_bool(false, rows)),
    ));
    functions.push(function("format_type", Some(2), text, |args, _| {
        let typmods = cast(&args[1], &ArrowType::Int32)?;
        let typmods = typmods
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int32Array>()
            .ok_or_else(|| DataFusionError::Internal("typmod argument".into()))?
            .clone();
        Ok(text_array(
            oids(args, 0)?
                .into_iter()
                .enumerate()
                .map(|(i, o)| {
                    let typmod = if typmods.is_null(i) {
                        -1
                    } else {
                        typmods.value(i)
                    };
                    o.map(|o| format_type(o, typmod).unwrap_or_else(|| "???".into()))
                })
                .collect(),
        ))
    }));
    // Expressions are stored as their SQL text, so pg_get_expr shows them as is.
    functions.push(function("pg_get_expr", None, text, |args, _| {
        Ok(text_array(texts(args, 0)?))
    }));
    let (t, c) = (table_of.clone(), catalog.clone());
    functions.push(function("pg_get_indexdef", None, text, move |args, _| {
        // With a column number, only that column of the index.
        let columns = match args.len() {
            1 => vec![None; args[0].len()],
            _ => oids(args, 1)?,
        };
        Ok(text_array(
            oids(args, 0)?
                .into_iter()
                .zip(columns)
                .map(|(o, column)| {
                    let o = o?;
                    let secondary = pg_catalog::relation_of(o)
                        .filter(|(_, primary)| !primary)
                        .and_then(|(id, _)| pg_catalog::secondary_index(&c, id));
                    let (table, positions, definition) = match secondary {
                        Some((table, index)) => {
                            let definition = pg_catalog::secondary_index_definition(&table, &index);
                            (table.clone(), table.index_columns(&index), definition)
                        }
                        None => {
                            let table = t(o)?;
                            (
                                table.clone(),
                                table.primary_key_indices(),
                                index_definition(&table),
                            )
                        }
                    };
                    Some(match column {
                        Some(n) if n > 0 => {
                            let i = *positions.get(n as usize - 1)?;
                            quote_ident(&table.columns[i].name)
                        }
                        _ => definition,
                    })
                })
                .collect(),
        ))
    }));
    let (t, c) = (table_of.clone(), catalog.clone());
    functions.push(function(
        "pg_get_constraintdef",
        None,
        text,
        move |args, _| {
            Ok(text_array(
                oids(args, 0)?
                    .into_iter()
                    .map(|o| {
                        let o = o?;
                        if let Some((table, n)) = pg_catalog::check_of(&c, o) {
                            return Some(pg_catalog::check_definition(&table, n));
                        }
                        if let Some((table, n)) = pg_catalog::foreign_key_of(&c, o) {
                            return Some(pg_catalog::foreign_key_definition(&c, &table, n));
                        }
                        // A UNIQUE constraint's oid is its index's, plus one.
                        let unique = pg_catalog::relation_of(o)
                            .filter(|(_, plus_one)| *plus_one)
                            .and_then(|(id, _)| pg_catalog::secondary_index(&c, id));
                        match unique {
                            Some((table, index)) => {
                                Some(pg_catalog::unique_definition(&table, &index))
                            }
                            None => t(o).map(|table| constraint_definition(&table)),
                        }
                    })
                    .collect(),
            ))
        },
    ));
    functions.push(function("pg_encoding_to_char", Some(1), text, |args, _| {
        Ok(text_array(
            oids(args, 0)?
                .into_iter()
                .map(|o| o.map(|o| if o == 6 { "UTF8" } else { "" }.to_string()))
                .collect(),
        ))
    }));
    for name in [
        "obj_description",
        "col_description",
        "shobj_description",
        "pg_get_statisticsobjdef_columns",
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
        "pg_get_triggerdef",
    ] {
        // omen keeps no comments, extended statistics, SQL functions or
        // triggers (pg_proc and pg_trigger are empty): NULL, as PostgreSQL
        // gives for an unknown oid.
        functions.push(function(name, None, text, |_, rows| {
            Ok(text_array(vec![None; rows]))
        }));
    }
    functions.push(function("json_build_object", None, text, json_build_object));
    functions.push(function("quote_ident", Some(1), text, |args, _| {
        Ok(text_array(
            texts(args, 0)?
                .into_iter()
                .map(|t| t.map(|t| quote_ident(&t)))
                .collect(),
        ))
    }));

    let c = catalog.clone();
    let regclass: (Lookup, Name) = (
        Arc::new(move |name: &str| {
            if let Some(oid) = system_relation_oid(name) {
                return Some(oid);
            }
            let name = unquote(name);
            let key = c
                .tables()
                .into_iter()
                .find(|t| !t.has_row_ids() && t.primary_key_name() == name);
            if let Some(t) = key {
                return Some(pg_catalog::index_oid(t.id));
            }
            if let Some(s) = sequences.as_ref().and_then(|s| s.get(&name)) {
                return Some(pg_catalog::table_oid(s.def.id));
            }
            if let Some(t) = c.index_owner(&name) {
                let index = t.index(&name)?;
                return Some(pg_catalog::table_oid(index.id));
            }
            c.table(&name).ok().map(|t| pg_catalog::table_oid(t.id))
        }),
        Arc::new(relation_name),
    );
    let regtype: (Lookup, Name) = (Arc::new(type_named), Arc::new(type_name));
    let regnamespace: (Lookup, Name) = (
        Arc::new(move |name: &str| {
            let name = unquote(name);
            namespaces.iter().find(|(_, n)| *n == name).map(|(o, _)| *o)
        }),
        Arc::new(move |oid| {
            namespaces
                .iter()
                .find(|(o, _)| *o == oid)
                .map(|(_, n)| n.to_string())
        }),
    );
    let (c, u) = (catalog.clone(), user.clone());
    let (c2, u2) = (catalog, user);
    let regrole: (Lookup, Name) = (
        Arc::new(move |name: &str| {
            let name = unquote(name);
            visible_roles(&c, &u)
                .into_iter()
                .find(|(_, r)| r.name == name)
                .map(|(o, _)| o)
        }),
        Arc::new(move |oid| {
            visible_roles(&c2, &u2)
                .into_iter()
                .find(|(o, _)| *o == oid)
                .map(|(_, r)| r.name.clone())
        }),
    );
    let kinds: [RegKind; 4] = [
        (
            "omen_regclass",
            "to_regclass",
            SqlState::UNDEFINED_TABLE,
            "relation",
            regclass,
        ),
        (
            "omen_regtype",
            "to_regtype",
            SqlState::UNDEFINED_OBJECT,
            "type",
            regtype,
        ),
        (
            "omen_regnamespace",
            "to_regnamespace",
            SqlState::UNDEFINED_SCHEMA,
            "schema",
            regnamespace,
        ),
        (
            "omen_regrole",
            "to_regrole",
            SqlState::UNDEFINED_OBJECT,
            "role",
            regrole,
        ),
    ];
    for (cast_name, to_name, code, what, (lookup, name)) in kinds {
        let missing = move |text: &str| Error::NotFound {
            code,
            message: format!("{what} \"{text}\" does not exist"),
        };
        let l = lookup.clone();
        if cast_name == "omen_regclass" {
            // A relation's partition ancestors, itself first: omen has no
            // partitions, so just itself (psql's \d asks, for foreign keys).
            let l = lookup.clone();
            functions.push(function(
                "pg_partition_ancestors",
                Some(1),
                oid,
                move |args, _| {
                    let text = [cast(&args[0], &ArrowType::Utf8)?];
                    reg_cast(&text, &*l, &|_| None, Some(&missing))
                },
            ));
        }
        functions.push(function(cast_name, Some(1), oid_or_name, move |args, _| {
            reg_cast(args, &*l, &*name, Some(&missing))
        }));
        // to_regclass('x') and the like: NULL for an unknown name.
        functions.push(function(to_name, Some(1), oid, move |args, _| {
            let text = [cast(&args[0], &ArrowType::Utf8)?];
            reg_cast(&text, &*lookup, &|_| None, None)
        }));
    }
    functions
}

/// Takes a backup into the repository named, for `omen_backup(repo)`:
/// the summary as JSON, or the error.
pub type BackupFn = Arc<dyn Fn(&str) -> std::result::Result<String, Error> + Send + Sync>;

/// `omen_backup(repository text) -> text`: a backup of the database into a
/// repository on the server's machine, as `omen backup` takes it; returns
/// its summary as JSON. Volatile, so it runs when the statement runs.
pub fn backup_function(backup: BackupFn) -> ScalarUDF {
    ScalarUDF::new_from_impl(Function {
        name: "omen_backup",
        signature: Signature::exact(vec![ArrowType::Utf8], Volatility::Volatile),
        returns: text,
        body: Box::new(move |args, rows| {
            let paths = cast(&args[0], &ArrowType::Utf8)?;
            let paths = paths
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Internal("omen_backup argument".into()))?;
            let mut out = Vec::with_capacity(rows);
            for path in paths.iter() {
                out.push(match path {
                    Some(path) => {
                        Some(backup(path).map_err(|e| DataFusionError::External(Box::new(e)))?)
                    }
                    None => None,
                });
            }
            Ok(text_array(out))
        }),
    })
}

/// What a session's advisory lock functions work with.
#[derive(Clone)]
pub struct Advisory {
    /// The database's locks.
    pub locks: Arc<Locks>,
    /// The database's sessions, to name them in messages.
    pub activity: Arc<Activity>,
    /// The session that calls them.
    pub session: SessionId,
    /// The session's cancel switch (cancel and statement_timeout end a wait).
    pub canceller: Canceller,
    /// The session's lock_timeout in milliseconds (0: none).
    pub lock_timeout_ms: Arc<AtomicU64>,
    /// The session's deadlock_timeout in milliseconds.
    pub deadlock_timeout_ms: Arc<AtomicU64>,
    /// Set when the session takes a transaction-level lock, which the end
    /// of its transaction then releases.
    pub xact_locks: Arc<AtomicBool>,
}

/// What one advisory lock function does.
#[derive(Clone, Copy)]
enum LockCall {
    Lock {
        mode: Mode,
        scope: Scope,
        block: bool,
    },
    Unlock(Mode),
}

/// pg_advisory_lock and its family, for one session. They are volatile, so
/// they run when the statement runs (never while it is planned), once per row.
pub fn advisory_functions(advisory: &Advisory) -> Vec<ScalarUDF> {
    use LockCall::{Lock, Unlock};
    // Exclusive advisory locks conflict as FOR UPDATE does, shared ones as FOR SHARE.
    use Mode::{Share as Shared, Update as Exclusive};
    use Scope::{Session, Transaction};
    let calls = [
        (
            "pg_advisory_lock",
            Lock {
                mode: Exclusive,
                scope: Session,
                block: true,
            },
        ),
        (
            "pg_advisory_lock_shared",
            Lock {
                mode: Shared,
                scope: Session,
                block: true,
            },
        ),
        (
            "pg_try_advisory_lock",
            Lock {
                mode: Exclusive,
                scope: Session,
                block: false,
            },
        ),
        (
            "pg_try_advisory_lock_shared",
            Lock {
                mode: Shared,
                scope: Session,
                block: false,
            },
        ),
        (
            "pg_advisory_xact_lock",
            Lock {
                mode: Exclusive,
                scope: Transaction,
                block: true,
            },
        ),
        (
            "pg_advisory_xact_lock_shared",
            Lock {
                mode: Shared,
                scope: Transaction,
                block: true,
            },
        ),
        (
            "pg_try_advisory_xact_lock",
            Lock {
                mode: Exclusive,
                scope: Transaction,
                block: false,
            },
        ),
        (
            "pg_try_advisory_xact_lock_shared",
            Lock {
                mode: Shared,
                scope: Transaction,
                block: false,
            },
        ),
        ("pg_advisory_unlock", Unlock(Exclusive)),
        ("pg_advisory_unlock_shared", Unlock(Shared)),
    ];
    let mut functions: Vec<ScalarUDF> = calls
        .into_iter()
        .map(|(name, call)| {
            let advisory = advisory.clone();
            // The locking functions of PostgreSQL return void, the others boolean.
            let returns: fn(&[ArrowType]) -> ArrowType = match call {
                Lock { block: true, .. } => text,
                _ => boolean,
            };
            ScalarUDF::new_from_impl(Function {
                name,
                signature: Signature::variadic_any(Volatility::Volatile),
                returns,
                body: Box::new(move |args, _| advisory.call(name, call, args)),
            })
        })
        .collect();
    let blocking = advisory.clone();
    functions.push(ScalarUDF::new_from_impl(Function {
        name: "pg_blocking_pids",
        signature: Signature::any(1, Volatility::Volatile),
        returns: |_| ArrowType::new_list(ArrowType::Int32, true),
        body: Box::new(move |args, _| blocking.blocking_pids(&args[0])),
    }));
    let advisory = advisory.clone();
    functions.push(ScalarUDF::new_from_impl(Function {
        name: "pg_advisory_unlock_all",
        signature: Signature::nullary(Volatility::Volatile),
        returns: text,
        body: Box::new(move |_, rows| {
            advisory
                .locks
                .release(advisory.session, Some(Scope::Session));
            Ok(text_array(vec![Some(String::new()); rows.max(1)]))
        }),
    }));
    functions
}

impl Advisory {
    /// pg_blocking_pids(pid): the processes session `pid` waits for.
    fn blocking_pids(&self, pids: &ArrayRef) -> Result<ArrayRef> {
        let pids = cast(pids, &ArrowType::Int32)?;
        let pids = pids
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int32Array>()
            .ok_or_else(|| DataFusionError::Internal("pg_blocking_pids argument".into()))?;
        let mut out = datafusion::arrow::array::ListBuilder::new(
            datafusion::arrow::array::Int32Builder::new(),
        );
        for pid in pids.iter() {
            let Some(pid) = pid else {
                out.append_null();
                continue;
            };
            if let Some(session) = self.activity.session_of(pid) {
                for blocker in self.locks.blocking(session) {
                    if let Some(pid) = self.activity.pid(blocker) {
                        out.values().append_value(pid);
                    }
                }
            }
            out.append(true);
        }
        Ok(Arc::new(out.finish()))
    }

    fn call(&self, name: &str, call: LockCall, args: &[ArrayRef]) -> Result<ArrayRef> {
        let keys = lock_keys(name, args)?;
        let timeout = self.lock_timeout_ms.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(key) = key else {
                out.push(None);
                continue;
            };
            let done = match call {
                LockCall::Lock { mode, scope, block } => {
                    let describe = |id| self.activity.describe(id);
                    let wait = Wait {
                        block,
                        lock_timeout: (timeout > 0).then(|| Duration::from_millis(timeout)),
                        canceller: &self.canceller,
                        deadlock_timeout: Duration::from_millis(
                            self.deadlock_timeout_ms.load(Ordering::Relaxed),
                        ),
                        describe: &describe,
                    };
                    let taken = self
                        .locks
                        .lock(self.session, &Target::Advisory(key), mode, scope, &wait)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    if taken && scope == Scope::Transaction {
                        self.xact_locks.store(true, Ordering::Relaxed);
                    }
                    taken
                }
                LockCall::Unlock(mode) => {
                    self.locks
                        .unlock(self.session, &Target::Advisory(key), mode)
                }
            };
            out.push(Some(done));
        }
        Ok(match call {
            LockCall::Lock { block: true, .. } => {
                text_array(out.iter().map(|o| o.map(|_| String::new())).collect())
            }
            _ => Arc::new(BooleanArray::from(out)),
        })
    }
}

/// The lock key of each row: one bigint, or two integers (a separate space).
fn lock_keys(name: &str, args: &[ArrayRef]) -> Result<Vec<Option<i128>>> {
    let ints = |i: usize, t: &ArrowType| -> Result<Vec<Option<i64>>> {
        let array = cast(&args[i], t)?;
        let array = cast(&array, &ArrowType::Int64)?;
        let array = array
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .ok_or_else(|| DataFusionError::Internal("lock key argument".into()))?;
        Ok(array.iter().collect())
    };
    match args.len() {
        1 => Ok(ints(0, &ArrowType::Int64)?
            .into_iter()
            .map(|k| k.map(i128::from))
            .collect()),
        2 => {
            let (high, low) = (ints(0, &ArrowType::Int32)?, ints(1, &ArrowType::Int32)?);
            Ok(high
                .into_iter()
                .zip(low)
                .map(|(h, l)| Some((1i128 << 64) | ((h? as i128) << 32) | (l? as u32 as i128)))
                .collect())
        }
        n => Err(DataFusionError::External(Box::new(Error::NotFound {
            code: SqlState::UNDEFINED_FUNCTION,
            message: format!("function {name} takes one bigint or two integers, not {n} arguments"),
        }))),
    }
}

/// `json_build_object(key, value, ...)`: a JSON object of the pairs, in
/// their order, as PostgreSQL writes it (`{"a" : 1, "b" : null}`): booleans
/// and numbers bare, everything else as a JSON string of its text. 22023
/// for an odd number of arguments or a NULL key, as in PostgreSQL.
fn json_build_object(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    if args.len() % 2 == 1 {
        return Err(DataFusionError::External(Box::new(Error::invalid(
            SqlState::INVALID_PARAMETER_VALUE,
            "argument list must have even number of elements",
        ))));
    }
    let texts = (0..args.len())
        .map(|i| texts(args, i))
        .collect::<Result<Vec<_>>>()?;
    let mut objects = vec![String::from("{"); rows];
    for pair in 0..args.len() / 2 {
        let (k, v) = (2 * pair, 2 * pair + 1);
        let bare = args[v].data_type().is_numeric() || args[v].data_type() == &ArrowType::Boolean;
        for (object, (key, value)) in objects.iter_mut().zip(texts[k].iter().zip(&texts[v])) {
            let Some(key) = key else {
                return Err(DataFusionError::External(Box::new(Error::invalid(
                    SqlState::INVALID_PARAMETER_VALUE,
                    "null value not allowed for object key",
                ))));
            };
            if pair > 0 {
                object.push_str(", ");
            }
            object.push_str(&serde_json::Value::from(key.as_str()).to_string());
            object.push_str(" : ");
            match value {
                None => object.push_str("null"),
                Some(value) if bare => object.push_str(value),
                Some(value) => {
                    object.push_str(&serde_json::Value::from(value.as_str()).to_string())
                }
            }
        }
    }
    let out = objects
        .into_iter()
        .map(|mut object| {
            object.push('}');
            Some(object)
        })
        .collect();
    Ok(text_array(out))
}
