//! `omen import`: CSV, TSV, COPY text, JSON and Parquet files into a table, all or
//! nothing.
//!
//! ```text
//!   files --(read in chunks of complete records)--> rows of text fields
//!         --(one bulk load, or COPY FROM)--> the table, committed at the end
//! ```
//!
//! Fields are read by each column's input rules, as COPY reads them. Into an
//! existing table, a header's names choose the columns (by position with
//! `--no-header`). A table that does not exist is created with the types a
//! sample of the first rows suggests (boolean, bigint, double precision,
//! date, timestamp, timestamptz, text), in the same transaction as its rows.
//! A bad row stops the import with its file, line and the reason; nothing
//! of the import is then visible. Rows go in as one bulk load (sorted
//! files ingested at one commit, in bounded memory), or, into a table with
//! secondary indexes or foreign keys, as one COPY, whose transaction holds
//! every row: such an import larger than the memory limit fails (53200)
//! rather than commit part of the data.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use omen::{OnDuplicate, RowError, Session};

use super::transfer::{
    is_gzip, or_abort, summary, without_gzip, Batch, Chunk, Common, Delimited, FileFormat,
    Progress, BATCH_ROWS,
};

/// Arguments of `omen import`.
#[derive(clap::Args)]
pub struct Args {
    /// The files to load, all into one table (`-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The table to load (default: the first file's name without its extension).
    #[arg(long)]
    table: Option<String>,
    #[command(flatten)]
    common: Common,
    /// The primary key of a new table (default: none, rows get hidden ids).
    #[arg(long, value_name = "COLUMN,...", value_delimiter = ',')]
    primary_key: Vec<String>,
    /// Print the table's columns and the first rows, and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// What a row does whose primary key another row of the import, or of
    /// the table, holds.
    #[arg(long, value_enum, default_value_t = Conflict::Error)]
    on_conflict: Conflict,
    /// Leave out up to N rows that do not convert or break a constraint,
    /// instead of failing at the first.
    #[arg(long, value_name = "N", default_value_t = 0)]
    skip_errors: u64,
    /// Write the rows --skip-errors leaves out to FILE, as CSV: file, line,
    /// SQLSTATE, error, then the row's fields.
    #[arg(long, value_name = "FILE", requires = "skip_errors")]
    rejects: Option<PathBuf>,
}

/// `--on-conflict`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Conflict {
    /// Fail the import (23505), loading nothing.
    Error,
    /// Keep the row the table has, or the first of the import's.
    Skip,
    /// Keep the last of the import's rows, replacing the table's.
    Update,
}

impl Conflict {
    fn on_duplicate(self) -> OnDuplicate {
        match self {
            Conflict::Error => OnDuplicate::Error,
            Conflict::Skip => OnDuplicate::Skip,
            Conflict::Update => OnDuplicate::Update,
        }
    }
}

/// What an import did.
struct Loaded {
    /// Rows written.
    rows: u64,
    bytes: u64,
    seconds: f64,
    /// Rows --skip-errors left out.
    rejected: u64,
    /// Rows whose key was taken (skipped, or replaced by a later one).
    duplicates: u64,
}

/// Rows the types of a new table are chosen from.
const SAMPLE_ROWS: usize = 1000;

pub fn run(args: Args) -> Result<ExitCode> {
    let first = &args.files[0];
    let table = match &args.table {
        Some(table) => table.clone(),
        None => table_name_of(first)?,
    };
    let db = args.common.open()?;
    let mut session = db.session();
    let mut sample = open(first, &args)?;
    let header = sample.columns()?;
    let exists = session.table(&table).is_ok();
    let (create, names) = if exists {
        (None, header.iter().map(|h| column_name(h)).collect())
    } else {
        let types = match &sample {
            Source::Parquet(p) => {
                let types = p.schema.fields().iter().map(|f| {
                    parquet_column_type(f.data_type()).with_context(|| {
                        format!(
                            "{}: column {} is of type {}, which no column type of omen holds",
                            first.display(),
                            f.name(),
                            f.data_type()
                        )
                    })
                });
                Some(types.collect::<Result<Vec<_>>>()?)
            }
            _ => None,
        };
        let rows = sample.sample(SAMPLE_ROWS)?;
        let (sql, names) = create_table(&table, &header, &rows, types, &args.primary_key)?;
        (Some(sql), names)
    };
    if matches!(sample, Source::Parquet(_)) && args.skip_errors > 0 {
        bail!("--skip-errors reads text; a Parquet file's rows are typed");
    }
    // Without a header, fields fill the columns in order.
    let columns: Vec<String> = if header.is_empty() { Vec::new() } else { names };
    if args.dry_run {
        match &create {
            Some(sql) => println!("{sql}"),
            None => println!("-- into the existing table {table}"),
        }
        for row in sample.sample(10)? {
            let fields: Vec<&str> = row.iter().map(|f| f.as_deref().unwrap_or("NULL")).collect();
            println!("{}", fields.join(" | "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(sql) = &create {
        if !args.common.quiet {
            eprintln!("{sql}");
        }
        // The new table commits with its rows, or not at all.
        session.begin()?;
        session.execute(sql)?;
    }
    let outcome = load(&mut session, &table, &columns, sample, &header, &args);
    match outcome {
        Ok(loaded) => {
            let totals = (loaded.rows, loaded.bytes, loaded.seconds);
            let notes = [
                ("rows left out", loaded.rejected),
                ("duplicate keys", loaded.duplicates),
            ];
            if args.common.json {
                println!("{}", summary("imported", &table, totals, &notes, true));
            } else if !args.common.quiet {
                eprintln!("{}", summary("imported", &table, totals, &notes, false));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if session.in_transaction() {
                let _ = session.rollback();
            }
            Err(e)
        }
    }
}

/// Loads every file in one bulk load (or one COPY, for a table a bulk load
/// cannot take), the first already open, as `first`, its column names
/// `header`. Commits the transaction block the session may be in.
fn load(
    session: &mut Session,
    table: &str,
    columns: &[String],
    first: Source,
    header: &[String],
    args: &Args,
) -> Result<Loaded> {
    // Bytes read are counted after decompression, so a gzip file has no
    // known total.
    let total: Option<u64> = args
        .files
        .iter()
        .map(|f| {
            let size = std::fs::metadata(f).ok().map(|m| m.len());
            size.filter(|_| !is_gzip(f))
        })
        .sum();
    let progress = Progress::new(total, args.common.quiet);
    let on_duplicate = args.on_conflict.on_duplicate();
    let bulk = session.bulk_begin(table, columns, on_duplicate)?.is_some();
    if !bulk {
        if args.on_conflict != Conflict::Error || args.skip_errors > 0 {
            bail!(
                "--on-conflict and --skip-errors need a bulk load, which a table with secondary indexes or foreign keys, or a database that archives its commits, cannot take"
            );
        }
        session.copy_begin(table, columns)?;
    }
    let mut rejects = match &args.rejects {
        Some(path) => Some(csv::WriterBuilder::new().flexible(true).from_writer(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    // One thread reads and splits the files; for a bulk load, a thread
    // per core converts and encodes the rows; this one adds them.
    let (sender, pieces) = std::sync::mpsc::sync_channel(4);
    let read = || read_files(first, header, args, sender);
    let loaded = std::thread::scope(|scope| {
        scope.spawn(read);
        if !bulk {
            return copy_pieces(session, table, columns, pieces, args, &progress)
                .map(|(rows, bytes)| (rows, bytes, 0));
        }
        let encoder = session.bulk_encoder();
        let encoder = or_abort(session, encoder.map_err(anyhow::Error::from))?;
        // Pieces are numbered as they are taken, and added in that order:
        // the file's order, which decides which of two rows with one key
        // comes first.
        let pieces = std::sync::Arc::new(std::sync::Mutex::new((pieces, 0u64)));
        let (done, encoded) = std::sync::mpsc::sync_channel(4);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let skip = args.skip_errors > 0;
        for _ in 0..workers {
            let (encoder, pieces, done) = (encoder.clone(), pieces.clone(), done.clone());
            scope.spawn(move || encode_pieces(&encoder, skip, &pieces, &done));
        }
        drop((done, pieces));
        let (mut rows, mut bytes, mut end, mut rejected) = (0u64, 0u64, None, 0u64);
        let mut early = std::collections::BTreeMap::new();
        let mut next = 0u64;
        let in_order = encoded.into_iter().flat_map(|(seq, item)| {
            early.insert(seq, item);
            let mut ready = Vec::new();
            while let Some(item) = early.remove(&next) {
                ready.push(item);
                next += 1;
            }
            ready
        });
        for item in in_order {
            match or_abort(session, item)? {
                Encoding::End { bytes } => end = Some(bytes),
                Encoding::Rows {
                    file,
                    first_line,
                    read,
                    encoded,
                    left_out,
                } => {
                    let encoded = encoded.map_err(|e| {
                        let line = e.row.map_or(first_line, |i| first_line + i);
                        anyhow::anyhow!(
                            "{}: line {line}: {} (SQLSTATE {})",
                            args.files[file].display(),
                            e.error,
                            e.error.sqlstate()
                        )
                    });
                    let encoded = or_abort(session, encoded)?;
                    let name = args.files[file].display().to_string();
                    for ((i, e), fields) in encoded.rejected().iter().zip(&left_out) {
                        rejected += 1;
                        let line = first_line + i;
                        if rejected > args.skip_errors {
                            session.bulk_abort();
                            bail!(
                                "{name}: line {line}: {e} (SQLSTATE {}); more than {} rows failed",
                                e.sqlstate(),
                                args.skip_errors
                            );
                        }
                        if let Some(out) = &mut rejects {
                            let mut record = vec![
                                name.clone(),
                                line.to_string(),
                                e.sqlstate().code().to_string(),
                                e.to_string(),
                            ];
                            record.extend(fields.iter().map(|f| f.clone().unwrap_or_default()));
                            let written = out.write_record(&record);
                            or_abort(session, written.context("writing the rejects file"))?;
                        }
                    }
                    rows += encoded.rows();
                    if let Err(e) = session.bulk_add(encoded) {
                        bail!("{table}: {e} (SQLSTATE {})", e.sqlstate());
                    }
                    bytes = bytes.max(read);
                    progress.update(bytes, rows);
                }
            }
        }
        end.map(|bytes| (rows, bytes, rejected))
            .context("reading the files stopped")
    });
    let (rows, bytes, rejected) = loaded?;
    if let Some(out) = &mut rejects {
        if let Err(e) = out.flush() {
            session.copy_abort();
            session.bulk_abort();
            bail!("writing the rejects file: {e}");
        }
    }
    let finished = if bulk {
        session.bulk_commit()
    } else {
        session
            .copy_end()
            .and_then(|_| match session.in_transaction() {
                true => session.commit(),
                false => Ok(()),
            })
            .map(|_| rows)
    };
    let written = match finished {
        Ok(written) => written,
        Err(e) => bail!("{table}: {e} (SQLSTATE {})", e.sqlstate()),
    };
    Ok(Loaded {
        rows: written,
        bytes,
        seconds: progress.finish(),
        rejected,
        duplicates: rows - written,
    })
}

/// What the reading thread hands on.
enum Piece {
    /// Rows of file `file`, read up to `bytes` of all the files.
    Batch {
        file: usize,
        chunk: Chunk,
        bytes: u64,
    },
    /// Every file is read: `bytes` in all.
    End { bytes: u64 },
}

/// Rows of a bulk load, encoded by one of the threads that do that.
enum Encoding {
    /// The rows of a batch of file `file` starting at line `first_line`,
    /// read up to `read` bytes of all the files.
    Rows {
        file: usize,
        first_line: usize,
        read: u64,
        encoded: std::result::Result<omen::Encoded, omen::RowError>,
        /// The fields of the rows `encoded` left out, in its order.
        left_out: Vec<Vec<Option<String>>>,
    },
    /// Every file is read: `bytes` in all.
    End { bytes: u64 },
}

/// Encodes the batches of `pieces` with `encoder` into `done`, each with
/// the number of the piece it came from, until either channel closes; with
/// `skip`, rows that fail are left out.
fn encode_pieces(
    encoder: &omen::BulkEncoder,
    skip: bool,
    pieces: &std::sync::Mutex<(std::sync::mpsc::Receiver<Result<Piece>>, u64)>,
    done: &std::sync::mpsc::SyncSender<(u64, Result<Encoding>)>,
) {
    loop {
        let (seq, piece) = match pieces.lock() {
            Ok(mut pieces) => {
                let piece = pieces.0.recv();
                pieces.1 += 1;
                (pieces.1 - 1, piece)
            }
            Err(_) => return,
        };
        let Ok(piece) = piece else {
            return;
        };
        let out = piece.and_then(|piece| match piece {
            Piece::Batch {
                file,
                chunk: Chunk::Columns { columns, first },
                bytes,
            } => Ok(Encoding::Rows {
                file,
                first_line: first,
                read: bytes,
                encoded: encoder.encode_arrays(&columns),
                left_out: Vec::new(),
            }),
            Piece::Batch { file, chunk, bytes } => {
                let batch = chunk.into_batch()?;
                let encoded = match skip {
                    true => encoder.encode_skipping(&batch.rows).map_err(RowError::from),
                    false => encoder.encode(&batch.rows),
                };
                let left_out = match &encoded {
                    Ok(encoded) => encoded
                        .rejected()
                        .iter()
                        .map(|(i, _)| batch.rows[*i].clone())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                Ok(Encoding::Rows {
                    file,
                    first_line: batch.first_line,
                    read: bytes,
                    encoded,
                    left_out,
                })
            }
            Piece::End { bytes } => Ok(Encoding::End { bytes }),
        });
        if done.send((seq, out)).is_err() {
            return;
        }
    }
}

/// Loads the batches of `pieces` through the running COPY; returns the rows
/// and bytes read.
fn copy_pieces(
    session: &mut Session,
    table: &str,
    columns: &[String],
    pieces: std::sync::mpsc::Receiver<Result<Piece>>,
    args: &Args,
    progress: &Progress,
) -> Result<(u64, u64)> {
    let mut rows = 0u64;
    for piece in pieces {
        let (file, chunk, bytes) = match or_abort(session, piece)? {
            Piece::Batch { file, chunk, bytes } => (file, chunk, bytes),
            Piece::End { bytes } => return Ok((rows, bytes)),
        };
        let batch = or_abort(session, chunk.into_batch())?;
        if let Err(e) = session.copy_rows(&batch.rows) {
            let row = locate(session, table, columns, &batch.rows);
            let line = row.map_or(batch.first_line, |i| batch.first_line + i);
            bail!(
                "{}: line {line}: {e} (SQLSTATE {})",
                args.files[file].display(),
                e.sqlstate()
            );
        }
        rows += batch.rows.len() as u64;
        progress.update(bytes, rows);
    }
    bail!("reading the files stopped")
}

/// Reads every file (the first already open, as `first`) and sends its
/// rows to `out`, until the files end, one fails, or nobody listens.
fn read_files(
    first: Source,
    header: &[String],
    args: &Args,
    out: std::sync::mpsc::SyncSender<Result<Piece>>,
) {
    let mut first = Some(first);
    let mut bytes = 0;
    let mut read = || -> Result<()> {
        for (n, file) in args.files.iter().enumerate() {
            let mut source = match first.take() {
                Some(source) => source,
                None => open(file, args)?,
            };
            let names = source.columns()?;
            if names != header {
                bail!(
                    "{}: its columns ({}) are not those of {} ({})",
                    file.display(),
                    names.join(", "),
                    args.files[0].display(),
                    header.join(", ")
                );
            }
            while let Some(chunk) = source.next_chunk()? {
                let piece = Piece::Batch {
                    file: n,
                    chunk,
                    bytes: bytes + source.bytes(),
                };
                if out.send(Ok(piece)).is_err() {
                    return Ok(());
                }
            }
            bytes += source.bytes();
        }
        let _ = out.send(Ok(Piece::End { bytes }));
        Ok(())
    };
    if let Err(e) = read() {
        let _ = out.send(Err(e));
    }
}

/// Which of `rows` fails to load, found by loading them one at a time in a
/// transaction that is then rolled back.
fn locate(
    session: &mut Session,
    table: &str,
    columns: &[String],
    rows: &[Vec<Option<String>>],
) -> Option<usize> {
    session.begin().ok()?;
    let found = session.copy_begin(table, columns).ok().and_then(|_| {
        rows.iter()
            .position(|row| session.copy_rows(std::slice::from_ref(row)).is_err())
    });
    session.copy_abort();
    let _ = session.rollback();
    found
}

/// A file being read, as rows of text fields.
enum Source {
    Delimited(Delimited),
    Json(Json),
    Parquet(Parquet),
}

impl Source {
    /// Bytes read so far.
    fn bytes(&self) -> u64 {
        match self {
            Source::Delimited(d) => d.bytes,
            Source::Json(j) => j.bytes,
            Source::Parquet(p) => p.bytes(),
        }
    }

    /// The column names of the file (empty without a header).
    fn columns(&mut self) -> Result<Vec<String>> {
        match self {
            Source::Delimited(d) => d.header(),
            Source::Json(j) => j.header(),
            Source::Parquet(p) => Ok(p.schema.fields().iter().map(|f| f.name().clone()).collect()),
        }
    }

    /// Up to `n` rows from the start, for choosing types; they are read again.
    fn sample(&mut self, n: usize) -> Result<Vec<Vec<Option<String>>>> {
        match self {
            Source::Delimited(d) => d.peek(n),
            Source::Json(j) => j.peek(n),
            Source::Parquet(p) => p.peek(n),
        }
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        match self {
            Source::Delimited(d) => d.next_chunk(),
            Source::Json(j) => Ok(j.next_batch()?.map(Chunk::Rows)),
            Source::Parquet(p) => p.next_chunk(),
        }
    }
}

fn open(path: &Path, args: &Args) -> Result<Source> {
    let stdin = path == Path::new("-");
    if stdin && args.common.format.is_none() {
        bail!("reading standard input needs --format");
    }
    let format = FileFormat::of(path, args.common.format)?;
    if format == FileFormat::Parquet {
        if stdin || is_gzip(path) {
            bail!("{}: a Parquet file must be a plain file", path.display());
        }
        return Parquet::open(path).map(Source::Parquet);
    }
    let mut input: Box<dyn Read + Send> = if stdin {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)
    };
    if is_gzip(path) {
        input = Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            input,
        )));
    }
    Ok(match args.common.copy_format(format, false) {
        Some(copy) => Source::Delimited(Delimited::new(input, copy, !args.common.no_header, path)),
        None => Source::Json(Json {
            input: BufReader::new(input),
            array: format == FileFormat::Json,
            keys: None,
            pending: Vec::new(),
            lines: 0,
            bytes: 0,
            done: false,
            path: path.to_path_buf(),
        }),
    })
}

/// A Parquet file, read a batch of rows at a time.
struct Parquet {
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    schema: datafusion::arrow::datatypes::SchemaRef,
    /// Batches read ahead for a sample, handed out first.
    pending: std::collections::VecDeque<datafusion::arrow::record_batch::RecordBatch>,
    /// Rows handed out so far, and in the file.
    rows: usize,
    total: usize,
    size: u64,
    path: PathBuf,
}

impl Parquet {
    fn open(path: &Path) -> Result<Parquet> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{}: not a Parquet file", path.display()))?;
        let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
        let schema = builder.schema().clone();
        let reader = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Parquet {
            schema,
            reader,
            pending: Default::default(),
            rows: 0,
            total,
            size,
            path: path.to_path_buf(),
        })
    }

    /// Bytes read, as the share of rows read.
    fn bytes(&self) -> u64 {
        (self.size as f64 * self.rows as f64 / self.total.max(1) as f64) as u64
    }

    fn read(&mut self) -> Result<Option<datafusion::arrow::record_batch::RecordBatch>> {
        self.reader
            .next()
            .transpose()
            .with_context(|| format!("reading {}", self.path.display()))
    }

    /// Up to `n` rows from the start, as text; they are handed out again.
    fn peek(&mut self, n: usize) -> Result<Vec<Vec<Option<String>>>> {
        while self.pending.iter().map(|b| b.num_rows()).sum::<usize>() < n {
            match self.read()? {
                Some(batch) => self.pending.push_back(batch),
                None => break,
            }
        }
        let mut rows = Vec::new();
        for batch in &self.pending {
            let chunk = Chunk::Columns {
                columns: batch.columns().to_vec(),
                first: 1,
            };
            rows.extend(chunk.into_batch()?.rows);
        }
        rows.truncate(n);
        Ok(rows)
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let batch = match self.pending.pop_front() {
            Some(batch) => batch,
            None => match self.read()? {
                Some(batch) => batch,
                None => return Ok(None),
            },
        };
        let first = self.rows + 1;
        self.rows += batch.num_rows();
        Ok(Some(Chunk::Columns {
            columns: batch.columns().to_vec(),
            first,
        }))
    }
}

/// The SQL type a new table's column gets for Parquet's (Arrow's) type.
fn parquet_column_type(data_type: &datafusion::arrow::datatypes::DataType) -> Option<String> {
    use datafusion::arrow::datatypes::DataType as T;
    Some(match data_type {
        T::Boolean => "boolean".into(),
        T::Int8 | T::Int16 | T::UInt8 => "smallint".into(),
        T::Int32 | T::UInt16 => "integer".into(),
        T::Int64 | T::UInt32 => "bigint".into(),
        T::UInt64 => "numeric(20, 0)".into(),
        T::Float16 | T::Float32 => "real".into(),
        T::Float64 => "double precision".into(),
        T::Decimal128(p, s) | T::Decimal256(p, s) => format!("numeric({p}, {s})"),
        T::Utf8 | T::LargeUtf8 | T::Utf8View => "text".into(),
        T::Binary | T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_) => "bytea".into(),
        T::Date32 | T::Date64 => "date".into(),
        T::Time32(_) | T::Time64(_) => "time".into(),
        T::Timestamp(_, None) => "timestamp".into(),
        T::Timestamp(_, Some(_)) => "timestamptz".into(),
        T::Dictionary(_, values) => return parquet_column_type(values),
        _ => return None,
    })
}

/// Newline-delimited JSON objects, or one array of them.
struct Json {
    input: BufReader<Box<dyn Read + Send>>,
    array: bool,
    /// The first object's keys: the columns.
    keys: Option<Vec<String>>,
    /// Objects read but not yet handed out, with their line.
    pending: Vec<(usize, Vec<(String, serde_json::Value)>)>,
    lines: usize,
    bytes: u64,
    done: bool,
    path: PathBuf,
}

impl Json {
    /// Reads more objects into `pending`; false at the end.
    fn fill(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        if self.array {
            // An array is read whole.
            let mut text = String::new();
            self.input
                .read_to_string(&mut text)
                .with_context(|| format!("reading {}", self.path.display()))?;
            self.bytes += text.len() as u64;
            let objects: Vec<Object> = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: line {}: not a JSON array of objects: {e}",
                    self.path.display(),
                    e.line()
                )
            })?;
            self.pending
                .extend(objects.into_iter().enumerate().map(|(i, o)| (i + 1, o.0)));
            self.done = true;
            return Ok(true);
        }
        let mut read = 0;
        let mut line = String::new();
        while read < BATCH_ROWS {
            line.clear();
            let n = self
                .input
                .read_line(&mut line)
                .with_context(|| format!("reading {}", self.path.display()))?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.bytes += n as u64;
            self.lines += 1;
            if line.trim().is_empty() {
                continue;
            }
            let object: Object = serde_json::from_str(&line).map_err(|e| {
                anyhow::anyhow!(
                    "{}: line {}: not a JSON object: {e}",
                    self.path.display(),
                    self.lines
                )
            })?;
            self.pending.push((self.lines, object.0));
            read += 1;
        }
        Ok(read > 0)
    }

    fn header(&mut self) -> Result<Vec<String>> {
        if self.keys.is_none() {
            if self.pending.is_empty() {
                self.fill()?;
            }
            let keys = self
                .pending
                .first()
                .map(|(_, o)| o.iter().map(|(k, _)| k.clone()).collect())
                .unwrap_or_default();
            self.keys = Some(keys);
        }
        Ok(self.keys.clone().unwrap_or_default())
    }

    fn row(
        &self,
        line: usize,
        object: &[(String, serde_json::Value)],
    ) -> Result<Vec<Option<String>>> {
        let keys = self.keys.as_deref().unwrap_or_default();
        let mut row = vec![None; keys.len()];
        for (key, value) in object {
            let Some(i) = keys.iter().position(|k| k == key) else {
                bail!(
                    "{}: {} {line}: the key \"{key}\" is not one of the first object's ({})",
                    self.path.display(),
                    if self.array { "object" } else { "line" },
                    keys.join(", ")
                );
            };
            row[i] = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
        }
        Ok(row)
    }

    fn peek(&mut self, n: usize) -> Result<Vec<Vec<Option<String>>>> {
        self.header()?;
        while self.pending.len() < n && self.fill()? {}
        self.pending
            .iter()
            .take(n)
            .map(|(line, o)| self.row(*line, o))
            .collect()
    }

    fn next_batch(&mut self) -> Result<Option<Batch>> {
        self.header()?;
        if self.pending.is_empty() && !self.fill()? {
            return Ok(None);
        }
        let take = self.pending.len().min(BATCH_ROWS);
        let objects: Vec<_> = self.pending.drain(..take).collect();
        let first_line = objects.first().map_or(0, |(line, _)| *line);
        let rows = objects
            .iter()
            .map(|(line, o)| self.row(*line, o))
            .collect::<Result<_>>()?;
        Ok(Some(Batch { rows, first_line }))
    }
}

/// A JSON object with its keys in the order the file has them.
struct Object(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Object, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> std::result::Result<Object, M::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Object(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The table a file loads into by default: its name without the extension.
fn table_name_of(path: &Path) -> Result<String> {
    let stem = without_gzip(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|_| path != Path::new("-"))
        .context("give --table: the table cannot be named after standard input")?;
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    Ok(name)
}

/// A header field as a column name: folded to lower case as PostgreSQL
/// folds an identifier that could be written unquoted, else as it is.
fn column_name(field: &str) -> String {
    let field = field.trim();
    let plain = field
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        field.to_ascii_lowercase()
    } else {
        field.to_string()
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// CREATE TABLE for a new table: a column for each header field (column0,
/// column1, ... without a header), typed by what its sampled values all parse as.
/// `types`: the columns' types when the file says them (Parquet), else
/// they are inferred from `sample`.
fn create_table(
    table: &str,
    header: &[String],
    sample: &[Vec<Option<String>>],
    types: Option<Vec<String>>,
    primary_key: &[String],
) -> Result<(String, Vec<String>)> {
    let width = sample
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(header.len());
    if width == 0 {
        bail!("the file has no columns to make the table {table} of");
    }
    let mut names: Vec<String> = Vec::with_capacity(width);
    for i in 0..width {
        let base = header
            .get(i)
            .map(|h| column_name(h))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("column{i}"));
        let mut name = base.clone();
        let mut n = 1;
        while names.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        names.push(name);
    }
    let columns: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values = sample
                .iter()
                .filter_map(|r| r.get(i).and_then(|v| v.as_deref()));
            let sql_type = match types.as_ref().and_then(|t| t.get(i)) {
                Some(given) => given.clone(),
                None => infer(values).to_string(),
            };
            format!("  {} {sql_type}", quote(name))
        })
        .collect();
    let mut sql = format!("CREATE TABLE {} (\n{}", quote(table), columns.join(",\n"));
    if !primary_key.is_empty() {
        let key: Vec<String> = primary_key
            .iter()
            .map(|k| {
                let k = column_name(k);
                if names.contains(&k) {
                    Ok(quote(&k))
                } else {
                    bail!(
                        "--primary-key names {k}, which is not a column ({})",
                        names.join(", ")
                    )
                }
            })
            .collect::<Result<_>>()?;
        sql.push_str(&format!(",\n  PRIMARY KEY ({})", key.join(", ")));
    }
    sql.push_str("\n)");
    Ok((sql, names))
}

/// The narrowest type every value parses as.
fn infer<'a>(values: impl Iterator<Item = &'a str> + Clone) -> &'static str {
    let all = |test: fn(&str) -> bool| {
        let mut any = false;
        for v in values.clone() {
            if !test(v.trim()) {
                return false;
            }
            any = true;
        }
        any
    };
    // PostgreSQL writes booleans as t and f.
    if all(|v| {
        ["true", "false", "t", "f"]
            .iter()
            .any(|b| v.eq_ignore_ascii_case(b))
    }) {
        "boolean"
    } else if all(|v| v.parse::<i64>().is_ok()) {
        "bigint"
    } else if all(|v| v.parse::<f64>().is_ok() && v.bytes().any(|b| b.is_ascii_digit())) {
        "double precision"
    } else if all(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()) {
        "date"
    } else if all(|v| {
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .any(|f| chrono::NaiveDateTime::parse_from_str(v, f).is_ok())
    }) {
        "timestamp"
    } else if all(|v| {
        chrono::DateTime::parse_from_rfc3339(v).is_ok()
            || ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
                .iter()
                .any(|f| chrono::DateTime::parse_from_str(v, f).is_ok())
    }) {
        "timestamp with time zone"
    } else {
        "text"
    }
}
