//! The phases of [`super::compute_streaming`], one function each: read the narinfos into
//! the graph ([`read_narinfos`]), find the roots ([`find_roots`]), decide every path
//! ([`decide_paths`]), find the owners of the other objects ([`Owners::find`]), decide
//! every object ([`decide_objects`]). Pure, like the rest of planning.

use super::{
    Decision, Named, Node, ObjectDecision, PathDecision, Reason, RootStats, Summary,
    archive_transition, count_archived_nar, earlier_named, hidden_in_parsed, lenient_scan,
    narinfo_doubt,
};
use crate::graph::{Graph, NONE};
use crate::model::{FetchedRecord, ObjectRecord};
use crate::policy::{Follow, Policy, Unreachable};
use anyhow::Result;
use narward_formats::keys::{self, Category, ObjectKind};
use narward_formats::narinfo::NarInfo;
use narward_formats::store_path::{STORE_DIR, StorePathHash};
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
        ni: &NarInfo<'_>,
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
        } else if k.content_addressed && ni.ca.is_some() {
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

/// The graph and the nodes, once every narinfo streamed by.
pub(super) struct Streamed {
    pub graph: Graph,
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

/// The state of [`read_narinfos`] while the records stream by.
struct Reader<'a> {
    ctx: &'a Ctx<'a>,
    objs: &'a [ObjectRecord],
    /// NAR objects by key: a narinfo's NAR is anywhere in the listing.
    nar_objects: HashMap<&'a str, usize>,
    graph: Graph,
    nodes: Vec<Option<Node>>,
    nar_keys: Vec<Option<Box<str>>>,
    extra_nars: Vec<(u32, u32)>,
    unparseable: u64,
    unknown_urls: bool,
    last_id: Option<u32>,
    cursor: usize,
}

/// Phase 1: nodes (every narinfo object of the listing, in key order) and the graph, filled
/// while the narinfos stream by in the same order.
///
/// # Errors
/// The source's errors; records out of key order.
pub(super) fn read_narinfos(
    ctx: &Ctx<'_>,
    objs: &[ObjectRecord],
    narinfos: impl FnOnce(&mut dyn FnMut(&FetchedRecord) -> Result<()>) -> Result<()>,
) -> Result<Streamed> {
    let hashes: Vec<StorePathHash> = objs
        .iter()
        .filter_map(|o| match keys::classify(&o.key) {
            ObjectKind::Narinfo(h) => Some(h),
            _ => None,
        })
        .collect();
    let n = hashes.len();
    let mut r = Reader {
        ctx,
        objs,
        nar_objects: objs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.key.starts_with("nar/"))
            .map(|(i, o)| (o.key.as_str(), i))
            .collect(),
        graph: Graph::with_nodes(hashes, n * 8),
        nodes: (0..n).map(|_| None).collect(),
        nar_keys: (0..n).map(|_| None).collect(),
        extra_nars: Vec::new(),
        unparseable: 0,
        unknown_urls: false,
        last_id: None,
        cursor: 0,
    };
    narinfos(&mut |rec: &FetchedRecord| r.record(rec))?;
    r.graph.finish();
    crate::progress::phase("plan: narinfos streamed, graph built");
    let mut unknown_urls = r.unknown_urls;
    // A narinfo object the index holds no record for is unknown: keep it.
    let nodes: Vec<Node> = r
        .nodes
        .into_iter()
        .map(|n| {
            n.unwrap_or_else(|| {
                unknown_urls = true;
                unknown_node("listed but not in the index".into())
            })
        })
        .collect();
    Ok(Streamed {
        graph: r.graph,
        nodes,
        nar_keys: r.nar_keys,
        extra_nars: r.extra_nars,
        unparseable: r.unparseable,
        unknown_urls,
    })
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

impl Reader<'_> {
    fn nar_index(&self, k: &str) -> Option<usize> {
        self.nar_objects.get(k).copied()
    }

    /// One narinfo record.
    fn record(&mut self, rec: &FetchedRecord) -> Result<()> {
        let ObjectKind::Narinfo(hash) = keys::classify(&rec.key) else {
            return Ok(());
        };
        let Some(id) = self.graph.id(&hash) else {
            // A narinfo the listing does not have: not part of this cache any more.
            return Ok(());
        };
        if self.last_id.is_some_and(|l| id <= l) {
            anyhow::bail!("index narinfos are not in key order at {}", rec.key);
        }
        self.last_id = Some(id);
        // Narinfo records and objects are both in key order: walk a cursor.
        let objs = self.objs;
        while self.cursor < objs.len() && objs[self.cursor].key < rec.key {
            self.cursor += 1;
        }
        let narinfo_obj =
            (self.cursor < objs.len() && objs[self.cursor].key == rec.key).then_some(self.cursor);
        // What earlier versions of this narinfo named is kept too (narinfos are immutable).
        let also = earlier_named(rec, &|h| self.graph.id(h).is_some(), &|k| self.nar_index(k));
        match rec.parse() {
            Ok(ni) => self.parsed(id, &hash, &rec.key, &ni, narinfo_obj, also),
            Err(u) => self.unparsed(id, rec, u.reason, also),
        }
        Ok(())
    }

    /// A narinfo that parses.
    fn parsed(
        &mut self,
        id: u32,
        hash: &StorePathHash,
        key: &str,
        ni: &NarInfo<'_>,
        narinfo_obj: Option<usize>,
        mut also: Named,
    ) {
        let objs = self.objs;
        let nar_key = keys::nar_key_for_url(ni.url);
        let nar_i = self.nar_index(nar_key);
        let doubt = narinfo_doubt(hash, ni);
        // A StorePath that is not this narinfo's path names nothing of this path.
        let name = if ni.store_path.hash == *hash {
            ni.store_path.name
        } else {
            ""
        };
        let seed = self.ctx.seed(
            ni,
            name,
            doubt.clone(),
            [narinfo_obj.map(|i| &objs[i]), nar_i.map(|i| &objs[i])],
            [key, nar_key],
        );
        also.extend(hidden_in_parsed(
            ni,
            &|h| self.graph.id(h).is_some(),
            &|k| self.nar_index(k),
        ));
        let also_paths = std::mem::take(&mut also.paths);
        self.graph
            .push_refs(id, ni.references.iter().map(|r| r.hash).chain(also_paths));
        self.nar_keys[id as usize] = Some(nar_key.into());
        let want_derivers = self.ctx.want_derivers;
        self.nodes[id as usize] = Some(Node {
            name: name.into(),
            nar_obj: nar_i.map(|i| i as u32),
            nar_size: ni.nar_size,
            file_size: ni.file_size,
            deriver: ni
                .deriver
                .filter(|d| want_derivers && doubt.is_none() && *d != "unknown-deriver")
                .map(Into::into),
            seed,
        });
        self.extra_nars
            .extend(also.nars.into_iter().map(|k| (id, k)));
    }

    /// A narinfo that does not parse: what its text names is kept.
    fn unparsed(&mut self, id: u32, rec: &FetchedRecord, why: String, mut also: Named) {
        self.unparseable += 1;
        let found = lenient_scan(&rec.text, &|h| self.graph.id(h).is_some(), &|k| {
            self.nar_index(k)
        });
        // No listed NAR found: it might be any orphan.
        self.unknown_urls |= found.nars.is_empty();
        let nar_obj = found.nars.first().copied();
        self.nar_keys[id as usize] = nar_obj.map(|k| self.objs[k as usize].key.as_str().into());
        also.extend(found);
        self.graph.push_refs(id, std::mem::take(&mut also.paths));
        let mut node = unknown_node(why);
        node.nar_obj = nar_obj;
        self.nodes[id as usize] = Some(node);
        self.extra_nars
            .extend(also.nars.into_iter().map(|k| (id, k)));
    }
}

/// Phase 2: the seeds of the kept set (policy roots, then paths a rule keeps) with their
/// reasons, and the root statistics.
pub(super) fn find_roots(
    policy: &Policy,
    s: &Streamed,
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
pub(super) fn base_of(s: &Streamed, id: usize) -> String {
    let h = s.graph.hashes[id].to_string();
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
    s: &mut Streamed,
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
                    from: s.graph.hashes[par as usize],
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
        s: &'a Streamed,
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
    pub s: &'a Streamed,
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
                    path: self.s.graph.hashes[k as usize],
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

/// Phase 5: every object's decision, in listing order, counted in `summary`.
pub(super) fn decide_objects(
    inp: &ObjectInputs<'_>,
    objs: Vec<ObjectRecord>,
    summary: &mut Summary,
) -> Vec<ObjectDecision> {
    let p = &inp.ctx.policy.file;
    let mut objects = Vec::with_capacity(objs.len());
    for (oi, o) in objs.into_iter().enumerate() {
        let kind = keys::classify(&o.key);
        let (decision, reason) = inp.decide(&o, oi, &kind);
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
