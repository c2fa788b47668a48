//! Plain data shared by every stage: one object of a cache listing and one stored narinfo.

use narward_formats::keys::{self, Category};
use narward_formats::narinfo::{NarInfo, NarInfoError};
use serde::{Deserialize, Serialize};

/// One object of a cache: what a listing (live or S3 Inventory) says about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    pub size: u64,
    /// The S3 ETag without quotes; for `file://` caches the content's MD5 for narinfos and
    /// debuginfo (as S3 gives), a stand-in derived from the mtime for other objects.
    pub etag: Option<String>,
    /// Unix seconds.
    pub last_modified: Option<i64>,
    /// `None` means STANDARD (S3 omits it in some listings).
    pub storage_class: Option<String>,
    /// `file://` only: the key this object's content is read through, when the key is a
    /// symlink inside the root (its target's key, itself possibly a link: follow the chain)
    /// or a file reached through a symlinked directory (its real key). Whatever keeps this
    /// object keeps the object it links to. `None` for plain files and every S3 object.
    pub link_target: Option<String>,
}

impl ObjectRecord {
    pub fn category(&self) -> Category {
        keys::classify(&self.key).category()
    }

    /// The storage class, with S3's implicit default made explicit.
    pub fn storage_class(&self) -> &str {
        self.storage_class.as_deref().unwrap_or("STANDARD")
    }

    /// Whether a plain GET can fetch this object (it is not in an archive tier).
    pub fn is_archived(&self) -> bool {
        is_archive_class(self.storage_class())
    }
}

/// Whether objects of this storage class cannot be read without a restore (GLACIER,
/// DEEP_ARCHIVE). GLACIER_IR and INTELLIGENT_TIERING are readable: a plain GET works.
pub use narward_formats::storage_class::is_archive_name as is_archive_class;

/// Whether the cache's bucket keeps versions, which decides what a delete frees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersioningState {
    /// Never enabled (and every `file://` cache): a delete frees the storage.
    Unversioned,
    /// A delete adds a delete marker; the data stays, billed, as a noncurrent version
    /// until a lifecycle rule (NoncurrentVersionExpiration) or a delete by version id
    /// removes it.
    Enabled,
    /// Was enabled: versions written then are kept as noncurrent versions on delete.
    Suspended,
    /// Not known (an index made before narward recorded it, or GetBucketVersioning was
    /// refused): treated like a versioned bucket, so no saving is claimed that a delete
    /// marker would not deliver.
    #[default]
    Unknown,
}

impl VersioningState {
    /// Whether a delete may leave the data behind as a noncurrent version.
    pub fn deletes_leave_versions(self) -> bool {
        self != VersioningState::Unversioned
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VersioningState::Unversioned => "unversioned",
            VersioningState::Enabled => "enabled",
            VersioningState::Suspended => "suspended",
            VersioningState::Unknown => "unknown",
        }
    }
}

/// What the index knows of the bucket's versioning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketVersioning {
    pub state: VersioningState,
    /// How the state was learned (`GetBucketVersioning`, `file://`), or why it is unknown.
    pub source: String,
    /// Noncurrent versions of the cache's keys, when the listing lists versions (an S3
    /// Inventory report of all versions; none exist in a bucket that was never
    /// versioned). `None`: not known (a live listing of a versioned bucket lists current
    /// objects only), so a bill of the listing is a lower bound.
    pub noncurrent: Option<NoncurrentVersions>,
}

/// Noncurrent versions, per storage class and kind of object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentVersions {
    /// Sorted by class, then kind.
    pub cells: Vec<VersionCell>,
    /// Delete markers (not billed as storage; counted).
    pub delete_markers: u64,
}

/// Noncurrent versions of one storage class and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCell {
    /// As S3 spells it (`STANDARD` when the listing gives none).
    pub storage_class: String,
    pub category: Category,
    pub count: u64,
    pub bytes: u64,
}

impl NoncurrentVersions {
    /// Count one noncurrent version of `key`.
    pub fn add(&mut self, key: &str, size: u64, storage_class: Option<&str>) {
        let class = storage_class.unwrap_or("STANDARD");
        self.add_cell(class, keys::classify(key).category(), 1, size);
    }

    /// Add the counts of `other` (another part of the same report, read separately).
    pub fn merge(&mut self, other: NoncurrentVersions) {
        for c in other.cells {
            self.add_cell(&c.storage_class, c.category, c.count, c.bytes);
        }
        self.delete_markers += other.delete_markers;
    }

    fn add_cell(&mut self, class: &str, category: Category, count: u64, bytes: u64) {
        let at = self
            .cells
            .binary_search_by(|c| (c.storage_class.as_str(), c.category).cmp(&(class, category)));
        let i = at.unwrap_or_else(|i| {
            self.cells.insert(
                i,
                VersionCell {
                    storage_class: class.to_string(),
                    category,
                    count: 0,
                    bytes: 0,
                },
            );
            i
        });
        self.cells[i].count += count;
        self.cells[i].bytes += bytes;
    }

    /// Versions and bytes in all.
    pub fn total(&self) -> (u64, u64) {
        self.cells
            .iter()
            .fold((0, 0), |(n, b), c| (n + c.count, b + c.bytes))
    }
}

/// A small object whose content the index keeps (a narinfo or a `debuginfo/` entry): the
/// exact bytes fetched, so that nothing is lost and the formats crate stays the single
/// interpretation of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedRecord {
    pub key: String,
    pub etag: Option<String>,
    pub size: u64,
    /// The raw text; empty with `fetch_error` set when the object could not be read.
    #[serde(with = "serde_bytes")]
    pub text: Vec<u8>,
    /// Why the object could not be fetched (it is then "present but unknown").
    pub fetch_error: Option<String>,
    /// Earlier texts of this narinfo, kept across index generations, that differ from
    /// `text` in more than `Sig:` lines (see [`same_but_signatures`]). Narinfos are
    /// immutable in practice: audit reports a change, and planning keeps what every
    /// version names.
    pub earlier: Vec<serde_bytes::ByteBuf>,
}

/// Whether two narinfo texts are equal once `Sig:` lines are ignored (adding a signature is
/// the one legitimate change to a narinfo).
pub fn same_but_signatures(a: &[u8], b: &[u8]) -> bool {
    let lines = |t: &[u8]| -> Vec<Vec<u8>> {
        t.split(|&c| c == b'\n')
            .filter(|l| !l.starts_with(b"Sig:") && !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    lines(a) == lines(b)
}

/// Why a stored narinfo cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unparseable {
    pub key: String,
    pub reason: String,
}

impl FetchedRecord {
    /// Whether the current text was fetched and an earlier, different text is known.
    pub fn changed(&self) -> bool {
        self.fetch_error.is_none() && !self.earlier.is_empty()
    }

    /// Carry the known texts of `prev` (the same key's record of the previous generation)
    /// into this freshly fetched record: every earlier text that differs from the current
    /// one in more than `Sig:` lines, oldest first.
    pub fn carry_earlier(&mut self, prev: FetchedRecord) {
        let mut known: Vec<serde_bytes::ByteBuf> = prev.earlier;
        if prev.fetch_error.is_none() && !known.iter().any(|k| same_but_signatures(k, &prev.text)) {
            known.push(serde_bytes::ByteBuf::from(prev.text));
        }
        if self.fetch_error.is_none() {
            known.retain(|k| !same_but_signatures(k, &self.text));
        }
        self.earlier = known;
    }

    /// Parse the stored text.
    ///
    /// # Errors
    /// An [`Unparseable`] naming the key and the reason (fetch failure, not UTF-8,
    /// or the parser's error with its line and field).
    pub fn parse(&self) -> Result<NarInfo<'_>, Unparseable> {
        if let Some(e) = &self.fetch_error {
            return Err(Unparseable {
                key: self.key.clone(),
                reason: format!("could not be fetched: {e}"),
            });
        }
        let text = std::str::from_utf8(&self.text).map_err(|e| Unparseable {
            key: self.key.clone(),
            reason: format!("not UTF-8: {e}"),
        })?;
        NarInfo::parse(text).map_err(|e: NarInfoError| Unparseable {
            key: self.key.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str, fetch_error: Option<&str>) -> FetchedRecord {
        FetchedRecord {
            key: "k".into(),
            etag: None,
            size: text.len() as u64,
            text: text.as_bytes().to_vec(),
            fetch_error: fetch_error.map(Into::into),
            earlier: Vec::new(),
        }
    }

    fn earlier(r: &FetchedRecord) -> Vec<&[u8]> {
        r.earlier.iter().map(|b| b.as_slice()).collect()
    }

    #[test]
    fn noncurrent_versions_are_summed_per_class_and_kind() {
        let nar = |c: &str| format!("nar/{}.nar.xz", c.repeat(52));
        let mut v = NoncurrentVersions::default();
        v.add(&nar("0"), 10, None);
        v.add(&nar("1"), 5, Some("STANDARD"));
        v.add(&nar("2"), 7, Some("DEEP_ARCHIVE"));
        v.add("00000000000000000000000000000000.narinfo", 1, None);
        assert_eq!(v.total(), (4, 23));
        assert_eq!(v.cells.len(), 3);
        let std_nar = v
            .cells
            .iter()
            .find(|c| c.storage_class == "STANDARD" && c.category == Category::Nar)
            .unwrap();
        assert_eq!((std_nar.count, std_nar.bytes), (2, 15));
        assert!(VersioningState::Unknown.deletes_leave_versions());
        assert!(VersioningState::Suspended.deletes_leave_versions());
        assert!(!VersioningState::Unversioned.deletes_leave_versions());
    }

    #[test]
    fn earlier_texts_are_carried_and_signatures_are_no_change() {
        let a = "References: x\n";
        let b = "References: y\n";
        // An added signature is no change.
        let mut r = rec(&format!("{a}Sig: k:s\n"), None);
        r.carry_earlier(rec(a, None));
        assert!(!r.changed());
        // A → B keeps A.
        let mut r = rec(b, None);
        r.carry_earlier(rec(a, None));
        assert!(r.changed());
        assert_eq!(earlier(&r), [a.as_bytes()]);
        // A fetch failure keeps every known text; the next fetch compares with them.
        let mut failed = rec("", Some("timeout"));
        failed.carry_earlier(r);
        assert!(!failed.changed());
        assert_eq!(earlier(&failed), [a.as_bytes(), b.as_bytes()]);
        // Back to A: B is what differs now.
        let mut back = rec(a, None);
        back.carry_earlier(failed);
        assert_eq!(earlier(&back), [b.as_bytes()]);
    }
}
