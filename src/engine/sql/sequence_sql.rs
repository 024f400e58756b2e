//! CREATE SEQUENCE, DROP SEQUENCE and the sequence functions (`nextval`,
//! `currval`, `setval`, `lastval`, `pg_get_serial_sequence`); the sequences
//! themselves are [`crate::engine::sequences`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{self, SequenceOptions};
use parking_lot::Mutex;

use super::execute::{table_name, Output};
use super::pg_functions::Function;
use crate::engine::catalog::Catalog;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::sequences::{type_max, type_min, Sequence, SequenceDef, Sequences};
use crate::engine::session::Session;
use crate::engine::types::DataType;

/// What one session's sequence functions work with: the sequences, and the
/// values its own `nextval` calls returned (for `currval` and `lastval`).
#[derive(Clone)]
pub struct SessionSequences {
    pub sequences: Arc<Sequences>,
    pub catalog: Arc<Catalog>,
    pub seen: Arc<Mutex<Seen>>,
}

/// The values a session's `nextval` calls returned.
#[derive(Default)]
pub struct Seen {
    by_id: HashMap<u32, i64>,
    last: Option<i64>,
}

impl Session {
    /// CREATE SEQUENCE.
    pub(super) fn create_sequence_sql(
        &mut self,
        name: &ast::ObjectName,
        if_not_exists: bool,
        data_type: Option<&ast::DataType>,
        options: &[SequenceOptions],
        owned_by: Option<&ast::ObjectName>,
    ) -> Result<Output> {
        if owned_by.is_some() {
            return Err(Error::Unsupported("CREATE SEQUENCE ... OWNED BY".into()));
        }
        let name = table_name(name)?;
        let data_type = match data_type {
            None => DataType::Int64,
            Some(t) => match super::ddl::data_type(t)? {
                t @ (DataType::Int16 | DataType::Int32 | DataType::Int64) => t,
                _ => {
                    return Err(Error::invalid(
                        SqlState::INVALID_PARAMETER_VALUE,
                        "sequence type must be smallint, integer, or bigint",
                    ))
                }
            },
        };
        let mut def = SequenceDef::new(&name, 0, data_type);
        let number = |e: &ast::Expr| -> Result<i64> {
            let text = e.to_string();
            text.parse().map_err(|_| {
                Error::invalid(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("sequence option {text} is not an integer"),
                )
            })
        };
        let (mut min, mut max, mut start) = (None, None, None);
        for option in options {
            match option {
                SequenceOptions::IncrementBy(e, _) => def.increment = number(e)?,
                SequenceOptions::MinValue(e) => min = e.as_ref().map(number).transpose()?,
                SequenceOptions::MaxValue(e) => max = e.as_ref().map(number).transpose()?,
                SequenceOptions::StartWith(e, _) => start = Some(number(e)?),
                SequenceOptions::Cache(e) => def.cache = number(e)?,
                SequenceOptions::Cycle(no) => def.cycle = !no,
            }
        }
        // PostgreSQL's defaults: ascending from 1 to the type's end;
        // descending from -1 down to its start.
        let ascending = def.increment > 0;
        def.min = min.unwrap_or(if ascending { 1 } else { type_min(data_type) });
        def.max = max.unwrap_or(if ascending { type_max(data_type) } else { -1 });
        def.start = start.unwrap_or(if ascending { def.min } else { def.max });
        def.validate()?;
        if self.create_sequences(vec![def], if_not_exists)? {
            Ok(Output::command("CREATE SEQUENCE"))
        } else {
            self.notice(format!("relation \"{name}\" already exists, skipping"));
            Ok(Output::command("CREATE SEQUENCE"))
        }
    }

    /// DROP SEQUENCE.
    pub(super) fn drop_sequence_sql(
        &mut self,
        names: &[ast::ObjectName],
        if_exists: bool,
    ) -> Result<Output> {
        let names = names.iter().map(table_name).collect::<Result<Vec<_>>>()?;
        let missing = self.drop_sequences(&names, if_exists)?;
        for name in missing {
            self.notice(format!("sequence \"{name}\" does not exist, skipping"));
        }
        Ok(Output::command("DROP SEQUENCE"))
    }
}

fn int64(_: &[ArrowType]) -> ArrowType {
    ArrowType::Int64
}

fn utf8(_: &[ArrowType]) -> ArrowType {
    ArrowType::Utf8
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The values of argument `i` as text (a name) or as oids (a regclass).
enum Names {
    Text(Vec<Option<String>>),
    Oids(Vec<Option<i64>>),
}

fn names(args: &[ArrayRef], i: usize) -> DfResult<Names> {
    let array = &args[i];
    if matches!(
        array.data_type(),
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
    ) {
        let array = cast(array, &ArrowType::Utf8)?;
        let array = array
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Internal("sequence name".into()))?;
        return Ok(Names::Text(
            array.iter().map(|v| v.map(str::to_string)).collect(),
        ));
    }
    let array = cast(array, &ArrowType::Int64)?;
    let array = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("sequence oid".into()))?;
    Ok(Names::Oids(array.iter().collect()))
}

fn ints(args: &[ArrayRef], i: usize) -> DfResult<Vec<Option<i64>>> {
    let array = cast(&args[i], &ArrowType::Int64)?;
    let array = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("integer argument".into()))?;
    Ok(array.iter().collect())
}

impl SessionSequences {
    /// The sequence a name (`s`, `public.s`, `"S"`) or oid names; 42P01 otherwise.
    fn resolve_name(&self, name: &str) -> Result<Arc<Sequence>> {
        let unqualified = name.strip_prefix("public.").unwrap_or(name);
        let plain = match unqualified
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
        {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => unqualified.to_lowercase(),
        };
        self.sequences.get(&plain).ok_or_else(|| Error::NotFound {
            code: SqlState::UNDEFINED_TABLE,
            message: format!("relation \"{name}\" does not exist"),
        })
    }

    fn resolve(&self, names: &Names, row: usize) -> Result<Option<Arc<Sequence>>> {
        match names {
            Names::Text(t) => t[row].as_deref().map(|n| self.resolve_name(n)).transpose(),
            Names::Oids(o) => o[row]
                .map(|oid| {
                    super::pg_catalog::relation_of(oid as u32)
                        .and_then(|(id, index)| (!index).then_some(id))
                        .and_then(|id| self.sequences.by_id(id))
                        .ok_or_else(|| Error::NotFound {
                            code: SqlState::UNDEFINED_TABLE,
                            message: format!("could not open relation with OID {oid}"),
                        })
                })
                .transpose(),
        }
    }

    /// `f` of the sequence argument 0 names in each row (NULL for NULL),
    /// once per row also when the name is one constant.
    fn each_row(
        &self,
        args: &[ArrayRef],
        rows: usize,
        mut f: impl FnMut(&Arc<Sequence>) -> Result<i64>,
    ) -> DfResult<ArrayRef> {
        let names = names(args, 0)?;
        let one = args[0].len() == 1;
        let mut values = Vec::with_capacity(rows);
        for row in 0..rows {
            let sequence = self
                .resolve(&names, if one { 0 } else { row })
                .map_err(external)?;
            values.push(sequence.map(|s| f(&s)).transpose().map_err(external)?);
        }
        Ok(Arc::new(Int64Array::from(values)) as ArrayRef)
    }

    /// The functions, for one session's planner.
    pub fn functions(&self) -> Vec<ScalarUDF> {
        let mut out = Vec::new();
        let this = self.clone();
        out.push(Function {
            name: "nextval",
            signature: Signature::any(1, Volatility::Volatile),
            returns: int64,
            body: Box::new(move |args, rows| {
                this.each_row(args, rows, |sequence| {
                    let value = this.sequences.next(sequence)?;
                    let mut seen = this.seen.lock();
                    seen.by_id.insert(sequence.def.id, value);
                    seen.last = Some(value);
                    Ok(value)
                })
            }),
        });
        let this = self.clone();
        out.push(Function {
            name: "currval",
            signature: Signature::any(1, Volatility::Volatile),
            returns: int64,
            body: Box::new(move |args, rows| {
                this.each_row(args, rows, |sequence| {
                    let value = this.seen.lock().by_id.get(&sequence.def.id).copied();
                    value.ok_or_else(|| Error::TransactionState {
                        code: SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        message: format!(
                            "currval of sequence \"{}\" is not yet defined in this session",
                            sequence.def.name
                        ),
                    })
                })
            }),
        });
        let this = self.clone();
        out.push(Function {
            name: "lastval",
            signature: Signature::nullary(Volatility::Volatile),
            returns: int64,
            body: Box::new(move |_, rows| {
                let Some(value) = this.seen.lock().last else {
                    return Err(external(Error::TransactionState {
                        code: SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        message: "lastval is not yet defined in this session".into(),
                    }));
                };
                Ok(Arc::new(Int64Array::from(vec![value; rows.max(1)])) as ArrayRef)
            }),
        });
        let this = self.clone();
        out.push(Function {
            name: "setval",
            signature: Signature::variadic_any(Volatility::Volatile),
            returns: int64,
            body: Box::new(move |args, rows| {
                if !(2..=3).contains(&args.len()) {
                    return Err(external(Error::NotFound {
                        code: SqlState::UNDEFINED_FUNCTION,
                        message: "function setval takes a sequence, a value and optionally \
                                  is_called"
                            .into(),
                    }));
                }
                let names = names(args, 0)?;
                let values = ints(args, 1)?;
                let called = match args.get(2) {
                    Some(a) => {
                        let a = cast(a, &ArrowType::Boolean)?;
                        let a = a
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                            .ok_or_else(|| DataFusionError::Internal("is_called".into()))?
                            .clone();
                        a.iter().collect::<Vec<_>>()
                    }
                    None => vec![Some(true); values.len()],
                };
                let mut out = Vec::with_capacity(rows);
                for row in 0..rows {
                    let at = |len: usize| if len == 1 { 0 } else { row };
                    let (Some(sequence), Some(value), Some(called)) = (
                        this.resolve(&names, at(args[0].len())).map_err(external)?,
                        values[at(values.len())],
                        called[at(called.len())],
                    ) else {
                        out.push(None);
                        continue;
                    };
                    this.sequences
                        .set(&sequence, value, called)
                        .map_err(external)?;
                    out.push(Some(value));
                }
                Ok(Arc::new(Int64Array::from(out)) as ArrayRef)
            }),
        });
        let this = self.clone();
        out.push(Function {
            name: "pg_get_serial_sequence",
            signature: Signature::any(2, Volatility::Stable),
            returns: utf8,
            body: Box::new(move |args, _| {
                let tables = cast(&args[0], &ArrowType::Utf8)?;
                let columns = cast(&args[1], &ArrowType::Utf8)?;
                let (tables, columns) = (
                    tables.as_any().downcast_ref::<StringArray>().cloned(),
                    columns.as_any().downcast_ref::<StringArray>().cloned(),
                );
                let (Some(tables), Some(columns)) = (tables, columns) else {
                    return Err(DataFusionError::Internal("pg_get_serial_sequence".into()));
                };
                let mut out = Vec::with_capacity(tables.len());
                for (table, column) in tables.iter().zip(columns.iter()) {
                    let (Some(table), Some(column)) = (table, column) else {
                        out.push(None);
                        continue;
                    };
                    let table = table.strip_prefix("public.").unwrap_or(table).to_string();
                    this.catalog.table(&table).map_err(external)?;
                    let owner = this.sequences.all().into_iter().find(|s| {
                        s.def.owned_by.as_ref() == Some(&(table.clone(), column.to_string()))
                    });
                    out.push(owner.map(|s| format!("public.{}", s.def.name)));
                }
                Ok(Arc::new(StringArray::from(out)) as ArrayRef)
            }),
        });
        out.into_iter().map(ScalarUDF::new_from_impl).collect()
    }
}
