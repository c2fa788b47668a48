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

use super::logs::{self, IngestReport, SourceStamp};
use super::stats::AccessStats;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Format of `<state>/access/`.
pub const ACCESS_FORMAT: u32 = 1;
/// The statistics file.
pub const STATS_FILE: &str = "stats.bin.zst";
/// Largest decompressed statistics accepted (bounds memory on a damaged file).
pub const MAX_STATS_BYTES: u64 = 16 << 30;

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
    let rep = logs::read(inputs, &mut meta.sources, &mut stats)?;
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
