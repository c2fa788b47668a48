//! Writing a generation record by record, and reading the previous one as a stream: what
//! lets `narward index` hold no narinfo text beyond the few in flight (and the previous
//! texts of the narinfos that changed).
//!
//! The new generation's narinfo records go to the column builder and to a temporary
//! stream file in `index.new/` ([`RECORDS_TMP`]) as they come; once the columns are built,
//! that file is read once to find the quirks (twice: to count them, then to write them),
//! then deleted. The previous generation's unchanged rows are taken over in key order:
//! as they are where [`TakeOver`] allows (to the column builder only), else printed back
//! from its columns and quirks (or read from its narinfo stream, in an index that has
//! one) as records.

use super::{
    DEBUGINFO_FILE, FileDigest, IndexMeta, NARINFOS_FILE, OBJECTS_FILE, QUIRKS_FILE, StreamWriter,
    columns, index_dir, read_all, read_stream_verified, write_listing, write_meta, write_stream,
};
use crate::cache::file_stat::{FileStat, StatCache};
use crate::cache_graph::build::ColumnsBuilder;
use crate::cache_graph::{self, CacheGraph, Status, key_order, quirks};
use crate::graph::NONE;
use crate::listing::Listing;
use crate::model::{FetchedRecord, ObjectRecord};
use crate::plan::names_a_path;
use anyhow::{Context, Result, bail};
use columns::ColumnFiles;
use narward_formats::keys::{self, ObjectKind};
use narward_formats::narinfo::NarInfo;
use narward_formats::store_path::{StorePath, StorePathHash};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The temporary stream of the new generation's narinfo records (deleted before the
/// generation is installed; never in `meta.json`).
pub const RECORDS_TMP: &str = "narinfos.tmp.bin.zst";

/// A `file://` listing's stat cache ([`crate::cache::file_stat`]): the stat and MD5 of
/// every narinfo and debuginfo file, sorted by device and inode. The same cache gives the
/// same file.
pub const FILE_STATS: &str = "filestat.bin.zst";

/// The stat cache of the generation in `dir` (described by `meta`), when it has one (a
/// `file://` generation written since narward keeps one).
///
/// # Errors
/// The file is missing or damaged (named).
pub fn stat_cache(dir: &Path, meta: &IndexMeta) -> Result<Option<StatCache>> {
    let Some(started) = meta.last_update.listing_started_ns else {
        return Ok(None);
    };
    if !meta.files.contains_key(FILE_STATS) {
        return Ok(None);
    }
    let entries: Vec<FileStat> = read_all(&dir.join(FILE_STATS), meta.file(FILE_STATS)?)?;
    Ok(Some(StatCache::new(entries, started)))
}

/// Which stream a record of this key belongs to: `Some(true)` for a narinfo,
/// `Some(false)` for a `debuginfo/` link or `nix-cache-info`, `None` for other objects.
pub fn record_kind(key: &str) -> Option<bool> {
    match keys::classify(key) {
        ObjectKind::Narinfo(_) => Some(true),
        ObjectKind::DebugInfo(_) | ObjectKind::CacheInfo => Some(false),
        _ => None,
    }
}

/// A new generation being written into `<state>/index.new/`: the listing at once, then
/// the narinfo and debuginfo records one by one in key order (each narinfo to the column
/// builder and the temporary record stream), then the columns, the quirks, `meta.json`,
/// and the rename into place.
pub struct NewGeneration<'a> {
    state: PathBuf,
    dir: PathBuf,
    files: BTreeMap<String, FileDigest>,
    records: StreamWriter,
    debuginfo: StreamWriter,
    columns: ColumnsBuilder<'a, ColumnFiles>,
}

impl<'a> NewGeneration<'a> {
    /// Start a generation of the listing `objects` (sorted by key) that will hold
    /// `narinfos` narinfo records and `debuginfo` debuginfo records.
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(
        state: &Path,
        objects: &'a Listing,
        narinfos: u64,
        debuginfo: u64,
    ) -> Result<NewGeneration<'a>> {
        std::fs::create_dir_all(state)
            .with_context(|| format!("creating state directory {}", state.display()))?;
        let dir = state.join("index.new");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = BTreeMap::new();
        files.insert(
            OBJECTS_FILE.to_string(),
            write_listing(&dir.join(OBJECTS_FILE), objects)?,
        );
        Ok(NewGeneration {
            // Read back once, soon: the fastest level.
            records: StreamWriter::create(&dir.join(RECORDS_TMP), narinfos, 1)?,
            debuginfo: StreamWriter::create(&dir.join(DEBUGINFO_FILE), debuginfo, 3)?,
            columns: ColumnsBuilder::with_sink(objects, ColumnFiles::create(&dir)?),
            state: state.to_path_buf(),
            dir,
            files,
        })
    }

    /// Write the listing's stat cache (`stats`, sorted) into the generation.
    ///
    /// # Errors
    /// I/O errors.
    pub fn file_stats(&mut self, stats: &[FileStat]) -> Result<()> {
        let d = write_stream(&self.dir.join(FILE_STATS), stats)?;
        self.files.insert(FILE_STATS.to_string(), d);
        Ok(())
    }

    /// The next narinfo record (in key order).
    ///
    /// # Errors
    /// I/O errors; a record out of key order.
    pub fn push_narinfo(&mut self, rec: &FetchedRecord) -> Result<()> {
        self.records.push(rec)?;
        self.columns.record(rec)
    }

    /// The next narinfo, a row of the previous generation taken over as it is (see
    /// [`TakeOver`]): it goes to the column builder only, being no quirk (or found to be
    /// one once the columns are written: [`TakeOver::late_quirks`]).
    ///
    /// # Errors
    /// I/O errors; a narinfo out of key order.
    pub fn push_same(
        &mut self,
        hash: &StorePathHash,
        ni: &NarInfo<'_>,
        refs: &[u32],
        holes: &str,
    ) -> Result<()> {
        self.columns.same(hash, ni, refs, holes)
    }

    /// The next `debuginfo/` or `nix-cache-info` record (in key order).
    ///
    /// # Errors
    /// I/O errors.
    pub fn push_debuginfo(&mut self, rec: &FetchedRecord) -> Result<()> {
        self.debuginfo.push(rec)
    }

    /// Narinfos so far that do not parse or could not be fetched.
    pub fn unparseable(&self) -> u64 {
        self.columns.unparseable()
    }

    /// Finish the files, write the columns, the quirks and `meta` (its `files` filled in,
    /// then sealed), delete the temporary record stream, and make this generation the
    /// current one.
    ///
    /// # Errors
    /// A record count different from the one announced; I/O errors.
    pub fn finish(self, meta: &mut IndexMeta) -> Result<()> {
        self.finish_with(meta, &|_| Ok(Vec::new()))
    }

    /// [`NewGeneration::finish`], with `late` giving the quirks found only once the columns
    /// are written ([`TakeOver::late_quirks`]), in key order.
    ///
    /// # Errors
    /// As [`NewGeneration::finish`]; `late`'s errors.
    pub fn finish_with(self, meta: &mut IndexMeta, late: columns::LateQuirks<'_>) -> Result<()> {
        let NewGeneration {
            state,
            dir,
            mut files,
            records,
            debuginfo,
            columns,
        } = self;
        files.insert(DEBUGINFO_FILE.to_string(), debuginfo.finish()?);
        let tmp = dir.join(RECORDS_TMP);
        let tmp_digest = records.finish()?;
        let cols = columns.finish()?.into_digests();
        files.extend(columns::seal(&dir, cols, &tmp, Some(&tmp_digest), late)?);
        std::fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        meta.files = files;
        write_meta(&dir, meta)?;
        install(&state, &dir)
    }
}

/// Rename the generation in `new` into place: a crash leaves the old index or the new one.
fn install(state: &Path, new: &Path) -> Result<()> {
    let cur = index_dir(state);
    let old = state.join("index.old");
    let remove =
        |d: &Path| std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()));
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
    };
    if cur.exists() {
        if old.exists() {
            remove(&old)?;
        }
        rename(&cur, &old)?;
    }
    rename(new, &cur)?;
    if old.exists() {
        remove(&old)?;
    }
    Ok(())
}

/// One record of a previous generation: what decides whether it is reused, and the record
/// itself, built only when asked for (printing a narinfo back costs more than comparing).
pub struct PrevRecord<'r> {
    pub key: &'r str,
    /// Its path id in the previous generation's columns (`None` when read from a
    /// narinfo stream, or for a debuginfo record).
    pub id: Option<u32>,
    pub etag: Option<&'r str>,
    pub size: u64,
    pub fetch_failed: bool,
    record: &'r dyn Fn() -> Option<FetchedRecord>,
}

impl PrevRecord<'_> {
    /// The whole record (`None` only for a path the generation holds no record of).
    pub fn record(&self) -> Option<FetchedRecord> {
        (self.record)()
    }

    fn of(
        r: &FetchedRecord,
        id: Option<u32>,
        f: impl FnOnce(&PrevRecord<'_>) -> Result<()>,
    ) -> Result<()> {
        f(&PrevRecord {
            key: &r.key,
            id,
            etag: r.etag.as_deref(),
            size: r.size,
            fetch_failed: r.fetch_error.is_some(),
            record: &|| Some(r.clone()),
        })
    }
}

/// Call `f` on every narinfo record of the generation in `dir` (described by `meta`), in
/// key order, each verified: from its narinfo stream when it has one, else printed back
/// from its columns and quirks ([`crate::cache_graph::record`]) with the ETag and size of
/// its listing, which is streamed alongside. Act only once this returns `Ok`.
///
/// # Errors
/// A missing or damaged file (named); `f`'s errors.
pub fn for_each_narinfo(
    dir: &Path,
    meta: &IndexMeta,
    f: impl FnMut(FetchedRecord) -> Result<()>,
) -> Result<()> {
    each_record(dir, meta, columns::Mapped::open, f)
}

/// [`for_each_narinfo`] with each record built only when `f` asks for it.
///
/// # Errors
/// As [`for_each_narinfo`].
pub fn walk_narinfos(
    dir: &Path,
    meta: &IndexMeta,
    f: impl FnMut(&PrevRecord<'_>) -> Result<()>,
) -> Result<()> {
    walk(dir, meta, columns::Mapped::open, f)
}

/// [`for_each_narinfo`] of a generation [`Reuse::scan`] verified in this process, under
/// the state lock: its column files are not hashed again ([`columns::Mapped::reopen`]).
///
/// # Errors
/// As [`for_each_narinfo`].
pub fn for_each_narinfo_again(
    dir: &Path,
    meta: &IndexMeta,
    f: impl FnMut(FetchedRecord) -> Result<()>,
) -> Result<()> {
    each_record(dir, meta, columns::Mapped::reopen, f)
}

/// Every narinfo record, from the narinfo stream when the generation has one (verified),
/// else printed back from the columns `open` maps.
fn each_record(
    dir: &Path,
    meta: &IndexMeta,
    open: fn(&Path, &IndexMeta) -> Result<columns::Mapped>,
    mut f: impl FnMut(FetchedRecord) -> Result<()>,
) -> Result<()> {
    if meta.files.contains_key(NARINFOS_FILE) {
        return read_stream_verified(&dir.join(NARINFOS_FILE), meta.file(NARINFOS_FILE)?, f)
            .map(|_| ());
    }
    walk(dir, meta, open, |p| p.record().map_or(Ok(()), &mut f))
}

fn walk(
    dir: &Path,
    meta: &IndexMeta,
    open: fn(&Path, &IndexMeta) -> Result<columns::Mapped>,
    mut f: impl FnMut(&PrevRecord<'_>) -> Result<()>,
) -> Result<()> {
    if meta.files.contains_key(NARINFOS_FILE) {
        let d = meta.file(NARINFOS_FILE)?;
        read_stream_verified(&dir.join(NARINFOS_FILE), d, |r: FetchedRecord| {
            PrevRecord::of(&r, None, &mut f)
        })?;
        return Ok(());
    }
    let mapped = open(dir, meta)?;
    let g = mapped.graph()?;
    let quirks: Vec<FetchedRecord> = read_all(&dir.join(QUIRKS_FILE), meta.file(QUIRKS_FILE)?)?;
    let objects = dir.join(OBJECTS_FILE);
    let mut id = 0u32;
    read_stream_verified(&objects, meta.file(OBJECTS_FILE)?, |o: ObjectRecord| {
        let ObjectKind::Narinfo(h) = keys::classify(&o.key) else {
            return Ok(());
        };
        if id as usize >= g.len() || g.hash(id) != h {
            bail!(
                "{}: {} is not path {id} of the columns: the index cannot be trusted: re-run `narward index` with a fresh --state",
                objects.display(),
                o.key
            );
        }
        let this = id;
        id += 1;
        // The records built (of changed narinfos) touch pages all over the columns.
        if this.is_multiple_of(cache_graph::SCAN_STRETCH) {
            cache_graph::LetGo::let_go(&mapped);
        }
        if let Some(q) = crate::cache_graph::quirks::find(&quirks, &o.key) {
            return PrevRecord::of(q, Some(this), &mut f);
        }
        let status = g.status(this);
        if status == Status::NotIndexed {
            return Ok(());
        }
        f(&PrevRecord {
            key: &o.key,
            id: Some(this),
            etag: o.etag.as_deref(),
            size: o.size,
            fetch_failed: status == Status::FetchFailed,
            record: &|| {
                crate::cache_graph::record(&g, &quirks, this, Some((o.etag.clone(), o.size)))
            },
        })
    })?;
    if id as usize != g.len() {
        bail!(
            "{}: {id} narinfos, the columns count {}: the index cannot be trusted: re-run `narward index` with a fresh --state",
            objects.display(),
            g.len()
        );
    }
    Ok(())
}

/// What the previous generation offers a new listing, decided in one streaming pass over
/// its records (no text is kept but that of changed records).
#[derive(Default)]
pub struct Reuse {
    /// Per object of the new listing: its record is the previous one, unchanged (same
    /// ETag, which both have, and size, fetched without error).
    pub unchanged: Vec<bool>,
    /// Previous records of narinfos that are listed again but changed: their texts are
    /// carried as `earlier` by the new ones.
    pub changed: HashMap<String, FetchedRecord>,
    /// Previous records whose key is no longer listed (nix-cache-info not counted).
    pub dropped: u64,
    /// Per path id of the previous generation's columns (up to the last one found
    /// unchanged): its narinfo is listed again, unchanged.
    pub unchanged_ids: Vec<bool>,
}

impl Reuse {
    /// Nothing to reuse: a first index.
    pub fn none(objects: &Listing) -> Reuse {
        Reuse {
            unchanged: vec![false; objects.len()],
            ..Reuse::default()
        }
    }

    /// Compare the previous generation in `dir` (described by `meta`) with `objects`.
    /// Every file of that generation is read and checked here, so a damaged one is no
    /// base for the update.
    ///
    /// # Errors
    /// A missing or damaged file (named).
    pub fn scan(dir: &Path, meta: &IndexMeta, objects: &Listing) -> Result<Reuse> {
        let mut r = Reuse::none(objects);
        walk_narinfos(dir, meta, |p| {
            r.one(objects, p);
            Ok(())
        })?;
        read_stream_verified(
            &dir.join(DEBUGINFO_FILE),
            meta.file(DEBUGINFO_FILE)?,
            |p: FetchedRecord| {
                PrevRecord::of(&p, None, |p| {
                    r.one(objects, p);
                    Ok(())
                })
            },
        )?;
        // An index with a narinfo stream: its columns and quirks are no base either when
        // damaged (they are rebuilt, but the damage says the generation cannot be trusted).
        if meta.files.contains_key(NARINFOS_FILE) {
            let o = meta.file(OBJECTS_FILE)?;
            read_stream_verified(&dir.join(OBJECTS_FILE), o, |_: ObjectRecord| Ok(()))?;
            columns::verify(dir, meta)?;
            if meta.files.contains_key(QUIRKS_FILE) {
                let q = meta.file(QUIRKS_FILE)?;
                read_stream_verified(&dir.join(QUIRKS_FILE), q, |_: FetchedRecord| Ok(()))?;
            }
        }
        Ok(r)
    }

    fn one(&mut self, objects: &Listing, p: &PrevRecord<'_>) {
        let Some(i) = objects.find(p.key) else {
            self.dropped += u64::from(!matches!(keys::classify(p.key), ObjectKind::CacheInfo));
            return;
        };
        let o = objects.at(i);
        if record_kind(&o.key()).is_none() {
            // Listed, but no longer as a narinfo or debuginfo key: nothing to reuse.
            return;
        }
        // Without an ETag (an inventory report without that column) the size alone says
        // nothing: a narinfo rewritten at the same size must be fetched again.
        if p.etag.is_some_and(|e| o.etag().is_some_and(|oe| oe == e))
            && p.size == o.size()
            && !p.fetch_failed
        {
            self.unchanged[i] = true;
            if let Some(id) = p.id {
                let id = id as usize;
                if self.unchanged_ids.len() <= id {
                    self.unchanged_ids.resize(id + 1, false);
                }
                self.unchanged_ids[id] = true;
            }
        } else if matches!(keys::classify(p.key), ObjectKind::Narinfo(_))
            && let Some(rec) = p.record()
        {
            self.changed.insert(rec.key.clone(), rec);
        }
    }
}

/// The previous generation's columns, as an incremental `index` takes its rows over:
/// copied as they are where [`TakeOver`] allows, else printed back as records.
pub struct OldColumns {
    mapped: columns::Mapped,
    quirks: Vec<FetchedRecord>,
}

impl OldColumns {
    /// The columns of the generation in `dir` (described by `meta`), which
    /// [`Reuse::scan`] verified; `None` for a generation with a narinfo stream.
    ///
    /// # Errors
    /// A missing, resized or inconsistent file (named).
    pub fn open(dir: &Path, meta: &IndexMeta) -> Result<Option<OldColumns>> {
        if meta.files.contains_key(NARINFOS_FILE) {
            return Ok(None);
        }
        Ok(Some(OldColumns {
            mapped: columns::Mapped::reopen(dir, meta)?,
            quirks: read_all(&dir.join(QUIRKS_FILE), meta.file(QUIRKS_FILE)?)?,
        }))
    }

    /// The graph over the columns (every length, offset and id checked).
    ///
    /// # Errors
    /// Inconsistent columns (named).
    pub fn graph(&self) -> Result<CacheGraph<'_>> {
        self.mapped.graph()
    }

    pub fn quirks(&self) -> &[FetchedRecord] {
        &self.quirks
    }

    /// Let go of the pages read so far (they stay in the page cache).
    pub fn let_go(&self) {
        cache_graph::LetGo::let_go(&self.mapped);
    }
}

/// How a row of the previous generation is taken over by an incremental `index`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// Printed back as a record (with the quirks), parsed again and checked for a quirk.
    Print,
    /// As it is: printing it and parsing that text again gives back the same values, so
    /// the builder is handed those; the new columns print the same text for it, so it is
    /// still no quirk.
    Same,
    /// As it is, but a path it references changed: its text prints the same only if that
    /// path's name did not change, which is checked once the new columns are written
    /// ([`TakeOver::late_quirks`]).
    SameIfNamesHold,
}

/// The previous generation's rows as an incremental `index` takes them over, in key order:
/// as they are where that gives the row and the text that printing them back would
/// ([`How`]), else printed back as records.
pub struct TakeOver<'g> {
    old: &'g OldColumns,
    g: &'g CacheGraph<'g>,
    objects: &'g Listing,
    /// Per previous path id.
    how: Vec<How>,
    /// Per previous path id: its id in the new listing ([`new_ids`]).
    new_ids: Vec<u32>,
    /// Per previous path id: its narinfo is listed again unchanged.
    unchanged: Vec<bool>,
    /// The next previous path id to look at (rows come in key order).
    next: u32,
    /// Rows taken over as [`How::SameIfNamesHold`]: (previous id, listing index).
    recheck: Vec<(u32, usize)>,
    refs: Vec<u32>,
    handed: u64,
}

impl<'g> TakeOver<'g> {
    /// Decide how each row of `g` (the columns of `old`) is taken over into the listing
    /// `objects`, `unchanged` telling by previous id which narinfos are listed again
    /// unchanged. A row is taken over as it is when:
    /// - its narinfo is listed again unchanged, parses, and is no quirk;
    /// - every path it references is listed again (so still a path);
    /// - none of its holes is a path now;
    /// - no name it prints (a referenced path's, a hole's) holds the hash of a path now,
    ///   which would be a reference hidden in it.
    ///
    /// Its values, references and holes are then those parsing its text gives; its text
    /// prints the same when the names of the paths it references did not change, which
    /// holds for those listed unchanged ([`How::Same`]) and is checked later for the
    /// others ([`How::SameIfNamesHold`]).
    pub fn new(
        old: &'g OldColumns,
        g: &'g CacheGraph<'g>,
        unchanged: Vec<bool>,
        objects: &'g Listing,
    ) -> TakeOver<'g> {
        let new_ids = new_ids(g, objects);
        let is_path = |h: &StorePathHash| objects.find(&format!("{h}.narinfo")).is_some();
        let how = how_taken(g, old.quirks(), (&unchanged, &new_ids), &is_path, &|| {
            old.let_go();
        });
        TakeOver {
            old,
            g,
            objects,
            how,
            new_ids,
            unchanged,
            next: 0,
            recheck: Vec::new(),
            refs: Vec::new(),
            handed: 0,
        }
    }

    /// Rows taken over as they are (they go to the column builder only).
    pub fn same_count(&self) -> u64 {
        self.how.iter().filter(|&&h| h != How::Print).count() as u64
    }

    /// The previous id of the narinfo with hash `h` (asked in key order).
    fn seek(&mut self, h: &StorePathHash) -> Option<u32> {
        let n = self.g.len() as u32;
        while self.next < n && key_order(&self.g.hash(self.next).0, &h.0).is_lt() {
            self.next += 1;
        }
        (self.next < n && self.g.hash(self.next) == *h).then_some(self.next)
    }

    /// Hand the row of the unchanged narinfo at listing index `i` over to `out`.
    ///
    /// # Errors
    /// The previous columns have no row of it (they changed during the update); `out`'s
    /// errors.
    pub fn hand_over(&mut self, out: &mut NewGeneration<'_>, i: usize) -> Result<()> {
        let o = self.objects.at(i);
        let lost = || {
            format!(
                "internal: {} is unchanged but not in the previous columns",
                o.key()
            )
        };
        let h = o.narinfo_hash().with_context(lost)?;
        let id = self.seek(&h).with_context(lost)?;
        self.handed += 1;
        if self.handed.is_multiple_of(1 << 16) {
            self.old.let_go();
        }
        let how = self.how[id as usize];
        if how == How::Print {
            let listed = Some((o.etag_string(), o.size()));
            let rec =
                cache_graph::record(self.g, self.old.quirks(), id, listed).with_context(lost)?;
            return out.push_narinfo(&rec);
        }
        if how == How::SameIfNamesHold {
            self.recheck.push((id, i));
        }
        let ni = self.g.narinfo_fields(id).with_context(lost)?;
        self.refs.clear();
        let new_ids = &self.new_ids;
        self.refs
            .extend(self.g.refs(id).iter().map(|&t| new_ids[t as usize]));
        if self.refs.contains(&NONE) {
            bail!(
                "internal: {}: a reference taken over is not listed",
                o.key()
            );
        }
        out.push_same(&h, &ni, &self.refs, self.g.holes_text(id))
    }

    /// The rows taken over as [`How::SameIfNamesHold`] whose referenced paths' names
    /// changed in the new columns `new`: quirks now, their texts (the previous columns
    /// print them) kept as records, in key order.
    ///
    /// # Errors
    /// The previous columns have no record of one of them.
    pub fn late_quirks(&self, new: &CacheGraph<'_>) -> Result<Vec<FetchedRecord>> {
        self.old.let_go();
        // Per previous path id: listed again, changed, under another name (the names of
        // paths listed again unchanged are the same).
        let renamed: Vec<bool> = (0..self.g.len())
            .map(|t| {
                let n = self.new_ids[t];
                !self.unchanged.get(t).copied().unwrap_or(false)
                    && (n == NONE || new.name(n) != self.g.name(t as u32))
            })
            .collect();
        let mut out = Vec::new();
        for &(id, i) in &self.recheck {
            if self.g.refs(id).iter().any(|&t| renamed[t as usize]) {
                let o = self.objects.at(i);
                let listed = Some((o.etag_string(), o.size()));
                out.push(
                    cache_graph::record(self.g, self.old.quirks(), id, listed)
                        .with_context(|| format!("internal: no previous record of {}", o.key()))?,
                );
            }
        }
        self.old.let_go();
        Ok(out)
    }
}

/// [`How`] each row of `g` is taken over (see [`TakeOver::new`]).
/// `let_go` lets go of the column pages read so far (called every
/// [`cache_graph::SCAN_STRETCH`] paths of each pass and at the end).
fn how_taken(
    g: &CacheGraph<'_>,
    quirks: &[FetchedRecord],
    (unchanged, new_ids): (&[bool], &[u32]),
    is_path: &dyn Fn(&StorePathHash) -> bool,
    let_go: &dyn Fn(),
) -> Vec<How> {
    let n = g.len();
    #[cfg(test)]
    if !TAKE_OVER.with(std::cell::Cell::get) {
        return vec![How::Print; n];
    }
    let unchanged = |id: u32| unchanged.get(id as usize).copied().unwrap_or(false);
    let stretch = |id: u32| {
        if id.is_multiple_of(cache_graph::SCAN_STRETCH) {
            let_go();
        }
    };
    // Per path: its name names no path now (it is printed by every path referencing it).
    let plain_name: Vec<bool> = (0..n as u32)
        .map(|t| {
            stretch(t);
            !names_a_path(g.name(t), is_path)
        })
        .collect();
    let hole_is_plain = |b: &str| {
        StorePath::parse_base_name(b)
            .is_ok_and(|sp| !is_path(&sp.hash) && !names_a_path(sp.name, is_path))
    };
    let how: Vec<How> = (0..n as u32)
        .map(|id| {
            stretch(id);
            let refs = g.refs(id);
            let same = unchanged(id)
                && g.status(id).parsed()
                && quirks::of(g, quirks, id).is_none()
                && refs
                    .iter()
                    .all(|&t| new_ids[t as usize] != NONE && plain_name[t as usize])
                && g.holes(id).all(hole_is_plain);
            match (same, refs.iter().all(|&t| unchanged(t))) {
                (false, _) => How::Print,
                (true, true) => How::Same,
                (true, false) => How::SameIfNamesHold,
            }
        })
        .collect();
    let_go();
    #[cfg(test)]
    TAKEN_OVER.with(|t| t.set(t.get() + how.iter().filter(|&&h| h != How::Print).count() as u64));
    how
}

#[cfg(test)]
thread_local! {
    /// Off: no row is taken over as it is (the tests compare both ways).
    pub static TAKE_OVER: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    /// Rows found to take over as they are on this thread.
    pub static TAKEN_OVER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Per path id of the previous generation `g`: its id in the listing `objects` (the rank
/// of its `<hash>.narinfo` among the listing's narinfos), or [`NONE`] when not listed. Both
/// are in key order, so this is one merge, and it keeps the order of ids.
fn new_ids(g: &CacheGraph<'_>, objects: &Listing) -> Vec<u32> {
    let mut out = vec![NONE; g.len()];
    let mut old = 0u32;
    let listed = objects.iter().filter_map(|o| o.narinfo_hash());
    for (new, h) in (0u32..).zip(listed) {
        while (old as usize) < out.len() && key_order(&g.hash(old).0, &h.0).is_lt() {
            old += 1;
        }
        if (old as usize) < out.len() && g.hash(old) == h {
            out[old as usize] = new;
        }
    }
    out
}

/// The previous generation's records of one kind, in key order, read on a thread of
/// their own (so that they flow while narinfos are fetched).
pub struct PreviousRecords {
    rx: tokio::sync::mpsc::Receiver<Result<FetchedRecord>>,
    thread: Option<std::thread::JoinHandle<()>>,
    name: PathBuf,
}

impl PreviousRecords {
    /// The narinfo records ([`for_each_narinfo_again`]) of the generation in `dir`, which
    /// [`Reuse::scan`] verified.
    pub fn narinfos(dir: &Path, meta: &IndexMeta) -> PreviousRecords {
        let (d, m) = (dir.to_path_buf(), meta.clone());
        Self::start(dir.to_path_buf(), move |f| {
            for_each_narinfo_again(&d, &m, f)
        })
    }

    /// The debuginfo records of the generation in `dir`.
    ///
    /// # Errors
    /// `meta` has no digest of the debuginfo file.
    pub fn debuginfo(dir: &Path, meta: &IndexMeta) -> Result<PreviousRecords> {
        let p = dir.join(DEBUGINFO_FILE);
        let digest = meta.file(DEBUGINFO_FILE)?.clone();
        let q = p.clone();
        Ok(Self::start(p, move |f| {
            read_stream_verified(&q, &digest, f).map(|_| ())
        }))
    }

    fn start(
        name: PathBuf,
        read: impl FnOnce(&mut dyn FnMut(FetchedRecord) -> Result<()>) -> Result<()> + Send + 'static,
    ) -> PreviousRecords {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let thread = std::thread::spawn(move || {
            let r = read(&mut |rec: FetchedRecord| {
                tx.blocking_send(Ok(rec))
                    .map_err(|_| anyhow::anyhow!("the index update stopped"))
            });
            if let Err(e) = r {
                let _ = tx.blocking_send(Err(e));
            }
        });
        PreviousRecords {
            rx,
            thread: Some(thread),
            name,
        }
    }

    /// The previous record of `key`, skipping the records before it (changed or gone).
    ///
    /// # Errors
    /// The file is damaged, or has no record of `key` although the first pass found one.
    pub async fn take(&mut self, key: &str) -> Result<FetchedRecord> {
        while let Some(r) = self.rx.recv().await {
            let rec = r?;
            match rec.key.as_str().cmp(key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Ok(rec),
                std::cmp::Ordering::Greater => break,
            }
        }
        bail!(
            "{}: no record of {key} on the second reading: the previous generation changed during the update",
            self.name.display()
        )
    }

    /// Read the rest, so that damage found at the end of a file (its checksum) fails the
    /// update before the new generation is installed.
    ///
    /// # Errors
    /// The file is damaged.
    pub async fn finish(mut self) -> Result<()> {
        while let Some(r) = self.rx.recv().await {
            r?;
        }
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("{}: reader thread panicked", self.name.display()))?;
        }
        Ok(())
    }
}

impl Drop for PreviousRecords {
    fn drop(&mut self) {
        // Closing the channel stops the reader thread at its next record.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
    }
}
