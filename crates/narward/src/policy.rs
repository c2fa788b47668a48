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
use std::collections::HashMap;
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

/// How the roots of a source name where they came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    /// A root file: `label:line`.
    File,
    /// A Hydra GC-roots directory: `label/<hash>-<name>`.
    GcRoots,
    /// `roots.paths`: `inline`.
    Inline,
}

/// One root source: its label (a file or directory as given, or `inline`) and how many
/// roots it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSource {
    pub label: String,
    pub count: usize,
    first: usize,
    kind: SourceKind,
}

impl RootSource {
    /// The indexes of its roots in [`Roots`].
    pub fn range(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.count
    }
}

/// The roots of a policy, in the order of their sources, held compactly (issue 9: a
/// release root list has millions of lines): per root its 20-byte hash, the end of its
/// name in one text heap and its line, 28 bytes plus the name
/// ([`Roots::heap_bytes`]). [`Root`] gives back the full path and the `file:line` source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    hashes: Vec<StorePathHash>,
    /// Every root's name (after `<hash>-`), one after the other.
    names: String,
    name_ends: Vec<u32>,
    /// Line in its root file (0 for other sources).
    lines: Vec<u32>,
    sources: Vec<RootSource>,
}

/// One root: a store path and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root<'a> {
    pub hash: StorePathHash,
    /// The name after `<hash>-`.
    pub name: &'a str,
    /// Its source's index in [`Roots::sources`].
    pub source_index: usize,
    source: &'a RootSource,
    line: u32,
}

impl Root<'_> {
    /// The full store path.
    pub fn path(&self) -> String {
        StorePath {
            hash: self.hash,
            name: self.name,
        }
        .full_path()
    }

    /// Where it came from: `file:line`, `dir/<hash>-<name>` (Hydra GC roots) or `inline`.
    pub fn source(&self) -> String {
        source_text(self.source, self.line, || {
            format!("{}-{}", self.hash, self.name)
        })
    }
}

/// A root's source as [`Root::source`] gives it; `base` is its `<hash>-<name>`.
fn source_text(src: &RootSource, line: u32, base: impl FnOnce() -> String) -> String {
    let label = &src.label;
    match src.kind {
        SourceKind::File => format!("{label}:{line}"),
        SourceKind::GcRoots => format!("{label}/{}", base()),
        SourceKind::Inline => "inline".to_string(),
    }
}

/// Where each root came from, without the roots: all a plan needs of them once they are
/// found ([`Roots::into_sources`]). 4 bytes per root, plus the base names of Hydra GC-root
/// entries (their source text names them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootSources {
    lines: Vec<u32>,
    sources: Vec<RootSource>,
    /// Root index → `<hash>-<name>`, for roots from Hydra GC-roots directories.
    gc_bases: HashMap<u32, String>,
}

impl RootSources {
    /// [`Root::source`] of the root at `i`.
    pub fn source(&self, i: usize) -> Option<String> {
        let line = *self.lines.get(i)?;
        let (_, src) = source_at(&self.sources, i)?;
        let base = || {
            u32::try_from(i)
                .ok()
                .and_then(|i| self.gc_bases.get(&i).cloned())
                .unwrap_or_default()
        };
        Some(source_text(src, line, base))
    }
}

/// The source of the root at `i`: the last one starting at or before `i` (empty sources
/// start where the next does).
fn source_at(sources: &[RootSource], i: usize) -> Option<(usize, &RootSource)> {
    let at = sources.partition_point(|s| s.first <= i).checked_sub(1)?;
    Some((at, sources.get(at)?))
}

impl Roots {
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Every root's hash, in order.
    pub fn hashes(&self) -> &[StorePathHash] {
        &self.hashes
    }

    /// The root sources, in order, each with its roots' [`RootSource::range`].
    pub fn sources(&self) -> &[RootSource] {
        &self.sources
    }

    /// The root at `i`.
    pub fn get(&self, i: usize) -> Option<Root<'_>> {
        let hash = *self.hashes.get(i)?;
        let start = i.checked_sub(1).map_or(0, |p| self.name_ends[p] as usize);
        let name = self.names.get(start..self.name_ends[i] as usize)?;
        let (source_index, source) = source_at(&self.sources, i)?;
        Some(Root {
            hash,
            name,
            source_index,
            source,
            line: self.lines[i],
        })
    }

    /// What is left of the roots once they are found: where each came from.
    pub fn into_sources(self) -> RootSources {
        let gc_bases = self
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::GcRoots)
            .flat_map(|s| s.range())
            .filter_map(|i| {
                let r = self.get(i)?;
                Some((u32::try_from(i).ok()?, format!("{}-{}", r.hash, r.name)))
            })
            .collect();
        RootSources {
            lines: self.lines,
            sources: self.sources,
            gc_bases,
        }
    }

    /// Every root, in order.
    pub fn iter(&self) -> impl Iterator<Item = Root<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Bytes held on the heap (capacity, not counting allocator overhead).
    pub fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * size_of::<StorePathHash>()
            + self.names.capacity()
            + self.name_ends.capacity() * 4
            + self.lines.capacity() * 4
            + self.sources.capacity() * size_of::<RootSource>()
            + self
                .sources
                .iter()
                .map(|s| s.label.capacity())
                .sum::<usize>()
    }

    /// Start a source: the roots pushed next are its.
    fn begin_source(&mut self, label: String, kind: SourceKind) {
        self.sources.push(RootSource {
            label,
            count: 0,
            first: self.len(),
            kind,
        });
    }

    /// Add a root of the current source (`line` in its file, 0 for other sources).
    fn push(&mut self, sp: &StorePath<'_>, line: usize) -> Result<()> {
        let Some(src) = self.sources.last_mut() else {
            bail!("a root before its source");
        };
        let Ok(line) = u32::try_from(line) else {
            bail!("{}:{line}: too many lines", src.label);
        };
        self.names.push_str(sp.name);
        let (Ok(end), true) = (
            u32::try_from(self.names.len()),
            self.hashes.len() < u32::MAX as usize,
        ) else {
            bail!(
                "{}: too many roots (more than 4 billion, or their names exceed 4 GiB)",
                src.label
            );
        };
        src.count += 1;
        self.hashes.push(sp.hash);
        self.name_ends.push(end);
        self.lines.push(line);
        Ok(())
    }

    /// Give back the spare capacity of reading.
    fn shrink_to_fit(&mut self) {
        self.hashes.shrink_to_fit();
        self.names.shrink_to_fit();
        self.name_ends.shrink_to_fit();
        self.lines.shrink_to_fit();
        self.sources.shrink_to_fit();
    }
}

/// A validated policy with its roots read.
#[derive(Debug, Clone)]
pub struct Policy {
    pub file: PolicyFile,
    /// The policy text, as given (it is copied into plans).
    pub text: String,
    /// The roots, with their sources.
    pub roots: Roots,
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
            roots: Roots::default(),
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
            self.roots
                .begin_source(d.display().to_string(), SourceKind::GcRoots);
            for e in rd {
                let n = e?.file_name();
                if let Some(sp) = n.to_str().and_then(|n| StorePath::parse_base_name(n).ok()) {
                    self.roots.push(&sp, 0)?;
                }
            }
        }
        if !r.paths.is_empty() {
            self.roots.begin_source("inline".into(), SourceKind::Inline);
        }
        for (i, s) in r.paths.iter().enumerate() {
            let sp = StorePath::parse_any(s.trim())
                .map_err(|e| anyhow::anyhow!("policy {name}: roots.paths[{i}] {s:?}: {e}"))?;
            self.roots.push(&sp, 0)?;
        }
        self.roots.shrink_to_fit();
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
        self.roots.begin_source(label.clone(), SourceKind::File);
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
            self.roots.push(&r.path, r.line)?;
        }
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

/// The roots a `[roots]`-style section names (files, `store-paths.xz`, fallback paths,
/// directories, Hydra GC roots, inline paths), read and validated exactly as a policy's:
/// the roots with their sources. Relative paths are relative
/// to `base`; `name` labels errors.
///
/// # Errors
/// As [`Policy::load`] for its `[roots]` section.
pub fn read_root_section(r: &RootsSection, base: &Path, name: &str) -> Result<Roots> {
    let mut p = Policy {
        file: PolicyFile::default(),
        text: String::new(),
        roots: Roots::default(),
        names: GlobSet::empty(),
        last_access: Default::default(),
    };
    p.read_roots(r, base, name)?;
    Ok(p.roots)
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
        assert!(p.roots.iter().all(|r| r.path() == P1));
        let sources: Vec<String> = p.roots.iter().map(|r| r.source()).collect();
        let d = d.path().display();
        assert_eq!(
            sources,
            [
                format!("{d}/a.txt:3"),
                format!("{d}/fallback-paths.nix:2"),
                format!("{d}/rel/store-paths.xz:1"),
                format!("{d}/gcroots/00bgd045z0d4icpbc2yyz4gx48ak44la-hello-2.12"),
                "inline".to_string(),
            ]
        );
        assert_eq!(p.roots.sources().len(), 5);
        // What a plan keeps of them once found names the same sources.
        let kept = p.roots.clone().into_sources();
        let again: Vec<String> = (0..5).filter_map(|i| kept.source(i)).collect();
        assert_eq!(again, sources);
        assert_eq!(kept.source(5), None);
    }

    /// Issue 9: a root line cost about 210 bytes (a `String` path and a `String` source
    /// each); now 28 bytes plus its name.
    #[test]
    fn a_root_line_costs_its_name_length_plus_28_bytes() {
        let d = tempfile::tempdir().unwrap();
        let n = 10_000;
        let mut text = String::new();
        let mut names = 0;
        for i in 0..n {
            let mut h = [0u8; 20];
            h[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let name = format!("package-{i}-1.{}", i % 97);
            names += name.len();
            text.push_str(&format!(
                "/nix/store/{}-{name}\n",
                narward_formats::nixbase32::encode(&h)
            ));
        }
        std::fs::write(d.path().join("r.txt"), text).unwrap();
        let p = Policy::from_str("[roots]\nfiles = [\"r.txt\"]\n", d.path(), "p").unwrap();
        assert_eq!(p.roots.len(), n);
        let label = d.path().join("r.txt").display().to_string();
        let per_source = size_of::<RootSource>() + label.len();
        assert_eq!(p.roots.heap_bytes(), names + 28 * n + per_source);
        let last = p.roots.get(n - 1).unwrap();
        assert_eq!(last.source(), format!("{label}:{n}"));
        assert!(
            last.path()
                .ends_with(&format!("-package-{}-1.{}", n - 1, (n - 1) % 97))
        );
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
