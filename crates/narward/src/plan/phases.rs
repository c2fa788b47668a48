//! The phases of [`super::compute_with_graph`], one function each: take the nodes and
//! seeds from the cache graph ([`read_graph`]), find the roots ([`find_roots`]), decide every path
//! ([`decide_paths`]), find the owners of the other objects ([`Owners::find`]), decide
//! every object ([`decide_objects`]). Pure, like the rest of planning.

use super::{
    Decision, Node, ObjectDecision, PathDecision, Reason, RootStats, Summary, archive_transition,
    count_archived_nar,
};
use crate::cache_graph::{CacheGraph, Status};
use crate::graph::NONE;
use crate::model::{FetchedRecord, ObjectRecord};
use crate::policy::{Follow, Policy, Unreachable};
use anyhow::Result;
use narward_formats::keys::{self, Category, ObjectKind};
use narward_formats::store_path::STORE_DIR;
use std::borrow::Cow;
use std::collections::HashMap;

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
    fn young(&self, o: &ObjectRecord) -> bool {
        let min_age = self.policy.file.keep.min_age_days as i64;
        o.last_modified
            .is_some_and(|t| t > self.now - min_age * DAY)
    }

    fn recent(&self, o: &ObjectRecord, days: u32) -> bool {
        o.last_modified
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
    /// its word (`doubt`), or a keep rule holds for it or its objects.
    fn seed(
        &self,
        ca: bool,
        name: &str,
        doubt: Option<String>,
        objs: [Option<&ObjectRecord>; 2],
        keys: [&str; 2],
    ) -> Option<Reason> {
        let k = &self.policy.file.keep;
        let any = |f: &dyn Fn(&ObjectRecord) -> bool| objs.iter().flatten().any(|o| f(o));
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
        } else if k
            .accessed_within_days
            .is_some_and(|d| keys.iter().any(|key| self.accessed(key, d)))
        {
            Some(Reason::AccessedRecently)
        } else {
            None
        }
    }
}

/// The graph and the nodes.
pub(super) struct Streamed<'g> {
    pub graph: CacheGraph<'g>,
    pub nodes: Vec<Node>,
    /// NAR keys apart from the nodes: they move into the path decisions without a copy.
    pub nar_keys: Vec<Option<Box<str>>>,
    /// (path id, NAR object) pairs beyond `Node::nar_obj`: every NAR an unparseable or
    /// earlier narinfo text names is used by that path.
    pub extra_nars: Vec<(u32, u32)>,
    pub unparseable: u64,
    /// Some narinfo's NAR is unknown: orphan NARs might be it.
    pub unknown_urls: bool,
}

/// Phase 1: the nodes, from the [`CacheGraph`] of the same generation as `objs` (the
/// unknown-means-keep rules were applied when it was built); only the policy's seeds are
/// decided here.
///
/// # Errors
/// A graph that does not belong to this listing.
pub(super) fn read_graph<'g>(
    ctx: &Ctx<'_>,
    objs: &[ObjectRecord],
    graph: CacheGraph<'g>,
) -> Result<Streamed<'g>> {
    let narinfo_objs: Vec<usize> = objs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match keys::classify(&o.key) {
            ObjectKind::Narinfo(h) => Some((i, h)),
            _ => None,
        })
        .enumerate()
        .map(|(id, (i, h))| {
            (graph.len() > id && graph.hash(id as u32) == h)
                .then_some(i)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the index columns do not match its listing at {}",
                        objs[i].key
                    )
                })
        })
        .collect::<Result<_>>()?;
    if narinfo_objs.len() != graph.len() || graph.objects() != objs.len() as u64 {
        anyhow::bail!("the index columns do not match its listing (path or object count)");
    }
    let mut s = Streamed {
        nodes: Vec::with_capacity(graph.len()),
        nar_keys: Vec::with_capacity(graph.len()),
        extra_nars: Vec::new(),
        unparseable: graph.unparseable(),
        unknown_urls: false,
        graph,
    };
    for (id, &oi) in narinfo_objs.iter().enumerate() {
        let id = id as u32;
        let (node, nar_key) = node_of(ctx, objs, &s.graph, id, oi);
        s.nodes.push(node);
        s.nar_keys.push(nar_key);
        s.unknown_urls |= s.graph.nar_unknown(id);
        s.extra_nars
            .extend(s.graph.extra_nars(id).iter().map(|&k| (id, k)));
    }
    crate::progress::phase("plan: graph loaded");
    Ok(s)
}

/// One node and its NAR key; `oi` is its narinfo object.
fn node_of(
    ctx: &Ctx<'_>,
    objs: &[ObjectRecord],
    g: &CacheGraph<'_>,
    id: u32,
    oi: usize,
) -> (Node, Option<Box<str>>) {
    let nar_obj = g.nar_object(id);
    let status = g.status(id);
    if !status.parsed() {
        let mut node = unknown_node(g.why(id).to_string());
        node.nar_obj = nar_obj;
        return (node, nar_obj.map(|k| objs[k as usize].key.as_str().into()));
    }
    let nar_key = keys::nar_key_for_url(g.url(id));
    let doubt = (status == Status::Doubtful).then(|| g.why(id).to_string());
    let name = g.name(id);
    let seed = ctx.seed(
        g.ca(id),
        name,
        doubt.clone(),
        [Some(&objs[oi]), nar_obj.map(|i| &objs[i as usize])],
        [&objs[oi].key, nar_key],
    );
    let node = Node {
        name: name.into(),
        nar_obj,
        nar_size: g.nar_size(id),
        file_size: g.file_size(id),
        deriver: g
            .deriver(id)
            .filter(|d| ctx.want_derivers && doubt.is_none() && *d != "unknown-deriver")
            .map(Into::into),
        seed,
    };
    (node, Some(nar_key.into()))
}

/// A node whose narinfo says nothing usable.
fn unknown_node(why: String) -> Node {
    Node {
        name: "".into(),
        nar_obj: None,
        nar_size: 0,
        file_size: None,
        deriver: None,
        seed: Some(Reason::Unparseable { why }),
    }
}

/// Phase 2: the seeds of the kept set (policy roots, then paths a rule keeps) with their
/// reasons, and the root statistics.
pub(super) fn find_roots(
    policy: &Policy,
    s: &Streamed<'_>,
) -> (Vec<u32>, HashMap<u32, Reason>, RootStats) {
    let mut seeds: Vec<u32> = Vec::new();
    let mut seed_reason: HashMap<u32, Reason> = HashMap::new();
    let mut roots = RootStats {
        total: policy.roots.len() as u64,
        ..Default::default()
    };
    let mut missing_by_source: HashMap<&str, u64> = HashMap::new();
    for r in &policy.roots {
        match s.graph.id(&r.hash) {
            Some(id) => {
                roots.found += 1;
                seeds.push(id);
                seed_reason.entry(id).or_insert_with(|| Reason::Root {
                    source: r.source.clone(),
                });
            }
            None => {
                roots.missing += 1;
                let label = r.source.rsplit_once(':').map_or(r.source.as_str(), |x| x.0);
                *missing_by_source.entry(label).or_default() += 1;
                if roots.missing_examples.len() < 1000 {
                    roots
                        .missing_examples
                        .push(format!("{} ({})", r.path, r.source));
                }
            }
        }
    }
    roots.by_source = policy
        .root_sources
        .iter()
        .map(|(l, n)| {
            (
                l.clone(),
                *n as u64,
                missing_by_source.get(l.as_str()).copied().unwrap_or(0),
            )
        })
        .collect();
    for (id, node) in s.nodes.iter().enumerate() {
        if let Some(r) = &node.seed {
            seeds.push(id as u32);
            seed_reason.entry(id as u32).or_insert_with(|| r.clone());
        }
    }
    (seeds, seed_reason, roots)
}

/// The base name `<hash>-<name>` of a node (the hash alone when the name is unknown).
pub(super) fn base_of(s: &Streamed<'_>, id: usize) -> String {
    let h = s.graph.hash(id as u32).to_string();
    let name = &s.nodes[id].name;
    if name.is_empty() {
        h
    } else {
        format!("{h}-{name}")
    }
}

/// Phase 3: every path's decision, in graph-id order, from the closure's `parent` array.
/// Takes the NAR keys out of `s`.
pub(super) fn decide_paths(
    s: &mut Streamed<'_>,
    parent: &[u32],
    seed_reason: &HashMap<u32, Reason>,
    removed: Decision,
    summary: &mut Summary,
) -> Vec<PathDecision> {
    let mut paths: Vec<PathDecision> = Vec::with_capacity(s.graph.len());
    for (id, &par) in parent.iter().enumerate().take(s.graph.len()) {
        let (decision, reason) = if par != NONE {
            let r = if par == id as u32 {
                seed_reason
                    .get(&(id as u32))
                    .cloned()
                    .unwrap_or(Reason::OwnerUnknown)
            } else {
                Reason::Reachable {
                    from: s.graph.hash(par),
                }
            };
            (Decision::Keep, r)
        } else if removed == Decision::Keep {
            (Decision::Keep, Reason::PolicyKeep)
        } else {
            (removed, Reason::Unreachable)
        };
        if decision == Decision::Keep {
            *summary
                .kept_by_reason
                .entry(reason.kind().to_string())
                .or_default() += 1;
        }
        let n = &s.nodes[id];
        summary
            .paths
            .entry(decision)
            .or_default()
            .add(n.file_size.unwrap_or(0));
        paths.push(PathDecision {
            path: base_of(s, id),
            decision,
            reason,
            nar_key: s.nar_keys[id].take().map(String::from),
            nar_size: n.nar_size,
            file_size: n.file_size,
        });
    }
    paths
}

/// Phase 4: who uses each NAR, debuginfo link and build log.
pub(super) struct Owners<'a> {
    /// Per listed object (used for NARs): (a kept user, any user), NONE for none.
    pub nar_fate: Vec<(u32, u32)>,
    /// Per deriver: (a kept output, any output).
    pub drv_fate: HashMap<&'a str, (Option<usize>, Option<usize>)>,
    /// debuginfo key → (its NAR's key, the NAR's index in the listing).
    pub debuginfo_target: HashMap<&'a str, (String, usize)>,
}

impl<'a> Owners<'a> {
    pub fn find(
        s: &'a Streamed<'a>,
        kept: &[bool],
        objs: &[ObjectRecord],
        debuginfo: &'a [FetchedRecord],
    ) -> Owners<'a> {
        let mut nar_fate: Vec<(u32, u32)> = vec![(NONE, NONE); objs.len()];
        let mut drv_fate: HashMap<&str, (Option<usize>, Option<usize>)> = HashMap::new();
        let mut used_by = |k: u32, id: usize| {
            let e = &mut nar_fate[k as usize];
            if kept[id] && e.0 == NONE {
                e.0 = id as u32;
            }
            if e.1 == NONE {
                e.1 = id as u32;
            }
        };
        for (id, n) in s.nodes.iter().enumerate() {
            if let Some(k) = n.nar_obj {
                used_by(k, id);
            }
            if let Some(d) = &n.deriver {
                let e = drv_fate.entry(d).or_default();
                if kept[id] {
                    e.0.get_or_insert(id);
                }
                e.1.get_or_insert(id);
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
                let i = objs.binary_search_by(|o| o.key.as_str().cmp(&a)).ok()?;
                Some((d.key.as_str(), (a, i)))
            })
            .collect();
        Owners {
            nar_fate,
            drv_fate,
            debuginfo_target,
        }
    }
}

/// What phase 5 reads.
pub(super) struct ObjectInputs<'a> {
    pub ctx: &'a Ctx<'a>,
    pub s: &'a Streamed<'a>,
    pub kept: &'a [bool],
    /// In graph-id order.
    pub paths: &'a [PathDecision],
    pub owners: &'a Owners<'a>,
    pub removed: Decision,
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
        match self.owners.nar_fate[oi] {
            (k, _) if k != NONE => (
                Decision::Keep,
                Reason::NarOfKeptPath {
                    path: self.s.graph.hash(k),
                },
            ),
            _ if self.removed == Decision::Keep => (Decision::Keep, Reason::PolicyKeep),
            _ => (self.removed, Reason::Unreachable),
        }
    }

    /// A NAR no parseable narinfo names as its own.
    fn nar(&self, oi: usize) -> (Decision, Reason) {
        match self.owners.nar_fate[oi] {
            (_, any) if any != NONE => self.nar_decision(oi),
            _ if self.s.unknown_urls => (Decision::Keep, Reason::MightBelongToUnknown),
            _ => match self.ctx.policy.file.actions.orphan_nars {
                Follow::Keep => (Decision::Keep, Reason::PolicyKeep),
                Follow::Delete => (Decision::Delete, Reason::Orphan),
                Follow::Follow if self.removed == Decision::Keep => {
                    (Decision::Keep, Reason::PolicyKeep)
                }
                Follow::Follow => (self.removed, Reason::Orphan),
            },
        }
    }

    /// The decision for one object of kind `kind` at index `oi` of the listing.
    fn decide(&self, o: &ObjectRecord, oi: usize, kind: &ObjectKind<'_>) -> (Decision, Reason) {
        if self.ctx.young(o) {
            return (Decision::Keep, Reason::Young);
        }
        let actions = &self.ctx.policy.file.actions;
        let graph = &self.s.graph;
        match kind {
            ObjectKind::Narinfo(h) => match graph.id(h) {
                Some(id) => (
                    self.paths[id as usize].decision,
                    self.paths[id as usize].reason.clone(),
                ),
                // Listed but never fetched into the index: unknown.
                None => (Decision::Keep, Reason::OwnerUnknown),
            },
            ObjectKind::Nar { .. } => self.nar(oi),
            ObjectKind::Listing(h) => match graph.id(h) {
                Some(id) => {
                    let id = id as usize;
                    let d = if self.kept[id] {
                        Decision::Keep
                    } else {
                        self.removed
                    };
                    let owner = format!("{STORE_DIR}/{}", base_of(self.s, id));
                    self.follow(actions.listings, d, owner)
                }
                None => (Decision::Keep, Reason::OwnerUnknown),
            },
            ObjectKind::DebugInfo(_) => match self.owners.debuginfo_target.get(o.key.as_str()) {
                Some((t, ti)) if self.owners.nar_fate[*ti].1 != NONE => {
                    let (d, _) = self.nar_decision(*ti);
                    self.follow(actions.debuginfo, d, t.clone())
                }
                _ => (Decision::Keep, Reason::OwnerUnknown),
            },
            ObjectKind::Log(drv) => match self.owners.drv_fate.get(drv) {
                Some((Some(k), _)) => (
                    Decision::Keep,
                    Reason::OwnerKept {
                        owner: format!("{STORE_DIR}/{}", base_of(self.s, *k)),
                    },
                ),
                Some((None, Some(_))) => {
                    self.follow(actions.logs, self.removed, format!("{STORE_DIR}/{drv}"))
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
fn kept_link_targets(inp: &ObjectInputs<'_>, objs: &[ObjectRecord]) -> LinkKeep {
    let mut k = LinkKeep::default();
    let mut todo: Vec<usize> = objs
        .iter()
        .enumerate()
        .filter(|(oi, o)| {
            o.link_target.is_some()
                && inp.decide(o, *oi, &keys::classify(&o.key)).0 == Decision::Keep
        })
        .map(|(oi, _)| oi)
        .collect();
    let mut seen: std::collections::HashSet<usize> = todo.iter().copied().collect();
    while let Some(oi) = todo.pop() {
        let link = &objs[oi];
        let Some(t) = link.link_target.as_deref() else {
            continue;
        };
        let reason = Reason::LinkTarget {
            link: link.key.clone(),
        };
        match objs.binary_search_by(|o| o.key.as_str().cmp(t)) {
            Ok(ti) => {
                k.targets.entry(ti).or_insert(reason);
                if seen.insert(ti) {
                    todo.push(ti);
                }
            }
            Err(_) => {
                k.unlisted.get_or_insert(reason);
            }
        }
    }
    k
}

/// Phase 5: every object's decision, in listing order, counted in `summary`. An object
/// a kept symlink reads is kept with it ([`kept_link_targets`]).
pub(super) fn decide_objects(
    inp: &ObjectInputs<'_>,
    objs: Vec<ObjectRecord>,
    summary: &mut Summary,
) -> Vec<ObjectDecision> {
    let p = &inp.ctx.policy.file;
    let links = kept_link_targets(inp, &objs);
    let mut objects = Vec::with_capacity(objs.len());
    for (oi, o) in objs.into_iter().enumerate() {
        let kind = keys::classify(&o.key);
        let (mut decision, mut reason) = inp.decide(&o, oi, &kind);
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
        let transition_to = archive_transition(&o, decision, category, p);
        if decision == Decision::Archive && category == Category::Nar {
            count_archived_nar(summary, &o, transition_to.is_some());
        }
        summary
            .objects
            .entry(decision)
            .or_default()
            .entry(category)
            .or_default()
            .add(o.size);
        objects.push(ObjectDecision {
            key: o.key,
            category,
            size: o.size,
            etag: o.etag,
            last_modified: o.last_modified,
            storage_class: o.storage_class,
            decision,
            transition_to,
            reason,
        });
    }
    objects
}
