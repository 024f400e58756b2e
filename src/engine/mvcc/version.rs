//! The layout of one version in the rows family: the user key followed by the
//! inverted commit timestamp, and a value that is a row or a tombstone.

use crate::engine::error::{Error, Result};

/// The first byte of a stored version that holds a row.
pub const ROW: u8 = 0;
const TOMBSTONE: u8 = 1;

/// The storage key of `user_key`'s version committed at `ts`.
pub fn versioned_key(user_key: &[u8], ts: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(user_key.len() + 8);
    key.extend_from_slice(user_key);
    key.extend_from_slice(&(!ts).to_be_bytes());
    key
}

/// Splits a storage key into user key and commit timestamp.
pub fn split_versioned(key: &[u8]) -> Option<(&[u8], u64)> {
    let at = key.len().checked_sub(8)?;
    let (user, ts) = key.split_at(at);
    Some((user, !u64::from_be_bytes(ts.try_into().expect("8 bytes"))))
}

/// The stored form of a version: `Some(value)` for a write, `None` for a
/// delete. The value's buffer becomes the version's.
pub fn into_version(value: Option<Vec<u8>>) -> Vec<u8> {
    match value {
        Some(mut v) => {
            v.insert(0, ROW);
            v
        }
        None => vec![TOMBSTONE],
    }
}

/// Reads a stored version back.
pub fn decode_version(stored: &[u8]) -> Result<Option<&[u8]>> {
    match stored.split_first() {
        Some((&ROW, value)) => Ok(Some(value)),
        Some((&TOMBSTONE, [])) => Ok(None),
        _ => Err(Error::Corruption(
            "version is neither a row nor a tombstone".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_sort_first() {
        let old = versioned_key(b"k", 5);
        let new = versioned_key(b"k", 500);
        assert!(new < old);
        assert_eq!(split_versioned(&new), Some((&b"k"[..], 500)));
    }
}
