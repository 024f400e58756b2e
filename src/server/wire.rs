//! Values on the wire: the PostgreSQL type of each Arrow column, rows encoded
//! in text or binary format, and parameters decoded from a Bind message into
//! SQL literals.
//!
//! Text format is the engine's own PostgreSQL spelling ([`format::text`]), so
//! psql shows what `omen repl` shows. Binary format follows PostgreSQL's
//! send/recv functions for each type.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType as ArrowType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{self, CastKind, Expr, UnaryOperator};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

use omen::engine::sql::{float_text, format};
use omen::engine::types::Value;
use omen::{Error, SqlState};

/// Microseconds from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// The PostgreSQL type clients see for an Arrow type.
pub fn pg_type(arrow: &ArrowType) -> Type {
    match arrow {
        ArrowType::Boolean => Type::BOOL,
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::UInt8 => Type::INT2,
        ArrowType::Int32 | ArrowType::UInt16 => Type::INT4,
        ArrowType::Int64 | ArrowType::UInt32 | ArrowType::UInt64 => Type::INT8,
        ArrowType::Float16 | ArrowType::Float32 => Type::FLOAT4,
        ArrowType::Float64 => Type::FLOAT8,
        ArrowType::Decimal128(..) | ArrowType::Decimal256(..) => Type::NUMERIC,
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => Type::BYTEA,
        ArrowType::Date32 | ArrowType::Date64 => Type::DATE,
        ArrowType::Time32(_) | ArrowType::Time64(_) => Type::TIME,
        ArrowType::Timestamp(_, None) => Type::TIMESTAMP,
        ArrowType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        ArrowType::Interval(_) | ArrowType::Duration(_) => Type::INTERVAL,
        ArrowType::List(f) | ArrowType::LargeList(f) => match pg_type(f.data_type()) {
            Type::BOOL => Type::BOOL_ARRAY,
            Type::INT2 => Type::INT2_ARRAY,
            Type::INT4 => Type::INT4_ARRAY,
            Type::INT8 => Type::INT8_ARRAY,
            Type::FLOAT4 => Type::FLOAT4_ARRAY,
            Type::FLOAT8 => Type::FLOAT8_ARRAY,
            Type::NUMERIC => Type::NUMERIC_ARRAY,
            Type::DATE => Type::DATE_ARRAY,
            Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
            Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
            _ => Type::TEXT_ARRAY,
        },
        _ => Type::TEXT,
    }
}

/// The column descriptions of a result, each in the format the client asked
/// for.
pub fn fields(
    schema: &datafusion::arrow::datatypes::Schema,
    format: impl Fn(usize) -> FieldFormat,
) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format(i),
            )
        })
        .collect()
}

/// Encodes every row of `batches` as DataRow messages.
pub fn encode_rows(
    batches: &[RecordBatch],
    fields: &Arc<Vec<FieldInfo>>,
) -> Result<Vec<DataRow>, Error> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(fields.iter())
            .map(|(array, field)| match field.format() {
                FieldFormat::Text => Ok(array.clone()),
                FieldFormat::Binary => binary_column(array),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        for r in 0..batch.num_rows() {
            let mut data = BytesMut::new();
            for (array, field) in columns.iter().zip(fields.iter()) {
                let value = match field.format() {
                    FieldFormat::Text => format::text(array.as_ref(), r).map(String::into_bytes),
                    FieldFormat::Binary => binary(array.as_ref(), r)?,
                };
                match value {
                    None => data.put_i32(-1),
                    Some(bytes) => {
                        data.put_i32(bytes.len() as i32);
                        data.put_slice(&bytes);
                    }
                }
            }
            rows.push(DataRow::new(data, columns.len() as i16));
        }
    }
    Ok(rows)
}

/// A column in the Arrow type whose binary form [`binary`] writes.
fn binary_column(array: &ArrayRef) -> Result<ArrayRef, Error> {
    let target = match array.data_type() {
        ArrowType::Int8 | ArrowType::UInt8 => ArrowType::Int16,
        ArrowType::UInt16 => ArrowType::Int32,
        ArrowType::UInt32 | ArrowType::UInt64 => ArrowType::Int64,
        ArrowType::Float16 => ArrowType::Float32,
        ArrowType::LargeUtf8 | ArrowType::Utf8View => ArrowType::Utf8,
        ArrowType::LargeBinary | ArrowType::BinaryView => ArrowType::Binary,
        ArrowType::Date64 => ArrowType::Date32,
        ArrowType::Time32(_) => ArrowType::Time64(TimeUnit::Microsecond),
        ArrowType::Time64(TimeUnit::Nanosecond) => ArrowType::Time64(TimeUnit::Microsecond),
        ArrowType::Timestamp(unit, tz) if *unit != TimeUnit::Microsecond => {
            ArrowType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        ArrowType::Interval(unit) if *unit != IntervalUnit::MonthDayNano => {
            ArrowType::Interval(IntervalUnit::MonthDayNano)
        }
        ArrowType::Duration(_) => ArrowType::Interval(IntervalUnit::MonthDayNano),
        _ => return Ok(array.clone()),
    };
    cast(array, &target).map_err(|e| Error::Internal(format!("Arrow cast for the wire: {e}")))
}

/// The binary form of the value at `row`, or None for NULL.
fn binary(array: &dyn Array, row: usize) -> Result<Option<Vec<u8>>, Error> {
    if array.is_null(row) {
        return Ok(None);
    }
    Ok(Some(match array.data_type() {
        ArrowType::Boolean => vec![array.as_boolean().value(row) as u8],
        ArrowType::Int16 => array
            .as_primitive::<Int16Type>()
            .value(row)
            .to_be_bytes()
            .to_vec(),
        ArrowType::Int32 => array
            .as_primitive::<Int32Type>()
            .value(row)
            .to_be_bytes()
            .to_vec(),
        ArrowType::Int64 => array
            .as_primitive::<Int64Type>()
            .value(row)
            .to_be_bytes()
            .to_vec(),
        ArrowType::Float32 => array
            .as_primitive::<Float32Type>()
            .value(row)
            .to_be_bytes()
            .to_vec(),
        ArrowType::Float64 => array
            .as_primitive::<Float64Type>()
            .value(row)
            .to_be_bytes()
            .to_vec(),
        ArrowType::Decimal128(_, scale) => {
            let mantissa = array.as_primitive::<Decimal128Type>().value(row);
            numeric_binary(mantissa, (*scale).max(0) as u32)
        }
        ArrowType::Utf8 => array.as_string::<i32>().value(row).as_bytes().to_vec(),
        ArrowType::Binary => array.as_binary::<i32>().value(row).to_vec(),
        ArrowType::Date32 => array
            .as_primitive::<Date32Type>()
            .value(row)
            .checked_sub(PG_EPOCH_DAYS)
            .ok_or_else(|| out_of_range("date"))?
            .to_be_bytes()
            .to_vec(),
        ArrowType::Time64(TimeUnit::Microsecond) => array
            .as_primitive::<Time64MicrosecondType>()
            .value(row)
            .to_be_bytes()
            .to_vec(),
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            micros
                .checked_sub(PG_EPOCH_MICROS)
                .ok_or_else(|| out_of_range("timestamp"))?
                .to_be_bytes()
                .to_vec()
        }
        ArrowType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            let mut out = Vec::with_capacity(16);
            out.extend_from_slice(&(v.nanoseconds / 1000).to_be_bytes());
            out.extend_from_slice(&v.days.to_be_bytes());
            out.extend_from_slice(&v.months.to_be_bytes());
            out
        }
        other => {
            return Err(Error::Unsupported(format!(
                "binary format for {} values",
                omen::engine::sql::pg_type_name(other)
            )))
        }
    }))
}

/// PostgreSQL's binary NUMERIC: digit count, weight, sign and display scale,
/// then base-10000 digits.
fn numeric_binary(mantissa: i128, scale: u32) -> Vec<u8> {
    let negative = mantissa < 0;
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    // Pad so there is at least one integer digit, then split at the point.
    let digits = format!("{:0>width$}", digits, width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    // Integer part grouped by 4 from the point leftwards, fraction rightwards.
    let int = format!("{:0>width$}", int, width = int.len().div_ceil(4) * 4);
    let frac = format!("{:0<width$}", frac, width = frac.len().div_ceil(4) * 4);
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| {
                std::str::from_utf8(c)
                    .expect("ASCII digits")
                    .parse()
                    .expect("digits")
            })
            .collect()
    };
    let mut groups = group(&int);
    let mut weight = groups.len() as i16 - 1;
    groups.extend(group(&frac));
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(scale as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

/// The decimal text of a binary NUMERIC.
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
    };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0 | 0x4000 => {}
        _ => return None,
    }
    let groups = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Option<Vec<u16>>>()?;
    let mut int = String::new();
    for w in 0..=weight.max(-1) {
        let g = groups.get(w as usize).copied().unwrap_or(0);
        if int.is_empty() {
            int = g.to_string();
        } else {
            int.push_str(&format!("{g:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut w = weight + 1;
    while frac.len() < dscale {
        let g = if w < 0 {
            0
        } else {
            groups.get(w as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{g:04}"));
        w += 1;
    }
    frac.truncate(dscale);
    let mut text = if sign == 0x4000 {
        "-".to_string()
    } else {
        String::new()
    };
    text.push_str(&int);
    if !frac.is_empty() {
        text.push('.');
        text.push_str(&frac);
    }
    Some(text)
}

/// A parameter's value as text, decoded from the format it came in.
/// 22008: a date or timestamp past what omen holds.
fn out_of_range(what: &str) -> Error {
    Error::invalid(
        SqlState::DATETIME_FIELD_OVERFLOW,
        format!("{what} out of range"),
    )
}

pub fn parameter_text(bytes: &[u8], t: &Type, binary: bool) -> Result<String, Error> {
    let bad = || {
        Error::invalid(
            SqlState::INVALID_BINARY_REPRESENTATION,
            format!(
                "incorrect binary data format in bind parameter of type {}",
                t.name()
            ),
        )
    };
    if !binary {
        return String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::invalid(
                SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                "invalid byte sequence for encoding \"UTF8\"",
            )
        });
    }
    let fixed =
        |n: usize| -> Result<&[u8], Error> { (bytes.len() == n).then_some(bytes).ok_or_else(bad) };
    Ok(match *t {
        Type::BOOL => (if fixed(1)?[0] != 0 { "true" } else { "false" }).into(),
        Type::INT2 => i16::from_be_bytes(fixed(2)?.try_into().expect("2 bytes")).to_string(),
        Type::INT4 => i32::from_be_bytes(fixed(4)?.try_into().expect("4 bytes")).to_string(),
        Type::OID => u32::from_be_bytes(fixed(4)?.try_into().expect("4 bytes")).to_string(),
        Type::INT8 => i64::from_be_bytes(fixed(8)?.try_into().expect("8 bytes")).to_string(),
        Type::FLOAT4 => {
            float_text(f32::from_be_bytes(fixed(4)?.try_into().expect("4 bytes")) as f64)
        }
        Type::FLOAT8 => float_text(f64::from_be_bytes(fixed(8)?.try_into().expect("8 bytes"))),
        Type::NUMERIC => numeric_text(bytes).ok_or_else(bad)?,
        Type::BYTEA => format!(
            "\\x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        Type::DATE => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().expect("4 bytes"));
            let date = days
                .checked_add(730_120)
                .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
                .ok_or_else(|| out_of_range("date"))?;
            date.format("%Y-%m-%d").to_string()
        }
        Type::TIME => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().expect("8 bytes"));
            let secs = micros.div_euclid(1_000_000);
            let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                u32::try_from(secs).map_err(|_| bad())?,
                (micros.rem_euclid(1_000_000) * 1000) as u32,
            )
            .ok_or_else(bad)?;
            time.format("%H:%M:%S%.6f").to_string()
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().expect("8 bytes"));
            let at = micros
                .checked_add(PG_EPOCH_MICROS)
                .and_then(chrono::DateTime::from_timestamp_micros)
                .ok_or_else(|| out_of_range("timestamp"))?;
            let text = at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            if *t == Type::TIMESTAMPTZ {
                format!("{text}+00")
            } else {
                text
            }
        }
        Type::INTERVAL => {
            let b = fixed(16)?;
            let micros = i64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
            let days = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
            let months = i32::from_be_bytes(b[12..16].try_into().expect("4 bytes"));
            format::interval(months, days, micros)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            String::from_utf8(bytes.to_vec()).map_err(|_| bad())?
        }
        Type::JSONB => {
            let text = bytes.strip_prefix(&[1]).ok_or_else(bad)?;
            String::from_utf8(text.to_vec()).map_err(|_| bad())?
        }
        _ => {
            return Err(Error::Unsupported(format!(
                "binary parameters of type {}",
                t.name()
            )))
        }
    })
}

/// A parameter as the engine value of its type, for the fast path: integers,
/// double precision, booleans and strings in either format. None for any
/// other type or for text that is not the type's plain form; such a
/// parameter is bound as a literal ([`literal`]) and read by the general path.
pub fn parameter_value(bytes: Option<&[u8]>, t: &Type, binary: bool) -> Option<Value> {
    let Some(bytes) = bytes else {
        return Some(Value::Null);
    };
    let string = || std::str::from_utf8(bytes).ok();
    if binary {
        return match *t {
            Type::INT2 => Some(Value::Int16(i16::from_be_bytes(bytes.try_into().ok()?))),
            Type::INT4 => Some(Value::Int32(i32::from_be_bytes(bytes.try_into().ok()?))),
            Type::INT8 => Some(Value::Int64(i64::from_be_bytes(bytes.try_into().ok()?))),
            Type::FLOAT8 => Some(Value::Float64(f64::from_be_bytes(bytes.try_into().ok()?)))
                .filter(|v| matches!(v, Value::Float64(f) if f.is_finite())),
            Type::BOOL => match bytes {
                [b] => Some(Value::Bool(*b != 0)),
                _ => None,
            },
            Type::TEXT | Type::VARCHAR | Type::UNKNOWN => string().map(|s| Value::Text(s.into())),
            _ => None,
        };
    }
    let text = string()?;
    // Only digits with an optional sign: what Rust and PostgreSQL read alike.
    let integer = || {
        let digits = text.strip_prefix('-').unwrap_or(text);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(text)
    };
    match *t {
        Type::INT2 => integer()?.parse().ok().map(Value::Int16),
        Type::INT4 => integer()?.parse().ok().map(Value::Int32),
        Type::INT8 => integer()?.parse().ok().map(Value::Int64),
        Type::FLOAT8 => {
            let plain = text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'e' | b'E' | b'+'));
            let v: f64 = text.parse().ok().filter(|_| plain)?;
            v.is_finite().then_some(Value::Float64(v))
        }
        Type::BOOL => match text {
            "t" | "true" => Some(Value::Bool(true)),
            "f" | "false" => Some(Value::Bool(false)),
            _ => None,
        },
        Type::TEXT | Type::VARCHAR | Type::UNKNOWN => Some(Value::Text(text.into())),
        _ => None,
    }
}

/// The SQL literal a parameter stands for: numbers and booleans as plain
/// literals (which the fast path takes), strings as untyped literals (which
/// take the type of the column they meet, as PostgreSQL's unknown-typed
/// parameters do), other types as a string cast to the type.
pub fn literal(text: Option<String>, t: &Type) -> Expr {
    let value = |v: ast::Value| Expr::Value(v.into());
    let Some(text) = text else {
        return value(ast::Value::Null);
    };
    let number = matches!(
        *t,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID | Type::NUMERIC
    ) || (matches!(*t, Type::FLOAT4 | Type::FLOAT8)
        && text.parse::<f64>().is_ok_and(f64::is_finite));
    if number && text.parse::<f64>().is_ok() {
        return match text.strip_prefix('-') {
            Some(abs) => Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: Box::new(value(ast::Value::Number(abs.to_string(), false))),
            },
            None => value(ast::Value::Number(text, false)),
        };
    }
    if *t == Type::BYTEA {
        if let Some(hex) = text.strip_prefix("\\x") {
            return value(ast::Value::HexStringLiteral(hex.to_string()));
        }
    }
    if *t == Type::BOOL {
        match text.to_ascii_lowercase().as_str() {
            "t" | "true" | "on" | "yes" | "1" => return value(ast::Value::Boolean(true)),
            "f" | "false" | "off" | "no" | "0" => return value(ast::Value::Boolean(false)),
            _ => {}
        }
    }
    let string = value(ast::Value::SingleQuotedString(text));
    let sql_type = match *t {
        Type::FLOAT4 => ast::DataType::Real,
        Type::FLOAT8 => ast::DataType::DoublePrecision,
        Type::INT2 => ast::DataType::SmallInt(None),
        Type::INT4 => ast::DataType::Integer(None),
        Type::INT8 => ast::DataType::BigInt(None),
        Type::NUMERIC => ast::DataType::Numeric(ast::ExactNumberInfo::None),
        Type::BOOL => ast::DataType::Boolean,
        Type::BYTEA => ast::DataType::Bytea,
        Type::DATE => ast::DataType::Date,
        Type::TIME => ast::DataType::Time(None, ast::TimezoneInfo::None),
        Type::TIMESTAMP => ast::DataType::Timestamp(None, ast::TimezoneInfo::None),
        Type::TIMESTAMPTZ => ast::DataType::Timestamp(None, ast::TimezoneInfo::WithTimeZone),
        Type::INTERVAL => ast::DataType::Interval {
            fields: None,
            precision: None,
        },
        _ => return string,
    };
    Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(string),
        data_type: sql_type,
        array: false,
        format: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_round_trips() {
        for (mantissa, scale, text) in [
            (0i128, 0u32, "0"),
            (12345, 2, "123.45"),
            (-12345, 2, "-123.45"),
            (100000000, 0, "100000000"),
            (5, 4, "0.0005"),
            (10000, 4, "1.0000"),
            (
                123456789012345678901234567890i128,
                10,
                "12345678901234567890.1234567890",
            ),
        ] {
            let bytes = numeric_binary(mantissa, scale);
            assert_eq!(
                numeric_text(&bytes).as_deref(),
                Some(text),
                "{mantissa} scale {scale}"
            );
        }
        // 123.45 as PostgreSQL sends it: 2 digits (123, 4500), weight 0, scale 2.
        assert_eq!(
            numeric_binary(12345, 2),
            vec![0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94]
        );
    }

    #[test]
    fn binary_parameters_decode() {
        assert_eq!(
            parameter_text(&[0, 0, 0, 7], &Type::INT4, true).unwrap(),
            "7"
        );
        assert_eq!(
            parameter_text(&0i32.to_be_bytes(), &Type::DATE, true).unwrap(),
            "2000-01-01"
        );
        assert_eq!(
            parameter_text(&1_500_000i64.to_be_bytes(), &Type::TIMESTAMP, true).unwrap(),
            "2000-01-01 00:00:01.500000"
        );
        assert!(parameter_text(&[0, 7], &Type::INT4, true).is_err());
    }

    #[test]
    fn literals_take_the_form_the_parser_gives() {
        assert_eq!(literal(Some("-5".into()), &Type::INT4).to_string(), "-5");
        assert_eq!(
            literal(Some("it's".into()), &Type::TEXT).to_string(),
            "'it''s'"
        );
        assert_eq!(literal(None, &Type::INT4).to_string(), "NULL");
        assert_eq!(literal(Some("t".into()), &Type::BOOL).to_string(), "true");
        assert_eq!(
            literal(Some("2024-01-02".into()), &Type::DATE).to_string(),
            "'2024-01-02'::DATE"
        );
    }
}
