//! In-memory key directory: the ALEX learned index (Ding et al., "ALEX: An
//! Updatable Adaptive Learned Index", SIGMOD 2020) over u64 keys.
//!
//! Numeric keys reach it through the order-preserving maps in [`keymap`].

mod alex;
mod data_node;
pub mod keymap;
mod model;
#[cfg(test)]
mod tests;

pub use alex::{Alex, Config, Range, RangeRev};
