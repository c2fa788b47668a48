//! The embedded index: one state directory holding the cache's object listing and the
//! exact bytes of every narinfo, updated incrementally.
//!
//! Layout of `<state>/index/`:
//! - `meta.json` — cache identity, generation, counts, what the last update did, the
//!   length, record count and SHA-256 of each data file, and a checksum of itself;
//! - `objects.bin.zst` — every object (key, size, ETag, last-modified, storage class,
//!   `file://` symlink target),
//!   sorted by key, bincode records in one zstd stream;
//! - `narinfos.bin.zst` — in indexes written before the columns printed narinfos back
//!   (and by the benchmark generator): every `<hash>.narinfo` object's key, ETag, size and
//!   raw bytes (or the reason it could not be fetched), sorted by key; no longer written;
//! - `debuginfo.bin.zst` — the same for `debuginfo/<build-id>` objects (small JSON links
//!   to a NAR member), so audit can find links that point at nothing, and for
//!   `nix-cache-info`, so audit can check its content.
//! - the cache graph's column files ([`crate::cache_graph::FILES`]): every narinfo parsed
//!   once into arrays (hashes, fields, string heaps, references and referrers as CSR),
//!   written by [`Index::save`] and memory-mapped by [`Index::open_columns`]
//!   ([`columns`]);
//! - `filestat.bin.zst` — `file://` caches: the listing's stat cache
//!   ([`crate::cache::file_stat`], [`generation::FILE_STATS`]);
//! - `quirks.bin.zst` — the exact texts of the narinfos the columns do not print back byte
//!   for byte ([`crate::cache_graph::quirks`]), same stream format.
//!
//! An update writes a complete new generation into `index.new/` and renames it into place,
//! so a crash leaves either the old or the new index, never a mix. The narinfo texts are
//! not stored apart: every text the columns do not print back byte for byte is a quirk,
//! so the columns and the quirks give back every text fetched ([`Index::load`]; an
//! incremental `index` streams them, [`generation`]); every other command reads the columns and the quirks
//! ([`Index::load_view`]).
//!
//! Damage is refused, naming the file: zstd frame checksums, lengths bounded before
//! allocation ([`MAX_RECORD_BYTES`]), counts and SHA-256 checked against `meta.json`
//! ([`read_stream_verified`]). A narinfo whose text changed beyond `Sig:` lines keeps its
//! earlier texts ([`FetchedRecord::earlier`]) across generations.

use crate::cache::file_stat::{self, StatListing};
use crate::cache::{Cache, CacheUrl};
use crate::cache_graph::CacheGraph;
use crate::listing::{Listing, ObjectRef};
use crate::model::{
    BucketVersioning, FetchedRecord, NoncurrentVersions, ObjectRecord, VersioningState,
};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use narward_formats::keys::{self, ObjectKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub mod columns;
pub mod generation;

const MAGIC: &[u8; 12] = b"NARWARD-IDX1";
/// Version 2: `meta.json` records a SHA-256 of every data file and of itself, the zstd
/// frames carry checksums, narinfo records carry their earlier texts. Version 3: object
/// records carry their `file://` symlink target ([`ObjectRecord::link_target`]); an index
/// of an earlier version is refused, naming the version (it does not know which NARs are
/// read through a link), and `index` into a fresh `--state` makes a new one.
pub const FORMAT_VERSION: u32 = 3;

/// No record of an index or plan stream is larger: a length read from a damaged file is
/// refused before anything is allocated.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Narinfos and debuginfo links larger than this are not fetched: they are recorded as
/// present but unknown (so kept), never allowed to make the index unreadable.
pub const MAX_FETCHED_BYTES: u64 = 16 << 20;

/// What `meta.json` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IndexMeta {
    pub format_version: u32,
    /// [`CacheUrl::identity`] of the indexed cache: plans are bound to it.
    pub cache: String,
    /// The cache URL as given to `narward index` (used when `--cache` is omitted later).
    pub cache_url: String,
    /// Increases by one on every update.
    pub generation: u64,
    /// Unix seconds of the update.
    pub updated_at: i64,
    /// `listing` or `inventory <location>`.
    pub source: String,
    pub objects: u64,
    pub narinfos: u64,
    pub unparseable: u64,
    pub last_update: UpdateStats,
    /// Data file name → its digest, checked whenever the file is read.
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
    /// The bucket's versioning and the noncurrent versions the listing knows (absent in
    /// indexes made before narward recorded it: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<BucketVersioning>,
    /// SHA-256 of this meta's JSON with `checksum` empty ([`IndexMeta::seal`]): a damaged or
    /// edited `meta.json` (counts, digests, identity) is refused.
    #[serde(default)]
    pub checksum: String,
}

/// Length, record count and SHA-256 of one stream file, as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl FileDigest {
    /// The digest of a stream file on disk holding `records` records (for writers that do
    /// not use [`StreamWriter`]).
    ///
    /// # Errors
    /// I/O errors.
    pub fn of_file(path: &Path, records: u64) -> Result<FileDigest> {
        let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut r = HashingReader::new(f);
        std::io::copy(&mut r, &mut std::io::sink())
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(r.digest(records))
    }
}

/// What one `index` run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpdateStats {
    pub listed: u64,
    pub narinfo_objects: u64,
    /// Narinfos (and debuginfo entries) fetched because they were new or their ETag/size changed.
    pub fetched: u64,
    /// Narinfos taken from the previous generation unchanged.
    pub reused: u64,
    /// Narinfos of the previous generation that are gone from the listing.
    pub dropped: u64,
    /// Narinfos that could not be fetched (kept as present-but-unknown).
    pub fetch_errors: u64,
    /// Refetched narinfos whose text changed in more than `Sig:` lines since the previous
    /// generation (the earlier text is kept with the record).
    #[serde(default)]
    pub changed: u64,
    /// `file://`: Unix nanoseconds when the listing began; the next run reuses the MD5s
    /// of this listing's stat cache ([`generation::FILE_STATS`]) only for files older
    /// than that ([`crate::cache::file_stat`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_started_ns: Option<i64>,
    /// `file://`: narinfos and debuginfo links whose MD5 (ETag) the listing took from the
    /// previous generation's stat cache instead of reading the file.
    #[serde(default)]
    pub md5_reused: u64,
}

/// The loaded index.
#[derive(Debug, Clone)]
pub struct Index {
    pub meta: IndexMeta,
    /// Sorted by key.
    pub objects: Listing,
    /// Sorted by key.
    pub narinfos: Vec<FetchedRecord>,
    /// `debuginfo/` objects and `nix-cache-info`, sorted by key.
    pub debuginfo: Vec<FetchedRecord>,
}

/// What [`Index::open_view`] returns: the columns (borrow the [`CacheGraph`] with
/// [`View::graph`]) and the quirks' texts, sorted by key.
pub struct View {
    cols: ViewCols,
    /// Objects in the listing of the same generation.
    objects: u64,
    pub quirks: Vec<FetchedRecord>,
}

enum ViewCols {
    Mapped(columns::Mapped),
    Built(Box<crate::cache_graph::build::Columns>),
}

impl View {
    /// The graph over the columns, every length, offset and id checked.
    ///
    /// # Errors
    /// Inconsistent columns (the file is named).
    pub fn graph(&self) -> Result<CacheGraph<'_>> {
        let g = match &self.cols {
            ViewCols::Mapped(m) => m.graph()?,
            ViewCols::Built(c) => CacheGraph::new(c.parts())?,
        };
        if g.objects() != self.objects {
            bail!(
                "the index columns count {} objects, its listing {}: re-run `narward index` with a fresh --state",
                g.objects(),
                self.objects
            );
        }
        Ok(g)
    }

    /// What the commands read: `index` (loaded without narinfo texts, of the same
    /// generation), `graph` (from [`View::graph`]) and the quirks.
    pub fn snapshot<'a>(
        &'a self,
        index: &'a Index,
        graph: &'a CacheGraph<'a>,
    ) -> crate::cache_graph::Snapshot<'a> {
        crate::cache_graph::Snapshot {
            index,
            graph,
            quirks: &self.quirks,
            pages: crate::cache_graph::Pages(match &self.cols {
                ViewCols::Mapped(m) => Some(m),
                ViewCols::Built(_) => None,
            }),
        }
    }
}

pub fn index_dir(state: &Path) -> PathBuf {
    state.join("index")
}

/// Passes bytes through and hashes them.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    fn digest(self, records: u64) -> FileDigest {
        FileDigest {
            records,
            bytes: self.bytes,
            sha256: hex::encode(self.hash.finalize()),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Passes bytes through and hashes them.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// The writer, the hash of what passed and its length.
    fn into_parts(self) -> (W, Sha256, u64) {
        (self.inner, self.hash, self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The record encoding (bincode 1's fixed-int form, as `bincode::serialize` writes it),
/// with every length bounded by [`MAX_RECORD_BYTES`] before anything is allocated.
fn record_options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(MAX_RECORD_BYTES)
}

/// Writes a stream file record by record (magic, then one checksummed zstd stream of a
/// bincode count and bincode records) and returns its [`FileDigest`].
pub struct StreamWriter {
    z: BufWriter<zstd::Encoder<'static, BufWriter<HashingWriter<std::fs::File>>>>,
    expected: u64,
    written: u64,
    path: PathBuf,
}

impl StreamWriter {
    /// # Errors
    /// I/O errors.
    pub fn create(path: &Path, count: u64, level: i32) -> Result<StreamWriter> {
        let f =
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
        let mut w = BufWriter::with_capacity(
            1 << 20,
            HashingWriter {
                inner: f,
                hash: Sha256::new(),
                bytes: 0,
            },
        );
        w.write_all(MAGIC)?;
        let mut enc = zstd::Encoder::new(w, level)?;
        enc.include_checksum(true)?;
        let mut z = BufWriter::with_capacity(1 << 20, enc);
        bincode::serialize_into(&mut z, &count)?;
        Ok(StreamWriter {
            z,
            expected: count,
            written: 0,
            path: path.to_path_buf(),
        })
    }

    /// # Errors
    /// I/O errors.
    pub fn push<T: Serialize>(&mut self, item: &T) -> Result<()> {
        // A record the reader would refuse is not written (the old index stays).
        let size = bincode::serialized_size(item)?;
        if size > MAX_RECORD_BYTES {
            bail!(
                "{}: record {} is {size} bytes, more than the {MAX_RECORD_BYTES} a reader accepts",
                self.path.display(),
                self.written
            );
        }
        bincode::serialize_into(&mut self.z, item)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.written += 1;
        Ok(())
    }

    /// Finish the stream, sync the file to disk and return its digest.
    ///
    /// # Errors
    /// A count different from the one announced; I/O errors.
    pub fn finish(self) -> Result<FileDigest> {
        if self.written != self.expected {
            bail!(
                "{}: wrote {} records, announced {}",
                self.path.display(),
                self.written,
                self.expected
            );
        }
        let enc = self.z.into_inner().map_err(|e| e.into_error())?;
        let mut w = enc.finish()?;
        w.flush()?;
        let h = w.into_inner().map_err(|e| e.into_error())?;
        h.inner
            .sync_all()
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(FileDigest {
            records: self.written,
            bytes: h.bytes,
            sha256: hex::encode(h.hash.finalize()),
        })
    }
}

/// Write `items` as one zstd stream of bincode records (level 3: the index is kept long).
///
/// # Errors
/// I/O errors.
pub fn write_stream<T: Serialize>(path: &Path, items: &[T]) -> Result<FileDigest> {
    write_stream_level(path, items, 3)
}

/// Write `objects` as an object stream (the records, as [`write_stream`] writes them).
///
/// # Errors
/// I/O errors.
pub fn write_listing(path: &Path, objects: &Listing) -> Result<FileDigest> {
    let mut w = StreamWriter::create(path, objects.len() as u64, 3)?;
    for o in objects {
        w.push(&o.to_record())?;
    }
    w.finish()
}

/// [`write_stream`] with a chosen zstd level.
///
/// # Errors
/// I/O errors.
pub fn write_stream_level<T: Serialize>(
    path: &Path,
    items: &[T],
    level: i32,
) -> Result<FileDigest> {
    let mut w = StreamWriter::create(path, items.len() as u64, level)?;
    for it in items {
        w.push(it)?;
    }
    w.finish()
}

/// Call `f` on every record of a stream file, in order, without loading them all.
/// Lengths are bounded ([`MAX_RECORD_BYTES`]) and the zstd frame checksum is verified at
/// the end of the stream, so damage makes this fail, naming the file; but `f` has by then
/// seen the records before the damage. Callers act only once this returns `Ok`.
///
/// # Errors
/// Missing file, wrong magic, truncated or corrupt data (the file is named).
pub fn read_stream<T: for<'de> Deserialize<'de>>(
    path: &Path,
    f: impl FnMut(T) -> Result<()>,
) -> Result<u64> {
    read_checked(path, None, f)
}

/// [`read_stream`] that also checks the file against the digest recorded when it was
/// written: its length before reading, its record count at the header, its SHA-256 at the
/// end. The result is an error for any damage, so a caller that acts only on `Ok` (as plan
/// and audit do: nothing is written before the whole stream has been read) never acts on
/// a damaged file.
///
/// # Errors
/// As [`read_stream`], plus any difference from `expect`.
pub fn read_stream_verified<T: for<'de> Deserialize<'de>>(
    path: &Path,
    expect: &FileDigest,
    f: impl FnMut(T) -> Result<()>,
) -> Result<u64> {
    read_checked(path, Some(expect), f)
}

fn damaged(path: &Path, what: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: damaged ({what}); the index cannot be trusted: re-run `narward index` with a fresh --state",
        path.display()
    )
}

/// The length of the open `file` at `path`, refused unless it is the one `d` recorded.
///
/// # Errors
/// An unreadable file; another length (the file is named).
fn check_len(file: &std::fs::File, path: &Path, d: &FileDigest) -> Result<u64> {
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len != d.bytes {
        return Err(damaged(
            path,
            format_args!("{len} bytes, meta.json recorded {}", d.bytes),
        ));
    }
    Ok(len)
}

fn read_checked<T: for<'de> Deserialize<'de>>(
    path: &Path,
    expect: Option<&FileDigest>,
    mut f: impl FnMut(T) -> Result<()>,
) -> Result<u64> {
    use bincode::Options;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(e) = expect {
        check_len(&file, path, e)?;
    }
    let mut r = BufReader::with_capacity(1 << 20, HashingReader::new(file));
    let mut magic = [0u8; 12];
    r.read_exact(&mut magic)
        .with_context(|| format!("{}: truncated", path.display()))?;
    if &magic != MAGIC {
        bail!("{}: not a narward index file", path.display());
    }
    let mut z = BufReader::with_capacity(1 << 20, zstd::Decoder::with_buffer(r)?);
    let n: u64 = record_options()
        .deserialize_from(&mut z)
        .with_context(|| format!("{}: corrupt header", path.display()))?;
    if let Some(e) = expect
        && n != e.records
    {
        return Err(damaged(
            path,
            format_args!("{n} records, meta.json recorded {}", e.records),
        ));
    }
    for i in 0..n {
        let it: T = record_options().deserialize_from(&mut z).with_context(|| {
            format!(
                "{}: corrupt or truncated at record {i} of {n}",
                path.display()
            )
        })?;
        f(it)?;
    }
    // The rest must be the end of the zstd stream: reading it checks the frame checksum.
    let mut rest = [0u8; 1];
    let extra = z
        .read(&mut rest)
        .with_context(|| format!("{}: corrupt after the last record", path.display()))?;
    if extra != 0 {
        bail!("{}: corrupt: data after the last record", path.display());
    }
    let mut raw = z.into_inner().finish();
    std::io::copy(&mut raw, &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    let got = raw.into_inner().digest(n);
    if let Some(e) = expect
        && got != *e
    {
        return Err(damaged(
            path,
            format_args!("SHA-256 {}, meta.json recorded {}", got.sha256, e.sha256),
        ));
    }
    Ok(n)
}

/// Read the object listing; STANDARD is stored as `None` (S3's default) so the common
/// case holds no string.
/// The records go straight into the [`Listing`]: a key out of order or listed twice is
/// refused, naming the file.
fn read_objects(path: &Path, expect: &FileDigest) -> Result<Listing> {
    // Room for the recorded count, but no more than one object per 8 bytes of the file
    // (a listing compresses to about 35 B per object; more objects simply grow the
    // columns), so a forged count cannot reserve more than a few times the file's length.
    let cap = usize::try_from(expect.records.min(expect.bytes / 8)).unwrap_or(0);
    let mut v = Listing::with_capacity(cap);
    read_stream_verified(path, expect, |mut o: ObjectRecord| {
        if o.storage_class.as_deref() == Some(crate::cost::STANDARD) {
            o.storage_class = None;
        }
        v.push(o).map_err(|e| damaged(path, e))
    })?;
    v.shrink_to_fit();
    Ok(v)
}

fn read_all<T: for<'de> Deserialize<'de>>(path: &Path, expect: &FileDigest) -> Result<Vec<T>> {
    let mut v = Vec::new();
    read_stream_verified(path, expect, |t| {
        v.push(t);
        Ok(())
    })?;
    Ok(v)
}

pub const OBJECTS_FILE: &str = "objects.bin.zst";
pub const NARINFOS_FILE: &str = "narinfos.bin.zst";
pub const DEBUGINFO_FILE: &str = "debuginfo.bin.zst";
/// The exact texts of the narinfos the columns cannot stand in for
/// ([`crate::cache_graph::quirks`]), same stream format, sorted by key.
pub const QUIRKS_FILE: &str = "quirks.bin.zst";

impl IndexMeta {
    fn digest_of_content(&self) -> Result<String> {
        let mut m = self.clone();
        m.checksum = String::new();
        Ok(hex::encode(Sha256::digest(serde_json::to_vec(&m)?)))
    }

    /// Set [`IndexMeta::checksum`] for the current content.
    ///
    /// # Errors
    /// Serialization errors.
    pub fn seal(&mut self) -> Result<()> {
        self.checksum = self.digest_of_content()?;
        Ok(())
    }

    /// The recorded digest of data file `name` (counts cross-checked with the meta's own).
    ///
    /// # Errors
    /// No digest recorded, or one that contradicts the meta's counts.
    pub fn file(&self, name: &str) -> Result<&FileDigest> {
        let d = self
            .files
            .get(name)
            .with_context(|| format!("meta.json records no digest for {name}"))?;
        let count = match name {
            OBJECTS_FILE => Some(self.objects),
            NARINFOS_FILE => Some(self.narinfos),
            _ => None,
        };
        if count.is_some_and(|c| c != d.records) {
            bail!(
                "meta.json: {name} holds {} records but the index counts {}",
                d.records,
                count.unwrap_or(0)
            );
        }
        Ok(d)
    }
}

/// Parse `meta.json` strictly: known version, known fields only, checksum intact.
fn parse_meta(p: &Path, t: &str) -> Result<IndexMeta> {
    let v: serde_json::Value =
        serde_json::from_str(t).map_err(|e| damaged(p, format_args!("not JSON: {e}")))?;
    let version = v.get("format_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        bail!(
            "{}: index format {} is not supported (expected {FORMAT_VERSION}); re-run `narward index` with a fresh --state",
            p.display(),
            version.map_or_else(|| "(none)".to_string(), |x| x.to_string())
        );
    }
    let m: IndexMeta = serde_json::from_value(v).map_err(|e| damaged(p, e))?;
    let want = m.digest_of_content()?;
    if m.checksum != want {
        return Err(damaged(
            p,
            format_args!(
                "its checksum {:?} does not match its content {want}",
                m.checksum
            ),
        ));
    }
    Ok(m)
}

#[cfg(test)]
impl Index {
    /// An index held in memory for tests: generation 1 of `file:///c`, `objects` and
    /// `narinfos` (each sorted by key), no debuginfo.
    pub(crate) fn for_tests(objects: Listing, narinfos: Vec<FetchedRecord>) -> Index {
        Index {
            meta: IndexMeta {
                format_version: FORMAT_VERSION,
                cache: "file:///c".into(),
                cache_url: "file:///c".into(),
                generation: 1,
                updated_at: 0,
                source: "test".into(),
                objects: objects.len() as u64,
                narinfos: narinfos.len() as u64,
                unparseable: 0,
                last_update: UpdateStats::default(),
                files: BTreeMap::new(),
                versioning: None,
                checksum: String::new(),
            },
            objects,
            narinfos,
            debuginfo: Vec::new(),
        }
    }
}

impl Index {
    /// Whether `state` holds an index.
    pub fn exists(state: &Path) -> bool {
        index_dir(state).join("meta.json").exists() || state.join("index.old/meta.json").exists()
    }

    fn current_dir(state: &Path) -> PathBuf {
        let d = index_dir(state);
        if d.join("meta.json").exists() {
            d
        } else {
            // A crash between the two renames of `save` leaves the old generation here.
            state.join("index.old")
        }
    }

    /// # Errors
    /// No index in `state`, or an unreadable/damaged `meta.json`.
    pub fn load_meta(state: &Path) -> Result<IndexMeta> {
        let p = Self::current_dir(state).join("meta.json");
        let b = match std::fs::read(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no index in {} (run `narward index` first)",
                state.display()
            ),
            r => r.with_context(|| format!("reading {}", p.display()))?,
        };
        let t = std::str::from_utf8(&b).map_err(|e| damaged(&p, e))?;
        parse_meta(&p, t)
    }

    /// Load everything, every narinfo text included (tests, small tools; an incremental
    /// `index` streams the same records instead: [`generation::for_each_narinfo`]). The texts come from the narinfo stream of an index that has
    /// one, else from the columns and the quirks ([`crate::cache_graph::records`]: byte for
    /// byte the texts fetched). Every other command reads the
    /// [`crate::cache_graph::CacheGraph`] ([`Index::load_view`], [`Index::open_columns`])
    /// instead of parsing the texts again.
    ///
    /// # Errors
    /// As [`Index::load_meta`], plus damaged data files (named).
    pub fn load(state: &Path) -> Result<Index> {
        let mut idx = Self::load_without_narinfos(state)?;
        let d = Self::current_dir(state);
        idx.narinfos = if idx.meta.files.contains_key(NARINFOS_FILE) {
            // An index written with the narinfo stream (before the columns printed the
            // narinfos back, or by the benchmark generator).
            read_all(&d.join(NARINFOS_FILE), idx.meta.file(NARINFOS_FILE)?)?
        } else {
            let view = Self::open_view(state, &idx.meta, &idx.objects)?;
            let graph = view.graph()?;
            crate::cache_graph::records(&view.snapshot(&idx, &graph))
        };
        if idx.narinfos.len() as u64 != idx.meta.narinfos {
            return Err(damaged(
                &d.join("meta.json"),
                format_args!(
                    "{} narinfo records, meta.json counts {}",
                    idx.narinfos.len(),
                    idx.meta.narinfos
                ),
            ));
        }
        Ok(idx)
    }

    /// Load everything but the narinfo texts (they can be streamed with
    /// [`Index::stream_narinfos`]): what planning a large cache needs in memory.
    ///
    /// # Errors
    /// As [`Index::load`].
    pub fn load_without_narinfos(state: &Path) -> Result<Index> {
        let meta = Self::load_meta(state)?;
        let d = Self::current_dir(state);
        Ok(Index {
            objects: read_objects(&d.join(OBJECTS_FILE), meta.file(OBJECTS_FILE)?)?,
            narinfos: Vec::new(),
            debuginfo: read_all(&d.join(DEBUGINFO_FILE), meta.file(DEBUGINFO_FILE)?)?,
            meta,
        })
    }

    /// Stream the narinfo records of the generation `meta` describes into `f`, verified
    /// against `meta` ([`read_stream_verified`]: act only once this returns `Ok`).
    ///
    /// # Errors
    /// A missing or damaged narinfo file (named); `f`'s errors.
    pub fn stream_narinfos(
        state: &Path,
        meta: &IndexMeta,
        f: impl FnMut(FetchedRecord) -> Result<()>,
    ) -> Result<u64> {
        read_stream_verified(&Self::narinfos_path(state), meta.file(NARINFOS_FILE)?, f)
    }

    /// Stream the object records of the generation `meta` describes into `f`, in key
    /// order, as `T` (an [`ObjectRecord`], or what a reader needs of one), verified
    /// against `meta` ([`read_stream_verified`]: act only once this
    /// returns `Ok`).
    ///
    /// # Errors
    /// A missing or damaged listing file (named); `f`'s errors.
    pub fn stream_objects<T: for<'de> Deserialize<'de>>(
        state: &Path,
        meta: &IndexMeta,
        f: impl FnMut(T) -> Result<()>,
    ) -> Result<u64> {
        let path = Self::current_dir(state).join(OBJECTS_FILE);
        read_stream_verified(&path, meta.file(OBJECTS_FILE)?, f)
    }

    /// Path of the narinfo stream of the current generation (for streaming readers).
    pub fn narinfos_path(state: &Path) -> PathBuf {
        Self::current_dir(state).join(NARINFOS_FILE)
    }

    /// The column files of the current generation, mapped and verified against `meta`
    /// (`None` for an index written before narward wrote them). Borrow the
    /// [`crate::cache_graph::CacheGraph`] from it with [`columns::Mapped::graph`].
    ///
    /// # Errors
    /// A missing or damaged column file (named).
    pub fn open_columns(state: &Path, meta: &IndexMeta) -> Result<Option<columns::Mapped>> {
        if !columns::present(meta) {
            return Ok(None);
        }
        columns::Mapped::open(&Self::current_dir(state), meta).map(Some)
    }

    /// The index without its narinfo texts ([`Index::load_without_narinfos`]: the listing,
    /// the debuginfo records) and its [`View`]: what every command but `index` and `plan`
    /// reads.
    ///
    /// # Errors
    /// As [`Index::open_view`].
    pub fn load_view(state: &Path) -> Result<(Index, View)> {
        let idx = Self::load_without_narinfos(state)?;
        let view = Self::open_view(state, &idx.meta, &idx.objects)?;
        Ok((idx, view))
    }

    /// The one parsed view of the current generation for every command but `plan` (which
    /// streams its own fallback): the mapped column files and the quirks file, or, for an
    /// index written before they existed, both built in memory from the narinfo stream.
    /// `objects` is the listing of the same generation. Only this fallback reads narinfo
    /// texts; nothing is returned before every file was read and checked.
    ///
    /// # Errors
    /// A missing or damaged index file (named).
    pub fn open_view(state: &Path, meta: &IndexMeta, objects: &Listing) -> Result<View> {
        let d = Self::current_dir(state);
        if let Some(m) = Self::open_columns(state, meta)?
            && meta.files.contains_key(QUIRKS_FILE)
        {
            let quirks = read_all(&d.join(QUIRKS_FILE), meta.file(QUIRKS_FILE)?)?;
            return Ok(View {
                cols: ViewCols::Mapped(m),
                objects: objects.len() as u64,
                quirks,
            });
        }
        let (cols, quirks) = crate::cache_graph::with_quirks(objects, |f| {
            Self::stream_narinfos(state, meta, |r| f(&r)).map(|_| ())
        })?;
        Ok(View {
            cols: ViewCols::Built(Box::new(cols)),
            objects: objects.len() as u64,
            quirks,
        })
    }

    /// Path of the object stream of the current generation.
    pub fn objects_path(state: &Path) -> PathBuf {
        Self::current_dir(state).join(OBJECTS_FILE)
    }

    /// Write this index as the current generation, atomically; records the digest of
    /// every data file in the meta and seals it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&mut self, state: &Path) -> Result<()> {
        let mut g = generation::NewGeneration::create(
            state,
            &self.objects,
            self.narinfos.len() as u64,
            self.debuginfo.len() as u64,
        )?;
        for n in &self.narinfos {
            g.push_narinfo(n)?;
        }
        for d in &self.debuginfo {
            g.push_debuginfo(d)?;
        }
        g.finish(&mut self.meta)
    }

    /// The object with this key.
    pub fn object(&self, key: &str) -> Option<ObjectRef<'_>> {
        self.objects.find(key).and_then(|i| self.objects.get(i))
    }

    /// The stored narinfo with this key.
    pub fn narinfo(&self, key: &str) -> Option<&FetchedRecord> {
        self.narinfos
            .binary_search_by(|o| o.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.narinfos[i])
    }

    /// Number of stored narinfos that do not parse.
    pub fn count_unparseable(&self) -> u64 {
        self.narinfos.iter().filter(|n| n.parse().is_err()).count() as u64
    }
}

/// Seal `meta` ([`IndexMeta::seal`]) and write it as `dir/meta.json`, synced to disk.
///
/// # Errors
/// I/O errors.
pub fn write_meta(dir: &Path, meta: &mut IndexMeta) -> Result<()> {
    meta.seal()?;
    let p = dir.join("meta.json");
    let mut f = std::fs::File::create(&p).with_context(|| format!("writing {}", p.display()))?;
    f.write_all(serde_json::to_string_pretty(meta)?.as_bytes())?;
    f.sync_all()
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// Where the listing comes from.
pub enum ListingSource {
    /// List the cache itself.
    Live,
    /// A listing read from an S3 Inventory report (see [`crate::inventory`]).
    Inventory {
        location: String,
        /// Sorted by key ([`crate::inventory::InventoryListing::objects`]).
        objects: Box<Listing>,
        /// Noncurrent versions, when the report lists all versions.
        noncurrent: Option<NoncurrentVersions>,
    },
}

/// Bring the index in `state` up to date with `cache`: list (or take the inventory's
/// listing), fetch only narinfos that are new or whose ETag/size changed, drop the ones
/// that are gone, and save a new generation. Returns the new generation's meta.
///
/// Streams: the previous generation's unchanged rows are taken over from its columns
/// (as they are where [`generation::TakeOver`] allows, else printed back as records with
/// its quirks) and the fetched ones arrive, both in key order, each written to the new
/// generation and its column builder as it comes ([`generation`]), so no more narinfo
/// texts are held than are in flight (plus the previous texts of the narinfos that
/// changed).
///
/// # Errors
/// The state holds an index of another cache; listing fails; saving fails. Individual
/// narinfo fetch failures are not errors: they are recorded as present-but-unknown.
pub async fn update(
    state: &Path,
    url_text: &str,
    url: &CacheUrl,
    cache: &Cache,
    source: ListingSource,
    concurrency: usize,
) -> Result<(IndexMeta, UpdateStats)> {
    let fresh = !state.exists();
    let lock = lock_state(state)?;
    let r = update_locked(state, url_text, url, cache, source, concurrency).await;
    if r.is_err() && fresh {
        // A first `index` that fails leaves nothing behind (not even the lock file).
        drop(lock);
        let _ = std::fs::remove_dir_all(state);
    }
    r
}

/// The meta of the previous generation, if any (its files are checked as they are read,
/// by [`generation::Reuse::scan`], before anything is built on them).
fn load_previous(state: &Path, identity: &str) -> Result<Option<IndexMeta>> {
    if !Index::exists(state) {
        return Ok(None);
    }
    let prev = Index::load_meta(state)?;
    if prev.cache != identity {
        bail!(
            "state directory {} holds an index of {}, not {identity}; use another --state",
            state.display(),
            prev.cache
        );
    }
    Ok(Some(prev))
}

/// Fetch one narinfo or debuginfo object; failures become a record's `fetch_error`.
async fn fetch_record(cache: &Cache, o: ObjectRef<'_>) -> FetchedRecord {
    let r = if o.size() > MAX_FETCHED_BYTES {
        Ok(None)
    } else {
        cache.get(&o.key()).await
    };
    let (text, fetch_error) = match r {
        Ok(Some(b)) if b.len() as u64 > MAX_FETCHED_BYTES => (
            Vec::new(),
            Some(format!("larger than {MAX_FETCHED_BYTES} bytes: not read")),
        ),
        Ok(Some(b)) => (b, None),
        Ok(None) if o.size() > MAX_FETCHED_BYTES => (
            Vec::new(),
            Some(format!("larger than {MAX_FETCHED_BYTES} bytes: not read")),
        ),
        Ok(None) => (
            Vec::new(),
            Some("listed but not found when fetched".to_string()),
        ),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    FetchedRecord {
        key: o.key().to_string(),
        etag: o.etag().map(|e| e.to_string()),
        size: o.size(),
        text,
        fetch_error,
        earlier: Vec::new(),
    }
}

/// The bucket's versioning (GetBucketVersioning; `file://` caches have none) and the
/// noncurrent versions known: those of an inventory of all versions, none in a bucket that
/// was never versioned, else unknown (a live listing lists current objects only). A refused
/// GetBucketVersioning is no error: the state is then unknown, which plans treat like a
/// versioned bucket.
async fn bucket_versioning(
    cache: &Cache,
    noncurrent: Option<NoncurrentVersions>,
) -> BucketVersioning {
    let (state, source) = match cache.versioning().await {
        Ok(s) => (s, cache.versioning_source().to_string()),
        Err(e) => (
            VersioningState::Unknown,
            format!("unknown: GetBucketVersioning failed: {e:#}"),
        ),
    };
    let noncurrent = match (noncurrent, state) {
        (Some(n), _) => Some(n),
        (None, VersioningState::Unversioned) => Some(NoncurrentVersions::default()),
        (None, _) => None,
    };
    BucketVersioning {
        state,
        source,
        noncurrent,
    }
}

async fn update_locked(
    state: &Path,
    url_text: &str,
    url: &CacheUrl,
    cache: &Cache,
    source: ListingSource,
    concurrency: usize,
) -> Result<(IndexMeta, UpdateStats)> {
    let identity = url.identity();
    let previous = load_previous(state, &identity)?;
    let (objects, source_desc, noncurrent, stats) = match source {
        ListingSource::Live => {
            let (objects, stats) = list_live(state, previous.as_ref(), cache).await?;
            (objects, "listing".to_string(), None, stats)
        }
        ListingSource::Inventory {
            location,
            objects,
            noncurrent,
        } => (*objects, format!("inventory {location}"), noncurrent, None),
    };
    let versioning = bucket_versioning(cache, noncurrent).await;
    let mut meta = IndexMeta {
        format_version: FORMAT_VERSION,
        cache: identity,
        cache_url: url_text.to_string(),
        generation: previous.as_ref().map_or(1, |p| p.generation + 1),
        updated_at: now(),
        source: source_desc,
        objects: objects.len() as u64,
        narinfos: 0,
        unparseable: 0,
        last_update: UpdateStats::default(),
        files: BTreeMap::new(),
        versioning: Some(versioning),
        checksum: String::new(),
    };
    let stats = write_generation(
        state,
        previous.as_ref(),
        (&objects, stats),
        cache,
        concurrency,
        &mut meta,
    )
    .await?;
    Ok((meta, stats))
}

/// A `file://` listing's stat cache: when it began, and the stat and MD5 of every
/// narinfo and debuginfo file (sorted by device and inode).
struct FileStats {
    started_ns: i64,
    listing: StatListing,
}

/// List the cache itself, sorted by key; a `file://` cache takes the MD5s of files
/// unchanged since the previous generation from its stat cache, and gives its own.
///
/// # Errors
/// Listing fails; the previous generation's stat cache is damaged (named).
async fn list_live(
    state: &Path,
    previous: Option<&IndexMeta>,
    cache: &Cache,
) -> Result<(Listing, Option<FileStats>)> {
    let prev = match (previous, cache) {
        (Some(m), Cache::File(_)) => generation::stat_cache(&Index::current_dir(state), m)?,
        _ => None,
    };
    let started_ns = file_stat::now_ns();
    let pb = crate::progress::spinner("listing");
    let (objects, stats) = cache.list_cached(prev.as_ref(), &|n| pb.inc(n)).await?;
    pb.finish_and_clear();
    let stats = stats.map(|listing| FileStats {
        started_ns,
        listing,
    });
    Ok((objects, stats))
}

/// The records of the listing's narinfos and debuginfo links, each the previous
/// generation's when unchanged or fetched now, written as a new generation in key order.
async fn write_generation(
    state: &Path,
    previous: Option<&IndexMeta>,
    (objects, file_stats): (&Listing, Option<FileStats>),
    cache: &Cache,
    concurrency: usize,
    meta: &mut IndexMeta,
) -> Result<UpdateStats> {
    use generation::{OldColumns, PreviousRecords, Reuse, TakeOver, record_kind};
    let prev_dir = Index::current_dir(state);
    let Reuse {
        unchanged,
        mut changed,
        dropped,
        unchanged_ids,
    } = match previous {
        Some(m) => Reuse::scan(&prev_dir, m, objects)?,
        None => Reuse::none(objects),
    };
    let is_unchanged = |i: usize| unchanged.get(i).copied().unwrap_or(false);
    // The listed objects that get a record: (object index, whether a narinfo).
    let wanted = || {
        objects
            .iter()
            .enumerate()
            .filter_map(|(i, o)| record_kind(&o.key()).map(|n| (i, n)))
    };
    // The previous generation's columns, and how their rows are taken over.
    let old = match previous {
        Some(m) => OldColumns::open(&prev_dir, m)?,
        None => None,
    };
    let old_graph = old.as_ref().map(OldColumns::graph).transpose()?;
    let mut take = match (&old, &old_graph) {
        (Some(o), Some(g)) => Some(TakeOver::new(o, g, unchanged_ids, objects)),
        _ => None,
    };
    let (mut records, mut narinfo_count, mut reused) = (0u64, 0u64, 0u64);
    for (i, is_narinfo) in wanted() {
        records += 1;
        narinfo_count += u64::from(is_narinfo);
        reused += u64::from(is_unchanged(i) && !is_cache_info(&objects.at(i).key()));
    }
    let same_count = take.as_ref().map_or(0, TakeOver::same_count);
    let mut stats = UpdateStats {
        listed: objects.len() as u64,
        narinfo_objects: narinfo_count,
        dropped,
        reused,
        listing_started_ns: file_stats.as_ref().map(|f| f.started_ns),
        md5_reused: file_stats.as_ref().map_or(0, |f| f.listing.md5_reused),
        ..UpdateStats::default()
    };
    let to_fetch = wanted()
        .filter(|&(i, _)| !is_unchanged(i))
        .map(|(i, _)| objects.at(i));
    let pb = crate::progress::bar(to_fetch.clone().count() as u64, "narinfos");
    // `buffered` keeps the listing's order, so fetched records arrive in key order.
    let mut fetched = futures::stream::iter(to_fetch)
        .map(|o| {
            let pb = &pb;
            async move {
                let r = fetch_record(cache, o).await;
                pb.inc(1);
                r
            }
        })
        .buffered(concurrency.max(1));
    // The previous records: narinfos handed over by `take` from the old columns (or,
    // for a generation with a narinfo stream, read from it on a thread), debuginfo
    // records read on a thread.
    let mut prev = match previous {
        Some(m) => Some((
            old.is_none()
                .then(|| PreviousRecords::narinfos(&prev_dir, m)),
            PreviousRecords::debuginfo(&prev_dir, m)?,
        )),
        None => None,
    };
    let mut out = generation::NewGeneration::create(
        state,
        objects,
        narinfo_count - same_count,
        records - narinfo_count,
    )?;
    if let Some(f) = file_stats {
        out.file_stats(&f.listing.stats)?;
        // Written: not held while the narinfos are read (56 B each).
        drop(f);
    }
    for (i, is_narinfo) in wanted() {
        let o = objects.at(i);
        let key = o.key();
        let key = key.as_str();
        let rec = match prev.as_mut() {
            Some((n, d)) if is_unchanged(i) => match (is_narinfo, n, take.as_mut()) {
                (false, ..) => d.take(key).await?,
                (true, Some(n), _) => n.take(key).await?,
                (true, None, Some(t)) => {
                    t.hand_over(&mut out, i)?;
                    continue;
                }
                (true, None, ..) => bail!("internal: no previous columns for {key}"),
            },
            _ => {
                let Some(mut r) = fetched.next().await else {
                    bail!("internal: no fetched record for {key}");
                };
                if let Some(p) = changed.remove(key) {
                    r.carry_earlier(p);
                    stats.changed += u64::from(r.changed());
                }
                if !is_cache_info(key) {
                    stats.fetched += 1;
                    stats.fetch_errors += u64::from(r.fetch_error.is_some());
                }
                r
            }
        };
        if is_narinfo {
            out.push_narinfo(&rec)?;
        } else {
            out.push_debuginfo(&rec)?;
        }
    }
    pb.finish_and_clear();
    if let Some((n, d)) = prev {
        if let Some(n) = n {
            n.finish().await?;
        }
        d.finish().await?;
    }
    meta.narinfos = narinfo_count;
    meta.unparseable = out.unparseable();
    meta.last_update = stats.clone();
    let late = |new: &CacheGraph<'_>| take.as_ref().map_or(Ok(Vec::new()), |t| t.late_quirks(new));
    out.finish_with(meta, &late)?;
    Ok(stats)
}

fn is_cache_info(key: &str) -> bool {
    matches!(keys::classify(key), ObjectKind::CacheInfo)
}

/// Hold an exclusive lock on the state directory while updating it, so two `narward
/// index` runs cannot interleave. Released when the returned file is dropped.
///
/// # Errors
/// The state directory cannot be created, or another process holds the lock.
pub fn lock_state(state: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(state)
        .with_context(|| format!("creating state directory {}", state.display()))?;
    lock_file(&state.join("lock"), || {
        format!(
            "state directory {} is in use by another narward process",
            state.display()
        )
    })
}

/// Hold an exclusive lock on the file `p` (created if needed; its directory must exist),
/// released when the returned file is dropped. Every lock of the state directory (index,
/// apply/recover/restore, access statistics) goes through here.
///
/// # Errors
/// The file cannot be opened, or another process holds the lock (`busy()` says which).
pub fn lock_file(p: &Path, busy: impl FnOnce() -> String) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .with_context(|| format!("opening {}", p.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!("{}", busy()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", p.display()))
        }
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use narward_formats::store_path::StorePathHash;

    fn small_index() -> Index {
        let rec = FetchedRecord {
            key: "00000000000000000000000000000000.narinfo".into(),
            etag: None,
            size: 3,
            text: b"abc".to_vec(),
            fetch_error: None,
            earlier: Vec::new(),
        };
        // A narinfo record is always of a listed object.
        let objects = Listing::from_records(vec![ObjectRecord {
            key: "00000000000000000000000000000000.narinfo".into(),
            size: 3,
            etag: None,
            last_modified: None,
            storage_class: None,
            link_target: None,
        }])
        .unwrap();
        let mut index = Index::for_tests(objects, vec![rec]);
        index.meta.unparseable = 1;
        index
    }

    #[test]
    fn the_second_pass_of_an_update_does_not_hash_the_previous_columns_again() {
        let d = tempfile::tempdir().unwrap();
        small_index().save(d.path()).unwrap();
        let meta = Index::load_meta(d.path()).unwrap();
        let dir = Index::current_dir(d.path());
        assert!(columns::present(&meta));
        let hashed = || columns::HASHED.with(std::cell::Cell::get);
        let read = |again: bool| {
            let mut out = Vec::new();
            let push = |r| {
                out.push(r);
                Ok(())
            };
            if again {
                generation::for_each_narinfo_again(&dir, &meta, push).unwrap();
            } else {
                generation::for_each_narinfo(&dir, &meta, push).unwrap();
            }
            out
        };
        let before = hashed();
        let first = read(false);
        assert!(hashed() > before, "the first reading hashes the columns");
        let before = hashed();
        assert_eq!(read(true), first);
        assert_eq!(hashed(), before, "the second reading hashed them again");
        // A resized column file is still refused by the second reading.
        let p = dir.join(crate::cache_graph::FILES[0].0);
        let mut b = std::fs::read(&p).unwrap();
        b.push(0);
        std::fs::write(&p, b).unwrap();
        let e = generation::for_each_narinfo_again(&dir, &meta, |_| Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
    }

    /// A file:// cache over the store path hashes `hashes`: a narinfo and a NAR object
    /// for every path that has a text.
    struct Scene {
        hashes: Vec<StorePathHash>,
        /// Per hash: the narinfo text, when the path is in the cache.
        texts: Vec<Option<String>>,
    }

    /// A small xorshift: each case of the test below is drawn from one seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
        fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
            of[(self.next() % of.len() as u64) as usize]
        }
    }

    impl Scene {
        /// A narinfo of path `i` named `name`, referencing `refs` (hash index, name), in
        /// Nix's form, or with a quirk (an old `System:` line), or unparseable.
        fn text(&self, rng: &mut Rng, i: usize, name: &str, refs: &[(usize, String)]) -> String {
            let h = |j: usize| self.hashes[j];
            let nar = narward_formats::nixbase32::encode(&[i as u8; 32]);
            let url = format!("nar/{nar}.nar.xz");
            let me = narward_formats::store_path::StorePath { hash: h(i), name };
            let mut ni = narward_formats::narinfo::NarInfo::new(
                me,
                &url,
                narward_formats::hash::Sha256([7; 32]),
                1000 + i as u64,
            );
            ni.compression = Some("xz");
            ni.references = refs
                .iter()
                .map(|(j, n)| narward_formats::store_path::StorePath {
                    hash: h(*j),
                    name: n,
                })
                .collect();
            ni.references.sort_unstable();
            ni.references.dedup();
            ni.sigs = vec!["k-1:AAAA"];
            let mut t = ni.to_string();
            if rng.chance(10) {
                t.push_str("System: x86_64-linux\n");
            } else if rng.chance(4) {
                t = "garbage\n".into();
            }
            t
        }

        /// The name path `j` is referenced under: its own when it is in the cache (as Nix
        /// writes it), else one of a few (a hole; the path may come later under another).
        fn ref_name(&self, rng: &mut Rng, names: &[String], j: usize, hidden: &str) -> String {
            if self.texts[j].is_some() {
                names[j].clone()
            } else {
                rng.pick(&["gone", "x-1.0", hidden]).to_string()
            }
        }

        fn write(&self, dir: &Path) {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir.join("nar")).unwrap();
            for (i, t) in self.texts.iter().enumerate() {
                if let Some(t) = t {
                    std::fs::write(dir.join(format!("{}.narinfo", self.hashes[i])), t).unwrap();
                    let nar = narward_formats::nixbase32::encode(&[i as u8; 32]);
                    std::fs::write(dir.join(format!("nar/{nar}.nar.xz")), b"nar").unwrap();
                }
            }
        }
    }

    fn index_file_cache(state: &Path, cache: &Path) -> IndexMeta {
        let url_text = format!("file://{}", cache.display());
        let url = CacheUrl::parse(&url_text).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = Cache::open(&url, 1).await.unwrap();
            update(state, &url_text, &url, &c, ListingSource::Live, 4)
                .await
                .unwrap()
                .0
        })
    }

    /// A cache of up to 12 paths, indexed, then changed at random: paths gone, added
    /// (filling holes, under the holes' names or others), re-signed, renamed (so their
    /// referrers become quirks), references hidden in names. The incremental `index` that
    /// takes rows of the previous generation over as they are writes the very files of
    /// the one that prints every row back and parses it again.
    #[test]
    fn rows_taken_over_as_they_are_make_the_generation_printed_back_records_make() {
        let mut taken = 0;
        for seed in 1..=100u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let hashes: Vec<StorePathHash> = (0..12)
                .map(|_| {
                    let mut b = [0u8; 20];
                    b.iter_mut().for_each(|x| *x = rng.next() as u8);
                    StorePathHash(b)
                })
                .collect();
            let mut scene = Scene {
                texts: vec![None; hashes.len()],
                hashes,
            };
            let n = scene.hashes.len();
            // A name may hold another path's hash: a reference hidden in it.
            let hidden = format!("wrap-{}", scene.hashes[n - 1]);
            let mut names: Vec<String> = (0..n)
                .map(|_| rng.pick(&["a", "b-1.0", &hidden]).to_string())
                .collect();
            let present: Vec<bool> = (0..n).map(|_| rng.chance(70)).collect();
            for (t, &p) in scene.texts.iter_mut().zip(&present) {
                *t = p.then(String::new);
            }
            let refs_of = |scene: &Scene, rng: &mut Rng, names: &[String]| {
                let mut refs = Vec::new();
                for j in 0..n {
                    if rng.chance(30) {
                        refs.push((j, scene.ref_name(rng, names, j, &hidden)));
                    }
                }
                refs
            };
            for i in (0..n).filter(|&i| present[i]) {
                let refs = refs_of(&scene, &mut rng, &names);
                scene.texts[i] = Some(scene.text(&mut rng, i, &names[i], &refs));
            }
            let d = tempfile::tempdir().unwrap();
            let cache = d.path().join("cache");
            scene.write(&cache);
            let base = d.path().join("base");
            index_file_cache(&base, &cache);
            for i in 0..n {
                match scene.texts[i].clone() {
                    Some(_) if rng.chance(12) => scene.texts[i] = None,
                    Some(t) if rng.chance(12) => {
                        scene.texts[i] = Some(format!("{t}Sig: extra-1:BBBB\n"));
                    }
                    Some(_) if rng.chance(8) => {
                        names[i] = "renamed".into();
                        let refs = refs_of(&scene, &mut rng, &names);
                        scene.texts[i] = Some(scene.text(&mut rng, i, &names[i], &refs));
                    }
                    None if rng.chance(40) => {
                        names[i] = rng.pick(&["gone", "new"]).to_string();
                        let refs = refs_of(&scene, &mut rng, &names);
                        scene.texts[i] = Some(scene.text(&mut rng, i, &names[i], &refs));
                    }
                    _ => {}
                }
            }
            scene.write(&cache);
            let copy = |to: &str| {
                let p = d.path().join(to);
                let ok = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&base)
                    .arg(&p)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
                p
            };
            let (fast, slow) = (copy("fast"), copy("slow"));
            let before = generation::TAKEN_OVER.with(std::cell::Cell::get);
            let a = index_file_cache(&fast, &cache);
            taken += generation::TAKEN_OVER.with(std::cell::Cell::get) - before;
            generation::TAKE_OVER.with(|t| t.set(false));
            let b = index_file_cache(&slow, &cache);
            generation::TAKE_OVER.with(|t| t.set(true));
            assert_eq!(
                serde_json::to_value(&a.files).unwrap(),
                serde_json::to_value(&b.files).unwrap(),
                "seed {seed}"
            );
            assert_eq!(
                (a.narinfos, a.unparseable, a.objects),
                (b.narinfos, b.unparseable, b.objects),
                "seed {seed}"
            );
        }
        assert!(taken > 30, "only {taken} rows were taken over as they are");
    }

    #[test]
    fn a_failed_install_of_a_generation_names_the_directory() {
        let d = tempfile::tempdir().unwrap();
        small_index().save(d.path()).unwrap();
        // Something that is not a generation is in the way.
        std::fs::write(d.path().join("index.old"), b"x").unwrap();
        let e = format!("{:#}", small_index().save(d.path()).unwrap_err());
        assert!(e.contains("removing") && e.contains("index.old"), "{e}");
        // The current generation is untouched.
        assert_eq!(Index::load(d.path()).unwrap().narinfos.len(), 1);
    }

    #[test]
    fn an_object_without_etag_is_never_reused_on_its_size_alone() {
        for etag in [None, Some("e".to_string())] {
            let d = tempfile::tempdir().unwrap();
            let mut idx = small_index();
            idx.objects.edit(|o| o[0].etag.clone_from(&etag)).unwrap();
            idx.narinfos[0].etag.clone_from(&etag);
            idx.save(d.path()).unwrap();
            let meta = Index::load_meta(d.path()).unwrap();
            let dir = Index::current_dir(d.path());
            // Listed again at the same size, its ETag as before.
            let r = generation::Reuse::scan(&dir, &meta, &idx.objects).unwrap();
            assert_eq!(r.unchanged, [etag.is_some()], "ETag {etag:?}");
        }
    }

    #[test]
    fn edited_meta_counts_are_detected() {
        let d = tempfile::tempdir().unwrap();
        small_index().save(d.path()).unwrap();
        assert_eq!(Index::load(d.path()).unwrap().narinfos.len(), 1);
        let p = d.path().join("index/meta.json");
        let t = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, t.replace("\"narinfos\": 1", "\"narinfos\": 2")).unwrap();
        let e = format!("{:#}", Index::load(d.path()).unwrap_err());
        assert!(e.contains("meta.json: damaged"), "{e}");
    }

    #[test]
    fn old_index_format_is_refused_with_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("index")).unwrap();
        std::fs::write(
            d.path().join("index/meta.json"),
            r#"{"format_version": 1, "cache": "file:///c"}"#,
        )
        .unwrap();
        let e = format!("{:#}", Index::load_meta(d.path()).unwrap_err());
        assert!(e.contains("index format 1 is not supported"), "{e}");
    }

    /// A version-2 index holds no symlink targets: read as if none existed, a plan could
    /// remove the target of a kept link, so it is refused, naming the version.
    #[test]
    fn an_index_written_before_link_targets_is_refused_naming_its_version() {
        let d = tempfile::tempdir().unwrap();
        small_index().save(d.path()).unwrap();
        let p = d.path().join("index/meta.json");
        let t = std::fs::read_to_string(&p).unwrap();
        let mut m: serde_json::Value = serde_json::from_str(&t).unwrap();
        m["format_version"] = 2.into();
        std::fs::write(&p, serde_json::to_string(&m).unwrap()).unwrap();
        let e = format!("{:#}", Index::load(d.path()).unwrap_err());
        assert!(
            e.contains("index format 2 is not supported (expected 3)") && e.contains("meta.json"),
            "{e}"
        );
    }

    /// Finding 1: a length read from a damaged file is refused before it is allocated
    /// (it used to abort with "memory allocation of 4611686018421857287 bytes failed").
    #[test]
    fn huge_length_in_a_damaged_record_is_refused_before_allocating() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("narinfos.bin.zst");
        let mut raw = Vec::new();
        bincode::serialize_into(&mut raw, &1u64).unwrap();
        bincode::serialize_into(&mut raw, &(u64::MAX / 4)).unwrap();
        raw.extend_from_slice(b"short");
        let mut bytes = MAGIC.to_vec();
        bytes.extend(zstd::encode_all(&raw[..], 3).unwrap());
        std::fs::write(&p, bytes).unwrap();
        let e = read_stream(&p, |_: FetchedRecord| Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("narinfos.bin.zst"), "{e:#}");
    }

    #[test]
    fn stream_files_carry_a_zstd_checksum() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.bin.zst");
        let dg = write_stream(&p, &[1u64, 2, 3]).unwrap();
        assert_eq!(dg, FileDigest::of_file(&p, 3).unwrap());
        let b = std::fs::read(&p).unwrap();
        // Frame header descriptor (after the 12-byte magic and the 4-byte frame magic):
        // bit 2 is Content_Checksum_flag.
        assert_ne!(b[16] & 0b100, 0);
    }
}
