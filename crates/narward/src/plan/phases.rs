//! The phases of [`super::compute_with_graph`], one function each: check the cache graph
//! against the listing ([`read_graph`]), find the roots and seeds ([`find_roots`]), decide
//! every path ([`decide_paths`]), find the owners of the other objects ([`Owners::find`]),
//! decide every object ([`decide_objects`]). Decisions go to a [`PlanSink`] as they are
//! made; nothing per path is copied out of the graph. Pure, like the rest of planning.

use super::{
    Decision, ObjectDecision, PathDecision, PlanSink, Reason, RestoreItem, RootStats, Summary,
    archive_transition, count_archived_nar, is_archive_class,
};
use crate::cache_graph::{CacheGraph, Pages, Status};
use crate::graph::NONE;
use crate::listing::{Etag, Listing, ObjectRef};
use crate::model::FetchedRecord;
use crate::policy::{Follow, Policy, RootSources, Roots, Unreachable};
use anyhow::Result;
use narward_formats::keys::{self, Category, ObjectKind};
use narward_formats::store_path::STORE_DIR;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

const DAY: i64 = 86_400;

/// What the phases ask of the policy at the time `now`.
pub(super) struct Ctx<'a> {
    pub policy: &'a Policy,
    pub now: i64,
    /// Last read per object key (the log keys' cache prefix stripped).
    pub last_access: Cow<'a, HashMap<String, i64>>,
    /// Derivers are only collected when the cache has build logs (their only use).
    pub want_derivers: bool,
}

impl Ctx<'_> {
    fn young(&self, o: ObjectRef<'_>) -> bool {
        let min_age = self.policy.file.keep.min_age_days as i64;
        o.last_modified()
            .is_some_and(|t| t > self.now - min_age * DAY)
    }

    fn recent(&self, o: ObjectRef<'_>, days: u32) -> bool {
        o.last_modified()
            .is_some_and(|t| t >= self.now - days as i64 * DAY)
    }

    fn accessed(&self, key: &str, days: u32) -> bool {
        self.last_access
            .get(key)
            .is_some_and(|&t| t >= self.now - days as i64 * DAY)
    }

    /// What `unreachable` paths become.
    pub fn removed_decision(&self) -> Decision {
        match self.policy.file.actions.unreachable {
            Unreachable::Keep => Decision::Keep,
            Unreachable::Archive => Decision::Archive,
            Unreachable::Delete => Decision::Delete,
        }
    }

    /// Why a parseable narinfo is a seed of the kept set, if it is: it cannot be taken at
    /// its word (`doubt`), or a keep rule holds for it or its objects (its narinfo and
    /// NAR objects `objs`, its NAR's key `nar_key`).
    fn seed(
        &self,
        ca: bool,
        name: &str,
        doubt: Option<String>,
        objs: [Option<ObjectRef<'_>>; 2],
        nar_key: &str,
    ) -> Option<Reason> {
        let k = &self.policy.file.keep;
        let any = |f: &dyn Fn(ObjectRef<'_>) -> bool| objs.iter().flatten().any(|o| f(*o));
        if let Some(why) = doubt {
            Some(Reason::Unverifiable { why })
        } else if any(&|o| self.young(o)) {
            Some(Reason::Young)
        } else if k.content_addressed && ca {
            Some(Reason::ContentAddressed)
        } else if self.policy.name_kept(name) {
            Some(Reason::NameMatch)
        } else if k
            .uploaded_within_days
            .is_some_and(|d| any(&|o| self.recent(o, d)))
        {
            Some(Reason::UploadedRecently)
        } else if k.accessed_within_days.is_some_and(|d| {
            // The narinfo's key is printed only when the rule asks.
            self.accessed(nar_key, d) || objs[0].is_some_and(|o| self.accessed(&o.key(), d))
        }) {
            Some(Reason::AccessedRecently)
        } else {
            None
        }
    }
}

/// The graph, checked against the listing. Nothing per path is copied out of it: names,
/// NAR keys and sizes are read from the graph when a decision is written.
pub(super) struct Streamed<'g> {
    pub graph: CacheGraph<'g>,
    /// Per path id: the index of its narinfo object in the listing.
    pub narinfo_obj: Vec<u32>,
    /// (path id, NAR object) pairs beyond [`CacheGraph::nar_object`]: every NAR an
    /// unparseable or earlier narinfo text names is used by that path.
    pub extra_nars: Vec<(u32, u32)>,
    pub unparseable: u64,
    /// Some narinfo's NAR is unknown: orphan NARs might be it.
    pub unknown_urls: bool,
    /// Let go of the mapped column pages each phase is done with.
    pub pages: Pages<'g>,
}

/// Phase 1: the [`CacheGraph`] of the same generation as `objs` (the unknown-means-keep
/// rules were applied when it was built), checked against the listing.
///
/// # Errors
/// A graph that does not belong to this listing.
pub(super) fn read_graph<'g>(
    objs: &Listing,
    graph: CacheGraph<'g>,
    pages: Pages<'g>,
) -> Result<Streamed<'g>> {
    let narinfo_obj: Vec<u32> = objs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((i, o.narinfo_hash()?)))
        .enumerate()
        .map(|(id, (i, h))| {
            (graph.len() > id && graph.hash(id as u32) == h && i <= u32::MAX as usize)
                .then_some(i as u32)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the index columns do not match its listing at {}",
                        objs.at(i).key()
                    )
                })
        })
        .collect::<Result<_>>()?;
    if narinfo_obj.len() != graph.len() || graph.objects() != objs.len() as u64 {
        anyhow::bail!("the index columns do not match its listing (path or object count)");
    }
    let mut s = Streamed {
        narinfo_obj,
        extra_nars: Vec::new(),
        unparseable: graph.unparseable(),
        unknown_urls: false,
        graph,
        pages,
    };
    for id in 0..s.graph.len() as u32 {
        s.unknown_urls |= s.graph.nar_unknown(id);
        s.extra_nars
            .extend(s.graph.extra_nars(id).iter().map(|&k| (id, k)));
        s.pages.scanned(id);
    }
    s.pages.let_go();
    crate::progress::phase("plan: graph loaded");
    Ok(s)
}

impl<'g> Streamed<'g> {
    fn parsed(&self, id: u32) -> bool {
        self.graph.status(id).parsed()
    }

    /// The key of the path's NAR: the one its URL names, or for an unparseable narinfo
    /// the listed NAR its text names.
    pub fn nar_key<'a>(&self, objs: &'a Listing, id: u32) -> Option<Cow<'a, str>>
    where
        'g: 'a,
    {
        if self.parsed(id) {
            Some(Cow::Borrowed(keys::nar_key_for_url(self.graph.url(id))))
        } else {
            let k = self.graph.nar_object(id)?;
            objs.get(k as usize)
                .map(|o| Cow::Owned(o.key().to_string()))
        }
    }

    pub fn nar_size(&self, id: u32) -> u64 {
        if self.parsed(id) {
            self.graph.nar_size(id)
        } else {
            0
        }
    }

    pub fn file_size(&self, id: u32) -> Option<u64> {
        self.parsed(id).then(|| self.graph.file_size(id)).flatten()
    }

    /// The deriver, when the logs need it and the narinfo can be taken at its word.
    fn deriver(&self, ctx: &Ctx<'_>, id: u32) -> Option<&'g str> {
        (ctx.want_derivers && self.graph.status(id) == Status::Parsed)
            .then(|| self.graph.deriver(id))
            .flatten()
            .filter(|d| *d != "unknown-deriver")
    }

    /// Why the path is a seed of the kept set, if it is (the policy's roots aside).
    fn seed(&self, ctx: &Ctx<'_>, objs: &Listing, id: u32) -> Option<Reason> {
        let g = &self.graph;
        let status = g.status(id);
        if !status.parsed() {
            return Some(Reason::Unparseable {
                why: g.why(id).to_string(),
            });
        }
        let doubt = (status == Status::Doubtful).then(|| g.why(id).to_string());
        let narinfo = objs.get(self.narinfo_obj[id as usize] as usize);
        let nar = g.nar_object(id).and_then(|i| objs.get(i as usize));
        let nar_key = keys::nar_key_for_url(g.url(id));
        ctx.seed(g.ca(id), g.name(id), doubt, [narinfo, nar], nar_key)
    }

    /// The base name `<hash>-<name>` of a path (the hash alone when the name is unknown).
    pub fn base_of(&self, id: usize) -> String {
        let id = id as u32;
        let h = self.graph.hash(id).to_string();
        let name = if self.parsed(id) {
            self.graph.name(id)
        } else {
            ""
        };
        if name.is_empty() {
            h
        } else {
            format!("{h}-{name}")
        }
    }
}

/// Phase 2: the seeds of the kept set (the `roots`, then paths a rule keeps), per path
/// the first root naming it (its index in `roots`, or [`NONE`]: a rule's reason is
/// asked again when the decision is written, [`Verdicts::of`]), and the root statistics.
pub(super) fn find_roots(
    ctx: &Ctx<'_>,
    objs: &Listing,
    s: &Streamed<'_>,
    roots_in: &Roots,
) -> (Vec<u32>, Vec<u32>, RootStats) {
    let mut seeds: Vec<u32> = Vec::new();
    let mut root_of = vec![NONE; s.graph.len()];
    let mut roots = RootStats {
        total: roots_in.len() as u64,
        ..Default::default()
    };
    let mut missing_by_source = vec![0u64; roots_in.sources().len()];
    for (i, h) in roots_in.hashes().iter().enumerate() {
        if let Some(id) = s.graph.id(h) {
            roots.found += 1;
            seeds.push(id);
            if let Some(r) = root_of.get_mut(id as usize)
                && *r == NONE
            {
                // Fewer than u32::MAX roots: `Roots::push` refuses more.
                *r = i as u32;
            }
            continue;
        }
        roots.missing += 1;
        let Some(r) = roots_in.get(i) else {
            continue;
        };
        if let Some(m) = missing_by_source.get_mut(r.source_index) {
            *m += 1;
        }
        if roots.missing_examples.len() < 1000 {
            roots
                .missing_examples
                .push(format!("{} ({})", r.path(), r.source()));
        }
    }
    roots.by_source = roots_in
        .sources()
        .iter()
        .zip(missing_by_source)
        .map(|(src, m)| (src.label.clone(), src.count as u64, m))
        .collect();
    for id in 0..s.graph.len() as u32 {
        if s.seed(ctx, objs, id).is_some() {
            seeds.push(id);
        }
        s.pages.scanned(id);
    }
    s.pages.let_go();
    (seeds, root_of, roots)
}

/// Every path's decision, from the closure's `parent` array: computed again where needed
/// instead of held per path.
pub(super) struct Verdicts<'a> {
    pub s: &'a Streamed<'a>,
    pub parent: &'a [u32],
    /// Per path: the first policy root naming it, or [`NONE`] ([`find_roots`]).
    pub root_of: &'a [u32],
    /// Where each root came from.
    pub sources: &'a RootSources,
    pub ctx: &'a Ctx<'a>,
    pub objs: &'a Listing,
    pub removed: Decision,
}

impl Verdicts<'_> {
    /// Why a seed is kept: its first root, else the rule that made it a seed.
    fn reason_of_seed(&self, id: u32) -> Reason {
        let root = self.root_of.get(id as usize).copied().unwrap_or(NONE);
        if let Some(source) = (root != NONE)
            .then(|| self.sources.source(root as usize))
            .flatten()
        {
            return Reason::Root { source };
        }
        self.s
            .seed(self.ctx, self.objs, id)
            .unwrap_or(Reason::OwnerUnknown)
    }

    pub fn kept(&self, id: usize) -> bool {
        self.parent.get(id).is_some_and(|&p| p != NONE)
    }

    /// The decision and reason of the path `id`.
    pub fn of(&self, id: u32) -> (Decision, Reason) {
        match self.parent.get(id as usize).copied().unwrap_or(NONE) {
            NONE if self.removed == Decision::Keep => (Decision::Keep, Reason::PolicyKeep),
            NONE => (self.removed, Reason::Unreachable),
            par if par == id => (Decision::Keep, self.reason_of_seed(id)),
            par => (
                Decision::Keep,
                Reason::Reachable {
                    from: self.s.graph.hash(par),
                },
            ),
        }
    }
}

/// Phase 3: every path's decision, in graph-id order (so by base name), handed to `sink`
/// as it is made and counted in `summary`; returns the restore set (kept paths whose NAR
/// is in an archive class), in the same order.
///
/// # Errors
/// The sink's.
pub(super) fn decide_paths(
    v: &Verdicts<'_>,
    objs: &Listing,
    summary: &mut Summary,
    sink: &mut (impl PlanSink + ?Sized),
) -> Result<Vec<RestoreItem>> {
    let s = v.s;
    let mut kept_by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut restore = Vec::new();
    for id in 0..s.graph.len() as u32 {
        let (decision, reason) = v.of(id);
        let file_size = s.file_size(id);
        summary
            .paths
            .entry(decision)
            .or_default()
            .add(file_size.unwrap_or(0));
        let nar_key = s.nar_key(objs, id);
        let path = s.base_of(id as usize);
        if decision == Decision::Keep {
            *kept_by_reason.entry(reason.kind()).or_default() += 1;
            restore.extend(restore_item(
                objs,
                s.graph.nar_object(id),
                &path,
                nar_key.as_deref(),
            ));
        }
        sink.path(PathDecision {
            path,
            decision,
            reason,
            nar_key: nar_key.map(String::from),
            nar_size: s.nar_size(id),
            file_size,
        })?;
        s.pages.scanned(id);
    }
    s.pages.let_go();
    summary.kept_by_reason = kept_by_reason
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    for r in &restore {
        summary.restore.add(r.size);
    }
    Ok(restore)
}

/// The restore-set entry of a kept path, if its NAR (the listed object `nar_obj` when its
/// key is `nar_key`, else found in `objs`, sorted by key) is in GLACIER or DEEP_ARCHIVE.
fn restore_item(
    objs: &Listing,
    nar_obj: Option<u32>,
    path: &str,
    nar_key: Option<&str>,
) -> Option<RestoreItem> {
    let k = nar_key?;
    let listed = nar_obj
        .and_then(|i| objs.get(i as usize))
        .filter(|o| o.key_is(k));
    let o = match listed {
        Some(o) => o,
        None => objs.get(objs.find(k)?)?,
    };
    let class = o.listed_storage_class()?;
    is_archive_class(class).then(|| RestoreItem {
        path: path.to_string(),
        nar_key: o.key().to_string(),
        storage_class: class.to_string(),
        size: o.size(),
        etag: o.etag_string(),
    })
}

/// Phase 4: who uses each NAR, debuginfo link and build log.
pub(super) struct Owners<'a> {
    /// Per listed object (used for NARs): a kept user if it has one, else any user, else
    /// NONE (whether the user is kept is [`Verdicts::kept`]).
    pub nar_user: Vec<u32>,
    /// Per deriver: (a kept output, any output), NONE for none.
    pub drv_fate: HashMap<&'a str, (u32, u32)>,
    /// debuginfo key → (its NAR's key, the NAR's index in the listing).
    pub debuginfo_target: HashMap<&'a str, (String, usize)>,
}

impl<'a> Owners<'a> {
    pub fn find(
        ctx: &Ctx<'_>,
        v: &Verdicts<'a>,
        objs: &Listing,
        debuginfo: &'a [FetchedRecord],
    ) -> Owners<'a> {
        let s = v.s;
        let mut nar_user: Vec<u32> = vec![NONE; objs.len()];
        let mut drv_fate: HashMap<&str, (u32, u32)> = HashMap::new();
        let mut used_by = |k: u32, id: usize| {
            let Some(u) = nar_user.get_mut(k as usize) else {
                return;
            };
            if *u == NONE || (v.kept(id) && !v.kept(*u as usize)) {
                *u = id as u32;
            }
        };
        for id in 0..s.graph.len() {
            if let Some(k) = s.graph.nar_object(id as u32) {
                used_by(k, id);
            }
            if let Some(d) = s.deriver(ctx, id as u32) {
                let e = drv_fate.entry(d).or_insert((NONE, NONE));
                if v.kept(id) && e.0 == NONE {
                    e.0 = id as u32;
                }
                if e.1 == NONE {
                    e.1 = id as u32;
                }
            }
        }
        for &(id, k) in &s.extra_nars {
            used_by(k, id as usize);
        }
        let debuginfo_target = debuginfo
            .iter()
            .filter_map(|d| {
                let v: serde_json::Value = serde_json::from_slice(&d.text).ok()?;
                let a = v
                    .get("archive")?
                    .as_str()?
                    .trim_start_matches("../")
                    .to_string();
                let i = objs.find(&a)?;
                Some((d.key.as_str(), (a, i)))
            })
            .collect();
        Owners {
            nar_user,
            drv_fate,
            debuginfo_target,
        }
    }
}

/// What phase 5 reads.
pub(super) struct ObjectInputs<'a> {
    pub ctx: &'a Ctx<'a>,
    pub v: &'a Verdicts<'a>,
    pub owners: &'a Owners<'a>,
}

impl ObjectInputs<'_> {
    /// An object whose owner's decision is `owner_decision`, under the action `f`.
    fn follow(&self, f: Follow, owner_decision: Decision, owner: String) -> (Decision, Reason) {
        match (f, owner_decision) {
            (_, Decision::Keep) => (Decision::Keep, Reason::OwnerKept { owner }),
            (Follow::Keep, _) => (Decision::Keep, Reason::PolicyKeep),
            (Follow::Delete, _) => (Decision::Delete, Reason::OwnerRemoved { owner }),
            (Follow::Follow, d) => (d, Reason::OwnerRemoved { owner }),
        }
    }

    /// The decision for a NAR object some narinfo points to.
    fn nar_decision(&self, oi: usize) -> (Decision, Reason) {
        match self.owners.nar_user[oi] {
            u if u != NONE && self.v.kept(u as usize) => (
                Decision::Keep,
                Reason::NarOfKeptPath {
                    path: self.v.s.graph.hash(u),
                },
            ),
            _ if self.v.removed == Decision::Keep => (Decision::Keep, Reason::PolicyKeep),
            _ => (self.v.removed, Reason::Unreachable),
        }
    }

    /// A NAR no parseable narinfo names as its own.
    fn nar(&self, oi: usize) -> (Decision, Reason) {
        match self.owners.nar_user[oi] {
            u if u != NONE => self.nar_decision(oi),
            _ if self.v.s.unknown_urls => (Decision::Keep, Reason::MightBelongToUnknown),
            _ => match self.ctx.policy.file.actions.orphan_nars {
                Follow::Keep => (Decision::Keep, Reason::PolicyKeep),
                Follow::Delete => (Decision::Delete, Reason::Orphan),
                Follow::Follow if self.v.removed == Decision::Keep => {
                    (Decision::Keep, Reason::PolicyKeep)
                }
                Follow::Follow => (self.v.removed, Reason::Orphan),
            },
        }
    }

    /// The decision for one object of kind `kind` at index `oi` of the listing.
    fn decide(&self, o: ObjectRef<'_>, oi: usize, kind: &ObjectKind<'_>) -> (Decision, Reason) {
        if self.ctx.young(o) {
            return (Decision::Keep, Reason::Young);
        }
        let actions = &self.ctx.policy.file.actions;
        let graph = &self.v.s.graph;
        match kind {
            ObjectKind::Narinfo(h) => match graph.id(h) {
                Some(id) => self.v.of(id),
                // Listed but never fetched into the index: unknown.
                None => (Decision::Keep, Reason::OwnerUnknown),
            },
            ObjectKind::Nar { .. } => self.nar(oi),
            ObjectKind::Listing(h) => match graph.id(h) {
                Some(id) => {
                    let id = id as usize;
                    let d = if self.v.kept(id) {
                        Decision::Keep
                    } else {
                        self.v.removed
                    };
                    let owner = format!("{STORE_DIR}/{}", self.v.s.base_of(id));
                    self.follow(actions.listings, d, owner)
                }
                None => (Decision::Keep, Reason::OwnerUnknown),
            },
            ObjectKind::DebugInfo(_) => match self.owners.debuginfo_target.get(o.key().as_str()) {
                Some((t, ti)) if self.owners.nar_user[*ti] != NONE => {
                    let (d, _) = self.nar_decision(*ti);
                    self.follow(actions.debuginfo, d, t.clone())
                }
                _ => (Decision::Keep, Reason::OwnerUnknown),
            },
            ObjectKind::Log(drv) => match self.owners.drv_fate.get(drv) {
                Some(&(k, _)) if k != NONE => (
                    Decision::Keep,
                    Reason::OwnerKept {
                        owner: format!("{STORE_DIR}/{}", self.v.s.base_of(k as usize)),
                    },
                ),
                Some(&(_, any)) if any != NONE => {
                    self.follow(actions.logs, self.v.removed, format!("{STORE_DIR}/{drv}"))
                }
                _ => (Decision::Keep, Reason::OwnerUnknown),
            },
            _ => (Decision::Keep, Reason::NotManaged),
        }
    }
}

/// What kept `file://` symlinks read ([`ObjectRecord::link_target`]): listing index →
/// the reason it is kept, and whether some kept link reads a key not in the listing.
#[derive(Default)]
struct LinkKeep {
    targets: HashMap<usize, Reason>,
    /// A kept link's target is not listed: any NAR might be what it reads.
    unlisted: Option<Reason>,
}

/// Every object a kept link reads, through chains of links (cycle safe: each object is
/// entered once). Links are rare (`file://` only), so their own decisions are computed
/// here once more.
fn kept_link_targets(inp: &ObjectInputs<'_>, objs: &Listing) -> LinkKeep {
    let mut k = LinkKeep::default();
    let mut todo: Vec<usize> = objs
        .iter()
        .enumerate()
        .filter(|(oi, o)| {
            o.link_target().is_some() && inp.decide(*o, *oi, &o.key().kind()).0 == Decision::Keep
        })
        .map(|(oi, _)| oi)
        .collect();
    let mut seen: std::collections::HashSet<usize> = todo.iter().copied().collect();
    while let Some(oi) = todo.pop() {
        let link = objs.at(oi);
        let Some(t) = link.link_target() else {
            continue;
        };
        let reason = Reason::LinkTarget {
            link: link.key().to_string(),
        };
        match objs.find(t) {
            Some(ti) => {
                k.targets.entry(ti).or_insert(reason);
                if seen.insert(ti) {
                    todo.push(ti);
                }
            }
            None => {
                k.unlisted.get_or_insert(reason);
            }
        }
    }
    k
}

/// Phase 5: every object's decision, in listing order, handed to `sink` as it is made and
/// counted in `summary`. An object a kept symlink reads is kept with it
/// ([`kept_link_targets`]).
///
/// # Errors
/// The sink's.
pub(super) fn decide_objects(
    inp: &ObjectInputs<'_>,
    objs: &Listing,
    summary: &mut Summary,
    sink: &mut (impl PlanSink + ?Sized),
) -> Result<()> {
    let p = &inp.ctx.policy.file;
    let links = kept_link_targets(inp, objs);
    for (oi, o) in objs.iter().enumerate() {
        let key = o.key();
        let kind = key.kind();
        let (mut decision, mut reason) = inp.decide(o, oi, &kind);
        if decision != Decision::Keep {
            let nar = kind.category() == Category::Nar;
            if let Some(r) = links
                .targets
                .get(&oi)
                .or(links.unlisted.as_ref().filter(|_| nar))
            {
                (decision, reason) = (Decision::Keep, r.clone());
            }
        }
        let category = kind.category();
        let transition_to = archive_transition(o, decision, category, p);
        if decision == Decision::Archive && category == Category::Nar {
            count_archived_nar(summary, o, transition_to.is_some());
        }
        summary
            .objects
            .entry(decision)
            .or_default()
            .entry(category)
            .or_default()
            .add(o.size());
        sink.object(ObjectDecision {
            key: key.to_string(),
            category,
            size: o.size(),
            etag: o.etag().map(Etag::into_owned),
            last_modified: o.last_modified(),
            storage_class: o.listed_storage_class().map(str::to_string),
            decision,
            transition_to,
            reason,
        })?;
    }
    Ok(())
}
