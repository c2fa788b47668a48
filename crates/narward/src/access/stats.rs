//! Pure: per-key access statistics from S3 server access log requests.
//!
//! What a read, a hit and a miss are is [`Request`]'s one classification: a *read* is
//! `REST.GET.OBJECT` or `REST.HEAD.OBJECT`; a *hit* is a read answered 200, 206 or 304; a
//! *miss* is a read answered 404 (for a `.narinfo`, a Nix client that asked for a path the
//! cache did not serve). Other statuses (403, 5xx) count as reads only.

use narward_formats::access_log::{Request, key_in_cache};
use narward_formats::keys::{Category, ObjectKind, classify};
use narward_formats::store_path::StorePathHash;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Seconds per day.
pub const DAY: i64 = 86_400;

/// What the logs say about one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStats {
    /// Last successful read (unix seconds).
    pub last_access: Option<i64>,
    /// Reads of any outcome.
    pub requests: u64,
    /// Successful reads.
    pub hits: u64,
    /// Reads answered 404.
    pub misses: u64,
    /// Misses per day: (days since 1970-01-01, count), sorted by day.
    pub miss_days: Vec<(i64, u64)>,
}

impl KeyStats {
    fn add(&mut self, r: &Request) {
        self.requests += 1;
        if r.is_hit() {
            self.hits += 1;
            self.last_access = Some(self.last_access.map_or(r.time, |t| t.max(r.time)));
        } else if r.is_miss() {
            self.misses += 1;
            let day = r.time.div_euclid(DAY);
            match self.miss_days.binary_search_by_key(&day, |&(d, _)| d) {
                Ok(i) => self.miss_days[i].1 += 1,
                Err(i) => self.miss_days.insert(i, (day, 1)),
            }
        }
    }

    /// Misses from the day of `now - days` days through `now` (whole days, UTC).
    pub fn misses_within(&self, now: i64, days: u32) -> u64 {
        let first = now.div_euclid(DAY) - i64::from(days);
        let last = now.div_euclid(DAY);
        self.miss_days
            .iter()
            .filter(|&&(d, _)| d >= first && d <= last)
            .map(|&(_, n)| n)
            .sum()
    }
}

/// Every key's statistics (full bucket keys, with any cache prefix) and line counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessStats {
    pub keys: BTreeMap<String, KeyStats>,
    /// Log lines read, blank ones included.
    pub lines: u64,
    /// Lines that did not parse (never counted as requests).
    pub malformed: u64,
    /// Well-formed requests that are not reads (PUT, DELETE, copies…).
    pub other_requests: u64,
}

impl AccessStats {
    /// Count one request.
    pub fn add(&mut self, r: &Request) {
        if !r.is_read() {
            self.other_requests += 1;
            return;
        }
        self.keys.entry(r.key.clone()).or_default().add(r);
    }

    /// The keys of a cache under `prefix` (`""` or `"prefix/"`), prefix stripped; keys
    /// outside it are left out.
    pub fn for_cache<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a KeyStats)> {
        self.keys
            .iter()
            .filter_map(move |(k, s)| key_in_cache(k, prefix).map(|k| (k, s)))
    }

    /// Last successful read per key of the cache under `prefix` (what
    /// `keep.accessed_within_days` uses).
    pub fn last_access(&self, prefix: &str) -> std::collections::HashMap<String, i64> {
        self.for_cache(prefix)
            .filter_map(|(k, s)| s.last_access.map(|t| (k.to_string(), t)))
            .collect()
    }

    /// Requests, hits and misses per kind of object of the cache under `prefix`.
    pub fn rates(&self, prefix: &str) -> Vec<KindRates> {
        let mut by: BTreeMap<Category, KindRates> = BTreeMap::new();
        for (k, s) in self.for_cache(prefix) {
            let c = classify(k).category();
            let e = by.entry(c).or_insert_with(|| KindRates {
                kind: c,
                keys: 0,
                requests: 0,
                hits: 0,
                misses: 0,
            });
            e.keys += 1;
            e.requests += s.requests;
            e.hits += s.hits;
            e.misses += s.misses;
        }
        by.into_values().collect()
    }

    /// The store paths whose `.narinfo` was missed at least `min_misses` times in the
    /// window of `window_days` days up to `now`, most missed first (then by hash).
    pub fn narinfo_demand(
        &self,
        prefix: &str,
        now: i64,
        window_days: u32,
        min_misses: u64,
    ) -> Vec<Demand> {
        let mut v: Vec<Demand> = self
            .for_cache(prefix)
            .filter_map(|(k, s)| {
                let ObjectKind::Narinfo(hash) = classify(k) else {
                    return None;
                };
                let misses = s.misses_within(now, window_days);
                (misses >= min_misses.max(1)).then(|| Demand {
                    hash,
                    key: k.to_string(),
                    misses,
                    last_miss_day: s.miss_days.last().map(|&(d, _)| d),
                })
            })
            .collect();
        v.sort_by(|a, b| b.misses.cmp(&a.misses).then(a.key.cmp(&b.key)));
        v
    }
}

/// Requests, hits and misses of one kind of object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindRates {
    pub kind: Category,
    /// Keys of this kind in the logs.
    pub keys: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
}

impl KindRates {
    /// Hits / requests (0 without requests).
    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.requests)
    }
    /// Misses / requests (0 without requests).
    pub fn miss_rate(&self) -> f64 {
        ratio(self.misses, self.requests)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A store path clients asked for and did not get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    pub hash: StorePathHash,
    /// The `.narinfo` key (cache prefix stripped).
    pub key: String,
    /// Misses within the window.
    pub misses: u64,
    /// Day (since 1970-01-01) of the last miss.
    pub last_miss_day: Option<i64>,
}
