//! The index's column files (see [`crate::cache_graph`]): written with every generation
//! as the builder makes each row ([`ColumnFiles`]), checked against `meta.json` (length
//! and SHA-256) and memory-mapped on open.

use super::{FileDigest, HashingWriter, IndexMeta, StreamWriter, damaged};
use crate::cache_graph::build::{ColumnSink, Columns, ColumnsBuilder, ListingKeys, Row};
use crate::cache_graph::{self, CacheGraph, FILES, HEADER_FILE, Header};
use crate::model::FetchedRecord;
use anyhow::{Context, Result, bail};
use memmap2::Mmap;
use narward_formats::store_path::StorePathHash;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Write every column file of `c` into `dir`; returns their digests by file name.
///
/// # Errors
/// I/O errors.
pub fn write(dir: &Path, c: &Columns) -> Result<BTreeMap<String, FileDigest>> {
    let mut out = BTreeMap::new();
    for (name, bytes) in c.files() {
        let p = dir.join(name);
        let mut f =
            std::fs::File::create(&p).with_context(|| format!("writing {}", p.display()))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", p.display()))?;
        let width = cache_graph::FILES
            .iter()
            .find(|x| x.0 == name)
            .map_or(1, |x| x.1.max(1));
        out.insert(
            name.to_string(),
            FileDigest {
                records: (bytes.len() / width) as u64,
                bytes: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&bytes)),
            },
        );
    }
    Ok(out)
}

/// Build the columns and the quirks file of the generation in `dir` from the keys of its
/// listing and its narinfo stream file, writing the column files as they are built (for
/// writers of an index that do not go through [`super::Index::save`], like the benchmark
/// generator, which holds no listing: [`ListingKeys`] is all the builder needs of one).
///
/// # Errors
/// A damaged narinfo stream; I/O errors.
pub fn write_from_narinfo_file(
    dir: &Path,
    keys: ListingKeys<'_>,
) -> Result<BTreeMap<String, FileDigest>> {
    let p = dir.join(super::NARINFOS_FILE);
    let mut b = ColumnsBuilder::over(keys, ColumnFiles::create(dir)?);
    super::read_stream(&p, |r: FetchedRecord| b.record(&r))?;
    let files = b.finish()?.into_digests();
    seal(dir, files, &p, None, &|_| Ok(Vec::new()))
}

/// The quirks known only once a generation's columns are written, in key order: records
/// of narinfos that are not in its record stream.
pub type LateQuirks<'f> = &'f dyn Fn(&CacheGraph<'_>) -> Result<Vec<FetchedRecord>>;

/// Check the column files written into `dir` (digests `files`, computed while writing):
/// mapped, every length, offset and id checked ([`Mapped::graph`], which lets each file
/// go once done with it); then write the quirks file (the quirks of that graph among the
/// narinfo records of the stream `records`, checked against `digest` when given). Returns
/// every digest by file name. The one way a generation's columns and quirks are finished.
///
/// # Errors
/// Inconsistent columns; a damaged record stream; I/O errors.
pub(super) fn seal(
    dir: &Path,
    mut files: BTreeMap<String, FileDigest>,
    records: &Path,
    digest: Option<&FileDigest>,
    late: LateQuirks<'_>,
) -> Result<BTreeMap<String, FileDigest>> {
    let mapped = Mapped::open_checked(dir, &files, false)?;
    let g = mapped.graph()?;
    let pages = cache_graph::Pages(Some(&mapped));
    let late = late(&g)?;
    let quirks = write_quirks(
        &dir.join(super::QUIRKS_FILE),
        (&g, records, digest),
        &late,
        pages,
    )?;
    drop(g);
    drop(mapped);
    files.insert(super::QUIRKS_FILE.to_string(), quirks);
    Ok(files)
}

/// Ids of referrers held per pass of the referrer fill: an eighth of the edges, at least
/// 1 Mi ids (4 MiB) and at most [`REFERRER_PASS_IDS`].
pub fn referrer_pass_ids(edges: u64) -> usize {
    usize::try_from(edges / 8)
        .unwrap_or(REFERRER_PASS_IDS)
        .clamp(1 << 20, REFERRER_PASS_IDS)
}

/// The most ids of referrers held by one pass of the referrer fill (256 MiB).
pub const REFERRER_PASS_IDS: usize = 64 << 20;

/// The position of the column file `name` in [`FILES`] (checked when compiled).
const fn at(name: &str) -> usize {
    let mut i = 0;
    while i < FILES.len() {
        let (a, b) = (FILES[i].0.as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut k = 0;
            while k < a.len() && a[k] == b[k] {
                k += 1;
            }
            if k == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a column file")
}

const HEADER: usize = at(HEADER_FILE);
const HASH: usize = at("paths.hash");
const NAR_HASH: usize = at("paths.nar_hash");
const FILE_HASH: usize = at("paths.file_hash");
const NAR_SIZE: usize = at("paths.nar_size");
const FILE_SIZE: usize = at("paths.file_size");
const NAR_OBJECT: usize = at("paths.nar_object");
const STATUS: usize = at("paths.status");
const FLAGS: usize = at("paths.flags");
const COMPRESSION: usize = at("paths.compression");
/// Each heap's offsets file (its bytes file is the next one).
const HEAPS: [usize; 7] = [
    at("paths.name.off"),
    at("paths.url.off"),
    at("paths.deriver.off"),
    at("paths.sigs.off"),
    at("paths.why.off"),
    at("paths.holes.off"),
    at("paths.ca.off"),
];
const REFS_OFF: usize = at("refs.off");
const REFS_IDS: usize = at("refs.ids");
const REFERRERS_OFF: usize = at("referrers.off");
const REFERRERS_IDS: usize = at("referrers.ids");
const EXTRA_OFF: usize = at("extra_nars.off");
const EXTRA_IDS: usize = at("extra_nars.ids");

/// The column files of a generation written as the builder makes each row: every column
/// and heap appended to its file in the generation directory through a buffered writer
/// that hashes (SHA-256) as it writes, so the files are never held in memory. What is
/// held: a referrer count per path; the referrers are filled at the end, a range of
/// targets at a time ([`referrer_pass_ids`] ids per pass), from the reference files just
/// written. The bytes are those of [`Columns::files`] of the same records.
pub struct ColumnFiles {
    dir: PathBuf,
    out: Vec<Option<HashingWriter<BufWriter<std::fs::File>>>>,
    /// Bytes in each heap so far (by [`HEAPS`] position), refs and extra NARs so far.
    heap_len: [u64; 7],
    refs: u64,
    extra: u64,
    /// Per path: how many paths name it.
    referrers: Vec<u32>,
    /// Referrer ids per pass, when not [`referrer_pass_ids`] (tests).
    pass_ids: Option<usize>,
    digests: BTreeMap<String, FileDigest>,
}

impl ColumnFiles {
    /// Create every column file in `dir`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(dir: &Path) -> Result<ColumnFiles> {
        let mut out = Vec::with_capacity(FILES.len());
        for (name, _) in FILES {
            let p = dir.join(name);
            let f =
                std::fs::File::create(&p).with_context(|| format!("writing {}", p.display()))?;
            out.push(Some(HashingWriter::new(BufWriter::with_capacity(
                1 << 16,
                f,
            ))));
        }
        let mut c = ColumnFiles {
            dir: dir.to_path_buf(),
            out,
            heap_len: [0; 7],
            refs: 0,
            extra: 0,
            referrers: Vec::new(),
            pass_ids: None,
            digests: BTreeMap::new(),
        };
        for i in HEAPS
            .into_iter()
            .chain([REFS_OFF, REFERRERS_OFF, EXTRA_OFF])
        {
            c.put(i, &0u64.to_le_bytes())?;
        }
        Ok(c)
    }

    /// Hold at most `ids` referrer ids per pass of the referrer fill (at least one target's).
    pub fn with_pass_ids(mut self, ids: usize) -> ColumnFiles {
        self.pass_ids = Some(ids.max(1));
        self
    }

    /// The digest of every column file, by name (after the builder finished).
    pub fn into_digests(self) -> BTreeMap<String, FileDigest> {
        self.digests
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(FILES[i].0)
    }

    fn put(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        let r = match self.out.get_mut(i).and_then(Option::as_mut) {
            Some(w) => w.write_all(bytes),
            None => bail!("{}: written after it was closed", self.path(i).display()),
        };
        r.with_context(|| format!("writing {}", self.path(i).display()))
    }

    /// Flush, fsync and close file `i`, keeping its digest.
    fn close(&mut self, i: usize) -> Result<()> {
        let p = self.path(i);
        let Some(w) = self.out.get_mut(i).and_then(Option::take) else {
            bail!("{}: closed twice", p.display());
        };
        let (buf, hash, bytes) = w.into_parts();
        buf.into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("writing {}", p.display()))?;
        let width = FILES[i].1.max(1) as u64;
        self.digests.insert(
            FILES[i].0.to_string(),
            FileDigest {
                records: bytes / width,
                bytes,
                sha256: hex::encode(hash.finalize()),
            },
        );
        Ok(())
    }

    /// `referrers.off` and `referrers.ids` from the counts and the reference files.
    fn write_referrers(&mut self, edges: u64) -> Result<()> {
        let pass_ids = self.pass_ids.unwrap_or_else(|| referrer_pass_ids(edges));
        let mut counts = std::mem::take(&mut self.referrers);
        let mut sum = 0u64;
        for &c in &counts {
            sum += u64::from(c);
            self.put(REFERRERS_OFF, &sum.to_le_bytes())?;
        }
        self.close(REFERRERS_OFF)?;
        let n = counts.len();
        let (mut t0, mut buf) = (0, Vec::new());
        while t0 < n {
            let (mut t1, mut total) = (t0, 0usize);
            while t1 < n && (t1 == t0 || total + counts[t1] as usize <= pass_ids) {
                total += counts[t1] as usize;
                t1 += 1;
            }
            if total > 0 {
                self.referrer_pass(&mut counts[t0..t1], t0, total, &mut buf)?;
            }
            t0 = t1;
        }
        self.close(REFERRERS_IDS)
    }

    /// The referrers of targets `t0..t0 + counts.len()` (`total` ids), in target then
    /// source order, read from the reference files and appended to `referrers.ids`.
    fn referrer_pass(
        &mut self,
        counts: &mut [u32],
        t0: usize,
        total: usize,
        buf: &mut Vec<u32>,
    ) -> Result<()> {
        // Each target's count becomes its cursor in `buf`.
        let mut run = 0u32;
        for c in counts.iter_mut() {
            let k = *c;
            *c = run;
            run += k;
        }
        buf.clear();
        buf.resize(total, 0);
        let ids = self.path(REFS_IDS);
        each_ref(&self.path(REFS_OFF), &ids, |s, t| {
            let Some(c) = (t as usize).checked_sub(t0).and_then(|i| counts.get_mut(i)) else {
                return Ok(());
            };
            let Some(slot) = buf.get_mut(*c as usize) else {
                bail!("{}: changed while it was read", ids.display());
            };
            *slot = s;
            *c += 1;
            Ok(())
        })?;
        self.put(REFERRERS_IDS, bytemuck::cast_slice(buf))
    }
}

/// Call `f(source, target)` for every reference of the files `off` and `ids` (`refs.off`
/// and `refs.ids`), in source order, reading them through buffers.
fn each_ref(off: &Path, ids: &Path, mut f: impl FnMut(u32, u32) -> Result<()>) -> Result<()> {
    let open = |p: &Path| -> Result<BufReader<std::fs::File>> {
        let file = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(BufReader::with_capacity(1 << 20, file))
    };
    let (mut o, mut r) = (open(off)?, open(ids)?);
    let mut word = [0u8; 8];
    let mut next_off = |o: &mut BufReader<std::fs::File>| -> Result<Option<u64>> {
        match o.read_exact(&mut word) {
            Ok(()) => Ok(Some(u64::from_le_bytes(word))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", off.display())),
        }
    };
    let mut prev = next_off(&mut o)?.unwrap_or(0);
    let mut s = 0u32;
    let mut id = [0u8; 4];
    while let Some(end) = next_off(&mut o)? {
        for _ in prev..end {
            r.read_exact(&mut id)
                .with_context(|| format!("reading {}", ids.display()))?;
            f(s, u32::from_le_bytes(id))?;
        }
        prev = end;
        s += 1;
    }
    Ok(())
}

impl ColumnSink for ColumnFiles {
    fn begin(&mut self, paths: usize) {
        self.referrers = vec![0; paths];
    }

    fn push(&mut self, r: &Row<'_>, refs: &[u32], extra_nars: &[u32]) -> Result<()> {
        self.put(STATUS, &[r.status])?;
        self.put(FLAGS, &[r.flags])?;
        self.put(COMPRESSION, &[r.compression])?;
        self.put(NAR_HASH, &r.nar_hash)?;
        self.put(FILE_HASH, &r.file_hash)?;
        self.put(NAR_SIZE, &r.nar_size.to_le_bytes())?;
        self.put(FILE_SIZE, &r.file_size.to_le_bytes())?;
        self.put(NAR_OBJECT, &r.nar_object.to_le_bytes())?;
        let heaps = [r.name, r.url, r.deriver, &r.sigs, &r.why, &r.holes, r.ca];
        for (k, text) in heaps.into_iter().enumerate() {
            self.put(HEAPS[k] + 1, text.as_bytes())?;
            self.heap_len[k] += text.len() as u64;
            self.put(HEAPS[k], &self.heap_len[k].to_le_bytes())?;
        }
        for &t in refs {
            match self.referrers.get_mut(t as usize) {
                Some(c) => *c += 1,
                None => bail!("reference to path {t} of {}", self.referrers.len()),
            }
        }
        self.refs += refs.len() as u64;
        self.put(REFS_IDS, bytemuck::cast_slice(refs))?;
        self.put(REFS_OFF, &self.refs.to_le_bytes())?;
        self.extra += extra_nars.len() as u64;
        self.put(EXTRA_IDS, bytemuck::cast_slice(extra_nars))?;
        self.put(EXTRA_OFF, &self.extra.to_le_bytes())
    }

    fn finish(&mut self, hashes: Vec<StorePathHash>, header: Header) -> Result<()> {
        for h in &hashes {
            self.put(HASH, &h.0)?;
        }
        drop(hashes);
        self.put(HEADER, &header.encode())?;
        for i in 0..FILES.len() {
            if i != REFERRERS_OFF && i != REFERRERS_IDS {
                self.close(i)?;
            }
        }
        self.write_referrers(header.edges)
    }
}

/// Write the quirks of `g` among the records of the stream `records` to `path`: a first
/// reading finds them (their positions are all that is held), a second writes them.
/// `pages` lets go of the column pages read so far (every
/// [`cache_graph::SCAN_STRETCH`] / 64 records of the first reading, which prints every narinfo
/// back from the columns), so the mapped columns never all count in the process's memory.
fn write_quirks(
    path: &Path,
    (g, records, digest): (&CacheGraph<'_>, &Path, Option<&FileDigest>),
    late: &[FetchedRecord],
    pages: cache_graph::Pages<'_>,
) -> Result<FileDigest> {
    let mut at = Vec::new();
    let mut i = 0u64;
    super::read_checked(records, digest, |r: FetchedRecord| {
        if cache_graph::quirks::is_quirk(g, &r) {
            at.push(i);
        }
        i += 1;
        // Few records may span many paths, each printed touching pages all over.
        if i.is_multiple_of(u64::from(cache_graph::SCAN_STRETCH / 64)) {
            pages.let_go();
        }
        Ok(())
    })?;
    let mut w = StreamWriter::create(path, (at.len() + late.len()) as u64, 3)?;
    let (mut i, mut next) = (0u64, at.iter().peekable());
    let mut late = late.iter().peekable();
    super::read_checked(records, digest, |r: FetchedRecord| {
        if next.next_if(|&&p| p == i).is_some() {
            while let Some(l) = late.next_if(|l| l.key < r.key) {
                w.push(l)?;
            }
            w.push(&r)?;
        }
        i += 1;
        Ok(())
    })?;
    for l in late {
        w.push(l)?;
    }
    w.finish()
}

/// Whether the generation `meta` describes has column files of this version (indexes
/// written before they existed, or before `paths.holes`, do not: the columns are then
/// built in memory from the narinfos, see [`super::Index::open_graph`]).
pub fn present(meta: &IndexMeta) -> bool {
    cache_graph::file_names().all(|f| meta.files.contains_key(f))
}

/// The column files of one generation, mapped and verified.
pub struct Mapped {
    dir: PathBuf,
    maps: BTreeMap<&'static str, Option<Mmap>>,
}

impl Mapped {
    /// Map every column file of `dir` and check it against `meta` (length, then SHA-256 of
    /// the whole file): damage is refused, naming the file.
    ///
    /// # Errors
    /// A missing, damaged or unreadable file.
    pub fn open(dir: &Path, meta: &IndexMeta) -> Result<Mapped> {
        Self::open_checked(dir, &meta.files, true)
    }

    /// [`Mapped::open`] of a generation whose files this process hashed already while it
    /// holds the state lock (`index`'s second reading of the previous generation, after
    /// [`super::generation::Reuse::scan`]): lengths are checked, the SHA-256 is not
    /// computed again ([`Mapped::graph`] still checks every length, offset and id).
    ///
    /// # Errors
    /// A missing, unreadable or resized file.
    pub fn reopen(dir: &Path, meta: &IndexMeta) -> Result<Mapped> {
        Self::open_checked(dir, &meta.files, false)
    }

    /// Map every column file of `dir`, checked against the digests `files` (`hash`: the
    /// SHA-256 too, else the lengths only).
    fn open_checked(
        dir: &Path,
        files: &BTreeMap<String, FileDigest>,
        hash: bool,
    ) -> Result<Mapped> {
        let names: Vec<&'static str> = cache_graph::file_names().collect();
        let digests = names
            .iter()
            .map(|n| {
                files
                    .get(*n)
                    .with_context(|| format!("meta.json records no digest for {n}"))
            })
            .collect::<Result<Vec<&FileDigest>>>()?;
        let mut maps = BTreeMap::new();
        for (name, d) in names.iter().zip(&digests) {
            maps.insert(*name, map_checked(&dir.join(name), d)?);
        }
        // Hashed by reading, not through the maps: the page cache holds the bytes, and
        // only the pages a command touches later count in its memory.
        if hash {
            hash_all(dir, &names, &digests)?;
        }
        Ok(Mapped {
            dir: dir.to_path_buf(),
            maps,
        })
    }

    /// The graph over the mapped columns, every length, offset and id checked.
    ///
    /// # Errors
    /// Inconsistent columns (the file is named).
    pub fn graph(&self) -> Result<CacheGraph<'_>> {
        let get = |name: &str| -> &[u8] {
            self.maps
                .get(name)
                .and_then(|m| m.as_deref())
                .unwrap_or(&[])
        };
        let mut at = Releasing(self);
        let g = cache_graph::parts_from_bytes(&get)
            .and_then(|p| CacheGraph::new_releasing(p, &mut at))
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}/{e:#}: damaged; the index cannot be trusted: re-run `narward index` with a fresh --state",
                    self.dir.display()
                )
            })?;
        self.release_pages();
        Ok(g)
    }

    /// Drop the pages the checks touched from this process's memory: they stay in the page
    /// cache, and only the pages a command then reads count again (advice; errors ignored).
    /// Each stretch of a file is also let go as soon as the checks are done with it
    /// ([`CacheGraph::new_releasing`]), so they never hold a whole column at once.
    fn release_pages(&self) {
        self.maps.values().flatten().for_each(release);
    }

    fn map(&self, name: &str) -> Option<&Mmap> {
        self.maps.get(name).and_then(Option::as_ref)
    }
}

/// Lets go of the pages of the mapped columns as the checks pass them.
struct Releasing<'m>(&'m Mapped);

impl cache_graph::Checked for Releasing<'_> {
    fn passed(&mut self, file: &str, bytes: usize) {
        if let Some(m) = self.0.map(file) {
            release_prefix(m, bytes);
        }
    }

    fn done(&mut self, file: &str) {
        if let Some(m) = self.0.map(file) {
            release(m);
        }
    }
}

impl cache_graph::LetGo for Mapped {
    fn let_go(&self) {
        self.release_pages();
    }
}

/// Drop the resident pages of `m`'s first `bytes` bytes (whole pages only) from this
/// process's memory (advice; errors ignored).
fn release_prefix(m: &Mmap, bytes: usize) {
    const PAGE: usize = 4096;
    let len = bytes.min(m.len()) / PAGE * PAGE;
    if len > 0 {
        // SAFETY: as in `release`: a read-only private file mapping never written.
        #[allow(unsafe_code)]
        let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, len) };
    }
}

/// Drop `m`'s resident pages from this process's memory (advice; errors ignored).
fn release(m: &Mmap) {
    // SAFETY: `DontNeed` on a read-only, private file mapping that was never written
    // discards no data: a later read of a page fetches it from the file again, with the
    // same bytes (the file does not change, see `map_checked`).
    #[allow(unsafe_code)]
    let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
}

/// Check that `p` matches its digest, without mapping it (for `index`, which rewrites
/// them from the narinfos but must not build on a damaged generation).
///
/// # Errors
/// As [`Mapped::open`].
pub fn verify(dir: &Path, meta: &IndexMeta) -> Result<()> {
    if present(meta) {
        Mapped::open(dir, meta)?;
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Bytes of column files hashed on this thread (what the tests of [`Mapped::reopen`] count).
    pub static HASHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Check every file `names[i]` of `dir` against `digests[i]` (length and SHA-256 of the
/// whole file), on as many threads as there are cores, largest files first: the one pass
/// over every byte of the columns that opening them costs. The first damage found is the
/// error, naming its file.
fn hash_all(dir: &Path, names: &[&str], digests: &[&FileDigest]) -> Result<()> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(digests[i].bytes));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let check = |i: usize| -> Result<u64> {
        let p = dir.join(names[i]);
        let got = FileDigest::of_file(&p, digests[i].records)?;
        if got.sha256 != digests[i].sha256 || got.bytes != digests[i].bytes {
            return Err(damaged(
                &p,
                format_args!(
                    "SHA-256 {}, meta.json recorded {}",
                    got.sha256, digests[i].sha256
                ),
            ));
        }
        Ok(got.bytes)
    };
    let hashed = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<u64> {
                    let mut bytes = 0;
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = order.get(k) else {
                            return Ok(bytes);
                        };
                        bytes += check(i)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a column hashing thread panicked"))?
            })
            .sum::<Result<u64>>()
    })?;
    #[cfg(test)]
    HASHED.with(|h| h.set(h.get() + hashed));
    let _ = hashed;
    Ok(())
}

/// Map `p`, whose length must be `d`'s (its content is checked by [`hash_all`]).
fn map_checked(p: &Path, d: &FileDigest) -> Result<Option<Mmap>> {
    let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let len = super::check_len(&f, p, d)?;
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the map is read-only and private to this process; narward never writes to a
    // generation's files after they are sealed (an update writes a new directory and
    // renames it into place), so the bytes do not change under the map. Every length,
    // offset and id read through it is checked ([`CacheGraph::new`]) before use.
    #[allow(unsafe_code)]
    let m = unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", p.display()))?;
    if m.len() as u64 != len {
        return Err(damaged(p, "changed while it was read"));
    }
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Above 8 Mi edges no pass of the referrer fill holds all of them, and none holds more
    /// than 256 MiB of ids however many there are.
    #[test]
    fn no_referrer_pass_holds_all_edges_or_more_than_64_mi_ids() {
        assert_eq!(referrer_pass_ids(0), 1 << 20);
        assert_eq!(referrer_pass_ids(33_508_535), 33_508_535 / 8);
        assert!(referrer_pass_ids(9 << 20) < 9 << 20);
        assert_eq!(referrer_pass_ids(1_600_000_000), REFERRER_PASS_IDS);
        assert_eq!(referrer_pass_ids(u64::MAX), REFERRER_PASS_IDS);
    }
}
