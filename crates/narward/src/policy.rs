//! The declarative policy: which store paths are roots, which rules keep more, and what
//! happens to everything else. A TOML file; see `examples/policy.toml` for every key.
//!
//! [`Policy::load`] reads and validates the file and every root source it names before
//! anything is computed: an unknown key, a bad glob, a bad size, a missing or malformed
//! root file is an error naming the file, the line and the reason.

use anyhow::{Context, Result, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use narward_formats::roots;
use narward_formats::storage_class::{self, StorageClass};
use narward_formats::store_path::{StorePath, StorePathHash};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The policy file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub roots: RootsSection,
    #[serde(default)]
    pub keep: KeepSection,
    #[serde(default)]
    pub actions: ActionsSection,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RootsSection {
    /// Plain files of store paths, one per line, `#` comments.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// `store-paths.xz` files as published with nixpkgs/NixOS releases.
    #[serde(default)]
    pub store_paths_xz: Vec<PathBuf>,
    /// `fallback-paths.nix` attrsets (every quoted store path in them).
    #[serde(default)]
    pub fallback_paths: Vec<PathBuf>,
    /// Directories (e.g. a mirror of release metadata): every `*.txt`, `store-paths`,
    /// `store-paths.xz` and `fallback-paths.nix` below them.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// Hydra GC-roots directories: every entry whose name is a store path base name.
    #[serde(default)]
    pub hydra_gcroots: Vec<PathBuf>,
    /// Inline store paths (full paths or base names).
    #[serde(default)]
    pub paths: Vec<String>,
    /// `narward plan` refuses a plan when fewer than this fraction of the roots are in the
    /// cache (0.0 to 1.0; default 0.5), unless given `--allow-few-roots`: a root list for
    /// another cache, or a wrong cache prefix, would otherwise remove almost everything.
    pub min_found_fraction: Option<f64>,
}

/// Default of `roots.min_found_fraction`.
pub const DEFAULT_MIN_FOUND_FRACTION: f64 = 0.5;

impl RootsSection {
    /// `min_found_fraction`, or its default.
    pub fn min_found_fraction(&self) -> f64 {
        self.min_found_fraction
            .unwrap_or(DEFAULT_MIN_FOUND_FRACTION)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeepSection {
    /// Keep every content-addressed path (narinfo has `CA:`), e.g. fetched sources.
    #[serde(default)]
    pub content_addressed: bool,
    /// Keep paths whose name (the part after `<hash>-`) matches one of these globs.
    #[serde(default)]
    pub names: Vec<String>,
    /// Keep paths whose narinfo or NAR was uploaded within this many days.
    pub uploaded_within_days: Option<u32>,
    /// Keep paths fetched within this many days, per the access data given in `access_logs`
    /// and, with `access_stats`, the state directory's access statistics.
    pub accessed_within_days: Option<u32>,
    /// S3 server access log files or directories (`accessed_within_days` needs these or
    /// `access_stats`), read by [`crate::access::logs`] exactly as `access-logs ingest`
    /// reads them: the last hit (GET/HEAD answered 200, 206 or 304) of each key counts.
    #[serde(default)]
    pub access_logs: Vec<PathBuf>,
    /// Also use the access statistics kept in the state directory by `narward access-logs
    /// ingest` (`narward plan` refuses the policy when there are none).
    #[serde(default)]
    pub access_stats: bool,
    /// Never touch an object younger than this many days (uploads may be in progress).
    #[serde(default = "default_min_age")]
    pub min_age_days: u32,
}

fn default_min_age() -> u32 {
    7
}

impl Default for KeepSection {
    fn default() -> Self {
        KeepSection {
            content_addressed: false,
            names: Vec::new(),
            uploaded_within_days: None,
            accessed_within_days: None,
            access_logs: Vec::new(),
            access_stats: false,
            min_age_days: default_min_age(),
        }
    }
}

/// What to do with what no root or rule keeps.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Unreachable {
    /// Keep it (report only).
    Keep,
    /// Hide it from clients and move its NAR to the archive storage class.
    Archive,
    /// Delete it (after the grace window applied by `apply`).
    Delete,
}

/// What to do with objects that belong to removed paths (`.ls`, `debuginfo/`, `log/`),
/// or with NARs no narinfo points to.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Follow {
    /// Share the fate of the owner (archived with it, deleted with it).
    Follow,
    Keep,
    Delete,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionsSection {
    #[serde(default = "default_unreachable")]
    pub unreachable: Unreachable,
    /// Storage class for archived NARs.
    #[serde(default = "default_class")]
    pub archive_storage_class: String,
    /// Archived paths whose NAR is smaller than this stay in their class (hidden only):
    /// the transition fee would not pay back. Bytes, or with a unit: "256KiB", "1MB".
    #[serde(default = "default_min_size")]
    pub archive_min_size: ByteSize,
    /// Where hidden narinfos of archived paths are kept, inside the cache bucket.
    #[serde(default = "default_archive_prefix")]
    pub archive_prefix: String,
    /// A separate bucket for archived objects (default: the cache's own bucket).
    pub archive_bucket: Option<String>,
    /// NAR objects no narinfo points to ("follow" means: as `unreachable`).
    #[serde(default = "default_follow")]
    pub orphan_nars: Follow,
    /// `<hash>.ls` listings of removed paths.
    #[serde(default = "default_follow")]
    pub listings: Follow,
    /// `debuginfo/` links into removed NARs.
    #[serde(default = "default_follow")]
    pub debuginfo: Follow,
    /// `log/<drv>` build logs whose every output is removed.
    #[serde(default = "default_keep")]
    pub logs: Follow,
}

fn default_unreachable() -> Unreachable {
    Unreachable::Archive
}
fn default_class() -> String {
    "DEEP_ARCHIVE".into()
}
fn default_min_size() -> ByteSize {
    ByteSize(256 * 1024)
}
/// The archive prefix of a policy that names none.
pub const DEFAULT_ARCHIVE_PREFIX: &str = "narward-archive/";

fn default_archive_prefix() -> String {
    DEFAULT_ARCHIVE_PREFIX.into()
}
fn default_follow() -> Follow {
    Follow::Follow
}
fn default_keep() -> Follow {
    Follow::Keep
}

impl Default for ActionsSection {
    fn default() -> Self {
        ActionsSection {
            unreachable: default_unreachable(),
            archive_storage_class: default_class(),
            archive_min_size: default_min_size(),
            archive_prefix: default_archive_prefix(),
            archive_bucket: None,
            orphan_nars: default_follow(),
            listings: default_follow(),
            debuginfo: default_follow(),
            logs: default_keep(),
        }
    }
}

/// A size in bytes, written as a number or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parse "123", "256KiB", "1.5 MB", "2GiB".
    ///
    /// # Errors
    /// Not a number with a known unit.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
        let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1024,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        Ok(ByteSize((n * mul as f64).round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// One root: a store path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub hash: StorePathHash,
    pub path: String,
    /// `file:line` or `inline`.
    pub source: String,
}

/// A validated policy with its roots read.
#[derive(Debug, Clone)]
pub struct Policy {
    pub file: PolicyFile,
    /// The policy text, as given (it is copied into plans).
    pub text: String,
    pub roots: Vec<Root>,
    /// Root sources by label, with their root counts, in order.
    pub root_sources: Vec<(String, usize)>,
    pub names: GlobSet,
    /// Last successful read per full bucket key (unix seconds), from S3 server access logs
    /// read by [`crate::access::logs`] (a plan strips the cache's prefix:
    /// [`crate::access::last_access_for_cache`]).
    pub last_access: std::collections::HashMap<String, i64>,
}

impl Policy {
    /// Read a policy file; relative paths in it are relative to the file's directory.
    ///
    /// # Errors
    /// Unreadable file, TOML error (line and column), unknown key, bad glob or size, an
    /// unreadable or malformed root source (file and line).
    pub fn load(path: &Path) -> Result<Policy> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("policy {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_str(&text, base, &path.display().to_string())
    }

    /// Parse policy text; `base` resolves relative paths, `name` labels errors.
    ///
    /// # Errors
    /// As [`Policy::load`].
    pub fn from_str(text: &str, base: &Path, name: &str) -> Result<Policy> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("policy {name}: {e}"))?;
        let mut gb = GlobSetBuilder::new();
        for (i, n) in file.keep.names.iter().enumerate() {
            let g = Glob::new(n)
                .map_err(|e| anyhow::anyhow!("policy {name}: keep.names[{i}] {n:?}: {e}"))?;
            gb.add(g);
        }
        let names = gb
            .build()
            .map_err(|e| anyhow::anyhow!("policy {name}: keep.names: {e}"))?;
        if file.keep.accessed_within_days.is_some()
            && file.keep.access_logs.is_empty()
            && !file.keep.access_stats
        {
            bail!(
                "policy {name}: keep.accessed_within_days needs keep.access_logs (S3 server access logs) or keep.access_stats = true (the state's `narward access-logs ingest` statistics)"
            );
        }
        let a = &file.actions;
        if StorageClass::parse(&a.archive_storage_class).is_none() {
            bail!(
                "policy {name}: actions.archive_storage_class {:?} is not one of {}",
                a.archive_storage_class,
                storage_class::NAMES.join(", ")
            );
        }
        if a.archive_prefix.is_empty()
            || a.archive_prefix.starts_with('/')
            || !a.archive_prefix.ends_with('/')
        {
            bail!(
                "policy {name}: actions.archive_prefix must be a relative prefix ending in '/', got {:?}",
                a.archive_prefix
            );
        }
        if let Some(f) = file.roots.min_found_fraction
            && !(0.0..=1.0).contains(&f)
        {
            bail!("policy {name}: roots.min_found_fraction must be between 0 and 1, got {f}");
        }
        let mut p = Policy {
            file: file.clone(),
            text: text.to_string(),
            roots: Vec::new(),
            root_sources: Vec::new(),
            names,
            last_access: Default::default(),
        };
        p.read_roots(&file.roots, base, name)?;
        let abs = |f: &PathBuf| {
            if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            }
        };
        let (mut stats, mut sources) = (crate::access::AccessStats::default(), Default::default());
        for f in &file.keep.access_logs {
            let rep = crate::access::logs::read(&[abs(f)], &mut sources, &mut stats)
                .with_context(|| format!("policy {name}: keep.access_logs {}", f.display()))?;
            for w in rep.warnings() {
                tracing::warn!("policy {name}: {w}");
            }
        }
        p.last_access = stats.last_access("");
        Ok(p)
    }

    /// Read every root source of a `[roots]` section into `self.roots`.
    fn read_roots(&mut self, r: &RootsSection, base: &Path, name: &str) -> Result<()> {
        let abs = |f: &PathBuf| {
            if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            }
        };
        for f in &r.files {
            self.add_source(&abs(f), RootFormat::Lines)?;
        }
        for f in &r.store_paths_xz {
            self.add_source(&abs(f), RootFormat::Xz)?;
        }
        for f in &r.fallback_paths {
            self.add_source(&abs(f), RootFormat::Nix)?;
        }
        for d in &r.dirs {
            let d = abs(d);
            let mut files = Vec::new();
            walk(&d, &mut files)
                .with_context(|| format!("policy {name}: roots.dirs {}", d.display()))?;
            files.sort();
            for f in files {
                let fname = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let fmt = if fname.ends_with(".xz") {
                    RootFormat::Xz
                } else if fname.ends_with(".nix") {
                    RootFormat::Nix
                } else if fname.ends_with(".txt") || fname == "store-paths" {
                    RootFormat::Lines
                } else {
                    continue;
                };
                self.add_source(&f, fmt)?;
            }
        }
        for d in &r.hydra_gcroots {
            let d = abs(d);
            let rd = std::fs::read_dir(&d)
                .with_context(|| format!("policy {name}: roots.hydra_gcroots {}", d.display()))?;
            let label = d.display().to_string();
            let before = self.roots.len();
            for e in rd {
                let e = e?;
                let n = e.file_name().to_string_lossy().to_string();
                if let Ok(sp) = StorePath::parse_base_name(&n) {
                    self.roots.push(Root {
                        hash: sp.hash,
                        path: sp.full_path(),
                        source: format!("{label}/{n}"),
                    });
                }
            }
            self.root_sources.push((label, self.roots.len() - before));
        }
        let before = self.roots.len();
        for (i, s) in r.paths.iter().enumerate() {
            let sp = StorePath::parse_any(s.trim())
                .map_err(|e| anyhow::anyhow!("policy {name}: roots.paths[{i}] {s:?}: {e}"))?;
            self.roots.push(Root {
                hash: sp.hash,
                path: sp.full_path(),
                source: "inline".into(),
            });
        }
        if !r.paths.is_empty() {
            self.root_sources
                .push(("inline".into(), self.roots.len() - before));
        }
        Ok(())
    }

    fn add_source(&mut self, f: &Path, fmt: RootFormat) -> Result<()> {
        let label = f.display().to_string();
        let raw = std::fs::read(f).with_context(|| format!("root file {label}"))?;
        let text = match fmt {
            RootFormat::Xz => {
                let mut s = String::new();
                xz2::read::XzDecoder::new(&raw[..])
                    .read_to_string(&mut s)
                    .with_context(|| format!("root file {label}: not xz-compressed UTF-8 text"))?;
                s
            }
            _ => String::from_utf8(raw).with_context(|| format!("root file {label}: not UTF-8"))?,
        };
        let before = self.roots.len();
        let found: Box<dyn Iterator<Item = _>> = match fmt {
            RootFormat::Lines | RootFormat::Xz => Box::new(roots::lines(&text)),
            RootFormat::Nix => Box::new(roots::fallback_paths(&text)),
        };
        for r in found {
            let r = r.map_err(|e| {
                anyhow::anyhow!(
                    "root file {label}:{}: {:?} is not a store path: {}",
                    e.line,
                    e.text,
                    e.error
                )
            })?;
            self.roots.push(Root {
                hash: r.path.hash,
                path: r.path.full_path(),
                source: format!("{label}:{}", r.line),
            });
        }
        self.root_sources.push((label, self.roots.len() - before));
        Ok(())
    }

    /// Add last successful reads (full bucket keys, unix seconds), keeping the later time
    /// of a key read in both (what `keep.access_stats` adds from the state).
    pub fn add_last_access(&mut self, reads: impl IntoIterator<Item = (String, i64)>) {
        for (k, t) in reads {
            let e = self.last_access.entry(k).or_insert(t);
            *e = (*e).max(t);
        }
    }

    /// Whether a store path name matches a keep pattern.
    pub fn name_kept(&self, name: &str) -> bool {
        !self.names.is_empty() && self.names.is_match(name)
    }
}

/// Roots, and their sources by label with their root counts.
pub type RootsRead = (Vec<Root>, Vec<(String, usize)>);

/// The roots a `[roots]`-style section names (files, `store-paths.xz`, fallback paths,
/// directories, Hydra GC roots, inline paths), read and validated exactly as a policy's:
/// the roots, and the sources by label with their root counts. Relative paths are relative
/// to `base`; `name` labels errors.
///
/// # Errors
/// As [`Policy::load`] for its `[roots]` section.
pub fn read_root_section(r: &RootsSection, base: &Path, name: &str) -> Result<RootsRead> {
    let mut p = Policy {
        file: PolicyFile::default(),
        text: String::new(),
        roots: Vec::new(),
        root_sources: Vec::new(),
        names: GlobSet::empty(),
        last_access: Default::default(),
    };
    p.read_roots(r, base, name)?;
    Ok((p.roots, p.root_sources))
}

/// The overrides of [`check_plan_roots`] (the `--allow-…` flags of `narward plan`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RootOverrides {
    /// `--allow-few-roots`: write a plan although no root, or too few of them, is in the cache.
    pub few_roots: bool,
    /// `--allow-empty-cache`: write a plan of a cache that lists no narinfo.
    pub empty_cache: bool,
}

/// Whether a computed plan may be written, judged from its root statistics: a plan of a
/// cache with no narinfo (a wrong URL or prefix?), with no root found, or with fewer roots
/// found than `roots.min_found_fraction`, would remove everything no keep rule protects.
/// `narinfos` is the number of narinfos the cache lists.
///
/// # Errors
/// The refusal, saying why and which flag overrides it.
pub fn check_plan_roots(
    roots: &crate::plan::RootStats,
    narinfos: u64,
    policy: &PolicyFile,
    allow: RootOverrides,
) -> Result<()> {
    if narinfos == 0 && !allow.empty_cache {
        bail!(
            "the cache lists no narinfo at all: is the cache URL or its prefix wrong? (pass --allow-empty-cache to write this plan anyway)"
        );
    }
    if allow.few_roots {
        return Ok(());
    }
    let min = policy.roots.min_found_fraction();
    if roots.total == 0 {
        bail!(
            "the policy names no roots: everything no keep rule protects would be removed (pass --allow-few-roots to write this plan anyway)"
        );
    }
    if roots.found == 0 {
        bail!(
            "none of the {} roots is in the cache: is the root list for another cache, or the cache prefix wrong? (pass --allow-few-roots to write this plan anyway)",
            roots.total
        );
    }
    let found = roots.found as f64 / roots.total as f64;
    if found < min {
        bail!(
            "only {} of {} roots ({:.1} %) are in the cache, fewer than roots.min_found_fraction = {min}: is the root list for another cache? (pass --allow-few-roots to write this plan anyway)",
            roots.found,
            roots.total,
            found * 100.0
        );
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum RootFormat {
    Lines,
    Xz,
    Nix,
}

fn walk(d: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(d)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else {
            out.push(e.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-hello-2.12";

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("256KiB").unwrap().0, 262144);
        assert_eq!(ByteSize::parse("1.5 MB").unwrap().0, 1_500_000);
        assert_eq!(ByteSize::parse("7").unwrap().0, 7);
        assert!(ByteSize::parse("7 parsecs").is_err());
    }

    #[test]
    fn unknown_key_is_rejected_with_line() {
        let e = Policy::from_str(
            "[keep]\ncontent_adressed = true\n",
            Path::new("."),
            "p.toml",
        )
        .unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("p.toml") && m.contains("line 2") && m.contains("content_adressed"),
            "{m}"
        );
    }

    #[test]
    fn bad_glob_and_missing_file_are_named() {
        let e =
            Policy::from_str("[keep]\nnames = [\"a[\"]\n", Path::new("."), "p.toml").unwrap_err();
        assert!(format!("{e:#}").contains("keep.names[0]"), "{e:#}");
        let e = Policy::from_str(
            "[roots]\nfiles = [\"nope.txt\"]\n",
            Path::new("/nonexistent"),
            "p.toml",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("nope.txt"), "{e:#}");
    }

    #[test]
    fn root_sources_of_every_kind() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), format!("# release a\n\n{P1}\n")).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        std::io::Write::write_all(&mut xz, format!("{P1}\n").as_bytes()).unwrap();
        std::fs::create_dir(d.path().join("rel")).unwrap();
        std::fs::write(d.path().join("rel/store-paths.xz"), xz.finish().unwrap()).unwrap();
        std::fs::write(
            d.path().join("fallback-paths.nix"),
            format!("{{\n  x86_64-linux = \"{P1}\";\n}}\n"),
        )
        .unwrap();
        std::fs::create_dir(d.path().join("gcroots")).unwrap();
        std::fs::write(
            d.path()
                .join("gcroots/00bgd045z0d4icpbc2yyz4gx48ak44la-hello-2.12"),
            "",
        )
        .unwrap();
        let text = "[roots]\nfiles = [\"a.txt\"]\ndirs = [\"rel\"]\nfallback_paths = [\"fallback-paths.nix\"]\nhydra_gcroots = [\"gcroots\"]\npaths = [\"00bgd045z0d4icpbc2yyz4gx48ak44la-hello-2.12\"]\n";
        let p = Policy::from_str(text, d.path(), "p.toml").unwrap();
        assert_eq!(p.roots.len(), 5);
        assert!(p.roots.iter().all(|r| r.path == P1));
        assert!(p.roots[0].source.ends_with("a.txt:3"));
        assert_eq!(p.root_sources.len(), 5);
    }

    #[test]
    fn accessed_within_days_takes_logs_or_the_state_access_stats() {
        let e = Policy::from_str("[keep]\naccessed_within_days = 9\n", Path::new("."), "p")
            .unwrap_err();
        assert!(format!("{e:#}").contains("keep.access_stats"), "{e:#}");
        let mut p = Policy::from_str(
            "[keep]\naccessed_within_days = 9\naccess_stats = true\n",
            Path::new("."),
            "p",
        )
        .unwrap();
        p.add_last_access([
            ("a".to_string(), 5),
            ("a".to_string(), 3),
            ("b".to_string(), 1),
        ]);
        assert_eq!((p.last_access["a"], p.last_access["b"]), (5, 1));
    }

    #[test]
    fn a_bad_root_line_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("a.txt"),
            format!("{P1}\n/nix/store/short-x\n"),
        )
        .unwrap();
        let e = Policy::from_str("[roots]\nfiles = [\"a.txt\"]\n", d.path(), "p.toml").unwrap_err();
        assert!(format!("{e:#}").contains("a.txt:2"), "{e:#}");
    }

    #[test]
    fn empty_or_absent_roots_refuse_the_plan_unless_allowed() {
        use crate::plan::RootStats;
        let stats = |total, found| RootStats {
            total,
            found,
            missing: total - found,
            ..Default::default()
        };
        let file = PolicyFile::default();
        let none = RootOverrides::default();
        let few = RootOverrides {
            few_roots: true,
            ..none
        };
        let err = |r: Result<()>| format!("{:#}", r.unwrap_err());
        assert!(err(check_plan_roots(&stats(0, 0), 10, &file, none)).contains("no roots"));
        assert!(err(check_plan_roots(&stats(4, 0), 10, &file, none)).contains("none of the 4"));
        assert!(err(check_plan_roots(&stats(4, 1), 10, &file, none)).contains("1 of 4"));
        check_plan_roots(&stats(4, 2), 10, &file, none).unwrap();
        for (t, f) in [(0, 0), (4, 0), (4, 1)] {
            check_plan_roots(&stats(t, f), 10, &file, few).unwrap();
        }
        let mut low = file.clone();
        low.roots.min_found_fraction = Some(0.25);
        check_plan_roots(&stats(4, 1), 10, &low, none).unwrap();
        // A cache without narinfos: refused even with --allow-few-roots.
        assert!(err(check_plan_roots(&stats(4, 0), 0, &file, few)).contains("no narinfo"));
        let empty = RootOverrides {
            empty_cache: true,
            few_roots: true,
        };
        check_plan_roots(&stats(4, 0), 0, &file, empty).unwrap();
        let e = Policy::from_str("[roots]\nmin_found_fraction = 2.0\n", Path::new("."), "p")
            .unwrap_err();
        assert!(format!("{e:#}").contains("min_found_fraction"), "{e:#}");
    }
}
