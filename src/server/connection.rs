//! One client connection: an engine [`Session`] behind the simple and
//! extended query protocols.
//!
//! Engine calls block (storage reads, fsyncs, DataFusion on the engine's own
//! runtime), so each runs on tokio's blocking pool while the connection's task
//! waits. The session's transaction state decides the status byte of every
//! ReadyForQuery (idle, in a transaction, failed).

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{self, Statement};
use futures::stream::BoxStream;
use futures::{stream, FutureExt, Sink, SinkExt, StreamExt};
use parking_lot::Mutex;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::DataRow;
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::PgWireBackendMessage;

use super::copy::{self, Copy};
use super::wire;
use super::{log, Server, ServerBackends};
use omen::engine::sql::{Parsed, StatementCache};
use omen::engine::types::Value;
use omen::{Error, Output, PreparedStatement, RowStream, Rows, Session, SqlState};

/// A statement prepared by Parse: parsed once, described once, its fast-path
/// form kept.
#[derive(Debug)]
pub struct Prepared {
    engine: PreparedStatement,
    /// The SQL the client sent, for pg_stat_activity.
    text: Arc<str>,
    /// The type of each parameter: the client's, else the one the statement
    /// gives it, else text.
    params: Vec<Type>,
}

/// The query handlers of one connection.
pub struct Connection {
    inner: Arc<Inner>,
}

/// A connection's session; it also parses the extended protocol's statements.
pub struct Inner {
    session: Arc<Mutex<Session>>,
    /// Whether the session has taken the login's user.
    started: Mutex<bool>,
    /// The COPY FROM STDIN in progress: its target and the data so far.
    copy_in: Mutex<Option<CopyIn>>,
    /// Statements of simple queries run before, kept parsed.
    statements: Mutex<StatementCache>,
    server: Arc<Server>,
    /// The process id cancel requests name this connection by.
    pid: Mutex<Option<i32>>,
    /// Engine calls so far; a watcher for idle_in_transaction_session_timeout
    /// knows by it whether the client did anything while it waited.
    activity: AtomicU64,
    /// This connection, for the idle-in-transaction watcher.
    me: std::sync::Weak<Inner>,
    /// Whether the connection sat idle in a transaction past the timeout:
    /// its transaction is rolled back and its next message ends it.
    expired: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.lock().take() {
            self.server.cancels.lock().remove(&pid);
        }
    }
}

/// A COPY FROM STDIN whose data is arriving: complete records go to the
/// session in batches of about [`COPY_BATCH`] bytes, so memory holds one
/// batch of text, not the whole input.
struct CopyIn {
    format: copy::Format,
    /// Data not yet sent to the session: at most one batch and a partial record.
    data: Vec<u8>,
    /// Records (the header included) sent to the session so far.
    records: usize,
    /// Whether the data's end marker (`\.`) was seen; what follows is ignored.
    ended: bool,
    /// The error that stopped the COPY; later data is discarded and it is
    /// reported when the client finishes.
    failed: Option<Error>,
}

/// Bytes of COPY data gathered before they are parsed and written.
const COPY_BATCH: usize = 1 << 20;
/// The longest COPY record: data past this without a record end is refused.
const COPY_MAX_RECORD: usize = 256 << 20;

impl Connection {
    pub fn new(session: Session, server: Arc<Server>) -> Connection {
        Connection {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                session: Arc::new(Mutex::new(session)),
                started: Mutex::new(false),
                copy_in: Mutex::new(None),
                statements: Mutex::default(),
                server,
                pid: Mutex::new(None),
                activity: AtomicU64::new(0),
                expired: AtomicBool::new(false),
            }),
        }
    }
}

impl Inner {
    /// Runs `f` on the session on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> T + Send + 'static,
    ) -> PgWireResult<T> {
        if self.expired.load(Ordering::SeqCst) {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "25P03".into(),
                "terminating connection due to idle-in-transaction timeout".into(),
            ))));
        }
        let seen = self.activity.fetch_add(1, Ordering::SeqCst) + 1;
        let session = self.session.clone();
        let (value, idle_timeout) = tokio::task::spawn_blocking(move || {
            let mut session = session.lock();
            // A bug that panics fails this call alone: the session undoes the
            // statement and the connection goes on.
            let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut session)))
                .map_err(|panic| {
                    session.recover_from_panic();
                    omen::engine::panic_message(panic.as_ref())
                });
            let idle_timeout = session
                .in_transaction()
                .then(|| session.idle_in_transaction_timeout())
                .flatten();
            (value, idle_timeout)
        })
        .await
        .map_err(|e| user_error(Error::Internal(format!("a statement's thread failed: {e}"))))?;
        let value = value.map_err(|message| {
            log!("a call into the engine panicked: {message}");
            user_error(Error::Internal(format!(
                "the statement failed on a bug: {message}"
            )))
        })?;
        if let Some(timeout) = idle_timeout {
            let inner = self.me.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(inner) = inner.upgrade() {
                    inner.end_idle_transaction(seen).await;
                }
            });
        }
        Ok(value)
    }

    /// Parses a batch of complete COPY records and writes them through the
    /// session; a failure is kept for the end of the COPY.
    async fn copy_batch(&self, batch: Vec<u8>) -> PgWireResult<()> {
        let (format, first_record) = {
            let guard = self.copy_in.lock();
            let Some(copy) = guard.as_ref() else {
                return Ok(());
            };
            if batch.is_empty() || copy.failed.is_some() || copy.ended {
                return Ok(());
            }
            let mut format = copy.format.clone();
            // The header is the first record of the first batch only.
            format.header &= copy.records == 0;
            (format, copy.records)
        };
        let parsed = copy::parse(&batch, &format, first_record);
        drop(batch);
        let result = match parsed {
            Ok(chunk) => {
                let records = chunk.records;
                let ended = chunk.ended;
                let rows = chunk.rows;
                self.run(move |session| session.copy_rows(&rows))
                    .await?
                    .map(|_| (records, ended))
            }
            Err(e) => Err(e),
        };
        let mut guard = self.copy_in.lock();
        if let Some(copy) = guard.as_mut() {
            match result {
                Ok((records, ended)) => {
                    copy.records += records;
                    copy.ended = ended;
                }
                Err(e) => {
                    copy.data = Vec::new();
                    copy.failed = Some(e);
                }
            }
        }
        Ok(())
    }

    /// Rolls back the session's transaction if the client has done nothing
    /// since engine call `seen`: an idle transaction holds a snapshot that
    /// keeps old row versions from garbage collection.
    async fn end_idle_transaction(self: Arc<Self>, seen: u64) {
        if self.activity.load(Ordering::SeqCst) != seen {
            return;
        }
        let inner = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut session = inner.session.lock();
            if inner.activity.load(Ordering::SeqCst) == seen && session.in_transaction() {
                let _ = session.rollback();
                inner.expired.store(true, Ordering::SeqCst);
                log!(
                    "process {}: transaction rolled back after idle_in_transaction_session_timeout",
                    inner.pid.lock().unwrap_or_default()
                );
            }
        })
        .await;
    }

    /// On the first statement: the session acts as the login's user, and
    /// cancel requests with the connection's key reach it.
    fn start<C: ClientInfo>(&self, client: &C) {
        let mut started = self.started.lock();
        if !*started {
            let user = client.metadata().get(METADATA_USER).cloned();
            let mut session = self.session.lock();
            session.set_user(user);
            for (name, value) in &self.server.session_settings {
                let _ = session.set_setting(name, value);
            }
            // Settings the client sent at startup (application_name,
            // DateStyle, ...); one omen cannot take (a time zone other than
            // UTC) leaves the default, as the parameter status told the client.
            for (name, value) in client.metadata() {
                if !matches!(
                    name.as_str(),
                    "user" | "database" | "options" | "replication"
                ) {
                    let _ = session.set_setting(name, value);
                }
            }
            let (pid, key) = client.pid_and_secret_key();
            let role = session.user().unwrap_or_default().to_string();
            let backends =
                ServerBackends::register(&self.server, pid, key, session.canceller(), &role);
            session.set_backends(Arc::new(backends));
            let application = client
                .metadata()
                .get("application_name")
                .cloned()
                .unwrap_or_default();
            session.set_client(&role, &application);
            *self.pid.lock() = Some(pid);
            *started = true;
        }
    }

    /// Runs statements in order until one fails, with the response of each.
    async fn execute<C>(
        &self,
        client: &mut C,
        statements: Vec<Parsed>,
        text: &str,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let text = text.to_string();
        let (results, notices) = self
            .run(move |session| {
                session.set_query_text(&text);
                // Several reads and writes in one query outside a transaction
                // block run as one implicit transaction, as in PostgreSQL: all
                // of them take effect or none. Transaction control and DDL
                // keep their own statement-by-statement effect.
                let implicit = statements.len() > 1
                    && !session.in_transaction()
                    && statements.iter().all(|s| {
                        matches!(
                            s.statement(),
                            Statement::Query(_)
                                | Statement::Insert(_)
                                | Statement::Update(_)
                                | Statement::Delete(_)
                        )
                    });
                if implicit {
                    if let Err(e) = session.begin() {
                        return (vec![(Err(e), false, false)], session.take_notices());
                    }
                }
                let mut results = Vec::new();
                let count = statements.len();
                for (i, statement) in statements.into_iter().enumerate() {
                    let before = session.in_transaction() && !implicit;
                    // The last statement's rows are read as they are sent;
                    // earlier ones are collected, as their transaction may
                    // end before the response goes out.
                    let result = if i + 1 == count && !implicit {
                        session
                            .streaming(|session| session.execute_parsed(statement))
                            .and_then(|output| Answer::new(session, output))
                    } else {
                        session
                            .execute_parsed(statement)
                            .and_then(|output| Answer::new(session, output))
                    };
                    let failed = result.is_err();
                    results.push((result, before, session.in_transaction() && !implicit));
                    if failed {
                        break;
                    }
                }
                if implicit {
                    let failed = results.last().is_some_and(|(r, _, _)| r.is_err());
                    let end = if failed {
                        session.rollback()
                    } else {
                        session.commit()
                    };
                    if let (Err(e), Some(last)) = (end, results.last_mut()) {
                        last.0 = Err(e);
                    }
                }
                (results, session.take_notices())
            })
            .await?;
        send_notices(client, notices).await?;
        results
            .into_iter()
            .map(|(result, before, after)| match result {
                Ok(answer) => self.response(answer, before, after, &|_| FieldFormat::Text),
                Err(e) => Ok(Response::Error(Box::new(error_info(&e)))),
            })
            .collect()
    }
}

/// A statement's result as the connection sends it: a command's tag or
/// collected rows, or rows still to be read from the session.
pub enum Answer {
    /// A command's tag.
    Command(Output),
    Rows(Rows),
    /// Rows read from the session as they are sent; `first` is None for a
    /// query without rows.
    Stream {
        stream: RowStream,
        first: Option<RecordBatch>,
    },
}

impl Answer {
    /// `output`, with the first batch of rows still to be read read now, so
    /// a query that fails at once says so before its row description.
    fn new(session: &mut Session, output: Output) -> Result<Answer, Error> {
        Ok(match output {
            Output::Stream(stream) => {
                let first = session.next_batch(&stream)?;
                Answer::Stream { stream, first }
            }
            Output::Rows(rows) => Answer::Rows(rows),
            output => Answer::Command(output),
        })
    }
}

/// A result's batches as the response reads them.
type Batches = BoxStream<'static, PgWireResult<RecordBatch>>;

impl Inner {
    /// The columns and batches of a result with rows: collected ones, or
    /// read from the session one at a time as the response asks for them.
    fn batches(&self, answer: Answer) -> (SchemaRef, Batches) {
        match answer {
            Answer::Rows(rows) => (
                rows.schema,
                stream::iter(rows.batches.into_iter().map(Ok)).boxed(),
            ),
            Answer::Command(_) => (Arc::new(Schema::empty()), stream::empty().boxed()),
            Answer::Stream {
                stream,
                first: None,
            } => (stream.schema().clone(), stream::empty().boxed()),
            Answer::Stream {
                stream,
                first: Some(first),
            } => {
                let schema = stream.schema().clone();
                let me = self.me.clone();
                let rest = stream::unfold(Some(stream), move |stream| {
                    let me = me.clone();
                    async move {
                        // The end, an error, or a connection that is gone.
                        let (stream, inner) = (stream?, me.upgrade()?);
                        let next = inner
                            .run(move |session| {
                                let next = session.next_batch(&stream);
                                (stream, next)
                            })
                            .await;
                        match next {
                            Ok((stream, Ok(Some(batch)))) => Some((Ok(batch), Some(stream))),
                            Ok((_, Ok(None))) => None,
                            Ok((_, Err(e))) => Some((Err(user_error(e)), None)),
                            Err(e) => Some((Err(e), None)),
                        }
                    }
                });
                (
                    schema,
                    stream::once(async { Ok(first) }).chain(rest).boxed(),
                )
            }
        }
    }

    /// The response for one statement's result; `before` and `after` say
    /// whether a transaction was open around it, which moves the status byte.
    fn response(
        &self,
        answer: Answer,
        before: bool,
        after: bool,
        format: &dyn Fn(usize) -> FieldFormat,
    ) -> PgWireResult<Response> {
        let command = match &answer {
            Answer::Command(output) => {
                let tag = Tag::new(&output.to_string());
                return Ok(match (before, after) {
                    (false, true) => Response::TransactionStart(tag),
                    (true, false) => Response::TransactionEnd(tag),
                    _ => Response::Execution(tag),
                });
            }
            Answer::Rows(rows) => rows.command,
            Answer::Stream { .. } => None,
        };
        let (schema, mut batches) = self.batches(answer);
        let fields = Arc::new(wire::fields(&schema, format));
        // Rows are encoded a batch at a time as they are sent. The first
        // batch, in hand already, is encoded now, so a format omen cannot
        // send fails before the row description goes out.
        let first = match batches.next().now_or_never().flatten() {
            Some(batch) => {
                wire::encode_rows(std::slice::from_ref(&batch?), &fields).map_err(user_error)?
            }
            None => Vec::new(),
        };
        let encode = fields.clone();
        let rest = batches.flat_map(move |batch| {
            let rows: Vec<PgWireResult<DataRow>> = match batch.and_then(|batch| {
                wire::encode_rows(std::slice::from_ref(&batch), &encode).map_err(user_error)
            }) {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            stream::iter(rows)
        });
        let data = stream::iter(first.into_iter().map(Ok)).chain(rest);
        let mut response = QueryResponse::new(fields, data);
        match command {
            // The row count follows the tag; INSERT's carries an oid of 0 first.
            Some("INSERT") => response.set_command_tag("INSERT 0"),
            Some(tag) => response.set_command_tag(tag),
            None => {}
        }
        Ok(Response::Query(response))
    }

    /// Starts COPY FROM STDIN (the client sends data next) or runs COPY TO
    /// STDOUT.
    async fn start_copy(&self, copy: Copy) -> PgWireResult<Result<Response, Error>> {
        if copy.file.is_some() {
            // A file on the server: superusers only, as in PostgreSQL.
            let result = self
                .run(move |session| {
                    if !session.is_superuser() {
                        return Err(Error::invalid(
                            SqlState::INSUFFICIENT_PRIVILEGE,
                            "permission denied to COPY to or from a file (only superusers may; \\copy in psql reads a client file)",
                        ));
                    }
                    crate::commands::transfer::copy_file(session, &copy).map_err(|e| {
                        match e.downcast::<Error>() {
                            Ok(e) => e,
                            Err(e) => Error::invalid(SqlState::IO_ERROR, format!("{e:#}")),
                        }
                    })
                })
                .await?;
            return Ok(result.map(|n| Response::Execution(Tag::new("COPY").with_rows(n as usize))));
        }
        let Copy {
            source,
            to_stdout,
            format,
            ..
        } = copy;
        if to_stdout {
            let query = match copy::query_of(source) {
                Ok(query) => query,
                Err(e) => return Ok(Err(e)),
            };
            let result = self
                .run(move |session| {
                    session
                        .streaming(|session| session.execute_statement(query))
                        .and_then(|output| Answer::new(session, output))
                })
                .await?;
            return Ok(result.map(|answer| {
                let (schema, batches) = self.batches(answer);
                // Lines are made a batch at a time as they are read and sent.
                let header = copy::header(&schema, &format).map(Ok);
                let lines = batches.flat_map(move |batch| {
                    let lines: Vec<PgWireResult<Vec<u8>>> = match batch {
                        Ok(batch) => copy::batch_lines(&batch, &format)
                            .into_iter()
                            .map(Ok)
                            .collect(),
                        Err(e) => vec![Err(e)],
                    };
                    stream::iter(lines)
                });
                let data = stream::iter(header).chain(lines);
                Response::CopyOut(CopyResponse::new(
                    0,
                    schema.fields().len(),
                    data.map(|line| line.map(|line| CopyData::new(line.into()))),
                ))
            }));
        }
        let ast::CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            unreachable!("Copy::read refuses COPY FROM a query")
        };
        let table = match omen::engine::sql::table_name(&table_name) {
            Ok(table) => table,
            Err(e) => return Ok(Err(e)),
        };
        let columns: Vec<String> = columns.iter().map(omen::engine::sql::ident).collect();
        let count = self
            .run(move |session| session.copy_begin(&table, &columns))
            .await?;
        Ok(count.map(|count| {
            *self.copy_in.lock() = Some(CopyIn {
                format,
                data: Vec::new(),
                records: 0,
                ended: false,
                failed: None,
            });
            Response::CopyIn(CopyResponse::new(0, count, stream::empty()))
        }))
    }
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let batch = {
            let mut guard = self.inner.copy_in.lock();
            let Some(copy) = guard.as_mut() else {
                return Ok(());
            };
            if copy.failed.is_some() || copy.ended {
                return Ok(());
            }
            copy.data.extend_from_slice(&copy_data.data);
            if copy.data.len() < COPY_BATCH {
                return Ok(());
            }
            let complete = copy::complete_records(&copy.data, &copy.format);
            if complete == 0 {
                if copy.data.len() > COPY_MAX_RECORD {
                    copy.data = Vec::new();
                    copy.failed = Some(Error::limit(format!(
                        "a COPY record is longer than {} MB",
                        COPY_MAX_RECORD >> 20
                    )));
                }
                return Ok(());
            }
            let rest = copy.data.split_off(complete);
            std::mem::replace(&mut copy.data, rest)
        };
        self.inner.copy_batch(batch).await
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let rest = match self.inner.copy_in.lock().as_mut() {
            Some(copy) => std::mem::take(&mut copy.data),
            None => {
                return Err(user_error(Error::invalid(
                    SqlState::PROTOCOL_VIOLATION,
                    "COPY data without a COPY FROM STDIN",
                )))
            }
        };
        self.inner.copy_batch(rest).await?;
        let copy = self.inner.copy_in.lock().take().expect("checked above");
        let result = match copy.failed {
            Some(e) => Err(e),
            None => self.inner.run(|session| session.copy_end()).await?,
        };
        if result.is_err() {
            let _ = self.inner.run(|session| session.copy_abort()).await;
        }
        let count = result.map_err(user_error)?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(count as usize).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.inner.copy_in.lock().take();
        let _ = self.inner.run(|session| session.copy_abort()).await;
        user_error(Error::invalid(
            SqlState::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

async fn send_notices<C>(client: &mut C, notices: Vec<String>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in notices {
        let info = ErrorInfo::new("NOTICE".into(), "00000".into(), notice);
        client
            .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                info,
            )))
            .await?;
    }
    Ok(())
}

/// An engine error as the client sees it.
pub fn error_info(e: &Error) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), e.sqlstate().code().into(), e.to_string())
}

pub fn user_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.inner.start(client);
        let parsed = self.inner.statements.lock().parse(query);
        let statements = match parsed {
            Ok(statements) => statements,
            Err(e) => {
                // A statement that does not parse fails an open transaction
                // like any other failing statement.
                self.inner.run(|session| session.fail_transaction()).await?;
                return Ok(vec![Response::Error(Box::new(error_info(&e)))]);
            }
        };
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        if let Some(copy) = statements
            .iter()
            .find_map(|s| Copy::from_statement(s.statement()))
        {
            let result = match (copy, statements.len()) {
                (Ok(copy), 1) => self.inner.start_copy(copy).await?,
                (Ok(_), _) => Err(Error::Unsupported(
                    "COPY together with other statements in one query".into(),
                )),
                (Err(e), _) => Err(e),
            };
            return match result {
                Ok(response) => Ok(vec![response]),
                Err(e) => {
                    self.inner.run(|session| session.fail_transaction()).await?;
                    Ok(vec![Response::Error(Box::new(error_info(&e)))])
                }
            };
        }
        self.inner.execute(client, statements, query).await
    }
}

#[async_trait]
impl QueryParser for Inner {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.start(client);
        let mut statements = omen::engine::sql::parse(sql).map_err(user_error)?;
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            _ => {
                return Err(user_error(Error::invalid(
                    SqlState::SYNTAX_ERROR,
                    "cannot insert multiple commands into a prepared statement",
                )))
            }
        };
        let types = types.to_vec();
        let text: Arc<str> = sql.into();
        let prepared = self
            .run(move |session| {
                let engine = session.prepare_statement(statement)?;
                let params = engine
                    .description()
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, inferred)| match types.get(i) {
                        Some(Some(t)) => t.clone(),
                        _ => inferred.as_ref().map_or(Type::TEXT, wire::pg_type),
                    })
                    .collect();
                Ok::<_, Error>(Prepared {
                    engine,
                    text,
                    params,
                })
            })
            .await?
            .map_err(user_error)?;
        Ok(Some(Arc::new(prepared)))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(columns(stmt, column_format))
    }
}

/// The result columns of a prepared statement, in the formats asked for.
fn columns(stmt: &Prepared, format: Option<&Format>) -> Vec<FieldInfo> {
    match &stmt.engine.description().columns {
        Some(schema) => wire::fields(schema, |i| {
            format.map_or(FieldFormat::Text, |f| f.format_for(i))
        }),
        None => Vec::new(),
    }
}

/// The statement with `parameters` in place, as literals.
fn bind(
    prepared: &Prepared,
    parameters: &[Option<Bytes>],
    format: &Format,
) -> Result<Statement, Error> {
    let values = parameters
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let t = prepared.params.get(i).cloned().unwrap_or(Type::TEXT);
            let text = value
                .as_ref()
                .map(|bytes| wire::parameter_text(bytes, &t, format.is_binary(i)))
                .transpose()?;
            Ok(wire::literal(text, &t))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut statement = prepared.engine.statement().clone();
    omen::engine::sql::bind_parameters(&mut statement, &values)?;
    Ok(statement)
}

/// `parameters` as values of their types, for the fast path; none when one
/// of them is of a type it does not take (all then go through [`bind`]).
fn parameter_values(
    prepared: &Prepared,
    parameters: &[Option<Bytes>],
    format: &Format,
) -> Vec<Value> {
    parameters
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let t = prepared.params.get(i).unwrap_or(&Type::TEXT);
            wire::parameter_value(value.as_deref(), t, format.is_binary(i))
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Arc<Prepared>;
    type QueryParser = Inner;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.inner.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = portal.statement.statement.clone();
        if matches!(prepared.engine.statement(), Statement::Copy { .. }) {
            let copy = bind(&prepared, &portal.parameters, &portal.parameter_format).and_then(
                |statement| {
                    Copy::from_statement(&statement).ok_or_else(|| {
                        Error::Internal("a COPY statement that is not a COPY".into())
                    })?
                },
            );
            let result = match copy {
                Ok(copy) => self.inner.start_copy(copy).await?,
                Err(e) => Err(e),
            };
            if result.is_err() {
                self.inner.run(|session| session.fail_transaction()).await?;
            }
            return result.map_err(user_error);
        }
        let parameters = portal.parameters.clone();
        let format = portal.parameter_format.clone();
        let (result, before, after, notices) = self
            .inner
            .run(move |session| {
                session.set_query_text(&prepared.text);
                let before = session.in_transaction();
                let values = parameter_values(&prepared, &parameters, &format);
                let result = session
                    .streaming(|session| {
                        session.execute_prepared_with(&prepared.engine, &values, |_| {
                            bind(&prepared, &parameters, &format)
                        })
                    })
                    .and_then(|output| Answer::new(session, output));
                (
                    result,
                    before,
                    session.in_transaction(),
                    session.take_notices(),
                )
            })
            .await?;
        send_notices(client, notices).await?;
        let format = portal.result_column_format.clone();
        let response = self
            .inner
            .response(result.map_err(user_error)?, before, after, &|i| {
                format.format_for(i)
            })?;
        match response {
            // All the rows at once: sent here as they are read (pgwire would
            // gather them first). With a row limit, pgwire reads that many
            // per Execute and suspends the portal in between.
            Response::Query(mut rows) if max_rows == 0 => {
                let tag = rows.command_tag().to_string();
                let mut sent = 0;
                while let Some(row) = rows.data_rows().next().await {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    sent += 1;
                }
                Ok(Response::Execution(Tag::new(&tag).with_rows(sent)))
            }
            response => Ok(response),
        }
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &target.statement;
        Ok(DescribeStatementResponse::new(
            stmt.params.clone(),
            columns(stmt, None),
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(DescribePortalResponse::new(columns(
            &portal.statement.statement,
            Some(&portal.result_column_format),
        )))
    }
}
