//! SQL statements run by a [`Session`]: transaction control, DDL and DML are
//! the engine's own; every row a statement reads comes from a query that
//! DataFusion plans and runs (see [`super::planner`]).
//!
//! UPDATE and DELETE become queries over the target table: DELETE selects the
//! primary keys of matching rows, UPDATE selects their old keys followed by the
//! whole new row. INSERT runs its VALUES or SELECT as a query. The rows are then
//! checked and written through the transaction, so a failing row leaves the
//! statement without effect.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, FromTable, ObjectName, SetExpr, Statement, TableFactor, TableWithJoins,
    TransactionIsolationLevel, TransactionMode,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::convert;
use super::ddl;
use super::planner::{Planner, Rows};
use super::provider::KEY_COLUMN;
use super::upsert::Outcome;
use crate::engine::catalog::{Table, TableChange};
use crate::engine::database::Shared;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::locks::Mode;
use crate::engine::mvcc::IsolationLevel;
use crate::engine::secondary::{write_row, Change};
use crate::engine::session::{aborted, insert_row, lock_for_change, Open, Session};
use crate::engine::types::{DataType, Value};

/// What one statement produced.
#[derive(Debug)]
pub enum Output {
    /// A query's rows.
    Rows(Rows),
    /// A query's rows, still to be read ([`Session::streaming`]).
    Stream(super::RowStream),
    /// A statement without rows: its command tag (`INSERT`, `CREATE TABLE`,
    /// ...) and, for DML, the number of rows it touched.
    Command {
        /// The command tag, as PostgreSQL names it.
        tag: &'static str,
        /// Rows inserted, updated or deleted.
        rows: Option<u64>,
    },
}

impl Output {
    pub(super) fn command(tag: &'static str) -> Output {
        Output::Command { tag, rows: None }
    }

    fn count(tag: &'static str, rows: usize) -> Output {
        Output::Command {
            tag,
            rows: Some(rows as u64),
        }
    }
}

impl fmt::Display for Output {
    /// The command tag PostgreSQL sends: `INSERT 0 3`, `SELECT 2`, `BEGIN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Rows(rows) => match rows.command {
                None => write!(f, "SELECT {}", rows.len()),
                Some("INSERT") => write!(f, "INSERT 0 {}", rows.len()),
                Some(tag) => write!(f, "{tag} {}", rows.len()),
            },
            Output::Command {
                tag: "INSERT",
                rows: Some(n),
            } => write!(f, "INSERT 0 {n}"),
            Output::Command { tag, rows: Some(n) } => write!(f, "{tag} {n}"),
            Output::Command { tag, rows: None } => f.write_str(tag),
            // Its rows are counted as they are read.
            Output::Stream(_) => f.write_str("SELECT"),
        }
    }
}

/// Parses SQL text into statements (PostgreSQL dialect).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let starts_with = |word: &str| {
        let head = sql.trim_start().get(..word.len()).unwrap_or_default();
        head.eq_ignore_ascii_case(word)
    };
    let sql = if sql.len() < 4096 && sql.to_ascii_lowercase().contains("user") {
        std::borrow::Cow::Owned(super::roles::user_as_role(sql))
    } else if starts_with("copy") {
        std::borrow::Cow::Owned(super::bulk::copy_booleans(sql))
    } else {
        std::borrow::Cow::Borrowed(sql)
    };
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, &sql)
        .tokenize_with_location()
        .map_err(ParserError::from)
        .map(|mut tokens| {
            truncate_identifiers(&mut tokens);
            let tokens = super::ddl::set_constraints(tokens);
            super::cursors::complete_fetch(super::row_locks::mark_weak_locks(tokens))
        });
    let parsed = tokens.and_then(|t| {
        Parser::new(&dialect)
            .with_tokens_with_locations(t)
            .parse_statements()
    });
    parsed.map_err(|e| match e {
        // The parser's own depth limit keeps a deeply nested expression from
        // overflowing the stack, here and in every later pass over the tree.
        ParserError::RecursionLimitExceeded => Error::LimitExceeded {
            code: SqlState::STATEMENT_TOO_COMPLEX,
            message: "stack depth limit exceeded: the statement nests too deeply".into(),
        },
        e => Error::invalid(SqlState::SYNTAX_ERROR, format!("syntax error: {e}")),
    })
}

/// The longest identifier, in bytes, as in PostgreSQL.
pub const MAX_IDENTIFIER: usize = 63;

/// Whether `statement` ends a transaction: it runs in a failed one.
pub(super) fn ends_transaction(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Commit { .. } | Statement::Rollback { .. }
    )
}

/// Cuts identifiers to [`MAX_IDENTIFIER`] bytes, as PostgreSQL's scanner does,
/// so a long name means the same table or column wherever it is written.
fn truncate_identifiers(tokens: &mut [TokenWithSpan]) {
    for token in tokens {
        if let Token::Word(word) = &mut token.token {
            if word.value.len() > MAX_IDENTIFIER {
                let mut end = MAX_IDENTIFIER;
                while !word.value.is_char_boundary(end) {
                    end -= 1;
                }
                word.value.truncate(end);
            }
        }
    }
}

/// The newest savepoint called `name`; 3B001 if there is none.
fn savepoint_index(open: &crate::engine::session::Open, name: &ast::Ident) -> Result<usize> {
    let name = ident(name);
    open.savepoints
        .iter()
        .rposition(|(n, _, _)| *n == name)
        .ok_or_else(|| Error::TransactionState {
            code: SqlState::INVALID_SAVEPOINT,
            message: format!("savepoint \"{name}\" does not exist"),
        })
}

/// A name as PostgreSQL folds it: unquoted identifiers in lower case.
pub fn ident(ident: &ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The column a possibly qualified name (`c`, `t.c`) refers to.
pub fn column_name(name: &ObjectName) -> Result<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .ok_or_else(|| Error::Unsupported(format!("the column name {name}")))
}

/// The table an object name refers to (`t`, `public.t` or `omen.public.t`).
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Unsupported(format!("the object name {name}")))?;
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] | [_, schema, table] if schema == "public" => Ok(table.clone()),
        _ => Err(Error::NotFound {
            code: SqlState::UNDEFINED_TABLE,
            message: format!("relation \"{name}\" does not exist (omen has the schema \"public\")"),
        }),
    }
}

impl Session {
    /// Runs SQL text of one or more statements separated by semicolons and
    /// returns one output per statement. It stops at the first failing
    /// statement; those before it keep their effect.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Output>> {
        self.set_query_text(sql);
        let parsed = self.statement_cache.parse(sql)?;
        parsed
            .into_iter()
            .map(|statement| self.execute_parsed(statement))
            .collect()
    }

    /// Runs one parsed statement.
    pub fn execute_statement(&mut self, statement: Statement) -> Result<Output> {
        let ends_transaction = ends_transaction(&statement);
        self.run_statement(ends_transaction, |session, text| {
            session.dispatch(statement, text)
        })
    }

    /// Runs `run` as one statement: refused in a failed transaction (unless
    /// it `ends_transaction`), reported in pg_stat_activity, its catalog the
    /// transaction's, a panic in it undone and turned into an error, and an
    /// error failing the transaction. `run` puts the statement's SQL in its
    /// second argument for the log should it panic.
    pub(super) fn run_statement(
        &mut self,
        ends_transaction: bool,
        run: impl FnOnce(&mut Session, &mut String) -> Result<Output>,
    ) -> Result<Output> {
        if self.is_aborted() && !ends_transaction {
            return Err(aborted());
        }
        if !ends_transaction {
            self.settle_streams();
        }
        self.canceller.reset();
        self.copy_abort();
        self.report_state(true);
        let _scope = self.catalog_scope();
        let mut text = String::new();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut *self, &mut text)))
                .unwrap_or_else(|panic| {
                    let message = crate::engine::panic_message(panic.as_ref());
                    let text = if text.is_empty() {
                        "(on the fast path)"
                    } else {
                        &text
                    };
                    eprintln!("omen: a statement panicked ({message}): {text}");
                    self.recover_from_panic();
                    Err(Error::Internal(format!(
                        "the statement failed on a bug: {message}"
                    )))
                });
        if result.is_err() {
            if let Some(open) = &mut self.txn {
                open.aborted = true;
            }
        }
        self.report_state(false);
        result
    }

    /// Runs a statement; `text` gets its SQL for the log should it panic.
    pub(super) fn dispatch(&mut self, statement: Statement, text: &mut String) -> Result<Output> {
        let streaming = self.take_streaming();
        if let Some(output) = self.fast_path(&statement)? {
            return Ok(output);
        }
        let mut statement = statement;
        self.bind_settings(&mut statement)?;
        *text = log_text(&statement);
        if let Statement::Query(mut query) = statement {
            // SELECT ... INTO t is CREATE TABLE t AS SELECT ...
            if let SetExpr::Select(select) = query.body.as_mut() {
                if let Some(into) = select.into.take() {
                    if into.temporary || into.unlogged {
                        return Err(Error::Unsupported(
                            "SELECT INTO TEMPORARY or UNLOGGED".into(),
                        ));
                    }
                    return self.create_table_from(&table_name(&into.name)?, false, &[], query);
                }
            }
            if !query.locks.is_empty() {
                return self.select_locked(query);
            }
            refuse_row_locks(&query)?;
            if streaming {
                return self.start_stream(Statement::Query(query));
            }
            return self.query(Statement::Query(query));
        }
        refuse_row_locks(&statement)?;
        match statement {
            Statement::Query(_) | Statement::Explain { .. } => self.query(statement),
            Statement::Analyze(analyze) => self.analyze_sql(analyze),
            Statement::Insert(insert) => self.insert_sql(insert),
            Statement::Update(update) => self.update_sql(update),
            Statement::Delete(delete) => self.delete_sql(delete),
            Statement::CreateTable(create) if create.query.is_some() => {
                self.create_table_as(create)
            }
            Statement::CreateTable(create) => {
                let planner = self.planner()?;
                let def = ddl::create_table(&create, |expr, data_type| {
                    self.constant(&planner, expr, data_type)
                })?;
                self.create_table_with_sequences(def, create.if_not_exists)?;
                Ok(Output::command("CREATE TABLE"))
            }
            Statement::CreateIndex(create) => {
                if create.concurrently {
                    self.refuse_in_transaction("CREATE INDEX CONCURRENTLY")?;
                    self.notice("CREATE INDEX CONCURRENTLY builds the index as CREATE INDEX does");
                }
                let (table, def) = ddl::create_index(&create)?;
                self.create_index(&table, def, create.if_not_exists)?;
                Ok(Output::command("CREATE INDEX"))
            }
            Statement::Drop {
                object_type: ast::ObjectType::Index,
                if_exists,
                names,
                ..
            } => {
                let names = names.iter().map(table_name).collect::<Result<Vec<_>>>()?;
                self.drop_indexes(&names, if_exists)?;
                Ok(Output::command("DROP INDEX"))
            }
            Statement::CreateSequence {
                temporary: false,
                if_not_exists,
                name,
                data_type,
                sequence_options,
                owned_by,
            } => self.create_sequence_sql(
                &name,
                if_not_exists,
                data_type.as_ref(),
                &sequence_options,
                owned_by.as_ref(),
            ),
            Statement::Drop {
                object_type: ast::ObjectType::Sequence,
                if_exists,
                names,
                ..
            } => self.drop_sequence_sql(&names, if_exists),
            Statement::Drop {
                object_type: ast::ObjectType::Table,
                if_exists,
                names,
                cascade,
                ..
            } => {
                let names = names.iter().map(table_name).collect::<Result<Vec<_>>>()?;
                self.drop_tables(&names, if_exists, cascade)?;
                Ok(Output::command("DROP TABLE"))
            }
            Statement::AlterTable(alter) => {
                let name = table_name(&alter.name)?;
                let retype = alter
                    .operations
                    .iter()
                    .find_map(|operation| match operation {
                        ast::AlterTableOperation::AlterColumn {
                            column_name,
                            op:
                                ast::AlterColumnOperation::SetDataType {
                                    data_type, using, ..
                                },
                        } => Some((column_name, data_type, using.as_ref())),
                        _ => None,
                    });
                if let Some((column, data_type, using)) = retype {
                    if alter.operations.len() > 1 {
                        return Err(Error::Unsupported(
                            "ALTER COLUMN TYPE beside other actions in one ALTER TABLE".into(),
                        ));
                    }
                    return self.alter_column_type(&name, column, data_type, using);
                }
                let table = self.table(&name)?;
                let planner = self.planner()?;
                let changes = alter
                    .operations
                    .iter()
                    .map(|operation| {
                        ddl::alter(operation, &table, |expr, t| {
                            self.constant(&planner, expr, t)
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>();
                // A volatile default gives each row there its own value.
                if let [TableChange::AddColumn(column)] = changes.as_slice() {
                    let volatile = column
                        .default_expr
                        .as_deref()
                        .is_some_and(ddl::is_volatile_default);
                    if volatile {
                        return self.add_column_filled(&name, column.clone());
                    }
                }
                self.alter_table(&name, changes)?;
                Ok(Output::command("ALTER TABLE"))
            }
            Statement::Truncate(truncate) => self.truncate_sql(truncate),
            Statement::CreateRole(create) => self.create_role_sql(create),
            Statement::AlterRole { name, operation } => self.alter_role_sql(&name, operation),
            Statement::Drop {
                object_type: ast::ObjectType::Role | ast::ObjectType::User,
                if_exists,
                names,
                ..
            } => self.drop_role_sql(&names, if_exists),
            Statement::StartTransaction { modes, .. } => {
                if self.in_transaction() {
                    self.notice("there is already a transaction in progress");
                    return Ok(Output::command("BEGIN"));
                }
                let isolation = isolation_of(&modes)?.unwrap_or(self.default_isolation());
                self.begin_with(isolation)?;
                Ok(Output::command("BEGIN"))
            }
            Statement::Commit { .. } => {
                if !self.in_transaction() {
                    self.notice("there is no transaction in progress");
                    return Ok(Output::command("COMMIT"));
                }
                if self.is_aborted() {
                    self.rollback()?;
                    return Ok(Output::command("ROLLBACK"));
                }
                self.commit()?;
                Ok(Output::command("COMMIT"))
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                if !self.in_transaction() {
                    self.notice("there is no transaction in progress");
                } else {
                    self.rollback()?;
                }
                Ok(Output::command("ROLLBACK"))
            }
            Statement::Savepoint { name } => {
                let open = self.savepoint_transaction("SAVEPOINT")?;
                let mark = open.txn.lock().mark();
                let overlay = open.overlay.snapshot();
                open.savepoints.push((ident(&name), mark, overlay));
                Ok(Output::command("SAVEPOINT"))
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => {
                self.close_block_streams();
                let open = self.savepoint_transaction("ROLLBACK TO SAVEPOINT")?;
                let i = savepoint_index(open, &name)?;
                open.savepoints.truncate(i + 1);
                open.txn.lock().rollback_to(&open.savepoints[i].1);
                open.overlay.restore(open.savepoints[i].2.clone());
                open.aborted = false;
                Ok(Output::command("ROLLBACK"))
            }
            Statement::ReleaseSavepoint { name } => {
                let open = self.savepoint_transaction("RELEASE SAVEPOINT")?;
                let i = savepoint_index(open, &name)?;
                open.savepoints.truncate(i);
                Ok(Output::command("RELEASE"))
            }
            Statement::Set(set) => self.set_sql(set),
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => self.prepare_sql(&name, &data_types, *statement),
            Statement::Execute {
                name,
                parameters,
                immediate: false,
                into,
                using,
                output: false,
                default: false,
                ..
            } if into.is_empty() && using.is_empty() => {
                self.execute_prepared_sql(name.as_ref(), &parameters)
            }
            Statement::Deallocate { name, .. } => self.deallocate_sql(&name),
            Statement::Declare { stmts } => self.declare_sql(stmts),
            Statement::Fetch {
                name,
                direction,
                into: None,
                ..
            } => self.fetch_sql(&name, &direction),
            Statement::Close { cursor } => self.close_sql(&cursor),
            Statement::Reset(reset) => self.reset_sql(&reset.reset),
            Statement::Discard { object_type } => self.discard_sql(object_type),
            Statement::ShowVariable { variable } => {
                let parts: Vec<String> = variable.iter().map(ident).collect();
                // `SHOW transaction isolation level`, or a dotted name (`SHOW omen.parallelism`).
                let mut name = parts.join(" ");
                let value = match self.setting(&name) {
                    Err(_) if parts.len() > 1 => {
                        name = parts.join(".");
                        self.setting(&name)?
                    }
                    value => value?,
                };
                Ok(Output::Rows(Rows::single_text(&name, &value)))
            }
            other => Err(Error::Unsupported(format!(
                "the statement \"{}\"",
                brief(&other)
            ))),
        }
    }

    /// The open transaction a savepoint statement works on; 25P01 outside one.
    fn savepoint_transaction(&mut self, what: &str) -> Result<&mut crate::engine::session::Open> {
        self.txn.as_mut().ok_or_else(|| Error::TransactionState {
            code: SqlState::NO_ACTIVE_SQL_TRANSACTION,
            message: format!("{what} can only be used in transaction blocks"),
        })
    }

    /// CREATE TABLE name [(columns)] AS query: a table (without a primary
    /// key) with the query's columns and types, holding its rows. The table
    /// is created, then filled; if filling fails it is dropped again.
    fn create_table_as(&mut self, create: ast::CreateTable) -> Result<Output> {
        if create.temporary || create.or_replace || create.like.is_some() {
            return Err(Error::Unsupported(
                "CREATE TEMPORARY or OR REPLACE TABLE ... AS".into(),
            ));
        }
        let name = table_name(&create.name)?;
        let query = create.query.expect("checked by the caller");
        let columns: Vec<String> = create.columns.iter().map(|c| ident(&c.name)).collect();
        self.create_table_from(&name, create.if_not_exists, &columns, query)
    }

    /// A new table `name` holding the rows of `query` (CREATE TABLE AS,
    /// SELECT INTO); `columns` renames the first columns.
    fn create_table_from(
        &mut self,
        name: &str,
        if_not_exists: bool,
        columns: &[String],
        query: Box<ast::Query>,
    ) -> Result<Output> {
        let name = name.to_string();
        if self.table(&name).is_ok() && if_not_exists {
            self.notice(format!("relation \"{name}\" already exists, skipping"));
            return Ok(Output::command("CREATE TABLE AS"));
        }
        let Some(schema) = self.describe(&Statement::Query(query.clone()))?.columns else {
            return Err(Error::Internal("a query without columns".into()));
        };
        if columns.len() > schema.fields().len() {
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                "CREATE TABLE AS specifies too many column names",
            ));
        }
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let name = columns.get(i).unwrap_or(field.name()).clone();
                crate::engine::catalog::ColumnDef::new(
                    name,
                    convert::engine_type(field.data_type()),
                )
            })
            .collect();
        self.create_table(&name, columns, &[], false)?;
        let insert = parse(&format!("INSERT INTO {} {query}", quote(&name)))?.remove(0);
        let Statement::Insert(insert) = insert else {
            return Err(Error::Internal("INSERT text that is not an INSERT".into()));
        };
        match self.insert_sql(insert) {
            Ok(Output::Command { rows, .. }) => Ok(Output::Command {
                tag: "SELECT",
                rows,
            }),
            Ok(other) => Ok(other),
            Err(e) => {
                // In a transaction block the failure aborts it, and its
                // rollback takes the table with it.
                if !self.in_transaction() {
                    let _ = self.drop_tables(std::slice::from_ref(&name), true, false);
                }
                Err(e)
            }
        }
    }

    /// omen_backup(repo) for this session: superusers only, since it writes
    /// files on the server's machine as the server's user.
    fn backup_function(&self) -> super::pg_functions::BackupFn {
        let db = super::super::Database::from_shared(&self.shared);
        let catalog = self.shared.catalog.clone();
        let user = self.user.clone();
        Arc::new(move |repository| {
            let Some(db) = db.upgrade() else {
                return Err(Error::Internal("the database is closing".into()));
            };
            if !super::roles::is_superuser(&catalog, user.as_deref()) {
                return Err(Error::InvalidInput {
                    code: SqlState::INSUFFICIENT_PRIVILEGE,
                    message: "permission denied for function omen_backup: only superusers may take backups".into(),
                });
            }
            let request = super::super::backup::BackupRequest {
                repository: repository.into(),
                ..Default::default()
            };
            let summary = db
                .backup(&request, &|_, _| {})
                .map_err(|e| Error::InvalidInput {
                    code: match e.kind {
                        super::super::backup::FailureKind::Busy => SqlState::OBJECT_IN_USE,
                        _ => SqlState::IO_ERROR,
                    },
                    message: format!("omen_backup: {e}"),
                })?;
            Ok(serde_json::to_string(&summary).expect("a summary serialises"))
        })
    }

    /// The session's planner, made on first use.
    pub(in crate::engine) fn planner(&mut self) -> Result<Arc<Planner>> {
        if let Some(planner) = &self.sql {
            return Ok(planner.clone());
        }
        let user = self.user.as_deref().unwrap_or("omen");
        let planner = Arc::new(Planner::new(
            self.shared.catalog.clone(),
            user,
            self.canceller.clone(),
            self.backends.clone(),
            &super::PlannerContext {
                memory: self.memory_limit,
                advisory: Some(super::pg_functions::Advisory {
                    locks: self.shared.locks.clone(),
                    activity: self.shared.activity.clone(),
                    session: self.id,
                    canceller: self.canceller.clone(),
                    lock_timeout_ms: self.lock_timeout_ms.clone(),
                    deadlock_timeout_ms: self.deadlock_timeout_ms.clone(),
                    xact_locks: self.locker.holds.clone(),
                }),
                sequences: Some(super::sequence_sql::SessionSequences {
                    sequences: self.shared.sequences.clone(),
                    catalog: self.shared.catalog.clone(),
                    seen: self.sequences_seen.clone(),
                }),
                backup: Some(self.backup_function()),
                ..self.shared.planner_context()
            },
        )?);
        if let Some(n) = self.settings.get(PARALLELISM).and_then(|v| v.parse().ok()) {
            planner.set_parallelism(n);
        }
        self.sql = Some(planner.clone());
        Ok(planner)
    }

    pub(super) fn query(&mut self, statement: Statement) -> Result<Output> {
        let planner = self.planner()?;
        let shared = self.shared.clone();
        let rows = self.statement(|open| {
            shared
                .runtime
                .block_on(planner.query(Some(&open.txn), statement))
        })?;
        Ok(Output::Rows(rows))
    }

    /// Evaluates a constant expression (a column default) as a value of `data_type`.
    pub(super) fn constant(
        &self,
        planner: &Planner,
        expr: &ast::Expr,
        data_type: DataType,
    ) -> Result<Value> {
        let select = parse(&format!("SELECT {expr}"))?.remove(0);
        let rows = self.shared.runtime.block_on(planner.query(None, select))?;
        let batch = rows
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::Internal("a constant without a row".into()))?;
        let array = assign(batch.column(0), data_type, "DEFAULT")?;
        convert::value_at(array.as_ref(), 0)
    }

    fn insert_sql(&mut self, insert: ast::Insert) -> Result<Output> {
        let alias = insert.table_alias.as_ref().map(|a| ident(&a.alias));
        let ast::TableObject::TableName(name) = &insert.table else {
            return Err(Error::Unsupported("INSERT into a table function".into()));
        };
        let table = self.table(&table_name(name)?)?;
        let mut targets = insert_targets(&table, &insert.columns)?;
        // Without a column list, fewer values fill the first columns.
        let all_columns = insert.columns.is_empty();
        let mut on_conflict = super::upsert::OnConflict::new(&table, insert.on.as_ref())?;
        let Some(source) = insert.source else {
            return Err(Error::Unsupported("INSERT without VALUES or SELECT".into()));
        };
        if let SetExpr::Values(values) = source.body.as_ref() {
            let given = values.rows.first().map_or(0, |r| r.len());
            if all_columns && given < targets.len() {
                targets.truncate(given);
            }
            if let Some(row) = values.rows.iter().find(|r| r.len() != targets.len()) {
                return Err(count_mismatch(row.len(), targets.len()));
            }
        }
        // A GENERATED ALWAYS column takes only DEFAULT.
        for (i, &c) in targets.iter().enumerate() {
            let defaults = match source.body.as_ref() {
                SetExpr::Values(values) => values.rows.iter().all(|r| is_default_keyword(&r[i])),
                _ => false,
            };
            if !defaults {
                table.columns[c].check_assignable(false)?;
            }
        }
        let mut source = source;
        if let SetExpr::Values(values) = source.body.as_mut() {
            for row in &mut values.rows {
                for (expr, &c) in row.iter_mut().zip(&targets) {
                    if is_default_keyword(expr) {
                        *expr = default_expression(&table.columns[c])?;
                    }
                }
            }
        }
        let planner = self.planner()?;
        let shared = self.shared.clone();
        let returning = insert.returning;
        self.statement(|open| {
            let rows = shared
                .runtime
                .block_on(planner.query(Some(&open.txn), Statement::Query(source)))?;
            let given = rows.schema.fields().len();
            let targets = match &targets[..] {
                targets if all_columns && given < targets.len() => &targets[..given],
                targets if given != targets.len() => {
                    return Err(count_mismatch(given, targets.len()))
                }
                targets => targets,
            };
            let (mut count, mut returned) = (0, Vec::new());
            for batch in &rows.batches {
                let arrays = batch
                    .columns()
                    .iter()
                    .zip(targets)
                    .map(|(array, &c)| {
                        let column = &table.columns[c];
                        assign(array, column.data_type, &column.name)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let rows = full_rows(&shared, &planner, &table, targets, &arrays)?;
                for row in rows {
                    // The row as stored, for RETURNING.
                    let stored = match &mut on_conflict {
                        None => insert_row(&shared, open, &table, row)?,
                        Some(on_conflict) => {
                            let alias = alias.as_deref().unwrap_or(&table.name);
                            match on_conflict.insert(&shared, &planner, open, &table, alias, row)? {
                                Outcome::Written(row) => row,
                                Outcome::Skipped => continue,
                            }
                        }
                    };
                    if returning.is_some() {
                        returned.push(stored);
                    }
                    count += 1;
                }
            }
            let written = Written {
                table: &table,
                alias: alias.as_deref().unwrap_or(&table.name),
                returning: returning.as_deref(),
                rows: returned,
                count,
                tag: "INSERT",
            };
            written.output(&shared, &planner, open)
        })
    }

    fn update_sql(&mut self, update: ast::Update) -> Result<Output> {
        if update.limit.is_some() {
            return Err(Error::Unsupported("UPDATE with LIMIT".into()));
        }
        let (table, query) = self.update_query(&update)?;
        let alias = target_alias(&update.table);
        let planner = self.planner()?;
        let shared = self.shared.clone();
        let joins = update.from.is_some();
        self.statement(|open| {
            let rows =
                shared
                    .runtime
                    .block_on(planner.query_keyed(&open.txn, query.clone(), table.id))?;
            let rows = first_of_each_key(rows, joins)?;
            let mut moved = Vec::new();
            let mut changed = Vec::new();
            let mut returned = update.returning.as_ref().map(|_| Vec::new());
            let mut count = update_rows(
                &shared,
                open,
                &table,
                &rows,
                &mut moved,
                Some(&mut changed),
                returned.as_mut(),
            )?;
            if !changed.is_empty() {
                // READ COMMITTED: rows another transaction changed while this
                // one waited are read again as they are now, checked against
                // the WHERE clause again, and updated from their new values.
                open.txn.lock().refresh_snapshot();
                let rows = shared
                    .runtime
                    .block_on(planner.query_rechecked(&open.txn, query, table.id, changed))?;
                let rows = first_of_each_key(rows, joins)?;
                count += update_rows(
                    &shared,
                    open,
                    &table,
                    &rows,
                    &mut moved,
                    None,
                    returned.as_mut(),
                )?;
            }
            for row in moved {
                insert_row(&shared, open, &table, row)?;
            }
            open.tables.insert(table.id);
            let written = Written {
                table: &table,
                alias: alias.as_deref().unwrap_or(&table.name),
                returning: update.returning.as_deref(),
                rows: returned.unwrap_or_default(),
                count,
                tag: "UPDATE",
            };
            written.output(&shared, &planner, open)
        })
    }

    /// The query an UPDATE reads: each matching row's storage key, then the
    /// whole new row.
    pub(super) fn update_query(&self, update: &ast::Update) -> Result<(Arc<Table>, Statement)> {
        let table = self.table(&target_table(&update.table)?)?;
        let new_values: Vec<Option<String>> = assignments(&table, &update.assignments)?
            .into_iter()
            .map(|v| v.map(|e| e.to_string()))
            .collect();
        // The row's storage key first, then the whole new row; aliases keep
        // the values apart when an expression repeats a column.
        let items: Vec<String> = std::iter::once(quote(KEY_COLUMN))
            .chain(
                new_values
                    .iter()
                    .zip(&table.columns)
                    .enumerate()
                    .map(|(n, (v, c))| {
                        let value = v.clone().unwrap_or_else(|| quote(&c.name));
                        format!("{value} AS \"new {n}\"")
                    }),
            )
            .collect();
        let others = match &update.from {
            None => None,
            Some(ast::UpdateTableFromKind::AfterSet(from)) => Some(from.as_slice()),
            Some(ast::UpdateTableFromKind::BeforeSet(_)) => {
                return Err(Error::Unsupported("UPDATE FROM ... SET".into()))
            }
        };
        let relation = joined(&update.table, others);
        let query = select(&items, &relation, update.selection.as_ref())?;
        Ok((table, query))
    }

    /// The query a DELETE reads: each matching row's storage key.
    pub(super) fn delete_query(&self, delete: &ast::Delete) -> Result<(Arc<Table>, Statement)> {
        if delete.limit.is_some() {
            return Err(Error::Unsupported("DELETE with LIMIT".into()));
        }
        let from = match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
        };
        let [target] = from.as_slice() else {
            return Err(Error::Unsupported("DELETE from several tables".into()));
        };
        let table = self.table(&target_table(target)?)?;
        // With RETURNING, the whole row after its key.
        let mut items = vec![quote(KEY_COLUMN)];
        if delete.returning.is_some() {
            items.extend(table.columns.iter().map(|c| quote(&c.name)));
        }
        let relation = joined(target, delete.using.as_deref());
        let query = select(&items, &relation, delete.selection.as_ref())?;
        Ok((table, query))
    }

    pub(super) fn delete_sql(&mut self, delete: ast::Delete) -> Result<Output> {
        let (table, query) = self.delete_query(&delete)?;
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
        let alias = from.first().and_then(target_alias);
        let planner = self.planner()?;
        let shared = self.shared.clone();
        let joins = delete.using.is_some();
        self.statement(|open| {
            let rows =
                shared
                    .runtime
                    .block_on(planner.query_keyed(&open.txn, query.clone(), table.id))?;
            let rows = first_of_each_key(rows, joins)?;
            let mut changed = Vec::new();
            let mut returned = delete.returning.as_ref().map(|_| Vec::new());
            let mut count = delete_rows(
                &shared,
                open,
                &table,
                &rows,
                Some(&mut changed),
                returned.as_mut(),
            )?;
            if !changed.is_empty() {
                // READ COMMITTED: a row another transaction changed while this
                // one waited is deleted if it still matches.
                open.txn.lock().refresh_snapshot();
                let rows = shared
                    .runtime
                    .block_on(planner.query_rechecked(&open.txn, query, table.id, changed))?;
                let rows = first_of_each_key(rows, joins)?;
                count += delete_rows(&shared, open, &table, &rows, None, returned.as_mut())?;
            }
            open.tables.insert(table.id);
            let written = Written {
                table: &table,
                alias: alias.as_deref().unwrap_or(&table.name),
                returning: delete.returning.as_deref(),
                rows: returned.unwrap_or_default(),
                count,
                tag: "DELETE",
            };
            written.output(&shared, &planner, open)
        })
    }

    fn set_sql(&mut self, set: ast::Set) -> Result<Output> {
        if let ast::Set::SetTransaction { modes, session, .. } = &set {
            let Some(level) = isolation_of(modes)? else {
                return Ok(Output::command("SET"));
            };
            if *session {
                self.set_default_isolation(level);
            } else if self.in_transaction() {
                self.restart_transaction(level)?;
            } else {
                self.notice("SET TRANSACTION can only be used in transaction blocks");
            }
            return Ok(Output::command("SET"));
        }
        let (variable, values) = match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => (variable, values),
            // SET TIME ZONE x is SET timezone = x.
            ast::Set::SetTimeZone {
                local: false,
                value,
            } => (
                ObjectName::from(vec![ast::Ident::new("timezone")]),
                vec![value],
            ),
            set => return Err(Error::Unsupported(format!("the statement \"{set}\""))),
        };
        let name = table_name(&variable)
            .unwrap_or_else(|_| variable.to_string())
            .to_lowercase();
        if variable.to_string() == format!("\"{}\"", super::ddl::SET_CONSTRAINTS) {
            let mut words = values.iter().map(|v| match v {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            });
            let deferred = words.next().is_some_and(|mode| mode == "DEFERRED");
            let names: Vec<String> = words.collect();
            let names = (!names.is_empty()).then_some(names);
            self.set_constraints(names, deferred)?;
            return Ok(Output::command("SET CONSTRAINTS"));
        }
        // SET name TO DEFAULT is RESET name (drivers send it to leave a mode).
        if let [ast::Expr::Identifier(word)] = values.as_slice() {
            if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("default") {
                self.reset_setting(&name)?;
                return Ok(Output::command("SET"));
            }
        }
        let value = values
            .iter()
            .map(|v| match v {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                ast::Expr::Identifier(i) => i.value.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.set_setting(&name, &value)?;
        Ok(Output::command("SET"))
    }
}

/// What the log shows of a statement should it panic: its SQL, but for an
/// INSERT only its target and row count, since rendering a large VALUES list
/// for every statement would cost as much as parsing it.
/// Writes the new rows of an UPDATE (each row's storage key, then the whole
/// new row); rows whose key changes are deleted and go to `moved`, to be
/// inserted once every old key is gone. Rows that changed after the
/// snapshot go to `changed` (READ COMMITTED), unwritten. Returns the rows
/// written.
fn update_rows(
    shared: &Shared,
    open: &mut Open,
    table: &Table,
    rows: &Rows,
    moved: &mut Vec<Vec<Value>>,
    mut changed: Option<&mut Vec<Vec<u8>>>,
    mut returned: Option<&mut Vec<Vec<Value>>>,
) -> Result<usize> {
    let mut count = 0;
    for batch in &rows.batches {
        let arrays = batch.columns()[1..]
            .iter()
            .zip(&table.columns)
            .map(|(array, column)| assign(array, column.data_type, &column.name))
            .collect::<Result<Vec<_>>>()?;
        for r in 0..batch.num_rows() {
            let old = stored_key(batch.column(0), r)?;
            let row = arrays
                .iter()
                .map(|a| convert::value_at(a.as_ref(), r))
                .collect::<Result<Vec<_>>>()?;
            let row = shared.checks.row(table, row)?;
            let new = if table.has_row_ids() {
                old.clone()
            } else {
                table.row_key(&row)?
            };
            let mode = if old == new {
                Mode::NoKeyUpdate
            } else {
                Mode::Update
            };
            if lock_for_change(open, &old, mode, changed.is_some())? {
                if let Some(changed) = changed.as_mut() {
                    changed.push(old);
                }
                continue;
            }
            if let Some(returned) = returned.as_mut() {
                returned.push(row.clone());
            }
            if old == new {
                write_row(shared, open, table, &new, Change::Update(&row))?;
            } else {
                // A changed key: delete every old key before writing
                // the new ones, so keys may shift within the statement.
                write_row(shared, open, table, &old, Change::MoveOut(&row))?;
                moved.push(row);
            }
            count += 1;
        }
    }
    Ok(count)
}

/// Deletes the rows of a DELETE's query (their storage keys); as
/// [`update_rows`] for rows that changed after the snapshot.
fn delete_rows(
    shared: &Shared,
    open: &mut Open,
    table: &Table,
    rows: &Rows,
    mut changed: Option<&mut Vec<Vec<u8>>>,
    mut returned: Option<&mut Vec<Vec<Value>>>,
) -> Result<usize> {
    let mut count = 0;
    for batch in &rows.batches {
        for r in 0..batch.num_rows() {
            let key = stored_key(batch.column(0), r)?;
            if lock_for_change(open, &key, Mode::Update, changed.is_some())? {
                if let Some(changed) = changed.as_mut() {
                    changed.push(key);
                }
                continue;
            }
            if let Some(returned) = returned.as_mut() {
                // The old row follows its key (see `delete_query`).
                let row = (1..=table.columns.len())
                    .map(|c| convert::value_at(batch.column(c).as_ref(), r))
                    .collect::<Result<Vec<_>>>()?;
                returned.push(row);
            }
            write_row(shared, open, table, &key, Change::Delete)?;
            count += 1;
        }
    }
    Ok(count)
}

/// What an INSERT, UPDATE or DELETE wrote, for its output: the row count,
/// or with RETURNING its items evaluated over the rows.
struct Written<'a> {
    table: &'a Table,
    alias: &'a str,
    returning: Option<&'a [ast::SelectItem]>,
    rows: Vec<Vec<Value>>,
    count: usize,
    tag: &'static str,
}

impl Written<'_> {
    fn output(self, shared: &Shared, planner: &Planner, open: &Open) -> Result<Output> {
        let Some(items) = self.returning else {
            return Ok(Output::count(self.tag, self.count));
        };
        let rows = shared.runtime.block_on(planner.returning(
            &open.txn, self.table, self.alias, &self.rows, items, self.tag,
        ))?;
        Ok(Output::Rows(rows))
    }
}

/// The alias a statement gives its target table, if any.
fn target_alias(target: &TableWithJoins) -> Option<String> {
    match &target.relation {
        TableFactor::Table { alias: Some(a), .. } => Some(ident(&a.name)),
        _ => None,
    }
}

fn log_text(statement: &Statement) -> String {
    match statement {
        Statement::Insert(insert) => {
            let rows = match insert.source.as_ref().map(|s| s.body.as_ref()) {
                Some(SetExpr::Values(values)) => format!("{} rows of VALUES", values.rows.len()),
                Some(_) => "a query".to_string(),
                None => "no rows".to_string(),
            };
            format!("INSERT INTO {} ({rows})", insert.table)
        }
        other => other.to_string(),
    }
}

/// Refuses `FOR UPDATE`, `FOR SHARE` and their variants below the outermost
/// SELECT (in subqueries, CTEs, INSERT ... SELECT): omen locks only the rows
/// a top-level SELECT returns, and running the query without the lock it
/// asks for would promise the client a guarantee it does not get.
pub(super) fn refuse_row_locks(statement: &impl ast::Visit) -> Result<()> {
    struct Locks;
    impl ast::Visitor for Locks {
        type Break = String;
        fn pre_visit_query(&mut self, query: &ast::Query) -> std::ops::ControlFlow<String> {
            match query.locks.first() {
                Some(lock) => std::ops::ControlFlow::Break(lock.to_string()),
                None => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    match ast::Visit::visit(statement, &mut Locks) {
        std::ops::ControlFlow::Break(lock) => Err(Error::Unsupported(format!(
            "{lock} in a subquery (omen locks the rows of the outermost SELECT only, so it \
             refuses the lock rather than run the query without it)"
        ))),
        std::ops::ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether `expr` is the keyword DEFAULT, as a VALUES item may be.
fn is_default_keyword(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Identifier(id) if id.quote_style.is_none()
        && id.value.eq_ignore_ascii_case("default"))
}

/// What `DEFAULT` in a VALUES row stands for in `column`: its default
/// expression, its constant, or NULL.
fn default_expression(column: &crate::engine::catalog::Column) -> Result<ast::Expr> {
    let text = column.default_text().unwrap_or_else(|| "NULL".into());
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| {
            Error::Corruption(format!(
                "the default of column \"{}\" does not parse: {e}",
                column.name
            ))
        })
}

/// Whole rows of `table` from one array per column in `targets` (already of
/// the columns' types), the other columns taking their defaults.
pub(super) fn full_rows(
    shared: &Shared,
    planner: &Planner,
    table: &Table,
    targets: &[usize],
    arrays: &[ArrayRef],
) -> Result<Vec<Vec<Value>>> {
    let count = arrays.first().map_or(0, |a| a.len());
    let mut rows = (0..count)
        .map(|r| {
            let mut row = table.default_row();
            for (array, &c) in arrays.iter().zip(targets) {
                row[c] = convert::value_at(array.as_ref(), r)?;
            }
            Ok(row)
        })
        .collect::<Result<Vec<_>>>()?;
    fill_expression_defaults(shared, planner, table, targets, &mut rows)?;
    Ok(rows)
}

/// Evaluates the expression defaults (`now()`, `random()`) of the columns of
/// `table` that a statement leaves out (`given` are those it fills), once for
/// each of `rows`, as PostgreSQL does.
fn fill_expression_defaults(
    shared: &Shared,
    planner: &Planner,
    table: &Table,
    given: &[usize],
    rows: &mut [Vec<Value>],
) -> Result<()> {
    let missing: Vec<(usize, &str)> = table
        .expression_defaults()
        .filter(|(c, _)| !given.contains(c))
        .collect();
    if missing.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let items: Vec<String> = missing.iter().map(|(_, e)| format!("({e})")).collect();
    let sql = format!(
        "SELECT {} FROM generate_series(1, {})",
        items.join(", "),
        rows.len()
    );
    let values = shared
        .runtime
        .block_on(planner.query(None, parse(&sql)?.remove(0)))?;
    let mut r = 0;
    for batch in &values.batches {
        for (i, (c, _)) in missing.iter().enumerate() {
            let column = &table.columns[*c];
            let array = assign(batch.column(i), column.data_type, &column.name)?;
            for b in 0..batch.num_rows() {
                let row = rows
                    .get_mut(r + b)
                    .ok_or_else(|| Error::Internal("more defaults than rows".into()))?;
                row[*c] = convert::value_at(array.as_ref(), b)?;
            }
        }
        r += batch.num_rows();
    }
    if r != rows.len() {
        return Err(Error::Internal(format!(
            "{r} defaults for {} rows",
            rows.len()
        )));
    }
    Ok(())
}

/// The positions of the columns an INSERT names (all, in order, when it names none).
pub(super) fn insert_targets(table: &Table, columns: &[ObjectName]) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    let mut targets = Vec::with_capacity(columns.len());
    for name in columns {
        let column = column_name(name)?;
        let index = table.column_index(&column)?;
        if targets.contains(&index) {
            return Err(Error::AlreadyExists {
                code: SqlState::DUPLICATE_COLUMN,
                message: format!("column \"{column}\" specified more than once"),
            });
        }
        targets.push(index);
    }
    Ok(targets)
}

fn count_mismatch(given: usize, targets: usize) -> Error {
    let more = if given > targets {
        "more expressions than target columns"
    } else {
        "more target columns than expressions"
    };
    Error::invalid(SqlState::SYNTAX_ERROR, format!("INSERT has {more}"))
}

/// The table an UPDATE or DELETE writes: one plain table, no joins.
fn target_table(target: &TableWithJoins) -> Result<String> {
    match &target.relation {
        TableFactor::Table {
            name, args: None, ..
        } if target.joins.is_empty() => table_name(name),
        _ => Err(Error::Unsupported(format!("writing to {target}"))),
    }
}

pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The rows of a keyed query with each storage key once: a join of an
/// UPDATE ... FROM or DELETE ... USING (`joins`) may match a target row
/// several times, and, as in PostgreSQL, one of them is used.
fn first_of_each_key(mut rows: Rows, joins: bool) -> Result<Rows> {
    if !joins {
        return Ok(rows);
    }
    let mut seen = std::collections::HashSet::new();
    for batch in &mut rows.batches {
        let keep: datafusion::arrow::array::BooleanArray = (0..batch.num_rows())
            .map(|r| stored_key(batch.column(0), r).map(|key| Some(seen.insert(key))))
            .collect::<Result<_>>()?;
        *batch = datafusion::arrow::compute::filter_record_batch(batch, &keep)
            .map_err(|e| Error::Internal(format!("Arrow: {e}")))?;
    }
    Ok(rows)
}

/// The relation an UPDATE ... FROM or DELETE ... USING reads: the target,
/// then the other tables, which the WHERE clause joins to it.
fn joined(target: &TableWithJoins, others: Option<&[TableWithJoins]>) -> String {
    let mut relation = target.to_string();
    for other in others.unwrap_or_default() {
        relation.push_str(", ");
        relation.push_str(&other.to_string());
    }
    relation
}

/// `SELECT items FROM relation [WHERE selection]` as a parsed statement.
fn select(items: &[String], relation: &str, selection: Option<&ast::Expr>) -> Result<Statement> {
    let mut sql = format!("SELECT {} FROM {relation}", items.join(", "));
    if let Some(selection) = selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    Ok(parse(&sql)?.remove(0))
}

/// The new value of each column of `table` that `SET` assigns (None for the
/// others).
pub(super) fn assignments(
    table: &Table,
    assignments: &[ast::Assignment],
) -> Result<Vec<Option<ast::Expr>>> {
    let mut values = vec![None; table.columns.len()];
    for assignment in assignments {
        let AssignmentTarget::ColumnName(name) = &assignment.target else {
            return Err(Error::Unsupported("assigning to a tuple of columns".into()));
        };
        let column = column_name(name)?;
        let index = table.column_index(&column)?;
        table.columns[index].check_assignable(true)?;
        if values[index].is_some() {
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                format!("multiple assignments to same column \"{column}\""),
            ));
        }
        values[index] = Some(assignment.value.clone());
    }
    Ok(values)
}

/// The storage key at row `r` of a [`KEY_COLUMN`].
pub(super) fn stored_key(column: &ArrayRef, r: usize) -> Result<Vec<u8>> {
    match convert::value_at(column.as_ref(), r)? {
        Value::Bytes(key) => Ok(key),
        other => Err(Error::Internal(format!("a row key read as {other}"))),
    }
}

/// A computed column cast to a table column's type, as PostgreSQL's
/// assignment casts allow: numbers to numbers, text literals to anything,
/// anything to text, times among themselves.
pub(super) fn assign(array: &ArrayRef, data_type: DataType, column: &str) -> Result<ArrayRef> {
    if !assignable(array.data_type(), data_type) {
        return Err(Error::invalid(
            SqlState::DATATYPE_MISMATCH,
            format!(
                "column \"{column}\" is of type {data_type} but expression is of type {}",
                convert::pg_type_name(array.data_type())
            ),
        ));
    }
    convert::cast_to(array, data_type)
}

fn assignable(from: &ArrowType, to: DataType) -> bool {
    use ArrowType as A;
    let numeric = |t: &ArrowType| t.is_numeric();
    let time = |t: &ArrowType| matches!(t, A::Date32 | A::Date64 | A::Timestamp(..));
    match (from, to) {
        (A::Null | A::Utf8 | A::LargeUtf8 | A::Utf8View, _) => true,
        (_, DataType::Text | DataType::Varchar(_) | DataType::Char(_)) => true,
        (
            f,
            DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal { .. },
        ) => numeric(f),
        (A::Boolean, DataType::Bool) => true,
        (A::Binary | A::LargeBinary | A::BinaryView, DataType::Bytes) => true,
        (f, DataType::Date | DataType::Timestamp | DataType::TimestampTz) => time(f),
        (A::Time32(_) | A::Time64(_), DataType::Time) => true,
        (A::Interval(_) | A::Duration(_), DataType::Interval) => true,
        _ => false,
    }
}

/// The isolation level a BEGIN or SET TRANSACTION names, if it names one.
fn isolation_of(modes: &[TransactionMode]) -> Result<Option<IsolationLevel>> {
    let mut level = None;
    for mode in modes {
        match mode {
            TransactionMode::IsolationLevel(l) => {
                level = Some(match l {
                    TransactionIsolationLevel::ReadUncommitted
                    | TransactionIsolationLevel::ReadCommitted => IsolationLevel::ReadCommitted,
                    TransactionIsolationLevel::RepeatableRead => IsolationLevel::RepeatableRead,
                    TransactionIsolationLevel::Serializable => IsolationLevel::Serializable,
                    other => return Err(Error::Unsupported(format!("isolation level {other}"))),
                })
            }
            TransactionMode::AccessMode(ast::TransactionAccessMode::ReadWrite) => {}
            TransactionMode::AccessMode(_) => {
                return Err(Error::Unsupported("READ ONLY transactions".into()))
            }
        }
    }
    Ok(level)
}

/// The first words of a statement, for messages.
fn brief(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(3).collect();
    words.join(" ")
}

/// The setting for how much memory a statement or transaction may take.
const MEMORY_LIMIT: &str = "omen.memory_limit";
/// The setting for how many partitions a statement's plan uses.
const PARALLELISM: &str = "omen.parallelism";
/// The setting that turns the fast path for one-row statements on or off.
pub(super) const FAST_PATH: &str = "omen.fast_path";
/// The most partitions a statement may ask for.
const MAX_PARALLELISM: usize = 256;

/// The session settings PostgreSQL clients read and write.
pub(in crate::engine) fn default_settings() -> HashMap<String, String> {
    [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("deadlock_timeout", "1s"),
        ("extra_float_digits", "1"),
        ("idle_in_transaction_session_timeout", "0"),
        ("lock_timeout", "0"),
        ("intervalstyle", "postgres"),
        (FAST_PATH, "on"),
        ("search_path", "public"),
        ("server_encoding", "UTF8"),
        ("server_version", "15.0 (omen)"),
        ("server_version_num", "150000"),
        ("standard_conforming_strings", "on"),
        ("statement_timeout", "0"),
        ("timezone", "UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Session {
    /// The value of a session setting, as SHOW prints it.
    pub fn setting(&self, name: &str) -> Result<String> {
        let name = name.to_lowercase();
        match name.as_str() {
            "transaction_isolation" | "transaction isolation level" => Ok(self
                .txn_isolation()
                .unwrap_or(self.default_isolation())
                .sql_name()
                .to_lowercase()),
            "default_transaction_isolation" => {
                Ok(self.default_isolation().sql_name().to_lowercase())
            }
            _ => self
                .settings
                .get(&name)
                .cloned()
                .ok_or_else(|| unknown_setting(&name)),
        }
    }

    /// How long the session may sit idle inside a transaction before the
    /// server ends it (idle_in_transaction_session_timeout); None for ever.
    pub fn idle_in_transaction_timeout(&self) -> Option<std::time::Duration> {
        let value = self.settings.get("idle_in_transaction_session_timeout")?;
        parse_timeout(value).filter(|t| !t.is_zero())
    }

    /// Sets a session setting (SET name = value).
    pub fn set_setting(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_lowercase();
        match name.as_str() {
            "default_transaction_isolation" | "transaction_isolation" => {
                let level = match value.to_lowercase().as_str() {
                    "read uncommitted" | "read committed" => IsolationLevel::ReadCommitted,
                    "repeatable read" => IsolationLevel::RepeatableRead,
                    "serializable" => IsolationLevel::Serializable,
                    other => {
                        return Err(Error::invalid(
                            SqlState::INVALID_PARAMETER_VALUE,
                            format!("invalid value for parameter \"{name}\": \"{other}\""),
                        ))
                    }
                };
                if name == "transaction_isolation" && self.in_transaction() {
                    self.restart_transaction(level)
                } else {
                    self.set_default_isolation(level);
                    Ok(())
                }
            }
            "statement_timeout"
            | "idle_in_transaction_session_timeout"
            | "lock_timeout"
            | "deadlock_timeout" => {
                let timeout = parse_timeout(value).ok_or_else(|| {
                    Error::invalid(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"{name}\": \"{value}\""),
                    )
                })?;
                if name == "statement_timeout" {
                    self.canceller.set_timeout(timeout);
                }
                let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                let lock_setting = match name.as_str() {
                    "lock_timeout" => Some(&self.lock_timeout_ms),
                    "deadlock_timeout" => Some(&self.deadlock_timeout_ms),
                    _ => None,
                };
                if let Some(setting) = lock_setting {
                    setting.store(ms, std::sync::atomic::Ordering::Relaxed);
                }
                self.settings.insert(name, value.to_string());
                Ok(())
            }
            MEMORY_LIMIT => {
                let bytes = crate::engine::memory::parse_size(value).ok_or_else(|| {
                    Error::invalid(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!(
                            "invalid value for parameter \"{name}\": \"{value}\" \
                             (a size such as 512MB or 4GB)"
                        ),
                    )
                })?;
                self.memory_limit = bytes;
                // The planner's memory pool is made with the limit; the next
                // statement makes a new one. An open transaction keeps its own.
                self.sql = None;
                self.settings.insert(name, value.to_string());
                Ok(())
            }
            PARALLELISM => {
                let partitions = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PARALLELISM).contains(n))
                    .ok_or_else(|| {
                        Error::invalid(
                            SqlState::INVALID_PARAMETER_VALUE,
                            format!(
                                "invalid value for parameter \"{name}\": \"{value}\" \
                                 (a number of partitions from 1 to {MAX_PARALLELISM})"
                            ),
                        )
                    })?;
                if let Some(planner) = &self.sql {
                    planner.set_parallelism(partitions);
                }
                self.settings.insert(name, partitions.to_string());
                Ok(())
            }
            FAST_PATH => {
                let on = match value.to_lowercase().as_str() {
                    "on" | "true" | "yes" | "1" => true,
                    "off" | "false" | "no" | "0" => false,
                    _ => {
                        return Err(Error::invalid(
                            SqlState::INVALID_PARAMETER_VALUE,
                            format!("parameter \"{name}\" requires a Boolean value"),
                        ))
                    }
                };
                self.set_fast_path(on);
                Ok(())
            }
            "timezone"
                if !matches!(
                    value.to_lowercase().as_str(),
                    "utc" | "gmt" | "+00" | "00:00"
                ) =>
            {
                Err(Error::Unsupported(format!(
                    "the time zone \"{value}\" (omen runs in UTC)"
                )))
            }
            _ if self.settings.contains_key(&name) || name.contains('.') => {
                self.settings.insert(name, value.to_string());
                Ok(())
            }
            _ => Err(unknown_setting(&name)),
        }
    }
}

/// A PostgreSQL time setting: a number of milliseconds, or a number with
/// a unit (`ms`, `s`, `min`, `h`, `d`).
pub fn parse_timeout(value: &str) -> Option<std::time::Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "min" => 60e3,
        "h" => 3600e3,
        "d" => 86400e3,
        _ => return None,
    };
    let total = number * ms;
    (total.is_finite() && total >= 0.0).then(|| std::time::Duration::from_millis(total as u64))
}

fn unknown_setting(name: &str) -> Error {
    Error::NotFound {
        code: SqlState::UNDEFINED_OBJECT,
        message: format!("unrecognized configuration parameter \"{name}\""),
    }
}
