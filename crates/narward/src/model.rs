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
        matches!(self.storage_class(), "GLACIER" | "DEEP_ARCHIVE")
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
}

/// Why a stored narinfo cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unparseable {
    pub key: String,
    pub reason: String,
}

impl FetchedRecord {
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
