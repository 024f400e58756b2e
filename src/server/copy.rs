//! COPY ... FROM STDIN and COPY ... TO STDOUT in PostgreSQL's text and CSV
//! formats (psql's `\copy`, pgbench's initialisation).
//!
//! COPY FROM writes the client's data in batches of complete records as it
//! arrives, all in one statement that the end of the data finishes, so a bad
//! row anywhere leaves the table as it was.

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use omen::engine::sql::format;
use omen::{Error, SqlState};

/// A COPY statement, read.
pub struct Copy {
    pub source: CopySource,
    pub to_stdout: bool,
    pub format: Format,
    /// The file named instead of STDIN or STDOUT (`COPY ... FROM 'file'`).
    pub file: Option<String>,
}

/// Text or CSV, with their options.
#[derive(Clone, Debug)]
pub struct Format {
    pub csv: bool,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

impl Copy {
    /// The COPY in `statement`, or None when it is not one.
    pub fn from_statement(statement: &Statement) -> Option<Result<Copy, Error>> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = statement
        else {
            return None;
        };
        Some(Copy::read(source, *to, target, options, legacy_options))
    }

    fn read(
        source: &CopySource,
        to: bool,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<Copy, Error> {
        let file = match (to, target) {
            (false, CopyTarget::Stdin) | (true, CopyTarget::Stdout) => None,
            (_, CopyTarget::File { filename }) => Some(filename.clone()),
            _ => {
                return Err(Error::Unsupported(
                    "COPY to or from a program, or FROM STDOUT / TO STDIN".into(),
                ))
            }
        };
        if !to && matches!(source, CopySource::Query(_)) {
            return Err(Error::invalid(
                SqlState::SYNTAX_ERROR,
                "COPY FROM needs a table",
            ));
        }
        let mut csv = false;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) =
            (None, None, false, '"', None);
        for option in options {
            match option {
                CopyOption::Format(name) => match name.value.to_lowercase().as_str() {
                    "text" => csv = false,
                    "csv" => csv = true,
                    other => {
                        return Err(Error::Unsupported(format!("COPY format \"{other}\"")));
                    }
                },
                CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(on) => header = *on,
                CopyOption::Quote(c) => quote = *c,
                CopyOption::Escape(c) => escape = Some(*c),
                other => return Err(Error::Unsupported(format!("the COPY option {other}"))),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Csv(csv_options) => {
                    csv = true;
                    for o in csv_options {
                        match o {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = *c,
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            other => {
                                return Err(Error::Unsupported(format!("the COPY option {other}")))
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                other => return Err(Error::Unsupported(format!("the COPY option {other}"))),
            }
        }
        Ok(Copy {
            source: source.clone(),
            file,
            to_stdout: to,
            format: Format {
                csv,
                delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
                null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
                header,
                quote,
                escape: escape.unwrap_or(quote),
            },
        })
    }
}

/// The query COPY TO reads: its own, or every row of the table (the columns named).
pub fn query_of(source: CopySource) -> Result<Statement, Error> {
    match source {
        CopySource::Query(query) => Ok(Statement::Query(query)),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Ok(omen::engine::sql::parse(&format!("SELECT {list} FROM {table_name}"))?.remove(0))
        }
    }
}

fn bad_data(line: usize, message: impl std::fmt::Display) -> Error {
    Error::invalid(
        SqlState::BAD_COPY_FILE_FORMAT,
        format!("COPY data line {line}: {message}"),
    )
}

/// Complete records of COPY FROM data, parsed.
pub struct Chunk {
    /// Each row's fields as text (None for NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// Records read, the header and the end marker included.
    pub records: usize,
    /// Whether the end marker (`\.`) was read: data after it is ignored.
    pub ended: bool,
}

/// The length of the complete records at the start of `data`: up to and
/// including the last record end (a newline outside CSV quotes).
pub fn complete_records(data: &[u8], format: &Format) -> usize {
    if !format.csv {
        return data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    }
    let (quote, escape) = (format.quote as u8, format.escape as u8);
    let mut end = 0;
    let mut quoted = false;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if quoted && escape != quote && b == escape {
            i += 2;
            continue;
        }
        if b == quote {
            quoted = !quoted;
        } else if b == b'\n' && !quoted {
            end = i + 1;
        }
        i += 1;
    }
    end
}

/// Parses complete records of COPY FROM data; `before` records came
/// earlier (for line numbers in errors).
pub fn parse(data: &[u8], format: &Format, before: usize) -> Result<Chunk, Error> {
    let text = std::str::from_utf8(data).map_err(|e| {
        Error::invalid(
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            format!(
                "invalid byte sequence for encoding \"UTF8\" in COPY data, line {}",
                before
                    + 1
                    + data[..e.valid_up_to()]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count()
            ),
        )
    })?;
    if format.csv {
        return parse_csv(text, format, before);
    }
    let mut chunk = Chunk {
        rows: Vec::new(),
        records: 0,
        ended: false,
    };
    let lines = text.split('\n').count();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            chunk.records += 1;
            chunk.ended = true;
            break;
        }
        if line.is_empty() && n + 1 == lines {
            break;
        }
        chunk.records += 1;
        if n == 0 && format.header {
            continue;
        }
        chunk.rows.push(
            line.split(format.delimiter)
                .map(|field| {
                    if field == format.null {
                        Ok(None)
                    } else {
                        unescape(field)
                            .map(Some)
                            .ok_or_else(|| bad_data(before + n + 1, "bad backslash escape"))
                    }
                })
                .collect::<Result<Vec<_>, Error>>()?,
        );
    }
    Ok(chunk)
}

/// PostgreSQL's text-format backslash escapes.
fn unescape(field: &str) -> Option<String> {
    if !field.contains('\\') {
        return Some(field.to_string());
    }
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let c = *bytes.get(i + 1)?;
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                for _ in 0..2 {
                    match bytes.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match bytes.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

fn parse_csv(text: &str, format: &Format, before: usize) -> Result<Chunk, Error> {
    let (text, ended) = match text.find("\n\\.") {
        Some(end) => (&text[..end + 1], true),
        None => match text.strip_prefix("\\.") {
            Some(_) => ("", true),
            None => (text, false),
        },
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(format.header)
        .delimiter(format.delimiter as u8)
        .quote(format.quote as u8)
        .escape((format.escape != format.quote).then_some(format.escape as u8))
        .double_quote(format.escape == format.quote)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let first = before + usize::from(format.header);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(bad_data(first + rows.len() + 1, e)),
        }
        let line = first + rows.len() + 1;
        let position = record.position().cloned();
        // After a CRLF the reader's position may be the LF's: a record
        // never starts with a line end.
        let raw = position
            .map(|p| &text.as_bytes()[p.byte() as usize..])
            .unwrap_or_default();
        let raw = &raw[raw
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count()..];
        let mut fields = Vec::with_capacity(record.len());
        // A NULL is an unquoted field equal to the null string; a quoted
        // empty string is an empty string.
        let quoted = quoted_fields(raw, format, record.len());
        for (i, field) in record.iter().enumerate() {
            let value = std::str::from_utf8(field).map_err(|_| bad_data(line, "not UTF-8"))?;
            if value == format.null && !quoted.get(i).copied().unwrap_or(false) {
                fields.push(None);
            } else {
                fields.push(Some(value.to_string()));
            }
        }
        rows.push(fields);
    }
    let records = rows.len() + usize::from(format.header) + usize::from(ended);
    Ok(Chunk {
        rows,
        records,
        ended,
    })
}

/// Which of the first `count` fields of the CSV record at the start of
/// `raw` begin with a quote.
fn quoted_fields(raw: &[u8], format: &Format, count: usize) -> Vec<bool> {
    let (quote, delimiter) = (format.quote as u8, format.delimiter as u8);
    let mut quoted = Vec::with_capacity(count);
    let mut i = 0;
    while quoted.len() < count && i <= raw.len() {
        let is_quoted = raw.get(i) == Some(&quote);
        quoted.push(is_quoted);
        if is_quoted {
            i += 1;
            while i < raw.len() {
                if raw[i] == quote {
                    if raw.get(i + 1) == Some(&quote) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
        }
        while i < raw.len() && raw[i] != delimiter && raw[i] != b'\n' {
            i += 1;
        }
        i += 1;
    }
    quoted
}

/// COPY TO's header line, when the format asks for one.
pub fn header(schema: &SchemaRef, format: &Format) -> Option<Vec<u8>> {
    format.header.then(|| {
        let names = schema.fields().iter().map(|f| Some(f.name().clone()));
        join(names, format)
    })
}

/// The COPY TO lines of one batch of a result.
pub fn batch_lines(batch: &RecordBatch, format: &Format) -> Vec<Vec<u8>> {
    (0..batch.num_rows())
        .map(|r| {
            let fields = batch.columns().iter().map(|c| format::text(c.as_ref(), r));
            join(fields, format)
        })
        .collect()
}

fn join(fields: impl Iterator<Item = Option<String>>, format: &Format) -> Vec<u8> {
    let mut line = String::new();
    for (i, field) in fields.enumerate() {
        if i > 0 {
            line.push(format.delimiter);
        }
        match field {
            None => line.push_str(&format.null),
            Some(value) if format.csv => {
                let needs_quotes = value.is_empty()
                    || value == format.null
                    || value.contains([format.delimiter, format.quote, '\n', '\r']);
                if needs_quotes {
                    line.push(format.quote);
                    for c in value.chars() {
                        if c == format.quote || c == format.escape {
                            line.push(format.escape);
                        }
                        line.push(c);
                    }
                    line.push(format.quote);
                } else {
                    line.push_str(&value);
                }
            }
            Some(value) => {
                for c in value.chars() {
                    match c {
                        '\\' => line.push_str("\\\\"),
                        '\n' => line.push_str("\\n"),
                        '\r' => line.push_str("\\r"),
                        '\t' => line.push_str("\\t"),
                        c if c == format.delimiter => {
                            line.push('\\');
                            line.push(c);
                        }
                        c => line.push(c),
                    }
                }
            }
        }
    }
    line.push('\n');
    line.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_format() -> Format {
        Format {
            csv: false,
            delimiter: '\t',
            null: "\\N".into(),
            header: false,
            quote: '"',
            escape: '"',
        }
    }

    #[test]
    fn text_format_reads_escapes_and_nulls() {
        let rows = parse(b"1\ta\\tb\t\\N\n2\tc\\\\d\t\n\\.\n", &text_format(), 0)
            .unwrap()
            .rows;
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("a\tb".into()), None],
                vec![Some("2".into()), Some("c\\d".into()), Some("".into())],
            ]
        );
    }

    #[test]
    fn csv_tells_null_from_empty_string() {
        let format = Format {
            csv: true,
            delimiter: ',',
            null: String::new(),
            header: true,
            quote: '"',
            escape: '"',
        };
        let rows = parse(b"id,name\n1,\"\"\n2,\n3,\"a,\"\"b\"\"\"\n", &format, 0)
            .unwrap()
            .rows;
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("".into())],
                vec![Some("2".into()), None],
                vec![Some("3".into()), Some("a,\"b\"".into())],
            ]
        );
    }

    #[test]
    fn batches_end_at_record_ends() {
        let text = text_format();
        assert_eq!(complete_records(b"1\ta\n2\tb", &text), 5);
        assert_eq!(complete_records(b"no end yet", &text), 0);
        let csv = Format {
            csv: true,
            delimiter: ',',
            ..text_format()
        };
        // A newline inside quotes is data, not a record end.
        let data = b"1,\"two\nlines\"\n2,\"open\nstill";
        assert_eq!(complete_records(data, &csv), 15);
        let chunk = parse(&data[..15], &csv, 0).unwrap();
        assert_eq!(
            chunk.rows,
            vec![vec![Some("1".into()), Some("two\nlines".into())]]
        );
        let end = parse(b"3,x\n\\.\n4,y\n", &csv, 1).unwrap();
        assert!(end.ended);
        assert_eq!(end.rows.len(), 1);
    }
}
