//! An `s3://` binary cache through the official AWS SDK.
//!
//! Endpoint override with path-style addressing (for S3-compatible servers and the local
//! test server), the standard credential chain (`profile=` selects a profile), the SDK's
//! standard retry mode (exponential backoff with jitter on throttling and 5xx) with a
//! configurable number of attempts, connect and read timeouts (so that an endpoint that
//! never answers fails the run instead of hanging it). Listing is split into key ranges
//! listed concurrently, with URL-encoded keys (`EncodingType=url`), so that keys holding
//! characters XML 1.0 cannot carry (control characters) list like any other. Errors are
//! one line: what was asked (bucket, key, endpoint) and the service's code and message.

use super::{ObjectMeta, S3Options};
use crate::listing::{Listing, UnsortedListing};
use crate::model::ObjectRecord;
use anyhow::{Context, Result, anyhow};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::EncodingType;
use aws_smithy_types::checksum_config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use futures::{StreamExt, TryStreamExt};

const NIX32: &str = "0123456789abcdfghijklmnpqrsvwxyz";
const LIST_CONCURRENCY: usize = 16;

pub struct S3Cache {
    client: Client,
    bucket: String,
    /// `""` or `"prefix/"`.
    prefix: String,
    /// ` at <endpoint>` when an endpoint is given, for error messages.
    at: String,
}

/// What a HEAD answered about an object (the one reading of a `HeadObject` answer).
pub(crate) fn head_meta(o: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> ObjectMeta {
    ObjectMeta {
        size: o.content_length().unwrap_or(0).max(0) as u64,
        etag: etag_clean(o.e_tag()),
        storage_class: o.storage_class().map(|s| s.as_str().to_string()),
        restore: o.restore().map(str::to_string),
        last_modified: o.last_modified().map(|t| t.secs()),
        version_id: o.version_id().map(str::to_string),
    }
}

pub(crate) fn etag_clean(e: Option<&str>) -> Option<String> {
    e.map(|s| s.trim_matches('"').to_string())
}

/// Build an S3 client for the given options (shared with inventory reading).
///
/// # Errors
/// Never in practice; kept fallible for configuration problems.
pub async fn client_for(o: &S3Options, max_attempts: u32) -> Result<Client> {
    use aws_smithy_http_client::{Builder, tls};
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(p) = &o.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &o.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(o.timeouts.connect)
                .read_timeout(o.timeouts.read)
                .build(),
        )
        .force_path_style(o.endpoint.is_some());
    if sdk.region().is_none() {
        b = b.region(aws_config::Region::new("us-east-1"));
    }
    if let Some(e) = &o.endpoint {
        b = b.endpoint_url(e);
    }
    if !o.checksums_always {
        b = b
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Ok(Client::from_conf(b.build()))
}

/// Turn an SDK error into one line a person can act on: `what` (which should name the
/// bucket, key and endpoint), then the cause: the service's error code and message, a
/// timeout, or why the endpoint could not be reached. Never the SDK's Debug dump.
pub fn sdk_err<E>(what: String, e: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    anyhow!("{what}: {}", sdk_cause(&e))
}

pub(crate) fn sdk_cause<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::TimeoutError(_) => "timed out waiting for the endpoint".to_string(),
        SdkError::DispatchFailure(d) if d.is_timeout() => format!(
            "timed out waiting for the endpoint to answer ({})",
            source_chain(e)
        ),
        SdkError::DispatchFailure(_) => {
            format!("could not reach the endpoint ({})", source_chain(e))
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            match (e.code(), e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                (None, Some(m)) => format!("{m} (HTTP {status})"),
                (None, None) => format!("HTTP {status}: {}", s.err()),
            }
        }
        other => source_chain(other),
    }
}

/// An error and its sources, by their Display texts (repeats left out), on one line.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(x) = cur {
        let t = x.to_string();
        if !t.is_empty() && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = x.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// Key ranges `[start, end)` covering every key, split where Nix caches have most keys
/// (root-level `<hash>.narinfo` and `nar/<hash>…`), so they can be listed concurrently.
fn ranges() -> Vec<(String, Option<String>)> {
    let mut bounds: Vec<String> = NIX32.chars().map(|c| c.to_string()).collect();
    bounds.extend(NIX32.chars().map(|c| format!("nar/{c}")));
    bounds.sort();
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut start = String::new();
    for b in bounds {
        out.push((start, Some(b.clone())));
        start = b;
    }
    out.push((start, None));
    out
}

/// A StartAfter value that sorts just below `bound` and after every ordinary key that sorts
/// below it: the bound with its last byte decremented, padded with DEL characters.
/// Keys in the sliver between are filtered out by the `key < start` check.
fn start_after_for(bound: &str) -> Option<String> {
    if bound.is_empty() {
        return None;
    }
    let mut b = bound.as_bytes().to_vec();
    let last = b.pop()?;
    b.push(last.saturating_sub(1));
    let mut s = String::from_utf8(b).ok()?;
    s.push_str(&"\u{7f}".repeat(16));
    Some(s)
}

/// The versioning state in a GetBucketVersioning answer whose root element the SDK does
/// not accept: `<Status>Enabled</Status>` or `Suspended`; no `Status` means never
/// enabled. `None` when the text is not such an answer.
fn versioning_from_xml(body: &[u8]) -> Option<crate::model::VersioningState> {
    use crate::model::VersioningState as V;
    let t = std::str::from_utf8(body).ok()?;
    if !t.contains("VersioningResponse") && !t.contains("VersioningConfiguration") {
        return None;
    }
    let status = t
        .split_once("<Status>")
        .and_then(|(_, rest)| rest.split_once("</Status>"))
        .map(|(s, _)| s.trim());
    Some(match status {
        None => V::Unversioned,
        Some("Enabled") => V::Enabled,
        Some("Suspended") => V::Suspended,
        Some(_) => V::Unknown,
    })
}

impl S3Cache {
    /// # Errors
    /// Configuration problems.
    pub async fn open(o: &S3Options, max_attempts: u32) -> Result<S3Cache> {
        Ok(S3Cache {
            client: client_for(o, max_attempts).await?,
            bucket: o.bucket.clone(),
            prefix: if o.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", o.prefix)
            },
            at: o
                .endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default(),
        })
    }

    /// A listed key as stored: URL-decoded when the listing says it is encoded.
    ///
    /// # Errors
    /// An encoded key that does not decode (named).
    fn decode_key(&self, raw: &str, url_encoded: bool) -> Result<String> {
        if !url_encoded {
            return Ok(raw.to_string());
        }
        narward_formats::inventory::url_decode_key(raw).with_context(|| {
            format!(
                "listing {}: undecodable key {raw:?}",
                self.describe(&self.prefix)
            )
        })
    }

    /// `s3://bucket/key at <endpoint>`, for messages.
    fn describe(&self, full_key: &str) -> String {
        format!("s3://{}/{full_key}{}", self.bucket, self.at)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full S3 key of a cache key.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn list_range(
        &self,
        start: String,
        end: Option<String>,
        on_page: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<ObjectRecord>> {
        let mut out = Vec::new();
        let full_start = self.full_key(&start);
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .encoding_type(EncodingType::Url)
            .prefix(&self.prefix);
        if let Some(sa) = start_after_for(&full_start) {
            req = req.start_after(sa);
        }
        let mut pages = req.into_paginator().send();
        'pages: while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| sdk_err(format!("listing {}", self.describe(&self.prefix)), e))?;
            let before = out.len();
            // Asked for EncodingType=url: keys come %-encoded (`+` for a space) when the
            // answer says so; a server that ignores the parameter sends them raw.
            let url_encoded = page.encoding_type() == Some(&EncodingType::Url);
            for o in page.contents() {
                let Some(raw) = o.key() else { continue };
                let full = self.decode_key(raw, url_encoded)?;
                let Some(key) = full.strip_prefix(&self.prefix) else {
                    continue;
                };
                if key < start.as_str() {
                    continue;
                }
                if let Some(end) = &end
                    && key >= end.as_str()
                {
                    on_page((out.len() - before) as u64);
                    break 'pages;
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
            on_page((out.len() - before) as u64);
        }
        Ok(out)
    }

    /// Every object, sorted by key: the key ranges are listed concurrently and each is
    /// moved into the compact listing as soon as the ranges before it are, so only the
    /// ranges in flight are ever held as records.
    ///
    /// # Errors
    /// S3 errors after retries.
    pub async fn list(&self, on_page: &(dyn Fn(u64) + Sync)) -> Result<Listing> {
        let mut out = UnsortedListing::new();
        let mut parts = futures::stream::iter(ranges())
            .map(|(s, e)| self.list_range(s, e, on_page))
            .buffered(LIST_CONCURRENCY);
        while let Some(part) = parts.try_next().await? {
            part.into_iter().for_each(|r| out.push(r));
        }
        Ok(out.finish())
    }

    /// # Errors
    /// S3 errors after retries, including reading an archived object.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full_key(key);
        let r = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await;
        match r {
            Ok(o) => {
                let body = o
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("reading {}", self.describe(&full)))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => Ok(None),
            Err(e) => Err(sdk_err(format!("GET {}", self.describe(&full)), e)),
        }
    }

    /// The bucket's versioning state (GetBucketVersioning: no status means never enabled).
    ///
    /// # Errors
    /// S3 errors after retries (the permission `s3:GetBucketVersioning` missing, for one).
    pub async fn versioning(&self) -> Result<crate::model::VersioningState> {
        use crate::model::VersioningState as V;
        use aws_sdk_s3::types::BucketVersioningStatus as S;
        let r = match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Some S3-compatible servers (moto) name the answer's root element
                // differently, which the SDK refuses: read a 200 answer's body leniently.
                if let Some(state) = e
                    .raw_response()
                    .filter(|r| r.status().as_u16() == 200)
                    .and_then(|r| r.body().bytes())
                    .and_then(versioning_from_xml)
                {
                    return Ok(state);
                }
                return Err(sdk_err(
                    format!("GetBucketVersioning s3://{}{}", self.bucket, self.at),
                    e,
                ));
            }
        };
        Ok(match r.status() {
            None => V::Unversioned,
            Some(S::Enabled) => V::Enabled,
            Some(S::Suspended) => V::Suspended,
            Some(_) => V::Unknown,
        })
    }

    /// # Errors
    /// S3 errors after retries.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let full = self.full_key(key);
        let r = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await;
        match r {
            Ok(o) => Ok(Some(head_meta(&o))),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(sdk_err(format!("HEAD {}", self.describe(&full)), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioning_answers_with_another_root_element_are_read_leniently() {
        use crate::model::VersioningState as V;
        let x = |b: &str| versioning_from_xml(b.as_bytes());
        let ns = r#"xmlns="http://s3.amazonaws.com/doc/2006-03-01/""#;
        assert_eq!(
            x(&format!(
                "<?xml version=\"1.0\"?>\n<GetBucketVersioningResponse {ns}><Status>Enabled</Status></GetBucketVersioningResponse>"
            )),
            Some(V::Enabled)
        );
        assert_eq!(
            x(&format!(
                "<GetBucketVersioningResponse {ns}><Status>Suspended</Status></GetBucketVersioningResponse>"
            )),
            Some(V::Suspended)
        );
        assert_eq!(
            x(&format!("<GetBucketVersioningResponse {ns}/>")),
            Some(V::Unversioned)
        );
        assert_eq!(x("<Error><Code>AccessDenied</Code></Error>"), None);
        assert_eq!(x("\u{0}\u{ff}"), None);
    }

    #[test]
    fn ranges_cover_every_key_exactly_once() {
        let r = ranges();
        for key in [
            "",
            "0",
            "0abc.narinfo",
            "log/x",
            "nar/",
            "nar/0x",
            "nar/zz",
            "nix-cache-info",
            "zz",
            "~",
            "\u{7f}",
            "é",
        ] {
            let hits = r
                .iter()
                .filter(|(s, e)| key >= s.as_str() && e.as_deref().is_none_or(|e| key < e))
                .count();
            assert_eq!(hits, 1, "{key:?}");
        }
        for (s, _) in &r {
            if let Some(sa) = start_after_for(s) {
                assert!(sa.as_str() < s.as_str());
            }
        }
    }
}
