//! Order-preserving ("memcomparable") key encoding.
//!
//! Encoded keys compare bytewise in the same order as the SQL values they
//! encode, so RocksDB's plain byte order is SQL order and a range of values is
//! a range of bytes. Every value starts with a marker byte, which puts NULL
//! after all other values (PostgreSQL's default `NULLS LAST`):
//!
//! ```text
//!   value      marker  body
//!   non-NULL   0x01    type-specific bytes, below
//!   NULL       0x02    (none)
//!
//!   integers   big-endian, sign bit flipped         -1 -> 7f ff..., 0 -> 80 00...
//!   floats     IEEE bits; negative: all bits flipped, else sign bit flipped;
//!              -0.0 is stored as 0.0 and every NaN as one NaN above +inf
//!   bool       00 / 01
//!   text,bytes 00 escaped as 00 ff, then terminator 00 01
//!   decimal    class (00 negative, 01 zero, 02 positive), then exponent
//!              (i16, sign flipped) and digits (d+1) ending in 00;
//!              for negatives, exponent and digits are bit-inverted
//! ```
//!
//! Each body is self-delimiting, so a composite key is the concatenation of
//! its parts and compares part by part.

use std::cmp::Ordering;

use crate::engine::error::{Error, Result};
use crate::engine::types::{DataType, Decimal, Value};

const PRESENT: u8 = 0x01;
const NULL: u8 = 0x02;

/// Appends the key encoding of `value` to `out`.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    if value.is_null() {
        out.push(NULL);
        return Ok(());
    }
    out.push(PRESENT);
    match value {
        Value::Null => unreachable!("handled above"),
        Value::Bool(b) => out.push(*b as u8),
        Value::Int16(v) => out.extend_from_slice(&((*v as u16) ^ 0x8000).to_be_bytes()),
        Value::Int32(v) | Value::Date(v) => {
            out.extend_from_slice(&((*v as u32) ^ 0x8000_0000).to_be_bytes())
        }
        Value::Int64(v) | Value::Time(v) | Value::Timestamp(v) | Value::TimestampTz(v) => {
            out.extend_from_slice(&encode_i64(*v))
        }
        Value::Float32(v) => out.extend_from_slice(&encode_f32(*v)),
        Value::Float64(v) => out.extend_from_slice(&encode_f64(*v)),
        Value::Decimal(d) => encode_decimal(*d, out),
        Value::Text(s) => encode_bytes(s.as_bytes(), out),
        Value::Bytes(b) => encode_bytes(b, out),
        Value::Interval(_) => {
            return Err(Error::Unsupported("an interval column in a key".into()));
        }
    }
    Ok(())
}

/// The key encoding of a sequence of values (a composite key).
pub fn encode_key(values: &[Value]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * 9);
    for value in values {
        encode_value(value, &mut out)?;
    }
    Ok(out)
}

/// Order-preserving bytes of an i64 (also used for timestamps elsewhere).
pub fn encode_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn encode_f64(v: f64) -> [u8; 8] {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    let bits = v.to_bits();
    let bits = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    bits.to_be_bytes()
}

fn encode_f32(v: f32) -> [u8; 4] {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f32::NAN
    } else {
        v
    };
    let bits = v.to_bits();
    let bits = if bits >> 31 == 1 {
        !bits
    } else {
        bits ^ (1 << 31)
    };
    bits.to_be_bytes()
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

fn encode_decimal(d: Decimal, out: &mut Vec<u8>) {
    let (sign, exponent, digits) = d.parts();
    match sign {
        Ordering::Equal => out.push(0x01),
        Ordering::Greater => {
            out.push(0x02);
            out.extend_from_slice(&((exponent as u16) ^ 0x8000).to_be_bytes());
            out.extend(digits.iter().map(|d| d + 1));
            out.push(0x00);
        }
        Ordering::Less => {
            out.push(0x00);
            out.extend_from_slice(&(!((exponent as u16) ^ 0x8000)).to_be_bytes());
            out.extend(digits.iter().map(|d| !(d + 1)));
            out.push(0xff);
        }
    }
}

/// Reads keys back; the caller says which types to expect.
pub struct KeyDecoder<'a> {
    input: &'a [u8],
}

impl<'a> KeyDecoder<'a> {
    /// A decoder over `input`.
    pub fn new(input: &'a [u8]) -> KeyDecoder<'a> {
        KeyDecoder { input }
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.input.len() < n {
            return Err(Error::Corruption(
                "key ends in the middle of a value".into(),
            ));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    /// Decodes the next value, of type `ty`.
    pub fn decode_value(&mut self, ty: DataType) -> Result<Value> {
        match self.take(1)?[0] {
            NULL => return Ok(Value::Null),
            PRESENT => {}
            other => return Err(Error::Corruption(format!("bad key marker {other:#04x}"))),
        }
        Ok(match ty {
            DataType::Bool => Value::Bool(self.take(1)?[0] != 0),
            DataType::Int16 => {
                Value::Int16((u16::from_be_bytes(self.take_array()?) ^ 0x8000) as i16)
            }
            DataType::Int32 => Value::Int32(self.decode_i32()?),
            DataType::Date => Value::Date(self.decode_i32()?),
            DataType::Int64 => Value::Int64(self.decode_i64()?),
            DataType::Time => Value::Time(self.decode_i64()?),
            DataType::Timestamp => Value::Timestamp(self.decode_i64()?),
            DataType::TimestampTz => Value::TimestampTz(self.decode_i64()?),
            DataType::Float32 => {
                let bits = u32::from_be_bytes(self.take_array()?);
                let bits = if bits >> 31 == 1 {
                    bits ^ (1 << 31)
                } else {
                    !bits
                };
                Value::Float32(f32::from_bits(bits))
            }
            DataType::Float64 => {
                let bits = u64::from_be_bytes(self.take_array()?);
                let bits = if bits >> 63 == 1 {
                    bits ^ (1 << 63)
                } else {
                    !bits
                };
                Value::Float64(f64::from_bits(bits))
            }
            DataType::Decimal { .. } => Value::Decimal(self.decode_decimal()?),
            DataType::Text | DataType::Varchar(_) | DataType::Char(_) => {
                let bytes = self.decode_bytes()?;
                Value::Text(
                    String::from_utf8(bytes)
                        .map_err(|_| Error::Corruption("key text is not UTF-8".into()))?,
                )
            }
            DataType::Bytes => Value::Bytes(self.decode_bytes()?),
            DataType::Interval => {
                return Err(Error::Corruption("an interval cannot be in a key".into()))
            }
        })
    }

    fn decode_i32(&mut self) -> Result<i32> {
        Ok((u32::from_be_bytes(self.take_array()?) ^ 0x8000_0000) as i32)
    }

    fn decode_i64(&mut self) -> Result<i64> {
        Ok((u64::from_be_bytes(self.take_array()?) ^ (1 << 63)) as i64)
    }

    fn decode_bytes(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let b = self.take(1)?[0];
            if b != 0 {
                out.push(b);
                continue;
            }
            match self.take(1)?[0] {
                0xff => out.push(0),
                0x01 => return Ok(out),
                other => return Err(Error::Corruption(format!("bad escape {other:#04x} in key"))),
            }
        }
    }

    fn decode_decimal(&mut self) -> Result<Decimal> {
        let class = self.take(1)?[0];
        let negative = match class {
            0x01 => {
                return Ok(Decimal {
                    mantissa: 0,
                    scale: 0,
                })
            }
            0x00 => true,
            0x02 => false,
            other => return Err(Error::Corruption(format!("bad decimal class {other:#04x}"))),
        };
        let flip = |b: u8| if negative { !b } else { b };
        let e = self.take_array::<2>()?;
        let exponent = (u16::from_be_bytes([flip(e[0]), flip(e[1])]) ^ 0x8000) as i16;
        let mut mantissa: i128 = 0;
        let mut count: i16 = 0;
        loop {
            let b = flip(self.take(1)?[0]);
            if b == 0 {
                break;
            }
            if !(1..=10).contains(&b) || count >= 38 {
                return Err(Error::Corruption("bad decimal digits in key".into()));
            }
            mantissa = mantissa * 10 + (b - 1) as i128;
            count += 1;
        }
        // value = 0.d1..dn * 10^exponent = mantissa * 10^(exponent - n)
        let shift = exponent - count;
        let (mantissa, scale) = if shift >= 0 {
            let factor = 10i128
                .checked_pow(shift as u32)
                .ok_or_else(|| Error::Corruption("decimal exponent out of range".into()))?;
            (mantissa * factor, 0)
        } else {
            (mantissa, (-shift) as u8)
        };
        Ok(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::DataType;
    use proptest::prelude::*;

    fn arb_value(ty: DataType) -> BoxedStrategy<Value> {
        let v: BoxedStrategy<Value> = match ty {
            DataType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            DataType::Int16 => any::<i16>().prop_map(Value::Int16).boxed(),
            DataType::Int32 => any::<i32>().prop_map(Value::Int32).boxed(),
            DataType::Int64 => any::<i64>().prop_map(Value::Int64).boxed(),
            DataType::Float32 => prop_oneof![
                any::<f32>(),
                Just(-0.0f32),
                Just(f32::NAN),
                Just(f32::INFINITY),
                Just(f32::NEG_INFINITY)
            ]
            .prop_map(Value::Float32)
            .boxed(),
            DataType::Float64 => prop_oneof![
                any::<f64>(),
                Just(-0.0),
                Just(f64::NAN),
                Just(-f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::MIN_POSITIVE)
            ]
            .prop_map(Value::Float64)
            .boxed(),
            DataType::Decimal { .. } => (any::<i64>(), 0u8..=18)
                .prop_map(|(m, s)| {
                    Value::Decimal(Decimal {
                        mantissa: m as i128,
                        scale: s,
                    })
                })
                .boxed(),
            DataType::Text => ".{0,12}".prop_map(Value::Text).boxed(),
            DataType::Bytes => proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), any::<u8>()],
                0..10,
            )
            .prop_map(Value::Bytes)
            .boxed(),
            DataType::Date => any::<i32>().prop_map(Value::Date).boxed(),
            DataType::Time => (0i64..86_400_000_000).prop_map(Value::Time).boxed(),
            DataType::Timestamp => any::<i64>().prop_map(Value::Timestamp).boxed(),
            DataType::TimestampTz => any::<i64>().prop_map(Value::TimestampTz).boxed(),
            _ => unreachable!("not a key type in these tests"),
        };
        prop_oneof![1 => Just(Value::Null), 9 => v].boxed()
    }

    const KEY_TYPES: [DataType; 13] = [
        DataType::Bool,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Float32,
        DataType::Float64,
        DataType::Decimal {
            precision: 38,
            scale: 0,
        },
        DataType::Text,
        DataType::Bytes,
        DataType::Date,
        DataType::Time,
        DataType::Timestamp,
        DataType::TimestampTz,
    ];

    /// Pairs of values of one random key type.
    fn arb_pair() -> impl Strategy<Value = (DataType, Value, Value)> {
        proptest::sample::select(KEY_TYPES.to_vec())
            .prop_flat_map(|ty| (Just(ty), arb_value(ty), arb_value(ty)))
    }

    /// Two composite keys over the same random list of column types.
    fn arb_composite() -> impl Strategy<Value = (Vec<DataType>, Vec<Value>, Vec<Value>)> {
        proptest::collection::vec(proptest::sample::select(KEY_TYPES.to_vec()), 1..4).prop_flat_map(
            |types| {
                let a: Vec<_> = types.iter().map(|t| arb_value(*t)).collect();
                let b: Vec<_> = types.iter().map(|t| arb_value(*t)).collect();
                (Just(types), a, b)
            },
        )
    }

    fn composite_cmp(a: &[Value], b: &[Value]) -> Ordering {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.sql_cmp(y).expect("same types"))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn byte_order_is_value_order((_ty, a, b) in arb_pair()) {
            let ea = encode_key(std::slice::from_ref(&a)).unwrap();
            let eb = encode_key(std::slice::from_ref(&b)).unwrap();
            prop_assert_eq!(ea.cmp(&eb), a.sql_cmp(&b).unwrap(), "{:?} vs {:?}", a, b);
        }

        #[test]
        fn keys_round_trip((ty, a, _b) in arb_pair()) {
            let encoded = encode_key(std::slice::from_ref(&a)).unwrap();
            let mut decoder = KeyDecoder::new(&encoded);
            let decoded = decoder.decode_value(ty).unwrap();
            prop_assert!(decoder.is_empty());
            prop_assert_eq!(decoded.sql_cmp(&a), Some(Ordering::Equal), "{:?} -> {:?}", a, decoded);
        }

        #[test]
        fn composite_byte_order_is_value_order((types, a, b) in arb_composite()) {
            let ea = encode_key(&a).unwrap();
            let eb = encode_key(&b).unwrap();
            prop_assert_eq!(ea.cmp(&eb), composite_cmp(&a, &b));
            let mut decoder = KeyDecoder::new(&ea);
            for (ty, value) in types.iter().zip(&a) {
                let decoded = decoder.decode_value(*ty).unwrap();
                prop_assert_eq!(decoded.sql_cmp(value), Some(Ordering::Equal));
            }
            prop_assert!(decoder.is_empty());
        }
    }

    #[test]
    fn special_floats_order() {
        let order = [
            f64::NEG_INFINITY,
            -1.5,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            2.0,
            f64::INFINITY,
            f64::NAN,
        ];
        let encoded: Vec<_> = order.iter().map(|f| encode_f64(*f)).collect();
        for pair in encoded.windows(2) {
            assert!(pair[0] <= pair[1]);
        }
        assert_eq!(encode_f64(-0.0), encode_f64(0.0));
        assert_eq!(encode_f64(f64::NAN), encode_f64(-f64::NAN));
    }

    #[test]
    fn interval_is_not_a_key() {
        let err = encode_key(&[Value::Interval(Default::default())]).unwrap_err();
        assert_eq!(err.sqlstate().code(), "0A000");
    }
}
