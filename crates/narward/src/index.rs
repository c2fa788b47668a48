//! The embedded index: one state directory holding the cache's object listing and the
//! exact bytes of every narinfo, updated incrementally.
//!
//! Layout of `<state>/index/`:
//! - `meta.json` — cache identity, generation, counts, what the last update did;
//! - `objects.bin.zst` — every object (key, size, ETag, last-modified, storage class),
//!   sorted by key, bincode records in one zstd stream;
//! - `narinfos.bin.zst` — every `<hash>.narinfo` object's key, ETag, size and raw bytes
//!   (or the reason it could not be fetched), sorted by key;
//! - `debuginfo.bin.zst` — the same for `debuginfo/<build-id>` objects (small JSON links
//!   to a NAR member), so audit can find links that point at nothing, and for
//!   `nix-cache-info`, so audit can check its content.
//!
//! An update writes a complete new generation into `index.new/` and renames it into place,
//! so a crash leaves either the old or the new index, never a mix. Raw narinfo bytes are
//! kept rather than a parsed form: the formats crate stays the single interpretation, audit
//! can verify signatures byte for byte, and zstd folds the repeated parts (FileHash repeats
//! URL, reference names repeat across paths).

use crate::cache::{Cache, CacheUrl};
use crate::model::{FetchedRecord, ObjectRecord};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use narward_formats::keys::{self, ObjectKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 12] = b"NARWARD-IDX1";
pub const FORMAT_VERSION: u32 = 1;

/// What `meta.json` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
}

/// What one `index` run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
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
}

/// The loaded index.
#[derive(Debug, Clone)]
pub struct Index {
    pub meta: IndexMeta,
    /// Sorted by key.
    pub objects: Vec<ObjectRecord>,
    /// Sorted by key.
    pub narinfos: Vec<FetchedRecord>,
    /// `debuginfo/` objects and `nix-cache-info`, sorted by key.
    pub debuginfo: Vec<FetchedRecord>,
}

pub fn index_dir(state: &Path) -> PathBuf {
    state.join("index")
}

/// Write `items` as one zstd stream of bincode records (level 3: the index is kept long).
///
/// # Errors
/// I/O errors.
pub fn write_stream<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    write_stream_level(path, items, 3)
}

/// [`write_stream`] with a chosen zstd level.
///
/// # Errors
/// I/O errors.
pub fn write_stream_level<T: Serialize>(path: &Path, items: &[T], level: i32) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let mut w = BufWriter::new(f);
    w.write_all(MAGIC)?;
    let mut z = zstd::Encoder::new(w, level)?;
    bincode::serialize_into(&mut z, &(items.len() as u64))?;
    for it in items {
        bincode::serialize_into(&mut z, it)?;
    }
    let mut w = z.finish()?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Call `f` on every record of a stream file, in order, without loading them all.
///
/// # Errors
/// Missing file, wrong magic, truncated or corrupt data (the file is named).
pub fn read_stream<T: for<'de> Deserialize<'de>>(
    path: &Path,
    mut f: impl FnMut(T) -> Result<()>,
) -> Result<u64> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 12];
    r.read_exact(&mut magic)
        .with_context(|| format!("{}: truncated", path.display()))?;
    if &magic != MAGIC {
        bail!("{}: not a narward index file", path.display());
    }
    let mut z = BufReader::with_capacity(1 << 20, zstd::Decoder::with_buffer(r)?);
    let n: u64 = bincode::deserialize_from(&mut z)
        .with_context(|| format!("{}: corrupt header", path.display()))?;
    for i in 0..n {
        let it: T = bincode::deserialize_from(&mut z).with_context(|| {
            format!(
                "{}: corrupt or truncated at record {i} of {n}",
                path.display()
            )
        })?;
        f(it)?;
    }
    Ok(n)
}

/// Read the object listing; STANDARD is stored as `None` (S3's default) so the common
/// case holds no string.
fn read_objects(path: &Path) -> Result<Vec<ObjectRecord>> {
    let mut v = Vec::new();
    read_stream(path, |mut o: ObjectRecord| {
        if o.storage_class.as_deref() == Some("STANDARD") {
            o.storage_class = None;
        }
        v.push(o);
        Ok(())
    })?;
    Ok(v)
}

fn read_all<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let mut v = Vec::new();
    read_stream(path, |t| {
        v.push(t);
        Ok(())
    })?;
    Ok(v)
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
    /// No index in `state`, or an unreadable/corrupt one.
    pub fn load_meta(state: &Path) -> Result<IndexMeta> {
        let p = Self::current_dir(state).join("meta.json");
        let t = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "no index in {} (run `narward index` first)",
                state.display()
            )
        })?;
        let m: IndexMeta =
            serde_json::from_str(&t).with_context(|| format!("{}: corrupt", p.display()))?;
        if m.format_version != FORMAT_VERSION {
            bail!(
                "{}: index format {} is not supported (expected {FORMAT_VERSION}); re-run `narward index` with a fresh --state",
                p.display(),
                m.format_version
            );
        }
        Ok(m)
    }

    /// # Errors
    /// As [`Index::load_meta`], plus corrupt data files.
    pub fn load(state: &Path) -> Result<Index> {
        let meta = Self::load_meta(state)?;
        let d = Self::current_dir(state);
        Ok(Index {
            meta,
            objects: read_objects(&d.join("objects.bin.zst"))?,
            narinfos: read_all(&d.join("narinfos.bin.zst"))?,
            debuginfo: read_all(&d.join("debuginfo.bin.zst"))?,
        })
    }

    /// Load everything but the narinfo texts (they can be streamed with [`read_stream`]
    /// from [`Index::narinfos_path`]): what planning a large cache needs in memory.
    ///
    /// # Errors
    /// As [`Index::load`].
    pub fn load_without_narinfos(state: &Path) -> Result<Index> {
        let meta = Self::load_meta(state)?;
        let d = Self::current_dir(state);
        Ok(Index {
            meta,
            objects: read_objects(&d.join("objects.bin.zst"))?,
            narinfos: Vec::new(),
            debuginfo: read_all(&d.join("debuginfo.bin.zst"))?,
        })
    }

    /// Path of the narinfo stream of the current generation (for streaming readers).
    pub fn narinfos_path(state: &Path) -> PathBuf {
        Self::current_dir(state).join("narinfos.bin.zst")
    }

    /// Path of the object stream of the current generation.
    pub fn objects_path(state: &Path) -> PathBuf {
        Self::current_dir(state).join("objects.bin.zst")
    }

    /// Write this index as the current generation, atomically.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, state: &Path) -> Result<()> {
        std::fs::create_dir_all(state)
            .with_context(|| format!("creating state directory {}", state.display()))?;
        let new = state.join("index.new");
        let cur = index_dir(state);
        let old = state.join("index.old");
        if new.exists() {
            std::fs::remove_dir_all(&new)?;
        }
        std::fs::create_dir_all(&new)?;
        write_stream(&new.join("objects.bin.zst"), &self.objects)?;
        write_stream(&new.join("narinfos.bin.zst"), &self.narinfos)?;
        write_stream(&new.join("debuginfo.bin.zst"), &self.debuginfo)?;
        std::fs::write(
            new.join("meta.json"),
            serde_json::to_string_pretty(&self.meta)?,
        )?;
        if cur.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old)?;
            }
            std::fs::rename(&cur, &old)?;
        }
        std::fs::rename(&new, &cur)?;
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        Ok(())
    }

    /// The object with this key.
    pub fn object(&self, key: &str) -> Option<&ObjectRecord> {
        self.objects
            .binary_search_by(|o| o.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.objects[i])
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

/// Where the listing comes from.
pub enum ListingSource {
    /// List the cache itself.
    Live,
    /// A listing read from an S3 Inventory report (see [`crate::inventory`]).
    Inventory {
        location: String,
        objects: Vec<ObjectRecord>,
    },
}

/// Bring the index in `state` up to date with `cache`: list (or take the inventory's
/// listing), fetch only narinfos that are new or whose ETag/size changed, drop the ones
/// that are gone, and save a new generation.
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
) -> Result<(Index, UpdateStats)> {
    let identity = url.identity();
    let _lock = lock_state(state)?;
    let previous = if Index::exists(state) {
        let prev = Index::load(state)?;
        if prev.meta.cache != identity {
            bail!(
                "state directory {} holds an index of {}, not {identity}; use another --state",
                state.display(),
                prev.meta.cache
            );
        }
        Some(prev)
    } else {
        None
    };
    let (objects, source_desc) = match source {
        ListingSource::Live => {
            let pb = crate::progress::spinner("listing");
            let objects = cache.list(&|n| pb.inc(n)).await?;
            pb.finish_and_clear();
            (objects, "listing".to_string())
        }
        ListingSource::Inventory {
            location,
            mut objects,
        } => {
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            objects.dedup_by(|a, b| a.key == b.key);
            (objects, format!("inventory {location}"))
        }
    };
    let mut stats = UpdateStats {
        listed: objects.len() as u64,
        ..Default::default()
    };
    let mut prev_map: HashMap<String, FetchedRecord> = previous
        .as_ref()
        .map(|p| {
            p.narinfos
                .iter()
                .chain(&p.debuginfo)
                .map(|n| (n.key.clone(), n.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut narinfos = Vec::new();
    let mut to_fetch = Vec::new();
    for o in &objects {
        match keys::classify(&o.key) {
            ObjectKind::Narinfo(_) => stats.narinfo_objects += 1,
            // `nix-cache-info` travels with the debuginfo records (audit checks it).
            ObjectKind::DebugInfo(_) | ObjectKind::CacheInfo => {}
            _ => continue,
        }
        match prev_map.remove(&o.key) {
            Some(p) if p.etag == o.etag && p.size == o.size && p.fetch_error.is_none() => {
                stats.reused += u64::from(!is_cache_info(&o.key));
                narinfos.push(p);
            }
            _ => to_fetch.push(o),
        }
    }
    stats.dropped = prev_map.len() as u64;
    let pb = crate::progress::bar(to_fetch.len() as u64, "narinfos");
    let fetched: Vec<FetchedRecord> = futures::stream::iter(to_fetch)
        .map(|o| {
            let pb = &pb;
            async move {
                let r = cache.get(&o.key).await;
                pb.inc(1);
                let (text, fetch_error) = match r {
                    Ok(Some(b)) => (b, None),
                    Ok(None) => (
                        Vec::new(),
                        Some("listed but not found when fetched".to_string()),
                    ),
                    Err(e) => (Vec::new(), Some(format!("{e:#}"))),
                };
                FetchedRecord {
                    key: o.key.clone(),
                    etag: o.etag.clone(),
                    size: o.size,
                    text,
                    fetch_error,
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    pb.finish_and_clear();
    // The counts are of narinfos and debuginfo entries, as before nix-cache-info was kept.
    let counted = || fetched.iter().filter(|n| !is_cache_info(&n.key));
    stats.fetched = counted().count() as u64;
    stats.fetch_errors = counted().filter(|n| n.fetch_error.is_some()).count() as u64;
    narinfos.extend(fetched);
    narinfos.sort_by(|a, b| a.key.cmp(&b.key));
    let (mut debuginfo, mut narinfos): (Vec<_>, Vec<_>) = narinfos.into_iter().partition(|n| {
        matches!(
            keys::classify(&n.key),
            ObjectKind::DebugInfo(_) | ObjectKind::CacheInfo
        )
    });
    debuginfo.sort_by(|a, b| a.key.cmp(&b.key));
    narinfos.sort_by(|a, b| a.key.cmp(&b.key));
    let mut index = Index {
        meta: IndexMeta {
            format_version: FORMAT_VERSION,
            cache: identity,
            cache_url: url_text.to_string(),
            generation: previous.as_ref().map_or(1, |p| p.meta.generation + 1),
            updated_at: now(),
            source: source_desc,
            objects: objects.len() as u64,
            narinfos: narinfos.len() as u64,
            unparseable: 0,
            last_update: stats.clone(),
        },
        objects,
        narinfos,
        debuginfo,
    };
    index.meta.unparseable = index.count_unparseable();
    index.save(state)?;
    Ok((index, stats))
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
    let p = state.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "state directory {} is in use by another narward process",
                state.display()
            )
        }
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
