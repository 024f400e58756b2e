//! Values as PostgreSQL prints them in text form, so the shell, the server's
//! text results and the tests all show one spelling: `t`/`f`, `2024-01-02
//! 03:04:05.5`, `1 day 02:00:00`, `1e+20`, `{1,2}`.

use chrono::{DateTime, NaiveDate, NaiveTime};
use datafusion::arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, Decimal128Array, Float32Array, Float64Array,
    GenericListArray, LargeBinaryArray, OffsetSizeTrait,
};
use datafusion::arrow::datatypes::{
    DataType as ArrowType, Date32Type, Date64Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Int16Type, Int32Type,
    Int64Type, Int8Type, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit,
    IntervalYearMonthType, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::engine::types::Decimal;

/// The text of the value at `row`, or None for NULL.
pub fn text(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        ArrowType::Boolean => {
            let b = array.as_any().downcast_ref::<BooleanArray>()?.value(row);
            (if b { "t" } else { "f" }).to_string()
        }
        ArrowType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        ArrowType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        ArrowType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        ArrowType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        ArrowType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        ArrowType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        ArrowType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        ArrowType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        ArrowType::Float32 => {
            let v = array.as_any().downcast_ref::<Float32Array>()?.value(row);
            float(v as f64, &v.to_string(), 6)
        }
        ArrowType::Float64 => {
            let v = array.as_any().downcast_ref::<Float64Array>()?.value(row);
            float(v, &v.to_string(), 15)
        }
        ArrowType::Decimal128(_, scale) => {
            let m = array.as_any().downcast_ref::<Decimal128Array>()?.value(row);
            match u8::try_from(*scale) {
                Ok(scale) => Decimal { mantissa: m, scale }.to_string(),
                Err(_) => other(array, row),
            }
        }
        ArrowType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        ArrowType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        ArrowType::Utf8View => array.as_string_view().value(row).to_string(),
        ArrowType::Binary => hex(array.as_any().downcast_ref::<BinaryArray>()?.value(row)),
        ArrowType::LargeBinary => hex(array
            .as_any()
            .downcast_ref::<LargeBinaryArray>()?
            .value(row)),
        ArrowType::BinaryView => hex(array.as_binary_view().value(row)),
        ArrowType::Date32 => date(array.as_primitive::<Date32Type>().value(row) as i64),
        ArrowType::Date64 => date(
            array
                .as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000),
        ),
        ArrowType::Time32(TimeUnit::Second) => {
            time(array.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000)
        }
        ArrowType::Time32(_) => {
            time(array.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1000)
        }
        ArrowType::Time64(TimeUnit::Microsecond) => {
            time(array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        ArrowType::Time64(_) => {
            time(array.as_primitive::<Time64NanosecondType>().value(row) / 1000)
        }
        ArrowType::Timestamp(unit, tz) => {
            let micros = match unit {
                TimeUnit::Second => {
                    array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000
                }
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row) * 1000
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row)
                    .div_euclid(1000),
            };
            timestamp(micros, tz.is_some())
        }
        ArrowType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            interval(v.months, v.days, v.nanoseconds / 1000)
        }
        ArrowType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            interval(0, v.days, v.milliseconds as i64 * 1000)
        }
        ArrowType::Interval(IntervalUnit::YearMonth) => interval(
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        ArrowType::Duration(unit) => {
            let micros = match unit {
                TimeUnit::Second => {
                    array.as_primitive::<DurationSecondType>().value(row) * 1_000_000
                }
                TimeUnit::Millisecond => {
                    array.as_primitive::<DurationMillisecondType>().value(row) * 1000
                }
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => {
                    array.as_primitive::<DurationNanosecondType>().value(row) / 1000
                }
            };
            interval(0, 0, micros)
        }
        ArrowType::List(_) => list(array.as_list::<i32>(), row),
        ArrowType::LargeList(_) => list(array.as_list::<i64>(), row),
        _ => other(array, row),
    })
}

/// PostgreSQL's shortest-exact float output: plain digits, or an exponent
/// (`1e+20`, `1.5e-05`) outside 1e-4 .. 10^`digits`.
fn float(v: f64, shortest: &str, digits: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let exponent = v.abs().log10().floor() as i32;
    if (-4..digits).contains(&exponent) {
        return shortest.to_string();
    }
    // Rust's `{:e}` of the shortest digits, respelled as C's %e does it.
    let sci = format!("{:e}", shortest.parse::<f64>().unwrap_or(v));
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is a number");
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn date(days: i64) -> String {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    match epoch.checked_add_signed(chrono::Duration::days(days)) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => format!("{days} days after 1970-01-01"),
    }
}

fn time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let t = NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, 0)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "24:00:00".into());
    t + &fraction(frac)
}

/// ".5" for 500000 microseconds; empty for none.
fn fraction(micros: i64) -> String {
    if micros == 0 {
        return String::new();
    }
    let digits = format!(".{micros:06}");
    digits.trim_end_matches('0').to_string()
}

fn timestamp(micros: i64, utc: bool) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let Some(at) = DateTime::from_timestamp(secs, 0) else {
        return format!("{micros} microseconds after 1970-01-01");
    };
    let base = at.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string() + &fraction(frac);
    if utc {
        base + "+00"
    } else {
        base
    }
}

/// PostgreSQL's default interval style: `1 year 2 mons 3 days 04:05:06`.
pub fn interval(months: i32, days: i32, micros: i64) -> String {
    let mut parts = Vec::new();
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("{n} {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    let (years, months) = (months / 12, months % 12);
    if years != 0 {
        parts.push(plural(years as i64, "year"));
    }
    if months != 0 {
        parts.push(if months == 1 {
            format!("{months} mon")
        } else {
            format!("{months} mons")
        });
    }
    if days != 0 {
        parts.push(plural(days as i64, "day"));
    }
    if micros != 0 || parts.is_empty() {
        let negative_before = years < 0 || months < 0 || days < 0;
        let sign = if micros < 0 {
            "-"
        } else if negative_before {
            "+"
        } else {
            ""
        };
        let m = micros.unsigned_abs();
        let (h, rest) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (s, us) = (rest / 1_000_000, rest % 1_000_000);
        parts.push(format!(
            "{sign}{h:02}:{min:02}:{s:02}{}",
            fraction(us as i64)
        ));
    }
    parts.join(" ")
}

fn list<O: OffsetSizeTrait>(array: &GenericListArray<O>, row: usize) -> String {
    let values = array.value(row);
    let items: Vec<String> = (0..values.len())
        .map(|i| match text(values.as_ref(), i) {
            None => "NULL".to_string(),
            Some(s) if needs_quotes(&s) => {
                format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
            }
            Some(s) => s,
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("null")
        || s.chars()
            .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | ',' | '"' | '\\'))
}

/// Arrow's own spelling, for types PostgreSQL has no text form of.
fn other(array: &dyn Array, row: usize) -> String {
    let options = FormatOptions::default().with_null("NULL");
    match ArrayFormatter::try_new(array, &options) {
        Ok(f) => f.value(row).to_string(),
        Err(e) => format!("<{e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_postgresql_prints_them() {
        let f = |v: f64| float(v, &v.to_string(), 15);
        assert_eq!(f(3.0), "3");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(1e20), "1e+20");
        assert_eq!(f(1.5e-5), "1.5e-05");
        assert_eq!(f(123456789012345.0), "123456789012345");
        assert_eq!(f(1e15), "1e+15");
        assert_eq!(f(-2.5), "-2.5");
        assert_eq!(f(f64::NAN), "NaN");
    }

    #[test]
    fn intervals_as_postgresql_prints_them() {
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(
            interval(14, 3, 4 * 3_600_000_000 + 5_000_000),
            "1 year 2 mons 3 days 04:00:05"
        );
        assert_eq!(interval(1, 0, 0), "1 mon");
        assert_eq!(interval(0, -1, 7_200_000_000), "-1 days +02:00:00");
        assert_eq!(interval(0, 1, 1_500_000), "1 day 00:00:01.5");
    }

    #[test]
    fn times_as_postgresql_prints_them() {
        assert_eq!(date(19723), "2024-01-01");
        assert_eq!(
            timestamp(1_704_067_200_500_000, false),
            "2024-01-01 00:00:00.5"
        );
        assert_eq!(
            timestamp(1_704_067_200_000_000, true),
            "2024-01-01 00:00:00+00"
        );
        assert_eq!(time(3_600_000_000), "01:00:00");
    }
}
