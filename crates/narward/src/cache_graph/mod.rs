//! The compact parsed view of a cache, shared by the commands: [`CacheGraph`].
//!
//! `narward index` reads every narinfo once ([`build::Columns::build`]) into column arrays
//! and writes each to its own file in `<state>/index/` (see [`FILES`]); readers borrow the
//! arrays from a memory map, so the view costs no parsing and little memory. A path's id is
//! its position among the listing's `<hash>.narinfo` keys, in key order (the order of the
//! listing and of a plan's paths). The unknown-means-keep rules are applied once, when the
//! columns are built: an unparseable or unfetched narinfo keeps what its text seems to name
//! (references and extra NARs below), a doubtful one is marked so.
//!
//! Pure: byte slices in, values out. The files are opened in `index::columns`.

pub mod build;
pub mod quirks;

use crate::graph::NONE;
use anyhow::{Result, bail};

/// Status of one path, as read at index time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The narinfo parses and can be taken at its word.
    Parsed = 0,
    /// It parses but cannot be taken at its word (StorePath ≠ file name, unusual URL): kept
    /// as unknown, [`CacheGraph::why`] says why.
    Doubtful = 1,
    /// It does not parse: kept as unknown with what its text seems to name.
    Unparseable = 2,
    /// It could not be fetched: kept as unknown.
    FetchFailed = 3,
    /// Listed, but the index holds no record of it: kept as unknown.
    NotIndexed = 4,
}

impl Status {
    fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Parsed,
            1 => Status::Doubtful,
            2 => Status::Unparseable,
            3 => Status::FetchFailed,
            4 => Status::NotIndexed,
            _ => return None,
        })
    }

    /// Whether the narinfo's fields are known (parsed, doubtful or not).
    pub fn parsed(self) -> bool {
        matches!(self, Status::Parsed | Status::Doubtful)
    }
}

/// Bits of the per-path flags byte.
pub mod flag {
    /// The narinfo has a `CA:` field.
    pub const CA: u8 = 1;
    /// Its NAR is unknown (no listed NAR found in an unknown narinfo): any orphan NAR might
    /// be it.
    pub const NAR_UNKNOWN: u8 = 2;
    /// It has a `FileSize:` field.
    pub const FILE_SIZE: u8 = 4;
    /// It has a `Deriver:` field.
    pub const DERIVER: u8 = 8;
    /// It has a `FileHash:` field.
    pub const FILE_HASH: u8 = 16;
}

/// `Compression:` as one byte.
pub fn compression_code(c: Option<&str>) -> u8 {
    match c {
        None => 0,
        Some("none") => 1,
        Some("xz") => 2,
        Some("bzip2") => 3,
        Some("zstd") => 4,
        Some("br") => 5,
        Some("gzip") => 6,
        Some("lz4") => 7,
        Some(_) => 255,
    }
}

/// The `Compression:` value of a code (`None` for no field; the outer `None` for a value
/// the code does not name, whose text `index` keeps as a quirk).
pub fn compression_name(code: u8) -> Option<Option<&'static str>> {
    Some(match code {
        0 => None,
        1 => Some("none"),
        2 => Some("xz"),
        3 => Some("bzip2"),
        4 => Some("zstd"),
        5 => Some("br"),
        6 => Some("gzip"),
        7 => Some("lz4"),
        _ => return None,
    })
}

/// The column files, in `<state>/index/`: name and bytes per element (0: a string heap's
/// bytes, whose length the offsets give).
pub const FILES: [(&str, usize); 30] = [
    (HEADER_FILE, 1),
    ("paths.hash", 20),
    ("paths.nar_hash", 32),
    ("paths.file_hash", 32),
    ("paths.nar_size", 8),
    ("paths.file_size", 8),
    ("paths.nar_object", 4),
    ("paths.status", 1),
    ("paths.flags", 1),
    ("paths.compression", 1),
    ("paths.name.off", 8),
    ("paths.name.heap", 0),
    ("paths.url.off", 8),
    ("paths.url.heap", 0),
    ("paths.deriver.off", 8),
    ("paths.deriver.heap", 0),
    ("paths.sigs.off", 8),
    ("paths.sigs.heap", 0),
    ("paths.why.off", 8),
    ("paths.why.heap", 0),
    ("paths.holes.off", 8),
    ("paths.holes.heap", 0),
    ("paths.ca.off", 8),
    ("paths.ca.heap", 0),
    ("refs.off", 8),
    ("refs.ids", 4),
    ("referrers.off", 8),
    ("referrers.ids", 4),
    ("extra_nars.off", 8),
    ("extra_nars.ids", 4),
];

/// The header file: magic and counts.
pub const HEADER_FILE: &str = "graph.header";
/// Version 2 added `paths.holes`, `paths.file_hash` and `paths.ca`: with them the columns
/// print a narinfo back ([`CacheGraph::narinfo`]).
const MAGIC: &[u8; 12] = b"NARWARD-CG02";
const HEADER_LEN: usize = 12 + 6 * 8;

/// Every column file name.
pub fn file_names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|f| f.0)
}

/// Counts that bind the columns together and to the listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub paths: u64,
    pub edges: u64,
    pub extra_nars: u64,
    /// Objects in the listing of the same generation (NAR object ids index it).
    pub objects: u64,
    /// References to hashes that are no path of the cache (closure holes).
    pub missing_refs: u64,
    /// Narinfos that do not parse or could not be fetched.
    pub unparseable: u64,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for v in [
            self.paths,
            self.edges,
            self.extra_nars,
            self.objects,
            self.missing_refs,
            self.unparseable,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Result<Header> {
        if b.len() != HEADER_LEN || &b[..12] != MAGIC {
            bail!("{HEADER_FILE}: not a narward graph header");
        }
        let mut v = [0u64; 6];
        for (i, x) in v.iter_mut().enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[12 + i * 8..20 + i * 8]);
            *x = u64::from_le_bytes(a);
        }
        Ok(Header {
            paths: v[0],
            edges: v[1],
            extra_nars: v[2],
            objects: v[3],
            missing_refs: v[4],
            unparseable: v[5],
        })
    }
}

/// Compressed sparse rows: the targets of row `i` are `ids[off[i]..off[i + 1]]`.
#[derive(Debug, Clone, Copy)]
pub struct Csr<'a> {
    pub off: &'a [u64],
    pub ids: &'a [u32],
}

impl<'a> Csr<'a> {
    pub fn row(&self, i: u32) -> &'a [u32] {
        let i = i as usize;
        match (self.off.get(i), self.off.get(i + 1)) {
            (Some(&a), Some(&b)) => self.ids.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    fn check(&self, name: &str, rows: usize, bound: u64, at: &mut dyn Checked) -> Result<()> {
        check_offsets(name, self.off, rows, self.ids.len())?;
        at.passed(&format!("{name}.off"), self.off.len() * 8);
        let ids = format!("{name}.ids");
        for (k, chunk) in self.ids.chunks(STRETCH_BYTES / 4).enumerate() {
            if let Some(bad) = chunk.iter().find(|&&t| u64::from(t) >= bound) {
                bail!("{name}: id {bad} is out of range (< {bound})");
            }
            at.passed(&ids, (k * (STRETCH_BYTES / 4) + chunk.len()) * 4);
        }
        Ok(())
    }
}

/// A string heap: string `i` is `bytes[off[i]..off[i + 1]]`.
#[derive(Debug, Clone, Copy)]
pub struct Heap<'a> {
    pub off: &'a [u64],
    pub bytes: &'a [u8],
}

impl<'a> Heap<'a> {
    /// String `i` (validated as UTF-8 on open; empty out of range).
    pub fn get(&self, i: u32) -> &'a str {
        let i = i as usize;
        let s = match (self.off.get(i), self.off.get(i + 1)) {
            (Some(&a), Some(&b)) => self.bytes.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        };
        std::str::from_utf8(s).unwrap_or("")
    }

    fn check(&self, name: &str, rows: usize, at: &mut dyn Checked) -> Result<()> {
        check_offsets(name, self.off, rows, self.bytes.len())?;
        let (off, heap) = (format!("{name}.off"), format!("{name}.heap"));
        let mut told = 0;
        for i in 0..rows {
            let (a, b) = (self.off[i] as usize, self.off[i + 1] as usize);
            if let Err(e) = std::str::from_utf8(&self.bytes[a..b]) {
                bail!("{name}: string {i} is not UTF-8: {e}");
            }
            if b - told >= STRETCH_BYTES {
                at.passed(&heap, b);
                at.passed(&off, (i + 1) * 8);
                told = b;
            }
        }
        Ok(())
    }
}

/// `off` has `rows + 1` non-decreasing entries from 0 to `len`.
fn check_offsets(name: &str, off: &[u64], rows: usize, len: usize) -> Result<()> {
    if off.len() != rows + 1 {
        bail!("{name}: {} offsets for {rows} rows", off.len());
    }
    if off.first() != Some(&0) || off.last() != Some(&(len as u64)) {
        bail!("{name}: offsets do not span its data ({len} entries)");
    }
    if let Some(w) = off.windows(2).position(|w| w[0] > w[1]) {
        bail!("{name}: offsets decrease at row {w}");
    }
    Ok(())
}

/// The columns as typed slices (from a memory map or from [`build::Columns`]).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub header: Header,
    pub hash: &'a [[u8; 20]],
    pub nar_hash: &'a [[u8; 32]],
    pub file_hash: &'a [[u8; 32]],
    pub nar_size: &'a [u64],
    pub file_size: &'a [u64],
    pub nar_object: &'a [u32],
    pub status: &'a [u8],
    pub flags: &'a [u8],
    pub compression: &'a [u8],
    pub name: Heap<'a>,
    pub url: Heap<'a>,
    pub deriver: Heap<'a>,
    pub sigs: Heap<'a>,
    pub why: Heap<'a>,
    /// Base names (`<hash>-<name>`, newline-separated) of the references of a parsed
    /// narinfo that name no path of the cache: with the referenced paths' names they give
    /// back the narinfo's reference list (its signature fingerprint).
    pub holes: Heap<'a>,
    /// `CA:` values (empty without one).
    pub ca: Heap<'a>,
    pub refs: Csr<'a>,
    pub referrers: Csr<'a>,
    pub extra_nars: Csr<'a>,
}

mod view;
pub use view::CacheGraph;

/// One generation of the index as the commands after `index` read it: the listing and
/// debuginfo records (an [`crate::index::Index`] loaded without narinfo texts), its
/// [`CacheGraph`], and the texts of its quirks ([`quirks`], sorted by key).
#[derive(Clone, Copy)]
pub struct Snapshot<'a> {
    pub index: &'a crate::index::Index,
    pub graph: &'a CacheGraph<'a>,
    pub quirks: &'a [crate::model::FetchedRecord],
    /// What lets the pages of mapped columns go as a scan passes them.
    pub pages: Pages<'a>,
}

/// Columns whose pages a command may let go of between two stretches of a scan
/// (memory-mapped files: the pages stay in the page cache, and a later read brings them
/// back with the same bytes).
pub trait LetGo {
    /// Drop the pages read so far from this process's memory (advice).
    fn let_go(&self);
}

/// Paths a scan over every path reads between two [`Pages::let_go`]s: few enough that
/// their pages are a small part of any command's memory at 10 M paths.
pub const SCAN_STRETCH: u32 = 1 << 16;

/// The pages of the columns a command reads, for letting them go as its scans pass them
/// (none for columns held in memory).
#[derive(Clone, Copy, Default)]
pub struct Pages<'a>(pub Option<&'a dyn LetGo>);

impl Pages<'_> {
    /// A scan over every path in id order is done with the pages of the paths before
    /// this one, or a phase is done with every page it read: let them go.
    pub fn let_go(&self) {
        if let Some(p) = self.0 {
            p.let_go();
        }
    }

    /// [`Pages::let_go`] after every [`SCAN_STRETCH`] paths of a scan in id order.
    pub fn scanned(&self, id: u32) {
        if id % SCAN_STRETCH == SCAN_STRETCH - 1 {
            self.let_go();
        }
    }
}

impl<'a> Snapshot<'a> {
    /// The quirk record of path `id`, if `index` kept its text.
    pub fn quirk(&self, id: u32) -> Option<&'a crate::model::FetchedRecord> {
        quirks::of(self.graph, self.quirks, id)
    }

    /// Path `id`'s narinfo text, then its earlier texts: the quirk's when `index` kept it,
    /// else the narinfo printed from the columns (byte for byte the text fetched); none
    /// for a narinfo that could not be fetched.
    pub fn texts(&self, id: u32) -> Vec<std::borrow::Cow<'a, [u8]>> {
        use std::borrow::Cow;
        match self.quirk(id) {
            Some(q) => std::iter::once(Cow::Borrowed(&q.text[..]))
                .chain(q.earlier.iter().map(|b| Cow::Borrowed(&b[..])))
                .collect(),
            None => self
                .graph
                .narinfo(id)
                .map(|n| Cow::Owned(n.to_string().into_bytes()))
                .into_iter()
                .collect(),
        }
    }

    /// Path `id`'s store path: its quirk text's `StorePath` when `index` kept one that
    /// parses (it may name another path), else its hash and name from the columns.
    pub fn store_path(&self, id: u32) -> narward_formats::store_path::StorePath<'a> {
        match self.quirk(id).map(crate::model::FetchedRecord::parse) {
            Some(Ok(ni)) => ni.store_path,
            _ => narward_formats::store_path::StorePath {
                hash: self.graph.hash(id),
                name: self.graph.name(id),
            },
        }
    }

    /// Path `id`'s narinfo as every reader takes it ([`quirks::narinfo`]).
    pub fn narinfo(&self, id: u32) -> Option<narward_formats::narinfo::NarInfo<'a>> {
        quirks::narinfo(self.graph, self.quirks, id)
    }
}

/// Order of `<hash>.narinfo` keys: nixbase32 prints a hash from its last byte, and its
/// alphabet is in ASCII order, so key order is the order of the reversed bytes, that is of
/// the bytes read as one little-endian 160-bit number (compared as a `u32` of the top four
/// bytes, then a `u128` of the other sixteen: every root lookup runs this).
pub fn key_order(a: &[u8; 20], b: &[u8; 20]) -> std::cmp::Ordering {
    let split = |h: &[u8; 20]| {
        let (lo, hi) = h.split_at(16);
        let hi: [u8; 4] = hi.try_into().unwrap_or_default();
        let lo: [u8; 16] = lo.try_into().unwrap_or_default();
        (u32::from_le_bytes(hi), u128::from_le_bytes(lo))
    };
    split(a).cmp(&split(b))
}

/// Typed views of the raw bytes of each column file (`get(name)`): lengths and alignment
/// checked, then everything [`CacheGraph::new`] checks. Errors name the file.
///
/// # Errors
/// A file of the wrong length or alignment, or inconsistent content.
pub fn parts_from_bytes<'a>(get: &dyn Fn(&str) -> &'a [u8]) -> Result<Parts<'a>> {
    #[cfg(not(target_endian = "little"))]
    bail!("the index columns are little-endian; this machine is not");
    let header = Header::decode(get(HEADER_FILE))?;
    let u64s = |n: &str| cast::<u64>(n, get(n));
    let u32s = |n: &str| cast::<u32>(n, get(n));
    let heap = |n: &str| -> Result<Heap<'a>> {
        Ok(Heap {
            off: u64s(&format!("paths.{n}.off"))?,
            bytes: get(&format!("paths.{n}.heap")),
        })
    };
    let csr = |n: &str| -> Result<Csr<'a>> {
        Ok(Csr {
            off: u64s(&format!("{n}.off"))?,
            ids: u32s(&format!("{n}.ids"))?,
        })
    };
    Ok(Parts {
        header,
        hash: cast("paths.hash", get("paths.hash"))?,
        nar_hash: cast("paths.nar_hash", get("paths.nar_hash"))?,
        file_hash: cast("paths.file_hash", get("paths.file_hash"))?,
        nar_size: u64s("paths.nar_size")?,
        file_size: u64s("paths.file_size")?,
        nar_object: u32s("paths.nar_object")?,
        status: get("paths.status"),
        flags: get("paths.flags"),
        compression: get("paths.compression"),
        name: heap("name")?,
        url: heap("url")?,
        deriver: heap("deriver")?,
        sigs: heap("sigs")?,
        why: heap("why")?,
        holes: heap("holes")?,
        ca: heap("ca")?,
        refs: csr("refs")?,
        referrers: csr("referrers")?,
        extra_nars: csr("extra_nars")?,
    })
}

/// `b` as a slice of `T` (an empty file is an empty slice, whatever its address).
fn cast<'a, T: bytemuck::Pod>(name: &str, b: &'a [u8]) -> Result<&'a [T]> {
    if b.is_empty() {
        return Ok(&[]);
    }
    bytemuck::try_cast_slice(b).map_err(|e| anyhow::anyhow!("{name}: {e:?} ({} bytes)", b.len()))
}

/// Bytes of a column file the checks read between two [`Checked::passed`] calls.
const STRETCH_BYTES: usize = 8 << 20;

/// What the checks tell whoever holds the column files mapped, so that it can let their
/// pages go as they are read: never more than a few stretches of a file are needed at once.
pub trait Checked {
    /// The checks will not read the first `bytes` bytes of `file` again.
    fn passed(&mut self, _file: &str, _bytes: usize) {}
    /// The checks will not read `file` again.
    fn done(&mut self, file: &str);
}

impl<F: FnMut(&str)> Checked for F {
    fn done(&mut self, file: &str) {
        self(file);
    }
}

/// Check every length, offset and id of `p` against its header, telling `at` which parts
/// of which files the checks are done with as they go (so a caller holding them mapped can
/// let their pages go before the next stretch is read).
fn check(p: &Parts<'_>, at: &mut dyn Checked) -> Result<()> {
    let h = p.header;
    let n = h.paths as usize;
    let fixed: [(&str, usize); 9] = [
        ("paths.hash", p.hash.len()),
        ("paths.nar_hash", p.nar_hash.len()),
        ("paths.file_hash", p.file_hash.len()),
        ("paths.nar_size", p.nar_size.len()),
        ("paths.file_size", p.file_size.len()),
        ("paths.nar_object", p.nar_object.len()),
        ("paths.status", p.status.len()),
        ("paths.flags", p.flags.len()),
        ("paths.compression", p.compression.len()),
    ];
    for (name, len) in fixed {
        if len != n {
            bail!("{name}: {len} entries, {HEADER_FILE} counts {n} paths");
        }
    }
    if let Some(i) = p.status.iter().position(|&s| Status::from_u8(s).is_none()) {
        bail!("paths.status: unknown status {} at path {i}", p.status[i]);
    }
    at.done("paths.status");
    if let Some(i) = p
        .nar_object
        .iter()
        .position(|&o| o != NONE && u64::from(o) >= h.objects)
    {
        bail!("paths.nar_object: object id out of range at path {i}");
    }
    at.done("paths.nar_object");
    if let Some(w) = p
        .hash
        .windows(2)
        .position(|w| key_order(&w[0], &w[1]).is_ge())
    {
        bail!("paths.hash: not in key order at path {}", w + 1);
    }
    for (name, heap) in [
        ("paths.name", p.name),
        ("paths.url", p.url),
        ("paths.deriver", p.deriver),
        ("paths.sigs", p.sigs),
        ("paths.why", p.why),
        ("paths.holes", p.holes),
        ("paths.ca", p.ca),
    ] {
        heap.check(name, n, at)?;
        at.done(&format!("{name}.off"));
        at.done(&format!("{name}.heap"));
    }
    for (name, csr, bound) in [
        ("refs", p.refs, h.paths),
        ("referrers", p.referrers, h.paths),
        ("extra_nars", p.extra_nars, h.objects),
    ] {
        csr.check(name, n, bound, at)?;
        at.done(&format!("{name}.off"));
        at.done(&format!("{name}.ids"));
    }
    let counts = [
        ("refs.ids", p.refs.ids.len() as u64, h.edges),
        ("referrers.ids", p.referrers.ids.len() as u64, h.edges),
        (
            "extra_nars.ids",
            p.extra_nars.ids.len() as u64,
            h.extra_nars,
        ),
    ];
    for (name, got, want) in counts {
        if got != want {
            bail!("{name}: {got} entries, {HEADER_FILE} counts {want}");
        }
    }
    Ok(())
}

/// The narinfo records of `snap`, as `index` fetched them (what an incremental `index`
/// builds on): a quirk's record as kept; else the text printed back from the columns (byte
/// for byte the one fetched), or the fetch error, with the listing's ETag and size (a
/// record is written with the listed object's). A path the index holds no record of has
/// none here either.
pub fn records(snap: &Snapshot<'_>) -> Vec<crate::model::FetchedRecord> {
    let g = snap.graph;
    (0..g.len() as u32)
        .filter_map(|id| {
            let listed = snap.index.object(&format!("{}.narinfo", g.hash(id)));
            record(
                g,
                snap.quirks,
                id,
                listed.map(|o| (o.etag_string(), o.size())),
            )
        })
        .collect()
}

/// Path `id`'s record as [`records`] gives it back, `listed` being its object in the
/// listing of the same generation (its ETag and size, if listed); `None` for a path the index holds
/// no record of. What an incremental `index` streams from the previous generation.
pub fn record(
    g: &CacheGraph<'_>,
    quirks: &[crate::model::FetchedRecord],
    id: u32,
    listed: Option<(Option<String>, u64)>,
) -> Option<crate::model::FetchedRecord> {
    if let Some(q) = quirks::of(g, quirks, id) {
        return Some(q.clone());
    }
    let (text, fetch_error) = match g.status(id) {
        Status::NotIndexed => return None,
        Status::FetchFailed => {
            let why = g.why(id);
            let e = why.strip_prefix("could not be fetched: ").unwrap_or(why);
            (Vec::new(), Some(e.to_string()))
        }
        _ => (
            g.narinfo(id)
                .map(|n| n.to_string().into_bytes())
                .unwrap_or_default(),
            None,
        ),
    };
    Some(crate::model::FetchedRecord {
        size: listed.as_ref().map_or(0, |o| o.1),
        etag: listed.and_then(|o| o.0),
        key: format!("{}.narinfo", g.hash(id)),
        text,
        fetch_error,
        earlier: Vec::new(),
    })
}

/// Call `f` with the [`Snapshot`] of an index held in memory, narinfo texts included
/// ([`of_index`]; tests, small caches).
///
/// # Errors
/// Narinfo records out of key order.
pub fn with_snapshot<R>(
    index: &crate::index::Index,
    f: impl FnOnce(&Snapshot<'_>) -> R,
) -> Result<R> {
    let (cols, quirks) = of_index(index)?;
    let graph = CacheGraph::new(cols.parts())?;
    Ok(f(&Snapshot {
        index,
        graph: &graph,
        quirks: &quirks,
        pages: Pages::default(),
    }))
}

/// The columns and quirks of an index held in memory, narinfo texts included, built as
/// `narward index` builds them (tests, small caches).
///
/// # Errors
/// Narinfo records out of key order.
pub fn of_index(
    index: &crate::index::Index,
) -> Result<(build::Columns, Vec<crate::model::FetchedRecord>)> {
    with_quirks(&index.objects, |f| index.narinfos.iter().try_for_each(f))
}

/// The columns of `objects` and the quirks among their narinfo records, which
/// `narinfos` gives in key order each time it is called (twice: once for the columns,
/// once for the quirks, so that only the quirks are held): how the columns and quirks of
/// a generation are built in memory.
///
/// # Errors
/// Narinfo records out of key order; `narinfos`' errors.
pub fn with_quirks(
    objects: &crate::listing::Listing,
    mut narinfos: impl FnMut(&mut dyn FnMut(&crate::model::FetchedRecord) -> Result<()>) -> Result<()>,
) -> Result<(build::Columns, Vec<crate::model::FetchedRecord>)> {
    let cols = build::Columns::build(objects, &mut narinfos)?;
    let g = CacheGraph::new(cols.parts())?;
    let mut quirks = Vec::new();
    narinfos(&mut |r| {
        if quirks::is_quirk(&g, r) {
            quirks.push(r.clone());
        }
        Ok(())
    })?;
    drop(g);
    Ok((cols, quirks))
}

#[cfg(test)]
mod tests;
