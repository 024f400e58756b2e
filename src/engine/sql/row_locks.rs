//! `SELECT ... FOR UPDATE | FOR NO KEY UPDATE | FOR SHARE | FOR KEY SHARE
//! [OF table] [NOWAIT | SKIP LOCKED]`: a query that locks the rows it
//! returns until its transaction ends.
//!
//! The query runs with each row's storage key as one more column, and its
//! batches are pulled one at a time; each row is locked as it arrives, so a
//! LIMIT counts only rows that were locked (a job queue's `LIMIT 1 FOR
//! UPDATE SKIP LOCKED` reads past the rows other workers hold and stops at
//! the first free one). A row another transaction changed while this one
//! waited for it is, at READ COMMITTED, read again as it is now and
//! returned if it still matches (PostgreSQL's EvalPlanQual); above READ
//! COMMITTED it fails with 40001.
//!
//! ```text
//!   SELECT id FROM jobs WHERE NOT done ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
//!     runs  SELECT id, __omen_key FROM jobs WHERE NOT done ORDER BY id
//!     row 1: held by another worker -> skipped
//!     row 2: locked                  -> returned; LIMIT reached, the scan stops
//! ```
//!
//! The parser knows only FOR UPDATE and FOR SHARE; [`mark_weak_locks`]
//! rewrites the other two modes into those before parsing, with a marker
//! in the OF list that [`lock_mode`] reads back.

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    self, Expr, LimitClause, LockType, NonBlock, SelectItem, SetExpr, Statement, TableFactor,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};
use std::sync::Arc;

use super::execute::{ident, stored_key, table_name, Output};
use super::planner::Rows;
use super::provider::KEY_COLUMN;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::locks::Mode;
use crate::engine::memory;
use crate::engine::mvcc::{IsolationLevel, RowLock};
use crate::engine::session::{concurrent_update, lock_row, Session};

/// The name of the storage key column a locking SELECT adds.
const LOCK_KEY: &str = "__omen_lock_key";
/// The OF marker of FOR NO KEY UPDATE (see the module docs).
const NO_KEY_UPDATE: &str = "__omen_for_no_key_update";
/// The OF marker of FOR KEY SHARE.
const KEY_SHARE: &str = "__omen_for_key_share";

/// Rewrites `FOR NO KEY UPDATE` to `FOR UPDATE OF <marker>` and `FOR KEY
/// SHARE` to `FOR SHARE OF <marker>` (`OF <marker>.t` when the clause names
/// a table), so that the parser, which knows only the two strong modes,
/// accepts all four.
pub(super) fn mark_weak_locks(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
    let has_for = tokens.iter().any(|t| is(t, Keyword::FOR));
    let has_key = tokens.iter().any(|t| is(t, Keyword::KEY));
    if !has_for || !has_key {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len() + 4);
    let mut i = 0;
    // The index of the next token that is not whitespace, from `from`.
    let next = |from: usize| {
        (from..tokens.len()).find(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
    };
    while i < tokens.len() {
        out.push(tokens[i].clone());
        if !is(&tokens[i], Keyword::FOR) {
            i += 1;
            continue;
        }
        let a = next(i + 1);
        let b = a.and_then(|a| next(a + 1));
        let c = b.and_then(|b| next(b + 1));
        let at = |j: Option<usize>, k| j.is_some_and(|j| is(&tokens[j], k));
        let (strong, marker, end) =
            if at(a, Keyword::NO) && at(b, Keyword::KEY) && at(c, Keyword::UPDATE) {
                (c, NO_KEY_UPDATE, c)
            } else if at(a, Keyword::KEY) && at(b, Keyword::SHARE) {
                (b, KEY_SHARE, b)
            } else {
                i += 1;
                continue;
            };
        let (strong, end) = (strong.expect("matched"), end.expect("matched"));
        out.push(TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)));
        out.push(tokens[strong].clone());
        out.push(TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)));
        out.push(TokenWithSpan::wrap(Token::make_keyword("OF")));
        out.push(TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)));
        out.push(TokenWithSpan::wrap(Token::make_word(marker, None)));
        match next(end + 1) {
            // `OF t` follows: the marker becomes the first part of its name.
            Some(of) if is(&tokens[of], Keyword::OF) => {
                out.push(TokenWithSpan::wrap(Token::Period));
                i = of + 1;
                // Skip the whitespace between OF and the name.
                while i < tokens.len() && matches!(tokens[i].token, Token::Whitespace(_)) {
                    i += 1;
                }
            }
            _ => i = end + 1,
        }
    }
    out
}

/// The mode a lock clause asks for, and the table it names after OF.
fn lock_mode(clause: &ast::LockClause) -> (Mode, Option<String>) {
    let mut of: Vec<String> = clause
        .of
        .iter()
        .flat_map(|name| name.0.iter())
        .filter_map(|part| part.as_ident().map(ident))
        .collect();
    let weak = of
        .first()
        .is_some_and(|p| p == NO_KEY_UPDATE || p == KEY_SHARE);
    let mode = match (clause.lock_type, weak) {
        (LockType::Update, false) => Mode::Update,
        (LockType::Update, true) => Mode::NoKeyUpdate,
        (LockType::Share, false) => Mode::Share,
        (LockType::Share, true) => Mode::KeyShare,
    };
    if weak {
        of.remove(0);
    }
    (mode, of.pop())
}

/// What a locking SELECT does with a row another transaction holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Busy {
    Wait,
    NoWait,
    Skip,
}

/// 0A000 for a locking clause PostgreSQL refuses with `what`.
fn not_allowed(mode: Mode, what: &str) -> Error {
    let name = match mode {
        Mode::KeyShare => "FOR KEY SHARE",
        Mode::Share => "FOR SHARE",
        Mode::NoKeyUpdate => "FOR NO KEY UPDATE",
        Mode::Update => "FOR UPDATE",
    };
    Error::Unsupported(format!("{name} is not allowed with {what}"))
}

/// A LIMIT or OFFSET count: an integer literal (None: no limit).
fn count(expr: Option<&Expr>) -> Result<Option<usize>> {
    match expr {
        None => Ok(None),
        Some(Expr::Value(v)) => match &v.value {
            ast::Value::Null => Ok(None),
            ast::Value::Number(n, _) => n.parse().map(Some).map_err(|_| {
                Error::invalid(
                    SqlState::INVALID_ROW_COUNT_IN_LIMIT,
                    format!("LIMIT or OFFSET must be a non-negative integer, not {n}"),
                )
            }),
            _ => Err(Error::Unsupported(
                "a LIMIT or OFFSET of a locking SELECT that is not a number".into(),
            )),
        },
        Some(_) => Err(Error::Unsupported(
            "a LIMIT or OFFSET of a locking SELECT that is not a number".into(),
        )),
    }
}

impl Session {
    /// Runs a SELECT with a locking clause (see the module docs).
    pub(super) fn select_locked(&mut self, mut query: Box<ast::Query>) -> Result<Output> {
        let clauses = std::mem::take(&mut query.locks);
        super::execute::refuse_row_locks(&query)?;
        let modes: Vec<(Mode, Option<String>)> = clauses.iter().map(lock_mode).collect();
        let mode = modes.iter().map(|(m, _)| *m).max().unwrap_or(Mode::Update);
        let busy = if clauses.iter().any(|c| c.nonblock == Some(NonBlock::Nowait)) {
            Busy::NoWait
        } else if clauses
            .iter()
            .any(|c| c.nonblock == Some(NonBlock::SkipLocked))
        {
            Busy::Skip
        } else {
            Busy::Wait
        };
        if query.fetch.is_some() {
            return Err(Error::Unsupported(
                "FETCH FIRST in a locking SELECT (write LIMIT)".into(),
            ));
        }
        let (limit, offset) = match query.limit_clause.take() {
            None => (None, 0),
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) if limit_by.is_empty() => (
                count(limit.as_ref())?,
                count(offset.as_ref().map(|o| &o.value))?.unwrap_or(0),
            ),
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                (count(Some(&limit))?, count(Some(&offset))?.unwrap_or(0))
            }
            Some(_) => return Err(Error::Unsupported("LIMIT BY in a locking SELECT".into())),
        };
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(not_allowed(mode, "UNION/INTERSECT/EXCEPT"));
        };
        if select.distinct.is_some() {
            return Err(not_allowed(mode, "DISTINCT clause"));
        }
        if !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty()) {
            return Err(not_allowed(mode, "GROUP BY clause"));
        }
        if select.having.is_some() {
            return Err(not_allowed(mode, "HAVING clause"));
        }
        if let Some(what) = aggregate_or_window(&select.projection) {
            return Err(not_allowed(mode, what));
        }
        let [from] = select.from.as_slice() else {
            return Err(Error::Unsupported(
                "a locking SELECT over several tables".into(),
            ));
        };
        let TableFactor::Table { name, alias, .. } = &from.relation else {
            return Err(Error::Unsupported(
                "a locking SELECT over a subquery or a function".into(),
            ));
        };
        if !from.joins.is_empty() {
            return Err(Error::Unsupported("a locking SELECT over a join".into()));
        }
        let table = self.table(&table_name(name)?)?;
        let visible_name = alias
            .as_ref()
            .map_or_else(|| table.name.clone(), |a| ident(&a.name));
        if let Some(other) = modes
            .iter()
            .filter_map(|(_, of)| of.as_ref())
            .find(|of| **of != visible_name)
        {
            return Err(Error::NotFound {
                code: SqlState::UNDEFINED_TABLE,
                message: format!(
                    "relation \"{other}\" in FOR UPDATE clause not found in FROM clause"
                ),
            });
        }
        // Named apart from the key column a `*` brings along.
        select.projection.push(SelectItem::ExprWithAlias {
            expr: Expr::Identifier(ast::Ident::with_quote('"', KEY_COLUMN)),
            alias: ast::Ident::with_quote('"', LOCK_KEY),
        });
        // The same query over one row, to read a changed row again.
        let mut recheck = query.clone();
        recheck.order_by = None;
        let recheck = Statement::Query(recheck);
        let query = Statement::Query(query);
        let planner = self.planner()?;
        let shared = self.shared.clone();
        let memory_limit = self.memory_limit;
        let rows = self.statement(|open| {
            let (schema, mut stream) =
                shared
                    .runtime
                    .block_on(planner.stream(&open.txn, query, Some(table.id)))?;
            let key_column = schema.fields().len() - 1;
            // The result leaves out the storage keys (a `*` includes one).
            let shown: Vec<usize> = (0..key_column)
                .filter(|&i| schema.field(i).name() != KEY_COLUMN)
                .collect();
            let out_schema =
                Arc::new(schema.project(&shown).map_err(|e| {
                    Error::Internal(format!("the result of a locking SELECT: {e}"))
                })?);
            let project = |batch: &RecordBatch| -> Result<RecordBatch> {
                batch
                    .project(&shown)
                    .map_err(|e| Error::Internal(format!("a locked row: {e}")))
            };
            let mut out = Vec::new();
            let (mut skipped, mut returned, mut bytes) = (0usize, 0usize, 0usize);
            let mut push = |out: &mut Vec<RecordBatch>, batch: RecordBatch| -> Result<()> {
                bytes += batch.get_array_memory_size();
                if bytes > memory_limit {
                    return Err(memory::exceeded("the statement's result", memory_limit));
                }
                out.push(batch);
                Ok(())
            };
            'batches: while limit.is_none_or(|l| returned < l) {
                let Some(batch) = shared.runtime.block_on(planner.next_batch(&mut stream))? else {
                    break;
                };
                let mut kept: Vec<u32> = Vec::new();
                for r in 0..batch.num_rows() {
                    if limit.is_some_and(|l| returned >= l) {
                        break;
                    }
                    let key = stored_key(batch.column(key_column), r)?;
                    let state = lock_row(open, &key, mode, busy == Busy::Wait)?;
                    let row = match state {
                        RowLock::Fresh => None,
                        RowLock::Busy if busy == Busy::Skip => continue,
                        RowLock::Busy => {
                            return Err(Error::TransactionState {
                                code: SqlState::LOCK_NOT_AVAILABLE,
                                message: format!(
                                    "could not obtain lock on row in relation \"{}\"",
                                    table.name
                                ),
                            })
                        }
                        RowLock::Changed { .. }
                            if open.txn.lock().isolation() == IsolationLevel::ReadCommitted =>
                        {
                            // Read it again as it is now; it stays if it still matches.
                            let old = open.txn.lock().refresh_snapshot();
                            let again = shared.runtime.block_on(planner.query_rechecked(
                                &open.txn,
                                recheck.clone(),
                                table.id,
                                vec![key],
                            ));
                            open.txn.lock().restore_snapshot(old);
                            match again?.batches.into_iter().find(|b| b.num_rows() > 0) {
                                Some(row) => Some(row),
                                None => continue,
                            }
                        }
                        RowLock::Changed { .. } => return Err(concurrent_update()),
                    };
                    if skipped < offset {
                        skipped += 1;
                        continue;
                    }
                    returned += 1;
                    match row {
                        None => kept.push(r as u32),
                        Some(row) => {
                            // Rows keep the order the query gave them.
                            flush(&batch, &mut kept, &project, &mut out, &mut push)?;
                            push(&mut out, project(&row.slice(0, 1))?)?;
                        }
                    }
                    if limit.is_some_and(|l| returned >= l) {
                        flush(&batch, &mut kept, &project, &mut out, &mut push)?;
                        break 'batches;
                    }
                }
                flush(&batch, &mut kept, &project, &mut out, &mut push)?;
            }
            Ok(Rows {
                schema: out_schema,
                batches: out,
                command: None,
            })
        })?;
        Ok(Output::Rows(rows))
    }
}

/// Moves the rows of `batch` listed in `kept` to the result.
fn flush(
    batch: &RecordBatch,
    kept: &mut Vec<u32>,
    project: &dyn Fn(&RecordBatch) -> Result<RecordBatch>,
    out: &mut Vec<RecordBatch>,
    push: &mut dyn FnMut(&mut Vec<RecordBatch>, RecordBatch) -> Result<()>,
) -> Result<()> {
    if kept.is_empty() {
        return Ok(());
    }
    let indices = UInt32Array::from(std::mem::take(kept));
    let rows = take_record_batch(&project(batch)?, &indices)
        .map_err(|e| Error::Internal(format!("the locked rows: {e}")))?;
    push(out, rows)
}

/// "aggregate functions" or "window functions" when the select list uses
/// one (PostgreSQL refuses row locks on such results).
fn aggregate_or_window(items: &[SelectItem]) -> Option<&'static str> {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "every",
        "stddev",
        "variance",
        "json_agg",
        "jsonb_agg",
    ];
    struct Find(Option<&'static str>);
    impl ast::Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> std::ops::ControlFlow<()> {
            if let Expr::Function(f) = expr {
                if f.over.is_some() {
                    self.0 = Some("window functions");
                    return std::ops::ControlFlow::Break(());
                }
                let name = f.name.to_string().to_ascii_lowercase();
                if AGGREGATES.contains(&name.as_str()) {
                    self.0 = Some("aggregate functions");
                    return std::ops::ControlFlow::Break(());
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut find = Find(None);
    for item in items {
        let _ = ast::Visit::visit(item, &mut find);
        if find.0.is_some() {
            break;
        }
    }
    find.0
}
