//! Byte encodings: order-preserving keys ([`keycode`]) and compact rows ([`row`]).

pub mod keycode;
pub mod row;
