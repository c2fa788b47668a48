//! Pure: the order in which restored objects are made hot again, so that a client never
//! sees a narinfo before its NAR or before the narinfos of its references:
//!
//! 1. wave 0: every NAR and `.ls` (nothing points to them until a narinfo is visible);
//! 2. then narinfos in waves: a narinfo's wave comes after the waves of the narinfos of
//!    every path it references within the set (self-references ignored; references outside
//!    the set are hot already). Objects within a wave may be published concurrently.
//!
//! References form a DAG for real store paths. Damaged data may hold a cycle: no order
//! satisfies it, so its narinfos (and those of paths depending on it) come last, in one
//! wave, and are reported ([`RepublishOrder::cyclic`]) rather than left out.

use narward_formats::store_path::StorePathHash;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One path to republish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepublishPath {
    pub hash: StorePathHash,
    /// Its references (any; those outside the set and itself are ignored).
    pub references: Vec<StorePathHash>,
    /// Its NAR key, when the NAR must be made hot too.
    pub nar: Option<String>,
    /// Its `.ls` key, when there is one to republish.
    pub listing: Option<String>,
    /// Its narinfo key.
    pub narinfo: String,
}

/// The order: waves of object keys, each wave after the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepublishOrder {
    pub waves: Vec<Vec<String>>,
    /// Paths on a reference cycle or depending on one (published in the last wave), sorted.
    pub cyclic: Vec<StorePathHash>,
}

/// Compute the waves. Deterministic: keys are sorted within a wave.
pub fn republish_order(paths: &[RepublishPath]) -> RepublishOrder {
    let by: BTreeMap<StorePathHash, &RepublishPath> = paths.iter().map(|p| (p.hash, p)).collect();
    let mut waves = Vec::new();
    let first: Vec<String> = by
        .values()
        .flat_map(|p| p.nar.iter().chain(p.listing.iter()).cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !first.is_empty() {
        waves.push(first);
    }
    // Kahn by levels over in-set, non-self references.
    let mut pending: BTreeMap<StorePathHash, usize> = BTreeMap::new();
    let mut referrers: BTreeMap<StorePathHash, Vec<StorePathHash>> = BTreeMap::new();
    for p in by.values() {
        let deps: BTreeSet<StorePathHash> = p
            .references
            .iter()
            .filter(|r| **r != p.hash && by.contains_key(r))
            .copied()
            .collect();
        pending.insert(p.hash, deps.len());
        for d in deps {
            referrers.entry(d).or_default().push(p.hash);
        }
    }
    let mut ready: Vec<StorePathHash> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(h, _)| *h)
        .collect();
    let mut done = BTreeSet::new();
    while !ready.is_empty() {
        let mut wave: Vec<String> = ready
            .iter()
            .filter_map(|h| by.get(h))
            .map(|p| p.narinfo.clone())
            .collect();
        wave.sort();
        waves.push(wave);
        let mut next = Vec::new();
        for h in &ready {
            done.insert(*h);
            for r in referrers.get(h).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(n) = pending.get_mut(r) {
                    *n -= 1;
                    if *n == 0 {
                        next.push(*r);
                    }
                }
            }
        }
        next.sort();
        ready = next;
    }
    let cyclic: Vec<StorePathHash> = by.keys().filter(|h| !done.contains(*h)).copied().collect();
    if !cyclic.is_empty() {
        let mut wave: Vec<String> = cyclic
            .iter()
            .filter_map(|h| by.get(h))
            .map(|p| p.narinfo.clone())
            .collect();
        wave.sort();
        waves.push(wave);
    }
    RepublishOrder { waves, cyclic }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn h(i: usize) -> StorePathHash {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        StorePathHash(b)
    }

    fn path(i: usize, refs: &[usize], nar: bool, ls: bool) -> RepublishPath {
        RepublishPath {
            hash: h(i),
            references: refs.iter().map(|&r| h(r)).collect(),
            nar: nar.then(|| format!("nar/{i}.nar.xz")),
            listing: ls.then(|| format!("{i}.ls")),
            narinfo: format!("{i}.narinfo"),
        }
    }

    /// Wave of each key.
    fn wave_of(o: &RepublishOrder) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (w, keys) in o.waves.iter().enumerate() {
            for k in keys {
                assert!(m.insert(k.clone(), w).is_none(), "{k} published twice");
            }
        }
        m
    }

    #[test]
    fn nars_first_then_narinfos_dependencies_before_dependents() {
        // 2 → 1 → 0, 2 → 0, 1 → itself, 0 → 99 (outside the set).
        let o = republish_order(&[
            path(2, &[1, 0], true, false),
            path(1, &[1, 0], true, true),
            path(0, &[99], false, false),
        ]);
        assert_eq!(
            o.waves,
            vec![
                vec![
                    "1.ls".to_string(),
                    "nar/1.nar.xz".into(),
                    "nar/2.nar.xz".into()
                ],
                vec!["0.narinfo".into()],
                vec!["1.narinfo".into()],
                vec!["2.narinfo".into()],
            ]
        );
        assert!(o.cyclic.is_empty());
        assert_eq!(republish_order(&[]), RepublishOrder::default());
    }

    #[test]
    fn a_reference_cycle_is_published_last_and_reported_not_dropped() {
        let o = republish_order(&[
            path(0, &[1], true, false),
            path(1, &[0], true, false),
            path(2, &[], true, false),
            path(3, &[0], true, false),
        ]);
        let w = wave_of(&o);
        assert_eq!(w.len(), 8);
        assert_eq!(o.cyclic, vec![h(0), h(1), h(3)]);
        assert!(w["2.narinfo"] < w["0.narinfo"]);
        assert_eq!(w["0.narinfo"], o.waves.len() - 1);
    }

    fn dag() -> impl Strategy<Value = Vec<RepublishPath>> {
        (1usize..40).prop_flat_map(|n| {
            proptest::collection::vec(
                (
                    proptest::collection::vec(0usize..200, 0..6),
                    any::<bool>(),
                    any::<bool>(),
                    any::<bool>(),
                ),
                n,
            )
            .prop_map(move |v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (refs, nar, ls, selfref))| {
                        // Only references to earlier paths (a DAG), or outside the set (≥ n).
                        let mut r: Vec<usize> = refs
                            .into_iter()
                            .filter(|&r| r < i || r >= n)
                            .map(|r| if r >= n { r + 1000 } else { r })
                            .collect();
                        if selfref {
                            r.push(i);
                        }
                        path(i, &r, nar, ls)
                    })
                    .collect()
            })
        })
    }

    proptest! {
        #[test]
        fn every_object_once_nars_first_and_references_before_referrers(mut paths in dag(), seed in any::<u64>()) {
            // Input order does not matter.
            let len = paths.len();
            if len > 1 {
                paths.rotate_left((seed as usize) % len);
            }
            let o = republish_order(&paths);
            prop_assert!(o.cyclic.is_empty());
            let w = wave_of(&o);
            let objects: usize = paths.iter().map(|p| 1 + usize::from(p.nar.is_some()) + usize::from(p.listing.is_some())).sum();
            prop_assert_eq!(w.len(), objects);
            let last_nar = paths.iter().flat_map(|p| p.nar.iter().chain(p.listing.iter())).map(|k| w[k]).max();
            let first_narinfo = paths.iter().map(|p| w[&p.narinfo]).min().unwrap_or(0);
            if let Some(l) = last_nar {
                prop_assert!(l < first_narinfo);
            }
            let by: HashMap<StorePathHash, &RepublishPath> = paths.iter().map(|p| (p.hash, p)).collect();
            for p in &paths {
                for r in &p.references {
                    if *r != p.hash && let Some(q) = by.get(r) {
                        prop_assert!(w[&q.narinfo] < w[&p.narinfo], "{} before {}", q.narinfo, p.narinfo);
                    }
                }
            }
            prop_assert_eq!(republish_order(&paths), o.clone());
        }
    }
}
