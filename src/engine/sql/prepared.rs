//! PREPARE, EXECUTE and DEALLOCATE: statements a session names, checks once
//! and then runs with values for their `$n` parameters.
//!
//! ```text
//!   PREPARE p (int) AS SELECT * FROM t WHERE id = $1
//!     parse, plan once to check it and find the types of its parameters
//!     ($1 declared integer here; an undeclared one takes the type its
//!     context gives it, text when none), keep each $n as `$n::type`
//!   EXECUTE p (42)
//!     each argument in place of its $n, cast to the parameter's type; an
//!     argument that is not a literal (now(), nextval('s')) is evaluated
//!     once first, as PostgreSQL does
//!   DEALLOCATE p | ALL
//! ```
//!
//! The statement is planned again at each EXECUTE, so it always sees the
//! tables as they are. When a table definition changed since PREPARE, a
//! statement that returns rows must still return the same columns, or it
//! fails with PostgreSQL's 0A000 "cached plan must not change result type".

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName, Statement, VisitMut, VisitorMut};

use super::convert::{engine_type, sql_type, value_expr};
use super::describe::placeholder;
use super::execute::{ident, Output};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::types::DataType;
use crate::engine::Session;

/// The most statements a session may have prepared with PREPARE at once.
pub const MAX_PREPARED: usize = 10_000;

/// A session's prepared statements, by name.
#[derive(Default)]
pub(crate) struct PreparedStatements(HashMap<String, Prepared>);

struct Prepared {
    /// The statement, each `$n` cast to its parameter's type.
    statement: Statement,
    types: Vec<DataType>,
    /// The result columns at PREPARE (None for a statement without rows).
    columns: Option<SchemaRef>,
    /// The catalog generation `columns` were found at.
    generation: u64,
}

impl Session {
    pub(super) fn prepare_sql(
        &mut self,
        name: &ast::Ident,
        declared_types: &[ast::DataType],
        mut statement: Statement,
    ) -> Result<Output> {
        let name = ident(name);
        if self.prepared.0.len() >= MAX_PREPARED {
            return Err(Error::LimitExceeded {
                code: SqlState::PROGRAM_LIMIT_EXCEEDED,
                message: format!(
                    "a session has at most {MAX_PREPARED} prepared statements (DEALLOCATE some)"
                ),
            });
        }
        if self.prepared.0.contains_key(&name) {
            return Err(Error::AlreadyExists {
                code: SqlState::DUPLICATE_PREPARED_STATEMENT,
                message: format!("prepared statement \"{name}\" already exists"),
            });
        }
        if !matches!(
            statement,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
        ) {
            let word = statement.to_string();
            let word = word.split_whitespace().next().unwrap_or_default();
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                format!("syntax error at or near \"{word}\""),
            ));
        }
        let declared = declared_types
            .iter()
            .map(super::ddl::data_type)
            .collect::<Result<Vec<_>>>()?;
        let _ = statement.visit(&mut Casts(
            declared_types.iter().cloned().map(Some).collect(),
        ));
        let generation = self.shared.catalog.generation();
        let description = self.describe(&statement)?;
        let count = description.params.len().max(declared.len());
        let types: Vec<DataType> = (0..count)
            .map(|i| match declared.get(i) {
                Some(&t) => t,
                None => description
                    .params
                    .get(i)
                    .cloned()
                    .flatten()
                    .map_or(DataType::Text, |t| engine_type(&t)),
            })
            .collect();
        let mut casts = Casts(
            types
                .iter()
                .enumerate()
                .map(|(i, &t)| match declared.get(i) {
                    Some(_) => Ok(None),
                    None => sql_type(t).map(Some),
                })
                .collect::<Result<_>>()?,
        );
        let _ = statement.visit(&mut casts);
        self.prepared.0.insert(
            name,
            Prepared {
                statement,
                types,
                columns: description.columns,
                generation,
            },
        );
        Ok(Output::command("PREPARE"))
    }

    pub(super) fn execute_prepared_sql(
        &mut self,
        name: Option<&ObjectName>,
        arguments: &[Expr],
    ) -> Result<Output> {
        let name = name
            .and_then(|n| n.0.last())
            .and_then(|p| p.as_ident())
            .map(ident)
            .ok_or_else(|| Error::Unsupported("EXECUTE without a statement name".into()))?;
        let prepared = self.prepared_statement(&name)?;
        if arguments.len() != prepared.types.len() {
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                format!(
                    "wrong number of parameters for prepared statement \"{name}\": expected {} parameters but got {}",
                    prepared.types.len(),
                    arguments.len()
                ),
            ));
        }
        let types = prepared.types.clone();
        let mut statement = prepared.statement.clone();
        let (columns, generation) = (prepared.columns.clone(), prepared.generation);
        let mut values = Vec::with_capacity(arguments.len());
        for (argument, &t) in arguments.iter().zip(&types) {
            values.push(if is_literal(argument) {
                Expr::Nested(Box::new(argument.clone()))
            } else {
                let planner = self.planner()?;
                value_expr(&self.constant(&planner, argument, t)?, t)?
            });
        }
        bind_parameters(&mut statement, &values)?;
        let checked = self.check_result_columns(&statement, columns.as_ref(), generation)?;
        if let Some(prepared) = self.prepared.0.get_mut(&name) {
            prepared.generation = checked;
        }
        self.dispatch(statement, &mut String::new())
    }

    /// The catalog generation: it changes whenever a table definition does.
    pub fn catalog_generation(&self) -> u64 {
        self.shared.catalog.generation()
    }

    /// Checks that a statement prepared when the catalog was at `generation`
    /// still returns `columns` (PostgreSQL's 0A000 "cached plan must not
    /// change result type" otherwise), and returns the generation it now
    /// holds for. A statement without rows, or an unchanged catalog, needs
    /// no check.
    pub fn check_result_columns(
        &mut self,
        statement: &Statement,
        columns: Option<&SchemaRef>,
        generation: u64,
    ) -> Result<u64> {
        let now = self.catalog_generation();
        let Some(columns) = columns.filter(|_| now != generation) else {
            return Ok(generation);
        };
        let same = self.describe(statement)?.columns.is_some_and(|new| {
            new.fields().len() == columns.fields().len()
                && new
                    .fields()
                    .iter()
                    .zip(columns.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
        });
        if !same {
            return Err(Error::invalid(
                SqlState::FEATURE_NOT_SUPPORTED,
                "cached plan must not change result type",
            ));
        }
        Ok(now)
    }

    pub(super) fn deallocate_sql(&mut self, name: &ast::Ident) -> Result<Output> {
        if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
            self.prepared.0.clear();
            return Ok(Output::command("DEALLOCATE ALL"));
        }
        let name = ident(name);
        self.prepared_statement(&name)?;
        self.prepared.0.remove(&name);
        Ok(Output::command("DEALLOCATE"))
    }

    /// The result columns of `EXECUTE name`, for Describe.
    pub(super) fn prepared_columns(&self, name: Option<&ObjectName>) -> Option<SchemaRef> {
        let name = ident(name?.0.last()?.as_ident()?);
        self.prepared.0.get(&name)?.columns.clone()
    }

    fn prepared_statement(&self, name: &str) -> Result<&Prepared> {
        self.prepared.0.get(name).ok_or_else(|| Error::NotFound {
            code: SqlState::INVALID_SQL_STATEMENT_NAME,
            message: format!("prepared statement \"{name}\" does not exist"),
        })
    }
}

/// Wraps `$n` in a cast to type n where one is given.
struct Casts(Vec<Option<ast::DataType>>);

impl VisitorMut for Casts {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(Some(t)) = placeholder(expr).and_then(|n| self.0.get(n - 1)) {
            *expr = Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(expr.clone()),
                data_type: t.clone(),
                array: false,
                format: None,
            };
        }
        ControlFlow::Continue(())
    }
}

/// Puts `values[n - 1]` in place of each `$n` of `statement` (42P02 for a
/// `$n` past the values).
pub fn bind_parameters(statement: &mut Statement, values: &[Expr]) -> Result<()> {
    match statement.visit(&mut Arguments(values)) {
        ControlFlow::Break(n) => Err(Error::invalid(
            SqlState::UNDEFINED_PARAMETER,
            format!("there is no parameter ${n}"),
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Puts argument n in place of each `$n`.
struct Arguments<'a>(&'a [Expr]);

impl VisitorMut for Arguments<'_> {
    type Break = usize;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<usize> {
        if let Some(n) = placeholder(expr) {
            match self.0.get(n - 1) {
                Some(value) => *expr = value.clone(),
                None => return ControlFlow::Break(n),
            }
        }
        ControlFlow::Continue(())
    }
}

/// A literal, possibly signed or cast (`42`, `-1.5`, `'x'`, `'2024-01-02'::date`):
/// an argument that means the same however often the statement reads it.
fn is_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Value(v) => !matches!(v.value, ast::Value::Placeholder(_)),
        Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
            is_literal(expr)
        }
        Expr::TypedString(_) => true,
        _ => false,
    }
}
