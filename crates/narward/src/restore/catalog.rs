//! Pure: a plan and an index seen as a restore needs them: what state each path is in
//! and what restoring it brings back ([`from_plan`]), and the reference graph
//! ([`graph_of`]).
//!
//! Until apply records what it archived, the plan is the archive's description: its
//! archived paths are hidden (narinfo and `.ls` in the archive area, NAR moved to
//! `transition_to`, or already cold; a NAR left in place, too small to pay back a
//! transition, needs nothing), and
//! its restore set lists kept paths whose NAR is cold.

use super::proposal::{Catalog, CatalogPath, PathState, RestoreObject};
use crate::cache_graph::CacheGraph;
use crate::graph::{Graph, GraphBuilder};
use crate::model::is_archive_class;
use crate::plan::{Decision, ObjectDecision, Plan};
use narward_formats::keys::{listing_key, narinfo_key};
use narward_formats::store_path::{StorePath, StorePathHash};

/// The catalog of a plan's paths.
pub fn from_plan(plan: &Plan) -> Catalog {
    let mut c = Catalog::new();
    for p in &plan.paths {
        let Ok(sp) = StorePath::parse_any(&p.path) else {
            continue;
        };
        let restore = plan.restore_item(&p.path);
        let (state, objects, archived_at) = match (p.decision, restore) {
            (Decision::Delete, _) => (PathState::Deleted, Vec::new(), None),
            (Decision::Keep, None) => (PathState::Hot, Vec::new(), None),
            (Decision::Keep, Some(r)) => {
                let o = RestoreObject {
                    key: r.nar_key.clone(),
                    kind: "nar".into(),
                    storage_class: r.storage_class.clone(),
                    size: r.size,
                    etag: r.etag.clone(),
                };
                let at = plan.object(&r.nar_key).and_then(|o| o.last_modified);
                (PathState::NarArchived, vec![o], at)
            }
            (Decision::Archive, _) => archived(plan, &sp, p.nar_key.as_deref()),
        };
        c.insert(
            sp.hash,
            CatalogPath {
                path: p.path.clone(),
                state,
                objects,
                archived_at,
            },
        );
    }
    c
}

/// An archived path: its NAR (where the plan sends it), `.ls` and narinfo.
fn archived(
    plan: &Plan,
    sp: &StorePath,
    nar: Option<&str>,
) -> (PathState, Vec<RestoreObject>, Option<i64>) {
    let mut v = Vec::new();
    let mut at = None;
    if let Some(o) = nar.and_then(|k| plan.object(k)) {
        let class = nar_class(o);
        at = match &o.transition_to {
            Some(_) => Some(plan.header.created_at),
            None if is_archive_class(&class) => o.last_modified,
            None => None,
        };
        // A NAR with no class to move to and not cold already (too small to pay back a
        // transition) stays in the cache, hot: only its path's narinfo comes back.
        if o.decision == Decision::Archive
            && (o.transition_to.is_some() || is_archive_class(&class))
        {
            v.push(object(o, "nar", class));
        }
    }
    for (key, kind) in [
        (listing_key(&sp.hash), "listing"),
        (narinfo_key(&sp.hash), "narinfo"),
    ] {
        if let Some(o) = plan
            .object(&key)
            .filter(|o| o.decision == Decision::Archive)
        {
            v.push(object(o, kind, "STANDARD".into()));
        }
    }
    (PathState::Archived, v, at)
}

/// Where an archived NAR is after apply: its target class, or where it already is.
fn nar_class(o: &ObjectDecision) -> String {
    o.transition_to
        .clone()
        .or_else(|| o.storage_class.clone())
        .unwrap_or_else(|| "STANDARD".into())
}

fn object(o: &ObjectDecision, kind: &str, class: String) -> RestoreObject {
    RestoreObject {
        key: o.key.clone(),
        kind: kind.into(),
        storage_class: class,
        size: o.size,
        etag: o.etag.as_ref().map(ToString::to_string),
    }
}

/// The reference graph of the index's [`CacheGraph`]: every path with the references
/// planning follows (every version's, and what an unknown narinfo seems to name), so a
/// restore brings back at least what a plan would keep.
pub fn graph_of(g: &CacheGraph<'_>) -> Graph {
    let mut b = GraphBuilder::default();
    for id in 0..g.len() as u32 {
        b.add(g.hash(id), g.refs(id).iter().map(|&r| g.hash(r)));
    }
    b.build().0
}

/// The closure of `seeds` (hashes not in the graph are their own closure), visiting only
/// what it reaches: memory follows the closure's size, not the graph's, so one closure per
/// demanded path stays cheap on a cache of hundreds of millions of paths.
pub fn closure_of(graph: &Graph, seeds: &[StorePathHash]) -> Vec<StorePathHash> {
    let mut seen: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let mut out: Vec<StorePathHash> = Vec::new();
    let mut stack: Vec<u32> = Vec::new();
    for h in seeds {
        match graph.id(h) {
            Some(id) => {
                if seen.insert(id) {
                    stack.push(id);
                }
            }
            None => out.push(*h),
        }
    }
    while let Some(n) = stack.pop() {
        if let Some(h) = graph.hashes.get(n as usize) {
            out.push(*h);
        }
        for &r in graph.refs(n) {
            if seen.insert(r) {
                stack.push(r);
            }
        }
    }
    out.sort_unstable_by_key(|h| h.0);
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_of_matches_the_dense_closure_and_keeps_unknown_seeds() {
        let h = |i: u8| StorePathHash([i; 20]);
        let mut b = GraphBuilder::default();
        b.add(h(1), [h(2), h(3)]);
        b.add(h(2), [h(4), h(2)]);
        b.add(h(3), [h(4), h(9)]);
        b.add(h(4), [h(1)]);
        b.add(h(5), []);
        let g = b.build().0;
        let dense: Vec<StorePathHash> = {
            let p = g.closure(&[g.id(&h(2)).unwrap()]);
            let mut v: Vec<StorePathHash> = p
                .iter()
                .enumerate()
                .filter(|&(_, &x)| x != crate::graph::NONE)
                .map(|(i, _)| g.hashes[i])
                .collect();
            v.sort_unstable_by_key(|h| h.0);
            v
        };
        assert_eq!(closure_of(&g, &[h(2)]), dense);
        assert_eq!(closure_of(&g, &[h(2)]), [h(1), h(2), h(3), h(4)]);
        assert_eq!(closure_of(&g, &[h(5), h(7)]), [h(5), h(7)]);
    }
}
