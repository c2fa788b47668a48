//! A `file://` binary cache: the directory tree `nix copy --to file://DIR` writes.
//!
//! Keys are paths relative to the root with `/` separators. A key that would leave the
//! root (`..`, an absolute path, an empty component) is refused, never resolved.

use super::ObjectMeta;
use crate::model::ObjectRecord;
use anyhow::{Context, Result, bail};
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

pub struct FileCache {
    root: PathBuf,
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
        Ok(FileCache {
            root: root.to_path_buf(),
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

    fn record(key: String, md: &std::fs::Metadata) -> ObjectRecord {
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        ObjectRecord {
            key,
            size: md.len(),
            etag: mtime
                .map(|d| format!("mtime-{}.{:09}-{}", d.as_secs(), d.subsec_nanos(), md.len())),
            last_modified: mtime.map(|d| d.as_secs() as i64),
            storage_class: None,
        }
    }

    /// # Errors
    /// I/O errors while walking the tree.
    pub fn list(&self, on_page: &(dyn Fn(u64) + Sync)) -> Result<Vec<ObjectRecord>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let rd =
                std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
            let before = out.len();
            for entry in rd {
                let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
                let name = match entry.file_name().into_string() {
                    Ok(n) => n,
                    Err(n) => {
                        tracing::warn!("skipping non-UTF-8 file name {:?} in {}", n, dir.display());
                        continue;
                    }
                };
                let ft = entry.file_type()?;
                let key = format!("{prefix}{name}");
                if ft.is_dir() {
                    stack.push((entry.path(), format!("{key}/")));
                } else if ft.is_file() {
                    let md = entry.metadata()?;
                    out.push(Self::record(key, &md));
                }
                // Symlinks and special files are not objects of a binary cache.
            }
            on_page((out.len() - before) as u64);
        }
        Ok(out)
    }

    /// # Errors
    /// I/O errors other than "not found"; an unsafe key.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = self.resolve(key)?;
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// # Errors
    /// I/O errors other than "not found"; an unsafe key.
    pub fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let p = self.resolve(key)?;
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_file() => {
                let r = Self::record(key.to_string(), &md);
                Ok(Some(ObjectMeta {
                    size: r.size,
                    etag: r.etag,
                    storage_class: None,
                    restore: None,
                    last_modified: r.last_modified,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut l = c.list(&|_| {}).unwrap();
        l.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<_> = l.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["nar/a.nar.xz", "x.narinfo"]);
        assert_eq!(l[0].size, 3);
        assert_eq!(c.get("x.narinfo").unwrap().unwrap(), b"hi");
        assert!(c.get("missing").unwrap().is_none());
        assert_eq!(c.head("nar/a.nar.xz").unwrap().unwrap().size, 3);
        assert!(c.head("nar").unwrap().is_none());
    }
}
