//! The access statistics on disk (`<state>/access/`) and their incremental update from log
//! files.
//!
//! - `stats.bin.zst`: the [`AccessStats`] (bincode, zstd with frame checksum);
//! - `meta.json`: the SHA-256 and length of `stats.bin.zst`, every log file already read
//!   (by absolute path: size, mtime and the SHA-256 of the bytes read), totals, and a
//!   SHA-256 of its own content (`checksum`).
//!
//! Reading refuses any damage, naming the file. An update writes `access.new/`, then
//! swaps it in (the old generation is `access.old/` for the instant of the swap, and is
//! read if `access/` is missing), under the lock `<state>/access.lock`.
//!
//! A log file already read is skipped when its size and mtime are unchanged; when it grew
//! and its first bytes are the ones read (same SHA-256), only the new lines are read
//! (appended logs); any other change is reported and the file is not read again, since
//! its earlier lines were already counted (remove `<state>/access/` to start over).

use super::stats::AccessStats;
use anyhow::{Context, Result, bail};
use narward_formats::access_log::parse_request;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

/// Format of `<state>/access/`.
pub const ACCESS_FORMAT: u32 = 1;
/// The statistics file.
pub const STATS_FILE: &str = "stats.bin.zst";
/// Largest decompressed statistics accepted (bounds memory on a damaged file).
pub const MAX_STATS_BYTES: u64 = 16 << 30;
/// How many malformed lines an ingest shows (all are counted).
pub const MAX_EXAMPLES: usize = 5;

/// A log file already read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStamp {
    pub size: u64,
    /// Modification time, nanoseconds since 1970.
    pub mtime_ns: i128,
    /// SHA-256 of the `size` bytes read.
    pub sha256: String,
}

/// `<state>/access/meta.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessMeta {
    pub format_version: u32,
    pub updated_at: i64,
    pub keys: u64,
    pub lines: u64,
    pub malformed: u64,
    pub stats_bytes: u64,
    pub stats_sha256: String,
    /// Log files read, by absolute path.
    pub sources: BTreeMap<String, SourceStamp>,
    /// SHA-256 of this file serialized with `checksum` empty.
    pub checksum: String,
}

impl AccessMeta {
    fn digest(&self) -> Result<String> {
        let mut m = self.clone();
        m.checksum = String::new();
        Ok(hex::encode(Sha256::digest(serde_json::to_vec(&m)?)))
    }
}

/// The directory of the access statistics.
pub fn access_dir(state: &Path) -> PathBuf {
    state.join("access")
}

/// Whether any statistics were stored.
pub fn exists(state: &Path) -> bool {
    current_dir(state).is_some()
}

fn current_dir(state: &Path) -> Option<PathBuf> {
    let d = access_dir(state);
    if d.join("meta.json").exists() {
        return Some(d);
    }
    let old = state.join("access.old");
    old.join("meta.json").exists().then_some(old)
}

/// Load the stored statistics (empty ones when none were stored).
///
/// # Errors
/// A damaged or unreadable `meta.json` or `stats.bin.zst` (named).
pub fn load(state: &Path) -> Result<(AccessMeta, AccessStats)> {
    let Some(dir) = current_dir(state) else {
        return Ok((
            AccessMeta {
                format_version: ACCESS_FORMAT,
                ..Default::default()
            },
            AccessStats::default(),
        ));
    };
    let mp = dir.join("meta.json");
    let text = std::fs::read(&mp).with_context(|| format!("reading {}", mp.display()))?;
    let meta: AccessMeta = serde_json::from_slice(&text)
        .with_context(|| format!("{} is damaged (not the expected JSON)", mp.display()))?;
    if meta.format_version != ACCESS_FORMAT {
        bail!(
            "{}: format {} (this narward reads {ACCESS_FORMAT})",
            mp.display(),
            meta.format_version
        );
    }
    if meta.digest()? != meta.checksum {
        bail!(
            "{} is damaged: its checksum does not match its content",
            mp.display()
        );
    }
    let sp = dir.join(STATS_FILE);
    let raw = std::fs::read(&sp).with_context(|| format!("reading {}", sp.display()))?;
    if raw.len() as u64 != meta.stats_bytes
        || hex::encode(Sha256::digest(&raw)) != meta.stats_sha256
    {
        bail!(
            "{} is damaged: its length or SHA-256 differs from {}",
            sp.display(),
            mp.display()
        );
    }
    let stats = decode(&raw).with_context(|| format!("{} is damaged", sp.display()))?;
    if stats.keys.len() as u64 != meta.keys {
        bail!(
            "{} is damaged: {} keys, meta.json says {}",
            sp.display(),
            stats.keys.len(),
            meta.keys
        );
    }
    Ok((meta, stats))
}

fn decode(raw: &[u8]) -> Result<AccessStats> {
    use bincode::Options;
    let mut dec = zstd::Decoder::new(raw)?.take(MAX_STATS_BYTES);
    let mut bytes = Vec::new();
    dec.read_to_end(&mut bytes)?;
    Ok(bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_STATS_BYTES)
        .deserialize(&bytes)?)
}

fn encode(stats: &AccessStats) -> Result<Vec<u8>> {
    use bincode::Options;
    let bytes = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .serialize(stats)?;
    let mut enc = zstd::Encoder::new(Vec::new(), 3)?;
    enc.include_checksum(true)?;
    enc.write_all(&bytes)?;
    Ok(enc.finish()?)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Store `stats` and `meta` (sealed here) as the current generation.
///
/// # Errors
/// I/O errors (the previous generation stays).
pub fn save(state: &Path, meta: &mut AccessMeta, stats: &AccessStats, now: i64) -> Result<()> {
    let raw = encode(stats)?;
    meta.format_version = ACCESS_FORMAT;
    meta.updated_at = now;
    meta.keys = stats.keys.len() as u64;
    meta.lines = stats.lines;
    meta.malformed = stats.malformed;
    meta.stats_bytes = raw.len() as u64;
    meta.stats_sha256 = hex::encode(Sha256::digest(&raw));
    meta.checksum = meta.digest()?;
    let new = state.join("access.new");
    if new.exists() {
        std::fs::remove_dir_all(&new).with_context(|| format!("removing {}", new.display()))?;
    }
    std::fs::create_dir_all(&new).with_context(|| format!("creating {}", new.display()))?;
    write_synced(&new.join(STATS_FILE), &raw)?;
    write_synced(&new.join("meta.json"), &serde_json::to_vec_pretty(meta)?)?;
    let cur = access_dir(state);
    let old = state.join("access.old");
    if cur.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        std::fs::rename(&cur, &old).with_context(|| format!("renaming {}", cur.display()))?;
    }
    std::fs::rename(&new, &cur).with_context(|| format!("renaming {}", new.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Files read from the start.
    pub files_read: u64,
    /// Files that grew since last time: only their new lines were read.
    pub files_appended: u64,
    /// Files already read and unchanged (skipped).
    pub files_unchanged: u64,
    /// Files already read that changed other than by growing: not read again (named).
    pub files_changed: Vec<String>,
    pub lines: u64,
    /// Reads (GET/HEAD) counted.
    pub reads: u64,
    pub hits: u64,
    pub misses: u64,
    pub malformed: u64,
    /// The first [`MAX_EXAMPLES`] malformed lines: `file:line: reason`.
    pub malformed_examples: Vec<String>,
}

impl IngestReport {
    fn malformed(&mut self, place: String, why: &str) {
        self.malformed += 1;
        if self.malformed_examples.len() < MAX_EXAMPLES {
            self.malformed_examples.push(format!("{place}: {why}"));
        }
    }
}

/// Read the log files and directories `inputs` into the stored statistics, incrementally,
/// and store the result.
///
/// # Errors
/// Unreadable inputs, a damaged stored state, another ingest running, I/O errors. A
/// malformed line is never an error: it is counted in the report.
pub fn ingest(state: &Path, inputs: &[PathBuf], now: i64) -> Result<(AccessStats, IngestReport)> {
    std::fs::create_dir_all(state)
        .with_context(|| format!("creating state directory {}", state.display()))?;
    let _lock = lock(state)?;
    let (mut meta, mut stats) = load(state)?;
    let mut files = Vec::new();
    for i in inputs {
        collect(i, &mut files).with_context(|| format!("access logs {}", i.display()))?;
    }
    let mut rep = IngestReport::default();
    for f in files {
        ingest_file(&f, &mut meta, &mut stats, &mut rep)?;
    }
    save(state, &mut meta, &stats, now)?;
    Ok((stats, rep))
}

fn lock(state: &Path) -> Result<std::fs::File> {
    let p = state.join("access.lock");
    crate::index::lock_file(&p, || {
        format!(
            "{} is held by another narward access-logs ingest",
            p.display()
        )
    })
}

/// Files under `p` (itself when a file), recursively, sorted, as absolute paths.
fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let p = std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?;
    if !p.is_dir() {
        out.push(p);
        return Ok(());
    }
    let mut entries = Vec::new();
    for e in std::fs::read_dir(&p).with_context(|| format!("{}", p.display()))? {
        entries.push(e.with_context(|| format!("{}", p.display()))?.path());
    }
    entries.sort();
    for e in entries {
        collect(&e, out)?;
    }
    Ok(())
}

fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

fn ingest_file(
    f: &Path,
    meta: &mut AccessMeta,
    stats: &mut AccessStats,
    rep: &mut IngestReport,
) -> Result<()> {
    let name = f.display().to_string();
    let md = std::fs::metadata(f).with_context(|| format!("access log {name}"))?;
    let (size, mtime) = (md.len(), mtime_ns(&md));
    if let Some(old) = meta.sources.get(&name)
        && old.size == size
        && old.mtime_ns == mtime
    {
        rep.files_unchanged += 1;
        return Ok(());
    }
    let file = std::fs::File::open(f).with_context(|| format!("access log {name}"))?;
    let mut rd = std::io::BufReader::with_capacity(1 << 20, file);
    let mut hash = Sha256::new();
    let ctx = || format!("access log {name}");
    let (mut total, first_line) = match meta.sources.get(&name) {
        None => (0, 1),
        Some(old) => match read_prefix(&mut rd, old, &mut hash).with_context(ctx)? {
            Some(lines) => (old.size, lines + 1),
            None => {
                rep.files_changed.push(name);
                return Ok(());
            }
        },
    };
    let before = total;
    let mut buf = Vec::new();
    for n in first_line.. {
        let (k, too_long) = next_line(&mut rd, &mut buf, &mut hash).with_context(ctx)?;
        if k == 0 {
            break;
        }
        total += k;
        let place = format!("{name}:{n}");
        if too_long {
            stats.lines += 1;
            rep.lines += 1;
            stats.malformed += 1;
            rep.malformed(place, &format!("longer than {MAX_LINE} bytes"));
        } else {
            add_line(&buf, place, stats, rep);
        }
    }
    match meta.sources.get(&name) {
        None => rep.files_read += 1,
        Some(_) if total == before => rep.files_unchanged += 1,
        Some(_) => rep.files_appended += 1,
    }
    meta.sources.insert(
        name,
        SourceStamp {
            size: total,
            mtime_ns: mtime,
            sha256: hex::encode(hash.finalize()),
        },
    );
    Ok(())
}

/// Longest log line kept (longer ones are malformed; S3 log lines are far shorter).
pub const MAX_LINE: usize = 1 << 20;

/// Hash the first `old.size` bytes; when they are the bytes read before and end at a line
/// end, the number of lines they hold.
fn read_prefix(
    rd: &mut impl BufRead,
    old: &SourceStamp,
    hash: &mut Sha256,
) -> std::io::Result<Option<u64>> {
    let (mut left, mut lines, mut last) = (old.size, 0u64, b'\n');
    while left > 0 {
        let avail = rd.fill_buf()?;
        if avail.is_empty() {
            return Ok(None);
        }
        let take = avail.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let chunk = avail.get(..take).unwrap_or(avail);
        hash.update(chunk);
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        last = chunk.last().copied().unwrap_or(last);
        rd.consume(take);
        left -= take as u64;
    }
    let same = hex::encode(hash.clone().finalize()) == old.sha256;
    Ok((same && last == b'\n').then_some(lines))
}

/// Read one line (through its `\n`, if any) into `buf`, hashing it; returns the bytes
/// consumed (0 at the end) and whether the line was longer than [`MAX_LINE`] (then `buf`
/// holds only its start).
fn next_line(
    rd: &mut impl BufRead,
    buf: &mut Vec<u8>,
    hash: &mut Sha256,
) -> std::io::Result<(u64, bool)> {
    buf.clear();
    let (mut consumed, mut too_long) = (0u64, false);
    loop {
        let avail = rd.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        let end = avail.iter().position(|&b| b == b'\n');
        let chunk = avail
            .get(..end.map_or(avail.len(), |i| i + 1))
            .unwrap_or(avail);
        hash.update(chunk);
        if buf.len() + chunk.len() <= MAX_LINE {
            buf.extend_from_slice(chunk);
        } else {
            too_long = true;
        }
        let len = chunk.len();
        rd.consume(len);
        consumed += len as u64;
        if end.is_some() {
            break;
        }
    }
    Ok((consumed, too_long))
}

fn add_line(raw: &[u8], place: String, stats: &mut AccessStats, rep: &mut IngestReport) {
    stats.lines += 1;
    rep.lines += 1;
    let Ok(line) = std::str::from_utf8(raw) else {
        stats.malformed += 1;
        rep.malformed(place, "not UTF-8");
        return;
    };
    match parse_request(line.trim_end_matches(['\n', '\r'])) {
        Ok(Some(r)) => {
            if r.is_read() {
                rep.reads += 1;
                rep.hits += u64::from(r.is_hit());
                rep.misses += u64::from(r.is_miss());
            }
            stats.add(&r);
        }
        Ok(None) => {}
        Err(e) => {
            stats.malformed += 1;
            rep.malformed(place, &e.to_string());
        }
    }
}
