//! SQL data types and values as the engine stores them.
//!
//! A [`Value`] is one cell; a [`DataType`] is what a column admits. Text-like
//! types (TEXT, VARCHAR(n), CHAR(n)) share [`Value::Text`]; the type keeps the
//! length limit. Times are microseconds, as in PostgreSQL: DATE counts days
//! since 1970-01-01, TIME microseconds since midnight, TIMESTAMP and
//! TIMESTAMPTZ microseconds since 1970-01-01 00:00:00 (UTC for TIMESTAMPTZ).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{Error, Result, SqlState};

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    /// BOOLEAN.
    Bool,
    /// SMALLINT.
    Int16,
    /// INTEGER.
    Int32,
    /// BIGINT.
    Int64,
    /// REAL.
    Float32,
    /// DOUBLE PRECISION.
    Float64,
    /// NUMERIC(precision, scale); precision at most 38.
    Decimal {
        /// Total significant digits.
        precision: u8,
        /// Digits after the decimal point.
        scale: u8,
    },
    /// TEXT.
    Text,
    /// VARCHAR(n): at most n characters.
    Varchar(u32),
    /// CHAR(n): exactly n characters, blank-padded.
    Char(u32),
    /// BYTEA.
    Bytes,
    /// DATE.
    Date,
    /// TIME (without time zone).
    Time,
    /// TIMESTAMP (without time zone).
    Timestamp,
    /// TIMESTAMPTZ.
    TimestampTz,
    /// INTERVAL.
    Interval,
}

impl DataType {
    /// Whether values of this type can be part of a primary key.
    pub fn is_key_type(&self) -> bool {
        !matches!(self, DataType::Interval)
    }

    /// Whether `value` (not NULL) is a value of this type.
    pub fn admits(&self, value: &Value) -> bool {
        matches!(
            (self, value),
            (_, Value::Null)
                | (DataType::Bool, Value::Bool(_))
                | (DataType::Int16, Value::Int16(_))
                | (DataType::Int32, Value::Int32(_))
                | (DataType::Int64, Value::Int64(_))
                | (DataType::Float32, Value::Float32(_))
                | (DataType::Float64, Value::Float64(_))
                | (DataType::Decimal { .. }, Value::Decimal(_))
                | (
                    DataType::Text | DataType::Varchar(_) | DataType::Char(_),
                    Value::Text(_)
                )
                | (DataType::Bytes, Value::Bytes(_))
                | (DataType::Date, Value::Date(_))
                | (DataType::Time, Value::Time(_))
                | (DataType::Timestamp, Value::Timestamp(_))
                | (DataType::TimestampTz, Value::TimestampTz(_))
                | (DataType::Interval, Value::Interval(_))
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bool => f.write_str("boolean"),
            DataType::Int16 => f.write_str("smallint"),
            DataType::Int32 => f.write_str("integer"),
            DataType::Int64 => f.write_str("bigint"),
            DataType::Float32 => f.write_str("real"),
            DataType::Float64 => f.write_str("double precision"),
            DataType::Decimal { precision, scale } => write!(f, "numeric({precision},{scale})"),
            DataType::Text => f.write_str("text"),
            DataType::Varchar(n) => write!(f, "character varying({n})"),
            DataType::Char(n) => write!(f, "character({n})"),
            DataType::Bytes => f.write_str("bytea"),
            DataType::Date => f.write_str("date"),
            DataType::Time => f.write_str("time without time zone"),
            DataType::Timestamp => f.write_str("timestamp without time zone"),
            DataType::TimestampTz => f.write_str("timestamp with time zone"),
            DataType::Interval => f.write_str("interval"),
        }
    }
}

/// An exact decimal number: `mantissa * 10^-scale`, at most 38 digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decimal {
    /// The digits, with sign.
    pub mantissa: i128,
    /// How many of the digits are after the decimal point.
    pub scale: u8,
}

/// The largest mantissa a 38-digit decimal can have.
pub const DECIMAL_MAX_MANTISSA: i128 = 10i128.pow(38) - 1;

impl Decimal {
    /// A decimal of `mantissa * 10^-scale`, or an error past 38 digits.
    pub fn new(mantissa: i128, scale: u8) -> Result<Decimal> {
        if mantissa.abs() > DECIMAL_MAX_MANTISSA || scale > 38 {
            return Err(Error::invalid(
                SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                "numeric value exceeds 38 digits",
            ));
        }
        Ok(Decimal { mantissa, scale })
    }

    /// The same number with trailing fractional zeros removed.
    pub fn normalized(self) -> Decimal {
        let (mut m, mut s) = (self.mantissa, self.scale);
        while s > 0 && m % 10 == 0 {
            m /= 10;
            s -= 1;
        }
        if m == 0 {
            s = 0;
        }
        Decimal {
            mantissa: m,
            scale: s,
        }
    }

    /// Sign, decimal exponent and significant digits: the number is
    /// `sign * 0.d1d2d3... * 10^exponent`. Zero has no digits.
    pub fn parts(self) -> (Ordering, i16, Vec<u8>) {
        let n = self.normalized();
        let sign = n.mantissa.cmp(&0);
        let digits: Vec<u8> = n
            .mantissa
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|b| b - b'0')
            .collect();
        if sign == Ordering::Equal {
            return (sign, 0, Vec::new());
        }
        let exponent = digits.len() as i16 - n.scale as i16;
        let mut digits = digits;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        (sign, exponent, digits)
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        let (sa, ea, da) = self.parts();
        let (sb, eb, db) = other.parts();
        sa.cmp(&sb).then_with(|| {
            let magnitude = ea.cmp(&eb).then_with(|| da.cmp(&db));
            if sa == Ordering::Less {
                magnitude.reverse()
            } else {
                magnitude
            }
        })
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// A PostgreSQL interval: months, days and microseconds kept apart, since a
/// month has no fixed number of days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Interval {
    /// Whole months.
    pub months: i32,
    /// Whole days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

impl Interval {
    /// The longest time part omen holds (about 2562047 hours): query
    /// execution counts it in nanoseconds, in 64 bits. PostgreSQL's reaches a
    /// thousand times further; omen refuses those rather than wrap them.
    pub const MAX_MICROS: i64 = i64::MAX / 1000;

    /// The time part in nanoseconds; 22015 past [`Interval::MAX_MICROS`].
    pub fn nanoseconds(&self) -> Result<i64> {
        self.micros
            .checked_mul(1000)
            .ok_or_else(interval_out_of_range)
    }
}

/// 22015: an interval past what omen holds.
pub fn interval_out_of_range() -> Error {
    Error::invalid(SqlState::INTERVAL_FIELD_OVERFLOW, "interval out of range")
}

/// One SQL value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// BOOLEAN.
    Bool(bool),
    /// SMALLINT.
    Int16(i16),
    /// INTEGER.
    Int32(i32),
    /// BIGINT.
    Int64(i64),
    /// REAL.
    Float32(f32),
    /// DOUBLE PRECISION.
    Float64(f64),
    /// NUMERIC.
    Decimal(Decimal),
    /// TEXT, VARCHAR, CHAR.
    Text(String),
    /// BYTEA.
    Bytes(Vec<u8>),
    /// DATE: days since 1970-01-01.
    Date(i32),
    /// TIME: microseconds since midnight.
    Time(i64),
    /// TIMESTAMP: microseconds since 1970-01-01 00:00:00.
    Timestamp(i64),
    /// TIMESTAMPTZ: microseconds since 1970-01-01 00:00:00 UTC.
    TimestampTz(i64),
    /// INTERVAL.
    Interval(Interval),
}

impl Value {
    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The order SQL gives two values of one type: NULL after everything,
    /// NaN after every other float, -0.0 equal to 0.0 (PostgreSQL's order).
    /// None when the types differ.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        Some(match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Greater,
            (_, Null) => Ordering::Less,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int16(a), Int16(b)) => a.cmp(b),
            (Int32(a), Int32(b)) => a.cmp(b),
            (Int64(a), Int64(b)) => a.cmp(b),
            (Float32(a), Float32(b)) => float_cmp(*a as f64, *b as f64),
            (Float64(a), Float64(b)) => float_cmp(*a, *b),
            (Decimal(a), Decimal(b)) => a.cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time(a), Time(b))
            | (Timestamp(a), Timestamp(b))
            | (TimestampTz(a), TimestampTz(b)) => a.cmp(b),
            (Interval(a), Interval(b)) => interval_key(a).cmp(&interval_key(b)),
            _ => return None,
        })
    }
}

/// PostgreSQL compares intervals by a total with 30-day months and 24-hour days.
fn interval_key(i: &Interval) -> i128 {
    const DAY: i128 = 86_400_000_000;
    (i.months as i128 * 30 + i.days as i128) * DAY + i.micros as i128
}

fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).expect("neither is NaN"),
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.sql_cmp(other) == Some(Ordering::Equal)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => f.write_str(if *b { "t" } else { "f" }),
            Value::Int16(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float32(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Text(s) => f.write_str(s),
            Value::Bytes(b) => {
                f.write_str("\\x")?;
                b.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
            Value::Date(d) => write!(f, "date {d}"),
            Value::Time(t) => write!(f, "time {t}"),
            Value::Timestamp(t) => write!(f, "timestamp {t}"),
            Value::TimestampTz(t) => write!(f, "timestamptz {t}"),
            Value::Interval(i) => write!(f, "{} mons {} days {} us", i.months, i.days, i.micros),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_display_and_order() {
        let d = |m, s| Decimal::new(m, s).expect("in range");
        assert_eq!(d(12345, 2).to_string(), "123.45");
        assert_eq!(d(-5, 3).to_string(), "-0.005");
        assert_eq!(d(100, 2), d(100, 2));
        assert_eq!(d(100, 2).cmp(&d(1, 0)), Ordering::Equal);
        assert!(d(-12, 1) < d(-11, 1));
        assert!(d(1, 3) < d(1, 2));
        assert!(d(-1, 0) < d(0, 0));
    }
}
