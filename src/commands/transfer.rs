//! What `omen import` and `omen export` share: file formats, their COPY
//! options, progress on a terminal and the closing summary.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use omen::{Database, Options};

use super::repl::memory_size;
use crate::server::copy;

/// The options `omen import` and `omen export` share.
#[derive(clap::Args)]
pub struct Common {
    /// The data directory (default: omen-data).
    #[arg(long, env = "OMEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The file format (default: from the file's extension; CSV on standard output).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// The first line is data, not column names (CSV, TSV and text).
    #[arg(long)]
    pub no_header: bool,
    /// The field delimiter (default: `,` for CSV, a tab for TSV and text).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<char>,
    /// The text that stands for NULL (default: an unquoted empty field; `\N` in text).
    #[arg(long, value_name = "TEXT")]
    pub null: Option<String>,
    /// No progress bar, no schema and no summary.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON (on standard output, unless the data goes there).
    #[arg(long)]
    pub json: bool,
    /// Memory the import's transaction or the export's query may take (`512MB`, `4GB`).
    #[arg(long, env = "OMEN_MEMORY_LIMIT", value_name = "SIZE", value_parser = memory_size)]
    pub memory_limit: Option<usize>,
}

impl Common {
    /// Opens the database in the data directory.
    pub fn open(&self) -> Result<Database> {
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("omen-data"));
        let options = Options {
            memory_limit: self.memory_limit,
            ..Options::default()
        };
        Database::open(&dir, options)
            .with_context(|| format!("opening the database in {}", dir.display()))
    }

    /// The COPY options of a delimited format, with the user's overrides.
    pub fn copy_format(&self, format: FileFormat, header: bool) -> Option<copy::Format> {
        format.copy_format(header, self.delimiter, self.null.as_deref())
    }
}

/// Whether `path` names a gzip file (it ends in `.gz`).
pub fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The file name of `path` without a `.gz` ending: the name that tells
/// the format.
pub fn without_gzip(path: &Path) -> &Path {
    match is_gzip(path) {
        true => path.file_stem().map_or(path, Path::new),
        false => path,
    }
}

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// Comma-separated values, quoted as PostgreSQL's COPY CSV quotes them.
    Csv,
    /// Tab-separated values, quoted as CSV is.
    Tsv,
    /// PostgreSQL's COPY text format: tab-separated, backslash escapes, \N for NULL.
    Text,
    /// One JSON object per line.
    Ndjson,
    /// A JSON array of objects.
    Json,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The format `--format` names, else the one the file's extension says.
    pub fn of(path: &Path, given: Option<FileFormat>) -> anyhow::Result<FileFormat> {
        if let Some(format) = given {
            return Ok(format);
        }
        let extension = without_gzip(path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        Ok(match extension.as_deref() {
            Some("csv") => FileFormat::Csv,
            Some("tsv" | "tab") => FileFormat::Tsv,
            Some("txt" | "copy") => FileFormat::Text,
            Some("ndjson" | "jsonl") => FileFormat::Ndjson,
            Some("json") => FileFormat::Json,
            Some("parquet") => FileFormat::Parquet,
            _ => anyhow::bail!(
                "cannot tell the format of {} from its name; give --format csv, tsv, text, ndjson, json or parquet",
                path.display()
            ),
        })
    }

    /// The COPY options of a delimited format, with the user's overrides.
    pub fn copy_format(
        self,
        header: bool,
        delimiter: Option<char>,
        null: Option<&str>,
    ) -> Option<copy::Format> {
        let (csv, default_delimiter, default_null) = match self {
            FileFormat::Csv => (true, ',', ""),
            FileFormat::Tsv => (true, '\t', ""),
            FileFormat::Text => (false, '\t', "\\N"),
            FileFormat::Ndjson | FileFormat::Json | FileFormat::Parquet => return None,
        };
        Some(copy::Format {
            csv,
            delimiter: delimiter.unwrap_or(default_delimiter),
            null: null.unwrap_or(default_null).to_string(),
            header,
            quote: '"',
            escape: '"',
        })
    }
}

/// Progress on standard error while a transfer runs, when that is a
/// terminal and `--quiet` was not given.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    /// Progress through `total` bytes, or a spinner when the size is unknown.
    pub fn new(total: Option<u64>, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {bytes}/{total_bytes} {msg} ({eta} left)",
                    )
                    .expect("a valid template"),
                ),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// Moves the bar to `bytes` done and `rows` written so far.
    pub fn update(&self, bytes: u64, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{rows} rows, {:.0} rows/s", rows as f64 / seconds));
        }
    }

    /// Moves the bar to `done` of `total` bytes, for steps whose size is
    /// known only once they run.
    pub fn bytes(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Removes the bar and returns the seconds since the start.
    pub fn finish(&self) -> f64 {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.started.elapsed().as_secs_f64()
    }
}

/// The closing summary: one line for people, or JSON for scripts.
/// `notes` are further counts (name, count), shown when not zero.
pub fn summary(
    verb: &str,
    table: &str,
    (rows, bytes, seconds): (u64, u64, f64),
    notes: &[(&str, u64)],
    json: bool,
) -> String {
    let rate = rows as f64 / seconds.max(1e-6);
    if json {
        let mut object = serde_json::json!({
            "table": table,
            "rows": rows,
            "bytes": bytes,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "rows_per_second": rate.round(),
        });
        for (name, count) in notes {
            object[name.replace(' ', "_")] = (*count).into();
        }
        object.to_string()
    } else {
        let mut line =
            format!("{verb} {rows} rows ({bytes} bytes) in {seconds:.2} s, {rate:.0} rows/s");
        for (name, count) in notes.iter().filter(|(_, n)| *n > 0) {
            line.push_str(&format!(", {count} {name}"));
        }
        line
    }
}

/// Bytes read from a file at a time.
const CHUNK_BYTES: usize = 1 << 20;
/// Rows written per COPY batch, at most.
pub const BATCH_ROWS: usize = 8192;

/// A batch of rows and the line the first came from.
pub struct Batch {
    pub rows: Vec<Vec<Option<String>>>,
    pub first_line: usize,
}

/// Rows read from a file, parsed or still bytes.
pub enum Chunk {
    /// Parsed rows.
    Rows(Batch),
    /// Typed columns (a Parquet file's), the first row being row `first`.
    Columns {
        columns: Vec<datafusion::arrow::array::ArrayRef>,
        first: usize,
    },
    /// Complete CSV records, the first on line `first_line` of `path`.
    Records {
        data: Vec<u8>,
        first_line: usize,
        format: copy::Format,
        path: PathBuf,
    },
}

impl Chunk {
    /// The rows, parsed if they are not yet.
    pub fn into_batch(self) -> Result<Batch> {
        match self {
            Chunk::Rows(batch) => Ok(batch),
            // As text, in the form each type's input reads back.
            Chunk::Columns { columns, first } => {
                let rows = columns.first().map_or(0, |c| c.len());
                let rows = (0..rows)
                    .map(|r| {
                        columns
                            .iter()
                            .map(|c| omen::engine::sql::format::text(c.as_ref(), r))
                            .collect()
                    })
                    .collect();
                Ok(Batch {
                    rows,
                    first_line: first,
                })
            }
            Chunk::Records {
                data,
                first_line,
                format,
                path,
            } => {
                let parsed = copy::parse(&data, &format, first_line - 1)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Ok(Batch {
                    rows: parsed.rows,
                    first_line,
                })
            }
        }
    }
}

/// CSV, TSV or COPY text, read a chunk of complete records at a time.
pub struct Delimited {
    input: Box<dyn Read + Send>,
    copy: copy::Format,
    has_header: bool,
    buffer: Vec<u8>,
    eof: bool,
    header: Option<Vec<String>>,
    /// Records parsed so far (the header included).
    records: usize,
    /// Rows parsed but not yet handed out.
    pending: Vec<Vec<Option<String>>>,
    pub bytes: u64,
    path: PathBuf,
}

impl Delimited {
    /// Reads `input` (the file at `path`, for messages) in `copy`'s format;
    /// with `has_header` the first record names the columns.
    pub fn new(
        input: Box<dyn Read + Send>,
        copy: copy::Format,
        has_header: bool,
        path: &Path,
    ) -> Delimited {
        Delimited {
            input,
            copy,
            has_header,
            buffer: Vec::new(),
            eof: false,
            header: None,
            records: 0,
            pending: Vec::new(),
            bytes: 0,
            path: path.to_path_buf(),
        }
    }

    /// Parses the next chunk of records into `pending`; false at the end.
    fn fill(&mut self) -> Result<bool> {
        loop {
            let end = copy::complete_records(&self.buffer, &self.copy);
            if end > 0 && (self.buffer.len() >= CHUNK_BYTES || self.eof) {
                return self.parse(end).map(|()| true);
            }
            if self.eof {
                if self.buffer.is_empty() {
                    return Ok(false);
                }
                // A last record without its newline.
                self.buffer.push(b'\n');
                let end = copy::complete_records(&self.buffer, &self.copy);
                if end == 0 {
                    bail!("{}: a quoted field does not end", self.path.display());
                }
                return self.parse(end).map(|()| true);
            }
            self.read_more()?;
        }
    }

    /// Reads up to another chunk of the input into `buffer`.
    fn read_more(&mut self) -> Result<()> {
        let start = self.buffer.len();
        self.buffer.resize(start + CHUNK_BYTES, 0);
        let n = self
            .input
            .read(&mut self.buffer[start..])
            .with_context(|| format!("reading {}", self.path.display()))?;
        self.buffer.truncate(start + n);
        self.bytes += n as u64;
        if self.records == 0 && start == 0 && self.buffer.starts_with(b"\xEF\xBB\xBF") {
            self.buffer.drain(..3);
        }
        self.eof = n == 0;
        Ok(())
    }

    /// The next records: rows already parsed (those read with the header)
    /// first, then, for CSV and TSV, chunks of complete records as bytes,
    /// for another thread to parse ([`Chunk::into_batch`]); COPY text,
    /// whose end marker stops the reading, is parsed here. None at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        self.header()?;
        if !self.pending.is_empty() || !self.copy.csv {
            return Ok(self.next_batch()?.map(Chunk::Rows));
        }
        loop {
            let end = copy::complete_records(&self.buffer, &self.copy);
            if end > 0 && (self.buffer.len() >= CHUNK_BYTES || self.eof) {
                let rest = self.buffer.split_off(end);
                let data = std::mem::replace(&mut self.buffer, rest);
                let first_line = self.records + 1;
                self.records += data.iter().filter(|b| **b == b'\n').count();
                return Ok(Some(Chunk::Records {
                    data,
                    first_line,
                    format: self.copy.clone(),
                    path: self.path.clone(),
                }));
            }
            if self.eof {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                // A last record without its newline.
                self.buffer.push(b'\n');
                if copy::complete_records(&self.buffer, &self.copy) == 0 {
                    bail!("{}: a quoted field does not end", self.path.display());
                }
                continue;
            }
            self.read_more()?;
        }
    }

    fn parse(&mut self, end: usize) -> Result<()> {
        let chunk = copy::parse(&self.buffer[..end], &self.copy, self.records)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        self.buffer.drain(..end);
        self.records += chunk.records;
        let mut rows = chunk.rows;
        if self.header.is_none() {
            self.header = Some(if self.has_header && !rows.is_empty() {
                rows.remove(0)
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect()
            } else {
                Vec::new()
            });
        }
        if chunk.ended {
            self.eof = true;
            self.buffer.clear();
        }
        self.pending.extend(rows);
        Ok(())
    }

    /// The column names of the header (empty without one).
    pub fn header(&mut self) -> Result<Vec<String>> {
        while self.header.is_none() {
            if !self.fill()? {
                self.header = Some(Vec::new());
            }
        }
        Ok(self.header.clone().unwrap_or_default())
    }

    /// Up to `n` rows from the start; they are handed out again.
    pub fn peek(&mut self, n: usize) -> Result<Vec<Vec<Option<String>>>> {
        self.header()?;
        while self.pending.len() < n && self.fill()? {}
        Ok(self.pending.iter().take(n).cloned().collect())
    }

    /// The next rows, None at the end.
    pub fn next_batch(&mut self) -> Result<Option<Batch>> {
        self.header()?;
        if self.pending.is_empty() && !self.fill()? {
            return Ok(None);
        }
        let take = self.pending.len().min(BATCH_ROWS);
        let rows: Vec<_> = self.pending.drain(..take).collect();
        // Records are lines, unless a quoted field holds a newline.
        let first_line = self.records - self.pending.len() - rows.len() + 1;
        Ok(Some(Batch { rows, first_line }))
    }
}

/// `result`, with the running COPY undone when it is an error.
pub fn or_abort<T>(session: &mut omen::Session, result: Result<T>) -> Result<T> {
    if result.is_err() {
        session.copy_abort();
        session.bulk_abort();
    }
    result
}

/// Runs a COPY that names a file (`copy.file`): the file is read into the
/// table in chunks through one COPY (all rows or none), or the table or
/// query is written to it. Returns the rows copied.
pub fn copy_file(session: &mut omen::Session, copy: &copy::Copy) -> Result<u64> {
    let file = copy.file.as_deref().context("COPY names no file")?;
    let path = Path::new(file);
    if copy.to_stdout {
        let query = copy::query_of(copy.source.clone())?;
        let Some(batches) = session.query_batches(query)? else {
            bail!("the COPY query returns no rows");
        };
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {file}"))?,
        );
        if let Some(header) = copy::header(batches.schema(), &copy.format) {
            out.write_all(&header)?;
        }
        let mut rows = 0;
        for batch in batches {
            let batch = batch?;
            for line in copy::batch_lines(&batch, &copy.format) {
                out.write_all(&line)?;
            }
            rows += batch.num_rows() as u64;
        }
        out.flush().with_context(|| format!("writing {file}"))?;
        return Ok(rows);
    }
    let datafusion::sql::sqlparser::ast::CopySource::Table {
        table_name,
        columns,
    } = &copy.source
    else {
        bail!("COPY FROM needs a table");
    };
    let table = omen::engine::sql::table_name(table_name)?;
    let columns: Vec<String> = columns.iter().map(omen::engine::sql::ident).collect();
    let input = std::fs::File::open(path).with_context(|| format!("opening {file}"))?;
    let mut format = copy.format.clone();
    let header = std::mem::replace(&mut format.header, false);
    let mut source = Delimited::new(Box::new(input), format, header, path);
    source.header()?;
    session.copy_begin(&table, &columns)?;
    loop {
        let Some(batch) = or_abort(session, source.next_batch())? else {
            break;
        };
        session.copy_rows(&batch.rows)?;
    }
    Ok(session.copy_end()?)
}
