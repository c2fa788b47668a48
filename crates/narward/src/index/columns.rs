//! The index's column files (see [`crate::cache_graph`]): written with every generation,
//! checked against `meta.json` (length and SHA-256) and memory-mapped on open.

use super::{FileDigest, IndexMeta, StreamWriter, damaged};
use crate::cache_graph::{self, CacheGraph, build::Columns};
use crate::model::FetchedRecord;
use anyhow::{Context, Result};
use memmap2::Mmap;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
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

/// Build the columns and the quirks file of the generation in `dir` from `objects` (its
/// listing) and its narinfo stream file, and write them (for writers of an index that do not go through
/// [`super::Index::save`], like the benchmark generator).
///
/// # Errors
/// A damaged narinfo stream; I/O errors.
pub fn write_from_narinfo_file(
    dir: &Path,
    objects: &crate::listing::Listing,
) -> Result<BTreeMap<String, FileDigest>> {
    let p = dir.join(super::NARINFOS_FILE);
    let cols = Columns::build(objects, |f| {
        super::read_stream(&p, |r: crate::model::FetchedRecord| f(&r)).map(|_| ())
    })?;
    write_with_quirks(dir, &cols, &p, None)
}

/// Write the quirks file (the quirks of the graph over `cols` among the narinfo records of
/// the stream `records`, checked against `digest` when given) and the column files of
/// `cols` into `dir`; returns their digests by file name. The one way a generation's
/// columns and quirks are written.
///
/// # Errors
/// A damaged record stream; I/O errors.
pub(super) fn write_with_quirks(
    dir: &Path,
    cols: &Columns,
    records: &Path,
    digest: Option<&FileDigest>,
) -> Result<BTreeMap<String, FileDigest>> {
    let g = CacheGraph::new(cols.parts())?;
    let quirks = write_quirks(&dir.join(super::QUIRKS_FILE), &g, records, digest)?;
    drop(g);
    let mut out = write(dir, cols)?;
    out.insert(super::QUIRKS_FILE.to_string(), quirks);
    Ok(out)
}

/// Write the quirks of `g` among the records of the stream `records` to `path`: a first
/// reading finds them (their positions are all that is held), a second writes them.
fn write_quirks(
    path: &Path,
    g: &CacheGraph<'_>,
    records: &Path,
    digest: Option<&FileDigest>,
) -> Result<FileDigest> {
    let mut at = Vec::new();
    let mut i = 0u64;
    super::read_checked(records, digest, |r: FetchedRecord| {
        if cache_graph::quirks::is_quirk(g, &r) {
            at.push(i);
        }
        i += 1;
        Ok(())
    })?;
    let mut w = StreamWriter::create(path, at.len() as u64, 3)?;
    let (mut i, mut next) = (0u64, at.iter().peekable());
    super::read_checked(records, digest, |r: FetchedRecord| {
        if next.next_if(|&&p| p == i).is_some() {
            w.push(&r)?;
        }
        i += 1;
        Ok(())
    })?;
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
        Self::open_checked(dir, meta, true)
    }

    /// [`Mapped::open`] of a generation whose files this process hashed already while it
    /// holds the state lock (`index`'s second reading of the previous generation, after
    /// [`super::generation::Reuse::scan`]): lengths are checked, the SHA-256 is not
    /// computed again ([`Mapped::graph`] still checks every length, offset and id).
    ///
    /// # Errors
    /// A missing, unreadable or resized file.
    pub fn reopen(dir: &Path, meta: &IndexMeta) -> Result<Mapped> {
        Self::open_checked(dir, meta, false)
    }

    fn open_checked(dir: &Path, meta: &IndexMeta, hash: bool) -> Result<Mapped> {
        let names: Vec<&'static str> = cache_graph::file_names().collect();
        let digests = names
            .iter()
            .map(|n| meta.file(n))
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
    // same bytes (the file does not change, see `map_verified`).
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
