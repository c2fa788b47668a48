//! The pure core of apply: from a [`Plan`] (and the fresh index, for the re-check) to the
//! ordered program of steps. No files, no tokio.
//!
//! Order rules (docs/apply.md):
//! - **recheck**: [`recheck`] compares every object the plan removes with the fresh listing
//!   (size and ETag) and skips what changed or vanished; a removed path that a narinfo
//!   uploaded (or changed) since the plan references, directly or through other removed
//!   paths, is kept with all its objects; so is a path whose narinfo is skipped; and so
//!   is every object a `file://` symlink staying in the cache reads, through chains.
//! - **hide** before **archive** and **quarantine**: every removed `.narinfo` and `.ls`
//!   leaves the cache area (copied to the archive or quarantine area, then deleted) in
//!   the first phase, so a client never sees a narinfo whose NAR is gone. A NAR's step
//!   carries the narinfo keys of its paths as *guards*: the executor skips it unless each
//!   guard was hidden.
//! - Steps only touch keys the plan removes.

use super::Phase;
use crate::cache::store::Loc;
use crate::cache_graph::{Snapshot, Status};
use crate::plan::{Decision, Plan};
use narward_formats::keys::Category;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// An object the re-check leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Skip {
    pub key: String,
    pub reason: String,
}

/// One step: copy `key` from the cache area to `to` (unless `to` is the key itself, an
/// in-place storage-class change), verify, then delete the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub key: String,
    pub size: u64,
    /// The plan's ETag: the copy is conditional on it.
    pub etag: Option<String>,
    pub to: Loc,
    pub storage_class: Option<String>,
    /// Whether the source is deleted after the verified copy (false for in-place archive).
    pub delete_source: bool,
    /// Narinfo keys that must have been hidden before this step may run.
    pub guards: Vec<String>,
}

/// Ops of one phase, cut in batches: the journal's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub phase: Phase,
    /// Position of the batch in the whole program (the journal's cursor).
    pub seq: u64,
    pub ops: Vec<Op>,
}

/// How the program is laid out for a store.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Archived NARs change storage class at their key (S3 archive in place).
    pub archives_in_place: bool,
    /// The folder of this apply in the quarantine area (`<unix-time>`).
    pub quarantine_stamp: String,
    /// Ops per batch (≤ 1,000, one DeleteObjects request).
    pub batch_size: usize,
}

fn is_hidden_kind(c: Category) -> bool {
    matches!(c, Category::Narinfo | Category::Listing)
}

/// The hash part (32 characters) of a `/nix/store/<hash>-…` path or base name.
fn hash_of(p: &str) -> &str {
    let b = p.rsplit('/').next().unwrap_or(p);
    b.get(..32).unwrap_or(b)
}

/// The store-path hash a `<hash>.narinfo` key names.
fn key_hash(key: &str) -> Option<narward_formats::store_path::StorePathHash> {
    match narward_formats::keys::classify(key) {
        narward_formats::keys::ObjectKind::Narinfo(h) => Some(h),
        _ => None,
    }
}

/// The key of an object in the quarantine area.
pub fn quarantine_key(stamp: &str, key: &str) -> String {
    format!("{stamp}/{key}")
}

/// Re-check the plan against the fresh index (its listing, [`CacheGraph`] and quirks; no
/// narinfo text is read from it): what must not be touched, sorted by key.
///
/// [`CacheGraph`]: crate::cache_graph::CacheGraph
pub fn recheck(plan: &Plan, fresh: &Snapshot<'_>) -> Vec<Skip> {
    let mut skips: BTreeMap<String, String> = BTreeMap::new();
    for o in plan.objects.iter().filter(|o| o.decision != Decision::Keep) {
        match fresh.index.object(&o.key) {
            None => {
                skips.insert(o.key.clone(), "gone from the cache since the plan".into());
            }
            Some(r) if r.size() != o.size || r.etag() != o.etag => {
                skips.insert(
                    o.key.clone(),
                    format!(
                        "changed since the plan (size {} → {}, ETag {:?} → {:?})",
                        o.size,
                        r.size(),
                        o.etag.as_ref().map(ToString::to_string),
                        r.etag_string()
                    ),
                );
            }
            Some(_) => {}
        }
    }
    rescue_referenced(plan, fresh, &mut skips);
    // A narinfo read through a staying link rescues what it names, and so on.
    while rescue_link_targets(plan, fresh.index, &mut skips) {
        rescue_referenced(plan, fresh, &mut skips);
    }
    skips
        .into_iter()
        .map(|(key, reason)| Skip { key, reason })
        .collect()
}

/// Keep every removed path that a narinfo uploaded or changed since the plan (or a
/// narinfo the re-check skips) names, directly or through other removed paths. A
/// narinfo's texts are [`Snapshot::texts`]: the kept quirk text and its earlier texts, or
/// the text printed back from the columns (byte for byte the one fetched). Such a
/// narinfo that could not be read (fetch failed, not indexed) might name any removed
/// path: then every removed object is kept.
fn rescue_referenced(plan: &Plan, fresh: &Snapshot<'_>, skips: &mut BTreeMap<String, String>) {
    let removed_nars: HashSet<&str> = plan
        .objects
        .iter()
        .filter(|o| o.decision != Decision::Keep && o.category == Category::Nar)
        .map(|o| o.key.as_str())
        .collect();
    let mut queue: Vec<(String, String)> = Vec::new();
    let g = fresh.graph;
    for id in 0..g.len() as u32 {
        let key = format!("{}.narinfo", g.hash(id));
        let listed = fresh.index.object(&key);
        let planned_unchanged = plan
            .object(&key)
            .is_some_and(|o| listed.is_some_and(|n| n.etag() == o.etag && o.size == n.size()));
        if planned_unchanged && !skips.contains_key(&key) {
            continue;
        }
        let why = format!("named by {key}");
        queue.push((key, why));
    }
    let mut owned: HashMap<&str, Vec<&str>> = HashMap::new();
    for o in &plan.objects {
        if let Some(h) = owner_hash(o) {
            owned.entry(h).or_default().push(o.key.as_str());
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    while let Some((narinfo_key, why)) = queue.pop() {
        let Some(id) = key_hash(&narinfo_key).and_then(|h| g.id(&h)) else {
            continue;
        };
        if matches!(g.status(id), Status::FetchFailed | Status::NotIndexed) {
            // Its references are unknown: any removed path might be one.
            let why = format!("{why}, which could not be read ({})", g.why(id));
            for o in plan.objects.iter().filter(|o| o.decision != Decision::Keep) {
                skips.entry(o.key.clone()).or_insert_with(|| why.clone());
            }
            return;
        }
        for text in fresh.texts(id) {
            for tok in tokens(&text) {
                if removed_nars.contains(tok) {
                    skips.entry(tok.to_string()).or_insert_with(|| why.clone());
                }
                let Some(p) = plan.path(tok).filter(|p| p.decision != Decision::Keep) else {
                    continue;
                };
                let h = hash_of(&p.path).to_string();
                if !seen.insert(h.clone()) {
                    continue;
                }
                let why = format!("{}: {why}", p.path);
                for k in path_keys(&owned, &h, p.nar_key.as_deref()) {
                    skips.entry(k).or_insert_with(|| why.clone());
                }
                queue.push((format!("{h}.narinfo"), why));
            }
        }
    }
}

/// Keep every object that a `file://` symlink staying in the cache reads (the fresh
/// listing's [`crate::model::ObjectRecord::link_target`], through chains of links): a link
/// the plan keeps, the re-check skips, or that appeared since the plan. Whether a
/// narinfo was newly skipped (its references must be rescued too).
fn rescue_link_targets(
    plan: &Plan,
    fresh: &crate::index::Index,
    skips: &mut BTreeMap<String, String>,
) -> bool {
    let stays = |key: &str, skips: &BTreeMap<String, String>| {
        skips.contains_key(key)
            || plan
                .object(key)
                .is_none_or(|o| o.decision == Decision::Keep)
    };
    let mut todo: Vec<crate::listing::ObjectRef<'_>> = fresh
        .objects
        .iter()
        .filter(|o| o.link_target().is_some() && stays(&o.key(), skips))
        .collect();
    let mut seen: HashSet<usize> = todo.iter().map(|o| o.index()).collect();
    let mut narinfo_skipped = false;
    while let Some(link) = todo.pop() {
        let Some(t) = link.link_target() else {
            continue;
        };
        if !stays(t, skips) {
            let why = format!("read through the symlink {}, which stays", link.key());
            skips.insert(t.to_string(), why);
            narinfo_skipped |= t.ends_with(".narinfo");
        }
        if let Some(next) = fresh.object(t).filter(|n| seen.insert(n.index())) {
            todo.push(next);
        }
    }
    narinfo_skipped
}

/// Every object key of a removed path: narinfo, `.ls`, NAR, and objects it owns.
fn path_keys(owned: &HashMap<&str, Vec<&str>>, hash: &str, nar: Option<&str>) -> Vec<String> {
    let mut v = vec![format!("{hash}.narinfo"), format!("{hash}.ls")];
    v.extend(nar.map(str::to_string));
    v.extend(owned.get(hash).into_iter().flatten().map(|k| k.to_string()));
    v
}

fn owner_hash(o: &crate::plan::ObjectDecision) -> Option<&str> {
    match &o.reason {
        crate::plan::Reason::OwnerRemoved { owner } => Some(hash_of(owner)),
        _ => None,
    }
}

/// Lenient tokens of a text: runs of `[a-z0-9]` (store path hashes) and white-space
/// separated words (NAR keys). Reading leniently keeps more, never less.
fn tokens(text: &[u8]) -> impl Iterator<Item = &str> {
    let t = std::str::from_utf8(text).unwrap_or("");
    let words = t.split(|c: char| c.is_whitespace());
    let alnum = t
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() == 32);
    words.chain(alnum).filter(|w| !w.is_empty())
}

/// The program of an apply: the plan's removed objects minus `skips`, in phases hide →
/// archive → quarantine, each cut in batches of `layout.batch_size` in key order.
///
/// Batches are computed lazily from the plan's ordered list of objects ([`Program::batches`]),
/// so only one batch of steps is in memory at a time; the journal's cursor is a batch's
/// `seq`. (The NAR → narinfo guard map is as large as the removed paths.)
pub struct Program<'a> {
    plan: &'a Plan,
    skips: &'a BTreeSet<String>,
    layout: Layout,
    guards: HashMap<&'a str, Vec<String>>,
}

impl<'a> Program<'a> {
    pub fn new(plan: &'a Plan, skips: &'a BTreeSet<String>, layout: &Layout) -> Program<'a> {
        Program {
            plan,
            skips,
            layout: layout.clone(),
            guards: nar_guards(plan),
        }
    }

    /// The step of one object of the plan, and its phase; `None` when it is not touched.
    fn op(&self, o: &crate::plan::ObjectDecision) -> Option<(Phase, Op)> {
        if o.decision == Decision::Keep || self.skips.contains(&o.key) {
            return None;
        }
        let stamp = &self.layout.quarantine_stamp;
        let (phase, to, class, delete_source) = if is_hidden_kind(o.category) {
            let to = match o.decision {
                Decision::Archive => Loc::archive(o.key.clone()),
                _ => Loc::quarantine(quarantine_key(stamp, &o.key)),
            };
            (Phase::Hide, to, None, true)
        } else if o.decision == Decision::Archive {
            // Archived objects with no storage class to move to stay where they are,
            // hidden with their path (plan: too small to pay back a transition).
            let class = o.transition_to.clone()?;
            if self.layout.archives_in_place {
                (
                    Phase::Archive,
                    Loc::cache(o.key.clone()),
                    Some(class),
                    false,
                )
            } else {
                (
                    Phase::Archive,
                    Loc::archive(o.key.clone()),
                    Some(class),
                    true,
                )
            }
        } else {
            let to = Loc::quarantine(quarantine_key(stamp, &o.key));
            (Phase::Quarantine, to, None, true)
        };
        let mut guards: Vec<String> = self.guards.get(o.key.as_str()).cloned().unwrap_or_default();
        if let Some(h) = owner_hash(o) {
            guards.push(format!("{h}.narinfo"));
        }
        if o.category == Category::Listing {
            guards.clear();
        }
        let op = Op {
            key: o.key.clone(),
            size: o.size,
            etag: o.etag.as_ref().map(ToString::to_string),
            to,
            storage_class: class,
            delete_source,
            guards,
        };
        Some((phase, op))
    }

    /// Steps per phase (for progress bars and reports).
    pub fn counts(&self) -> [u64; 3] {
        let mut c = [0u64; 3];
        for (p, _) in self.plan.objects.iter().filter_map(|o| self.op(o)) {
            c[p as usize] += 1;
        }
        c
    }

    /// Every batch, in order, computed as it is asked for.
    pub fn batches(&self) -> impl Iterator<Item = Batch> + '_ {
        let size = self.layout.batch_size.clamp(1, 1000);
        Phase::ALL
            .into_iter()
            .flat_map(move |phase| {
                let mut ops = self
                    .plan
                    .objects
                    .iter()
                    .filter_map(move |o| self.op(o))
                    .filter(move |(p, _)| *p == phase)
                    .map(|(_, op)| op);
                std::iter::from_fn(move || {
                    let chunk: Vec<Op> = ops.by_ref().take(size).collect();
                    (!chunk.is_empty()).then_some((phase, chunk))
                })
            })
            .scan(0u64, |n, (phase, ops)| {
                let b = Batch {
                    phase,
                    seq: *n,
                    ops,
                };
                *n += 1;
                Some(b)
            })
    }
}

/// The whole program at once (tests and small plans).
pub fn program(plan: &Plan, skips: &BTreeSet<String>, layout: &Layout) -> Vec<Batch> {
    Program::new(plan, skips, layout).batches().collect()
}

/// NAR key → narinfo keys of the removed paths that use it.
fn nar_guards(plan: &Plan) -> HashMap<&str, Vec<String>> {
    let mut m: HashMap<&str, Vec<String>> = HashMap::new();
    for p in plan.paths.iter().filter(|p| p.decision != Decision::Keep) {
        if let Some(k) = &p.nar_key {
            m.entry(k.as_str())
                .or_default()
                .push(format!("{}.narinfo", hash_of(&p.path)));
        }
    }
    m
}

#[cfg(test)]
mod tests;
