//! The one reader of S3 server access log files: `keep.access_logs` in plan policies and
//! `narward access-logs ingest` both read logs here, into [`AccessStats`], so they agree on
//! what a read is (the classification is [`narward_formats::access_log`]'s).
//!
//! An input is a file or a directory (read recursively, in sorted order); files are read
//! as they are (plain text, not decompressed). Each line is parsed by
//! [`parse_request`]; a malformed line (garbage, not UTF-8, longer than [`MAX_LINE`], a bad
//! time, key or status) is counted and the first [`MAX_EXAMPLES`] kept with `file:line`,
//! and never fails the read.
//!
//! Each file read is stamped ([`SourceStamp`]: size, mtime, SHA-256 of the bytes read); a
//! file already stamped is skipped when unchanged, read from where it ended when it only
//! grew, and reported (not read again) otherwise. The ingest keeps the stamps in the state
//! directory; a policy starts from none each time.

use super::stats::AccessStats;
use anyhow::{Context, Result};
use narward_formats::access_log::parse_request;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// How many malformed lines a read shows (all are counted).
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

/// What one read of logs did.
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

    /// The warnings to show: changed files, the count of malformed lines and the examples.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .files_changed
            .iter()
            .map(|f| format!("access log {f} changed since it was read (not only appended): not read again, its earlier lines stay counted"))
            .collect();
        if self.malformed > 0 {
            w.push(format!(
                "access logs: {} malformed lines ignored (the requests they record are not counted)",
                self.malformed
            ));
            w.extend(
                self.malformed_examples
                    .iter()
                    .map(|e| format!("access logs: malformed line {e}")),
            );
        }
        w
    }
}

/// Read the log files and directories `inputs` into `stats`, skipping or resuming files
/// already in `sources` (by absolute path) and stamping every file read there.
///
/// # Errors
/// An input that does not exist or a file or directory that cannot be read (named). A
/// malformed line is never an error: it is counted in the report.
pub fn read(
    inputs: &[PathBuf],
    sources: &mut BTreeMap<String, SourceStamp>,
    stats: &mut AccessStats,
) -> Result<IngestReport> {
    let mut files = Vec::new();
    for i in inputs {
        collect(i, &mut files).with_context(|| format!("access logs {}", i.display()))?;
    }
    let mut rep = IngestReport::default();
    for f in files {
        read_file(&f, sources, stats, &mut rep)?;
    }
    Ok(rep)
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

fn read_file(
    f: &Path,
    sources: &mut BTreeMap<String, SourceStamp>,
    stats: &mut AccessStats,
    rep: &mut IngestReport,
) -> Result<()> {
    let name = f.display().to_string();
    let md = std::fs::metadata(f).with_context(|| format!("access log {name}"))?;
    let (size, mtime) = (md.len(), mtime_ns(&md));
    if let Some(old) = sources.get(&name)
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
    let (mut total, first_line) = match sources.get(&name) {
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
        add_line(&buf, too_long, format!("{name}:{n}"), stats, rep);
    }
    match sources.get(&name) {
        None => rep.files_read += 1,
        Some(_) if total == before => rep.files_unchanged += 1,
        Some(_) => rep.files_appended += 1,
    }
    sources.insert(
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

/// Count the line `raw` (only its start when `too_long`) read at `place` (`file:line`).
fn add_line(
    raw: &[u8],
    too_long: bool,
    place: String,
    stats: &mut AccessStats,
    rep: &mut IngestReport,
) {
    stats.lines += 1;
    rep.lines += 1;
    let parsed = match std::str::from_utf8(raw) {
        _ if too_long => Err(format!("longer than {MAX_LINE} bytes")),
        Err(_) => Err("not UTF-8".to_string()),
        Ok(line) => parse_request(line.trim_end_matches(['\n', '\r'])).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(Some(r)) => {
            if r.is_read() {
                rep.reads += 1;
                rep.hits += u64::from(r.is_hit());
                rep.misses += u64::from(r.is_miss());
            }
            stats.add(&r);
        }
        Ok(None) => {}
        Err(why) => {
            stats.malformed += 1;
            rep.malformed(place, &why);
        }
    }
}
