//! The mutating store interface that `apply`, `recover`, `restore` and `verify` use:
//! one trait with typed errors, implemented by the `file://` and `s3://` backends and by
//! wrappers (dry-run, fault injection, adaptive throttling).
//!
//! Objects live in three **areas** of one store:
//! - [`Area::Cache`]: the public keys Nix clients read (the cache itself);
//! - [`Area::Archive`]: where archived NARs (and a byte-for-byte copy of their narinfo)
//!   go. On S3 this is the cache's own bucket and prefix (archive in place: only the
//!   storage class changes), or another bucket and/or prefix; on `file://` a directory,
//!   possibly on another disk;
//! - [`Area::Quarantine`]: where deleted objects wait out the grace window. On S3 a
//!   prefix (in a versioned bucket too, where the deleted sources also remain as
//!   noncurrent versions); on `file://` a directory.
//!
//! Keys given to the trait are relative to their area (`nar/xyz.nar.xz`, `<hash>.narinfo`);
//! implementations add prefixes. Every error names the key and what was asked, and
//! carries a [`StoreErrorKind`] that callers match on: apply retries `Throttled` and
//! `Transient`, skips and reports `PreconditionFailed` (the object changed since the
//! plan), and stops on `Denied`.

use crate::model::ObjectRecord;
use std::fmt;
use std::future::Future;

pub use super::ObjectMeta;

/// Which part of the store a key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    Cache,
    Archive,
    Quarantine,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Cache => "cache",
            Area::Archive => "archive",
            Area::Quarantine => "quarantine",
        }
    }
}

/// A key in an area.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub area: Area,
    pub key: String,
}

impl Loc {
    pub fn new(area: Area, key: impl Into<String>) -> Loc {
        Loc {
            area,
            key: key.into(),
        }
    }
    pub fn cache(key: impl Into<String>) -> Loc {
        Loc::new(Area::Cache, key)
    }
    pub fn archive(key: impl Into<String>) -> Loc {
        Loc::new(Area::Archive, key)
    }
    pub fn quarantine(key: impl Into<String>) -> Loc {
        Loc::new(Area::Quarantine, key)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.area.as_str(), self.key)
    }
}

/// What kind of failure, for callers to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The object (or its source) does not exist.
    NotFound,
    /// A condition did not hold: `If-Match` ETag differs, `If-None-Match: *` found an
    /// object, a size check failed. The object changed; never retried.
    PreconditionFailed,
    /// `503 SlowDown` and the like: retry later, at a lower rate.
    Throttled,
    /// Access denied or bad credentials: retrying will not help.
    Denied,
    /// Timeouts, connection resets, `500`s: retry.
    Transient,
    /// The object is in an archive class and must be restored before it can be read or
    /// copied (`InvalidObjectState`).
    InvalidObjectState,
    /// Anything else.
    Other,
}

impl StoreErrorKind {
    /// Whether retrying the same request may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, StoreErrorKind::Throttled | StoreErrorKind::Transient)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::PreconditionFailed => "precondition failed",
            StoreErrorKind::Throttled => "throttled",
            StoreErrorKind::Denied => "denied",
            StoreErrorKind::Transient => "transient failure",
            StoreErrorKind::InvalidObjectState => "archived, restore first",
            StoreErrorKind::Other => "failed",
        }
    }
}

/// A failed store operation: which key, what kind, and a one-line cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {loc}: {}: {message}", kind.as_str())]
pub struct StoreError {
    pub kind: StoreErrorKind,
    /// The operation (`head`, `copy`, `delete`, …).
    pub op: &'static str,
    pub loc: Loc,
    /// The cause, one line (service code and message, I/O error, …).
    pub message: String,
}

impl StoreError {
    pub fn new(
        kind: StoreErrorKind,
        op: &'static str,
        loc: &Loc,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError {
            kind,
            op,
            loc: loc.clone(),
            message: message.into(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Options of a server-side copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Storage class of the copy (`None`: STANDARD on S3; ignored on `file://`).
    pub storage_class: Option<String>,
    /// Copy only if the source's ETag is this one (`x-amz-copy-source-if-match`); the
    /// `file://` backend compares its own ETag. A mismatch is `PreconditionFailed`.
    pub if_match: Option<String>,
    /// Copy only if the destination does not exist yet; when it does, the copy succeeds
    /// only if the destination already holds the same bytes (same size and ETag as the
    /// source), so that a copy repeated after a crash is not an error.
    pub if_absent: bool,
}

/// What a put-if-absent did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created {
        etag: Option<String>,
    },
    /// An object was there already; its metadata.
    Exists(ObjectMeta),
}

/// Retrieval tier of a restore from an archive class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Bulk,
    Standard,
    Expedited,
}

/// What a RestoreObject request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// `202 Accepted`: a restore was started (it is billed).
    Started,
    /// `200 OK`: a restored copy is already readable.
    AlreadyRestored,
    /// `409 RestoreAlreadyInProgress`: a restore is under way (not billed again).
    InProgress,
    /// The object is readable as it is (not in an archive class; `file://`).
    NotArchived,
}

/// Bucket versioning, which decides how a delete can be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled (or `file://`): a delete is final; quarantine by copying first.
    Unversioned,
    /// A delete adds a delete marker; the data stays as a noncurrent version until a
    /// lifecycle rule or a delete by version id removes it.
    Enabled,
    /// Was enabled: existing versions are kept, new writes have the null version.
    Suspended,
}

/// Result of one key in a batch delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDeleteResult {
    pub key: String,
    pub version_id: Option<String>,
    pub result: StoreResult<()>,
}

/// Everything apply, restore and verify need from a store. Implementations must make each
/// operation safe to repeat after a crash (copies are conditional, deletes of absent keys
/// succeed), because a resumed apply redoes the steps whose completion was not journaled.
pub trait Store: Send + Sync {
    /// `s3://bucket/prefix` or `file:///dir`, for messages and for binding journals.
    fn describe(&self, area: Area) -> String;

    /// Whether archived objects stay at their key and only change storage class.
    fn archives_in_place(&self) -> bool;

    /// Whether this store retries `Throttled` and `Transient` answers itself (with backoff,
    /// per key of a batch delete too): then callers send each request once
    /// ([`crate::apply::exec::retry`]), so retries never stack.
    fn retries_itself(&self) -> bool {
        false
    }

    /// Metadata of one object; `Ok(None)` when it does not exist.
    fn head(&self, loc: &Loc) -> impl Future<Output = StoreResult<Option<ObjectMeta>>> + Send;

    /// A whole object; `Ok(None)` when it does not exist. An object in an archive class
    /// that is not restored is `InvalidObjectState`.
    fn get(&self, loc: &Loc) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;

    /// Every object of an area under `prefix` (relative to the area), sorted by key.
    fn list(
        &self,
        area: Area,
        prefix: &str,
    ) -> impl Future<Output = StoreResult<Vec<ObjectRecord>>> + Send;

    /// Create an object only if the key is free (`If-None-Match: *`).
    fn put_if_absent(
        &self,
        loc: &Loc,
        bytes: &[u8],
    ) -> impl Future<Output = StoreResult<PutOutcome>> + Send;

    /// Server-side copy, multipart above 5 GiB on S3; gives the copy's metadata.
    fn copy(
        &self,
        from: &Loc,
        to: &Loc,
        opts: &CopyOptions,
    ) -> impl Future<Output = StoreResult<ObjectMeta>> + Send;

    /// Delete one object (one version, when `version_id` is given). Deleting an absent
    /// key succeeds.
    fn delete(
        &self,
        loc: &Loc,
        version_id: Option<&str>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Delete up to 1,000 keys of one area in one request, with a result per key.
    fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> impl Future<Output = StoreResult<Vec<BatchDeleteResult>>> + Send;

    /// Ask for a temporary readable copy of an archived object for `days` days.
    fn restore(
        &self,
        loc: &Loc,
        days: u32,
        tier: Tier,
    ) -> impl Future<Output = StoreResult<RestoreOutcome>> + Send;

    /// The versioning state of the area's bucket.
    fn versioning(&self, area: Area) -> impl Future<Output = StoreResult<Versioning>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_operation_the_area_and_the_key() {
        let e = StoreError::new(
            StoreErrorKind::PreconditionFailed,
            "copy",
            &Loc::cache("nar/x.nar.xz"),
            "ETag is \"b\", plan says \"a\"",
        );
        assert_eq!(
            e.to_string(),
            "copy cache:nar/x.nar.xz: precondition failed: ETag is \"b\", plan says \"a\""
        );
        assert!(!e.kind.is_retryable());
        assert!(StoreErrorKind::Throttled.is_retryable());
        assert!(StoreErrorKind::Transient.is_retryable());
    }
}
