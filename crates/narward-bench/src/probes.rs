//! In-process measurements, each run by the harness as `narward-bench probe …` in a child
//! process (so its peak RSS is its own). Each prints one JSON object on stdout, and one
//! `PHASE` line per finished phase on stderr (so a run that dies still tells how far it got).

use crate::corpus::Corpus;
use crate::measure::{reset_peak, self_rss};
use anyhow::Result;
use narward::graph::NONE;
use narward::index::{self, Index};
use narward::model::FetchedRecord;
use narward::policy::Policy;
use narward_formats::keys::{self, Category};
use narward_formats::narinfo::NarInfo;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// One phase of a probe: wall time, RSS at its end, peak RSS during it.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub wall_s: f64,
    pub rss_end: u64,
    pub peak: u64,
}

pub struct Phases {
    pub list: Vec<Phase>,
    /// The largest per-phase peak: the process's peak RSS. Resetting `VmHWM` between
    /// phases also resets what `wait4` reports, so probes print this as `peak_rss` and the
    /// harness takes it when larger.
    pub overall: u64,
    start: Instant,
}

impl Phases {
    pub fn new() -> Phases {
        reset_peak();
        Phases {
            list: Vec::new(),
            overall: 0,
            start: Instant::now(),
        }
    }

    /// Close the phase that started at the previous call.
    pub fn done(&mut self, name: &str) {
        let wall = self.start.elapsed().as_secs_f64();
        let (rss, hwm) = self_rss();
        eprintln!("PHASE\t{name}\t{wall:.3}\t{rss}\t{hwm}");
        self.overall = self.overall.max(hwm);
        self.list.push(Phase {
            name: name.to_string(),
            wall_s: wall,
            rss_end: rss,
            peak: hwm,
        });
        reset_peak();
        self.start = Instant::now();
    }
}

impl Default for Phases {
    fn default() -> Self {
        Self::new()
    }
}

fn rate(texts: &[String], seconds: f64) -> serde_json::Value {
    let bytes: usize = texts.iter().map(String::len).sum();
    for t in texts {
        NarInfo::parse(t).expect("generated narinfos parse");
    }
    let start = Instant::now();
    let mut parsed = 0u64;
    let mut sink = 0usize;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        for t in texts {
            sink =
                sink.wrapping_add(NarInfo::parse(black_box(t)).map_or(0, |n| n.references.len()));
        }
        parsed += texts.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let per_sec = parsed as f64 / secs;
    json!({
        "records": texts.len(),
        "mean_bytes": bytes as f64 / texts.len().max(1) as f64,
        "narinfos_per_sec": per_sec,
        "mb_per_sec": per_sec * bytes as f64 / texts.len().max(1) as f64 / 1e6,
        "references_seen": sink,
    })
}

/// Single-threaded `NarInfo::parse` rate over up to `sample` generated narinfos (read
/// from the index) and over the real corpus.
///
/// # Errors
/// A missing index or corpus.
pub fn parse_rate(
    state: &Path,
    corpus: &Path,
    sample: usize,
    seconds: f64,
) -> Result<serde_json::Value> {
    let mut texts = Vec::with_capacity(sample);
    let meta = Index::load_meta(state)?;
    let dir = narward::index::index_dir(state);
    let _ = index::generation::for_each_narinfo(&dir, &meta, |r: FetchedRecord| {
        if texts.len() >= sample {
            anyhow::bail!("enough");
        }
        texts.push(String::from_utf8(r.text)?);
        Ok(())
    });
    let c = Corpus::load(corpus)?;
    Ok(json!({
        "generated": rate(&texts, seconds),
        "corpus": rate(&c.texts, seconds),
    }))
}

/// narward's planning graph loaded the way `narward plan` loads it, without the rest of the
/// plan: the index's column files checked against `meta.json` (SHA-256) and mapped, the
/// [`narward::cache_graph::CacheGraph`] over them (every length, offset and id checked),
/// then the closure of the policy's roots and keep/archive counts and bytes.
///
/// # Errors
/// A missing index (or one without column files) or policy.
pub fn closure(state: &Path, policy: &Path) -> Result<serde_json::Value> {
    let mut ph = Phases::new();
    let pol = Policy::load(policy)?;
    ph.done("policy");
    let meta = Index::load_meta(state)?;
    let mapped = Index::open_columns(state, &meta)?
        .ok_or_else(|| anyhow::anyhow!("the index has no column files: regenerate it"))?;
    let graph = mapped.graph()?;
    ph.done("map + verify columns");
    let mut seeds = Vec::with_capacity(pol.roots.len());
    let mut missing = 0u64;
    for h in pol.roots.hashes() {
        match graph.id(h) {
            Some(id) => seeds.push(id),
            None => missing += 1,
        }
    }
    let parent = graph.closure(&seeds);
    ph.done("closure");
    let (mut keep, mut keep_b, mut arch, mut arch_b) = (0u64, 0u64, 0u64, 0u64);
    for (id, p) in parent.iter().enumerate() {
        let fs = graph.file_size(id as u32).unwrap_or(0);
        if *p != NONE {
            keep += 1;
            keep_b += fs;
        } else {
            arch += 1;
            arch_b += fs;
        }
    }
    ph.done("decisions");
    let mem = graph.graph_bytes() as u64;
    let (paths, edges) = (graph.len() as u64, graph.edge_count() as u64);
    Ok(json!({
        "paths": paths,
        "edges": edges,
        "unparseable": graph.unparseable(),
        "missing_refs": graph.missing_refs(),
        "roots": pol.roots.len(),
        "missing_roots": missing,
        "keep": keep, "keep_bytes": keep_b, "archive": arch, "archive_bytes": arch_b,
        "graph_memory_bytes": mem,
        "graph_bytes_per_path_excl_edges": (mem as f64 - 4.0 * edges as f64) / paths.max(1) as f64,
        "graph_bytes_per_edge": 4.0,
        "peak_rss": ph.overall,
        "phases": ph.list,
    }))
}

/// The S3 Inventory as narward reads it (`narward::inventory::read`, what
/// `narward index --inventory` uses), then the growth report DuckDB is asked for:
/// objects and bytes per month and category.
///
/// # Errors
/// A missing or malformed report.
pub fn ingest(manifest: &Path) -> Result<serde_json::Value> {
    let mut ph = Phases::new();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let loc = narward::inventory::ManifestLocation::Local(manifest.to_path_buf());
    let listing = rt.block_on(narward::inventory::read(
        &loc,
        &narward::inventory::CacheScope::default(),
        1,
    ))?;
    ph.done("read");
    // (year * 12 + month, category) → objects, bytes; no allocation per object.
    let mut groups: BTreeMap<(i64, &'static str), (u64, u64)> = BTreeMap::new();
    for o in &listing.objects {
        let month = o.last_modified().map_or(i64::MIN, |t| {
            let (y, m, _) = narward_formats::date::ymd(t);
            y * 12 + m as i64
        });
        let cat: Category = o.category();
        let e = groups.entry((month, cat.as_str())).or_default();
        e.0 += 1;
        e.1 += o.size();
    }
    ph.done("group by month, category");
    let total: u64 = groups.values().map(|v| v.0).sum();
    let bytes: u64 = groups.values().map(|v| v.1).sum();
    Ok(json!({
        "objects": listing.objects.len(),
        "groups": groups.len(),
        "total_objects": total,
        "total_bytes": bytes,
        "peak_rss": ph.overall,
        "phases": ph.list,
    }))
}

/// Category names as DuckDB's SQL computes them, for cross-checking the growth report.
pub fn category_of(key: &str) -> &'static str {
    keys::classify(key).category().as_str()
}
