//! `omen import`: CSV, TSV, COPY text and JSON files into a table, all or
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
use omen::Session;

use super::transfer::{
    is_gzip, or_abort, summary, without_gzip, Batch, Common, Delimited, FileFormat, Progress,
    BATCH_ROWS,
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
        let rows = sample.sample(SAMPLE_ROWS)?;
        let (sql, names) = create_table(&table, &header, &rows, &args.primary_key)?;
        (Some(sql), names)
    };
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
        Ok((rows, bytes, seconds)) => {
            if args.common.json {
                println!(
                    "{}",
                    summary("imported", &table, rows, bytes, seconds, true)
                );
            } else if !args.common.quiet {
                eprintln!(
                    "{}",
                    summary("imported", &table, rows, bytes, seconds, false)
                );
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
/// `header`; returns the rows, bytes and seconds. Commits the transaction
/// block the session may be in.
fn load(
    session: &mut Session,
    table: &str,
    columns: &[String],
    first: Source,
    header: &[String],
    args: &Args,
) -> Result<(u64, u64, f64)> {
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
    let bulk = session.bulk_begin(table, columns)?.is_some();
    if !bulk {
        session.copy_begin(table, columns)?;
    }
    // One thread reads and splits the files; for a bulk load, a thread
    // per core converts and encodes the rows; this one adds them.
    let (sender, pieces) = std::sync::mpsc::sync_channel(4);
    let read = || read_files(first, header, args, sender);
    let loaded = std::thread::scope(|scope| {
        scope.spawn(read);
        if !bulk {
            return copy_pieces(session, table, columns, pieces, args, &progress);
        }
        let encoder = session.bulk_encoder();
        let encoder = or_abort(session, encoder.map_err(anyhow::Error::from))?;
        let pieces = std::sync::Arc::new(std::sync::Mutex::new(pieces));
        let (done, encoded) = std::sync::mpsc::sync_channel(4);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        for _ in 0..workers {
            let (encoder, pieces, done) = (encoder.clone(), pieces.clone(), done.clone());
            scope.spawn(move || encode_pieces(&encoder, &pieces, &done));
        }
        drop((done, pieces));
        let (mut rows, mut bytes, mut end) = (0u64, 0u64, None);
        for item in encoded {
            match or_abort(session, item)? {
                Encoding::End { bytes } => end = Some(bytes),
                Encoding::Rows {
                    file,
                    first_line,
                    read,
                    encoded,
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
                    rows += encoded.rows();
                    if let Err(e) = session.bulk_add(encoded) {
                        bail!("{table}: {e} (SQLSTATE {})", e.sqlstate());
                    }
                    bytes = bytes.max(read);
                    progress.update(bytes, rows);
                }
            }
        }
        end.map(|bytes| (rows, bytes))
            .context("reading the files stopped")
    });
    let (rows, bytes) = loaded?;
    let finished = if bulk {
        session.bulk_commit().map(|_| ())
    } else {
        session
            .copy_end()
            .and_then(|_| match session.in_transaction() {
                true => session.commit(),
                false => Ok(()),
            })
    };
    if let Err(e) = finished {
        bail!("{table}: {e} (SQLSTATE {})", e.sqlstate());
    }
    Ok((rows, bytes, progress.finish()))
}

/// What the reading thread hands on.
enum Piece {
    /// Rows of file `file`, read up to `bytes` of all the files.
    Batch {
        file: usize,
        batch: Batch,
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
    },
    /// Every file is read: `bytes` in all.
    End { bytes: u64 },
}

/// Encodes the batches of `pieces` with `encoder` into `done`, until
/// either channel closes.
fn encode_pieces(
    encoder: &omen::BulkEncoder,
    pieces: &std::sync::Mutex<std::sync::mpsc::Receiver<Result<Piece>>>,
    done: &std::sync::mpsc::SyncSender<Result<Encoding>>,
) {
    loop {
        let piece = match pieces.lock() {
            Ok(pieces) => pieces.recv(),
            Err(_) => return,
        };
        let Ok(piece) = piece else {
            return;
        };
        let out = piece.map(|piece| match piece {
            Piece::Batch { file, batch, bytes } => Encoding::Rows {
                file,
                first_line: batch.first_line,
                read: bytes,
                encoded: encoder.encode(&batch.rows),
            },
            Piece::End { bytes } => Encoding::End { bytes },
        });
        if done.send(out).is_err() {
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
        let (file, batch, bytes) = match or_abort(session, piece)? {
            Piece::Batch { file, batch, bytes } => (file, batch, bytes),
            Piece::End { bytes } => return Ok((rows, bytes)),
        };
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
            while let Some(batch) = source.next_batch()? {
                let piece = Piece::Batch {
                    file: n,
                    batch,
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
}

impl Source {
    /// Bytes read so far.
    fn bytes(&self) -> u64 {
        match self {
            Source::Delimited(d) => d.bytes,
            Source::Json(j) => j.bytes,
        }
    }

    /// The column names of the file (empty without a header).
    fn columns(&mut self) -> Result<Vec<String>> {
        match self {
            Source::Delimited(d) => d.header(),
            Source::Json(j) => j.header(),
        }
    }

    /// Up to `n` rows from the start, for choosing types; they are read again.
    fn sample(&mut self, n: usize) -> Result<Vec<Vec<Option<String>>>> {
        match self {
            Source::Delimited(d) => d.peek(n),
            Source::Json(j) => j.peek(n),
        }
    }

    fn next_batch(&mut self) -> Result<Option<Batch>> {
        match self {
            Source::Delimited(d) => d.next_batch(),
            Source::Json(j) => j.next_batch(),
        }
    }
}

fn open(path: &Path, args: &Args) -> Result<Source> {
    let stdin = path == Path::new("-");
    if stdin && args.common.format.is_none() {
        bail!("reading standard input needs --format");
    }
    let format = FileFormat::of(path, args.common.format)?;
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
fn create_table(
    table: &str,
    header: &[String],
    sample: &[Vec<Option<String>>],
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
            format!("  {} {}", quote(name), infer(values))
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
