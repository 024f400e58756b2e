//! Order-preserving maps from numeric key types to u64, the key space of the index.
//!
//! `a < b` exactly when `map(a) < map(b)`: signed integers flip their sign
//! bit; floats flip every bit when negative and the sign bit otherwise, with
//! -0.0 folded onto 0.0 and every NaN onto one value above +inf (PostgreSQL's
//! order). These are the same bytes as the key encoding's, read as a number.

/// Maps an i64 (also timestamps in microseconds).
pub fn from_i64(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Inverse of [`from_i64`].
pub fn to_i64(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

/// Maps an i32.
pub fn from_i32(v: i32) -> u64 {
    from_i64(v as i64)
}

/// Maps an i16.
pub fn from_i16(v: i16) -> u64 {
    from_i64(v as i64)
}

/// Maps an f64.
pub fn from_f64(v: f64) -> u64 {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    }
}

/// Inverse of [`from_f64`] (for the canonical -0.0 and NaN).
pub fn to_f64(v: u64) -> f64 {
    let bits = if v >> 63 == 1 { v ^ (1 << 63) } else { !v };
    f64::from_bits(bits)
}

/// Maps an f32 (through f64, which orders identically).
pub fn from_f32(v: f32) -> u64 {
    from_f64(v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integers_keep_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), from_i64(a).cmp(&from_i64(b)));
            prop_assert_eq!(to_i64(from_i64(a)), a);
        }

        #[test]
        fn floats_keep_order(a in any::<f64>(), b in any::<f64>()) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            prop_assert_eq!(a.partial_cmp(&b).unwrap(), from_f64(a).cmp(&from_f64(b)));
        }
    }

    #[test]
    fn special_floats() {
        let order = [
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            1e-300,
            1.0,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in order.windows(2) {
            assert!(from_f64(w[0]) <= from_f64(w[1]), "{} {}", w[0], w[1]);
        }
        assert_eq!(from_f64(-0.0), from_f64(0.0));
        assert_eq!(from_f32(-2.5), from_f64(-2.5));
    }
}
