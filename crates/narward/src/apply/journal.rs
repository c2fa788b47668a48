//! The apply journal: `<state>/apply/<plan-checksum>/journal`, append-only.
//!
//! One record a line: `<checksum> <json>\n`, where the checksum is the first 16 hex digits
//! of the SHA-256 of the JSON. Records: `begin` (plan, cache, areas, quarantine stamp,
//! batch size), `skip` (an object left alone and why), `checked` (the re-check is over:
//! the program is fixed), `announce N` (batch N is about to run), `done N`, `finished`.
//! Each record is fsynced before the step it announces is taken.
//!
//! Progress is a cursor over the program's batches, never a row per object: memory is
//! independent of the number of objects (skips are the exception, and few).
//!
//! Reading: a last line that is incomplete or fails its checksum is a write torn by a
//! crash; the step it would have announced was never started, so it is dropped (and cut
//! from the file before anything is appended). A damaged record anywhere else is refused,
//! naming the file and the line.

use super::program::Skip;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How an apply began; fixed for its whole life (resume reuses it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begin {
    /// The plan's checksum.
    pub plan: String,
    /// The plan directory (absolute).
    pub plan_dir: PathBuf,
    /// The cache's identity.
    pub cache: String,
    pub archive: String,
    pub quarantine: String,
    /// Folder of this apply in the quarantine area (unix seconds at the start).
    pub stamp: String,
    pub batch_size: usize,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Record {
    Begin(Begin),
    Skip(Skip),
    Checked,
    Announce { seq: u64 },
    Done { seq: u64 },
    Finished,
}

/// What a journal says so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub begin: Begin,
    /// Skips of the re-check (before `checked`): they shape the program.
    pub skips: Vec<Skip>,
    /// Skips while running (after `checked`): reported only.
    pub runtime_skips: Vec<Skip>,
    pub checked: bool,
    /// The first batch not marked done (batches run in order).
    pub next_seq: u64,
    /// A batch announced and not done: redone on resume.
    pub in_flight: Option<u64>,
    pub finished: bool,
}

pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

/// The journal directory of a plan.
pub fn dir(state: &Path, plan_checksum: &str) -> PathBuf {
    state.join("apply").join(plan_checksum)
}

/// One journal line of any record type: `<16 hex of SHA-256(json)> <json>\n` (the
/// restore journal uses the same format).
pub fn line<R: Serialize>(r: &R) -> Result<String> {
    let json = serde_json::to_string(r)?;
    let sum = hex::encode(Sha256::digest(json.as_bytes()));
    Ok(format!("{} {json}\n", &sum[..16]))
}

fn parse_line<R: serde::de::DeserializeOwned>(l: &str) -> Option<R> {
    let (sum, json) = l.split_once(' ')?;
    let want = hex::encode(Sha256::digest(json.as_bytes()));
    if sum.len() != 16 || sum != &want[..16] {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl Journal {
    /// Start a new journal with its `begin` record.
    ///
    /// # Errors
    /// A journal exists already (resume it), or it cannot be written.
    pub fn create(dir: &Path, begin: Begin) -> Result<Journal> {
        Journal::create_with(
            dir,
            &line(&Record::Begin(begin))?,
            "an apply of this plan was started already (use --resume)",
        )
    }

    /// Start a new journal whose first line is `first` (a [`line`]); `exists` says what an
    /// existing journal means.
    ///
    /// # Errors
    /// A journal exists already, or it cannot be written.
    pub fn create_with(dir: &Path, first: &str, exists: &str) -> Result<Journal> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("journal");
        // The begin record is written to a temporary file and linked into place, so a
        // crash leaves either no journal or one that starts with `begin`.
        let tmp = dir.join("journal.tmp");
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(first.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        linked.with_context(|| format!("journal {}: {exists}", path.display()))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
        let file = std::fs::File::options()
            .append(true)
            .open(&path)
            .with_context(|| format!("journal {}", path.display()))?;
        Ok(Journal { path, file })
    }

    /// Open an existing journal for appending, with what it says.
    ///
    /// # Errors
    /// No journal; a damaged record before the last line (named); no `begin` record.
    pub fn open(dir: &Path) -> Result<(Journal, State)> {
        let path = dir.join("journal");
        let text = std::fs::read(&path).with_context(|| format!("journal {}", path.display()))?;
        let (state, good_len) = read_records(&text, &path)?;
        Ok((Journal::reopen(&path, &text, good_len)?, state))
    }

    /// Open an existing journal of any record type: its records (a torn last line cut).
    ///
    /// # Errors
    /// No journal; a damaged record before the last line (named); an empty journal.
    pub fn open_lines<R: serde::de::DeserializeOwned>(
        dir: &Path,
    ) -> Result<(Journal, Vec<(usize, R)>)> {
        let path = dir.join("journal");
        let text = std::fs::read(&path).with_context(|| format!("journal {}", path.display()))?;
        let (recs, good_len) = read_lines(&text, &path)?;
        Ok((Journal::reopen(&path, &text, good_len)?, recs))
    }

    fn reopen(path: &Path, text: &[u8], good_len: u64) -> Result<Journal> {
        let path = path.to_path_buf();
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .with_context(|| format!("journal {}", path.display()))?;
        if good_len < text.len() as u64 {
            tracing::warn!(
                "journal {}: dropping a torn last record (a crash during its write)",
                path.display()
            );
            file.set_len(good_len)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("journal {}: cutting the torn record", path.display()))?;
        }
        let file = std::fs::File::options()
            .append(true)
            .open(&path)
            .with_context(|| format!("journal {}", path.display()))?;
        Ok(Journal { path, file })
    }

    /// Append one record and fsync it.
    ///
    /// # Errors
    /// Write or fsync failure.
    pub fn append<R: Serialize>(&mut self, r: &R) -> Result<()> {
        let l = line(r)?;
        self.file
            .write_all(l.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("writing journal {}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Fold the records of a journal's bytes into a [`State`]; gives the length of the good
/// prefix (shorter than the input when the last line is torn).
///
/// # Errors
/// A damaged record before the last line; a journal not starting with `begin`.
pub fn read_records(text: &[u8], path: &Path) -> Result<(State, u64)> {
    let (recs, good_len) = read_lines::<Record>(text, path)?;
    let mut state: Option<State> = None;
    for (lineno, rec) in recs {
        apply_record(&mut state, rec, path, lineno)?;
    }
    match state {
        Some(s) => Ok((s, good_len)),
        None => bail_begin(path),
    }
}

/// The records of a journal's bytes with their line numbers, and the length of the good
/// prefix (shorter than the input when the last line is torn: dropped, when some record
/// precedes it).
///
/// # Errors
/// A damaged record before the last line, or as the only line.
pub fn read_lines<R: serde::de::DeserializeOwned>(
    text: &[u8],
    path: &Path,
) -> Result<(Vec<(usize, R)>, u64)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut lineno = 0usize;
    while pos < text.len() {
        lineno += 1;
        let end = text[pos..].iter().position(|&b| b == b'\n');
        let rec = end.and_then(|e| {
            std::str::from_utf8(&text[pos..pos + e])
                .ok()
                .and_then(parse_line)
        });
        let Some(rec) = rec else {
            let last = end.is_none_or(|e| pos + e + 1 == text.len());
            if last && !out.is_empty() {
                return Ok((out, pos as u64));
            }
            bail!(
                "journal {} line {lineno}: damaged record (checksum mismatch or unreadable); refusing to resume from a damaged journal",
                path.display()
            );
        };
        pos += end.unwrap_or(0) + 1;
        out.push((lineno, rec));
    }
    Ok((out, pos as u64))
}

fn bail_begin<T>(path: &Path) -> Result<T> {
    bail!("journal {}: no begin record", path.display())
}

fn apply_record(state: &mut Option<State>, rec: Record, path: &Path, lineno: usize) -> Result<()> {
    let Some(s) = state else {
        let Record::Begin(b) = rec else {
            bail!(
                "journal {} line {lineno}: expected the begin record",
                path.display()
            );
        };
        *state = Some(State {
            begin: b,
            skips: Vec::new(),
            runtime_skips: Vec::new(),
            checked: false,
            next_seq: 0,
            in_flight: None,
            finished: false,
        });
        return Ok(());
    };
    match rec {
        Record::Begin(_) => bail!(
            "journal {} line {lineno}: a second begin record",
            path.display()
        ),
        Record::Skip(k) if s.checked => s.runtime_skips.push(k),
        Record::Skip(k) => s.skips.push(k),
        Record::Checked => s.checked = true,
        Record::Announce { seq } => s.in_flight = Some(seq),
        Record::Done { seq } => {
            if seq != s.next_seq {
                bail!(
                    "journal {} line {lineno}: batch {seq} done out of order (expected {})",
                    path.display(),
                    s.next_seq
                );
            }
            s.next_seq = seq + 1;
            s.in_flight = None;
        }
        Record::Finished => s.finished = true,
    }
    Ok(())
}

#[cfg(test)]
mod tests;
