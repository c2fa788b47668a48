//! `narward export --parquet DIR`: the index as three Parquet tables (zstd-compressed),
//! readable by DuckDB, Athena, polars or pandas.
//!
//! | file | columns |
//! |---|---|
//! | `objects.parquet` | key, category, size, etag, last_modified (timestamp, UTC), storage_class, link_target (a `file://` symlink's target key) |
//! | `narinfos.parquet` | key, hash, store_path, name, url, compression, file_hash, file_size, nar_hash, nar_size, deriver, ca, signatures, references, error |
//! | `references.parquet` | referrer (hash), reference (hash), reference_path |
//!
//! Hashes are the 32-character nix32 store-path hashes; `file_hash`/`nar_hash` are
//! `sha256:<nix32>`. A narinfo that does not parse has only `key`, `hash` and `error`.
//! Each table is written 64 Ki rows at a time, so export holds no whole table.

use crate::cache_graph::Snapshot;
use crate::listing::{Listing, ObjectRef};
use anyhow::{Context, Result};
use arrow_array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampSecondArray, UInt32Array,
};
use arrow_schema::{Field, Schema};
use std::path::Path;
use std::sync::Arc;

/// Write one batch as a Parquet file.
///
/// # Errors
/// I/O or encoding errors.
pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<()> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?;
    let f = std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

/// Write batches (all with the same columns) as one Parquet file. An empty iterator
/// writes nothing.
///
/// # Errors
/// I/O or encoding errors.
pub fn write_parquet_batches<'a>(
    path: &Path,
    batches: impl Iterator<Item = Vec<(&'a str, ArrayRef)>>,
) -> Result<()> {
    let mut writer: Option<ParquetWriter> = None;
    for columns in batches {
        if writer.is_none() {
            writer = Some(ParquetWriter::create(path, &columns)?);
        }
        if let Some(w) = writer.as_mut() {
            w.write(columns)?;
        }
    }
    if let Some(w) = writer {
        w.close()?;
    }
    Ok(())
}

/// A Parquet file written batch by batch (all batches with the columns of the first).
pub struct ParquetWriter {
    schema: Arc<Schema>,
    writer: parquet::arrow::ArrowWriter<std::fs::File>,
}

impl ParquetWriter {
    /// Create `path` for batches with the names and types of `columns`.
    ///
    /// # Errors
    /// I/O or encoding errors.
    pub fn create(path: &Path, columns: &[(&str, ArrayRef)]) -> Result<ParquetWriter> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let f =
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .set_max_row_group_row_count(Some(1 << 17))
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(f, schema.clone(), Some(props))?;
        Ok(ParquetWriter { schema, writer })
    }

    /// Write one batch.
    ///
    /// # Errors
    /// Columns unlike the first batch's; I/O or encoding errors.
    pub fn write(&mut self, columns: Vec<(&str, ArrayRef)>) -> Result<()> {
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            columns.into_iter().map(|(_, a)| a).collect(),
        )?;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Finish the file.
    ///
    /// # Errors
    /// I/O or encoding errors.
    pub fn close(self) -> Result<()> {
        self.writer.close()?;
        Ok(())
    }
}

fn s(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn i(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}

/// Counts of rows written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportStats {
    pub objects: usize,
    pub narinfos: usize,
    pub references: usize,
}

/// Rows per batch written: what export holds of any table at once.
const BATCH_ROWS: usize = 1 << 16;

/// # Errors
/// I/O errors.
pub fn export_parquet(snap: &Snapshot<'_>, dir: &Path) -> Result<ExportStats> {
    export_in_batches(snap, dir, BATCH_ROWS)
}

/// [`export_parquet`], `rows` rows per batch.
pub(crate) fn export_in_batches(
    snap: &Snapshot<'_>,
    dir: &Path,
    rows: usize,
) -> Result<ExportStats> {
    let index = snap.index;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_objects(&index.objects, dir, rows)?;
    let (n, nrefs) = write_narinfos(snap, dir, rows)?;
    Ok(ExportStats {
        objects: index.objects.len(),
        narinfos: n,
        references: nrefs,
    })
}

/// `objects.parquet`, `rows` objects at a time.
fn write_objects(objects: &Listing, dir: &Path, rows: usize) -> Result<()> {
    let mut w: Option<ParquetWriter> = None;
    let path = dir.join("objects.parquet");
    let rows = rows.max(1);
    for start in (0..objects.len().max(1)).step_by(rows) {
        let o: Vec<ObjectRef<'_>> = (start..(start + rows).min(objects.len()))
            .map(|i| objects.at(i))
            .collect();
        let columns = vec![
            (
                "key",
                s(o.iter().map(|o| Some(o.key().to_string())).collect()),
            ),
            (
                "category",
                s(o.iter()
                    .map(|o| Some(o.category().as_str().to_string()))
                    .collect()),
            ),
            ("size", i(o.iter().map(|o| Some(o.size() as i64)).collect())),
            ("etag", s(o.iter().map(|o| o.etag_string()).collect())),
            (
                "last_modified",
                Arc::new(
                    TimestampSecondArray::from(
                        o.iter().map(|o| o.last_modified()).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ) as ArrayRef,
            ),
            (
                "storage_class",
                s(o.iter()
                    .map(|o| Some(o.storage_class().to_string()))
                    .collect()),
            ),
            (
                "link_target",
                s(o.iter()
                    .map(|o| o.link_target().map(str::to_string))
                    .collect()),
            ),
        ];
        write_batch(&mut w, &path, columns)?;
    }
    w.map_or(Ok(()), ParquetWriter::close)
}

/// The columns of `narinfos.parquet` and `references.parquet` being gathered, one batch.
#[derive(Default)]
struct NarinfoBatch {
    cols: [Vec<Option<String>>; 11],
    file_size: Vec<Option<i64>>,
    nar_size: Vec<Option<i64>>,
    nsig: Vec<Option<u32>>,
    nref: Vec<Option<u32>>,
    referrer: Vec<Option<String>>,
    reference: Vec<Option<String>>,
    reference_path: Vec<Option<String>>,
}

impl NarinfoBatch {
    /// Path `id`'s row and its references.
    fn push(&mut self, snap: &Snapshot<'_>, id: u32) {
        let g = snap.graph;
        let cols = &mut self.cols;
        let hash = g.hash(id).to_string();
        cols[0].push(Some(format!("{hash}.narinfo")));
        cols[1].push(Some(hash));
        match snap.narinfo(id) {
            Some(ni) => {
                cols[2].push(Some(ni.store_path.full_path()));
                cols[3].push(Some(ni.store_path.name.to_string()));
                cols[4].push(Some(ni.url.to_string()));
                cols[5].push(Some(ni.compression_or_default().to_string()));
                cols[6].push(ni.file_hash.map(|h| h.to_nix32_prefixed()));
                cols[7].push(Some(ni.nar_hash.to_nix32_prefixed()));
                cols[8].push(ni.deriver.map(str::to_string));
                cols[9].push(ni.ca.map(str::to_string));
                cols[10].push(None);
                self.file_size.push(ni.file_size.map(|v| v as i64));
                self.nar_size.push(Some(ni.nar_size as i64));
                self.nsig.push(Some(ni.sigs.len() as u32));
                self.nref.push(Some(ni.references.len() as u32));
                let me = ni.store_path.hash.to_string();
                for r in &ni.references {
                    self.referrer.push(Some(me.clone()));
                    self.reference.push(Some(r.hash.to_string()));
                    self.reference_path.push(Some(r.full_path()));
                }
            }
            None => {
                for c in cols.iter_mut().skip(2).take(8) {
                    c.push(None);
                }
                cols[10].push(Some(g.why(id).to_string()));
                self.file_size.push(None);
                self.nar_size.push(None);
                self.nsig.push(None);
                self.nref.push(None);
            }
        }
    }

    /// The narinfo rows and the reference rows, as columns; the batch is left empty.
    #[allow(clippy::type_complexity)]
    fn take(&mut self) -> (Vec<(&'static str, ArrayRef)>, Vec<(&'static str, ArrayRef)>) {
        let b = std::mem::take(self);
        let [
            key,
            hash,
            store_path,
            name,
            url,
            compression,
            file_hash,
            nar_hash,
            deriver,
            ca,
            error,
        ] = b.cols;
        let narinfos = vec![
            ("key", s(key)),
            ("hash", s(hash)),
            ("store_path", s(store_path)),
            ("name", s(name)),
            ("url", s(url)),
            ("compression", s(compression)),
            ("file_hash", s(file_hash)),
            ("file_size", i(b.file_size)),
            ("nar_hash", s(nar_hash)),
            ("nar_size", i(b.nar_size)),
            ("deriver", s(deriver)),
            ("ca", s(ca)),
            (
                "signatures",
                Arc::new(UInt32Array::from(b.nsig)) as ArrayRef,
            ),
            (
                "references",
                Arc::new(UInt32Array::from(b.nref)) as ArrayRef,
            ),
            ("error", s(error)),
        ];
        let references = vec![
            ("referrer", s(b.referrer)),
            ("reference", s(b.reference)),
            ("reference_path", s(b.reference_path)),
        ];
        (narinfos, references)
    }
}

/// `narinfos.parquet` and `references.parquet`, from the [`CacheGraph`] (each narinfo as
/// every reader takes it: printed from the columns, or its quirk text), `rows` paths at a
/// time; returns the row counts.
///
/// [`CacheGraph`]: crate::cache_graph::CacheGraph
fn write_narinfos(snap: &Snapshot<'_>, dir: &Path, rows: usize) -> Result<(usize, usize)> {
    let n = snap.graph.len();
    let (mut narinfos, mut references): (Option<ParquetWriter>, Option<ParquetWriter>) =
        (None, None);
    let mut nrefs = 0;
    let mut batch = NarinfoBatch::default();
    let rows = rows.max(1);
    for start in (0..n.max(1)).step_by(rows) {
        for id in start..(start + rows).min(n) {
            batch.push(snap, id as u32);
            snap.pages.scanned(id as u32);
        }
        nrefs += batch.referrer.len();
        let (rows, refs) = batch.take();
        write_batch(&mut narinfos, &dir.join("narinfos.parquet"), rows)?;
        write_batch(&mut references, &dir.join("references.parquet"), refs)?;
    }
    snap.pages.let_go();
    for w in [narinfos, references].into_iter().flatten() {
        w.close()?;
    }
    Ok((n, nrefs))
}

/// Write `columns` to `w`, creating the file at `path` with them first.
fn write_batch(
    w: &mut Option<ParquetWriter>,
    path: &Path,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<()> {
    match w.as_mut() {
        Some(w) => w.write(columns),
        None => {
            let mut nw = ParquetWriter::create(path, &columns)?;
            nw.write(columns)?;
            *w = Some(nw);
            Ok(())
        }
    }
}
