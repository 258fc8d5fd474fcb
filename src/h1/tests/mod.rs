//! The codec's unit and property tests: one module per file of the codec, and the properties
//! (round trips, prefixes, never reading past the framing) in `properties.rs`.
#![allow(clippy::arithmetic_side_effects, clippy::as_conversions)]

mod chunked;
mod head;
mod properties;
mod write;
