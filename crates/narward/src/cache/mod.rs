//! Access to a binary cache's objects: `file://DIR` or `s3://BUCKET?…`.
//!
//! [`CacheUrl`] is the validated address; [`Cache`] the connection. Both backends give the
//! same small set of operations (list, get, head, and the mutations used by apply and
//! restore), so everything above this module is backend-agnostic.

mod file;
pub mod file_stat;
pub mod file_store;
mod s3;
pub mod s3_store;
pub mod store;
pub mod store_wrap;
#[cfg(test)]
pub mod test_store;

pub use file::FileCache;
pub use s3::S3Cache;
pub use s3::{client_for as s3_client, sdk_err as s3_err};

use crate::listing::Listing;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Options for an `s3://` cache, from the URL's query string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket where the cache lives (without trailing `/`), usually empty.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Send the SDK's optional request checksums (`checksums=always`); off by default because
    /// many S3-compatible servers reject them.
    pub checksums_always: bool,
    /// How long to wait for a connection and for an answer (not part of the URL).
    pub timeouts: S3Timeouts,
}

/// Timeouts of every S3 request, so that an endpoint that accepts a connection and never
/// answers fails the run instead of hanging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// Establishing the TCP (and TLS) connection.
    pub connect: std::time::Duration,
    /// Waiting for the first byte of a response.
    pub read: std::time::Duration,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        S3Timeouts {
            connect: std::time::Duration::from_secs(10),
            read: std::time::Duration::from_secs(60),
        }
    }
}

/// Where a cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUrl {
    File(PathBuf),
    S3(S3Options),
}

impl CacheUrl {
    /// Parse `file:///abs/dir`, a plain directory path, or
    /// `s3://bucket[/prefix]?endpoint=…&region=…&profile=…&checksums=always`.
    ///
    /// # Errors
    /// Unknown scheme, empty bucket, unknown query parameter.
    pub fn parse(s: &str) -> Result<CacheUrl> {
        if let Some(rest) = s.strip_prefix("file://") {
            if rest.is_empty() {
                bail!("cache URL {s:?}: file:// needs a directory");
            }
            return Ok(CacheUrl::File(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (loc, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
            if bucket.is_empty() {
                bail!("cache URL {s:?}: s3:// needs a bucket name");
            }
            let mut o = S3Options {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                ..Default::default()
            };
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .with_context(|| format!("cache URL {s:?}: parameter {k} is not UTF-8"))?
                    .to_string();
                match k {
                    "endpoint" => o.endpoint = Some(v),
                    "region" => o.region = Some(v),
                    "profile" => o.profile = Some(v),
                    "checksums" => o.checksums_always = v == "always",
                    // Nix's own s3:// store parameters that do not matter for reading.
                    "scheme"
                    | "compression"
                    | "secret-key"
                    | "write-nar-listing"
                    | "ls-compression"
                    | "log-compression"
                    | "narinfo-compression" => {}
                    other => bail!(
                        "cache URL {s:?}: unknown parameter {other:?} (known: endpoint, region, profile, checksums)"
                    ),
                }
            }
            return Ok(CacheUrl::S3(o));
        }
        if s.contains("://") {
            bail!("cache URL {s:?}: unsupported scheme (use file://DIR or s3://BUCKET)");
        }
        Ok(CacheUrl::File(PathBuf::from(s)))
    }

    /// A stable identity for binding indexes and plans to one cache.
    pub fn identity(&self) -> String {
        match self {
            CacheUrl::File(p) => {
                let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                format!("file://{}", abs.display())
            }
            CacheUrl::S3(o) => {
                let mut s = format!("s3://{}", o.bucket);
                if !o.prefix.is_empty() {
                    s.push('/');
                    s.push_str(&o.prefix);
                }
                if let Some(e) = &o.endpoint {
                    s.push_str("?endpoint=");
                    s.push_str(e);
                }
                s
            }
        }
    }
}

/// What a HEAD says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: Option<String>,
    pub storage_class: Option<String>,
    /// The raw `x-amz-restore` header, if any.
    pub restore: Option<String>,
    pub last_modified: Option<i64>,
    /// The version id, in a bucket that has versioning.
    pub version_id: Option<String>,
}

/// An open cache.
pub enum Cache {
    File(FileCache),
    S3(S3Cache),
}

impl Cache {
    /// Open a cache (for S3: resolve credentials and region; no request is made yet).
    ///
    /// # Errors
    /// A `file://` directory that does not exist; an S3 configuration problem.
    pub async fn open(url: &CacheUrl, max_attempts: u32) -> Result<Cache> {
        Ok(match url {
            CacheUrl::File(p) => Cache::File(FileCache::open(p)?),
            CacheUrl::S3(o) => Cache::S3(S3Cache::open(o, max_attempts).await?),
        })
    }

    /// List every object, sorted by key (of a key listed twice, the first answer is kept).
    /// `on_page` is called with the number of new objects as they arrive.
    ///
    /// # Errors
    /// I/O or S3 errors after retries.
    pub async fn list(&self, on_page: &(dyn Fn(u64) + Sync)) -> Result<Listing> {
        match self {
            Cache::File(c) => c.list(on_page),
            Cache::S3(c) => c.list(on_page).await,
        }
    }

    /// [`Cache::list`], with for a `file://` cache the stat cache of the listing
    /// ([`file_stat`]): the MD5 of a narinfo or debuginfo link unchanged since `prev` was
    /// made is taken from it, and the stats of this listing come back, sorted by device
    /// and inode (`None` for S3).
    ///
    /// # Errors
    /// As [`Cache::list`].
    pub async fn list_cached(
        &self,
        prev: Option<&file_stat::StatCache>,
        on_page: &(dyn Fn(u64) + Sync),
    ) -> Result<(Listing, Option<file_stat::StatListing>)> {
        let Cache::File(c) = self else {
            return Ok((self.list(on_page).await?, None));
        };
        let (v, mut stats) = c.list_cached(prev, on_page)?;
        file_stat::sort(&mut stats.stats);
        Ok((v, Some(stats)))
    }

    /// Read a whole object; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// I/O or S3 errors after retries (including an archived object that cannot be read).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Cache::File(c) => c.get(key),
            Cache::S3(c) => c.get(key).await,
        }
    }

    /// Whether the cache's bucket keeps versions (`file://`: never).
    ///
    /// # Errors
    /// S3 errors after retries (GetBucketVersioning refused, for one).
    pub async fn versioning(&self) -> Result<crate::model::VersioningState> {
        match self {
            Cache::File(_) => Ok(crate::model::VersioningState::Unversioned),
            Cache::S3(c) => c.versioning().await,
        }
    }

    /// Where [`Cache::versioning`] learns the state, for the index's record.
    pub fn versioning_source(&self) -> &'static str {
        match self {
            Cache::File(_) => "file:// (no versioning)",
            Cache::S3(_) => "GetBucketVersioning",
        }
    }

    /// Metadata of one object; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// I/O or S3 errors after retries.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self {
            Cache::File(c) => c.head(key),
            Cache::S3(c) => c.head(key).await,
        }
    }
}
