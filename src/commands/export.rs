//! `omen export`: a table or a query's result as CSV, TSV, COPY text, NDJSON,
//! a JSON array or Parquet, to a file (gzip for `.gz`) or standard output.
//!
//! The rows are one query's, so they come from one snapshot while writers go
//! on. Delimited formats are written as PostgreSQL's COPY TO writes them
//! (NULL apart from the empty string, quotes and newlines inside fields), so
//! `omen import` of the file gives the table back. In JSON, numbers and
//! booleans are JSON's; every other value is the string PostgreSQL would
//! print (NaN and infinities too, which JSON numbers cannot hold).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType as ArrowType, Float32Type, Float64Type};
use datafusion::arrow::record_batch::RecordBatch;
use omen::engine::sql::format;

use flate2::write::GzEncoder;

use super::transfer::{is_gzip, summary, Common, FileFormat, Progress};
use crate::server::copy;

/// Arguments of `omen export`.
#[derive(clap::Args)]
pub struct Args {
    /// The table to export, in primary key order.
    #[arg(long, required_unless_present = "query", conflicts_with = "query")]
    table: Option<String>,
    /// A query whose result to export.
    #[arg(long)]
    query: Option<String>,
    /// The file to write (default, or `-`: standard output).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut created = None;
    let result = export(args, &mut created);
    if let (Err(_), Some(path)) = (&result, created) {
        // A failed export leaves no partial file behind.
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Runs the export; `created` gets the file it creates.
fn export(args: Args, created: &mut Option<std::path::PathBuf>) -> Result<ExitCode> {
    let to_stdout = args.output.as_deref().is_none_or(|o| o == Path::new("-"));
    let format = match (&args.output, args.common.format) {
        (_, Some(format)) => format,
        (Some(path), None) if !to_stdout => FileFormat::of(path, None)?,
        _ => FileFormat::Csv,
    };
    let (sql, name) = match (&args.table, &args.query) {
        (Some(table), _) => (
            format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")),
            table.clone(),
        ),
        (None, Some(query)) => (query.clone(), "query".to_string()),
        (None, None) => bail!("give --table or --query"),
    };
    let db = args.common.open()?;
    let mut session = db.session();
    let progress = Progress::new(None, args.common.quiet);
    // Statements before the last run first; the last one's rows are read
    // as they are written.
    let mut statements = omen::engine::sql::parse(&sql)?;
    let last = statements.pop().context("the query is empty")?;
    for statement in statements {
        session.execute_statement(statement)?;
    }
    let Some(mut rows) = session.query_batches(last)? else {
        bail!("the query returns no rows to export");
    };
    let schema = rows.schema().clone();
    let mut out: BufWriter<Sink> = BufWriter::with_capacity(
        1 << 20,
        if to_stdout {
            Sink::Plain(Box::new(std::io::stdout()))
        } else {
            let path = args.output.as_deref().expect("a file");
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            *created = Some(path.to_path_buf());
            match is_gzip(path) {
                true => Sink::Gzip(GzEncoder::new(file, flate2::Compression::default())),
                false => Sink::Plain(Box::new(file)),
            }
        },
    );
    let mut bytes = 0u64;
    let mut written = 0u64;
    if format == FileFormat::Parquet {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema, Some(props))
            .context("writing Parquet")?;
        for batch in rows {
            let batch = batch?;
            writer.write(&batch).context("writing Parquet")?;
            written += batch.num_rows() as u64;
            progress.update(0, written);
        }
        out = writer.into_inner().context("writing Parquet")?;
        out.flush().context("writing Parquet")?;
        bytes = match args.output.as_deref().filter(|_| !to_stdout) {
            Some(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
            None => 0,
        };
    } else {
        let mut write = |data: &[u8]| -> Result<()> {
            bytes += data.len() as u64;
            out.write_all(data).context("writing the export")
        };
        match args.common.copy_format(format, !args.common.no_header) {
            Some(copy) => {
                if let Some(header) = copy::header(&schema, &copy) {
                    write(&header)?;
                }
                for batch in rows.by_ref() {
                    let batch = batch?;
                    for line in copy::batch_lines(&batch, &copy) {
                        write(&line)?;
                    }
                    written += batch.num_rows() as u64;
                    progress.update(0, written);
                }
            }
            None => {
                let array = format == FileFormat::Json;
                let names: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| serde_json::to_string(f.name()).expect("a string encodes"))
                    .collect();
                // NDJSON: one object a line; an array: `[`, objects separated by
                // `,` and a newline, `]`.
                let (open, between, close): (&[u8], &[u8], &[u8]) = if array {
                    (b"[\n", b",\n", b"\n]\n")
                } else {
                    (b"", b"\n", b"\n")
                };
                write(open)?;
                for batch in rows.by_ref() {
                    let batch = batch?;
                    for r in 0..batch.num_rows() {
                        if written > 0 {
                            write(between)?;
                        }
                        write(object(&batch, r, &names).as_bytes())?;
                        written += 1;
                    }
                    progress.update(0, written);
                }
                if written > 0 || array {
                    write(close)?;
                }
            }
        }
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(Sink::finish)
        .context("writing the export")?;
    let seconds = progress.finish();
    if args.common.json || !args.common.quiet {
        let totals = (written, bytes, seconds);
        let line = summary("exported", &name, totals, &[], args.common.json);
        if args.common.json && !to_stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where an export writes: standard output or a file, or a file through
/// gzip (its name ends in `.gz`).
enum Sink {
    Plain(Box<dyn Write + Send>),
    Gzip(GzEncoder<File>),
}

impl Sink {
    /// Writes out what is buffered, and gzip's trailer.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut out) => out.flush(),
            Sink::Gzip(gzip) => gzip.finish().map(drop),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(out) => out.write(data),
            Sink::Gzip(gzip) => gzip.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(out) => out.flush(),
            Sink::Gzip(gzip) => gzip.flush(),
        }
    }
}

/// Row `r` of `batch` as a JSON object with the keys `names` (JSON-encoded).
fn object(batch: &RecordBatch, r: usize, names: &[String]) -> String {
    let mut text = String::from("{");
    for (i, column) in batch.columns().iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&names[i]);
        text.push(':');
        text.push_str(&json_value(column.as_ref(), r));
    }
    text.push('}');
    text
}

fn json_value(array: &dyn Array, r: usize) -> String {
    if array.is_null(r) {
        return "null".into();
    }
    let finite = match array.data_type() {
        ArrowType::Float32 => array.as_primitive::<Float32Type>().value(r).is_finite(),
        ArrowType::Float64 => array.as_primitive::<Float64Type>().value(r).is_finite(),
        _ => true,
    };
    let text = format::text(array, r).unwrap_or_default();
    match array.data_type() {
        ArrowType::Boolean => (if text == "t" { "true" } else { "false" }).into(),
        ArrowType::Int8
        | ArrowType::Int16
        | ArrowType::Int32
        | ArrowType::Int64
        | ArrowType::UInt8
        | ArrowType::UInt16
        | ArrowType::UInt32
        | ArrowType::UInt64
        | ArrowType::Decimal128(..) => text,
        ArrowType::Float32 | ArrowType::Float64 if finite => text,
        _ => serde_json::to_string(&text).expect("a string encodes"),
    }
}
