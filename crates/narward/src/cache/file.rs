//! A `file://` binary cache: the directory tree `nix copy --to file://DIR` writes.
//!
//! Keys are paths relative to the root with `/` separators. A key that would leave the
//! root (`..`, an absolute path, an empty component) is refused, never resolved.
//!
//! Symlinks: Nix and any HTTP server serve a file through a symlink, so one is never
//! treated as absent. A symlink whose target stays inside the (canonical) root is listed
//! under the link's key with the target's size and mtime, and read through; its record's
//! [`ObjectRecord::link_target`] names the key it points to (the link's own target, a
//! listed key, when no symlinked directory lies on its way; else the real file's key), and
//! a file listed through a symlinked directory names its real key, so whatever keeps the
//! link keeps what it reads (plan, apply's re-check, finalize). A symlink that
//! points outside the root or dangles is listed as present-but-unknown (size 0, no ETag),
//! and reading it fails with an error naming the key, so the index records a fetch error
//! and a plan keeps it. A symlinked directory inside the root is walked (each real
//! directory once); one that leaves the root fails the listing, since what it holds is
//! unknown.
//!
//! ETags: small metadata objects (`.narinfo`, `debuginfo/…`) get the MD5 of their content
//! as ETag, as S3 gives, so an incremental index refetches one whose content changed even
//! when its size and mtime did not. Other objects get a stand-in derived from the mtime.
//! [`FileCache::list_cached`] takes the MD5 of a file the previous listing hashed from its
//! stat cache ([`super::file_stat`]) when the file is provably unchanged.

use super::ObjectMeta;
use super::file_stat::{FileStat, StatCache, StatListing};
use crate::listing::{Listing, UnsortedListing};
use crate::model::ObjectRecord;
use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};
use narward_formats::keys::{self, ObjectKind};
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

pub struct FileCache {
    root: PathBuf,
    /// The root with every symlink resolved: targets must stay inside it.
    canonical_root: PathBuf,
}

/// What a key's path resolves to.
enum Resolved {
    /// A path inside the root (the link's target when the key is a symlink).
    Inside(PathBuf),
    /// Nothing there, not even a dangling link.
    Absent,
}

impl FileCache {
    /// # Errors
    /// The directory does not exist or is not a directory.
    pub fn open(root: &Path) -> Result<FileCache> {
        let md = std::fs::metadata(root)
            .with_context(|| format!("cache directory {}", root.display()))?;
        if !md.is_dir() {
            bail!("cache {} is not a directory", root.display());
        }
        let canonical_root = std::fs::canonicalize(root)
            .with_context(|| format!("cache directory {}", root.display()))?;
        Ok(FileCache {
            root: root.to_path_buf(),
            canonical_root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file for `key`, refusing anything that could escape the root.
    ///
    /// # Errors
    /// The key is empty, absolute, or has a `.`, `..` or empty component.
    pub fn resolve(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty() || key.starts_with('/') || key.contains('\\') || key.contains('\0') {
            bail!("object key {key:?} is not a safe relative path");
        }
        let mut p = self.root.clone();
        for part in key.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                bail!("object key {key:?} is not a safe relative path");
            }
            let c = Path::new(part).components().next();
            if !matches!(c, Some(Component::Normal(_))) {
                bail!("object key {key:?} is not a safe relative path");
            }
            p.push(part);
        }
        Ok(p)
    }

    /// Resolve `key` through any symlinks, refusing a target outside the root.
    ///
    /// # Errors
    /// An unsafe key; a symlink (of the key or a directory on its way) that leaves the
    /// root or dangles; I/O errors other than "not found".
    fn resolve_inside(&self, key: &str) -> Result<Resolved> {
        let p = self.resolve(key)?;
        match std::fs::canonicalize(&p) {
            Ok(target) if target.starts_with(&self.canonical_root) => Ok(Resolved::Inside(target)),
            Ok(target) => bail!(
                "object key {key:?} is a symlink to {}, outside the cache root {}: refusing to read it",
                target.display(),
                self.canonical_root.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if std::fs::symlink_metadata(&p).is_ok() {
                    bail!("object key {key:?} is a dangling symlink ({})", p.display());
                }
                Ok(Resolved::Absent)
            }
            Err(e) => {
                Err(e).with_context(|| format!("object key {key:?}: resolving {}", p.display()))
            }
        }
    }

    /// The real file behind `key` (through symlinks that stay inside the root), or `None`
    /// when nothing is there.
    ///
    /// # Errors
    /// As [`FileCache::get`].
    pub(crate) fn existing_file(&self, key: &str) -> Result<Option<PathBuf>> {
        Ok(match self.resolve_inside(key)? {
            Resolved::Inside(p) => Some(p),
            Resolved::Absent => None,
        })
    }

    /// The canonical root (every path narward writes must stay under it).
    pub(crate) fn canonical_root(&self) -> &Path {
        &self.canonical_root
    }

    /// The listing record of the file at `path` (the target, for a symlink) under `key`,
    /// read through `link_target` (see [`ObjectRecord::link_target`]). A small metadata
    /// file's ETag is `md5` when given, else its content is read and hashed.
    fn record(
        key: String,
        md: &std::fs::Metadata,
        path: &Path,
        link_target: Option<String>,
        md5: Option<[u8; 16]>,
    ) -> ObjectRecord {
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let etag = if is_small_metadata(&key) {
            md5.or_else(|| content_md5(path)).map(hex::encode)
        } else {
            mtime.map(|d| format!("mtime-{}.{:09}-{}", d.as_secs(), d.subsec_nanos(), md.len()))
        };
        ObjectRecord {
            link_target,
            key,
            size: md.len(),
            etag,
            last_modified: mtime.map(|d| d.as_secs() as i64),
            storage_class: None,
        }
    }

    /// The key of `path`, a path under the canonical root (`None` outside it).
    fn key_of(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.canonical_root).ok()?;
        let parts: Option<Vec<&str>> = rel
            .components()
            .map(|c| match c {
                Component::Normal(p) => p.to_str(),
                _ => None,
            })
            .collect();
        parts.filter(|p| !p.is_empty()).map(|p| p.join("/"))
    }

    /// The key a symlink inside the root at `link` (in the canonical directory `dir`)
    /// reads through: its own target's key when no symlinked directory lies on the way
    /// there (that key is listed: a file, or a link with a target of its own), else the key
    /// of the real file `target`.
    fn link_key(&self, link: &Path, dir: &Path, target: &Path) -> Option<String> {
        let direct = std::fs::read_link(link).ok().and_then(|t| {
            let mut p = PathBuf::new();
            for c in dir.join(t).components() {
                match c {
                    Component::ParentDir => {
                        p.pop();
                    }
                    Component::CurDir => {}
                    c => p.push(c),
                }
            }
            let parent = p.parent()?;
            // Real directories only: then the walk lists the key as it is.
            (std::fs::canonicalize(parent).ok()? == parent).then_some(p)
        });
        direct
            .and_then(|p| self.key_of(&p))
            .or_else(|| self.key_of(target))
    }

    /// A symlink that leaves the root or dangles: present, content unknown.
    fn unknown_record(key: String, link: &Path) -> ObjectRecord {
        let mtime = std::fs::symlink_metadata(link)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        ObjectRecord {
            link_target: None,
            key,
            size: 0,
            etag: None,
            last_modified: mtime.map(|d| d.as_secs() as i64),
            storage_class: None,
        }
    }

    /// Every object, sorted by key.
    ///
    /// # Errors
    /// I/O errors while walking the tree; a symlinked directory that leaves the root.
    pub fn list(&self, on_page: &(dyn Fn(u64) + Sync)) -> Result<Listing> {
        Ok(self.list_cached(None, on_page)?.0)
    }

    /// The listing (sorted by key), and the stat of every small metadata file hashed or found
    /// unchanged in `prev` (whose MD5 is then taken instead of reading the file).
    ///
    /// # Errors
    /// As [`FileCache::list`].
    pub fn list_cached(
        &self,
        prev: Option<&StatCache>,
        on_page: &(dyn Fn(u64) + Sync),
    ) -> Result<(Listing, StatListing)> {
        let mut w = Walk {
            out: UnsortedListing::new(),
            stats: StatListing::default(),
            prev,
        };
        let mut chain = vec![self.canonical_root.clone()];
        self.walk(&self.root, "", &mut chain, &mut w, on_page)?;
        Ok((w.out.finish(), w.stats))
    }

    /// List `dir` (whose canonical path is the last of `chain`, the canonical directories
    /// walked to get here) into `w` with keys starting with `prefix`.
    fn walk(
        &self,
        dir: &Path,
        prefix: &str,
        chain: &mut Vec<PathBuf>,
        w: &mut Walk<'_>,
        on_page: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let rd = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        let out = &mut w.out;
        let before = out.len();
        let mut subdirs = Vec::new();
        for entry in rd {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = match entry.file_name().into_string() {
                Ok(n) => n,
                Err(n) => {
                    tracing::warn!("skipping non-UTF-8 file name {:?} in {}", n, dir.display());
                    continue;
                }
            };
            let ft = entry
                .file_type()
                .with_context(|| format!("listing {}", entry.path().display()))?;
            let key = format!("{prefix}{name}");
            let path = entry.path();
            if ft.is_dir() {
                let canon = chain.last().map(|c| c.join(&name)).unwrap_or_default();
                subdirs.push((path, key, canon));
            } else if ft.is_file() {
                let md = entry
                    .metadata()
                    .with_context(|| format!("listing {}", path.display()))?;
                // Listed through a symlinked directory: it reads its real key.
                let real = chain.last().and_then(|c| self.key_of(&c.join(&name)));
                let link = real.filter(|r| *r != key);
                w.push(key, &md, &path, link);
            } else if ft.is_symlink()
                && let Some(d) = self.symlink_entry(key, &path, chain, w)?
            {
                subdirs.push(d);
            }
            // Sockets, FIFOs and devices are not objects of a binary cache.
        }
        on_page((w.out.len() - before) as u64);
        for (path, key, canon) in subdirs {
            chain.push(canon);
            let r = self.walk(&path, &format!("{key}/"), chain, w, on_page);
            chain.pop();
            r?;
        }
        Ok(())
    }

    /// Handle a symlink found while listing: push its record, or give the directory it
    /// points to (path, key, canonical target) for walking.
    fn symlink_entry(
        &self,
        key: String,
        link: &Path,
        chain: &[PathBuf],
        w: &mut Walk<'_>,
    ) -> Result<Option<(PathBuf, String, PathBuf)>> {
        let Ok(target) = std::fs::canonicalize(link) else {
            tracing::warn!(
                "{key}: dangling symlink {}; listed as present with unknown content",
                link.display()
            );
            w.out.push(Self::unknown_record(key, link));
            return Ok(None);
        };
        let md = std::fs::metadata(&target)
            .with_context(|| format!("listing {} (-> {})", link.display(), target.display()))?;
        let inside = target.starts_with(&self.canonical_root);
        if md.is_dir() {
            if !inside {
                bail!(
                    "listing {}: symlinked directory {key:?} points to {}, outside the cache root {}; its objects cannot be listed safely",
                    self.root.display(),
                    target.display(),
                    self.canonical_root.display()
                );
            }
            if chain.iter().any(|c| c.starts_with(&target)) {
                tracing::warn!(
                    "{key}: symlink loop to {}; not walked again",
                    target.display()
                );
                return Ok(None);
            }
            return Ok(Some((link.to_path_buf(), key, target)));
        }
        if !inside {
            tracing::warn!(
                "{key}: symlink to {}, outside the cache root; listed as present with unknown content",
                target.display()
            );
            w.out.push(Self::unknown_record(key, link));
        } else if md.is_file() {
            let dir = chain.last().map_or(self.canonical_root.as_path(), |c| c);
            let link = self.link_key(link, dir, &target);
            w.push(key, &md, &target, link);
        }
        Ok(None)
    }

    /// # Errors
    /// I/O errors other than "not found"; an unsafe key; a key whose path resolves outside
    /// the root or dangles.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Resolved::Inside(p) = self.resolve_inside(key)? else {
            return Ok(None);
        };
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// # Errors
    /// As [`FileCache::get`].
    pub fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let Resolved::Inside(p) = self.resolve_inside(key)? else {
            return Ok(None);
        };
        match std::fs::metadata(&p) {
            Ok(md) if md.is_file() => {
                let r = Self::record(key.to_string(), &md, &p, None, None);
                Ok(Some(ObjectMeta {
                    size: r.size,
                    etag: r.etag,
                    storage_class: None,
                    restore: None,
                    last_modified: r.last_modified,
                    version_id: None,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
}

/// What a walk fills in, and the previous listing's stats it may take MD5s from.
struct Walk<'p> {
    out: UnsortedListing,
    stats: StatListing,
    prev: Option<&'p StatCache>,
}

impl Walk<'_> {
    /// Push the record of the file `md` describes (at `path`) under `key`, and its stat
    /// when it is a small metadata file whose MD5 is known.
    fn push(&mut self, key: String, md: &std::fs::Metadata, path: &Path, link: Option<String>) {
        let small = is_small_metadata(&key);
        let reused = self.prev.filter(|_| small).and_then(|p| p.md5(md));
        self.stats.md5_reused += u64::from(reused.is_some());
        let md5 = reused.or_else(|| small.then(|| content_md5(path)).flatten());
        if let Some(md5) = md5 {
            self.stats.stats.push(FileStat::of(md, md5));
        }
        self.out.push(FileCache::record(key, md, path, link, md5));
    }
}

/// The MD5 of the file at `path`, as S3 gives a small object's ETag. A failed read gives
/// none: the object then has no ETag, its fetch fails too and is recorded.
fn content_md5(path: &Path) -> Option<[u8; 16]> {
    std::fs::read(path).ok().map(|b| Md5::digest(&b).into())
}

/// Objects whose ETag is their content's MD5: small, read by the index, and worth
/// refetching whenever their content changes.
pub(crate) fn is_small_metadata(key: &str) -> bool {
    matches!(
        keys::classify(key),
        ObjectKind::Narinfo(_) | ObjectKind::DebugInfo(_)
    )
}

#[cfg(test)]
mod tests {
    /// Rewrite `p` in place (same inode) with `bytes`, then set its mtime back.
    fn rewrite_keeping_mtime(p: &std::path::Path, bytes: &[u8]) {
        let mtime = std::fs::metadata(p).unwrap().modified().unwrap();
        std::fs::write(p, bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    use super::*;
    use crate::cache::file_stat::RACY_MARGIN_NS;

    #[test]
    fn keys_never_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "a//b",
            "./a",
            "",
            "a/..",
            "..",
            "a\\..\\b",
        ] {
            assert!(c.resolve(bad).is_err(), "{bad:?} accepted");
            assert!(c.get(bad).is_err(), "{bad:?} read");
        }
        assert!(c.resolve("nar/abc.nar.xz").unwrap().starts_with(dir.path()));
    }

    #[test]
    fn list_get_head() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nar")).unwrap();
        std::fs::write(dir.path().join("nar/a.nar.xz"), b"abc").unwrap();
        std::fs::write(dir.path().join("x.narinfo"), b"hi").unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        let l = c.list(&|_| {}).unwrap().to_records();
        let keys: Vec<_> = l.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["nar/a.nar.xz", "x.narinfo"]);
        assert_eq!(l[0].size, 3);
        assert_eq!(c.get("x.narinfo").unwrap().unwrap(), b"hi");
        assert!(c.get("missing").unwrap().is_none());
        assert_eq!(c.head("nar/a.nar.xz").unwrap().unwrap().size, 3);
        assert!(c.head("nar").unwrap().is_none());
    }

    const NI: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo";

    #[test]
    fn symlinked_narinfo_inside_root_is_listed_and_read_like_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        std::fs::write(dir.path().join("store/real"), b"StorePath: x\n").unwrap();
        std::os::unix::fs::symlink("store/real", dir.path().join(NI)).unwrap();
        // A symlinked directory inside the root is walked; a loop is not walked forever.
        std::os::unix::fs::symlink("store", dir.path().join("nar")).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("store/up")).unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        let l = c.list(&|_| {}).unwrap().to_records();
        let o = l
            .iter()
            .find(|o| o.key == NI)
            .expect("symlinked narinfo listed");
        assert_eq!(o.size, 13);
        assert_eq!(o.etag, Some(hex::encode(Md5::digest(b"StorePath: x\n"))));
        assert!(l.iter().any(|o| o.key == "nar/real"), "{l:?}");
        // Each names the key it reads; a chain of links names its next link.
        let target = |k: &str| l.iter().find(|o| o.key == k).unwrap().link_target.clone();
        assert_eq!(target(NI).as_deref(), Some("store/real"));
        assert_eq!(target("nar/real").as_deref(), Some("store/real"));
        assert_eq!(target("store/real"), None);
        std::os::unix::fs::symlink(NI, dir.path().join("chain")).unwrap();
        std::os::unix::fs::symlink("../chain", dir.path().join("store/via")).unwrap();
        let l = c.list(&|_| {}).unwrap().to_records();
        let target = |k: &str| l.iter().find(|o| o.key == k).unwrap().link_target.clone();
        assert_eq!(target("chain").as_deref(), Some(NI));
        assert_eq!(target("store/via").as_deref(), Some("chain"));
        assert_eq!(c.get(NI).unwrap().unwrap(), b"StorePath: x\n");
        assert_eq!(c.head(NI).unwrap().unwrap().size, 13);
    }

    #[test]
    fn symlinked_narinfo_outside_root_is_present_but_unknown() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"StorePath: y\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join(NI)).unwrap();
        let dangling = "1a3yijp35sygmy51cnrrz11vimwapz7c.narinfo";
        std::os::unix::fs::symlink("nothing-here", dir.path().join(dangling)).unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        let l = c.list(&|_| {}).unwrap().to_records();
        for key in [NI, dangling] {
            let o = l.iter().find(|o| o.key == key).expect("never absent");
            assert_eq!((o.size, &o.etag), (0, &None), "{key}");
            let e = format!("{:#}", c.get(key).unwrap_err());
            assert!(e.contains(key), "{e}");
            assert!(c.head(key).is_err());
        }
        // A symlinked directory leaving the root fails the listing: its objects are unknown.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("nar")).unwrap();
        let e = format!("{:#}", c.list(&|_| {}).unwrap_err());
        assert!(
            e.contains("\"nar\"") && e.contains("outside the cache root"),
            "{e}"
        );
    }

    #[test]
    fn get_refuses_a_key_whose_path_leaves_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        let e = format!("{:#}", c.get("out/f").unwrap_err());
        assert!(
            e.contains("\"out/f\"") && e.contains("outside the cache root"),
            "{e}"
        );
        assert!(c.get("out/missing").unwrap().is_none() || c.get("out/missing").is_err());
    }

    #[test]
    fn narinfo_etag_changes_with_content_even_at_the_same_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(NI);
        std::fs::write(&p, b"References: a\n").unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        let before = c.list(&|_| {}).unwrap().to_records();
        rewrite_keeping_mtime(&p, b"References: b\n");
        let after = c.list(&|_| {}).unwrap().to_records();
        assert_eq!(before[0].size, after[0].size);
        assert_eq!(before[0].last_modified, after[0].last_modified);
        assert_ne!(before[0].etag, after[0].etag);
    }

    /// Lists `dir` with `prev`, returning each key's ETag.
    fn etags(c: &FileCache, prev: Option<&StatCache>) -> Vec<(String, Option<String>)> {
        let l = c.list_cached(prev, &|_| {}).unwrap().0.to_records();
        l.into_iter().map(|o| (o.key, o.etag)).collect()
    }

    /// The stats of a listing of `c`, each with a made-up MD5 (so a reused one shows), as
    /// a stat cache whose listing started `age_ns` ago.
    fn fake_cache(c: &FileCache, age_ns: i64) -> StatCache {
        let (_, stats) = c.list_cached(None, &|_| {}).unwrap();
        let fake = stats
            .stats
            .into_iter()
            .map(|s| FileStat { md5: [7; 16], ..s })
            .collect();
        StatCache::new(fake, crate::cache::file_stat::now_ns() - age_ns)
    }

    const FAKE: &str = "07070707070707070707070707070707";
    const NI2: &str = "1a3yijp35sygmy51cnrrz11vimwapz7c.narinfo";

    #[test]
    fn the_stat_cache_reuses_md5_only_for_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        for k in [NI, NI2] {
            std::fs::write(dir.path().join(k), b"StorePath: x\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("nar")).unwrap();
        std::fs::write(dir.path().join("nar/a.nar.xz"), b"abc").unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        // A listing that started well after the files were last changed.
        let prev = fake_cache(&c, -10 * RACY_MARGIN_NS);
        assert_eq!(prev.len(), 2, "narinfos only: a NAR's ETag is no MD5");
        // Replaced by another file (a new inode, as `nix copy` writes): hashed again.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"StorePath: y\n").unwrap();
        std::fs::rename(&tmp, dir.path().join(NI2)).unwrap();
        let got = etags(&c, Some(&prev));
        let real = hex::encode(Md5::digest(b"StorePath: y\n"));
        assert_eq!(got[0].0, NI);
        assert_eq!(
            got[0].1.as_deref(),
            Some(FAKE),
            "unchanged: taken from the cache"
        );
        assert_eq!(
            got[1].1.as_deref(),
            Some(real.as_str()),
            "replaced: hashed again"
        );
        assert!(got[2].1.as_deref().is_some_and(|e| e.starts_with("mtime-")));
        // Without a stat cache every narinfo is hashed.
        let plain = etags(&c, None);
        assert_ne!(plain[0].1.as_deref(), Some(FAKE));
    }

    #[test]
    fn a_narinfo_rewritten_in_place_with_the_same_size_and_mtime_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(NI);
        std::fs::write(&p, b"References: a\n").unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        let prev = fake_cache(&c, -10 * RACY_MARGIN_NS);
        assert_eq!(etags(&c, Some(&prev))[0].1.as_deref(), Some(FAKE));
        // Same inode, same size, mtime set back: only the ctime tells.
        rewrite_keeping_mtime(&p, b"References: b\n");
        let real = hex::encode(Md5::digest(b"References: b\n"));
        assert_eq!(etags(&c, Some(&prev))[0].1, Some(real));
    }

    #[test]
    fn a_narinfo_changed_just_before_the_previous_listing_is_hashed_again_racy_git() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NI), b"References: a\n").unwrap();
        let c = FileCache::open(dir.path()).unwrap();
        // Listed right after it was written (within the margin): its stat proves nothing.
        let prev = fake_cache(&c, RACY_MARGIN_NS / 2);
        let real = hex::encode(Md5::digest(b"References: a\n"));
        assert_eq!(etags(&c, Some(&prev))[0].1, Some(real));
        assert_eq!(
            etags(&c, Some(&fake_cache(&c, -2 * RACY_MARGIN_NS)))[0]
                .1
                .as_deref(),
            Some(FAKE)
        );
    }
}
