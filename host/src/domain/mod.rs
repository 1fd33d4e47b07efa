//! The typed domain layer: values that were checked once, where they entered (an API body, a
//! host call, a frame), so that every rule about them lives in one place.
//!
//! - [`names`]: `SystemId`, `GroupName`, `Uid` (non-empty, at most `limits.max_name_bytes`).
//! - [`close`]: `CloseCode` (what a server may send) and `CloseReason` (at most 123 bytes).

pub mod close;
pub mod names;
