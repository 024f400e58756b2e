//! Cursors: DECLARE, FETCH and CLOSE, as PostgreSQL has them.
//!
//! ```text
//!   BEGIN; DECLARE c [NO SCROLL | SCROLL] CURSOR [WITH HOLD] FOR SELECT ...
//!   FETCH [NEXT | PRIOR | FIRST | LAST | ABSOLUTE n | RELATIVE n | n | ALL
//!          | FORWARD [n | ALL] | BACKWARD [n | ALL]] FROM c
//!   CLOSE c | ALL
//! ```
//!
//! A cursor's query runs when it is declared, at that statement's snapshot,
//! and its rows are kept (under the session's memory limit: a larger result
//! fails the DECLARE with 53200), so FETCH pages through them in any
//! direction and later writes of the transaction do not show, as in
//! PostgreSQL. A cursor ends with its transaction; one declared WITH HOLD
//! outlives the commit of the transaction that declared it (not its
//! rollback) until CLOSE or the end of the session. The position is
//! PostgreSQL's: before the first row, on a row, or after the last.

use std::collections::HashMap;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{self, CloseCursor, FetchDirection, Statement};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::execute::{ident, Output};
use super::planner::Rows;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::Session;

/// The most cursors a session may have open at once.
pub const MAX_CURSORS: usize = 1024;

/// Cursors by name.
pub(crate) type Cursors = HashMap<String, Cursor>;

/// A declared cursor: its rows and where it stands.
pub(crate) struct Cursor {
    rows: RecordBatch,
    /// 0 before the first row, n on row n, rows + 1 after the last.
    position: usize,
    /// False for NO SCROLL: only forward.
    scroll: bool,
    hold: bool,
}

impl Cursor {
    /// Whether the cursor survives the commit of the transaction that declared it.
    pub(crate) fn is_held(&self) -> bool {
        self.hold
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
        let Output::Rows(rows) = self.query(Statement::Query(query))? else {
            return Err(Error::Internal("a cursor's query without rows".into()));
        };
        let rows = concat_batches(&rows.schema, &rows.batches)
            .map_err(|e| Error::Internal(format!("Arrow: {e}")))?;
        let cursor = Cursor {
            rows,
            position: 0,
            scroll: declare.scroll != Some(false),
            hold,
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
        let cursor = self.cursor_mut(&name)?;
        let step = plan(cursor, direction)?;
        if !cursor.scroll && backward(cursor.position, &step) {
            return Err(Error::invalid(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                "cursor can only scan forward (declare it with SCROLL to move backward)",
            ));
        }
        let indices = UInt32Array::from(step.rows);
        let batch = take_record_batch(&cursor.rows, &indices)
            .map_err(|e| Error::Internal(format!("Arrow: {e}")))?;
        cursor.position = step.position;
        Ok(Output::Rows(Rows {
            schema: cursor.rows.schema(),
            batches: vec![batch],
            command: Some("FETCH"),
        }))
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
            .ok_or_else(|| Error::NotFound {
                code: SqlState::INVALID_CURSOR_NAME,
                message: format!("cursor \"{name}\" does not exist"),
            })
    }
}

/// Where `direction` takes `cursor`, and the rows it passes on the way.
fn plan(cursor: &Cursor, direction: &FetchDirection) -> Result<Move> {
    let count = |limit: &ast::ValueWithSpan| -> Result<i64> {
        match &limit.value {
            ast::Value::Number(n, _) => n.parse::<i64>().ok(),
            _ => None,
        }
        .ok_or_else(|| Error::invalid(SqlState::SYNTAX_ERROR, format!("a row count, not {limit}")))
    };
    let n = cursor.rows.num_rows() as i64;
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
