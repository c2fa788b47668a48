//! Access statistics from S3 server access logs, kept in the state directory
//! (`<state>/access/`) and updated incrementally by `narward access-logs ingest`.
//!
//! Per key: last successful read, request count, hit and miss (404) counts, misses per
//! day. They feed the demand-driven restore proposal ([`crate::restore`]) and the report's
//! hit and miss rates per kind of object. [`stats`] is pure; [`store`] reads and writes
//! the files. `keep.accessed_within_days` in plan policies reads its own log files
//! ([`crate::access_log`]) and, with `keep.access_stats = true`, these statistics.

pub mod stats;
pub mod store;

pub use stats::{AccessStats, Demand, KeyStats, KindRates};

#[cfg(test)]
mod tests;
