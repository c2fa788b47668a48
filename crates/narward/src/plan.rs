//! Plans: from an index and a policy, one decision for every object of the cache, with its
//! reason; written as an immutable, checksummed artifact bound to the cache and the index
//! generation it was computed from. Computing is pure ([`compute`]); executing is another
//! module's job.
//!
//! Liveness is path-level: the kept set is the closure, under References, of the roots
//! (policy roots and rule roots). Anything unknown keeps what it might protect: an
//! unparseable narinfo is kept along with every cache path whose hash appears anywhere in its
//! text and every listed NAR a `nar/…` token in it names; if it names no listed NAR, no
//! orphan NAR is removed; so is a narinfo that parses but cannot be taken at its word (its
//! StorePath is not the path its file name names, or its URL is unusual: white space, a
//! leading `/`, absolute), with the NAR of this cache its URL seems to name; a NAR used by
//! any kept narinfo is kept. A narinfo that changed since an earlier index also keeps what
//! its earlier texts named. Objects younger than `min_age_days` are kept, and their paths
//! become roots.
//! Removed paths are all archived or all deleted (`actions.unreachable`), so the removed set
//! is closed under referrers and nothing archived refers to something deleted.

use crate::cache_graph::{CacheGraph, build::Columns};
use crate::index::{self, Index, IndexMeta};
use crate::listing::{Etag, EtagRecord, Listing, ObjectRef};
use crate::model::FetchedRecord;
pub use crate::model::is_archive_class;
use crate::model::{BucketVersioning, VersioningState};
use crate::policy::{Policy, Roots};
use anyhow::{Context, Result, bail};
use narward_formats::keys::{self, Category};
use narward_formats::narinfo::NarInfo;
use narward_formats::nixbase32;
use narward_formats::store_path::{STORE_DIR, StorePathHash};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// 2: the checksum covers `plan.json` itself and every file of the plan (`files`).
/// 3: the restore set (`restore.bin.zst`, `manifests/restore.csv`), the bucket's
/// versioning in the header, already-archived NARs and the restore set in the summary.
/// 4: decisions written as they are made; the summary no longer repeats the delete mode
/// (derived from `versioning`, [`PlanHeader::delete_mode`]).
pub const PLAN_FORMAT: u32 = 4;

/// What happens to an object or a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Keep,
    Archive,
    Delete,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Keep, Decision::Archive, Decision::Delete];
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Keep => "keep",
            Decision::Archive => "archive",
            Decision::Delete => "delete",
        }
    }
}

/// Why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Named by a root source (`file:line`).
    Root {
        source: String,
    },
    /// Referenced by a kept path (the hash of the first referrer found; a hash, not a
    /// name, to keep plans of hundreds of millions of paths small in memory).
    Reachable {
        from: StorePathHash,
    },
    ContentAddressed,
    NameMatch,
    UploadedRecently,
    AccessedRecently,
    /// The object (or an object of the path) is younger than `min_age_days`.
    Young,
    /// The narinfo does not parse: present but unknown, so it is kept.
    Unparseable {
        why: String,
    },
    /// The narinfo parses but cannot be taken at its word (its StorePath is not the path
    /// its file name says, or its URL is not a plain key of this cache): kept as unknown,
    /// with its references and the NAR its URL seems to name.
    Unverifiable {
        why: String,
    },
    /// A NAR used by a kept path (its hash).
    NarOfKeptPath {
        path: StorePathHash,
    },
    /// An orphan NAR that an unparseable narinfo naming no listed NAR might point to.
    MightBelongToUnknown,
    /// A `.ls`/debuginfo/log object whose owner is kept, or whose owner is unknown.
    OwnerKept {
        owner: String,
    },
    OwnerUnknown,
    /// Not an object narward manages (nix-cache-info, realisations, other keys).
    NotManaged,
    /// No root or rule reaches the path.
    Unreachable,
    /// A NAR no narinfo points to.
    Orphan,
    /// The owner of this object is removed.
    OwnerRemoved {
        owner: String,
    },
    /// The policy says keep (e.g. `unreachable = "keep"`, `logs = "keep"`).
    PolicyKeep,
    /// A `file://` object that a kept symlink (the key `link`, directly or through a chain
    /// of links) reads: removing it would leave the link dangling.
    LinkTarget {
        link: String,
    },
}

impl Reason {
    /// A short name for the kind of reason (for counting).
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Root { .. } => "root",
            Reason::Reachable { .. } => "reachable",
            Reason::ContentAddressed => "content-addressed",
            Reason::NameMatch => "name-match",
            Reason::UploadedRecently => "uploaded-recently",
            Reason::AccessedRecently => "accessed-recently",
            Reason::Young => "young",
            Reason::Unparseable { .. } => "unparseable",
            Reason::Unverifiable { .. } => "unverifiable",
            Reason::NarOfKeptPath { .. } => "nar-of-kept-path",
            Reason::MightBelongToUnknown => "might-belong-to-unknown",
            Reason::OwnerKept { .. } => "owner-kept",
            Reason::OwnerUnknown => "owner-unknown",
            Reason::NotManaged => "not-managed",
            Reason::Unreachable => "unreachable",
            Reason::Orphan => "orphan",
            Reason::OwnerRemoved { .. } => "owner-removed",
            Reason::PolicyKeep => "policy-keep",
            Reason::LinkTarget { .. } => "link-target",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Root { source } => write!(f, "root ({source})"),
            Reason::Reachable { from } => write!(f, "referenced by {STORE_DIR}/{from}-…"),
            Reason::ContentAddressed => write!(f, "rule: content-addressed"),
            Reason::NameMatch => write!(f, "rule: name matches keep.names"),
            Reason::UploadedRecently => {
                write!(f, "rule: uploaded within keep.uploaded_within_days")
            }
            Reason::AccessedRecently => {
                write!(f, "rule: accessed within keep.accessed_within_days")
            }
            Reason::Young => write!(f, "younger than keep.min_age_days"),
            Reason::Unparseable { why } => {
                write!(f, "narinfo does not parse ({why}): kept as unknown")
            }
            Reason::Unverifiable { why } => {
                write!(
                    f,
                    "narinfo cannot be taken at its word ({why}): kept as unknown"
                )
            }
            Reason::NarOfKeptPath { path } => write!(f, "NAR of kept path {STORE_DIR}/{path}-…"),
            Reason::MightBelongToUnknown => {
                write!(
                    f,
                    "orphan NAR, but an unparseable narinfo without URL might use it"
                )
            }
            Reason::OwnerKept { owner } => write!(f, "belongs to kept {owner}"),
            Reason::OwnerUnknown => write!(f, "owner unknown"),
            Reason::NotManaged => write!(f, "not managed by narward"),
            Reason::Unreachable => write!(f, "unreachable from every root and rule"),
            Reason::Orphan => write!(f, "orphan NAR (no narinfo points to it)"),
            Reason::OwnerRemoved { owner } => write!(f, "belongs to removed {owner}"),
            Reason::PolicyKeep => write!(f, "policy keeps it"),
            Reason::LinkTarget { link } => write!(f, "read through the kept symlink {link}"),
        }
    }
}

/// The fate of one store path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathDecision {
    /// Base name `<hash>-<name>`.
    pub path: String,
    pub decision: Decision,
    pub reason: Reason,
    pub nar_key: Option<String>,
    pub nar_size: u64,
    pub file_size: Option<u64>,
}

/// The fate of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectDecision {
    pub key: String,
    pub category: Category,
    pub size: u64,
    /// As listed; written as its text (formatted by the plan writer, not per decision).
    pub etag: Option<Etag<'static>>,
    pub last_modified: Option<i64>,
    pub storage_class: Option<String>,
    pub decision: Decision,
    /// For archived NARs: the storage class to move to (none when too small to pay back,
    /// already there, or already in GLACIER or DEEP_ARCHIVE, which cannot be copied
    /// without a restore; the object is then only hidden).
    pub transition_to: Option<String>,
    pub reason: Reason,
}

/// A kept path whose NAR is in an archive class (GLACIER, DEEP_ARCHIVE): its narinfo is
/// visible, but a client cannot fetch the NAR until it is restored. The restore set of a
/// plan ([`Plan::restore`]) lists them; `narward restore` consumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreItem {
    /// Base name `<hash>-<name>` of the kept path.
    pub path: String,
    /// Its NAR's key (relative to the cache).
    pub nar_key: String,
    /// The NAR's storage class (GLACIER or DEEP_ARCHIVE): it sets the retrieval tiers and
    /// prices.
    pub storage_class: String,
    /// The NAR's size in bytes.
    pub size: u64,
    /// The NAR's ETag when the plan was made, to check the object before restoring it.
    pub etag: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountBytes {
    pub count: u64,
    pub bytes: u64,
}

impl CountBytes {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootStats {
    pub total: u64,
    pub found: u64,
    pub missing: u64,
    /// Up to 1000 missing roots (`path (source)`).
    pub missing_examples: Vec<String>,
    /// Per root source: (label, roots, missing).
    pub by_source: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// decision → category → count and bytes.
    pub objects: BTreeMap<Decision, BTreeMap<Category, CountBytes>>,
    /// decision → count and NAR file bytes.
    pub paths: BTreeMap<Decision, CountBytes>,
    /// Archived NARs that change storage class.
    pub transitions: CountBytes,
    /// Archived NARs below `archive_min_size`: hidden only.
    pub hidden_only_small_nars: CountBytes,
    /// Archived NARs already in GLACIER or DEEP_ARCHIVE: hidden only, never copied.
    pub already_archived_nars: CountBytes,
    /// Kept paths whose NAR is in GLACIER or DEEP_ARCHIVE: the restore set
    /// ([`Plan::restore`]); their narinfos are served while their NARs cannot be fetched.
    pub restore: CountBytes,
    /// Keep reasons of kept paths.
    pub kept_by_reason: BTreeMap<String, u64>,
    pub unparseable_narinfos: u64,
    pub closure_holes: u64,
}

/// Everything `plan.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanHeader {
    pub format_version: u32,
    pub cache: String,
    pub cache_url: String,
    pub index_generation: u64,
    pub created_at: i64,
    pub policy_file: String,
    pub policy_sha256: String,
    pub policy_text: String,
    pub archive_storage_class: String,
    pub archive_prefix: String,
    pub archive_bucket: Option<String>,
    /// The bucket's versioning as the index recorded it: in a versioned bucket (or one
    /// whose versioning is unknown) a delete is a delete marker, and what it frees is
    /// only freed once the noncurrent version expires ([`PlanHeader::delete_mode`]).
    pub versioning: BucketVersioning,
    pub roots: RootStats,
    pub summary: Summary,
    /// SHA-256 (hex) of every file of the plan directory but `plan.json`, by its path
    /// relative to the directory (`paths.bin.zst`, `objects.bin.zst`, `manifests/…`).
    pub files: BTreeMap<String, String>,
    /// SHA-256 (hex) of this header serialized as JSON with `checksum` empty: it covers
    /// every header field and, through `files`, the name and content of every file.
    pub checksum: String,
}

/// A computed plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub header: PlanHeader,
    /// Sorted by base name (so by hash).
    pub paths: Vec<PathDecision>,
    /// Sorted by key.
    pub objects: Vec<ObjectDecision>,
    /// Kept paths whose NAR is archived, sorted by base name: they must be restored for
    /// the path to be servable (see [`RestoreItem`]).
    pub restore: Vec<RestoreItem>,
}

/// What a text names, read leniently: store paths of this cache and NAR objects of its
/// listing. Tokens that match nothing in the cache are dropped, so random text never
/// counts as closure holes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Named {
    pub paths: Vec<StorePathHash>,
    /// Indices of listed NAR objects.
    pub nars: Vec<u32>,
}

impl Named {
    pub(crate) fn extend(&mut self, o: Named) {
        self.paths.extend(o.paths);
        self.nars.extend(o.nars);
    }
}

/// Whether a hash token of `text` ([`hash_tokens`]) is a path: what makes a reference
/// named `text` hide a reference to that path ([`hidden_in_parsed`]).
pub(crate) fn names_a_path(text: &str, is_path: &dyn Fn(&StorePathHash) -> bool) -> bool {
    hash_tokens(text.as_bytes()).iter().any(is_path)
}

/// Every 32-character window of every run of nixbase32 characters at least 32 long: each
/// a candidate store path hash, wherever it stands (`/nix/store/<hash>-x`, `<hash>-x!`,
/// `a,<hash>-x`, glued to other text).
fn hash_tokens(text: &[u8]) -> Vec<StorePathHash> {
    const N: usize = 32;
    let mut out = Vec::new();
    let mut run = 0;
    for i in 0..=text.len() {
        if text.get(i).is_some_and(|&c| nixbase32::is_nix32_char(c)) {
            continue;
        }
        if i - run >= N {
            for s in run..=i - N {
                let h = std::str::from_utf8(&text[s..s + N])
                    .ok()
                    .and_then(|t| StorePathHash::parse(t).ok());
                out.extend(h);
            }
        }
        run = i + 1;
    }
    out
}

/// Every listed NAR object a `nar/…` token of `text` names: each occurrence of `nar/`, read
/// up to whitespace (at most 1 KiB), and every prefix of it up to 256 bytes that is a
/// listed key (so a URL glued to the text after it still counts; Nix's NAR keys are about
/// 70 bytes, and the bound keeps a pathological text from costing quadratic time).
fn nar_tokens(text: &[u8], nar_index: &dyn Fn(&str) -> Option<usize>) -> Vec<u32> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = text[from..].windows(4).position(|w| w == b"nar/") {
        let start = from + p;
        let tail = &text[start..text.len().min(start + 1024)];
        let len = tail
            .iter()
            .position(|c| c.is_ascii_whitespace())
            .unwrap_or(tail.len());
        for l in (5..=len.min(256)).chain((len > 256).then_some(len)) {
            if let Ok(k) = std::str::from_utf8(&tail[..l])
                && let Some(i) = nar_index(k)
            {
                out.push(i as u32);
            }
        }
        from = start + 4;
    }
    out
}

/// What a narinfo that does not parse still tells: every path of the cache whose hash
/// appears anywhere in it, and every listed NAR it names.
pub(crate) fn lenient_scan(
    text: &[u8],
    is_path: &dyn Fn(&StorePathHash) -> bool,
    nar_index: &dyn Fn(&str) -> Option<usize>,
) -> Named {
    Named {
        paths: hash_tokens(text).into_iter().filter(is_path).collect(),
        nars: nar_tokens(text, nar_index),
    }
}

/// What a parseable narinfo names beyond its fields: paths whose hashes hide in unknown
/// fields or inside reference names (a damaged `References:` line can still parse), and,
/// when its URL names no listed NAR, the listed NARs named in the URL or unknown fields.
pub(crate) fn hidden_in_parsed(
    ni: &NarInfo<'_>,
    is_path: &dyn Fn(&StorePathHash) -> bool,
    nar_index: &dyn Fn(&str) -> Option<usize>,
) -> Named {
    let mut n = Named::default();
    for (k, v) in ni.unknown_fields() {
        n.extend(lenient_scan(k.as_bytes(), is_path, nar_index));
        n.extend(lenient_scan(v.as_bytes(), is_path, nar_index));
    }
    for r in &ni.references {
        n.paths.extend(
            hash_tokens(r.name.as_bytes())
                .into_iter()
                .filter(|h| is_path(h)),
        );
    }
    if nar_index(keys::nar_key_for_url(ni.url)).is_none() {
        n.nars.extend(nars_in_url(ni.url, nar_index));
    }
    n
}

/// The listed NARs a URL names that is not itself a listed NAR's: what
/// [`hidden_in_parsed`] finds in a narinfo that has neither unknown fields nor a name
/// holding a path.
pub(crate) fn nars_in_url(url: &str, nar_index: &dyn Fn(&str) -> Option<usize>) -> Vec<u32> {
    nar_tokens(url.as_bytes(), nar_index)
}

/// What the earlier texts of a narinfo (see [`FetchedRecord::earlier`]) name: the plan
/// keeps the union of every version's references and NARs.
pub(crate) fn earlier_named(
    rec: &FetchedRecord,
    is_path: &dyn Fn(&StorePathHash) -> bool,
    nar_index: &dyn Fn(&str) -> Option<usize>,
) -> Named {
    let mut n = Named::default();
    for t in &rec.earlier {
        match std::str::from_utf8(t)
            .ok()
            .and_then(|s| NarInfo::parse(s).ok())
        {
            Some(ni) => {
                n.paths
                    .extend(ni.references.iter().map(|r| r.hash).filter(|h| is_path(h)));
                n.nars
                    .extend(nar_index(keys::nar_key_for_url(ni.url)).map(|i| i as u32));
                n.extend(hidden_in_parsed(&ni, is_path, nar_index));
            }
            None => n.extend(lenient_scan(t, is_path, nar_index)),
        }
    }
    n
}

/// Where a plan's decisions go, in order, as they are made: held in memory (a [`Plan`]) or
/// written to a plan directory as they come ([`PlanWriter`]), so the decisions of a cache
/// of hundreds of millions of objects are never all in memory.
pub trait PlanSink {
    /// Called once, when the roots are known and before any decision: a sink may refuse
    /// the plan here (too few roots), before anything was written.
    ///
    /// # Errors
    /// The refusal, or the sink's I/O errors.
    fn begin(&mut self, b: &Begin<'_>) -> Result<()>;
    /// Every path, sorted by base name.
    ///
    /// # Errors
    /// The sink's I/O errors.
    fn path(&mut self, p: PathDecision) -> Result<()>;
    /// Every object, sorted by key, after every path.
    ///
    /// # Errors
    /// The sink's I/O errors.
    fn object(&mut self, o: ObjectDecision) -> Result<()>;
}

/// What a [`PlanSink`] learns before the decisions.
pub struct Begin<'a> {
    /// The cache's identity (`s3://bucket/prefix`, `file://…`).
    pub cache: &'a str,
    pub roots: &'a RootStats,
    pub paths: u64,
    pub objects: u64,
}

impl PlanSink for Plan {
    fn begin(&mut self, b: &Begin<'_>) -> Result<()> {
        self.paths.reserve(b.paths as usize);
        self.objects.reserve(b.objects as usize);
        Ok(())
    }

    fn path(&mut self, p: PathDecision) -> Result<()> {
        self.paths.push(p);
        Ok(())
    }

    fn object(&mut self, o: ObjectDecision) -> Result<()> {
        self.objects.push(o);
        Ok(())
    }
}

impl Plan {
    /// An empty plan with `header`, for [`PlanSink`] to fill.
    fn collecting(header: PlanHeader) -> Plan {
        Plan {
            header,
            paths: Vec::new(),
            objects: Vec::new(),
            restore: Vec::new(),
        }
    }
}

/// A plan's header and restore set, once every decision went to a [`PlanSink`].
#[derive(Debug)]
pub struct Planned {
    pub header: PlanHeader,
    pub restore: Vec<RestoreItem>,
}

/// What `narward plan` computes, in memory ([`plan_from_state`] with a [`Plan`] as sink).
///
/// # Errors
/// As [`plan_from_state`].
pub fn compute_from_state(
    state: &Path,
    policy: &Policy,
    policy_file: &str,
    now: i64,
) -> Result<Plan> {
    let mut plan = Plan::collecting(empty_header());
    let roots = policy.roots.clone();
    let Planned { header, restore } =
        plan_from_state(state, policy, roots, policy_file, now, &mut plan)?;
    plan.header = header;
    plan.restore = restore;
    Ok(plan)
}

/// What `narward plan` does: the index in `state`, its [`CacheGraph`] mapped from the
/// column files (or, for an index written before they existed, built from the narinfos
/// streamed from disk), verified against `meta.json`; every decision goes to `sink` as it
/// is made. A damaged index file is an error naming it, and the sink sees nothing before
/// the whole index was read and checked. `roots` are the policy's (taken out of it, as
/// `policy.roots` is not read): only where each came from is kept once they are found.
///
/// # Errors
/// No index, or a damaged one; the sink's errors.
pub fn plan_from_state(
    state: &Path,
    policy: &Policy,
    roots: Roots,
    policy_file: &str,
    now: i64,
    sink: &mut (impl PlanSink + ?Sized),
) -> Result<Planned> {
    let meta = Index::load_meta(state)?;
    // The listing is read while the column files are hashed: two independent passes over
    // the disk (each verified), one per core.
    let (loaded, mapped) = std::thread::scope(|sc| {
        let columns = sc.spawn(|| Index::open_columns(state, &meta));
        let loaded = Index::load_without_narinfos(state);
        let mapped = columns
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("verifying the index columns failed")));
        (loaded, mapped)
    });
    let Index {
        meta: listed,
        mut objects,
        debuginfo,
        ..
    } = loaded?;
    let mapped = mapped?;
    if listed.checksum != meta.checksum {
        bail!(
            "the index in {} changed while it was read (a concurrent `narward index`?): run `narward plan` again",
            state.display()
        );
    }
    crate::progress::phase("plan: listing loaded, columns verified");
    let again = |f: &mut dyn FnMut(EtagRecord) -> Result<()>| -> Result<()> {
        Index::stream_objects(state, &meta, f).map(|_| ())
    };
    let input = PlanInput {
        meta: &meta,
        debuginfo: &debuginfo,
        policy,
        policy_file,
        now,
        records_again: Some(&again),
    };
    let Some(mapped) = mapped else {
        let narinfos = |sink: &mut dyn FnMut(&FetchedRecord) -> Result<()>| -> Result<()> {
            Index::stream_narinfos(state, &meta, |r| sink(&r)).map(|_| ())
        };
        let cols = Columns::build(&objects, narinfos)?;
        crate::progress::phase("plan: narinfos streamed, graph built");
        let graph = CacheGraph::new(cols.parts())?;
        return compute_with_graph(&input, roots, &mut objects, graph, Default::default(), sink);
    };
    let graph = mapped.graph()?;
    let pages = crate::cache_graph::Pages(Some(&mapped));
    compute_with_graph(&input, roots, &mut objects, graph, pages, sink)
}

/// A header to be replaced by the computed one.
fn empty_header() -> PlanHeader {
    PlanHeader {
        format_version: PLAN_FORMAT,
        cache: String::new(),
        cache_url: String::new(),
        index_generation: 0,
        created_at: 0,
        policy_file: String::new(),
        policy_sha256: String::new(),
        policy_text: String::new(),
        archive_storage_class: String::new(),
        archive_prefix: String::new(),
        archive_bucket: None,
        versioning: BucketVersioning::default(),
        roots: RootStats::default(),
        summary: Summary::default(),
        files: BTreeMap::new(),
        checksum: String::new(),
    }
}

/// Compute a plan from an index in memory. `now` is unix seconds (a parameter so tests are
/// deterministic).
///
/// # Errors
/// Narinfo records out of key order, or a listing the columns do not match.
pub fn compute(index: &Index, policy: &Policy, policy_file: &str, now: i64) -> Result<Plan> {
    let source = |f: &mut dyn FnMut(&FetchedRecord) -> Result<()>| -> Result<()> {
        for r in &index.narinfos {
            f(r)?;
        }
        Ok(())
    };
    // The listing's records read again are the ones in memory, as `narward plan` reads its
    // listing file again.
    let again = |f: &mut dyn FnMut(EtagRecord) -> Result<()>| -> Result<()> {
        index
            .objects
            .iter()
            .try_for_each(|o| f(EtagRecord::of(&o.to_record())))
    };
    let input = PlanInput {
        meta: &index.meta,
        debuginfo: &index.debuginfo,
        policy,
        policy_file,
        now,
        records_again: Some(&again),
    };
    let mut plan = Plan::collecting(empty_header());
    let mut objects = index.objects.clone();
    let planned = Columns::build(&index.objects, source).and_then(|cols| {
        let graph = CacheGraph::new(cols.parts())?;
        let roots = policy.roots.clone();
        compute_with_graph(
            &input,
            roots,
            &mut objects,
            graph,
            Default::default(),
            &mut plan,
        )
    });
    let Planned { header, restore } = planned?;
    plan.header = header;
    plan.restore = restore;
    Ok(plan)
}

/// What a plan is computed from, besides the listing and the graph.
pub struct PlanInput<'a> {
    pub meta: &'a IndexMeta,
    pub debuginfo: &'a [FetchedRecord],
    pub policy: &'a Policy,
    pub policy_file: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// The listing's records read again, in key order, each handed to the function given:
    /// with it, the listing's MD5s are let go of during the closure and read back after
    /// it ([`Listing::let_md5_go`]; issue 9: 16 bytes per object at the peak).
    pub records_again: Option<&'a RecordsAgain<'a>>,
}

/// Hands every record of a listing, in key order, to the function it is given.
pub type RecordsAgain<'a> = dyn Fn(&mut dyn FnMut(EtagRecord) -> Result<()>) -> Result<()> + 'a;

/// Compute a plan from the listing `objs` and the [`CacheGraph`] of the same generation,
/// every decision handed to `sink` as it is made; `pages` lets go of the mapped column
/// pages each phase is done with. `policy_roots` are the policy's roots (its
/// `policy.roots` is not read), let go of once found.
///
/// # Errors
/// A graph that does not belong to the listing; the sink's errors.
pub fn compute_with_graph<'g>(
    input: &PlanInput<'_>,
    policy_roots: Roots,
    objs: &mut Listing,
    graph: CacheGraph<'g>,
    pages: crate::cache_graph::Pages<'g>,
    sink: &mut (impl PlanSink + ?Sized),
) -> Result<Planned> {
    let PlanInput {
        meta,
        debuginfo,
        policy,
        policy_file,
        now,
        records_again,
    } = *input;
    let ctx = phases::Ctx {
        policy,
        now,
        // Log keys carry the cache's prefix; object keys do not.
        last_access: crate::access::last_access_for_cache(
            &policy.last_access,
            &crate::access::cache_prefix(&meta.cache_url),
        ),
        want_derivers: objs.iter().any(|o| o.category() == Category::Log),
    };
    crate::progress::phase("plan: start");
    // 1. The graph, checked against the listing.
    let s = phases::read_graph(objs, graph, pages)?;
    // 2. Roots.
    let (seeds, root_of, roots) = phases::find_roots(&ctx, objs, &s, &policy_roots);
    // Only where each root came from is asked again: the rest goes before the closure.
    let sources = policy_roots.into_sources();
    crate::progress::phase("plan: roots");
    // 3. Liveness, then every path.
    if records_again.is_some() {
        objs.let_md5_go();
    }
    let parent = s.graph.closure(&seeds);
    // The references are not read again.
    s.pages.let_go();
    if let Some(again) = records_again {
        objs.refill_md5(again)?;
        crate::progress::phase("plan: ETags read again");
    }
    let objs: &Listing = objs;
    // The sink sees nothing before every file was read and checked (the listing twice).
    sink.begin(&Begin {
        cache: &meta.cache,
        roots: &roots,
        paths: s.graph.len() as u64,
        objects: objs.len() as u64,
    })?;
    let v = phases::Verdicts {
        s: &s,
        parent: &parent,
        root_of: &root_of,
        sources: &sources,
        ctx: &ctx,
        objs,
        removed: ctx.removed_decision(),
    };
    let mut summary = Summary {
        unparseable_narinfos: s.unparseable,
        closure_holes: s.graph.missing_refs(),
        ..Default::default()
    };
    let restore = phases::decide_paths(&v, objs, &mut summary, sink)?;
    crate::progress::phase("plan: paths decided");
    // 4. Owners of the other objects.
    let owners = phases::Owners::find(&ctx, &v, objs, debuginfo);
    crate::progress::phase("plan: owners");
    // 5. Every object.
    let inputs = phases::ObjectInputs {
        ctx: &ctx,
        v: &v,
        owners: &owners,
    };
    phases::decide_objects(&inputs, objs, &mut summary, sink)?;
    crate::progress::phase("plan: objects decided");
    let header = plan_header(meta, policy, policy_file, now, roots, summary);
    Ok(Planned { header, restore })
}

/// The header of a plan computed now (files and checksum are filled when it is written).
fn plan_header(
    meta: &IndexMeta,
    policy: &Policy,
    policy_file: &str,
    now: i64,
    roots: RootStats,
    summary: Summary,
) -> PlanHeader {
    let p = &policy.file;
    let versioning = plan_versioning(meta);
    PlanHeader {
        format_version: PLAN_FORMAT,
        cache: meta.cache.clone(),
        cache_url: meta.cache_url.clone(),
        index_generation: meta.generation,
        created_at: now,
        policy_file: policy_file.to_string(),
        policy_sha256: hex::encode(Sha256::digest(policy.text.as_bytes())),
        policy_text: policy.text.clone(),
        archive_storage_class: p.actions.archive_storage_class.clone(),
        archive_prefix: p.actions.archive_prefix.clone(),
        archive_bucket: p.actions.archive_bucket.clone(),
        versioning,
        roots,
        summary,
        files: BTreeMap::new(),
        checksum: String::new(),
    }
}

/// The storage class an archived NAR moves to, if it moves: only NARs of at least
/// `archive_min_size` that are readable today (STANDARD, GLACIER_IR, INTELLIGENT_TIERING,
/// …) and not already in the target class. A NAR already in GLACIER or DEEP_ARCHIVE is
/// already archived: it is only hidden, never copied (a copy of it would need a restore
/// first, and could move it to a warmer, dearer class).
fn archive_transition(
    o: ObjectRef<'_>,
    decision: Decision,
    category: Category,
    p: &crate::policy::PolicyFile,
) -> Option<String> {
    (decision == Decision::Archive
        && category == Category::Nar
        && o.size() >= p.actions.archive_min_size.0
        && !o.is_archived()
        && o.storage_class() != p.actions.archive_storage_class)
        .then(|| p.actions.archive_storage_class.clone())
}

/// Count an archived NAR in the summary: moved, already cold (only hidden), or below
/// the minimum size (only hidden).
fn count_archived_nar(summary: &mut Summary, o: ObjectRef<'_>, moves: bool) {
    if moves {
        summary.transitions.add(o.size());
    } else if o.is_archived() {
        summary.already_archived_nars.add(o.size());
    } else {
        summary.hidden_only_small_nars.add(o.size());
    }
}

/// The bucket's versioning for a plan: as the index recorded it, or unknown for an index
/// made before narward recorded it.
fn plan_versioning(meta: &IndexMeta) -> BucketVersioning {
    meta.versioning.clone().unwrap_or_else(|| BucketVersioning {
        state: VersioningState::Unknown,
        source: "not recorded by the index (made by an older narward; run `narward index` again)"
            .into(),
        noncurrent: None,
    })
}

impl PlanHeader {
    /// How a delete of this plan removes data: `delete`, or in a bucket that keeps (or may
    /// keep) versions, `delete marker + noncurrent-version expiry`.
    pub fn delete_mode(&self) -> &'static str {
        delete_mode(self.versioning.state)
    }
}

fn delete_mode(state: VersioningState) -> &'static str {
    if state.deletes_leave_versions() {
        "delete marker + noncurrent-version expiry"
    } else {
        "delete"
    }
}

/// SHA-256 (hex) of one file's content.
fn file_sha(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The digest of every file under `dir` (recursively) but the top-level `plan.json`, by
/// path relative to `dir` with `/` separators.
fn plan_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    plan_files_known(dir, &BTreeMap::new())
}

/// [`plan_files`], taking the digests in `known` (by relative path) for the files they
/// name instead of reading them again (a writer hashes what it writes).
fn plan_files_known(
    dir: &Path,
    known: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    fn walk(
        root: &Path,
        rel: &str,
        known: &BTreeMap<String, String>,
        out: &mut BTreeMap<String, String>,
    ) -> Result<()> {
        let d = root.join(rel);
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("reading {}", d.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type()?.is_dir() {
                walk(root, &r, known, out)?;
            } else if r != "plan.json" {
                let sha = match known.get(&r) {
                    Some(k) => k.clone(),
                    None => file_sha(&root.join(&r))?,
                };
                out.insert(r, sha);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, "", known, &mut out)?;
    Ok(out)
}

/// The checksum of a header: SHA-256 of its JSON with `checksum` empty.
fn header_checksum(h: &PlanHeader) -> Result<String> {
    let mut h = h.clone();
    h.checksum = String::new();
    Ok(hex::encode(Sha256::digest(serde_json::to_vec(&h)?)))
}

/// The first file that differs between the digests a header records and the files
/// present, as "`name` was altered / is missing / was added".
fn first_difference(
    recorded: &BTreeMap<String, String>,
    present: &BTreeMap<String, String>,
) -> Option<String> {
    let names: std::collections::BTreeSet<&String> =
        recorded.keys().chain(present.keys()).collect();
    names
        .into_iter()
        .find_map(|n| match (recorded.get(n), present.get(n)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(_), Some(_)) => Some(format!("{n} was altered")),
            (Some(_), None) => Some(format!("{n} is missing")),
            (None, _) => Some(format!("{n} was added (it is not part of the plan)")),
        })
}

/// Why a narinfo that parses still cannot be taken at its word, if it cannot: its
/// StorePath's hash differs from its file name's (`key_hash`), or its URL is unusual
/// ([`keys::nar_url_quirk`]). Such a narinfo is kept as unknown.
pub(crate) fn narinfo_doubt(key_hash: &StorePathHash, ni: &NarInfo<'_>) -> Option<String> {
    if ni.store_path.hash != *key_hash {
        return Some(format!(
            "its file name names {key_hash}, its StorePath is {}",
            ni.store_path.full_path()
        ));
    }
    match keys::nar_url_quirk(ni.url)? {
        keys::UrlQuirk::Whitespace => Some(format!(
            "URL {:?} has white space around it, which Nix does not strip",
            ni.url
        )),
        keys::UrlQuirk::Absolute => Some(format!("URL {:?} points outside this cache", ni.url)),
        keys::UrlQuirk::LeadingSlash => Some(format!(
            "URL {:?} starts with '/': whether Nix finds the NAR depends on the server",
            ni.url
        )),
    }
}

/// The S3 bucket and key prefix of an `s3://` cache identity.
pub fn s3_location(identity: &str) -> Option<(String, String)> {
    let rest = identity.strip_prefix("s3://")?;
    let loc = rest.split('?').next()?;
    let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Some((bucket.to_string(), prefix))
}

impl Plan {
    /// Write the plan into `dir`, which must not exist or be empty: plans are immutable.
    /// The same writer as `narward plan`'s ([`PlanWriter`]).
    ///
    /// # Errors
    /// `dir` is not empty; I/O errors.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        let mut w = PlanWriter::create(
            dir,
            &self.header.cache,
            self.paths.len() as u64,
            self.objects.len() as u64,
        )?;
        for p in &self.paths {
            w.path(p)?;
        }
        for o in &self.objects {
            w.object(o)?;
        }
        self.header = w.finish(
            std::mem::replace(&mut self.header, empty_header()),
            &self.restore,
        )?;
        Ok(())
    }

    /// Read a plan and verify its checksum: `plan.json` must be as written, and every file
    /// of the directory must be one the plan recorded, with the same content.
    ///
    /// # Errors
    /// Missing files, a checksum mismatch naming the file that differs (the plan was
    /// altered), corrupt data.
    pub fn read(dir: &Path) -> Result<Plan> {
        let header = Self::read_verified_header(dir)?;
        let mut paths = Vec::new();
        index::read_stream(&dir.join("paths.bin.zst"), |x| {
            paths.push(x);
            Ok(())
        })?;
        let mut objects = Vec::new();
        index::read_stream(&dir.join("objects.bin.zst"), |x| {
            objects.push(x);
            Ok(())
        })?;
        let mut restore = Vec::new();
        index::read_stream(&dir.join("restore.bin.zst"), |x| {
            restore.push(x);
            Ok(())
        })?;
        Ok(Plan {
            header,
            paths,
            objects,
            restore,
        })
    }

    /// `plan.json`, once its own checksum and the digest of every file check out.
    fn read_verified_header(dir: &Path) -> Result<PlanHeader> {
        let hp = dir.join("plan.json");
        let t = std::fs::read_to_string(&hp)
            .with_context(|| format!("no plan in {}", dir.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&t).with_context(|| format!("{}: corrupt", hp.display()))?;
        let version = v.get("format_version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(PLAN_FORMAT)) {
            bail!(
                "{}: plan format {} is not supported (expected {PLAN_FORMAT}); compute a new plan",
                hp.display(),
                version.map_or("(none)".to_string(), |x| x.to_string())
            );
        }
        let header: PlanHeader =
            serde_json::from_value(v).with_context(|| format!("{}: corrupt", hp.display()))?;
        let altered = |what: &str| {
            anyhow::anyhow!(
                "plan {}: checksum mismatch: {what}; the plan cannot be trusted, compute a new one",
                dir.display()
            )
        };
        if header_checksum(&header)? != header.checksum {
            return Err(altered("plan.json was altered"));
        }
        if let Some(d) = first_difference(&header.files, &plan_files(dir)?) {
            return Err(altered(&d));
        }
        Ok(header)
    }

    /// The decision for a store path given as a full path, a base name or a hash.
    pub fn path(&self, q: &str) -> Option<&PathDecision> {
        let q = q
            .trim()
            .trim_start_matches(STORE_DIR)
            .trim_start_matches('/');
        let hash = q.split('-').next().unwrap_or(q);
        let i = self.paths.partition_point(|p| p.path.as_str() < hash);
        self.paths.get(i).filter(|p| {
            p.path.starts_with(hash) && p.path.as_bytes().get(hash.len()).is_none_or(|b| *b == b'-')
        })
    }

    /// The restore-set entry of a kept path (given as for [`Plan::path`]) whose NAR is
    /// archived.
    pub fn restore_item(&self, q: &str) -> Option<&RestoreItem> {
        let p = self.path(q)?;
        self.restore
            .binary_search_by(|r| r.path.as_str().cmp(&p.path))
            .ok()
            .map(|i| &self.restore[i])
    }

    pub fn object(&self, key: &str) -> Option<&ObjectDecision> {
        self.objects
            .binary_search_by(|o| o.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.objects[i])
    }
}

mod phases;
mod write;
pub use write::{PlanWriter, PlanWriterThread};

#[cfg(test)]
mod tests {
    mod cold;
    mod columns;
    mod sink;
    mod versioning;

    use super::*;
    use crate::model::FetchedRecord;
    use crate::model::ObjectRecord;
    use narward_formats::keys::ObjectKind;
    use narward_formats::nixbase32;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const NOW: i64 = 2_000_000_000;
    const DAY: i64 = 86_400;

    fn hash20(i: usize, salt: u8) -> String {
        let mut b = [0u8; 20];
        b[0] = salt;
        b[1..9].copy_from_slice(&(i as u64).to_le_bytes());
        nixbase32::encode(&b)
    }

    fn sha(i: usize, salt: u8) -> String {
        let mut b = [0u8; 32];
        b[0] = salt;
        b[1..9].copy_from_slice(&(i as u64).to_le_bytes());
        nixbase32::encode(&b)
    }

    /// A random cache: `n` paths, references only to lower-numbered paths (plus self
    /// references), some young objects, some CA paths, missing NARs, orphans, unparseable.
    #[derive(Debug, Clone, Default)]
    struct Spec {
        n: usize,
        edges: Vec<(usize, usize)>,
        roots: Vec<usize>,
        young: Vec<usize>,
        ca: Vec<usize>,
        missing_nar: Vec<usize>,
        broken: Vec<usize>,
        shared_nar: Vec<(usize, usize)>,
        orphans: usize,
        delete: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (2usize..40).prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec((0..n, 0..n), 0..120),
                proptest::collection::vec(0..n, 0..4),
                proptest::collection::vec(0..n, 0..3),
                proptest::collection::vec(0..n, 0..3),
                proptest::collection::vec(0..n, 0..3),
                proptest::collection::vec(0..n, 0..2),
                proptest::collection::vec((0..n, 0..n), 0..2),
                0usize..3,
                any::<bool>(),
            )
                .prop_map(
                    |(n, e, roots, young, ca, missing_nar, broken, shared_nar, orphans, delete)| {
                        Spec {
                            n,
                            edges: e
                                .into_iter()
                                .map(|(a, b)| if a >= b { (a, b) } else { (b, a) })
                                .collect(),
                            roots,
                            young,
                            ca,
                            missing_nar,
                            broken,
                            shared_nar,
                            orphans,
                            delete,
                        }
                    },
                )
        })
    }

    fn nar_of(s: &Spec, i: usize) -> usize {
        s.shared_nar
            .iter()
            .find(|(a, _)| *a == i)
            .map_or(i, |(_, b)| *b)
    }

    fn build(s: &Spec) -> (Index, Policy) {
        build_with_logs(s, &[])
    }

    /// The listing of a build log `log/<drv>` (derivers: `<hash of path i, salt 4>-p<i>.drv`).
    fn log_object(drv: &str) -> ObjectRecord {
        ObjectRecord {
            link_target: None,
            key: format!("log/{drv}"),
            size: 7,
            etag: None,
            last_modified: Some(NOW - 400 * DAY),
            storage_class: None,
        }
    }

    fn drv(i: usize) -> String {
        format!("{}-p{i}.drv", hash20(i, 4))
    }

    /// [`build`], the paths in `logs` with a deriver and its build log.
    fn build_with_logs(s: &Spec, logs: &[usize]) -> (Index, Policy) {
        let mut objects = Vec::new();
        let mut narinfos = Vec::new();
        for i in 0..s.n {
            let h = hash20(i, 1);
            let refs: Vec<String> = s
                .edges
                .iter()
                .filter(|(a, _)| *a == i)
                .map(|(_, b)| format!("{}-p{b}", hash20(*b, 1)))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let nar = format!("nar/{}.nar.xz", sha(nar_of(s, i), 2));
            let mut text = format!(
                "StorePath: /nix/store/{h}-p{i}\nURL: {nar}\nCompression: xz\nFileHash: sha256:{}\nFileSize: {}\nNarHash: sha256:{}\nNarSize: {}\nReferences: {}\n",
                sha(nar_of(s, i), 2),
                1000 + i,
                sha(i, 3),
                2000 + i,
                refs.join(" ")
            );
            if s.ca.contains(&i) {
                text.push_str(&format!("CA: fixed:r:sha256:{}\n", sha(i, 3)));
            }
            if logs.contains(&i) {
                text.push_str(&format!("Deriver: {}\n", drv(i)));
                objects.push(log_object(&drv(i)));
            }
            if s.broken.contains(&i) {
                text = format!("StorePath: broken\nReferences: {}\n", refs.join(" "));
            }
            let t = if s.young.contains(&i) {
                NOW - DAY
            } else {
                NOW - 400 * DAY
            };
            let key = format!("{h}.narinfo");
            objects.push(ObjectRecord {
                link_target: None,
                key: key.clone(),
                size: text.len() as u64,
                etag: None,
                last_modified: Some(t),
                storage_class: None,
            });
            if !s.missing_nar.contains(&i) && nar_of(s, i) == i {
                objects.push(ObjectRecord {
                    link_target: None,
                    key: nar,
                    size: 1000 + i as u64,
                    etag: None,
                    last_modified: Some(NOW - 400 * DAY),
                    storage_class: None,
                });
            }
            objects.push(ObjectRecord {
                link_target: None,
                key: format!("{h}.ls"),
                size: 10,
                etag: None,
                last_modified: Some(NOW - 400 * DAY),
                storage_class: None,
            });
            narinfos.push(FetchedRecord {
                key,
                etag: None,
                size: text.len() as u64,
                text: text.into_bytes(),
                fetch_error: None,
                earlier: Vec::new(),
            });
        }
        // Logs of derivers no path names.
        for &i in logs.iter().filter(|&&i| i >= s.n) {
            objects.push(log_object(&drv(i)));
        }
        for o in 0..s.orphans {
            objects.push(ObjectRecord {
                link_target: None,
                key: format!("nar/{}.nar.xz", sha(o, 9)),
                size: 5,
                etag: None,
                last_modified: Some(NOW - 400 * DAY),
                storage_class: None,
            });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.dedup_by(|a, b| a.key == b.key);
        narinfos.sort_by(|a, b| a.key.cmp(&b.key));
        let mut index = Index::for_tests(Listing::from_records(objects).unwrap(), narinfos);
        index.meta.format_version = 1;
        index.meta.cache = "file:///t".into();
        index.meta.cache_url = "file:///t".into();
        index.meta.updated_at = NOW;
        let roots: Vec<String> = s
            .roots
            .iter()
            .map(|r| format!("\"/nix/store/{}-p{r}\"", hash20(*r, 1)))
            .collect();
        let text = format!(
            "[roots]\npaths = [{}]\n[keep]\ncontent_addressed = true\nmin_age_days = 7\n[actions]\nunreachable = \"{}\"\norphan_nars = \"follow\"\n",
            roots.join(", "),
            if s.delete { "delete" } else { "archive" }
        );
        let policy = Policy::from_str(&text, Path::new("."), "test").unwrap();
        (index, policy)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn nothing_reachable_from_a_root_is_removed(s in spec()) {
            let (index, policy) = build(&s);
            let plan = compute(&index, &policy, "test", NOW).unwrap();
            let fate = |i: usize| plan.path(&hash20(i, 1)).map(|p| p.decision);
            // Seeds: roots, young, content-addressed, unparseable.
            let mut keep: HashSet<usize> = s.roots.iter().chain(&s.young).chain(&s.broken).copied().collect();
            keep.extend(s.ca.iter().filter(|i| !s.broken.contains(i)));
            // Closure (broken narinfos still name their references).
            loop {
                let before = keep.len();
                for (a, b) in &s.edges { if keep.contains(a) { keep.insert(*b); } }
                if keep.len() == before { break; }
            }
            for i in 0..s.n {
                let f = fate(i);
                prop_assert!(f.is_some(), "path {i} missing from the plan");
                if keep.contains(&i) {
                    prop_assert_eq!(f, Some(Decision::Keep), "path {} must be kept", i);
                } else {
                    prop_assert_eq!(f, Some(if s.delete { Decision::Delete } else { Decision::Archive }), "path {} is garbage", i);
                }
            }
            // Removed set closed under referrers.
            for (a, b) in &s.edges {
                if fate(*b) != Some(Decision::Keep) { prop_assert!(fate(*a) != Some(Decision::Keep)); }
            }
            for o in &plan.objects {
                // A narinfo shares its path's fate; young objects are never touched.
                if o.last_modified.is_some_and(|t| t > NOW - 7 * DAY) { prop_assert_eq!(o.decision, Decision::Keep); }
                if let ObjectKind::Narinfo(h) = keys::classify(&o.key) {
                    let p = plan.path(&h.to_string()).unwrap();
                    prop_assert_eq!(o.decision, p.decision);
                }
            }
            // Every NAR a kept (parseable) narinfo points to is kept.
            for p in plan.paths.iter().filter(|p| p.decision == Decision::Keep) {
                if let Some(k) = &p.nar_key
                    && let Some(o) = plan.object(k) { prop_assert_eq!(o.decision, Decision::Keep, "NAR {} of kept {}", k, p.path); }
            }
            // Orphans follow the unreachable action, unless an unparseable narinfo hides its URL.
            for o in plan.objects.iter().filter(|o| o.reason == Reason::Orphan) {
                prop_assert!(s.broken.is_empty());
                prop_assert_ne!(o.decision, Decision::Keep);
            }
            if !s.broken.is_empty() {
                prop_assert!(plan.objects.iter().all(|o| o.reason != Reason::Orphan));
            }
        }
    }

    /// The cache of `build` with `n` unrelated paths, path `i` the only root, unreachable
    /// paths deleted, `orphans` orphan NARs; narinfo `i`'s text replaced by `f(text)`.
    fn edited(n: usize, i: usize, orphans: usize, f: impl Fn(&str) -> String) -> (Index, Policy) {
        let s = Spec {
            n,
            edges: Vec::new(),
            roots: vec![i],
            young: Vec::new(),
            ca: Vec::new(),
            missing_nar: Vec::new(),
            broken: Vec::new(),
            shared_nar: Vec::new(),
            orphans,
            delete: true,
        };
        let (mut index, policy) = build(&s);
        let key = format!("{}.narinfo", hash20(i, 1));
        let r = index.narinfos.iter_mut().find(|r| r.key == key).unwrap();
        r.text = f(std::str::from_utf8(&r.text).unwrap()).into_bytes();
        (index, policy)
    }

    fn kept(plan: &Plan, i: usize) -> bool {
        plan.path(&hash20(i, 1)).map(|p| p.decision) == Some(Decision::Keep)
    }

    fn nar_kept(plan: &Plan, key: &str) -> bool {
        plan.object(key).map(|o| o.decision) == Some(Decision::Keep)
    }

    /// Finding 5: an unparseable narinfo keeps every path whose hash it names, in any form.
    #[test]
    fn unparseable_narinfo_keeps_paths_named_in_any_form() {
        let forms = [
            |h1: &str, _h2: &str| format!("StorePath: broken\nReferences: /nix/store/{h1}-p1\n"),
            |h1: &str, _h2: &str| format!("StorePath: broken\nReferences: {h1}-p1!\n"),
            |h1: &str, h2: &str| format!("StorePath: broken\nReferences: {h1}-p1,{h2}-p2\n"),
            |h1: &str, _h2: &str| format!("StorePath broken\nDeriver: {h1}-p1.drv\n"),
        ];
        for (k, form) in forms.iter().enumerate() {
            let (index, policy) = edited(4, 0, 0, |_| form(&hash20(1, 1), &hash20(2, 1)));
            assert!(index.narinfos.iter().any(|r| r.parse().is_err()));
            let plan = compute(&index, &policy, "test", NOW).unwrap();
            assert!(kept(&plan, 0), "form {k}: the unparseable narinfo");
            assert!(kept(&plan, 1), "form {k}: the path it names");
            assert_eq!(
                kept(&plan, 2),
                k == 2,
                "form {k}: p2 named only by the comma form"
            );
            assert!(!kept(&plan, 3), "form {k}: p3 is named by nothing");
            assert_eq!(plan.header.summary.closure_holes, 0, "form {k}");
        }
    }

    /// Finding 5: with a duplicated `URL:` line, the NARs of both lines are kept.
    #[test]
    fn unparseable_narinfo_with_duplicated_url_keeps_every_nar_it_names() {
        let orphan = format!("nar/{}.nar.xz", sha(0, 9));
        let own = format!("nar/{}.nar.xz", sha(0, 2));
        let (index, policy) = edited(2, 0, 1, |t| {
            t.replacen("URL:", &format!("URL: {orphan}\nURL:"), 1)
        });
        assert!(
            index.narinfos.iter().any(|r| r.parse().is_err()),
            "duplicate URL does not parse"
        );
        let plan = compute(&index, &policy, "test", NOW).unwrap();
        assert!(kept(&plan, 0));
        assert!(nar_kept(&plan, &orphan), "NAR of the first URL line");
        assert!(nar_kept(&plan, &own), "NAR of the second URL line");
        assert!(
            !nar_kept(&plan, &format!("nar/{}.nar.xz", sha(1, 2))),
            "p1's NAR is garbage"
        );
    }

    /// Tokens that name nothing in the cache are not closure holes.
    #[test]
    fn random_text_of_an_unparseable_narinfo_is_no_closure_hole() {
        let (index, policy) = edited(2, 0, 0, |_| {
            format!("garbage {} {}\n", hash20(77, 5), sha(3, 3))
        });
        let plan = compute(&index, &policy, "test", NOW).unwrap();
        assert_eq!(plan.header.summary.closure_holes, 0);
        assert!(kept(&plan, 0) && !kept(&plan, 1));
    }

    /// A narinfo that changed since an earlier index keeps what its earlier text named:
    /// references and NAR.
    #[test]
    fn earlier_text_of_a_changed_narinfo_keeps_its_references_and_nar() {
        let (mut index, policy) = edited(3, 0, 0, |t| t.to_string());
        let key = format!("{}.narinfo", hash20(0, 1));
        let r = index.narinfos.iter_mut().find(|r| r.key == key).unwrap();
        let nar1 = format!("nar/{}.nar.xz", sha(1, 2));
        let earlier = String::from_utf8(r.text.clone())
            .unwrap()
            .replace(
                "References: \n",
                &format!("References: {}-p2\n", hash20(2, 1)),
            )
            .replace(&format!("nar/{}.nar.xz", sha(0, 2)), &nar1);
        r.earlier = vec![serde_bytes::ByteBuf::from(earlier.into_bytes())];
        let plan = compute(&index, &policy, "test", NOW).unwrap();
        assert!(kept(&plan, 0) && kept(&plan, 2) && !kept(&plan, 1));
        assert!(nar_kept(&plan, &nar1), "NAR of the earlier URL");
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Insert(Vec<u8>),
        Delete(usize),
        Replace(Vec<u8>),
    }

    /// Where an edit lands: anywhere, or next to a structural byte (line ends, colons,
    /// spaces, dashes), where edits change how a narinfo reads.
    #[derive(Debug, Clone)]
    enum At {
        Anywhere(proptest::sample::Index),
        Near(proptest::sample::Index, usize),
    }

    fn edit() -> impl Strategy<Value = (proptest::sample::Index, At, Edit)> {
        let byte = prop_oneof![
            any::<u8>(),
            proptest::sample::select(b" \n:-/.,!0123456789abcdfgxyzR".to_vec())
        ];
        let bytes = proptest::collection::vec(byte, 1..5);
        (
            any::<proptest::sample::Index>(),
            prop_oneof![
                any::<proptest::sample::Index>().prop_map(At::Anywhere),
                (any::<proptest::sample::Index>(), 0usize..2).prop_map(|(i, o)| At::Near(i, o)),
            ],
            prop_oneof![
                bytes.clone().prop_map(Edit::Insert),
                (1usize..5).prop_map(Edit::Delete),
                bytes.prop_map(Edit::Replace),
            ],
        )
    }

    fn apply(text: &mut Vec<u8>, at: &At, e: &Edit) {
        let at = match at {
            At::Anywhere(i) => i.index(text.len() + 1),
            At::Near(i, o) => {
                let marks: Vec<usize> = (0..text.len())
                    .filter(|&k| b"\n: -".contains(&text[k]))
                    .collect();
                if marks.is_empty() {
                    0
                } else {
                    marks[i.index(marks.len())] + o
                }
            }
        };
        let at = at.min(text.len());
        match e {
            Edit::Insert(b) => {
                text.splice(at..at, b.iter().copied());
            }
            Edit::Delete(n) => {
                text.drain(at..(at + n).min(text.len()));
            }
            Edit::Replace(b) => {
                let end = (at + b.len()).min(text.len());
                text.splice(at..end, b.iter().copied());
            }
        }
    }

    /// Apply each random edit to the narinfo text it picks.
    fn damage(index: &mut Index, edits: &[(proptest::sample::Index, At, Edit)]) {
        for (which, at, e) in edits {
            let r = which.index(index.narinfos.len());
            apply(&mut index.narinfos[r].text, at, e);
        }
    }

    /// Save `index` (as the current format) under `<dir>/state`; that state directory.
    fn saved(index: &Index, dir: &Path) -> std::path::PathBuf {
        let st = dir.join("state");
        let mut saved = index.clone();
        saved.meta.format_version = crate::index::FORMAT_VERSION;
        saved.save(&st).unwrap();
        st
    }

    /// A sink writing every decision as it comes, as `narward plan` does; with
    /// `fail_after`, it fails ("disk full") after that many objects.
    struct Writing {
        out: std::path::PathBuf,
        w: Option<PlanWriter>,
        fail_after: Option<usize>,
        seen: usize,
    }

    impl Writing {
        fn new(out: &Path) -> Self {
            Writing {
                out: out.to_path_buf(),
                w: None,
                fail_after: None,
                seen: 0,
            }
        }

        fn writer(&mut self) -> Result<&mut PlanWriter> {
            self.w.as_mut().context("decision before begin")
        }
    }

    impl PlanSink for Writing {
        fn begin(&mut self, b: &Begin<'_>) -> Result<()> {
            self.w = Some(PlanWriter::create(&self.out, b.cache, b.paths, b.objects)?);
            Ok(())
        }
        fn path(&mut self, p: PathDecision) -> Result<()> {
            self.writer()?.path(&p)
        }
        fn object(&mut self, o: ObjectDecision) -> Result<()> {
            self.seen += 1;
            if self.fail_after.is_some_and(|n| self.seen > n) {
                bail!("disk full");
            }
            self.writer()?.object(&o)
        }
    }

    fn intact(text: &[u8], token: &str) -> bool {
        text.windows(token.len()).any(|w| w == token.as_bytes())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Damage only keeps more. After random byte edits to random narinfos, the kept set
        /// still contains the closure of the roots (and of the paths kept by rule whose
        /// narinfo was not edited) over every edge whose reference token is still intact
        /// in the referrer's (possibly edited) text; and every NAR whose URL token is
        /// intact in a kept narinfo is kept. An edit that rewrites the only mention of a
        /// hash destroys the information: no reader can recover it, so such edges are not
        /// required.
        #[test]
        fn damaged_narinfos_only_keep_more(s in spec(), edits in proptest::collection::vec(edit(), 1..4)) {
            let (mut index, policy) = build(&s);
            let mut touched = HashSet::new();
            for (which, at, e) in &edits {
                let r = which.index(index.narinfos.len());
                let text = &mut index.narinfos[r].text;
                apply(text, at, e);
                touched.insert(index.narinfos[r].key.clone());
            }
            let plan = compute(&index, &policy, "test", NOW).unwrap();
            let text_of = |i: usize| {
                let key = format!("{}.narinfo", hash20(i, 1));
                index.narinfos.iter().find(|r| r.key == key).map(|r| (r.text.clone(), touched.contains(&key)))
            };
            let mut keep: HashSet<usize> = s.roots.iter().chain(&s.young).copied().collect();
            for i in s.ca.iter().chain(&s.broken) {
                if text_of(*i).is_some_and(|(_, t)| !t) { keep.insert(*i); }
            }
            loop {
                let before = keep.len();
                for (a, b) in &s.edges {
                    if keep.contains(a) && text_of(*a).is_some_and(|(t, _)| intact(&t, &hash20(*b, 1))) {
                        keep.insert(*b);
                    }
                }
                if keep.len() == before { break; }
            }
            for i in &keep {
                prop_assert!(kept(&plan, *i), "path {} must be kept (edits {:?})", i, edits);
            }
            for i in 0..s.n {
                let nar = format!("nar/{}.nar.xz", sha(nar_of(&s, i), 2));
                if kept(&plan, i)
                    && index.object(&nar).is_some()
                    && text_of(i).is_some_and(|(t, _)| intact(&t, &nar))
                {
                    prop_assert!(nar_kept(&plan, &nar), "NAR {} of kept path {}", nar, i);
                }
            }
        }

        /// Apply's re-check and finalize scan a narinfo's text from the snapshot
        /// (`Snapshot::texts`): after random damage, that is byte for byte the text fetched
        /// for every narinfo (printed back from the columns, or kept as a quirk), and no
        /// more texts are kept than needed (a quirk never prints back).
        #[test]
        fn snapshot_texts_are_the_fetched_texts(s in spec(), edits in proptest::collection::vec(edit(), 0..4)) {
            let (mut index, _) = build(&s);
            damage(&mut index, &edits);
            crate::cache_graph::with_snapshot(&index, |snap| -> Result<(), TestCaseError> {
                for (id, rec) in index.narinfos.iter().enumerate() {
                    let texts = snap.texts(id as u32);
                    prop_assert_eq!(texts.first().map(|t| t.to_vec()), Some(rec.text.clone()), "{}", rec.key);
                    if let Some(q) = snap.quirk(id as u32) && q.parse().is_ok() {
                        prop_assert!(snap.graph.narinfo(id as u32).map(|n| n.to_string().into_bytes()) != Some(q.text.clone()));
                    }
                }
                Ok(())
            }).unwrap()?;
        }

        /// Audit reads the same unknown-means-keep rules as the plan (the CacheGraph's
        /// NAR objects, extra NARs and unknown NARs): after random damage, the NARs audit
        /// calls orphans are exactly the ones the plan removes as orphans, so audit never
        /// calls "orphan" a NAR the plan keeps. (Audit used to read a narrower rule of its
        /// own, the `URL:` line of an unparseable text only.)
        #[test]
        fn audit_never_calls_orphan_a_nar_the_plan_keeps(s in spec(), edits in proptest::collection::vec(edit(), 0..4)) {
            let (mut index, policy) = build(&s);
            damage(&mut index, &edits);
            let plan = compute(&index, &policy, "test", NOW).unwrap();
            let audit = crate::audit::audit_index(&index, &[], usize::MAX).unwrap();
            let called: HashSet<String> = audit
                .orphan_nars
                .examples
                .iter()
                .map(|e| e.split(' ').next().unwrap_or_default().to_string())
                .collect();
            let planned: HashSet<String> = plan
                .objects
                .iter()
                .filter(|o| o.reason == Reason::Orphan)
                .map(|o| o.key.clone())
                .collect();
            for k in &called {
                prop_assert!(!nar_kept(&plan, k), "audit calls {} an orphan, the plan keeps it", k);
            }
            prop_assert_eq!(called, planned);
        }
    }

    /// Missing roots were counted per source by cutting `file:line` at its last `:`: a
    /// Hydra GC root's source (`dir/<hash>-<name>`) has none, so its directory always
    /// showed 0 missing.
    #[test]
    fn missing_hydra_gcroots_are_counted_for_their_directory() {
        let spec = Spec {
            n: 2,
            ..Spec::default()
        };
        let (index, _) = build(&spec);
        let d = tempfile::tempdir().unwrap();
        let gc = d.path().join("gcroots");
        std::fs::create_dir(&gc).unwrap();
        let absent = format!("{}-gone", hash20(7, 1));
        for n in [format!("{}-p0", hash20(0, 1)), absent.clone()] {
            std::fs::write(gc.join(n), "").unwrap();
        }
        std::fs::write(
            d.path().join("a.txt"),
            format!(
                "/nix/store/{}-p1\n/nix/store/{}-x\n",
                hash20(1, 1),
                hash20(8, 1)
            ),
        )
        .unwrap();
        let text = "[roots]\nfiles = [\"a.txt\"]\nhydra_gcroots = [\"gcroots\"]\n";
        let policy = Policy::from_str(text, d.path(), "p.toml").unwrap();
        let plan = compute(&index, &policy, "p.toml", NOW).unwrap();
        let r = &plan.header.roots;
        let (a, g) = (d.path().join("a.txt"), gc.display().to_string());
        assert_eq!(
            r.by_source,
            [(a.display().to_string(), 2, 1), (g.clone(), 2, 1)]
        );
        assert_eq!((r.total, r.found, r.missing), (4, 2, 2));
        assert_eq!(
            r.missing_examples,
            [
                format!("/nix/store/{}-x ({}:2)", hash20(8, 1), a.display()),
                format!("/nix/store/{absent} ({g}/{absent})"),
            ]
        );
    }

    /// Issue 9: seed reasons are no longer held in a map per seed (a root's index per path,
    /// a rule's reason asked again when written): a root still wins over a rule, and a
    /// rule's reason is still the rule's.
    #[test]
    fn a_seed_is_kept_for_its_first_root_before_any_rule() {
        let spec = Spec {
            n: 4,
            edges: vec![(0, 3)],
            roots: vec![0, 1],
            young: vec![1, 2],
            ..Spec::default()
        };
        let (index, policy) = build(&spec);
        let plan = compute(&index, &policy, "test", NOW).unwrap();
        let reason = |i: usize| {
            let p = format!("{}-p{i}", hash20(i, 1));
            plan.path(&p).map(|d| d.reason.clone())
        };
        let root = Reason::Root {
            source: "inline".into(),
        };
        assert_eq!(reason(0), Some(root.clone()));
        assert_eq!(reason(1), Some(root));
        assert_eq!(reason(2), Some(Reason::Young));
        let from = StorePathHash::parse(&hash20(0, 1)).unwrap();
        assert_eq!(reason(3), Some(Reason::Reachable { from }));
    }

    /// The derivers' fates are held as two path ids (was two `Option<usize>`): a log
    /// whose deriver has a kept output is kept with it, one whose outputs are all removed
    /// follows `actions.logs`, one of a deriver no path names is kept as unknown.
    #[test]
    fn a_build_log_follows_its_derivers_outputs() {
        let spec = Spec {
            n: 3,
            ..Spec::default()
        };
        let (index, _) = build_with_logs(&spec, &[0, 1, 9]);
        let p0 = format!("/nix/store/{}-p0", hash20(0, 1));
        let text = format!(
            "[roots]\npaths = [\"{p0}\"]\n[keep]\nmin_age_days = 0\n[actions]\nunreachable = \"archive\"\nlogs = \"follow\"\n"
        );
        let policy = Policy::from_str(&text, Path::new("."), "test").unwrap();
        let plan = compute(&index, &policy, "test", NOW).unwrap();
        let log = |i: usize| {
            let o = plan.object(&format!("log/{}", drv(i))).unwrap();
            (o.decision, o.reason.clone())
        };
        assert_eq!(log(0), (Decision::Keep, Reason::OwnerKept { owner: p0 }));
        let owner = format!("/nix/store/{}", drv(1));
        assert_eq!(log(1), (Decision::Archive, Reason::OwnerRemoved { owner }));
        assert_eq!(log(9), (Decision::Keep, Reason::OwnerUnknown));
    }
}
