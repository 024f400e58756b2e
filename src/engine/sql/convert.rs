//! Between the engine's rows of [`Value`]s and Arrow's columnar batches.
//!
//! Each engine type has one Arrow type ([`arrow_type`]); a table's rows become
//! a [`RecordBatch`] of those types, and a batch computed by DataFusion is cast
//! to a table's column types before its rows are written. The cast is Arrow's
//! own, so a value written by the fast path and by the general path goes
//! through the same conversion.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array,
    Float64Builder, Int16Array, Int16Builder, Int32Array, Int32Builder, Int64Array, Int64Builder,
    IntervalMonthDayNanoArray, IntervalMonthDayNanoBuilder, StringArray, StringBuilder,
    Time64MicrosecondArray, Time64MicrosecondBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{
    DataType as ArrowType, Field, Float64Type, IntervalMonthDayNano, Schema, SchemaRef, TimeUnit,
};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::sql::sqlparser::ast::{self, Expr};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::engine::catalog::Table;
use crate::engine::encoding::row::{self, Raw};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::types::{DataType, Decimal, Interval, Value};

/// The time zone omen's TIMESTAMPTZ values carry in Arrow.
pub const UTC: &str = "+00:00";

/// The Arrow type that holds values of `data_type`.
pub fn arrow_type(data_type: DataType) -> ArrowType {
    match data_type {
        DataType::Bool => ArrowType::Boolean,
        DataType::Int16 => ArrowType::Int16,
        DataType::Int32 => ArrowType::Int32,
        DataType::Int64 => ArrowType::Int64,
        DataType::Float32 => ArrowType::Float32,
        DataType::Float64 => ArrowType::Float64,
        DataType::Decimal { precision, scale } => ArrowType::Decimal128(precision, scale as i8),
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) => ArrowType::Utf8,
        DataType::Bytes => ArrowType::Binary,
        DataType::Date => ArrowType::Date32,
        DataType::Time => ArrowType::Time64(TimeUnit::Microsecond),
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        DataType::TimestampTz => ArrowType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        DataType::Interval => {
            ArrowType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
        }
    }
}

/// Field metadata of a CHAR(n) column, holding n. Stored values are blank
/// padded to n characters; inside a query they are not (PostgreSQL compares,
/// measures and casts them without the padding), and a result column that
/// is still a CHAR(n) column is padded again as it leaves the query
/// ([`pad_chars`]).
pub const CHAR_LENGTH: &str = "omen.char_length";

/// The Arrow schema of a table's rows.
pub fn table_schema(table: &Table) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| {
            let field = Field::new(&c.name, arrow_type(c.data_type), c.nullable);
            match c.data_type {
                DataType::Char(n) => field.with_metadata(
                    [(CHAR_LENGTH.to_string(), n.to_string())]
                        .into_iter()
                        .collect(),
                ),
                _ => field,
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The declared length of a CHAR(n) result column.
fn char_length(field: &Field) -> Option<usize> {
    field.metadata().get(CHAR_LENGTH)?.parse().ok()
}

/// `batch` with its CHAR(n) columns blank-padded to n characters again, as
/// a result shows them.
pub fn pad_chars(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| char_length(f).is_some()) {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            match (
                char_length(field),
                column.as_any().downcast_ref::<StringArray>(),
            ) {
                (Some(n), Some(text)) => Arc::new(
                    text.iter()
                        .map(|v| v.map(|v| pad_char(v, n)))
                        .collect::<StringArray>(),
                ) as ArrayRef,
                _ => column.clone(),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).map_err(internal)
}

/// `text` blank-padded to `n` characters, as a CHAR(n) value is stored.
pub fn pad_char(text: &str, n: usize) -> String {
    let mut padded = text.to_string();
    let len = text.chars().count();
    padded.extend(std::iter::repeat_n(' ', n.saturating_sub(len)));
    padded
}

/// Rows as a batch of `schema`, keeping only the columns in `projection`.
pub fn rows_to_batch(
    schema: &SchemaRef,
    rows: &[Vec<Value>],
    projection: Option<&[usize]>,
) -> Result<RecordBatch> {
    let all: Vec<usize> = (0..schema.fields().len()).collect();
    let columns = projection.unwrap_or(&all);
    let arrays = columns
        .iter()
        .map(|&c| {
            let field = schema.field(c);
            column_array(field.data_type(), rows, c, char_length(field).is_some())
        })
        .collect::<Result<Vec<_>>>()?;
    let projected = Arc::new(schema.project(columns).map_err(internal)?);
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(projected, arrays, &options).map_err(internal)
}

/// Column `c` of `rows` as an array of type `arrow`; `unpad` takes the
/// blank padding off CHAR(n) values.
fn column_array(arrow: &ArrowType, rows: &[Vec<Value>], c: usize, unpad: bool) -> Result<ArrayRef> {
    let mut builder = ColumnBuilder::new(arrow, unpad, rows.len())?;
    for row in rows {
        builder.append(Raw::of(&row[c]))?;
    }
    builder.finish()
}

/// A column of one Arrow type being built from stored values.
enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    /// Values rescaled to the column's scale.
    Decimal(Decimal128Builder, u8, u8),
    /// Whether CHAR(n) padding comes off.
    Text(StringBuilder, bool),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Interval(IntervalMonthDayNanoBuilder),
}

impl ColumnBuilder {
    fn new(arrow: &ArrowType, unpad: bool, rows: usize) -> Result<ColumnBuilder> {
        Ok(match arrow {
            ArrowType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            ArrowType::Int16 => ColumnBuilder::Int16(Int16Builder::with_capacity(rows)),
            ArrowType::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(rows)),
            ArrowType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            ArrowType::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(rows)),
            ArrowType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            ArrowType::Decimal128(p, s) => {
                ColumnBuilder::Decimal(Decimal128Builder::with_capacity(rows), *p, *s as u8)
            }
            ArrowType::Utf8 => {
                ColumnBuilder::Text(StringBuilder::with_capacity(rows, rows * 8), unpad)
            }
            ArrowType::Binary => ColumnBuilder::Bytes(BinaryBuilder::with_capacity(rows, rows * 8)),
            ArrowType::Date32 => ColumnBuilder::Date(Date32Builder::with_capacity(rows)),
            ArrowType::Time64(TimeUnit::Microsecond) => {
                ColumnBuilder::Time(Time64MicrosecondBuilder::with_capacity(rows))
            }
            ArrowType::Timestamp(TimeUnit::Microsecond, tz) => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows),
                tz.clone(),
            ),
            ArrowType::Interval(_) => {
                ColumnBuilder::Interval(IntervalMonthDayNanoBuilder::with_capacity(rows))
            }
            other => return Err(Error::Internal(format!("no column of Arrow type {other}"))),
        })
    }

    fn append(&mut self, raw: Raw<'_>) -> Result<()> {
        let narrow = |v: i64| i32::try_from(v).map_err(|_| out_of_range());
        match (self, raw) {
            (ColumnBuilder::Bool(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Int16(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Int32(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Int64(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Float32(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Float64(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Decimal(b, ..), Raw::Null) => b.append_null(),
            (ColumnBuilder::Text(b, _), Raw::Null) => b.append_null(),
            (ColumnBuilder::Bytes(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Date(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Time(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b, _), Raw::Null) => b.append_null(),
            (ColumnBuilder::Interval(b), Raw::Null) => b.append_null(),
            (ColumnBuilder::Bool(b), Raw::Bool(v)) => b.append_value(v),
            (ColumnBuilder::Int16(b), Raw::Int(v)) => {
                b.append_value(i16::try_from(v).map_err(|_| out_of_range())?)
            }
            (ColumnBuilder::Int32(b), Raw::Int(v)) => b.append_value(narrow(v)?),
            (ColumnBuilder::Int64(b), Raw::Int(v)) => b.append_value(v),
            (ColumnBuilder::Float32(b), Raw::Float32(v)) => b.append_value(v),
            (ColumnBuilder::Float64(b), Raw::Float64(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b, _, scale), Raw::Decimal(mantissa, s)) => {
                b.append_value(rescale(Decimal { mantissa, scale: s }, *scale)?)
            }
            (ColumnBuilder::Text(b, unpad), Raw::Text(bytes)) => {
                let text = Raw::text(bytes)?;
                b.append_value(if *unpad {
                    text.trim_end_matches(' ')
                } else {
                    text
                })
            }
            (ColumnBuilder::Bytes(b), Raw::Bytes(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Raw::Int(v)) => b.append_value(narrow(v)?),
            (ColumnBuilder::Time(b), Raw::Int(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b, _), Raw::Int(v)) => b.append_value(v),
            (ColumnBuilder::Interval(b), Raw::Interval(i)) => b.append_value(
                IntervalMonthDayNano::new(i.months, i.days, i.nanoseconds()?),
            ),
            (_, raw) => {
                return Err(Error::Internal(format!(
                    "a value {raw:?} in a column of another type"
                )))
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<ArrayRef> {
        Ok(match self {
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(mut b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(p, s as i8)
                    .map_err(internal)?,
            ),
            ColumnBuilder::Text(mut b, _) => Arc::new(b.finish()),
            ColumnBuilder::Bytes(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Time(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b, tz) => Arc::new(b.finish().with_timezone_opt(tz)),
            ColumnBuilder::Interval(mut b) => Arc::new(b.finish()),
        })
    }
}

/// A batch of a table's columns built straight from stored rows: each
/// row's values are read in place and only the projected ones are kept, so
/// a scan allocates nothing per row.
pub struct RowBatch {
    /// The projected columns (the storage key last, when asked for).
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    /// For each table column, the builder it fills.
    slots: Vec<Option<usize>>,
    /// The builder the storage key fills.
    key: Option<usize>,
    /// The table's column types under its current schema version.
    types: Vec<DataType>,
    /// Which of them the batch keeps.
    wanted: Vec<bool>,
    rows: usize,
}

impl RowBatch {
    /// A batch of `schema` (a table's columns, and its storage key last when
    /// `with_keys`), keeping the columns in `projection`.
    pub fn new(
        table: &Table,
        schema: &SchemaRef,
        projection: Option<&[usize]>,
        with_keys: bool,
        capacity: usize,
    ) -> Result<RowBatch> {
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let columns = projection.unwrap_or(&all);
        let mut slots = vec![None; table.columns.len()];
        let mut key = None;
        let mut builders = Vec::with_capacity(columns.len());
        for (slot, &c) in columns.iter().enumerate() {
            let field = schema.field(c);
            builders.push(ColumnBuilder::new(
                field.data_type(),
                char_length(field).is_some(),
                capacity,
            )?);
            match slots.get_mut(c) {
                Some(s) => *s = Some(slot),
                None if with_keys => key = Some(slot),
                None => return Err(Error::Internal("a projection past the table".into())),
            }
        }
        Ok(RowBatch {
            schema: Arc::new(schema.project(columns).map_err(internal)?),
            builders,
            key,
            types: table.columns.iter().map(|c| c.data_type).collect(),
            wanted: slots.iter().map(Option::is_some).collect(),
            slots,
            rows: 0,
        })
    }

    /// Adds the row stored under `key` as `bytes`.
    pub fn push(&mut self, table: &Table, key: &[u8], bytes: &[u8]) -> Result<()> {
        let RowBatch {
            builders, slots, ..
        } = self;
        if row::row_schema_version(bytes)? == table.schema_version {
            row::visit_row(bytes, &self.types, &self.wanted, |i, raw| match slots[i] {
                Some(slot) => builders[slot].append(raw),
                None => Ok(()),
            })?;
        } else {
            // Written under an older definition: decoded as the table is now.
            for (value, slot) in table.decode_row(bytes)?.iter().zip(slots.iter()) {
                if let Some(slot) = slot {
                    builders[*slot].append(Raw::of(value))?;
                }
            }
        }
        if let Some(slot) = self.key {
            self.builders[slot].append(Raw::Bytes(key))?;
        }
        self.rows += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<RecordBatch> {
        let arrays = self
            .builders
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        RecordBatch::try_new_with_options(self.schema, arrays, &options).map_err(internal)
    }
}

/// The mantissa of `d` at `scale` digits after the point.
fn rescale(d: Decimal, scale: u8) -> Result<i128> {
    let diff = scale as i32 - d.scale as i32;
    let factor = 10i128
        .checked_pow(diff.unsigned_abs())
        .ok_or_else(out_of_range)?;
    if diff >= 0 {
        d.mantissa.checked_mul(factor).ok_or_else(out_of_range)
    } else {
        Ok(d.mantissa / factor)
    }
}

/// Casts `array` to the type of a column of `data_type`, failing (not
/// producing NULL) on values that do not fit, as an INSERT into PostgreSQL does.
pub fn cast_to(array: &ArrayRef, data_type: DataType) -> Result<ArrayRef> {
    let target = arrow_type(data_type);
    if array.data_type() == &target {
        return Ok(array.clone());
    }
    let from_text = matches!(
        array.data_type(),
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
    );
    match data_type {
        DataType::Interval if from_text => {
            return parse_text(array, data_type, |s| parse_interval(s).map(Value::Interval))
        }
        DataType::Bytes if from_text => {
            return parse_text(array, data_type, |s| {
                parse_bytea(s)
                    .map(Value::Bytes)
                    .ok_or_else(|| invalid_syntax(DataType::Bytes, s))
            })
        }
        _ => {}
    }
    if matches!(array.data_type(), ArrowType::Float32 | ArrowType::Float64)
        && matches!(
            data_type,
            DataType::Int16 | DataType::Int32 | DataType::Int64
        )
    {
        // PostgreSQL rounds floats to the nearest integer, halves to even;
        // Arrow would truncate.
        let floats = cast_with_options(array, &ArrowType::Float64, &strict())
            .map_err(|e| cast_error(e, data_type))?;
        let floats = floats
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to f64");
        let rounded: ArrayRef = Arc::new(floats.unary::<_, Float64Type>(f64::round_ties_even));
        return cast_with_options(&rounded, &target, &strict())
            .map_err(|e| cast_error(e, data_type));
    }
    cast_with_options(array, &target, &strict()).map_err(|e| cast_error(e, data_type))
}

/// Text values read by PostgreSQL's input syntax for `data_type`, where
/// Arrow's cast lacks it; a value that does not parse is 22P02.
fn parse_text(
    array: &ArrayRef,
    data_type: DataType,
    parse: fn(&str) -> Result<Value>,
) -> Result<ArrayRef> {
    let text = cast_with_options(array, &ArrowType::Utf8, &strict())
        .map_err(|e| cast_error(e, data_type))?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8");
    let rows = text
        .iter()
        .map(|value| match value {
            None => Ok(vec![Value::Null]),
            Some(s) => parse(s).map(|v| vec![v]),
        })
        .collect::<Result<Vec<_>>>()?;
    column_array(&arrow_type(data_type), &rows, 0, false)
}

/// 22P02: `s` is not a value of `data_type`.
fn invalid_syntax(data_type: DataType, s: &str) -> Error {
    Error::invalid(
        SqlState::INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type {data_type}: \"{s}\""),
    )
}

/// PostgreSQL's bytea input syntax: `\\x` and hex digits, or the escape
/// form where `\\\\` is a backslash and `\\nnn` an octal byte.
fn parse_bytea(s: &str) -> Option<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(octal, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// PostgreSQL's interval syntax (`1 day 02:00:00`, `3 mons`, `-1 year 2 hours`,
/// `1:30`), which Arrow's parser lacks the clock part of:
/// `[N unit]... [[+-]H:M[:S[.f]]] [ago]`. Text that is not an interval is
/// 22P02; one whose fields overflow (or whose time part omen cannot hold,
/// see [`Interval::MAX_MICROS`]) is 22015, never a wrapped value.
pub fn parse_interval(s: &str) -> Result<Interval> {
    let syntax = || invalid_syntax(DataType::Interval, s);
    let overflow = || {
        Error::invalid(
            SqlState::INTERVAL_FIELD_OVERFLOW,
            format!("interval field value out of range: \"{s}\""),
        )
    };
    let mut out = Interval::default();
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut i = 0;
    let mut any = false;
    let mut ago = false;
    while i < words.len() {
        let word = words[i].trim_start_matches('@');
        if word.is_empty() {
            i += 1;
            continue;
        }
        if word.eq_ignore_ascii_case("ago") {
            ago = true;
            i += 1;
            continue;
        }
        if word.contains(':') {
            let (sign, clock) = match word.as_bytes()[0] {
                b'-' => (-1i64, &word[1..]),
                b'+' => (1, &word[1..]),
                _ => (1, word),
            };
            let parts: Vec<&str> = clock.split(':').collect();
            if parts.len() > 3 {
                return Err(syntax());
            }
            let hours: i64 = parts[0].parse().map_err(|_| syntax())?;
            let minutes: i64 = match parts.get(1) {
                Some(p) => p.parse().map_err(|_| syntax())?,
                None => 0,
            };
            let seconds: f64 = match parts.get(2) {
                Some(p) => p.parse().map_err(|_| syntax())?,
                None => 0.0,
            };
            let micros = hours
                .checked_mul(3_600_000_000)
                .and_then(|h| h.checked_add(minutes.checked_mul(60_000_000)?))
                .and_then(|hm| hm.checked_add(float_micros(seconds * 1e6)?))
                .and_then(|m| m.checked_mul(sign))
                .ok_or_else(overflow)?;
            out.micros = out.micros.checked_add(micros).ok_or_else(overflow)?;
            any = true;
            i += 1;
            continue;
        }
        // A number, then its unit (in the same word, as in "5min", or the next).
        let split = word
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(word.len());
        let (digits, mut unit) = word.split_at(split);
        // Whole numbers count exactly; only fractions go through floats.
        let exact: Option<i64> = digits.parse().ok();
        let number: f64 = digits.parse().map_err(|_| syntax())?;
        if !number.is_finite() {
            return Err(syntax());
        }
        if unit.is_empty() {
            i += 1;
            unit = words.get(i).copied().unwrap_or("second");
        }
        let unit = unit.to_ascii_lowercase();
        // A whole count of a field; a fraction of months or days is refused
        // (PostgreSQL spills it into smaller fields).
        let whole = |n: f64| -> Result<i32> {
            if n.fract() != 0.0 {
                return Err(syntax());
            }
            if n < i32::MIN as f64 || n > i32::MAX as f64 {
                return Err(overflow());
            }
            Ok(n as i32)
        };
        let add_micros = |out: &mut Interval, per: i64| -> Result<()> {
            let micros = match exact {
                Some(n) => n.checked_mul(per),
                None => float_micros(number * per as f64),
            }
            .ok_or_else(overflow)?;
            out.micros = out.micros.checked_add(micros).ok_or_else(overflow)?;
            Ok(())
        };
        match unit.trim_end_matches(',') {
            "year" | "years" | "yr" | "yrs" | "y" => {
                out.months = out
                    .months
                    .checked_add(whole(number * 12.0)?)
                    .ok_or_else(overflow)?
            }
            "mon" | "mons" | "month" | "months" => {
                out.months = out
                    .months
                    .checked_add(whole(number)?)
                    .ok_or_else(overflow)?
            }
            "week" | "weeks" | "w" => {
                out.days = out
                    .days
                    .checked_add(whole(number * 7.0)?)
                    .ok_or_else(overflow)?
            }
            "day" | "days" | "d" => {
                out.days = out.days.checked_add(whole(number)?).ok_or_else(overflow)?
            }
            "hour" | "hours" | "hr" | "hrs" | "h" => add_micros(&mut out, 3_600_000_000)?,
            "minute" | "minutes" | "min" | "mins" | "m" => add_micros(&mut out, 60_000_000)?,
            "second" | "seconds" | "sec" | "secs" | "s" => add_micros(&mut out, 1_000_000)?,
            "millisecond" | "milliseconds" | "ms" => add_micros(&mut out, 1000)?,
            "microsecond" | "microseconds" | "us" => add_micros(&mut out, 1)?,
            _ => return Err(syntax()),
        }
        any = true;
        i += 1;
    }
    if !any {
        return Err(syntax());
    }
    if ago {
        out = Interval {
            months: out.months.checked_neg().ok_or_else(overflow)?,
            days: out.days.checked_neg().ok_or_else(overflow)?,
            micros: out.micros.checked_neg().ok_or_else(overflow)?,
        };
    }
    if out.micros.unsigned_abs() > Interval::MAX_MICROS as u64 {
        return Err(overflow());
    }
    Ok(out)
}

/// A float count of microseconds, rounded, when it fits in 64 bits.
fn float_micros(micros: f64) -> Option<i64> {
    let rounded = micros.round();
    (rounded.is_finite() && rounded >= i64::MIN as f64 && rounded < i64::MAX as f64)
        .then_some(rounded as i64)
}

fn strict() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    }
}

fn cast_error(e: datafusion::arrow::error::ArrowError, data_type: DataType) -> Error {
    let text = e.to_string();
    if text.contains("Can't cast value")
        || text.contains("overflow")
        || text.contains("too large")
        || text.contains("out of range")
    {
        return Error::invalid(
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("value out of range for type {data_type}: {text}"),
        );
    }
    Error::invalid(
        SqlState::INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type {data_type}: {text}"),
    )
}

/// The value at `row` of an array of one of omen's column types.
pub fn value_at(array: &dyn Array, row: usize) -> Result<Value> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    macro_rules! get {
        ($t:ty) => {
            array
                .as_any()
                .downcast_ref::<$t>()
                .expect("type checked")
                .value(row)
        };
    }
    Ok(match array.data_type() {
        ArrowType::Boolean => Value::Bool(get!(BooleanArray)),
        ArrowType::Int16 => Value::Int16(get!(Int16Array)),
        ArrowType::Int32 => Value::Int32(get!(Int32Array)),
        ArrowType::Int64 => Value::Int64(get!(Int64Array)),
        ArrowType::Float32 => Value::Float32(get!(Float32Array)),
        ArrowType::Float64 => Value::Float64(get!(Float64Array)),
        ArrowType::Utf8 => Value::Text(get!(StringArray).to_string()),
        ArrowType::Binary => Value::Bytes(get!(BinaryArray).to_vec()),
        ArrowType::Date32 => Value::Date(get!(Date32Array)),
        ArrowType::Time64(TimeUnit::Microsecond) => Value::Time(get!(Time64MicrosecondArray)),
        ArrowType::Timestamp(TimeUnit::Microsecond, None) => {
            Value::Timestamp(get!(TimestampMicrosecondArray))
        }
        ArrowType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
            Value::TimestampTz(get!(TimestampMicrosecondArray))
        }
        ArrowType::Decimal128(_, s) => Value::Decimal(Decimal::new(
            get!(Decimal128Array),
            u8::try_from(*s).map_err(|_| out_of_range())?,
        )?),
        ArrowType::Interval(_) => {
            let v = get!(IntervalMonthDayNanoArray);
            Value::Interval(Interval {
                months: v.months,
                days: v.days,
                micros: v.nanoseconds / 1000,
            })
        }
        other => return Err(Error::Internal(format!("no value of Arrow type {other}"))),
    })
}

fn out_of_range() -> Error {
    Error::invalid(
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        "numeric field overflow",
    )
}

fn internal(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::Internal(format!("Arrow: {e}"))
}

/// The SQL type `data_type` is written as.
pub fn sql_type(data_type: DataType) -> Result<ast::DataType> {
    let text = data_type.to_string();
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| Error::Internal(format!("the type name {text} does not parse: {e}")))
}

/// An expression that means `value` as a `data_type`: its PostgreSQL text
/// cast to the type (`'2024-01-02'::date`), a typed NULL, or a hex literal
/// for bytes, the forms the general path reads a bound parameter in.
pub fn value_expr(value: &Value, data_type: DataType) -> Result<Expr> {
    let literal = |v: ast::Value| Expr::Value(v.into());
    let inner = match value {
        Value::Null => literal(ast::Value::Null),
        Value::Bytes(bytes) => {
            let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
            return Ok(literal(ast::Value::HexStringLiteral(hex)));
        }
        // Every digit, where PostgreSQL's text output may round.
        Value::Float32(v) => literal(ast::Value::SingleQuotedString(float_text(*v as f64))),
        Value::Float64(v) => literal(ast::Value::SingleQuotedString(float_text(*v))),
        // Text stands for a value of `data_type` in its text form.
        Value::Text(text) => literal(ast::Value::SingleQuotedString(text.clone())),
        value => {
            let field = Field::new("v", arrow_type(data_type), true);
            let schema = Arc::new(Schema::new(vec![field]));
            let batch = rows_to_batch(&schema, &[vec![value.clone()]], None)?;
            let text = super::format::text(batch.column(0).as_ref(), 0).unwrap_or_default();
            literal(ast::Value::SingleQuotedString(text))
        }
    };
    Ok(Expr::Cast {
        kind: ast::CastKind::DoubleColon,
        expr: Box::new(inner),
        data_type: sql_type(data_type)?,
        array: false,
        format: None,
    })
}

/// A float as PostgreSQL reads it back exactly: every digit, or `NaN`,
/// `Infinity`, `-Infinity`.
pub fn float_text(v: f64) -> String {
    match v {
        v if v.is_nan() => "NaN".into(),
        f64::INFINITY => "Infinity".into(),
        f64::NEG_INFINITY => "-Infinity".into(),
        v => v.to_string(),
    }
}

/// The engine type that holds values of an Arrow type (text for the types
/// omen has no column type for).
pub fn engine_type(arrow: &ArrowType) -> DataType {
    match arrow {
        ArrowType::Boolean => DataType::Bool,
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::UInt8 => DataType::Int16,
        ArrowType::Int32 | ArrowType::UInt16 => DataType::Int32,
        ArrowType::Int64 | ArrowType::UInt32 | ArrowType::UInt64 => DataType::Int64,
        ArrowType::Float16 | ArrowType::Float32 => DataType::Float32,
        ArrowType::Float64 => DataType::Float64,
        ArrowType::Decimal128(precision, scale) if *scale >= 0 => DataType::Decimal {
            precision: *precision,
            scale: *scale as u8,
        },
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => DataType::Bytes,
        ArrowType::Date32 | ArrowType::Date64 => DataType::Date,
        ArrowType::Time32(_) | ArrowType::Time64(_) => DataType::Time,
        ArrowType::Timestamp(_, None) => DataType::Timestamp,
        ArrowType::Timestamp(_, Some(_)) => DataType::TimestampTz,
        ArrowType::Interval(_) => DataType::Interval,
        _ => DataType::Text,
    }
}

/// The PostgreSQL name of the type an Arrow type holds, for messages.
pub fn pg_type_name(arrow: &ArrowType) -> String {
    match arrow {
        ArrowType::Null => "unknown".into(),
        ArrowType::Boolean => "boolean".into(),
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::UInt8 => "smallint".into(),
        ArrowType::Int32 | ArrowType::UInt16 => "integer".into(),
        ArrowType::Int64 | ArrowType::UInt32 | ArrowType::UInt64 => "bigint".into(),
        ArrowType::Float16 | ArrowType::Float32 => "real".into(),
        ArrowType::Float64 => "double precision".into(),
        ArrowType::Decimal128(..) | ArrowType::Decimal256(..) => "numeric".into(),
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => "text".into(),
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => "bytea".into(),
        ArrowType::Date32 | ArrowType::Date64 => "date".into(),
        ArrowType::Time32(_) | ArrowType::Time64(_) => "time without time zone".into(),
        ArrowType::Timestamp(_, None) => "timestamp without time zone".into(),
        ArrowType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        ArrowType::Interval(_) | ArrowType::Duration(_) => "interval".into(),
        ArrowType::List(f) | ArrowType::LargeList(f) => {
            format!("{}[]", pg_type_name(f.data_type()))
        }
        other => other.to_string(),
    }
}
