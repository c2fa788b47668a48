//! S3 Inventory reports as a source of the object listing.
//!
//! Takes the location of a report's `manifest.json` (a local path, or `s3://bucket/key`
//! with the same `?endpoint=…` parameters as a cache URL), checks `manifest.checksum` when
//! present, reads every data file (CSV.gz or Parquet; ORC is refused with a clear error)
//! and gives the current objects of the source bucket: latest versions, no delete markers.
//! Also writes reports in the same shapes, for tests and benchmarks.
//!
//! Nothing is dropped silently, since a dropped row makes a live object look absent:
//! the manifest must describe the cache's bucket (`sourceBucket`), every data file must
//! match its `MD5checksum`, and a row for another bucket fails the run (file and row
//! named). Keys under the cache's prefix lose it (so they are cache keys, as a listing
//! gives them); keys outside it belong to something else in the bucket and are ignored,
//! but counted ([`InventoryListing::outside_prefix`]). Files in S3 are read through the
//! same access layer as the cache ([`crate::cache::S3Cache`]: retries, timeouts, errors).

use crate::cache::{CacheUrl, S3Cache, S3Options};
use crate::listing::{Listing, UnsortedListing};
use crate::model::{NoncurrentVersions, ObjectRecord};
use anyhow::{Context, Result, bail};
use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use md5::{Digest, Md5};
use narward_formats::inventory::{self, CsvSchema, Manifest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a manifest is.
#[derive(Debug, Clone)]
pub enum ManifestLocation {
    Local(PathBuf),
    S3 { options: S3Options, key: String },
}

impl ManifestLocation {
    /// # Errors
    /// A URL that is neither a path nor `s3://bucket/key`.
    pub fn parse(s: &str) -> Result<ManifestLocation> {
        match CacheUrl::parse(s)? {
            CacheUrl::File(p) => Ok(ManifestLocation::Local(p)),
            CacheUrl::S3(mut o) => {
                if o.prefix.is_empty() {
                    bail!("inventory {s:?}: expected s3://BUCKET/…/manifest.json");
                }
                let key = std::mem::take(&mut o.prefix);
                Ok(ManifestLocation::S3 { options: o, key })
            }
        }
    }
}

/// The cache an inventory must describe: its bucket (none for a `file://` cache, whose
/// inventory then only has to agree with itself) and key prefix (`""` or `"prefix/"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheScope {
    pub bucket: Option<String>,
    pub prefix: String,
}

impl CacheScope {
    pub fn of(url: &CacheUrl) -> CacheScope {
        match url {
            CacheUrl::File(_) => CacheScope::default(),
            CacheUrl::S3(o) => CacheScope {
                bucket: Some(o.bucket.clone()),
                prefix: if o.prefix.is_empty() {
                    String::new()
                } else {
                    format!("{}/", o.prefix)
                },
            },
        }
    }
}

/// Reads the manifest and its files, wherever they are.
enum Source {
    Local(PathBuf),
    S3 {
        options: Box<S3Options>,
        max_attempts: u32,
        /// One connection per bucket read (the manifest's, the data files').
        opened: tokio::sync::Mutex<Vec<(String, Arc<S3Cache>)>>,
    },
}

impl Source {
    /// The object `key` of `bucket`; `Ok(None)` when it does not exist.
    async fn fetch(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Local(manifest_dir) => {
                let p = local_data_path(manifest_dir, key);
                match std::fs::read(&p) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("inventory file {}", p.display())),
                }
            }
            Source::S3 {
                options,
                max_attempts,
                opened,
            } => {
                let cache = {
                    let mut opened = opened.lock().await;
                    match opened.iter().find(|(b, _)| b == bucket) {
                        Some((_, c)) => c.clone(),
                        None => {
                            let o = S3Options {
                                bucket: bucket.to_string(),
                                prefix: String::new(),
                                ..(**options).clone()
                            };
                            let c = Arc::new(S3Cache::open(&o, *max_attempts).await?);
                            opened.push((bucket.to_string(), c.clone()));
                            c
                        }
                    }
                };
                cache.get(key).await
            }
        }
    }

    /// Like [`Source::fetch`], but a missing object is an error naming it.
    async fn fetch_required(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        match self.fetch(bucket, key).await? {
            Some(b) => Ok(b),
            None => match self {
                Source::Local(d) => bail!(
                    "inventory file {} not found",
                    local_data_path(d, key).display()
                ),
                Source::S3 { .. } => bail!("inventory file s3://{bucket}/{key} not found"),
            },
        }
    }
}

/// A data file of a local copy of an inventory: its key is `…/<config-id>/data/<file>` and
/// the manifest sits in `…/<config-id>/<date>/manifest.json`; failing that, beside it.
fn local_data_path(manifest_dir: &Path, key: &str) -> PathBuf {
    if let Some(i) = key.find("data/")
        && let Some(parent) = manifest_dir.parent()
    {
        let p = parent.join(&key[i..]);
        if p.exists() {
            return p;
        }
    }
    let base = key.rsplit('/').next().unwrap_or(key);
    manifest_dir.join(base)
}

/// The result of reading a report.
pub struct InventoryListing {
    pub manifest: Manifest,
    /// Objects of the cache, keyed as a listing of the cache gives them (prefix removed),
    /// sorted by key (of a key listed twice, the first row).
    pub objects: Listing,
    /// Rows skipped as non-current versions or delete markers.
    pub skipped_versions: u64,
    /// Noncurrent versions of the cache's keys, when the report lists all versions (it
    /// has an `IsLatest` column); `None` for a report of current versions only.
    pub noncurrent: Option<NoncurrentVersions>,
    /// Rows whose key lies outside the cache's prefix (other data in the bucket): ignored.
    pub outside_prefix: u64,
}

/// Read the manifest (and `manifest.checksum` beside it) from `loc`.
async fn read_manifest(
    loc: &ManifestLocation,
    max_attempts: u32,
) -> Result<(Source, Vec<u8>, Option<String>, String)> {
    Ok(match loc {
        ManifestLocation::Local(p) => {
            let b =
                std::fs::read(p).with_context(|| format!("inventory manifest {}", p.display()))?;
            let ck_path = p.with_file_name("manifest.checksum");
            let ck = match std::fs::read_to_string(&ck_path) {
                Ok(t) => Some(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e).with_context(|| format!("inventory {}", ck_path.display()));
                }
            };
            let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
            (Source::Local(dir), b, ck, p.display().to_string())
        }
        ManifestLocation::S3 { options, key } => {
            let src = Source::S3 {
                options: Box::new(options.clone()),
                max_attempts,
                opened: Default::default(),
            };
            let b = src.fetch_required(&options.bucket, key).await?;
            let ck_key = match key.rsplit_once('/') {
                Some((d, _)) => format!("{d}/manifest.checksum"),
                None => "manifest.checksum".to_string(),
            };
            let ck = match src.fetch(&options.bucket, &ck_key).await? {
                Some(b) => Some(String::from_utf8(b).with_context(|| {
                    format!("inventory s3://{}/{ck_key} is not UTF-8", options.bucket)
                })?),
                None => None,
            };
            (src, b, ck, format!("s3://{}/{key}", options.bucket))
        }
    })
}

/// Read a whole inventory report of the cache `scope`.
///
/// # Errors
/// Missing or malformed manifest (named), checksum mismatch (manifest or data file), a
/// manifest of another bucket, unreadable data files, a bad row or a row of another bucket
/// (file and line named), an unsupported format.
pub async fn read(
    loc: &ManifestLocation,
    scope: &CacheScope,
    max_attempts: u32,
) -> Result<InventoryListing> {
    let (src, manifest_bytes, checksum, name) = read_manifest(loc, max_attempts).await?;
    if let Some(ck) = checksum {
        let got = hex::encode(Md5::digest(&manifest_bytes));
        if !ck.trim().eq_ignore_ascii_case(&got) {
            bail!(
                "inventory manifest {name}: MD5 {got} does not match manifest.checksum {}",
                ck.trim()
            );
        }
    }
    let text = std::str::from_utf8(&manifest_bytes)
        .with_context(|| format!("inventory manifest {name} is not UTF-8"))?;
    let manifest = Manifest::parse(text).with_context(|| format!("inventory manifest {name}"))?;
    if let Some(b) = &scope.bucket
        && manifest.source_bucket != *b
    {
        bail!(
            "inventory manifest {name} describes bucket {:?}, not the cache's bucket {b:?}",
            manifest.source_bucket
        );
    }
    let dest_bucket = manifest
        .destination_bucket
        .rsplit(':')
        .next()
        .unwrap_or(&manifest.destination_bucket)
        .to_string();
    let mut all = Part::default();
    let mut objects = UnsortedListing::new();
    let pb = crate::progress::bar(manifest.files.len() as u64, "inventory");
    for f in &manifest.files {
        let data = src.fetch_required(&dest_bucket, &f.key).await?;
        check_md5(&name, f, &data)?;
        let file = DataFile {
            manifest: &manifest,
            scope,
            name: &f.key,
        };
        let part = match manifest.file_format.as_str() {
            "CSV" => read_csv_gz(&file, data)?,
            "Parquet" => read_parquet(&file, data)?,
            other => bail!(
                "inventory {name}: file format {other:?} is not supported (use CSV or Parquet)"
            ),
        };
        let mut part = part;
        for o in std::mem::take(&mut part.objects) {
            objects.push(o);
        }
        part.add_to(&mut all);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(InventoryListing {
        manifest,
        // Reports list keys in order, so the sort is usually a check.
        objects: objects.finish(),
        skipped_versions: all.skipped_versions,
        noncurrent: all.noncurrent,
        outside_prefix: all.outside_prefix,
    })
}

/// What one data file, or one row group of it, adds to the listing.
#[derive(Default)]
struct Part {
    objects: Vec<ObjectRecord>,
    skipped_versions: u64,
    noncurrent: Option<NoncurrentVersions>,
    outside_prefix: u64,
}

impl Part {
    /// Add this part's rows and counts to `out` (parts are added in file order).
    fn add_to(self, out: &mut Part) {
        if out.objects.is_empty() {
            out.objects = self.objects;
        } else {
            out.objects.extend(self.objects);
        }
        out.skipped_versions += self.skipped_versions;
        out.outside_prefix += self.outside_prefix;
        if let Some(n) = self.noncurrent {
            out.noncurrent.get_or_insert_default().merge(n);
        }
    }
}

/// A storage class as the listing keeps it: STANDARD (S3's default) as `None`, as the
/// index does, so the common case holds no string.
fn stored_class(class: Option<&str>) -> Option<String> {
    class
        .filter(|c| *c != crate::cost::STANDARD)
        .map(str::to_string)
}

/// A data file must be the one the manifest lists: a damaged or replaced file would
/// silently lose (or invent) objects.
fn check_md5(manifest_name: &str, f: &inventory::ManifestFile, data: &[u8]) -> Result<()> {
    let Some(want) = &f.md5_checksum else {
        bail!(
            "inventory manifest {manifest_name}: data file {} has no MD5checksum, so it cannot be verified",
            f.key
        );
    };
    let got = hex::encode(Md5::digest(data));
    if !want.trim().eq_ignore_ascii_case(&got) {
        bail!(
            "inventory data file {}: MD5 {got} does not match the manifest's MD5checksum {} (damaged or replaced file)",
            f.key,
            want.trim()
        );
    }
    Ok(())
}

/// The data file being read, and what its rows must agree with.
struct DataFile<'a> {
    manifest: &'a Manifest,
    scope: &'a CacheScope,
    name: &'a str,
}

/// One row's fields that decide whether (and under which key) it is an object of the cache.
struct RowHead<'r> {
    bucket: &'r str,
    key: &'r str,
    is_latest: Option<bool>,
    is_delete_marker: Option<bool>,
    size: Option<u64>,
    storage_class: Option<&'r str>,
}

impl DataFile<'_> {
    /// The cache key of a row, or `None` for a row that is not a current object of the
    /// cache (counted in `out`).
    ///
    /// # Errors
    /// The row is of another bucket than the manifest's: it cannot be trusted.
    fn cache_key(
        &self,
        row: &RowHead,
        at: impl FnOnce() -> String,
        out: &mut Part,
    ) -> Result<Option<String>> {
        if row.bucket != self.manifest.source_bucket {
            bail!(
                "inventory file {}: {} is for bucket {:?}, not the manifest's {:?}",
                self.name,
                at(),
                row.bucket,
                self.manifest.source_bucket
            );
        }
        if row.is_latest == Some(false) || row.is_delete_marker == Some(true) {
            out.skipped_versions += 1;
            self.count_version(row, out);
            return Ok(None);
        }
        match row.key.strip_prefix(self.scope.prefix.as_str()) {
            Some(k) if !k.is_empty() => Ok(Some(k.to_string())),
            _ => {
                out.outside_prefix += 1;
                Ok(None)
            }
        }
    }
}

impl DataFile<'_> {
    /// Count a noncurrent version or delete marker of a key of the cache.
    fn count_version(&self, row: &RowHead, out: &mut Part) {
        let Some(k) = row.key.strip_prefix(self.scope.prefix.as_str()) else {
            return;
        };
        let n = out.noncurrent.get_or_insert_default();
        if row.is_delete_marker == Some(true) {
            n.delete_markers += 1;
        } else {
            n.add(k, row.size.unwrap_or(0), row.storage_class);
        }
    }
}

/// Decompressed text is handed from the inflating thread to the parser in blocks of
/// about this many bytes, each ending at a line end.
const CSV_BLOCK: usize = 4 << 20;

/// A CSV line longer than this is refused (S3 keys are at most 1,024 bytes: such a line
/// is damage, and is not held whole).
const MAX_CSV_LINE: usize = 16 * CSV_BLOCK;

/// Reads a CSV.gz data file: one thread inflates (gzip is most of the cost), this one
/// parses the lines as blocks arrive.
fn read_csv_gz(file: &DataFile, data: Vec<u8>) -> Result<Part> {
    let name = file.name;
    let schema =
        CsvSchema::parse(&file.manifest.file_schema).context("inventory manifest fileSchema")?;
    let mut out = Part::default();
    if schema.index_of("IsLatest").is_some() {
        // A report of all versions: the noncurrent ones are known (maybe none).
        out.noncurrent.get_or_insert_default();
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(2);
    std::thread::scope(|s| {
        s.spawn(move || inflate_blocks(&data, &tx));
        let mut line_no = 0usize;
        // Dropping `rx` on an early return stops the inflating thread.
        for block in rx {
            let block = block.with_context(|| {
                format!("inventory file {name}: after line {line_no}: not gzip CSV")
            })?;
            let text = match std::str::from_utf8(&block) {
                Ok(t) => t,
                Err(e) => {
                    let at =
                        line_no + 1 + memchr_count(block.get(..e.valid_up_to()).unwrap_or(&[]));
                    bail!("inventory file {name}: line {at}: not UTF-8");
                }
            };
            for line in text.split_terminator('\n') {
                line_no += 1;
                if line.is_empty() || line == "\r" {
                    continue;
                }
                csv_row(file, &schema, line, line_no, &mut out)?;
            }
        }
        Ok(out)
    })
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// Inflates `data` (gzip members one after another) and sends it in blocks that end at
/// a line end (the last one at the end of the data). Stops when the receiver is gone.
fn inflate_blocks(data: &[u8], tx: &std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>) {
    use std::io::Read;
    let mut gz = flate2::read::MultiGzDecoder::new(data);
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut block = std::mem::take(&mut carry);
        let start = block.len();
        block.resize(start + CSV_BLOCK, 0);
        let mut filled = start;
        let mut eof = false;
        while filled < block.len() {
            match gz.read(block.get_mut(filled..).unwrap_or_default()) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        block.truncate(filled);
        if !eof {
            match block.iter().rposition(|&c| c == b'\n') {
                Some(nl) => carry = block.split_off(nl + 1),
                // No line end yet: the line goes on in the next block, whole.
                None if block.len() < MAX_CSV_LINE => {
                    carry = block;
                    continue;
                }
                None => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a line longer than {MAX_CSV_LINE} bytes"),
                    );
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if !block.is_empty() && tx.send(Ok(block)).is_err() {
            return;
        }
        if eof {
            return;
        }
    }
}

/// One CSV line into `out`.
fn csv_row(
    file: &DataFile,
    schema: &CsvSchema,
    line: &str,
    line_no: usize,
    out: &mut Part,
) -> Result<()> {
    let at = || format!("line {line_no}");
    let row = inventory::parse_csv_row_ref(schema, line)
        .with_context(|| format!("inventory file {}: {}", file.name, at()))?;
    let head = RowHead {
        bucket: &row.bucket,
        key: &row.key,
        is_latest: row.is_latest,
        is_delete_marker: row.is_delete_marker,
        size: row.size,
        storage_class: row.storage_class.as_deref(),
    };
    let Some(key) = file.cache_key(&head, at, out)? else {
        return Ok(());
    };
    out.objects.push(ObjectRecord {
        key,
        size: row.size.unwrap_or(0),
        etag: row.etag.map(std::borrow::Cow::into_owned),
        last_modified: row.last_modified,
        storage_class: stored_class(row.storage_class.as_deref()),
        link_target: None,
    });
    Ok(())
}

fn column(batch: &RecordBatch, name: &str, ty: &DataType, file: &str) -> Result<Option<ArrayRef>> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(c) => {
            Ok(Some(arrow_cast::cast(c, ty).with_context(|| {
                format!("inventory file {file}: column {name}")
            })?))
        }
    }
}

/// The columns narward reads from a Parquet report; the others are not decoded.
const PARQUET_COLUMNS: [&str; 8] = [
    "bucket",
    "key",
    "size",
    "last_modified_date",
    "e_tag",
    "storage_class",
    "is_latest",
    "is_delete_marker",
];

/// Reads a Parquet data file: only [`PARQUET_COLUMNS`], its row groups decoded on all
/// cores, their rows kept in file order.
fn read_parquet(df: &DataFile, data: Vec<u8>) -> Result<Part> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    let file = df.name;
    let data = bytes::Bytes::from(data);
    let meta = ArrowReaderMetadata::load(&data, ArrowReaderOptions::default())
        .with_context(|| format!("inventory file {file}: not a Parquet file"))?;
    let mask = ProjectionMask::columns(meta.parquet_schema(), PARQUET_COLUMNS);
    let groups = meta.metadata().num_row_groups();
    let mut first_rows = Vec::with_capacity(groups);
    let mut rows = 0usize;
    for g in meta.metadata().row_groups() {
        first_rows.push(rows);
        rows += usize::try_from(g.num_rows()).unwrap_or(0);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(groups)
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Part>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let g = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&first_row) = first_rows.get(g) else {
                            return mine;
                        };
                        let group = RowGroup {
                            data: &data,
                            meta: &meta,
                            mask: &mask,
                            index: g,
                            first_row,
                        };
                        let r = read_row_group(df, &group);
                        let failed = r.is_err();
                        mine.push((g, r));
                        if failed {
                            return mine;
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec![(0, Err(anyhow::anyhow!("a reader thread panicked")))])
            })
            .collect()
    });
    done.sort_by_key(|(g, _)| *g);
    let mut out = Part::default();
    for (_, part) in done {
        part?.add_to(&mut out);
    }
    Ok(out)
}

/// One row group of a Parquet file to decode.
struct RowGroup<'a> {
    data: &'a bytes::Bytes,
    meta: &'a parquet::arrow::arrow_reader::ArrowReaderMetadata,
    mask: &'a parquet::arrow::ProjectionMask,
    index: usize,
    /// Rows before this group in the file (for error messages).
    first_row: usize,
}

fn read_row_group(df: &DataFile, g: &RowGroup) -> Result<Part> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = df.name;
    let rd = ParquetRecordBatchReaderBuilder::new_with_metadata(g.data.clone(), g.meta.clone())
        .with_row_groups(vec![g.index])
        .with_projection(g.mask.clone())
        .with_batch_size(65536)
        .build()
        .with_context(|| format!("inventory file {file}"))?;
    let mut out = Part::default();
    let mut first_row = g.first_row;
    for batch in rd {
        let batch = batch.with_context(|| format!("inventory file {file}"))?;
        read_batch(df, &batch, first_row, &mut out)?;
        first_row += batch.num_rows();
    }
    Ok(out)
}

fn read_batch(df: &DataFile, batch: &RecordBatch, first_row: usize, out: &mut Part) -> Result<()> {
    let file = df.name;
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    let Some(bucket) = column(batch, "bucket", &DataType::Utf8, file)? else {
        bail!("inventory file {file}: no column `bucket`");
    };
    let Some(key) = column(batch, "key", &DataType::Utf8, file)? else {
        bail!("inventory file {file}: no column `key`");
    };
    let size = column(batch, "size", &DataType::Int64, file)?;
    let lm = match column(batch, "last_modified_date", &ts, file)? {
        Some(c) => Some(arrow_cast::cast(&c, &DataType::Int64)?),
        None => None,
    };
    let etag = column(batch, "e_tag", &DataType::Utf8, file)?;
    let sc = column(batch, "storage_class", &DataType::Utf8, file)?;
    let latest = column(batch, "is_latest", &DataType::Boolean, file)?;
    let dm = column(batch, "is_delete_marker", &DataType::Boolean, file)?;
    let s = |a: &ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
    let i = |a: &ArrayRef| a.as_any().downcast_ref::<Int64Array>().cloned();
    let b = |a: &ArrayRef| a.as_any().downcast_ref::<BooleanArray>().cloned();
    let (Some(bucket), Some(key)) = (s(&bucket), s(&key)) else {
        bail!("inventory file {file}: bucket/key columns are not strings");
    };
    let size = size.as_ref().and_then(i);
    let lm = lm.as_ref().and_then(i);
    let etag = etag.as_ref().and_then(s);
    let sc = sc.as_ref().and_then(s);
    let latest = latest.as_ref().and_then(b);
    let dm = dm.as_ref().and_then(b);
    if latest.is_some() {
        out.noncurrent.get_or_insert_default();
    }
    for r in 0..batch.num_rows() {
        let at = || format!("row {}", first_row + r + 1);
        if key.is_null(r) || bucket.is_null(r) {
            bail!("inventory file {file}: {} has no key or no bucket", at());
        }
        let opt_b =
            |a: &Option<BooleanArray>| a.as_ref().filter(|a| !a.is_null(r)).map(|a| a.value(r));
        let opt_i =
            |a: &Option<Int64Array>| a.as_ref().filter(|a| !a.is_null(r)).map(|a| a.value(r));
        let head = RowHead {
            bucket: bucket.value(r),
            key: key.value(r),
            is_latest: opt_b(&latest),
            is_delete_marker: opt_b(&dm),
            size: opt_i(&size).map(|v| v.max(0) as u64),
            storage_class: opt_str(&sc, r),
        };
        let Some(cache_key) = df.cache_key(&head, at, out)? else {
            continue;
        };
        out.objects.push(ObjectRecord {
            key: cache_key,
            size: head.size.unwrap_or(0),
            etag: opt_str(&etag, r).map(|e| e.trim_matches('"').to_string()),
            last_modified: opt_i(&lm).map(|ms| ms.div_euclid(1000)),
            storage_class: stored_class(head.storage_class),
            link_target: None,
        });
    }
    Ok(())
}

fn opt_str(a: &Option<StringArray>, r: usize) -> Option<&str> {
    a.as_ref().filter(|a| !a.is_null(r)).map(|a| a.value(r))
}

/// Which data format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFormat {
    CsvGz,
    Parquet,
}

fn iso8601(secs: i64) -> String {
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = narward_formats::date::ymd(secs);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Write an inventory report for `objects` of `bucket` into `dir` laid out as S3 does
/// (`<dir>/<date>/manifest.json`, `manifest.checksum`, `<dir>/data/…`), split into files of
/// `rows_per_file` rows. Returns the manifest's path.
///
/// # Errors
/// I/O errors.
pub fn write_report(
    dir: &Path,
    bucket: &str,
    objects: &[ObjectRecord],
    format: WriteFormat,
    rows_per_file: usize,
) -> Result<PathBuf> {
    let date_dir = dir.join("2026-11-24T01-00Z");
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&date_dir)?;
    std::fs::create_dir_all(&data_dir)?;
    let mut files = Vec::new();
    for (n, chunk) in objects.chunks(rows_per_file.max(1)).enumerate() {
        let (name, bytes) = match format {
            WriteFormat::CsvGz => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                for o in chunk {
                    writeln!(
                        gz,
                        "\"{bucket}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\"",
                        inventory::url_encode_key(&o.key),
                        o.size,
                        o.last_modified.map(iso8601).unwrap_or_default(),
                        o.etag.as_deref().unwrap_or(""),
                        o.storage_class()
                    )?;
                }
                (format!("part-{n:05}.csv.gz"), gz.finish()?)
            }
            WriteFormat::Parquet => (
                format!("part-{n:05}.parquet"),
                parquet_bytes(bucket, chunk)?,
            ),
        };
        std::fs::write(data_dir.join(&name), &bytes)?;
        files.push(serde_json::json!({
            "key": format!("inventory/{bucket}/config/data/{name}"),
            "size": bytes.len(),
            "MD5checksum": hex::encode(Md5::digest(&bytes)),
        }));
    }
    let (ff, schema) = match format {
        WriteFormat::CsvGz => ("CSV", "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass".to_string()),
        WriteFormat::Parquet => (
            "Parquet",
            "message s3.inventory { required binary bucket (STRING); required binary key (STRING); optional int64 size; optional int64 last_modified_date (TIMESTAMP(MILLIS,true)); optional binary e_tag (STRING); optional binary storage_class (STRING); }".to_string(),
        ),
    };
    let manifest = serde_json::json!({
        "sourceBucket": bucket,
        "destinationBucket": "arn:aws:s3:::inventory-dest",
        "version": "2016-11-30",
        "creationTimestamp": "1795914000000",
        "fileFormat": ff,
        "fileSchema": schema,
        "files": files,
    });
    let text = serde_json::to_string_pretty(&manifest)?;
    let mp = date_dir.join("manifest.json");
    std::fs::write(&mp, &text)?;
    std::fs::write(
        date_dir.join("manifest.checksum"),
        hex::encode(Md5::digest(text.as_bytes())),
    )?;
    Ok(mp)
}

fn parquet_bytes(bucket: &str, objects: &[ObjectRecord]) -> Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("size", DataType::Int64, true),
        Field::new(
            "last_modified_date",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new("e_tag", DataType::Utf8, true),
        Field::new("storage_class", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![bucket; objects.len()])),
        Arc::new(StringArray::from_iter_values(
            objects.iter().map(|o| o.key.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            objects.iter().map(|o| o.size as i64),
        )),
        Arc::new(arrow_array::TimestampMillisecondArray::from_iter(
            objects.iter().map(|o| o.last_modified.map(|s| s * 1000)),
        )),
        Arc::new(StringArray::from_iter(
            objects.iter().map(|o| o.etag.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            objects.iter().map(|o| Some(o.storage_class())),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    let mut buf = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objs() -> Vec<ObjectRecord> {
        (0..2500)
            .map(|i| ObjectRecord {
                link_target: None,
                key: if i % 7 == 0 {
                    format!("log/foo+bar {i}.drv")
                } else {
                    format!("k{i:05}.narinfo")
                },
                size: i * 3,
                etag: Some(format!("e{i}")),
                last_modified: Some(1_700_000_000 + i as i64),
                storage_class: (i % 3 == 0).then(|| "DEEP_ARCHIVE".into()),
            })
            .collect()
    }

    #[tokio::test]
    async fn csv_and_parquet_reports_roundtrip() {
        let mut want = objs();
        want.sort_by(|a, b| a.key.cmp(&b.key));
        for fmt in [WriteFormat::CsvGz, WriteFormat::Parquet] {
            let d = tempfile::tempdir().unwrap();
            let m = write_report(d.path(), "cache", &want, fmt, 1000).unwrap();
            let got = read_ok(&m).await;
            assert_eq!(got.manifest.files.len(), 3);
            assert_eq!(got.objects.to_records(), want, "{fmt:?}");
        }
    }

    #[tokio::test]
    async fn corrupted_manifest_is_refused_by_checksum() {
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &objs(), WriteFormat::CsvGz, 1000).unwrap();
        let t = std::fs::read_to_string(&m)
            .unwrap()
            .replace("cache", "cachX");
        std::fs::write(&m, t).unwrap();
        let e = read(&ManifestLocation::Local(m), &CacheScope::default(), 1)
            .await
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("does not match manifest.checksum"),
            "{e:#}"
        );
    }

    /// Replace data file `name` of the report whose manifest is `m`, updating the
    /// manifest's MD5checksum and manifest.checksum as S3 would.
    fn replace_data(m: &Path, name: &str, bytes: &[u8]) {
        let data = m
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("data")
            .join(name);
        std::fs::write(&data, bytes).unwrap();
        let mut j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
        for f in j["files"].as_array_mut().unwrap() {
            if f["key"].as_str().unwrap().ends_with(name) {
                f["MD5checksum"] = hex::encode(Md5::digest(bytes)).into();
            }
        }
        set_manifest(m, &j);
    }

    fn set_manifest(m: &Path, j: &serde_json::Value) {
        let text = serde_json::to_string_pretty(j).unwrap();
        std::fs::write(m, &text).unwrap();
        std::fs::write(
            m.with_file_name("manifest.checksum"),
            hex::encode(Md5::digest(text.as_bytes())),
        )
        .unwrap();
    }

    fn gz(text: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    async fn read_ok(m: &Path) -> InventoryListing {
        read(
            &ManifestLocation::Local(m.to_path_buf()),
            &CacheScope::default(),
            1,
        )
        .await
        .unwrap()
    }

    async fn read_err(m: &Path, scope: &CacheScope) -> String {
        let e = read(&ManifestLocation::Local(m.to_path_buf()), scope, 1)
            .await
            .err()
            .unwrap();
        format!("{e:#}")
    }

    #[tokio::test]
    async fn a_bad_row_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &objs()[..10], WriteFormat::CsvGz, 1000).unwrap();
        let bad = gz(
            "\"cache\",\"a\",\"1\",\"\",\"\",\"STANDARD\"\n\"cache\",\"b\",\"notanumber\",\"\",\"\",\"STANDARD\"\n",
        );
        replace_data(&m, "part-00000.csv.gz", &bad);
        let msg = read_err(&m, &CacheScope::default()).await;
        assert!(
            msg.contains("part-00000.csv.gz") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_csv_line_longer_than_a_block_is_read_whole_and_an_endless_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &objs()[..1], WriteFormat::CsvGz, 1000).unwrap();
        let long = ObjectRecord {
            key: format!("{}.narinfo", "k".repeat(2 * CSV_BLOCK + 10)),
            ..objs()[0].clone()
        };
        let text = format!(
            "{}{}",
            csv_line("cache", &objs()[0]),
            csv_line("cache", &long)
        );
        replace_data(&m, "part-00000.csv.gz", &gz(&text));
        let got = read_ok(&m).await;
        assert_eq!(got.objects.len(), 2);
        assert!(got.objects.iter().any(|o| o.key() == long.key));
        replace_data(&m, "part-00000.csv.gz", &gz(&"k".repeat(MAX_CSV_LINE + 1)));
        let msg = read_err(&m, &CacheScope::default()).await;
        assert!(
            msg.contains("part-00000.csv.gz: after line 0") && msg.contains("longer than"),
            "{msg}"
        );
    }

    fn csv_line(bucket: &str, o: &ObjectRecord) -> String {
        format!(
            "\"{bucket}\",\"{}\",\"{}\",\"2026-01-02T03:04:05.000Z\",\"{}\",\"{}\"\n",
            o.key,
            o.size,
            o.etag.as_deref().unwrap_or(""),
            o.storage_class()
        )
    }

    /// CSV.gz is inflated on another thread and handed over in blocks: a file far larger
    /// than a block, in two gzip members, gives every row, and a bad line past the first
    /// block is named by its line in the file.
    #[tokio::test]
    async fn csv_gz_larger_than_a_block_reads_every_row_and_names_late_lines() {
        let rows: Vec<ObjectRecord> = (0..70_000u64)
            .map(|i| ObjectRecord {
                key: format!("nar/{i:052}.nar.xz"),
                size: i,
                etag: Some(format!("{i:032x}")),
                last_modified: Some(1_767_323_045),
                storage_class: (i % 5 == 0).then(|| "GLACIER".into()),
                link_target: None,
            })
            .collect();
        let (a, b) = rows.split_at(31_000);
        let text_a: String = a.iter().map(|o| csv_line("cache", o)).collect();
        let mut text_b: String = b.iter().map(|o| csv_line("cache", o)).collect();
        assert!(text_a.len() + text_b.len() > 2 * CSV_BLOCK);
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &rows[..1], WriteFormat::CsvGz, 1000).unwrap();
        let mut two_members = gz(&text_a);
        two_members.extend(gz(&text_b));
        replace_data(&m, "part-00000.csv.gz", &two_members);
        let got = read_ok(&m).await;
        assert_eq!(got.objects.to_records(), rows);
        // Line 65,001 of the file (row 34,000 of the second member) is damaged.
        let at: usize = b[..34_000].iter().map(|o| csv_line("cache", o).len()).sum();
        text_b.replace_range(at + 10..at + 11, "\"x");
        let mut damaged = gz(&text_a);
        damaged.extend(gz(&text_b));
        replace_data(&m, "part-00000.csv.gz", &damaged);
        let msg = read_err(&m, &CacheScope::default()).await;
        assert!(msg.contains("part-00000.csv.gz: line 65001"), "{msg}");
    }

    /// A Parquet file with many row groups and a column narward does not read: the groups
    /// are decoded in parallel, rows keep their file order, and a row of another bucket in
    /// a late group is named by its row in the file.
    #[tokio::test]
    async fn parquet_row_groups_read_in_parallel_keep_order_and_name_rows() {
        fn parquet(rows: &[ObjectRecord], bad_row: Option<usize>) -> Vec<u8> {
            let schema = Arc::new(Schema::new(vec![
                Field::new("bucket", DataType::Utf8, false),
                Field::new("key", DataType::Utf8, false),
                Field::new("size", DataType::Int64, true),
                Field::new("e_tag", DataType::Utf8, true),
                Field::new("is_multipart_uploaded", DataType::Boolean, true),
            ]));
            let bucket = |i| {
                if Some(i) == bad_row {
                    "elsewhere"
                } else {
                    "cache"
                }
            };
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values((0..rows.len()).map(bucket))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|o| &o.key))),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|o| o.size as i64),
                )),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|o| o.etag.as_deref()),
                )),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|_| Some(false)))),
            ];
            let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
            let props = parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(97))
                .build();
            let mut buf = Vec::new();
            let mut w =
                parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props)).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            buf
        }
        let rows: Vec<ObjectRecord> = (0..2_000u64)
            .map(|i| ObjectRecord {
                key: format!("k{i:05}.narinfo"),
                size: i,
                etag: Some(format!("e{i}")),
                last_modified: None,
                storage_class: None,
                link_target: None,
            })
            .collect();
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &rows[..1], WriteFormat::Parquet, 1000).unwrap();
        replace_data(&m, "part-00000.parquet", &parquet(&rows, None));
        let got = read_ok(&m).await;
        assert_eq!(got.objects.to_records(), rows);
        replace_data(&m, "part-00000.parquet", &parquet(&rows, Some(1_900)));
        let msg = read_err(&m, &CacheScope::default()).await;
        assert!(
            msg.contains("row 1901 is for bucket \"elsewhere\""),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn inventory_data_file_with_wrong_md5_fails_the_run() {
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &objs()[..10], WriteFormat::CsvGz, 1000).unwrap();
        // A truncated data file: its rows would silently be missing.
        std::fs::write(d.path().join("data/part-00000.csv.gz"), gz("")).unwrap();
        let msg = read_err(&m, &CacheScope::default()).await;
        assert!(
            msg.contains("part-00000.csv.gz") && msg.contains("MD5checksum"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn inventory_row_for_another_bucket_fails_the_run() {
        for fmt in [WriteFormat::CsvGz, WriteFormat::Parquet] {
            let d = tempfile::tempdir().unwrap();
            let m = write_report(d.path(), "cache", &objs()[..10], fmt, 1000).unwrap();
            let e = tempfile::tempdir().unwrap();
            let other = write_report(e.path(), "elsewhere", &objs()[..3], fmt, 1000).unwrap();
            let name = match fmt {
                WriteFormat::CsvGz => "part-00000.csv.gz",
                WriteFormat::Parquet => "part-00000.parquet",
            };
            let bytes = std::fs::read(
                other
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .join("data")
                    .join(name),
            )
            .unwrap();
            replace_data(&m, name, &bytes);
            let msg = read_err(&m, &CacheScope::default()).await;
            assert!(
                msg.contains(name) && (msg.contains("row 1") || msg.contains("line 1")),
                "{fmt:?}: {msg}"
            );
            assert!(msg.contains("elsewhere"), "{msg}");
        }
    }

    #[tokio::test]
    async fn inventory_of_another_bucket_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &objs()[..10], WriteFormat::CsvGz, 1000).unwrap();
        let scope = CacheScope {
            bucket: Some("my-cache".into()),
            prefix: String::new(),
        };
        let msg = read_err(&m, &scope).await;
        assert!(
            msg.contains("\"cache\"") && msg.contains("my-cache"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn inventory_of_a_prefixed_cache_strips_the_prefix_and_counts_the_rest() {
        let mut objects = objs()[..10].to_vec();
        for o in &mut objects[..7] {
            o.key = format!("nix/{}", o.key);
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        for fmt in [WriteFormat::CsvGz, WriteFormat::Parquet] {
            let d = tempfile::tempdir().unwrap();
            let m = write_report(d.path(), "cache", &objects, fmt, 4).unwrap();
            let scope = CacheScope {
                bucket: Some("cache".into()),
                prefix: "nix/".into(),
            };
            let got = read(&ManifestLocation::Local(m), &scope, 1).await.unwrap();
            assert_eq!(got.outside_prefix, 3, "{fmt:?}");
            assert_eq!(got.objects.len(), 7);
            assert!(got.objects.iter().all(|o| !o.key().starts_with("nix/")));
        }
    }

    #[tokio::test]
    async fn an_inventory_of_all_versions_counts_the_noncurrent_ones() {
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &objs()[..3], WriteFormat::CsvGz, 1000).unwrap();
        let nar = |c: &str| format!("nar/{}.nar.xz", c.repeat(52));
        let t = "2026-11-24T01:00:00.000Z";
        let rows = format!(
            "\"cache\",\"{a}\",\"v2\",\"true\",\"false\",\"100\",\"{t}\",\"e2\",\"STANDARD\"\n\
             \"cache\",\"{a}\",\"v1\",\"false\",\"false\",\"80\",\"{t}\",\"e1\",\"STANDARD\"\n\
             \"cache\",\"{b}\",\"v1\",\"false\",\"false\",\"50\",\"{t}\",\"e3\",\"DEEP_ARCHIVE\"\n\
             \"cache\",\"{b}\",\"v2\",\"true\",\"true\",\"\",\"{t}\",\"\",\"\"\n",
            a = nar("0"),
            b = nar("1"),
        );
        replace_data(&m, "part-00000.csv.gz", &gz(&rows));
        let mut j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
        j["fileSchema"] =
            "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass"
                .into();
        set_manifest(&m, &j);
        let got = read_ok(&m).await;
        assert_eq!(got.objects.len(), 1);
        let n = got.noncurrent.unwrap();
        assert_eq!(n.total(), (2, 130));
        assert_eq!(n.delete_markers, 1);
        assert!(
            n.cells
                .iter()
                .any(|c| c.storage_class == "DEEP_ARCHIVE" && c.bytes == 50)
        );
        // A report of current versions only does not know the noncurrent ones.
        let e = tempfile::tempdir().unwrap();
        let m = write_report(e.path(), "cache", &objs()[..3], WriteFormat::CsvGz, 1000).unwrap();
        let got = read_ok(&m).await;
        assert!(got.noncurrent.is_none());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(narward_formats::date::ymd(0), (1970, 1, 1));
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20.000Z");
    }
}
