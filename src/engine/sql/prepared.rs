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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName, Statement, VisitMut, VisitorMut};

use super::convert::{engine_type, sql_type, value_expr};
use super::describe::{placeholder, Description};
use super::execute::{ident, Output};
use super::fastpath::FastPlan;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::types::{DataType, Value};
use crate::engine::Session;

/// The most statements a session may have prepared with PREPARE at once.
pub const MAX_PREPARED: usize = 10_000;

/// A session's prepared statements, by name: each with its `$n` cast to
/// its parameter's type, and the result columns found at PREPARE.
#[derive(Default)]
pub(crate) struct PreparedStatements(HashMap<String, Arc<PreparedStatement>>);

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
        let prepared = PreparedStatement {
            statement,
            description,
            types,
            generation: AtomicU64::new(generation),
            fast: Mutex::new(None),
        };
        self.prepared.0.insert(name, Arc::new(prepared));
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
        let prepared = self.prepared_statement(&name)?.clone();
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
        // Literal arguments of the types the fast path takes as they are.
        let values: Vec<Value> = arguments
            .iter()
            .zip(&prepared.types)
            .map(|(argument, &t)| super::fastpath::argument_value(argument, t))
            .collect::<Option<_>>()
            .unwrap_or_default();
        if values.is_empty() && !arguments.is_empty() {
            // Arguments the fast path does not take: bound as literals, and
            // those that are not literals (now(), nextval('s')) evaluated
            // once, here.
            let mut bound = Vec::with_capacity(arguments.len());
            for (argument, &t) in arguments.iter().zip(&prepared.types) {
                bound.push(if is_literal(argument) {
                    Expr::Nested(Box::new(argument.clone()))
                } else {
                    let planner = self.planner()?;
                    value_expr(&self.constant(&planner, argument, t)?, t)?
                });
            }
            let mut statement = prepared.statement.clone();
            bind_parameters(&mut statement, &bound)?;
            return self.run_prepared(&prepared, &[], |_| Ok(statement), &mut String::new());
        }
        let bind = |statement: &Statement| -> Result<Statement> {
            let bound: Vec<Expr> = arguments
                .iter()
                .map(|argument| Expr::Nested(Box::new(argument.clone())))
                .collect();
            let mut statement = statement.clone();
            bind_parameters(&mut statement, &bound)?;
            Ok(statement)
        };
        self.run_prepared(&prepared, &values, bind, &mut String::new())
    }

    /// Parses and describes one statement to run many times with values for
    /// its `$n` parameters ([`Session::execute_prepared`]). It keeps its
    /// fast-path form, made again when a table definition changes.
    pub fn prepare(&mut self, sql: &str) -> Result<PreparedStatement> {
        let mut statements = super::parse(sql)?;
        if statements.len() != 1 {
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        self.prepare_statement(statements.remove(0))
    }

    /// [`Session::prepare`] of a statement already parsed.
    pub fn prepare_statement(&mut self, statement: Statement) -> Result<PreparedStatement> {
        let generation = self.catalog_generation();
        let description = self.describe(&statement)?;
        let types = description
            .params
            .iter()
            .map(|t| t.as_ref().map_or(DataType::Text, engine_type))
            .collect();
        Ok(PreparedStatement {
            statement,
            description,
            types,
            generation: AtomicU64::new(generation),
            fast: Mutex::new(None),
        })
    }

    /// Runs `prepared` with `params[n - 1]` for each `$n`, each a value of
    /// its parameter's type ([`PreparedStatement::parameter_types`]) or
    /// text to be read as that type.
    pub fn execute_prepared(
        &mut self,
        prepared: &PreparedStatement,
        params: &[Value],
    ) -> Result<Output> {
        if params.len() != prepared.types.len() {
            return Err(Error::invalid(
                SqlState::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    params.len(),
                    prepared.types.len()
                ),
            ));
        }
        self.execute_prepared_with(prepared, params, |statement| {
            let values = params
                .iter()
                .zip(&prepared.types)
                .map(|(value, &t)| value_expr(value, t))
                .collect::<Result<Vec<_>>>()?;
            let mut statement = statement.clone();
            bind_parameters(&mut statement, &values)?;
            Ok(statement)
        })
    }

    /// Runs `prepared` on the fast path with `params` when it can, else
    /// the statement `bind` makes of it with the parameters in place: how
    /// the server runs Bind and Execute, whose parameters it binds itself.
    pub fn execute_prepared_with(
        &mut self,
        prepared: &PreparedStatement,
        params: &[Value],
        bind: impl FnOnce(&Statement) -> Result<Statement>,
    ) -> Result<Output> {
        let ends_transaction = super::execute::ends_transaction(&prepared.statement);
        self.run_statement(ends_transaction, |session, text| {
            session.run_prepared(prepared, params, bind, text)
        })
    }

    /// [`Session::execute_prepared_with`] inside a running statement.
    fn run_prepared(
        &mut self,
        prepared: &PreparedStatement,
        params: &[Value],
        bind: impl FnOnce(&Statement) -> Result<Statement>,
        text: &mut String,
    ) -> Result<Output> {
        let since = prepared.generation.load(Ordering::Relaxed);
        let columns = prepared.description.columns.as_ref();
        let checked = self.check_result_columns(&prepared.statement, columns, since)?;
        prepared.generation.store(checked, Ordering::Relaxed);
        if let Some(plan) = self.prepared_fast_plan(prepared) {
            if let Some(output) = self.run_fast(&plan, params)? {
                return Ok(output);
            }
        }
        self.dispatch(bind(&prepared.statement)?, text)
    }

    /// The fast-path form of `prepared` for the catalog as this session
    /// sees it: kept while no table definition changes, made anew (and not
    /// kept) while this transaction has definitions of its own.
    fn prepared_fast_plan(&self, prepared: &PreparedStatement) -> Option<Arc<FastPlan>> {
        if !self.fast_path_enabled {
            return None;
        }
        if self
            .txn
            .as_ref()
            .is_some_and(|open| !open.overlay.is_empty())
        {
            return self.fast_plan(&prepared.statement).map(Arc::new);
        }
        let generation = self.catalog_generation();
        let mut fast = prepared.fast.lock();
        if let Some((made, plan)) = fast.as_ref() {
            if *made == generation {
                return plan.clone();
            }
        }
        let plan = self.fast_plan(&prepared.statement).map(Arc::new);
        *fast = Some((generation, plan.clone()));
        plan
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
        self.prepared.0.get(&name)?.description.columns.clone()
    }

    fn prepared_statement(&self, name: &str) -> Result<&Arc<PreparedStatement>> {
        self.prepared.0.get(name).ok_or_else(|| Error::NotFound {
            code: SqlState::INVALID_SQL_STATEMENT_NAME,
            message: format!("prepared statement \"{name}\" does not exist"),
        })
    }
}

/// A statement parsed and described once, to run many times with values
/// for its `$n` parameters (see [`Session::prepare`]).
pub struct PreparedStatement {
    statement: Statement,
    description: Description,
    /// Each parameter's type: the one the statement gives it, else text.
    types: Vec<DataType>,
    /// The catalog generation the result columns hold for.
    generation: AtomicU64,
    /// The fast path's form (None: it has none) and the catalog generation
    /// it was made at.
    fast: Mutex<Option<(u64, Option<Arc<FastPlan>>)>>,
}

impl std::fmt::Debug for PreparedStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedStatement({})", self.statement)
    }
}

impl PreparedStatement {
    /// The statement, with its placeholders.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// Its parameters' types (Arrow's; None where the statement fixes
    /// none) and result columns, as found when it was prepared.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The type each parameter's value has (text where the statement fixes
    /// none).
    pub fn parameter_types(&self) -> &[DataType] {
        &self.types
    }
}

/// A statement of SQL text: parsed now, or from a [`StatementCache`].
pub enum Parsed {
    Fresh(Box<Statement>),
    Cached(Arc<PreparedStatement>),
}

impl Parsed {
    pub fn statement(&self) -> &Statement {
        match self {
            Parsed::Fresh(statement) => statement.as_ref(),
            Parsed::Cached(prepared) => &prepared.statement,
        }
    }
}

/// The most texts a [`StatementCache`] keeps.
pub const STATEMENT_CACHE_ENTRIES: usize = 256;
/// The longest text a [`StatementCache`] keeps, in bytes.
pub const STATEMENT_CACHE_TEXT: usize = 4096;

/// Statements of SQL text a session ran before, by their exact text: a text
/// seen a second time is kept parsed, with its fast-path form, so running
/// it again skips parsing (and planning, on the fast path). Only texts of
/// one SELECT, INSERT, UPDATE or DELETE are kept; at most
/// [`STATEMENT_CACHE_ENTRIES`] of them, each at most
/// [`STATEMENT_CACHE_TEXT`] bytes, the least recently used going first. A
/// table definition that changes makes each one's fast-path form anew.
#[derive(Default)]
pub struct StatementCache {
    entries: HashMap<String, (Arc<PreparedStatement>, u64), ahash::RandomState>,
    /// Hashes of texts seen once (cleared when it grows large).
    seen: std::collections::HashSet<u64, ahash::RandomState>,
    /// Counts uses, for least recently used.
    clock: u64,
}

impl StatementCache {
    /// The statements of `text`, parsed or from the cache.
    pub fn parse(&mut self, text: &str) -> Result<Vec<Parsed>> {
        self.clock += 1;
        if let Some((prepared, used)) = self.entries.get_mut(text) {
            *used = self.clock;
            return Ok(vec![Parsed::Cached(prepared.clone())]);
        }
        let mut statements = super::parse(text)?;
        let cacheable = text.len() <= STATEMENT_CACHE_TEXT
            && matches!(
                statements.as_slice(),
                [Statement::Query(_)
                    | Statement::Insert(_)
                    | Statement::Update(_)
                    | Statement::Delete(_)]
            );
        if !cacheable {
            return Ok(statements
                .into_iter()
                .map(|s| Parsed::Fresh(Box::new(s)))
                .collect());
        }
        let hash = self.seen.hasher().hash_one(text);
        if self.seen.insert(hash) {
            if self.seen.len() > 16 * STATEMENT_CACHE_ENTRIES {
                self.seen.clear();
            }
            return Ok(statements
                .into_iter()
                .map(|s| Parsed::Fresh(Box::new(s)))
                .collect());
        }
        if self.entries.len() >= STATEMENT_CACHE_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(text, _)| text.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let prepared = Arc::new(PreparedStatement {
            statement: statements.remove(0),
            description: Description::default(),
            types: Vec::new(),
            generation: AtomicU64::new(0),
            fast: Mutex::new(None),
        });
        self.entries
            .insert(text.to_string(), (prepared.clone(), self.clock));
        Ok(vec![Parsed::Cached(prepared)])
    }

    /// How many texts it keeps.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Session {
    /// How many texts [`Session::execute`] keeps parsed.
    pub fn cached_statements(&self) -> usize {
        self.statement_cache.len()
    }

    /// Runs a statement of SQL text.
    pub fn execute_parsed(&mut self, parsed: Parsed) -> Result<Output> {
        match parsed {
            Parsed::Fresh(statement) => self.execute_statement(*statement),
            Parsed::Cached(prepared) => {
                self.execute_prepared_with(&prepared, &[], |statement| Ok(statement.clone()))
            }
        }
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
