//! The proposal as a reviewable artifact, like a plan: a directory with `proposal.json`
//! (what it was computed from, the tier, the per-tier estimates, the ranked groups, the
//! SHA-256 of every other file, and a checksum of itself) and `objects.csv` (one row per
//! object to bring back: rank, status, group path, key, kind, storage class, size, ETag).
//!
//! A proposal directory is never overwritten; reading one refuses an edited
//! `proposal.json` or an altered, added or removed file, naming it.

use super::proposal::{ProposalBody, RestoreObject};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Format of proposal directories.
pub const PROPOSAL_FORMAT: u32 = 1;
const HEADER: &str = "proposal.json";
const OBJECTS: &str = "objects.csv";

/// `proposal.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalHeader {
    pub format_version: u32,
    pub created_at: i64,
    pub cache: String,
    /// The plan the archive was described by.
    pub plan_checksum: String,
    pub plan_index_generation: u64,
    /// `meta.json` checksum of the access statistics read.
    pub access_stats_checksum: String,
    pub policy_file: String,
    pub policy_sha256: String,
    pub policy_text: String,
    pub pricing: String,
    pub body: ProposalBody,
    /// SHA-256 of every other file, by name.
    pub files: BTreeMap<String, String>,
    /// SHA-256 of this header serialized with `checksum` empty.
    pub checksum: String,
}

impl ProposalHeader {
    /// The header's bytes with `checksum` empty, and their SHA-256.
    fn unsealed(&self) -> Result<(Vec<u8>, String)> {
        let mut h = self.clone();
        h.checksum = String::new();
        let bytes = serde_json::to_vec_pretty(&h)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, sha))
    }
}

/// Whether the file's bytes, with its checksum emptied, hash to it. The bytes are checked,
/// not a re-serialization: decimal numbers need not survive a JSON round trip bit for bit.
fn sealed_bytes_match(raw: &[u8], checksum: &str) -> bool {
    let Ok(text) = std::str::from_utf8(raw) else {
        return false;
    };
    let needle = format!("\"checksum\": \"{checksum}\"");
    if checksum.is_empty() || text.matches(&needle).count() != 1 {
        return false;
    }
    let unsealed = text.replacen(&needle, "\"checksum\": \"\"", 1);
    hex::encode(Sha256::digest(unsealed.as_bytes())) == checksum
}

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    rank: u32,
    status: String,
    group_path: String,
    key: String,
    kind: String,
    storage_class: String,
    size: u64,
    etag: String,
}

fn csv_bytes(h: &ProposalHeader) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for (rank, o) in &h.body.objects {
        let g = h.body.groups.get((*rank as usize).wrapping_sub(1));
        w.serialize(Row {
            rank: *rank,
            status: g.map_or("", |g| g.status.as_str()).to_string(),
            group_path: g.map_or("", |g| g.path.as_str()).to_string(),
            key: o.key.clone(),
            kind: o.kind.clone(),
            storage_class: o.storage_class.clone(),
            size: o.size,
            etag: o.etag.clone().unwrap_or_default(),
        })?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Write the proposal into `dir`, which must not exist or be empty; seals the header.
///
/// # Errors
/// `dir` exists and is not an empty directory; I/O errors.
pub fn write(h: &mut ProposalHeader, dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "proposal directory {} exists and is not empty: proposals are never overwritten, give --out a new directory",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let csv = csv_bytes(h)?;
    h.format_version = PROPOSAL_FORMAT;
    h.files = BTreeMap::from([(OBJECTS.to_string(), hex::encode(Sha256::digest(&csv)))]);
    h.checksum = h.unsealed()?.1;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    write(OBJECTS, &csv)?;
    write(HEADER, &serde_json::to_vec_pretty(h)?)
}

/// Read and verify a proposal directory.
///
/// # Errors
/// A missing, edited, altered, added or removed file (named); malformed content.
pub fn read(dir: &Path) -> Result<ProposalHeader> {
    let hp = dir.join(HEADER);
    let text = std::fs::read(&hp).with_context(|| format!("reading {}", hp.display()))?;
    let mut h: ProposalHeader = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a narward proposal header", hp.display()))?;
    if h.format_version != PROPOSAL_FORMAT {
        bail!(
            "{}: format {} (this narward reads {PROPOSAL_FORMAT})",
            hp.display(),
            h.format_version
        );
    }
    if !sealed_bytes_match(&text, &h.checksum) {
        bail!(
            "{} was edited: its checksum does not match its content",
            hp.display()
        );
    }
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = e
            .with_context(|| format!("reading {}", dir.display()))?
            .file_name()
            .to_string_lossy()
            .to_string();
        if name != HEADER && !h.files.contains_key(&name) {
            bail!(
                "{} was added to the proposal (not in {HEADER})",
                dir.join(&name).display()
            );
        }
    }
    let mut objects = None;
    for (name, sha) in &h.files {
        let p = dir.join(name);
        let bytes = std::fs::read(&p)
            .with_context(|| format!("{} is missing from the proposal", p.display()))?;
        if &hex::encode(Sha256::digest(&bytes)) != sha {
            bail!(
                "{} was altered: its SHA-256 differs from {HEADER}",
                p.display()
            );
        }
        if name == OBJECTS {
            // Parse the bytes just verified, not the file again.
            objects = Some(read_rows(&p, &bytes)?);
        }
    }
    h.body.objects =
        objects.with_context(|| format!("{}: {HEADER} lists no {OBJECTS}", dir.display()))?;
    Ok(h)
}

fn read_rows(p: &Path, bytes: &[u8]) -> Result<Vec<(u32, RestoreObject)>> {
    let mut r = csv::Reader::from_reader(bytes);
    let mut v = Vec::new();
    for (i, row) in r.deserialize::<Row>().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", p.display(), i + 2))?;
        v.push((
            row.rank,
            RestoreObject {
                key: row.key,
                kind: row.kind,
                storage_class: row.storage_class,
                size: row.size,
                etag: (!row.etag.is_empty()).then_some(row.etag),
            },
        ));
    }
    Ok(v)
}
