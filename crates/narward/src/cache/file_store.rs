//! [`FileStore`]: the [`Store`] of a `file://` cache.
//!
//! Each area is a directory: the cache area is the cache directory itself; the archive
//! and quarantine areas are directories of their own (by default
//! `<parent>/<cachename>.narward-archive` and `<parent>/<cachename>.narward-quarantine`
//! beside the cache, see [`FileStore::default_dirs`]), possibly on another disk. None of
//! the three may lie inside another, so that an index of the cache never lists archived
//! objects and an archive never holds the cache.
//!
//! Keys are resolved as [`FileCache`] does: a key never escapes its area's root, and a
//! symlink is read through only when its target stays inside the root. Writes never follow
//! a symlink out of a root either: the parent directory of a written file must resolve
//! inside the root.
//!
//! Every write goes to a temporary file (`.narward-tmp-<name>`) in the destination's
//! directory, is fsynced, then renamed into place (put-if-absent links it instead, which
//! fails when the name is taken), and the directory is fsynced: a crash leaves either no
//! file or the whole file at a final name. Copies keep the source's modification time, so
//! a copy has the same ETag as its source under the `file://` listing's rule (content MD5
//! for narinfos and debuginfo, size+mtime otherwise) and the plan's ETags match.

use super::ObjectMeta;
use super::file::{FileCache, is_small_metadata};
use super::store::{
    Area, BatchDeleteResult, CopyOptions, Loc, PutOutcome, RestoreOutcome, Store, StoreError,
    StoreErrorKind, StoreResult, Tier, Versioning,
};
use crate::model::ObjectRecord;
use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The prefix of temporary files; never listed as objects.
pub const TMP_PREFIX: &str = ".narward-tmp-";

/// A `file://` cache with its archive and quarantine directories.
pub struct FileStore {
    cache: FileCache,
    archive: FileCache,
    quarantine: FileCache,
}

impl FileStore {
    /// The default archive and quarantine directories of the cache directory `cache`:
    /// `<parent>/<name>.narward-archive` and `<parent>/<name>.narward-quarantine`.
    ///
    /// # Errors
    /// The cache directory has no parent or no name (`/`).
    pub fn default_dirs(cache: &Path) -> Result<(PathBuf, PathBuf)> {
        let abs = std::fs::canonicalize(cache)
            .with_context(|| format!("cache directory {}", cache.display()))?;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            bail!(
                "cache directory {}: give --archive-dir and --quarantine-dir",
                abs.display()
            );
        };
        let name = name.to_string_lossy();
        Ok((
            parent.join(format!("{name}.narward-archive")),
            parent.join(format!("{name}.narward-quarantine")),
        ))
    }

    /// Open the cache directory and the archive and quarantine directories (created when
    /// missing).
    ///
    /// # Errors
    /// A directory that does not exist (the cache) or cannot be created; two of them that
    /// are the same or nested.
    pub fn open(cache: &Path, archive: &Path, quarantine: &Path) -> Result<FileStore> {
        for (what, d) in [("archive", archive), ("quarantine", quarantine)] {
            std::fs::create_dir_all(d)
                .with_context(|| format!("creating the {what} directory {}", d.display()))?;
        }
        let s = FileStore {
            cache: FileCache::open(cache)?,
            archive: FileCache::open(archive)?,
            quarantine: FileCache::open(quarantine)?,
        };
        let roots = [
            ("cache", s.cache.canonical_root()),
            ("archive", s.archive.canonical_root()),
            ("quarantine", s.quarantine.canonical_root()),
        ];
        for (i, (wa, a)) in roots.iter().enumerate() {
            for (wb, b) in &roots[i + 1..] {
                if a.starts_with(b) || b.starts_with(a) {
                    bail!(
                        "the {wa} directory {} and the {wb} directory {} overlap: they must be separate directories",
                        a.display(),
                        b.display()
                    );
                }
            }
        }
        Ok(s)
    }

    fn root(&self, area: Area) -> &FileCache {
        match area {
            Area::Cache => &self.cache,
            Area::Archive => &self.archive,
            Area::Quarantine => &self.quarantine,
        }
    }

    fn head_sync(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        let m = self
            .root(loc.area)
            .head(&loc.key)
            .map_err(|e| anyhow_err("head", loc, &e))?;
        // `<stamp>/<key>` in the quarantine area has the ETag its key has in the cache.
        let stamped = loc.key.split_once('/').map(|(_, rest)| rest);
        match (m, stamped) {
            (Some(mut m), Some(rest))
                if loc.area == Area::Quarantine
                    && is_small_metadata(rest)
                    && !is_small_metadata(&loc.key) =>
            {
                let bytes = self
                    .root(loc.area)
                    .get(&loc.key)
                    .map_err(|e| anyhow_err("head", loc, &e))?
                    .unwrap_or_default();
                m.etag = Some(hex::encode(Md5::digest(&bytes)));
                Ok(Some(m))
            }
            (m, _) => Ok(m),
        }
    }

    /// The path to write `loc` at, with its parent directory created and checked to lie
    /// inside the area's root.
    fn dest_path(&self, op: &'static str, loc: &Loc) -> StoreResult<PathBuf> {
        let fc = self.root(loc.area);
        let p = fc.resolve(&loc.key).map_err(|e| anyhow_err(op, loc, &e))?;
        let parent = p.parent().unwrap_or(fc.root()).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| io_err(op, loc, &e))?;
        let canon = std::fs::canonicalize(&parent).map_err(|e| io_err(op, loc, &e))?;
        if !canon.starts_with(fc.canonical_root()) {
            return Err(StoreError::new(
                StoreErrorKind::Denied,
                op,
                loc,
                format!(
                    "{} resolves to {}, outside {}: refusing to write through a symlink",
                    parent.display(),
                    canon.display(),
                    fc.canonical_root().display()
                ),
            ));
        }
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StoreError::new(
                StoreErrorKind::Denied,
                op,
                loc,
                format!("{} is a symlink: refusing to replace it", p.display()),
            ));
        }
        Ok(p)
    }

    fn copy_sync(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        let src_meta = self.head_sync(from)?.ok_or_else(|| {
            StoreError::new(StoreErrorKind::NotFound, "copy", from, "no such object")
        })?;
        if let Some(want) = &opts.if_match
            && src_meta.etag.as_deref() != Some(want.as_str())
        {
            return Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                "copy",
                from,
                format!("ETag is {:?}, expected {want:?}", src_meta.etag),
            ));
        }
        if opts.if_absent
            && let Some(dst) = self.head_sync(to)?
        {
            return if dst.size == src_meta.size && dst.etag == src_meta.etag {
                Ok(dst)
            } else {
                Err(StoreError::new(
                    StoreErrorKind::PreconditionFailed,
                    "copy",
                    to,
                    format!(
                        "destination exists with other content (size {}, ETag {:?}; source size {}, ETag {:?})",
                        dst.size, dst.etag, src_meta.size, src_meta.etag
                    ),
                ))
            };
        }
        let src = self
            .root(from.area)
            .existing_file(&from.key)
            .map_err(|e| anyhow_err("copy", from, &e))?
            .ok_or_else(|| {
                StoreError::new(StoreErrorKind::NotFound, "copy", from, "no such object")
            })?;
        let dest = self.dest_path("copy", to)?;
        let mtime = std::fs::metadata(&src)
            .and_then(|m| m.modified())
            .map_err(|e| io_err("copy", from, &e))?;
        let tmp = write_tmp(&dest, |f| {
            let mut r = std::fs::File::open(&src)?;
            std::io::copy(&mut r, f)?;
            f.set_modified(mtime)
        })
        .map_err(|e| io_err("copy", to, &e))?;
        finish_rename(&tmp, &dest).map_err(|e| io_err("copy", to, &e))?;
        let got = self.head_sync(to)?.ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Other,
                "copy",
                to,
                "copy vanished after rename",
            )
        })?;
        if got.size != src_meta.size || got.etag != src_meta.etag {
            return Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                "copy",
                from,
                "the source changed during the copy",
            ));
        }
        Ok(got)
    }

    fn put_sync(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        if let Some(m) = self.head_sync(loc)? {
            return Ok(PutOutcome::Exists(m));
        }
        let dest = self.dest_path("put", loc)?;
        let tmp = write_tmp(&dest, |f| f.write_all(bytes)).map_err(|e| io_err("put", loc, &e))?;
        let linked = std::fs::hard_link(&tmp, &dest);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&dest).map_err(|e| io_err("put", loc, &e))?;
                let m = self.head_sync(loc)?;
                Ok(PutOutcome::Created {
                    etag: m.and_then(|m| m.etag),
                })
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match self.head_sync(loc)? {
                Some(m) => Ok(PutOutcome::Exists(m)),
                None => Err(io_err("put", loc, &e)),
            },
            Err(e) => Err(io_err("put", loc, &e)),
        }
    }

    fn delete_sync(&self, loc: &Loc) -> StoreResult<()> {
        let p = self
            .root(loc.area)
            .resolve(&loc.key)
            .map_err(|e| anyhow_err("delete", loc, &e))?;
        match std::fs::remove_file(&p) {
            Ok(()) => sync_dir(&p).map_err(|e| io_err("delete", loc, &e)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("delete", loc, &e)),
        }
    }

    fn list_sync(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        let loc = Loc {
            area,
            key: prefix.to_string(),
        };
        let listed = self
            .root(area)
            .list(&|_| {})
            .map_err(|e| anyhow_err("list", &loc, &e))?;
        let v = listed
            .iter()
            .filter(|o| {
                o.key().starts_with(prefix)
                    && !o
                        .key()
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .starts_with(TMP_PREFIX)
            })
            .map(|o| o.to_record())
            .collect();
        Ok(v)
    }
}

impl Store for FileStore {
    fn describe(&self, area: Area) -> String {
        format!("file://{}", self.root(area).canonical_root().display())
    }

    fn archives_in_place(&self) -> bool {
        false
    }

    async fn head(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        self.head_sync(loc)
    }

    async fn get(&self, loc: &Loc) -> StoreResult<Option<Vec<u8>>> {
        self.root(loc.area)
            .get(&loc.key)
            .map_err(|e| anyhow_err("get", loc, &e))
    }

    async fn list(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        self.list_sync(area, prefix)
    }

    async fn put_if_absent(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        self.put_sync(loc, bytes)
    }

    async fn copy(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        self.copy_sync(from, to, opts)
    }

    async fn delete(&self, loc: &Loc, _version_id: Option<&str>) -> StoreResult<()> {
        self.delete_sync(loc)
    }

    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        Ok(keys
            .iter()
            .map(|(k, v)| BatchDeleteResult {
                key: k.clone(),
                version_id: v.clone(),
                result: self.delete_sync(&Loc {
                    area,
                    key: k.clone(),
                }),
            })
            .collect())
    }

    async fn restore(&self, loc: &Loc, _days: u32, _tier: Tier) -> StoreResult<RestoreOutcome> {
        match self.head_sync(loc)? {
            Some(_) => Ok(RestoreOutcome::NotArchived),
            None => Err(StoreError::new(
                StoreErrorKind::NotFound,
                "restore",
                loc,
                "no such object",
            )),
        }
    }

    async fn versioning(&self, _area: Area) -> StoreResult<Versioning> {
        Ok(Versioning::Unversioned)
    }
}

/// Write a temporary file beside `dest` with `fill`, fsynced; returns its path.
///
/// The temporary name is fixed per destination (`.narward-tmp-<name>`), so one left by a
/// crash is overwritten by the repeated step instead of lingering.
fn write_tmp(
    dest: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let r = (|| {
        let mut f = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()
    })();
    match r {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn finish_rename(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    if let Err(e) = std::fs::rename(tmp, dest) {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(dest)
}

/// fsync the directory holding `p`, so a rename or removal in it is durable.
fn sync_dir(p: &Path) -> std::io::Result<()> {
    match p.parent() {
        Some(d) => std::fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}

fn io_kind(e: &std::io::Error) -> StoreErrorKind {
    match e.kind() {
        ErrorKind::NotFound => StoreErrorKind::NotFound,
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => StoreErrorKind::Denied,
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            StoreErrorKind::Transient
        }
        _ => StoreErrorKind::Other,
    }
}

fn io_err(op: &'static str, loc: &Loc, e: &std::io::Error) -> StoreError {
    StoreError::new(io_kind(e), op, loc, e.to_string())
}

fn anyhow_err(op: &'static str, loc: &Loc, e: &anyhow::Error) -> StoreError {
    let kind = e
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map_or(StoreErrorKind::Other, io_kind);
    StoreError::new(kind, op, loc, format!("{e:#}"))
}

#[cfg(test)]
mod tests;
