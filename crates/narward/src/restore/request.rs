//! Pure: what restoring given store paths (and, optionally, their closures) would bring
//! back, and what it would cost and take per tier (`narward restore PATH... --dry-run`).

use super::estimate::{ClassSet, TierEstimate, estimate};
use super::proposal::{Catalog, PathState};
use crate::cost::Pricing;
use crate::graph::Graph;
use narward_formats::store_path::StorePathHash;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The estimate of a restore request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestEstimate {
    /// Paths asked for.
    pub requested: u64,
    /// Asked-for paths the plan does not know (not in the cache when it was made).
    pub not_in_plan: Vec<StorePathHash>,
    /// Paths (asked for or in their closures) that are hot already.
    pub hot: u64,
    /// Paths (asked for or in their closures) that were deleted: `narward recover`.
    pub deleted: u64,
    /// Archived paths to bring back (base names, sorted).
    pub paths: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Objects to bring back by storage class.
    pub by_class: BTreeMap<String, ClassSet>,
    /// Every tier, fastest first.
    pub estimates: Vec<TierEstimate>,
}

/// Estimate restoring `roots` (with their closures when `closure`) for `days` days.
pub fn estimate_request(
    catalog: &Catalog,
    graph: &Graph,
    roots: &[StorePathHash],
    closure: bool,
    pricing: &Pricing,
    days: u32,
) -> RequestEstimate {
    let asked: BTreeSet<StorePathHash> = roots.iter().copied().collect();
    let not_in_plan: Vec<StorePathHash> = asked
        .iter()
        .filter(|h| !catalog.contains_key(*h))
        .copied()
        .collect();
    let mut all: BTreeSet<StorePathHash> = asked.clone();
    if closure {
        let seeds: Vec<StorePathHash> = asked.iter().copied().collect();
        all.extend(super::catalog::closure_of(graph, &seeds));
    }
    let (mut hot, mut deleted) = (0, 0);
    let mut paths = Vec::new();
    let mut by_class: BTreeMap<String, ClassSet> = BTreeMap::new();
    for h in &all {
        let Some(p) = catalog.get(h) else { continue };
        match p.state {
            PathState::Hot => hot += 1,
            PathState::Deleted => deleted += 1,
            PathState::Archived | PathState::NarArchived => {
                paths.push(p.path.clone());
                for o in &p.objects {
                    let e = by_class.entry(o.storage_class.clone()).or_default();
                    e.count += 1;
                    e.bytes += o.size;
                }
            }
        }
    }
    paths.sort();
    RequestEstimate {
        requested: asked.len() as u64,
        not_in_plan,
        hot,
        deleted,
        paths,
        objects: by_class.values().map(|c| c.count).sum(),
        bytes: by_class.values().map(|c| c.bytes).sum(),
        estimates: estimate(&by_class, pricing, days),
        by_class,
    }
}

/// The estimate of a restore found in the store ([`super::exec::discover`]): the cold
/// NARs by class are what RestoreObject retrieves; quarantined paths count as `deleted`
/// (recovered without a retrieval); missing hashes as `not_in_plan`.
pub fn estimate_discovery(
    d: &super::exec::Discovery,
    requested: u64,
    pricing: &Pricing,
    days: u32,
) -> RequestEstimate {
    let mut by_class: BTreeMap<String, ClassSet> = BTreeMap::new();
    for n in d.cold_nars() {
        let e = by_class.entry(n.class.clone()).or_default();
        e.count += 1;
        e.bytes += n.size;
    }
    let mut paths: Vec<String> = d.archived().map(|p| p.store_path.clone()).collect();
    paths.sort();
    RequestEstimate {
        requested,
        not_in_plan: d
            .missing
            .iter()
            .filter_map(|h| StorePathHash::parse(h).ok())
            .collect(),
        hot: d.hot,
        deleted: d.quarantined().count() as u64,
        paths,
        objects: by_class.values().map(|c| c.count).sum(),
        bytes: by_class.values().map(|c| c.bytes).sum(),
        estimates: estimate(&by_class, pricing, days),
        by_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::restore::proposal::{CatalogPath, RestoreObject};

    fn h(i: u8) -> StorePathHash {
        StorePathHash([i; 20])
    }

    fn entry(i: u8, state: PathState, class: &str) -> (StorePathHash, CatalogPath) {
        let objects = if matches!(state, PathState::Archived | PathState::NarArchived) {
            vec![RestoreObject {
                key: format!("nar/{i}"),
                kind: "nar".into(),
                storage_class: class.into(),
                size: 1 << 30,
                etag: None,
            }]
        } else {
            Vec::new()
        };
        (
            h(i),
            CatalogPath {
                path: format!("{}-p{i}", h(i)),
                state,
                objects,
                archived_at: None,
            },
        )
    }

    #[test]
    fn a_closure_request_counts_archived_hot_and_deleted_paths_and_prices_every_tier() {
        use PathState::*;
        let cat: Catalog = [
            entry(1, Archived, "DEEP_ARCHIVE"),
            entry(2, NarArchived, "GLACIER"),
            entry(3, Hot, ""),
            entry(4, Deleted, ""),
            entry(5, Archived, "GLACIER"),
        ]
        .into_iter()
        .collect();
        let mut b = GraphBuilder::default();
        b.add(h(1), [h(2), h(3), h(4)]);
        for i in 2..=5 {
            b.add(h(i), []);
        }
        let g = b.build().0;
        let p = Pricing::default_aws();
        let e = estimate_request(&cat, &g, &[h(1), h(9)], true, &p, 7);
        assert_eq!((e.requested, e.hot, e.deleted), (2, 1, 1));
        assert_eq!(e.not_in_plan, [h(9)]);
        assert_eq!(e.paths.len(), 2);
        assert_eq!((e.objects, e.bytes), (2, 2 << 30));
        assert_eq!(e.by_class["GLACIER"].count, 1);
        assert_eq!(e.estimates, estimate(&e.by_class, &p, 7));
        let alone = estimate_request(&cat, &g, &[h(1)], false, &p, 7);
        assert_eq!(alone.paths.len(), 1);
        assert!(alone.estimates[2].total_usd < e.estimates[2].total_usd);
    }
}
