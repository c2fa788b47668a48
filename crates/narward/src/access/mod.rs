//! Access statistics from S3 server access logs, kept in the state directory
//! (`<state>/access/`) and updated incrementally by `narward access-logs ingest`.
//!
//! Per key: last successful read, request count, hit and miss (404) counts, misses per
//! day. They feed the demand-driven restore proposal ([`crate::restore`]) and the report's
//! hit and miss rates per kind of object. [`stats`] is pure; [`logs`] is the one reader of
//! log files (what a line means is [`narward_formats::access_log`]'s); [`store`] reads and
//! writes the state's files. `keep.accessed_within_days` in plan policies reads the files
//! of `keep.access_logs` with the same reader and, with `keep.access_stats = true`, these
//! statistics.

pub mod logs;
pub mod stats;
pub mod store;

pub use stats::{AccessStats, Demand, KeyStats, KindRates};

use std::borrow::Cow;
use std::collections::HashMap;

/// The key prefix (`""` or `"prefix/"`) of the cache a URL names: log keys carry it.
pub fn cache_prefix(cache_url: &str) -> String {
    match crate::cache::CacheUrl::parse(cache_url) {
        Ok(crate::cache::CacheUrl::S3(o)) if !o.prefix.is_empty() => format!("{}/", o.prefix),
        _ => String::new(),
    }
}

/// A last-read map of full bucket keys keyed like the objects of a cache under `prefix`
/// ([`narward_formats::access_log::key_in_cache`]). Borrows the map unchanged when there
/// is no prefix.
pub fn last_access_for_cache<'a>(
    last: &'a HashMap<String, i64>,
    prefix: &str,
) -> Cow<'a, HashMap<String, i64>> {
    if prefix.is_empty() {
        return Cow::Borrowed(last);
    }
    Cow::Owned(
        last.iter()
            .filter_map(|(k, &t)| {
                narward_formats::access_log::key_in_cache(k, prefix).map(|k| (k.to_string(), t))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
