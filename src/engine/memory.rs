//! How much memory one statement or transaction may hold.
//!
//! One limit serves three places: DataFusion's memory pool (sorts, joins and
//! aggregations, which spill to disk past it or fail), the rows a query
//! returns, and the writes a transaction buffers until commit. Past it a
//! statement fails with 53200 (out of memory) rather than take the process
//! down. The limit is a quarter of the machine's memory unless the database
//! is opened with another (`--memory-limit`).

use std::sync::OnceLock;

use super::error::{Error, SqlState};

/// The default limit: a quarter of the machine's memory (4 GiB where it
/// cannot be read).
pub fn default_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| machine_memory().map_or(4 << 30, |total| total / 4))
}

/// The machine's memory in bytes, from /proc/meminfo.
fn machine_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// 53200: `what` needs more than `limit` bytes.
pub fn exceeded(what: &str, limit: usize) -> Error {
    Error::LimitExceeded {
        code: SqlState::OUT_OF_MEMORY,
        message: format!(
            "out of memory: {what} needs more than {} MB, the memory one statement or \
             transaction may use (--memory-limit)",
            limit >> 20
        ),
    }
}

/// Reads a size such as `512MB`, `4GB`, `1024kB` or a number of bytes.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        "tb" | "t" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(scale).filter(|n| *n > 0)
}
