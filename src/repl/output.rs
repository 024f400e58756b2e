//! Query results printed in the shell's output formats.

use std::io::Write;

use anyhow::Result;
use comfy_table::{presets, CellAlignment, Table};
use datafusion::arrow::datatypes::{DataType as ArrowType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use omen::engine::sql::format;

/// How the shell prints rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A drawn table with a row count, like psql.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// A Markdown table.
    Markdown,
}

/// Writes `rows` to `out` in `format`.
/// Prints a result's rows; CSV and NDJSON as its batches arrive, the
/// other formats once all are in (they align or enclose the rows). An error
/// reading a batch stops it and is returned.
pub fn write_rows(
    out: &mut dyn Write,
    schema: &SchemaRef,
    mut batches: impl Iterator<Item = omen::Result<RecordBatch>>,
    format: Format,
) -> Result<()> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    match format {
        Format::Table | Format::Markdown => {
            let mut table = Table::new();
            table.load_style(if format == Format::Table {
                presets::ASCII_FULL_CONDENSED
            } else {
                presets::ASCII_MARKDOWN
            });
            table.set_header(names.iter().copied());
            for (i, field) in schema.fields().iter().enumerate() {
                if field.data_type().is_numeric() {
                    if let Some(column) = table.column_mut(i) {
                        column.set_cell_alignment(CellAlignment::Right);
                    }
                }
            }
            let mut n = 0;
            for batch in batches {
                for_each_row(&batch?, |values| {
                    table.add_row(values.iter().map(|v| v.as_deref().unwrap_or("NULL")));
                    n += 1;
                });
            }
            writeln!(out, "{table}")?;
            if format == Format::Table {
                writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })?;
            }
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(&names)?;
            for batch in batches {
                let mut failure = None;
                for_each_row(&batch?, |values| {
                    let record = values.iter().map(|v| v.as_deref().unwrap_or(""));
                    if let Err(e) = writer.write_record(record) {
                        failure.get_or_insert(e);
                    }
                });
                if let Some(e) = failure {
                    return Err(e.into());
                }
                writer.flush()?;
            }
            writer.flush()?;
        }
        Format::Ndjson => {
            for batch in batches {
                let batch = batch?;
                for r in 0..batch.num_rows() {
                    serde_json::to_writer(&mut *out, &object(&batch, r, &names))?;
                    writeln!(out)?;
                }
                out.flush()?;
            }
        }
        Format::Json => {
            let mut objects = Vec::new();
            for batch in batches.by_ref() {
                let batch = batch?;
                for r in 0..batch.num_rows() {
                    objects.push(object(&batch, r, &names));
                }
            }
            serde_json::to_writer_pretty(&mut *out, &objects)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Row `r` of `batch` as a JSON object with the keys `names`.
fn object(batch: &RecordBatch, r: usize, names: &[&str]) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (c, name) in names.iter().enumerate() {
        let column = batch.column(c);
        let text = format::text(column.as_ref(), r);
        object.insert(name.to_string(), json_value(column.data_type(), text));
    }
    serde_json::Value::Object(object)
}

/// Calls `f` with the text of every row's values (None for NULL).
fn for_each_row(batch: &RecordBatch, mut f: impl FnMut(Vec<Option<String>>)) {
    for r in 0..batch.num_rows() {
        let values = batch
            .columns()
            .iter()
            .map(|c| format::text(c.as_ref(), r))
            .collect();
        f(values);
    }
}

/// A value in JSON: numbers and booleans as themselves, the rest as text.
fn json_value(data_type: &ArrowType, text: Option<String>) -> serde_json::Value {
    let Some(text) = text else {
        return serde_json::Value::Null;
    };
    let typed = match data_type {
        ArrowType::Boolean => Some(serde_json::Value::Bool(text == "t")),
        t if t.is_integer() => text.parse::<i64>().ok().map(Into::into),
        ArrowType::Float32 | ArrowType::Float64 => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number),
        _ => None,
    };
    typed.unwrap_or(serde_json::Value::String(text))
}
