//! Compact binary row encoding, versioned by schema.
//!
//! ```text
//!   row   = schema_version:varint  null_bitmap  value*
//!   null_bitmap = ceil(columns / 8) bytes, bit i set when column i is NULL
//!   value (non-NULL columns only, in column order):
//!     bool                    1 byte
//!     int16/32/64, date,
//!     time, timestamp(tz)     zigzag varint
//!     real / double           4 / 8 bytes little-endian
//!     numeric                 scale:u8, zigzag varint of the 128-bit mantissa
//!     text, bytea             length:varint, bytes
//!     interval                zigzag varints: months, days, microseconds
//! ```
//!
//! The row carries the schema version it was written under; the catalog keeps
//! every version's column list, so old rows decode after ALTER TABLE without
//! being rewritten (see `catalog::Table::decode_row`).

use crate::engine::error::{Error, Result};
use crate::engine::types::{DataType, Decimal, Interval, Value};

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_ivarint(out: &mut Vec<u8>, v: i128) {
    put_uvarint(out, ((v << 1) ^ (v >> 127)) as u128);
}

/// Encodes `values` (one per column of `types`) under `schema_version`.
pub fn encode_row(schema_version: u32, types: &[DataType], values: &[Value]) -> Result<Vec<u8>> {
    if types.len() != values.len() {
        return Err(Error::Internal(format!(
            "row has {} values for {} columns",
            values.len(),
            types.len()
        )));
    }
    let mut out = Vec::with_capacity(8 + values.len() * 8);
    put_uvarint(&mut out, schema_version as u128);
    let bitmap_at = out.len();
    out.resize(bitmap_at + values.len().div_ceil(8), 0);
    for (i, (ty, value)) in types.iter().zip(values).enumerate() {
        if value.is_null() {
            out[bitmap_at + i / 8] |= 1 << (i % 8);
            continue;
        }
        if !ty.admits(value) {
            return Err(Error::Internal(format!(
                "value {value:?} stored in a {ty} column"
            )));
        }
        match value {
            Value::Null => unreachable!("handled above"),
            Value::Bool(b) => out.push(*b as u8),
            Value::Int16(v) => put_ivarint(&mut out, *v as i128),
            Value::Int32(v) | Value::Date(v) => put_ivarint(&mut out, *v as i128),
            Value::Int64(v) | Value::Time(v) | Value::Timestamp(v) | Value::TimestampTz(v) => {
                put_ivarint(&mut out, *v as i128)
            }
            Value::Float32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Float64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Decimal(d) => {
                out.push(d.scale);
                put_ivarint(&mut out, d.mantissa);
            }
            Value::Text(s) => {
                put_uvarint(&mut out, s.len() as u128);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                put_uvarint(&mut out, b.len() as u128);
                out.extend_from_slice(b);
            }
            Value::Interval(i) => {
                put_ivarint(&mut out, i.months as i128);
                put_ivarint(&mut out, i.days as i128);
                put_ivarint(&mut out, i.micros as i128);
            }
        }
    }
    Ok(out)
}

/// The schema version a stored row was written under.
pub fn row_schema_version(bytes: &[u8]) -> Result<u32> {
    let mut reader = Reader { input: bytes };
    reader
        .uvarint()?
        .try_into()
        .map_err(|_| corrupt("schema version out of range"))
}

/// Decodes a row written by [`encode_row`] with the column types of its schema version.
pub fn decode_row(bytes: &[u8], types: &[DataType]) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(types.len());
    visit_row(bytes, types, &[], |i, raw| {
        values.push(raw.into_value(types[i])?);
        Ok(())
    })?;
    Ok(values)
}

/// One stored value, borrowed from its row's bytes.
#[derive(Clone, Copy, Debug)]
pub enum Raw<'a> {
    Null,
    Bool(bool),
    /// Integers, dates, times and timestamps.
    Int(i64),
    Float32(f32),
    Float64(f64),
    /// Mantissa and scale.
    Decimal(i128, u8),
    /// UTF-8, not yet checked.
    Text(&'a [u8]),
    Bytes(&'a [u8]),
    Interval(Interval),
}

impl<'a> Raw<'a> {
    /// `value` as a stored value.
    pub fn of(value: &'a Value) -> Raw<'a> {
        match value {
            Value::Null => Raw::Null,
            Value::Bool(v) => Raw::Bool(*v),
            Value::Int16(v) => Raw::Int(i64::from(*v)),
            Value::Int32(v) | Value::Date(v) => Raw::Int(i64::from(*v)),
            Value::Int64(v) | Value::Time(v) | Value::Timestamp(v) | Value::TimestampTz(v) => {
                Raw::Int(*v)
            }
            Value::Float32(v) => Raw::Float32(*v),
            Value::Float64(v) => Raw::Float64(*v),
            Value::Decimal(d) => Raw::Decimal(d.mantissa, d.scale),
            Value::Text(v) => Raw::Text(v.as_bytes()),
            Value::Bytes(v) => Raw::Bytes(v),
            Value::Interval(v) => Raw::Interval(*v),
        }
    }

    /// The text of a text value.
    pub fn text(bytes: &'a [u8]) -> Result<&'a str> {
        std::str::from_utf8(bytes).map_err(|_| corrupt("text is not UTF-8"))
    }

    /// The value of a column of type `ty`.
    pub fn into_value(self, ty: DataType) -> Result<Value> {
        let int = |v: i64| -> Result<i32> { i32::try_from(v).map_err(|_| out_of_range()) };
        Ok(match (self, ty) {
            (Raw::Null, _) => Value::Null,
            (Raw::Bool(v), _) => Value::Bool(v),
            (Raw::Int(v), DataType::Int16) => {
                Value::Int16(i16::try_from(v).map_err(|_| out_of_range())?)
            }
            (Raw::Int(v), DataType::Int32) => Value::Int32(int(v)?),
            (Raw::Int(v), DataType::Date) => Value::Date(int(v)?),
            (Raw::Int(v), DataType::Time) => Value::Time(v),
            (Raw::Int(v), DataType::Timestamp) => Value::Timestamp(v),
            (Raw::Int(v), DataType::TimestampTz) => Value::TimestampTz(v),
            (Raw::Int(v), _) => Value::Int64(v),
            (Raw::Float32(v), _) => Value::Float32(v),
            (Raw::Float64(v), _) => Value::Float64(v),
            (Raw::Decimal(mantissa, scale), _) => {
                Value::Decimal(Decimal::new(mantissa, scale).map_err(|_| corrupt("bad numeric"))?)
            }
            (Raw::Text(bytes), _) => Value::Text(Raw::text(bytes)?.into()),
            (Raw::Bytes(bytes), _) => Value::Bytes(bytes.to_vec()),
            (Raw::Interval(v), _) => Value::Interval(v),
        })
    }
}

fn out_of_range() -> Error {
    corrupt("integer out of range")
}

/// Calls `each` with the value of every column of a row written by
/// [`encode_row`] (column types `types`) that `wanted` marks (every column
/// when it is empty), in column order, without allocating; the others are
/// passed over.
pub fn visit_row<'a>(
    bytes: &'a [u8],
    types: &[DataType],
    wanted: &[bool],
    mut each: impl FnMut(usize, Raw<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader { input: bytes };
    r.uvarint()?;
    let bitmap = r.take(types.len().div_ceil(8))?;
    for (i, ty) in types.iter().enumerate() {
        let null = bitmap[i / 8] & (1 << (i % 8)) != 0;
        if !wanted.get(i).copied().unwrap_or(true) {
            if !null {
                r.skip(*ty)?;
            }
            continue;
        }
        if null {
            each(i, Raw::Null)?;
            continue;
        }
        let raw = match ty {
            DataType::Bool => Raw::Bool(r.take(1)?[0] != 0),
            DataType::Int16
            | DataType::Int32
            | DataType::Date
            | DataType::Int64
            | DataType::Time
            | DataType::Timestamp
            | DataType::TimestampTz => Raw::Int(r.int()?),
            DataType::Float32 => {
                Raw::Float32(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")))
            }
            DataType::Float64 => {
                Raw::Float64(f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes")))
            }
            DataType::Decimal { .. } => {
                let scale = r.take(1)?[0];
                Raw::Decimal(r.ivarint()?, scale)
            }
            DataType::Text | DataType::Varchar(_) | DataType::Char(_) => {
                let len = r.len()?;
                Raw::Text(r.take(len)?)
            }
            DataType::Bytes => {
                let len = r.len()?;
                Raw::Bytes(r.take(len)?)
            }
            DataType::Interval => Raw::Interval(Interval {
                months: r.int()?,
                days: r.int()?,
                micros: r.int()?,
            }),
        };
        each(i, raw)?;
    }
    if !r.input.is_empty() {
        return Err(corrupt("trailing bytes after the last column"));
    }
    Ok(())
}

fn corrupt(what: &str) -> Error {
    Error::Corruption(format!("row: {what}"))
}

struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.input.len() < n {
            return Err(corrupt("ends in the middle of a value"));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn uvarint(&mut self) -> Result<u128> {
        // Most varints fit 63 bits: gathered in a u64 first.
        let mut short: u64 = 0;
        for (i, &byte) in self.input.iter().take(9).enumerate() {
            short |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.input = &self.input[i + 1..];
                return Ok(u128::from(short));
            }
        }
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let byte = self.take(1)?[0];
            v |= ((byte & 0x7f) as u128) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    /// Passes over one value of type `ty`.
    fn skip(&mut self, ty: DataType) -> Result<()> {
        match ty {
            DataType::Bool => self.take(1).map(drop),
            DataType::Float32 => self.take(4).map(drop),
            DataType::Float64 => self.take(8).map(drop),
            DataType::Decimal { .. } => {
                self.take(1)?;
                self.skip_varint()
            }
            DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Bytes => {
                let len = self.len()?;
                self.take(len).map(drop)
            }
            DataType::Interval => {
                self.skip_varint()?;
                self.skip_varint()?;
                self.skip_varint()
            }
            _ => self.skip_varint(),
        }
    }

    /// Passes over one varint.
    fn skip_varint(&mut self) -> Result<()> {
        match self.input.iter().position(|b| b & 0x80 == 0) {
            Some(end) if end < 19 => {
                self.input = &self.input[end + 1..];
                Ok(())
            }
            Some(_) => Err(corrupt("varint too long")),
            None => Err(corrupt("ends in the middle of a value")),
        }
    }

    fn ivarint(&mut self) -> Result<i128> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i128) ^ -((u & 1) as i128))
    }

    fn int<T: TryFrom<i128>>(&mut self) -> Result<T> {
        T::try_from(self.ivarint()?).map_err(|_| corrupt("integer out of range"))
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.uvarint()?).map_err(|_| corrupt("length out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_typed_value() -> impl Strategy<Value = (DataType, Value)> {
        let value = prop_oneof![
            any::<bool>().prop_map(|v| (DataType::Bool, Value::Bool(v))),
            any::<i16>().prop_map(|v| (DataType::Int16, Value::Int16(v))),
            any::<i32>().prop_map(|v| (DataType::Int32, Value::Int32(v))),
            any::<i64>().prop_map(|v| (DataType::Int64, Value::Int64(v))),
            any::<f32>().prop_map(|v| (DataType::Float32, Value::Float32(v))),
            any::<f64>().prop_map(|v| (DataType::Float64, Value::Float64(v))),
            (-DECIMAL..=DECIMAL, 0u8..=38).prop_map(|(m, s)| (
                DataType::Decimal {
                    precision: 38,
                    scale: s
                },
                Value::Decimal(Decimal {
                    mantissa: m,
                    scale: s
                })
            )),
            ".{0,20}".prop_map(|v| (DataType::Text, Value::Text(v))),
            ".{0,5}".prop_map(|v| (DataType::Varchar(5), Value::Text(v))),
            proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|v| (DataType::Bytes, Value::Bytes(v))),
            any::<i32>().prop_map(|v| (DataType::Date, Value::Date(v))),
            any::<i64>().prop_map(|v| (DataType::Time, Value::Time(v))),
            any::<i64>().prop_map(|v| (DataType::Timestamp, Value::Timestamp(v))),
            any::<i64>().prop_map(|v| (DataType::TimestampTz, Value::TimestampTz(v))),
            (any::<i32>(), any::<i32>(), any::<i64>()).prop_map(|(months, days, micros)| (
                DataType::Interval,
                Value::Interval(Interval {
                    months,
                    days,
                    micros
                })
            )),
        ];
        (value, any::<bool>()).prop_map(|((ty, v), null)| (ty, if null { Value::Null } else { v }))
    }

    const DECIMAL: i128 = crate::engine::types::DECIMAL_MAX_MANTISSA;

    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            // Bit-exact for floats: storage must not change a NaN payload or -0.0.
            (Value::Float32(x), Value::Float32(y)) => x.to_bits() == y.to_bits(),
            (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
            (Value::Decimal(x), Value::Decimal(y)) => x == y,
            _ => a == b,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn rows_round_trip(version in any::<u32>(), cells in proptest::collection::vec(arb_typed_value(), 0..20)) {
            let (types, values): (Vec<_>, Vec<_>) = cells.into_iter().unzip();
            let bytes = encode_row(version, &types, &values).unwrap();
            prop_assert_eq!(row_schema_version(&bytes).unwrap(), version);
            let decoded = decode_row(&bytes, &types).unwrap();
            prop_assert_eq!(decoded.len(), values.len());
            for (a, b) in values.iter().zip(&decoded) {
                prop_assert!(same(a, b), "{:?} became {:?}", a, b);
            }
        }

        #[test]
        fn truncated_rows_are_errors_not_panics(cells in proptest::collection::vec(arb_typed_value(), 1..10), cut in any::<prop::sample::Index>()) {
            let (types, values): (Vec<_>, Vec<_>) = cells.into_iter().unzip();
            let bytes = encode_row(1, &types, &values).unwrap();
            let cut = cut.index(bytes.len());
            // Any prefix either fails cleanly or (rarely) decodes; it never panics.
            let _ = decode_row(&bytes[..cut], &types);
        }
    }
}
