//! S3 Inventory reports as a source of the object listing.
//!
//! Takes the location of a report's `manifest.json` (a local path, or `s3://bucket/key`
//! with the same `?endpoint=…` parameters as a cache URL), checks `manifest.checksum` when
//! present, reads every data file (CSV.gz or Parquet; ORC is refused with a clear error)
//! and gives the current objects of the source bucket: latest versions, no delete markers.
//! Also writes reports in the same shapes, for tests and benchmarks.

use crate::cache::{self, CacheUrl, S3Options};
use crate::model::ObjectRecord;
use anyhow::{Context, Result, bail};
use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use md5::{Digest, Md5};
use narward_formats::inventory::{self, CsvSchema, Manifest};
use std::io::{BufRead, BufReader, Write};
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

/// Reads the manifest and its files, wherever they are.
enum Source {
    Local(PathBuf),
    S3(aws_sdk_s3::Client),
}

impl Source {
    async fn fetch(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        match self {
            Source::Local(manifest_dir) => {
                let p = local_data_path(manifest_dir, key);
                std::fs::read(&p).with_context(|| format!("inventory file {}", p.display()))
            }
            Source::S3(client) => {
                let o = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| cache::s3_err(format!("GET s3://{bucket}/{key}"), e))?;
                let b = o
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("reading s3://{bucket}/{key}"))?;
                Ok(b.into_bytes().to_vec())
            }
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
    pub objects: Vec<ObjectRecord>,
    /// Rows skipped as non-current versions or delete markers.
    pub skipped_versions: u64,
}

/// Read a whole inventory report.
///
/// # Errors
/// Missing or malformed manifest (named), checksum mismatch, unreadable data files, a bad
/// row (file and line named), an unsupported format.
pub async fn read(loc: &ManifestLocation, max_attempts: u32) -> Result<InventoryListing> {
    let (src, manifest_bytes, checksum, name) = match loc {
        ManifestLocation::Local(p) => {
            let b =
                std::fs::read(p).with_context(|| format!("inventory manifest {}", p.display()))?;
            let ck = std::fs::read_to_string(p.with_file_name("manifest.checksum")).ok();
            let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
            (Source::Local(dir), b, ck, p.display().to_string())
        }
        ManifestLocation::S3 { options, key } => {
            let client = cache::s3_client(options, max_attempts).await?;
            let src = Source::S3(client);
            let b = src.fetch(&options.bucket, key).await?;
            let ck_key = match key.rsplit_once('/') {
                Some((d, _)) => format!("{d}/manifest.checksum"),
                None => "manifest.checksum".to_string(),
            };
            let ck = src
                .fetch(&options.bucket, &ck_key)
                .await
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            (src, b, ck, format!("s3://{}/{key}", options.bucket))
        }
    };
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
    let dest_bucket = manifest
        .destination_bucket
        .rsplit(':')
        .next()
        .unwrap_or(&manifest.destination_bucket)
        .to_string();
    let mut out = InventoryListing {
        manifest: manifest.clone(),
        objects: Vec::new(),
        skipped_versions: 0,
    };
    let pb = crate::progress::bar(manifest.files.len() as u64, "inventory");
    for f in &manifest.files {
        let data = src.fetch(&dest_bucket, &f.key).await?;
        let where_ = f.key.clone();
        match manifest.file_format.as_str() {
            "CSV" => read_csv_gz(&manifest, &data, &where_, &mut out)?,
            "Parquet" => read_parquet(&manifest, data, &where_, &mut out)?,
            other => bail!(
                "inventory {name}: file format {other:?} is not supported (use CSV or Parquet)"
            ),
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    out.objects.sort_by(|a, b| a.key.cmp(&b.key));
    out.objects.dedup_by(|a, b| a.key == b.key);
    // STANDARD is S3's default: stored as None, as the index does.
    for o in &mut out.objects {
        if o.storage_class.as_deref() == Some("STANDARD") {
            o.storage_class = None;
        }
    }
    Ok(out)
}

fn keep_row(
    manifest: &Manifest,
    bucket: &str,
    is_latest: Option<bool>,
    is_delete_marker: Option<bool>,
    out: &mut InventoryListing,
) -> bool {
    if bucket != manifest.source_bucket {
        return false;
    }
    if is_latest == Some(false) || is_delete_marker == Some(true) {
        out.skipped_versions += 1;
        return false;
    }
    true
}

fn read_csv_gz(
    manifest: &Manifest,
    data: &[u8],
    file: &str,
    out: &mut InventoryListing,
) -> Result<()> {
    let schema =
        CsvSchema::parse(&manifest.file_schema).context("inventory manifest fileSchema")?;
    let rd = BufReader::new(flate2::read::MultiGzDecoder::new(data));
    for (i, line) in rd.lines().enumerate() {
        let line = line.with_context(|| format!("inventory file {file}: line {}", i + 1))?;
        if line.is_empty() {
            continue;
        }
        let row = inventory::parse_csv_row(&schema, &line)
            .with_context(|| format!("inventory file {file}: line {}", i + 1))?;
        if !keep_row(
            manifest,
            &row.bucket,
            row.is_latest,
            row.is_delete_marker,
            out,
        ) {
            continue;
        }
        out.objects.push(ObjectRecord {
            key: row.key,
            size: row.size.unwrap_or(0),
            etag: row.etag,
            last_modified: row.last_modified,
            storage_class: row.storage_class,
        });
    }
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

fn read_parquet(
    manifest: &Manifest,
    data: Vec<u8>,
    file: &str,
    out: &mut InventoryListing,
) -> Result<()> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let rd = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(data))
        .with_context(|| format!("inventory file {file}: not a Parquet file"))?
        .with_batch_size(65536)
        .build()
        .with_context(|| format!("inventory file {file}"))?;
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    for batch in rd {
        let batch = batch.with_context(|| format!("inventory file {file}"))?;
        let Some(bucket) = column(&batch, "bucket", &DataType::Utf8, file)? else {
            bail!("inventory file {file}: no column `bucket`");
        };
        let Some(key) = column(&batch, "key", &DataType::Utf8, file)? else {
            bail!("inventory file {file}: no column `key`");
        };
        let size = column(&batch, "size", &DataType::Int64, file)?;
        let lm = match column(&batch, "last_modified_date", &ts, file)? {
            Some(c) => Some(arrow_cast::cast(&c, &DataType::Int64)?),
            None => None,
        };
        let etag = column(&batch, "e_tag", &DataType::Utf8, file)?;
        let sc = column(&batch, "storage_class", &DataType::Utf8, file)?;
        let latest = column(&batch, "is_latest", &DataType::Boolean, file)?;
        let dm = column(&batch, "is_delete_marker", &DataType::Boolean, file)?;
        let s = |a: &ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
        let i = |a: &ArrayRef| a.as_any().downcast_ref::<Int64Array>().cloned();
        let b = |a: &ArrayRef| a.as_any().downcast_ref::<BooleanArray>().cloned();
        let (bucket, key) = (s(&bucket), s(&key));
        let (Some(bucket), Some(key)) = (bucket, key) else {
            bail!("inventory file {file}: bucket/key columns are not strings");
        };
        let size = size.as_ref().and_then(i);
        let lm = lm.as_ref().and_then(i);
        let etag = etag.as_ref().and_then(s);
        let sc = sc.as_ref().and_then(s);
        let latest = latest.as_ref().and_then(b);
        let dm = dm.as_ref().and_then(b);
        for r in 0..batch.num_rows() {
            if key.is_null(r) {
                bail!("inventory file {file}: row {r} has no key");
            }
            let opt_b =
                |a: &Option<BooleanArray>| a.as_ref().filter(|a| !a.is_null(r)).map(|a| a.value(r));
            if !keep_row(manifest, bucket.value(r), opt_b(&latest), opt_b(&dm), out) {
                continue;
            }
            let opt_s = |a: &Option<StringArray>| {
                a.as_ref()
                    .filter(|a| !a.is_null(r))
                    .map(|a| a.value(r).trim_matches('"').to_string())
            };
            let opt_i =
                |a: &Option<Int64Array>| a.as_ref().filter(|a| !a.is_null(r)).map(|a| a.value(r));
            out.objects.push(ObjectRecord {
                key: key.value(r).to_string(),
                size: opt_i(&size).unwrap_or(0).max(0) as u64,
                etag: opt_s(&etag),
                last_modified: opt_i(&lm).map(|ms| ms.div_euclid(1000)),
                storage_class: opt_s(&sc),
            });
        }
    }
    Ok(())
}

/// Which data format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFormat {
    CsvGz,
    Parquet,
}

fn iso8601(secs: i64) -> String {
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = crate::report::growth::ymd(secs);
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
            let got = read(&ManifestLocation::Local(m), 1).await.unwrap();
            assert_eq!(got.manifest.files.len(), 3);
            assert_eq!(got.objects, want, "{fmt:?}");
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
        let e = read(&ManifestLocation::Local(m), 1).await.err().unwrap();
        assert!(
            format!("{e:#}").contains("does not match manifest.checksum"),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn a_bad_row_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let m = write_report(d.path(), "cache", &objs()[..10], WriteFormat::CsvGz, 1000).unwrap();
        let data = d.path().join("data/part-00000.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        writeln!(gz, "\"cache\",\"a\",\"1\",\"\",\"\",\"STANDARD\"\n\"cache\",\"b\",\"notanumber\",\"\",\"\",\"STANDARD\"").unwrap();
        std::fs::write(&data, gz.finish().unwrap()).unwrap();
        let e = read(&ManifestLocation::Local(m), 1).await.err().unwrap();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("part-00000.csv.gz") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(crate::report::growth::ymd(0), (1970, 1, 1));
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20.000Z");
    }
}
