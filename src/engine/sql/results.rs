//! Query results read as the client takes them.
//!
//! A query run inside [`Session::streaming`] does not collect its rows: it
//! returns [`Output::Stream`], a handle to its running plan, and each
//! [`Session::next_batch`] reads the next batch from storage. The server
//! sends DataRows, `COPY TO` its lines and `omen export` its file as the
//! batches arrive, so a result of any size needs about one batch of memory.
//!
//! ```text
//!   streaming(SELECT ...) -> Output::Stream(handle)   planned, nothing read
//!   next_batch(handle)    -> batch 1                  read now
//!   next_batch(handle)    -> ...
//!   next_batch(handle)    -> None                     the query's own
//!                                                     transaction commits
//! ```
//!
//! Outside a transaction block the query has a transaction of its own,
//! which stays open (its snapshot held) until the last batch is read or the
//! handle is dropped. Inside a block it reads through the block's
//! transaction, whose snapshot and own writes change with the next
//! statement: so before another statement runs, the rows it has not yet
//! handed out are read ahead into memory (under the memory limit), and the
//! client still gets the rows as of its own statement. COMMIT and ROLLBACK
//! close a block's results, as they close PostgreSQL's portals.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::Statement;
use parking_lot::Mutex;

use super::execute::Output;
use super::planner::Planner;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::session::{commit, Open, Session};

/// A running query's result, read with [`Session::next_batch`]. Dropping it
/// closes the query (its transaction ends at the session's next call).
pub struct RowStream {
    id: u64,
    schema: SchemaRef,
    closed: Arc<Mutex<Vec<u64>>>,
}

impl RowStream {
    /// The result's columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl Drop for RowStream {
    fn drop(&mut self) {
        self.closed.lock().push(self.id);
    }
}

impl fmt::Debug for RowStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowStream({})", self.id)
    }
}

/// A session's running results.
#[derive(Default)]
pub(crate) struct Streams {
    /// Whether the next query should stream ([`Session::streaming`]).
    wanted: bool,
    next_id: u64,
    running: Vec<Running>,
    /// Handles dropped since the session last looked.
    closed: Arc<Mutex<Vec<u64>>>,
}

struct Running {
    id: u64,
    planner: Arc<Planner>,
    /// The plan; None once it has given its last batch.
    stream: Option<SendableRecordBatchStream>,
    /// The query's own transaction, outside a transaction block.
    implicit: Option<Open>,
    /// Batches read ahead because another statement of the block ran.
    ahead: VecDeque<RecordBatch>,
    /// The error reading ahead met, for the reader to get in its turn.
    failed: Option<Error>,
}

impl Session {
    /// Runs `f`, in which a query (outside the fast path) returns
    /// [`Output::Stream`] instead of collected rows.
    pub fn streaming<T>(&mut self, f: impl FnOnce(&mut Session) -> T) -> T {
        self.streams.wanted = true;
        let value = f(self);
        self.streams.wanted = false;
        value
    }

    /// Whether the statement being dispatched should stream its rows; asked
    /// once per statement.
    pub(super) fn take_streaming(&mut self) -> bool {
        std::mem::take(&mut self.streams.wanted)
    }

    /// Plans `statement` and returns its result unread.
    pub(super) fn start_stream(&mut self, statement: Statement) -> Result<Output> {
        let planner = self.planner()?;
        let shared = self.shared.clone();
        let start = |open: &mut Open| {
            shared
                .runtime
                .block_on(planner.stream(&open.txn, statement, None))
        };
        let (schema, stream, implicit) = if self.txn.is_some() {
            let (schema, stream) = self.statement(start)?;
            (schema, stream, None)
        } else {
            self.copy_abort();
            self.bulk_abort();
            let mut open = Open::new(self.begin_transaction(self.default_isolation()));
            let (schema, stream) = start(&mut open)?;
            (schema, stream, Some(open))
        };
        let streams = &mut self.streams;
        streams.next_id += 1;
        let id = streams.next_id;
        streams.running.push(Running {
            id,
            planner,
            stream: Some(stream),
            implicit,
            ahead: VecDeque::new(),
            failed: None,
        });
        Ok(Output::Stream(RowStream {
            id,
            schema,
            closed: streams.closed.clone(),
        }))
    }

    /// The next batch of `stream`'s rows; None after the last, when the
    /// query's own transaction has committed. An error ends the query (and
    /// fails the transaction block it ran in).
    pub fn next_batch(&mut self, stream: &RowStream) -> Result<Option<RecordBatch>> {
        self.reap_streams();
        let Some(i) = self.streams.running.iter().position(|r| r.id == stream.id) else {
            return Err(Error::invalid(
                SqlState::INVALID_CURSOR_NAME,
                "the query's result is closed: its transaction ended",
            ));
        };
        let _scope = self.catalog_scope();
        let running = &mut self.streams.running[i];
        let next = match running.ahead.pop_front() {
            Some(batch) => Ok(Some(batch)),
            None => match running.failed.take() {
                Some(e) => Err(e),
                None => pull(&self.shared.runtime, running, self.memory_limit),
            },
        };
        drop(_scope);
        match next {
            Ok(Some(batch)) => Ok(Some(batch)),
            Ok(None) => {
                let running = self.streams.running.remove(i);
                drop(running.stream);
                if let Some(open) = running.implicit {
                    commit(&self.shared, open)?;
                }
                Ok(None)
            }
            Err(e) => {
                let running = self.streams.running.remove(i);
                if running.implicit.is_none() {
                    self.fail_transaction();
                }
                Err(e)
            }
        }
    }

    /// Reads the results of the transaction block's queries ahead, before
    /// another statement changes what the block's transaction sees.
    pub(in crate::engine) fn settle_streams(&mut self) {
        self.reap_streams();
        let limit = self.memory_limit;
        for running in &mut self.streams.running {
            if running.implicit.is_some() || running.stream.is_none() {
                continue;
            }
            let mut bytes: usize = running
                .ahead
                .iter()
                .map(RecordBatch::get_array_memory_size)
                .sum();
            loop {
                match pull(&self.shared.runtime, running, limit) {
                    Ok(Some(batch)) => {
                        bytes += batch.get_array_memory_size();
                        running.ahead.push_back(batch);
                        if bytes > limit {
                            running.stream = None;
                            running.ahead.clear();
                            running.failed = Some(crate::engine::memory::exceeded(
                                "an unread query result, held while another statement runs",
                                limit,
                            ));
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        running.stream = None;
                        running.failed = Some(e);
                        break;
                    }
                }
            }
        }
    }

    /// Closes the results that read through the transaction block's
    /// transaction, which is ending.
    pub(in crate::engine) fn close_block_streams(&mut self) {
        self.streams.running.retain(|r| r.implicit.is_some());
    }

    /// Closes every result (the session ends).
    pub(in crate::engine) fn close_streams(&mut self) {
        self.streams.running.clear();
    }

    /// Ends the queries whose handles were dropped; their own transactions
    /// commit (they only read).
    fn reap_streams(&mut self) {
        let closed = std::mem::take(&mut *self.streams.closed.lock());
        if closed.is_empty() {
            return;
        }
        let (gone, kept) = std::mem::take(&mut self.streams.running)
            .into_iter()
            .partition(|r| closed.contains(&r.id));
        self.streams.running = kept;
        for running in gone {
            let Running {
                stream, implicit, ..
            } = running;
            drop(stream);
            if let Some(open) = implicit {
                // A read-only transaction: its commit cannot conflict, and
                // nothing waits for its outcome.
                let _ = commit(&self.shared, open);
            }
        }
    }
}

/// The next batch of `running`'s plan; None (and the plan dropped) at its
/// end. A batch larger than `limit` (one huge value) fails with 53200.
fn pull(
    runtime: &tokio::runtime::Runtime,
    running: &mut Running,
    limit: usize,
) -> Result<Option<RecordBatch>> {
    let Some(stream) = &mut running.stream else {
        return Ok(None);
    };
    let next = match runtime.block_on(running.planner.next_batch(stream)) {
        Ok(Some(batch)) if batch.get_array_memory_size() > limit => Err(
            crate::engine::memory::exceeded("the statement's result", limit),
        ),
        next => next,
    };
    if !matches!(next, Ok(Some(_))) {
        running.stream = None;
    }
    next
}

/// A statement's rows, a batch at a time as they are read
/// ([`Session::query_batches`]).
pub struct Batches<'a> {
    session: &'a mut Session,
    schema: SchemaRef,
    source: Source,
}

enum Source {
    Collected(std::vec::IntoIter<RecordBatch>),
    Stream(RowStream),
}

impl Session {
    /// Runs `statement` with its rows streamed; None when it returns no
    /// rows (a command).
    pub fn query_batches(&mut self, statement: Statement) -> Result<Option<Batches<'_>>> {
        let output = self.streaming(|session| session.execute_statement(statement))?;
        let (schema, source) = match output {
            Output::Rows(rows) => (rows.schema, Source::Collected(rows.batches.into_iter())),
            Output::Stream(stream) => (stream.schema().clone(), Source::Stream(stream)),
            Output::Command { .. } => return Ok(None),
        };
        Ok(Some(Batches {
            session: self,
            schema,
            source,
        }))
    }
}

impl Batches<'_> {
    /// The rows' columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<RecordBatch>;

    /// The next batch; None after the last, or after an error.
    fn next(&mut self) -> Option<Result<RecordBatch>> {
        let next = match &mut self.source {
            Source::Collected(batches) => return batches.next().map(Ok),
            Source::Stream(stream) => self.session.next_batch(stream),
        };
        if !matches!(next, Ok(Some(_))) {
            self.source = Source::Collected(Vec::new().into_iter());
        }
        next.transpose()
    }
}
