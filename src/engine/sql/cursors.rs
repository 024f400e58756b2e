//! Cursors: DECLARE, FETCH and CLOSE, as PostgreSQL has them.
//!
//! ```text
//!   BEGIN; DECLARE c [NO SCROLL | SCROLL] CURSOR [WITH HOLD] FOR SELECT ...
//!   FETCH [NEXT | PRIOR | FIRST | LAST | ABSOLUTE n | RELATIVE n | n | ALL
//!          | FORWARD [n | ALL] | BACKWARD [n | ALL]] FROM c
//!   CLOSE c | ALL
//! ```
//!
//! A cursor's query is planned when it is declared and read as FETCH asks
//! for rows, through a read-only transaction of its own pinned to the
//! declaring statement's snapshot, so later writes of the transaction (or
//! a READ COMMITTED statement's newer snapshot) do not show, as in
//! PostgreSQL. A NO SCROLL cursor keeps only the row it stands on, so it
//! pages through a result of any size; a SCROLL cursor (the default) keeps
//! the rows it has read, under the session's memory limit (53200 past it),
//! to move backward. A cursor declared after the transaction wrote anything
//! reads its whole result at DECLARE instead (its own transaction could not
//! see those writes).
//!
//! A cursor ends with its transaction; one declared WITH HOLD outlives the
//! commit of the transaction that declared it (not its rollback) until
//! CLOSE or the end of the session: it reads the rest of its rows at that
//! commit, as PostgreSQL does. The position is PostgreSQL's: before the
//! first row, on a row, or after the last.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{self, CloseCursor, FetchDirection, Statement};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::execute::{ident, Output};
use super::planner::{Planner, Rows};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::mvcc::IsolationLevel;
use crate::engine::session::{Open, SharedTxn};
use crate::engine::Session;

/// The most cursors a session may have open at once.
pub const MAX_CURSORS: usize = 1024;

/// Cursors by name.
pub(crate) type Cursors = HashMap<String, Cursor>;

/// A declared cursor: the rows read so far and where it stands.
pub(crate) struct Cursor {
    /// Rows read and kept: those from `dropped` on.
    rows: RecordBatch,
    /// Rows read and let go (NO SCROLL keeps none behind its position).
    dropped: usize,
    /// The query, while it has rows left to read.
    source: Option<Source>,
    /// 0 before the first row, n on row n, rows + 1 after the last.
    position: usize,
    /// False for NO SCROLL: only forward.
    scroll: bool,
    hold: bool,
}

/// A cursor's running query and the transaction it reads through.
struct Source {
    planner: Arc<Planner>,
    /// Behind a lock only so that a session can be shared between threads
    /// (a bulk load's); FETCH has the session to itself.
    stream: parking_lot::Mutex<SendableRecordBatchStream>,
    /// Dropped after the stream, which holds it too.
    _txn: SharedTxn,
}

impl Cursor {
    /// Whether the cursor survives the commit of the transaction that declared it.
    pub(crate) fn is_held(&self) -> bool {
        self.hold
    }

    /// Reads rows until `wanted` (counted from the first) have been read, or
    /// the query ends.
    fn read_to(&mut self, session: &Session, wanted: usize) -> Result<()> {
        let mut batches = vec![self.rows.clone()];
        let mut total = self.dropped + self.rows.num_rows();
        let mut bytes = self.rows.get_array_memory_size();
        while total < wanted {
            let Some(source) = &mut self.source else {
                break;
            };
            let next = session
                .shared
                .runtime
                .block_on(source.planner.next_batch(source.stream.get_mut()))?;
            let Some(batch) = next else {
                self.source = None;
                break;
            };
            total += batch.num_rows();
            bytes += batch.get_array_memory_size();
            if bytes > session.memory_limit {
                return Err(crate::engine::memory::exceeded(
                    "the rows a cursor holds (a NO SCROLL cursor keeps fewer)",
                    session.memory_limit,
                ));
            }
            batches.push(batch);
        }
        if batches.len() > 1 {
            self.rows = concat_batches(&self.rows.schema(), &batches)
                .map_err(|e| Error::Internal(format!("Arrow: {e}")))?;
        }
        Ok(())
    }

    /// Lets go of the rows a NO SCROLL cursor can no longer return.
    fn forget_passed(&mut self) {
        let keep_from = self.position.saturating_sub(1).max(self.dropped);
        let skip = keep_from - self.dropped;
        if self.scroll || skip == 0 {
            return;
        }
        let skip = skip.min(self.rows.num_rows());
        self.rows = self.rows.slice(skip, self.rows.num_rows() - skip);
        // Slices share their buffers: copy the few rows left, so the
        // passed ones are freed.
        if let Ok(copy) = concat_batches(&self.rows.schema(), [&self.rows]) {
            self.rows = copy;
        }
        self.dropped += skip;
    }
}

/// A move of the cursor: the rows it returns, in order, and where it ends.
struct Move {
    rows: Vec<u32>,
    position: usize,
}

impl Session {
    pub(super) fn declare_sql(&mut self, declares: Vec<ast::Declare>) -> Result<Output> {
        let [declare] = <[ast::Declare; 1]>::try_from(declares)
            .map_err(|_| Error::invalid(SqlState::SYNTAX_ERROR, "DECLARE names one cursor"))?;
        let (Some(ast::DeclareType::Cursor), [name], Some(query)) = (
            declare.declare_type,
            declare.names.as_slice(),
            declare.for_query,
        ) else {
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                "DECLARE declares a cursor: DECLARE name CURSOR FOR query",
            ));
        };
        if declare.binary == Some(true) {
            return Err(Error::Unsupported("BINARY cursors".into()));
        }
        if !query.locks.is_empty() {
            return Err(Error::Unsupported(
                "DECLARE CURSOR with FOR UPDATE or FOR SHARE".into(),
            ));
        }
        let name = ident(name);
        let hold = declare.hold == Some(true);
        if !hold && !self.in_transaction() {
            return Err(Error::TransactionState {
                code: SqlState::NO_ACTIVE_SQL_TRANSACTION,
                message: "DECLARE CURSOR can only be used in transaction blocks".into(),
            });
        }
        let open = self.txn.as_ref().map_or(0, |open| open.cursors.len());
        if open + self.held_cursors.len() >= MAX_CURSORS {
            return Err(Error::LimitExceeded {
                code: SqlState::PROGRAM_LIMIT_EXCEEDED,
                message: format!("a session has at most {MAX_CURSORS} open cursors"),
            });
        }
        if self.cursor(&name).is_some() {
            return Err(Error::AlreadyExists {
                code: SqlState::DUPLICATE_CURSOR,
                message: format!("cursor \"{name}\" already exists"),
            });
        }
        let wrote = self
            .txn
            .as_ref()
            .is_some_and(|open| open.txn.lock().has_writes());
        let scroll = declare.scroll != Some(false);
        let cursor = if wrote {
            let Output::Rows(rows) = self.query(Statement::Query(query))? else {
                return Err(Error::Internal("a cursor's query without rows".into()));
            };
            let rows = concat_batches(&rows.schema, &rows.batches)
                .map_err(|e| Error::Internal(format!("Arrow: {e}")))?;
            Cursor {
                rows,
                dropped: 0,
                source: None,
                position: 0,
                scroll,
                hold,
            }
        } else {
            let source = self.cursor_source(Statement::Query(query))?;
            let schema = source.stream.lock().schema();
            Cursor {
                rows: RecordBatch::new_empty(schema),
                dropped: 0,
                source: Some(source),
                position: 0,
                scroll,
                hold,
            }
        };
        match &mut self.txn {
            Some(open) => open.cursors.insert(name, cursor),
            None => self.held_cursors.insert(name, cursor),
        };
        Ok(Output::command("DECLARE CURSOR"))
    }

    pub(super) fn fetch_sql(
        &mut self,
        name: &ast::Ident,
        direction: &FetchDirection,
    ) -> Result<Output> {
        let name = ident(name);
        let (mut cursor, held) = self.take_cursor(&name)?;
        let result = self.fetch_from(&mut cursor, direction);
        match (held, &mut self.txn) {
            (false, Some(open)) => open.cursors.insert(name, cursor),
            _ => self.held_cursors.insert(name, cursor),
        };
        result
    }

    fn fetch_from(&mut self, cursor: &mut Cursor, direction: &FetchDirection) -> Result<Output> {
        let wanted = rows_wanted(cursor.position, direction)?;
        cursor.read_to(self, wanted)?;
        let step = plan(cursor, direction)?;
        if !cursor.scroll && backward(cursor.position, &step) {
            return Err(Error::invalid(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                "cursor can only scan forward (declare it with SCROLL to move backward)",
            ));
        }
        let dropped = cursor.dropped as u32;
        let indices = UInt32Array::from_iter_values(step.rows.iter().map(|r| r - dropped));
        let batch = take_record_batch(&cursor.rows, &indices)
            .map_err(|e| Error::Internal(format!("Arrow: {e}")))?;
        cursor.position = step.position;
        cursor.forget_passed();
        Ok(Output::Rows(Rows {
            schema: cursor.rows.schema(),
            batches: vec![batch],
            command: Some("FETCH"),
        }))
    }

    /// Plans a cursor's query to read through a read-only transaction of
    /// its own, at the snapshot the running statement reads.
    fn cursor_source(&mut self, query: Statement) -> Result<Source> {
        let mut txn = self.begin_transaction(IsolationLevel::RepeatableRead);
        if let Some(open) = &self.txn {
            // The transaction block holds back garbage collection for this
            // snapshot while the cursor lives: a held cursor reads its rows
            // out before the block commits.
            txn.pin_snapshot(open.txn.lock().read_ts());
        }
        let reader = Open::new(txn);
        let planner = self.planner()?;
        let (_, stream) = self
            .shared
            .runtime
            .block_on(planner.stream(&reader.txn, query, None))?;
        Ok(Source {
            planner,
            stream: parking_lot::Mutex::new(stream),
            _txn: reader.txn.clone(),
        })
    }

    /// Reads the rest of the rows of the cursors that outlive the commit of
    /// the transaction block `open`.
    pub(in crate::engine) fn read_held_cursors(&self, open: &mut Open) -> Result<()> {
        for cursor in open.cursors.values_mut().filter(|c| c.hold) {
            cursor.read_to(self, usize::MAX)?;
        }
        Ok(())
    }

    pub(super) fn close_sql(&mut self, which: &CloseCursor) -> Result<Output> {
        match which {
            CloseCursor::All => {
                self.held_cursors.clear();
                if let Some(open) = &mut self.txn {
                    open.cursors.clear();
                }
            }
            CloseCursor::Specific { name } => {
                let name = ident(name);
                self.cursor_mut(&name)?;
                self.held_cursors.remove(&name);
                if let Some(open) = &mut self.txn {
                    open.cursors.remove(&name);
                }
            }
        }
        Ok(Output::command("CLOSE CURSOR"))
    }

    /// The columns FETCH from cursor `name` returns, for Describe.
    pub(super) fn cursor_columns(&self, name: &ast::Ident) -> Option<SchemaRef> {
        self.cursor(&ident(name)).map(|c| c.rows.schema())
    }

    fn cursor(&self, name: &str) -> Option<&Cursor> {
        self.txn
            .as_ref()
            .and_then(|open| open.cursors.get(name))
            .or_else(|| self.held_cursors.get(name))
    }

    fn cursor_mut(&mut self, name: &str) -> Result<&mut Cursor> {
        let open = self.txn.as_mut().map(|open| &mut open.cursors);
        open.and_then(|c| c.get_mut(name))
            .or_else(|| self.held_cursors.get_mut(name))
            .ok_or_else(|| no_cursor(name))
    }

    /// Takes cursor `name` out of where it is kept, for a FETCH that needs
    /// the session beside it; true when it came from the held cursors.
    fn take_cursor(&mut self, name: &str) -> Result<(Cursor, bool)> {
        if let Some(cursor) = self.txn.as_mut().and_then(|o| o.cursors.remove(name)) {
            return Ok((cursor, false));
        }
        let cursor = self
            .held_cursors
            .remove(name)
            .ok_or_else(|| no_cursor(name))?;
        Ok((cursor, true))
    }
}

/// The row count of a FETCH.
fn count(limit: &ast::ValueWithSpan) -> Result<i64> {
    match &limit.value {
        ast::Value::Number(n, _) => n.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| Error::invalid(SqlState::SYNTAX_ERROR, format!("a row count, not {limit}")))
}

fn no_cursor(name: &str) -> Error {
    Error::NotFound {
        code: SqlState::INVALID_CURSOR_NAME,
        message: format!("cursor \"{name}\" does not exist"),
    }
}

/// How many rows (from the first) the cursor must have read for a move
/// from `p` in `direction`: all of them where the end decides.
fn rows_wanted(p: usize, direction: &FetchDirection) -> Result<usize> {
    let ahead = |k: i64| -> usize {
        match k {
            k if k <= 0 => p,
            k => p.saturating_add(k as usize),
        }
    };
    Ok(match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => ahead(1),
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
            ahead(count(limit)?)
        }
        FetchDirection::Relative { limit } => ahead(count(limit)?),
        FetchDirection::First => 1,
        FetchDirection::Absolute { limit } => match count(limit)? {
            k if k > 0 => k as usize,
            _ => usize::MAX,
        },
        FetchDirection::Prior | FetchDirection::Backward { .. } | FetchDirection::BackwardAll => p,
        FetchDirection::All | FetchDirection::ForwardAll | FetchDirection::Last => usize::MAX,
    })
}

/// Where `direction` takes `cursor`, and the rows it passes on the way.
fn plan(cursor: &Cursor, direction: &FetchDirection) -> Result<Move> {
    // The rows read so far: the whole result once the query has ended, and
    // enough for the move (see `rows_wanted`) before.
    let n = (cursor.dropped + cursor.rows.num_rows()) as i64;
    let p = cursor.position as i64;
    Ok(match direction {
        FetchDirection::Next => relative_rows(p, n, 1),
        FetchDirection::Prior => relative_rows(p, n, -1),
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
            relative_rows(p, n, count(limit)?)
        }
        FetchDirection::Forward { limit: None } => relative_rows(p, n, 1),
        FetchDirection::Backward { limit: Some(limit) } => relative_rows(p, n, -count(limit)?),
        FetchDirection::Backward { limit: None } => relative_rows(p, n, -1),
        FetchDirection::All | FetchDirection::ForwardAll => relative_rows(p, n, i64::MAX),
        FetchDirection::BackwardAll => relative_rows(p, n, -i64::MAX),
        FetchDirection::First => absolute(n, 1),
        FetchDirection::Last => absolute(n, -1),
        FetchDirection::Absolute { limit } => absolute(n, count(limit)?),
        FetchDirection::Relative { limit } => {
            let target = p.saturating_add(count(limit)?).clamp(0, n + 1);
            at(n, target)
        }
    })
}

/// `FETCH count`: the next `count` rows (the previous ones when negative;
/// the current row when 0), ending on the last one returned or past the end.
fn relative_rows(p: i64, n: i64, count: i64) -> Move {
    if count == 0 {
        return at(n, p);
    }
    let mut rows = Vec::new();
    let mut position = p;
    let step = count.signum();
    let mut left = count.unsigned_abs();
    while left > 0 {
        position += step;
        if position < 1 || position > n {
            position = position.clamp(0, n + 1);
            break;
        }
        rows.push((position - 1) as u32);
        left -= 1;
    }
    Move {
        rows,
        position: position as usize,
    }
}

/// `FETCH ABSOLUTE k`: row k (counted from the end when negative).
fn absolute(n: i64, k: i64) -> Move {
    let target = if k >= 0 {
        k.min(n + 1)
    } else {
        (n + 1 + k).max(0)
    };
    at(n, target)
}

/// The cursor on `position`, returning that row if there is one.
fn at(n: i64, position: i64) -> Move {
    let rows = if (1..=n).contains(&position) {
        vec![(position - 1) as u32]
    } else {
        Vec::new()
    };
    Move {
        rows,
        position: position as usize,
    }
}

/// Whether a move reads a row at or before the position it starts from.
fn backward(from: usize, step: &Move) -> bool {
    step.position < from || step.rows.first().is_some_and(|&r| (r as usize) < from)
}

/// Completes the FETCH forms the parser lacks: `FETCH c` and `FETCH NEXT c`
/// (no FROM), `FETCH FORWARD FROM c` and `FETCH BACKWARD FROM c` (no count),
/// as PostgreSQL's grammar has them.
pub(super) fn complete_fetch(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
    if !tokens.iter().any(|t| is(t, Keyword::FETCH)) {
        return tokens;
    }
    let space = || TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space));
    let mut out = Vec::with_capacity(tokens.len() + 4);
    let mut start = true;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if matches!(token.token, Token::Whitespace(_)) {
            out.push(token.clone());
            i += 1;
            continue;
        }
        if !(start && is(token, Keyword::FETCH)) {
            start = matches!(token.token, Token::SemiColon);
            out.push(token.clone());
            i += 1;
            continue;
        }
        // The statement's words, to its end.
        let end = (i..tokens.len())
            .find(|&j| matches!(tokens[j].token, Token::SemiColon))
            .unwrap_or(tokens.len());
        let words: Vec<&TokenWithSpan> = tokens[i + 1..end]
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        let Some((name, rest)) = words.split_last() else {
            out.extend_from_slice(&tokens[i..end]);
            i = end;
            continue;
        };
        let mut direction: Vec<TokenWithSpan> = match rest.split_last() {
            Some((from, direction)) if is(from, Keyword::FROM) || is(from, Keyword::IN) => {
                direction.iter().map(|t| (*t).clone()).collect()
            }
            _ => rest.iter().map(|t| (*t).clone()).collect(),
        };
        // A signed count (`ABSOLUTE -2`) as one number.
        if let Some(minus) = direction.iter().position(|t| t.token == Token::Minus) {
            if let Some(Token::Number(n, long)) = direction.get(minus + 1).map(|t| &t.token) {
                let signed = Token::Number(format!("-{n}"), *long);
                direction.splice(minus..minus + 2, [TokenWithSpan::wrap(signed)]);
            }
        }
        match direction.as_slice() {
            [] => direction.push(TokenWithSpan::wrap(Token::make_keyword("NEXT"))),
            [only] if is(only, Keyword::FORWARD) || is(only, Keyword::BACKWARD) => {
                direction.push(TokenWithSpan::wrap(Token::Number("1".into(), false)));
            }
            _ => {}
        }
        out.push(token.clone());
        for t in direction {
            out.push(space());
            out.push(t);
        }
        out.push(space());
        out.push(TokenWithSpan::wrap(Token::make_keyword("FROM")));
        out.push(space());
        out.push((*name).clone());
        i = end;
        start = false;
    }
    out
}
