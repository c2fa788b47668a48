//! The restore journal: `<state>/restore/<id>/journal`, in the apply journal's format
//! (one `<16 hex of SHA-256(json)> <json>` record a line, fsynced before the step it
//! announces, a torn last line dropped, a damaged record elsewhere refused naming file
//! and line: [`crate::apply::journal`]).
//!
//! Records: `begin` (cache, areas, tier, days, the paths asked for), `path` (one path to
//! bring back, found in the store: where its narinfo, `.ls` and NAR are), `checked` (the
//! set is fixed), `requesting KEY` (fsynced before RestoreObject is sent), `requested KEY
//! OUTCOME` (its answer: never sent again), `published KEY` (the object is hot again;
//! their order in the journal is the order clients could see them), `failed KEY REASON`,
//! `finished`.

use crate::apply::journal::{Journal, line};
use crate::cache::store::{Area, Loc};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How a restore began; fixed for its whole life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begin {
    /// The restore's id (its directory name).
    pub id: String,
    /// The cache URL as given (to reopen the store).
    pub cache_url: String,
    /// The cache's identity.
    pub cache: String,
    /// `file://` caches: the archive and quarantine directories used.
    pub archive_dir: Option<PathBuf>,
    pub quarantine_dir: Option<PathBuf>,
    /// `bulk`, `standard` or `expedited`.
    pub tier: String,
    /// RestoreObject `Days`.
    pub days: u32,
    /// Hashes asked for.
    pub roots: Vec<String>,
    pub closure: bool,
    pub created_at: i64,
}

/// An object's place in the store, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct At {
    pub area: String,
    pub key: String,
}

impl At {
    pub fn of(l: &Loc) -> At {
        At {
            area: l.area.as_str().to_string(),
            key: l.key.clone(),
        }
    }

    pub fn loc(&self) -> Loc {
        let area = match self.area.as_str() {
            "archive" => Area::Archive,
            "quarantine" => Area::Quarantine,
            _ => Area::Cache,
        };
        Loc {
            area,
            key: self.key.clone(),
        }
    }
}

/// A NAR to make hot again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NarEntry {
    /// Its key in the cache.
    pub key: String,
    /// Where it is now (the cache itself for a NAR archived in place).
    pub at: At,
    /// Its storage class when found (`STANDARD` on `file://`).
    pub class: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// One removed path to bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEntry {
    /// The 32-character hash.
    pub hash: String,
    /// The store path (from the narinfo's `StorePath:`; the hash when it has none).
    pub store_path: String,
    /// `archive` or `quarantine`: where its narinfo is; `cache` for a visible narinfo whose
    /// NAR alone is cold (a kept path of the plan's restore set).
    pub from: String,
    /// The narinfo's place (its byte-for-byte copy beside the archived NAR).
    pub narinfo: At,
    /// The `.ls`'s place, when there is one.
    pub listing: Option<At>,
    /// The NAR, when it is not hot in the cache already.
    pub nar: Option<NarEntry>,
    /// Reference hashes (from the narinfo).
    pub references: Vec<String>,
    /// Why this path cannot be brought back (its NAR is nowhere): its narinfo, and those
    /// of the paths depending on it, are never published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

impl PathEntry {
    pub fn narinfo_key(&self) -> String {
        format!("{}.narinfo", self.hash)
    }
    pub fn listing_key(&self) -> String {
        format!("{}.ls", self.hash)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Record {
    Begin(Begin),
    Path(PathEntry),
    Checked,
    Requesting { key: String },
    Requested { key: String, outcome: String },
    Published { key: String },
    Failed { key: String, reason: String },
    Finished,
}

/// What a restore journal says so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub begin: Begin,
    pub paths: BTreeMap<String, PathEntry>,
    pub checked: bool,
    /// RestoreObject announced, answer not journaled.
    pub requesting: BTreeSet<String>,
    /// RestoreObject answered: key → outcome.
    pub requested: BTreeMap<String, String>,
    /// Cache keys published, in journal order.
    pub published: Vec<String>,
    pub failed: BTreeMap<String, String>,
    pub finished: bool,
}

impl State {
    pub fn is_published(&self, key: &str) -> bool {
        self.published.iter().any(|k| k == key)
    }
}

/// The journal directory of restore `id`.
pub fn dir(state: &Path, id: &str) -> PathBuf {
    state.join("restore").join(id)
}

/// Start the journal of a restore.
///
/// # Errors
/// It exists already, or cannot be written.
pub fn create(state: &Path, begin: Begin) -> Result<Journal> {
    let d = dir(state, &begin.id);
    Journal::create_with(
        &d,
        &line(&Record::Begin(begin))?,
        "a restore with this id exists already (`narward restore --resume`)",
    )
}

/// Open a restore journal with what it says.
///
/// # Errors
/// Missing, damaged (named), or not starting with `begin`.
pub fn open(d: &Path) -> Result<(Journal, State)> {
    let (j, recs) = Journal::open_lines::<Record>(d)?;
    let path = j.path().to_path_buf();
    let mut it = recs.into_iter();
    let Some((_, Record::Begin(begin))) = it.next() else {
        bail!("journal {}: no begin record", path.display());
    };
    let mut s = State {
        begin,
        paths: BTreeMap::new(),
        checked: false,
        requesting: BTreeSet::new(),
        requested: BTreeMap::new(),
        published: Vec::new(),
        failed: BTreeMap::new(),
        finished: false,
    };
    for (lineno, r) in it {
        fold(&mut s, r)
            .map_err(|e| anyhow::anyhow!("journal {} line {lineno}: {e}", path.display()))?;
    }
    Ok((j, s))
}

/// Fold a record just appended into `s` (a second `begin` is ignored here: only
/// [`open`] can meet one).
pub fn fold_into(s: &mut State, r: Record) {
    let _ = fold(s, r);
}

fn fold(s: &mut State, r: Record) -> Result<(), String> {
    match r {
        Record::Begin(_) => return Err("a second begin record".into()),
        Record::Path(p) => {
            s.paths.insert(p.hash.clone(), p);
        }
        Record::Checked => s.checked = true,
        Record::Requesting { key } => {
            s.requesting.insert(key);
        }
        Record::Requested { key, outcome } => {
            s.requesting.remove(&key);
            s.requested.insert(key, outcome);
        }
        Record::Published { key } => {
            s.failed.remove(&key);
            if !s.is_published(&key) {
                s.published.push(key);
            }
        }
        Record::Failed { key, reason } => {
            s.failed.insert(key, reason);
        }
        Record::Finished => s.finished = true,
    }
    Ok(())
}

/// Every restore journal of the state directory (sorted by id).
///
/// # Errors
/// A journal cannot be read or is damaged.
pub fn all(state: &Path) -> Result<Vec<(PathBuf, State)>> {
    let root = state.join("restore");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("journal").is_file())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs {
        let (_, s) = open(&d)?;
        out.push((d, s));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin() -> Begin {
        Begin {
            id: "1".into(),
            cache_url: "file:///c".into(),
            cache: "file:///c".into(),
            archive_dir: None,
            quarantine_dir: None,
            tier: "bulk".into(),
            days: 7,
            roots: vec!["a".into()],
            closure: true,
            created_at: 1,
        }
    }

    #[test]
    fn restore_journal_folds_requests_and_publications_and_drops_a_torn_last_line() {
        let d = tempfile::tempdir().unwrap();
        let mut j = create(d.path(), begin()).unwrap();
        j.append(&Record::Checked).unwrap();
        j.append(&Record::Requesting {
            key: "nar/a".into(),
        })
        .unwrap();
        j.append(&Record::Requested {
            key: "nar/a".into(),
            outcome: "started".into(),
        })
        .unwrap();
        j.append(&Record::Requesting {
            key: "nar/b".into(),
        })
        .unwrap();
        j.append(&Record::Published {
            key: "nar/a".into(),
        })
        .unwrap();
        let p = j.path().to_path_buf();
        drop(j);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"0123 {\"t\":\"fin").unwrap();
        let (_, s) = open(&dir(d.path(), "1")).unwrap();
        assert!(s.checked && !s.finished);
        assert_eq!(s.requested["nar/a"], "started");
        assert!(s.requesting.contains("nar/b") && !s.requesting.contains("nar/a"));
        assert_eq!(s.published, vec!["nar/a".to_string()]);
        assert!(
            create(d.path(), begin()).is_err(),
            "never two journals of one id"
        );
        assert_eq!(all(d.path()).unwrap().len(), 1);
    }
}
