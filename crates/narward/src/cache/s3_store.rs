//! [`S3Store`]: the [`Store`] trait on S3, through the same client as the read path
//! (`cache/s3.rs`: endpoint override, timeouts, the SDK's retries, one-line errors).
//!
//! **Areas.** The cache area is the cache URL's bucket and prefix. The quarantine area is
//! a prefix (default [`DEFAULT_QUARANTINE_PREFIX`]) inside the cache's bucket, under the
//! cache prefix. The archive area is the plan's `archive_bucket` (default: the cache's
//! bucket) with the plan's `archive_prefix`; in the cache's own bucket that prefix sits
//! under the cache prefix, in another bucket it is used as given. NARs are archived *in
//! place* ([`Store::archives_in_place`]: only their storage class changes, at their cache
//! key) when the archive bucket is the cache's bucket; the archive prefix then holds only
//! the byte-for-byte narinfo copies. With a separate archive bucket NARs are copied there.
//!
//! Areas never overlap: listing the cache area leaves out the archive and quarantine
//! prefixes nested in it.
//!
//! **Errors** are mapped to [`StoreErrorKind`] from the service's code and HTTP status
//! ([`kind_of`]); the message is the same one-line cause the read path prints.
//!
//! **Conditions.** `copy` with `if_match` sends `x-amz-copy-source-if-match` (S3 enforces
//! it atomically) *and* first compares the source's ETag from a HEAD, which it needs
//! anyway for the size; the local test server (moto 5) ignores the header, so tests there
//! exercise the HEAD comparison. `copy` with `if_absent` HEADs the destination first and
//! accepts an existing one only if it holds the source's bytes (same size and ETag, or for
//! a multipart copy the source ETag recorded in its metadata). `put_if_absent` sends
//! `If-None-Match: *`, which S3 and moto enforce. A copy of an object onto itself (a
//! change of storage class in place) ignores `if_absent` and succeeds at once when the
//! object is already in the target class (whatever its ETag: a copy has an ETag of its own),
//! so that it can be repeated after a crash.
//!
//! Objects larger than the multipart threshold (5 GiB, the limit of a single CopyObject),
//! and objects uploaded in parts (a `…-N` ETag, which no single copy reproduces), are
//! copied with CreateMultipartUpload + UploadPartCopy + CompleteMultipartUpload, carrying
//! the source's headers and recording its ETag in the copy's metadata; the upload is
//! aborted on any failure.

use super::s3::{etag_clean, head_meta, sdk_cause};
use super::store::{
    Area, BatchDeleteResult, CopyOptions, Loc, PutOutcome, RestoreOutcome, Store, StoreError,
    StoreErrorKind, StoreResult, Tier, Versioning,
};
use super::{ObjectMeta, S3Options};
use crate::model::ObjectRecord;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, EncodingType, GlacierJobParameters,
    MetadataDirective, ObjectIdentifier, RestoreRequest, StorageClass,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

/// The largest object one CopyObject request may copy (5 GiB).
pub const MULTIPART_COPY_THRESHOLD: u64 = 5 * 1024 * 1024 * 1024;
/// Part size of a multipart copy (S3: at least 5 MiB but the last, at most 10,000 parts).
pub const DEFAULT_PART_SIZE: u64 = 512 * 1024 * 1024;
/// The most parts one multipart upload may have.
const MAX_PARTS: u64 = 10_000;
/// Where deleted objects wait out the grace window, under the cache prefix.
pub const DEFAULT_QUARANTINE_PREFIX: &str = "narward-quarantine/";
/// Metadata key a multipart copy records its source's ETag under.
const SOURCE_ETAG_META: &str = "narward-source-etag";

/// One area: a bucket and a key prefix (`""` or ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub bucket: String,
    pub prefix: String,
}

/// Where the three areas are, and how copies are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Layout {
    pub cache: Place,
    pub archive: Place,
    pub quarantine: Place,
    /// Copies of objects larger than this are multipart.
    pub multipart_threshold: u64,
    pub part_size: u64,
}

fn dir_prefix(p: &str) -> String {
    let p = p.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

impl S3Layout {
    /// The layout of a cache from the plan header's archive settings (`archive_bucket`,
    /// `archive_prefix`) and a quarantine prefix; see the module documentation.
    pub fn new(
        cache: &S3Options,
        archive_bucket: Option<&str>,
        archive_prefix: &str,
        quarantine_prefix: &str,
    ) -> S3Layout {
        let cache_prefix = dir_prefix(&cache.prefix);
        let archive = match archive_bucket {
            Some(b) if b != cache.bucket => Place {
                bucket: b.to_string(),
                prefix: dir_prefix(archive_prefix),
            },
            _ => Place {
                bucket: cache.bucket.clone(),
                prefix: format!("{cache_prefix}{}", dir_prefix(archive_prefix)),
            },
        };
        S3Layout {
            quarantine: Place {
                bucket: cache.bucket.clone(),
                prefix: format!("{cache_prefix}{}", dir_prefix(quarantine_prefix)),
            },
            cache: Place {
                bucket: cache.bucket.clone(),
                prefix: cache_prefix,
            },
            archive,
            multipart_threshold: MULTIPART_COPY_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// The layout for applying a plan: its header's `archive_bucket` and `archive_prefix`,
    /// and the default quarantine prefix.
    pub fn for_plan(cache: &S3Options, header: &crate::plan::PlanHeader) -> S3Layout {
        S3Layout::new(
            cache,
            header.archive_bucket.as_deref(),
            &header.archive_prefix,
            DEFAULT_QUARANTINE_PREFIX,
        )
    }

    fn place(&self, area: Area) -> &Place {
        match area {
            Area::Cache => &self.cache,
            Area::Archive => &self.archive,
            Area::Quarantine => &self.quarantine,
        }
    }
}

/// One version of an object (or a delete marker) in a versioned bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// Relative to the area.
    pub key: String,
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub is_delete_marker: bool,
    pub size: u64,
    pub etag: Option<String>,
    pub storage_class: Option<String>,
}

/// The [`Store`] on S3.
pub struct S3Store {
    client: Client,
    layout: S3Layout,
    /// ` at <endpoint>` when an endpoint is given, for messages.
    at: String,
}

/// Which kind of failure an SDK error is, from the service's code first, then the HTTP
/// status; no answer at all (timeout, reset, unreachable) is `Transient`.
pub fn kind_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> StoreErrorKind {
    use StoreErrorKind::*;
    let status = match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return Transient;
        }
        SdkError::ServiceError(s) => s.raw().status().as_u16(),
        _ => return Other,
    };
    match e.code() {
        Some("NoSuchKey" | "NotFound" | "NoSuchVersion" | "NoSuchUpload") => NotFound,
        Some("PreconditionFailed") => PreconditionFailed,
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequests"
            | "ServiceUnavailable",
        ) => Throttled,
        Some("InvalidObjectState" | "ObjectNotInActiveTierError") => InvalidObjectState,
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AllAccessDisabled"
            | "AccountProblem",
        ) => Denied,
        Some("InternalError" | "RequestTimeout" | "ConditionalRequestConflict") => Transient,
        Some("NoSuchBucket") => Other,
        _ => match status {
            404 => NotFound,
            412 => PreconditionFailed,
            429 | 503 => Throttled,
            401 | 403 => Denied,
            500..=599 => Transient,
            _ => Other,
        },
    }
}

/// The body of a `2xx` answer the SDK could not parse (no error code), which some
/// S3-compatible servers send: moto 5 names the XML root `CompleteMultipartUploadResponse`
/// and `GetBucketVersioningResponse` instead of S3's `CompleteMultipartUploadResult` and
/// `VersioningConfiguration`. Callers accept such an answer only where they verify the
/// result independently (a HEAD after a multipart copy) or read the one field they need.
fn unparsed_success_body<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<String> {
    let SdkError::ServiceError(s) = e else {
        return None;
    };
    let raw = s.raw();
    if !raw.status().is_success() || e.code().is_some() {
        return None;
    }
    let body = String::from_utf8_lossy(raw.body().bytes()?).into_owned();
    (!body.contains("<Error>")).then_some(body)
}

/// Whether an ETag is that of an object uploaded in parts (`<hex>-<parts>`): no single
/// copy has it.
fn is_multipart_etag(etag: Option<&str>) -> bool {
    etag.is_some_and(|e| e.trim_matches('"').contains('-'))
}

/// A key for `x-amz-copy-source`: every byte but unreserved characters and `/` encoded.
fn encode_copy_key(key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(key, SET).to_string()
}

/// Records the HTTP status of the last response (RestoreObject's 200 vs 202).
#[derive(Debug, Default, Clone)]
struct StatusProbe(Arc<AtomicU16>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for StatusProbe {
    fn name(&self) -> &'static str {
        "narward-status-probe"
    }
    fn read_before_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0
            .store(context.response().status().as_u16(), Ordering::Relaxed);
        Ok(())
    }
}

/// `self.client.<op>()` on the bucket and full key of `loc`: the start of every request
/// on one object.
macro_rules! object_request {
    ($store:expr, $op:ident, $loc:expr) => {
        $store
            .client
            .$op()
            .bucket($store.bucket($loc.area))
            .key($store.full($loc))
    };
}

impl S3Store {
    /// Open the store of a cache with the given layout. `max_attempts` is the SDK's own
    /// retry budget per request (1 when a [`super::store_wrap::Throttled`] wrapper retries).
    ///
    /// # Errors
    /// Configuration problems (named).
    pub async fn open(
        o: &S3Options,
        layout: S3Layout,
        max_attempts: u32,
    ) -> anyhow::Result<S3Store> {
        Ok(S3Store {
            client: super::s3::client_for(o, max_attempts).await?,
            layout,
            at: o
                .endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default(),
        })
    }

    /// Check that the bucket of every area exists and answers (HeadBucket). Call it before
    /// acting: a HEAD of an object in a missing bucket is a plain 404, indistinguishable
    /// from an absent object.
    ///
    /// # Errors
    /// A missing or inaccessible bucket, named with its area.
    pub async fn check_buckets(&self) -> StoreResult<()> {
        for area in [Area::Cache, Area::Archive, Area::Quarantine] {
            let loc = Loc::new(area, "");
            if let Err(e) = self
                .client
                .head_bucket()
                .bucket(self.bucket(area))
                .send()
                .await
            {
                let mut err = self.err("check bucket", &loc, e);
                if err.kind == StoreErrorKind::NotFound {
                    err.kind = StoreErrorKind::Other;
                    err.message = format!("{}: the bucket does not exist", err.message);
                }
                return Err(err);
            }
        }
        Ok(())
    }

    pub fn layout(&self) -> &S3Layout {
        &self.layout
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn bucket(&self, area: Area) -> &str {
        &self.layout.place(area).bucket
    }

    fn full(&self, loc: &Loc) -> String {
        format!("{}{}", self.layout.place(loc.area).prefix, loc.key)
    }

    fn err<E>(&self, op: &'static str, loc: &Loc, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let message = format!(
            "s3://{}/{}{}: {}",
            self.bucket(loc.area),
            self.full(loc),
            self.at,
            sdk_cause(&e)
        );
        StoreError::new(kind_of(&e), op, loc, message)
    }

    /// The answer of a request on one object, an absent object being `Ok(None)`.
    fn found<T, E>(
        &self,
        op: &'static str,
        loc: &Loc,
        r: Result<T, SdkError<E, HttpResponse>>,
    ) -> StoreResult<Option<T>>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match r {
            Ok(o) => Ok(Some(o)),
            Err(e) if kind_of(&e) == StoreErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(op, loc, e)),
        }
    }

    fn copy_source(&self, loc: &Loc, version_id: Option<&str>) -> String {
        let mut s = format!(
            "{}/{}",
            self.bucket(loc.area),
            encode_copy_key(&self.full(loc))
        );
        if let Some(v) = version_id {
            s.push_str("?versionId=");
            s.push_str(&encode_copy_key(v));
        }
        s
    }

    /// HEAD of one version (or the current one), with the user metadata.
    async fn head_raw(
        &self,
        loc: &Loc,
        version_id: Option<&str>,
    ) -> StoreResult<Option<(ObjectMeta, Option<String>)>> {
        let r = object_request!(self, head_object, loc)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await;
        let Some(o) = self.found("head", loc, r)? else {
            return Ok(None);
        };
        let src = o
            .metadata()
            .and_then(|m| m.get(SOURCE_ETAG_META))
            .map(|s| s.trim_matches('"').to_string());
        Ok(Some((head_meta(&o), src)))
    }

    /// Metadata of one version of an object (a noncurrent one in a versioned bucket).
    ///
    /// # Errors
    /// S3 errors, typed.
    pub async fn head_version(
        &self,
        loc: &Loc,
        version_id: &str,
    ) -> StoreResult<Option<ObjectMeta>> {
        Ok(self.head_raw(loc, Some(version_id)).await?.map(|(m, _)| m))
    }

    /// Every version and delete marker under `prefix` of an area, sorted by key (newest
    /// version first within a key, as S3 lists them).
    ///
    /// # Errors
    /// S3 errors, typed.
    pub async fn list_versions(&self, area: Area, prefix: &str) -> StoreResult<Vec<VersionRecord>> {
        let base = self.layout.place(area).prefix.clone();
        let loc = Loc::new(area, prefix);
        let mut out = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(self.bucket(area))
                .prefix(format!("{base}{prefix}"))
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.err("list versions", &loc, e))?;
            for v in page.versions() {
                let Some(k) = v.key().and_then(|k| k.strip_prefix(&base)) else {
                    continue;
                };
                out.push(VersionRecord {
                    key: k.to_string(),
                    version_id: v.version_id().map(str::to_string),
                    is_latest: v.is_latest().unwrap_or(false),
                    is_delete_marker: false,
                    size: v.size().unwrap_or(0).max(0) as u64,
                    etag: etag_clean(v.e_tag()),
                    storage_class: v.storage_class().map(|s| s.as_str().to_string()),
                });
            }
            for m in page.delete_markers() {
                let Some(k) = m.key().and_then(|k| k.strip_prefix(&base)) else {
                    continue;
                };
                out.push(VersionRecord {
                    key: k.to_string(),
                    version_id: m.version_id().map(str::to_string),
                    is_latest: m.is_latest().unwrap_or(false),
                    is_delete_marker: true,
                    size: 0,
                    etag: None,
                    storage_class: None,
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key).then(b.is_latest.cmp(&a.is_latest)));
        Ok(out)
    }

    async fn list_impl(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        let base = self.layout.place(area).prefix.clone();
        let loc = Loc::new(area, prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(self.bucket(area))
            .prefix(format!("{base}{prefix}"))
            .encoding_type(EncodingType::Url)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err("list", &loc, e))?;
            let encoded = page.encoding_type() == Some(&EncodingType::Url);
            for o in page.contents() {
                let Some(raw) = o.key() else { continue };
                let full = if encoded {
                    narward_formats::inventory::url_decode_key(raw).map_err(|e| {
                        StoreError::new(
                            StoreErrorKind::Other,
                            "list",
                            &loc,
                            format!("undecodable key {raw:?}: {e}"),
                        )
                    })?
                } else {
                    raw.to_string()
                };
                let Some(key) = full.strip_prefix(&base) else {
                    continue;
                };
                if self.in_other_area(area, &full) {
                    continue;
                }
                out.push(ObjectRecord {
                    link_target: None,
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: etag_clean(o.e_tag()),
                    last_modified: o.last_modified().map(|t| t.secs()),
                    storage_class: o.storage_class().map(|s| s.as_str().to_string()),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Whether a full key listed for `area` belongs to another area nested inside it (the
    /// archive and quarantine prefixes lie under the cache prefix in the cache's bucket):
    /// areas never overlap in listings.
    fn in_other_area(&self, area: Area, full: &str) -> bool {
        let mine = self.layout.place(area);
        [Area::Cache, Area::Archive, Area::Quarantine]
            .into_iter()
            .filter(|a| *a != area)
            .map(|a| self.layout.place(a))
            .any(|p| {
                p.bucket == mine.bucket
                    && p.prefix.len() > mine.prefix.len()
                    && p.prefix.starts_with(&mine.prefix)
                    && full.starts_with(&p.prefix)
            })
    }

    /// When the destination exists already: fine if it holds the source's bytes.
    async fn existing_copy(&self, src: &ObjectMeta, to: &Loc) -> StoreResult<Option<ObjectMeta>> {
        let Some((dst, recorded)) = self.head_raw(to, None).await? else {
            return Ok(None);
        };
        let same = dst.size == src.size
            && (dst.etag == src.etag || (recorded.is_some() && recorded == src.etag));
        if same {
            Ok(Some(dst))
        } else {
            Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                "copy",
                to,
                format!(
                    "the destination exists with other content (size {}, ETag {:?}; source: size {}, ETag {:?})",
                    dst.size, dst.etag, src.size, src.etag
                ),
            ))
        }
    }

    async fn copy_impl(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        let Some((src, _)) = self.head_raw(from, None).await? else {
            return Err(StoreError::new(
                StoreErrorKind::NotFound,
                "copy",
                from,
                "the source does not exist",
            ));
        };
        let class = |c: Option<&str>| c.unwrap_or("STANDARD").to_string();
        // A change of storage class in place: done already when the object is in the
        // target class (a repeat after a crash; the source may now be unreadable). Checked
        // before the ETag: S3 gives the copy an ETag of its own (an object uploaded in
        // parts loses its `…-N` ETag), so a repeat cannot match the plan's.
        if from == to && class(src.storage_class.as_deref()) == class(opts.storage_class.as_deref())
        {
            return Ok(src);
        }
        if let Some(want) = &opts.if_match
            && src.etag.as_deref() != Some(want.trim_matches('"'))
        {
            return Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                "copy",
                from,
                format!("ETag is {:?}, expected {want:?}", src.etag),
            ));
        }
        if from != to
            && opts.if_absent
            && let Some(dst) = self.existing_copy(&src, to).await?
        {
            return Ok(dst);
        }
        // A source uploaded in parts has a `…-N` ETag no single copy reproduces; copied in
        // parts, the copy records it (metadata), so a repeat recognises its own copy.
        let records_source = from != to && src.size > 0 && is_multipart_etag(src.etag.as_deref());
        let r = if src.size > self.layout.multipart_threshold || records_source {
            self.copy_multipart(from, to, &src, opts).await
        } else {
            self.copy_single(from, to, opts).await
        };
        match r {
            // Another writer created the destination since the HEAD: fine if it holds
            // the same bytes.
            Err(e)
                if e.kind == StoreErrorKind::PreconditionFailed && opts.if_absent && from != to =>
            {
                if let Some(dst) = self.existing_copy(&src, to).await? {
                    return Ok(dst);
                }
                return Err(e);
            }
            r => r?,
        }
        self.head_raw(to, None)
            .await?
            .map(|(m, _)| m)
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Transient,
                    "copy",
                    to,
                    "the copy is not visible after it succeeded",
                )
            })
    }

    async fn copy_single(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<()> {
        let mut req = object_request!(self, copy_object, to)
            .copy_source(self.copy_source(from, None))
            .metadata_directive(MetadataDirective::Copy)
            .set_copy_source_if_match(opts.if_match.clone())
            .set_storage_class(opts.storage_class.as_deref().map(StorageClass::from));
        if opts.if_absent && from != to {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.copy_err(from, to, e)),
        }
    }

    /// A failed copy names the source when the source is what failed.
    fn copy_err<E>(&self, from: &Loc, to: &Loc, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let k = kind_of(&e);
        let loc = match k {
            StoreErrorKind::NotFound | StoreErrorKind::InvalidObjectState => from,
            _ => to,
        };
        let mut err = self.err("copy", loc, e);
        err.message = format!("{} → {}: {}", from, to, err.message);
        err
    }

    async fn copy_multipart(
        &self,
        from: &Loc,
        to: &Loc,
        src: &ObjectMeta,
        opts: &CopyOptions,
    ) -> StoreResult<()> {
        // CreateMultipartUpload copies nothing of the source: carry its headers over.
        let h = object_request!(self, head_object, from)
            .send()
            .await
            .map_err(|e| self.copy_err(from, to, e))?;
        let mut create = object_request!(self, create_multipart_upload, to)
            .set_storage_class(opts.storage_class.as_deref().map(StorageClass::from))
            .set_content_type(h.content_type().map(str::to_string))
            .set_content_encoding(h.content_encoding().map(str::to_string))
            .set_cache_control(h.cache_control().map(str::to_string))
            .set_content_disposition(h.content_disposition().map(str::to_string))
            .set_metadata(h.metadata().cloned());
        if let Some(e) = &src.etag {
            create = create.metadata(SOURCE_ETAG_META, e);
        }
        let up = create
            .send()
            .await
            .map_err(|e| self.copy_err(from, to, e))?;
        let Some(upload_id) = up.upload_id().map(str::to_string) else {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "copy",
                to,
                "CreateMultipartUpload gave no upload id",
            ));
        };
        let r = self.copy_parts(from, to, src, opts, &upload_id).await;
        if r.is_err() {
            // Best effort: an upload left behind costs storage until a lifecycle rule
            // (AbortIncompleteMultipartUpload) removes it; the copy error is what matters.
            let _ = object_request!(self, abort_multipart_upload, to)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        r
    }

    async fn copy_parts(
        &self,
        from: &Loc,
        to: &Loc,
        src: &ObjectMeta,
        opts: &CopyOptions,
        upload_id: &str,
    ) -> StoreResult<()> {
        let mut parts = Vec::new();
        for (i, (start, end)) in part_ranges(src.size, self.layout.part_size)
            .into_iter()
            .enumerate()
        {
            let n = i32::try_from(i + 1).unwrap_or(i32::MAX);
            let r = object_request!(self, upload_part_copy, to)
                .upload_id(upload_id)
                .part_number(n)
                .copy_source(self.copy_source(from, None))
                .copy_source_range(format!("bytes={start}-{end}"))
                .set_copy_source_if_match(opts.if_match.clone())
                .send()
                .await
                .map_err(|e| self.copy_err(from, to, e))?;
            let etag = r.copy_part_result().and_then(|c| c.e_tag());
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(etag.map(str::to_string))
                    .part_number(n)
                    .build(),
            );
        }
        self.complete_upload(from, to, src, upload_id, parts).await
    }

    /// CompleteMultipartUpload, then a HEAD: the destination must have the source's size.
    async fn complete_upload(
        &self,
        from: &Loc,
        to: &Loc,
        src: &ObjectMeta,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> StoreResult<()> {
        let done = object_request!(self, complete_multipart_upload, to)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match done {
            Ok(_) => {}
            // Verified below by a HEAD of the destination.
            Err(e) if unparsed_success_body(&e).is_some() => {}
            Err(e) => return Err(self.copy_err(from, to, e)),
        }
        match self.head_raw(to, None).await? {
            Some((m, _)) if m.size == src.size => Ok(()),
            other => Err(StoreError::new(
                StoreErrorKind::Transient,
                "copy",
                to,
                format!(
                    "multipart copy finished but the destination has size {:?}, the source {}",
                    other.map(|(m, _)| m.size),
                    src.size
                ),
            )),
        }
    }

    async fn delete_batch_impl(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        let Some((k0, _)) = keys.first() else {
            return Ok(Vec::new());
        };
        let first = Loc::new(area, k0.clone());
        if keys.len() > 1000 {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "delete batch",
                &first,
                format!("{} keys in one batch; at most 1,000", keys.len()),
            ));
        }
        let base = self.layout.place(area).prefix.as_str();
        let del = delete_request(base, keys)
            .map_err(|e| StoreError::new(StoreErrorKind::Other, "delete batch", &first, e))?;
        let out = self
            .client
            .delete_objects()
            .bucket(self.bucket(area))
            .delete(del)
            .send()
            .await
            .map_err(|e| self.err("delete batch", &first, e))?;
        Ok(batch_results(area, base, keys, &out))
    }

    async fn restore_impl(&self, loc: &Loc, days: u32, tier: Tier) -> StoreResult<RestoreOutcome> {
        let t = match tier {
            Tier::Bulk => aws_sdk_s3::types::Tier::Bulk,
            Tier::Standard => aws_sdk_s3::types::Tier::Standard,
            Tier::Expedited => aws_sdk_s3::types::Tier::Expedited,
        };
        let params = GlacierJobParameters::builder()
            .tier(t)
            .build()
            .map_err(|e| StoreError::new(StoreErrorKind::Other, "restore", loc, e.to_string()))?;
        let req = RestoreRequest::builder()
            .days(i32::try_from(days).unwrap_or(i32::MAX))
            .glacier_job_parameters(params)
            .build();
        let probe = StatusProbe::default();
        let r = object_request!(self, restore_object, loc)
            .restore_request(req)
            .customize()
            .interceptor(probe.clone())
            .send()
            .await;
        match r {
            Ok(_) => Ok(match probe.0.load(Ordering::Relaxed) {
                200 => RestoreOutcome::AlreadyRestored,
                _ => RestoreOutcome::Started,
            }),
            Err(e) if e.code() == Some("RestoreAlreadyInProgress") => {
                Ok(RestoreOutcome::InProgress)
            }
            // Restore of an object in a readable class: S3 answers InvalidObjectState.
            Err(e) if e.code() == Some("InvalidObjectState") => Ok(RestoreOutcome::NotArchived),
            Err(e) => Err(self.err("restore", loc, e)),
        }
    }
}

/// Inclusive byte ranges of the parts of a multipart copy of `size` bytes: `part_size`
/// each (the last shorter), but larger when that would make more than 10,000 parts.
fn part_ranges(size: u64, part_size: u64) -> Vec<(u64, u64)> {
    let part = part_size.max(size.div_ceil(MAX_PARTS)).max(1);
    let mut out = Vec::new();
    let mut start = 0u64;
    while start < size {
        let end = start.saturating_add(part).min(size) - 1;
        out.push((start, end));
        start = end + 1;
    }
    out
}

/// The DeleteObjects request body for keys of an area whose prefix is `base`.
fn delete_request(base: &str, keys: &[(String, Option<String>)]) -> Result<Delete, String> {
    let objects = keys
        .iter()
        .map(|(k, v)| {
            ObjectIdentifier::builder()
                .key(format!("{base}{k}"))
                .set_version_id(v.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Delete::builder()
        .set_objects(Some(objects))
        .quiet(false)
        .build()
        .map_err(|e| e.to_string())
}

/// A result per requested key, in request order, from a DeleteObjects answer: its
/// `<Error>` entry, its `<Deleted>` entry (for a key without version id, any entry of that
/// key: S3 names the delete marker's version there), or a retryable failure when the answer
/// does not mention it.
fn batch_results(
    area: Area,
    base: &str,
    keys: &[(String, Option<String>)],
    out: &aws_sdk_s3::operation::delete_objects::DeleteObjectsOutput,
) -> Vec<BatchDeleteResult> {
    use std::collections::{HashMap, HashSet};
    let strip = |k: Option<&str>| {
        k.and_then(|k| k.strip_prefix(base))
            .unwrap_or_default()
            .to_string()
    };
    let errors: HashMap<(String, Option<String>), &aws_sdk_s3::types::Error> = out
        .errors()
        .iter()
        .map(|e| ((strip(e.key()), e.version_id().map(str::to_string)), e))
        .collect();
    let deleted: HashSet<(String, Option<String>)> = out
        .deleted()
        .iter()
        .map(|d| (strip(d.key()), d.version_id().map(str::to_string)))
        .collect();
    let deleted_keys: HashSet<&str> = deleted.iter().map(|(k, _)| k.as_str()).collect();
    keys.iter()
        .map(|(k, v)| {
            let loc = Loc::new(area, k.clone());
            let id = (k.clone(), v.clone());
            let result = if let Some(e) = errors.get(&id) {
                Err(batch_key_error(&loc, e))
            } else if deleted.contains(&id) || (v.is_none() && deleted_keys.contains(k.as_str())) {
                Ok(())
            } else {
                Err(StoreError::new(
                    StoreErrorKind::Transient,
                    "delete batch",
                    &loc,
                    "DeleteObjects gave no result for this key",
                ))
            };
            BatchDeleteResult {
                key: k.clone(),
                version_id: v.clone(),
                result,
            }
        })
        .collect()
}

/// `<Status>…</Status>` of a GetBucketVersioning answer read as text.
fn versioning_status_in(body: &str) -> Option<String> {
    let (_, rest) = body.split_once("<Status>")?;
    let (v, _) = rest.split_once("</Status>")?;
    Some(v.trim().to_string())
}

fn batch_key_error(loc: &Loc, e: &aws_sdk_s3::types::Error) -> StoreError {
    use StoreErrorKind::*;
    let code = e.code().unwrap_or("");
    let kind = match code {
        "NoSuchKey" | "NoSuchVersion" => NotFound,
        "AccessDenied" => Denied,
        "SlowDown" => Throttled,
        "InternalError" | "ServiceUnavailable" => Transient,
        "InvalidObjectState" => InvalidObjectState,
        _ => Other,
    };
    StoreError::new(
        kind,
        "delete batch",
        loc,
        format!("{code}: {}", e.message().unwrap_or("")),
    )
}

impl Store for S3Store {
    fn describe(&self, area: Area) -> String {
        let p = self.layout.place(area);
        format!("s3://{}/{}{}", p.bucket, p.prefix, self.at)
    }

    fn archives_in_place(&self) -> bool {
        self.layout.archive.bucket == self.layout.cache.bucket
    }

    async fn head(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        Ok(self.head_raw(loc, None).await?.map(|(m, _)| m))
    }

    async fn get(&self, loc: &Loc) -> StoreResult<Option<Vec<u8>>> {
        let r = object_request!(self, get_object, loc).send().await;
        let Some(o) = self.found("get", loc, r)? else {
            return Ok(None);
        };
        let body =
            o.body.collect().await.map_err(|e| {
                StoreError::new(StoreErrorKind::Transient, "get", loc, e.to_string())
            })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn list(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        self.list_impl(area, prefix).await
    }

    async fn put_if_absent(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        let r = object_request!(self, put_object, loc)
            .if_none_match("*")
            .body(bytes.to_vec().into())
            .send()
            .await;
        match r {
            Ok(o) => Ok(PutOutcome::Created {
                etag: etag_clean(o.e_tag()),
            }),
            Err(e) if kind_of(&e) == StoreErrorKind::PreconditionFailed => {
                match self.head(loc).await? {
                    Some(m) => Ok(PutOutcome::Exists(m)),
                    None => Err(self.err("put", loc, e)),
                }
            }
            Err(e) => Err(self.err("put", loc, e)),
        }
    }

    async fn copy(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        self.copy_impl(from, to, opts).await
    }

    async fn delete(&self, loc: &Loc, version_id: Option<&str>) -> StoreResult<()> {
        let r = object_request!(self, delete_object, loc)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await;
        // Deleting an absent object is done.
        self.found("delete", loc, r).map(|_| ())
    }

    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        self.delete_batch_impl(area, keys).await
    }

    async fn restore(&self, loc: &Loc, days: u32, tier: Tier) -> StoreResult<RestoreOutcome> {
        self.restore_impl(loc, days, tier).await
    }

    async fn versioning(&self, area: Area) -> StoreResult<Versioning> {
        let loc = Loc::new(area, "");
        let r = self
            .client
            .get_bucket_versioning()
            .bucket(self.bucket(area))
            .send()
            .await;
        let status = match r {
            Ok(r) => r.status().map(|s| s.as_str().to_string()),
            Err(e) => match unparsed_success_body(&e) {
                Some(body) => versioning_status_in(&body),
                None => return Err(self.err("versioning", &loc, e)),
            },
        };
        Ok(match status.as_deref() {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Unversioned,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectError;

    #[test]
    fn layout_puts_archive_and_quarantine_under_the_cache_prefix_in_the_same_bucket() {
        let o = S3Options {
            bucket: "b".into(),
            prefix: "c".into(),
            ..Default::default()
        };
        let l = S3Layout::new(&o, None, "narward-archive/", DEFAULT_QUARANTINE_PREFIX);
        assert_eq!(l.cache.prefix, "c/");
        assert_eq!(l.archive.prefix, "c/narward-archive/");
        assert_eq!(l.quarantine.prefix, "c/narward-quarantine/");
        let l = S3Layout::new(&o, Some("arch"), "narward-archive/", "q");
        assert_eq!(l.archive.bucket, "arch");
        assert_eq!(l.archive.prefix, "narward-archive/");
        assert_eq!(l.quarantine.prefix, "c/q/");
    }

    fn service(code: Option<&str>, status: u16) -> SdkError<GetObjectError, HttpResponse> {
        let mut meta = aws_sdk_s3::error::ErrorMetadata::builder();
        if let Some(c) = code {
            meta = meta.code(c);
        }
        let raw = HttpResponse::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(GetObjectError::generic(meta.build()), raw)
    }

    #[test]
    fn sdk_errors_map_to_the_kinds_apply_acts_on() {
        use StoreErrorKind::*;
        for (code, status, want) in [
            (Some("NoSuchKey"), 404, NotFound),
            (None, 404, NotFound),
            (Some("PreconditionFailed"), 412, PreconditionFailed),
            (None, 412, PreconditionFailed),
            (Some("SlowDown"), 503, Throttled),
            (None, 503, Throttled),
            (None, 429, Throttled),
            (Some("AccessDenied"), 403, Denied),
            (None, 403, Denied),
            (Some("InvalidObjectState"), 403, InvalidObjectState),
            (Some("ObjectNotInActiveTierError"), 403, InvalidObjectState),
            (Some("InternalError"), 500, Transient),
            (None, 502, Transient),
            (Some("NoSuchBucket"), 404, Other),
            (Some("InvalidArgument"), 400, Other),
        ] {
            assert_eq!(kind_of(&service(code, status)), want, "{code:?} {status}");
        }
        let t: SdkError<GetObjectError, HttpResponse> =
            SdkError::timeout_error(std::io::Error::other("slow"));
        assert_eq!(kind_of(&t), Transient);
        let reset: SdkError<GetObjectError, HttpResponse> =
            SdkError::dispatch_failure(aws_smithy_runtime_api::client::result::ConnectorError::io(
                Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            ));
        assert_eq!(kind_of(&reset), Transient);
    }

    #[test]
    fn versioning_status_is_read_from_a_body_the_sdk_could_not_parse() {
        let moto = r#"<GetBucketVersioningResponse xmlns="x"><Status>Enabled</Status></GetBucketVersioningResponse>"#;
        assert_eq!(versioning_status_in(moto).as_deref(), Some("Enabled"));
        assert_eq!(versioning_status_in("<GetBucketVersioningResponse/>"), None);
    }

    #[test]
    fn multipart_parts_cover_every_byte_in_at_most_ten_thousand_parts() {
        assert_eq!(part_ranges(11, 5), [(0, 4), (5, 9), (10, 10)]);
        assert_eq!(part_ranges(10, 5), [(0, 4), (5, 9)]);
        let five_tib = 5 * 1024u64.pow(4);
        let r = part_ranges(five_tib, DEFAULT_PART_SIZE);
        assert!(r.len() <= 10_000, "{}", r.len());
        assert_eq!(r.first().map(|p| p.0), Some(0));
        assert_eq!(r.last().map(|p| p.1), Some(five_tib - 1));
        assert!(r.windows(2).all(|w| w[1].0 == w[0].1 + 1));
    }

    #[test]
    fn copy_source_keys_are_encoded_but_keep_slashes() {
        assert_eq!(encode_copy_key("log/a+b c.drv"), "log/a%2Bb%20c.drv");
        assert_eq!(encode_copy_key("nar/x.nar.xz"), "nar/x.nar.xz");
    }
}
