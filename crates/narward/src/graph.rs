//! A dense reference graph: store-path hashes mapped to `u32` ids (their rank in sorted
//! order), references as flat CSR arrays. This is the planning graph whose size the
//! benchmarks measure: 20 bytes of hash + 8 of offset per path, 4 per edge.

use narward_formats::store_path::StorePathHash;

/// The graph. Node `i` is `hashes[i]`; its references are `edges[offsets[i]..offsets[i+1]]`.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub hashes: Vec<StorePathHash>,
    offsets: Vec<u64>,
    edges: Vec<u32>,
    /// References to hashes that are not nodes (closure holes), counted while building.
    pub missing_refs: u64,
}

/// Builds a [`Graph`] from nodes given in any order.
#[derive(Default)]
pub struct GraphBuilder {
    hashes: Vec<StorePathHash>,
    ref_start: Vec<u64>,
    refs: Vec<StorePathHash>,
}

impl GraphBuilder {
    pub fn with_capacity(nodes: usize, edges: usize) -> Self {
        GraphBuilder {
            hashes: Vec::with_capacity(nodes),
            ref_start: Vec::with_capacity(nodes + 1),
            refs: Vec::with_capacity(edges),
        }
    }

    /// Add a node and its references; returns its insertion number.
    pub fn add(
        &mut self,
        hash: StorePathHash,
        refs: impl IntoIterator<Item = StorePathHash>,
    ) -> usize {
        self.hashes.push(hash);
        self.ref_start.push(self.refs.len() as u64);
        self.refs.extend(refs);
        self.hashes.len() - 1
    }

    /// Finish: returns the graph and, for each insertion number, the node id.
    /// Duplicate hashes are merged (their references united).
    pub fn build(self) -> (Graph, Vec<u32>) {
        let GraphBuilder {
            hashes,
            mut ref_start,
            refs,
        } = self;
        ref_start.push(refs.len() as u64);
        let n = hashes.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|&i| hashes[i as usize]);
        let mut sorted: Vec<StorePathHash> = Vec::with_capacity(n);
        let mut id_of = vec![0u32; n];
        for &i in &order {
            let h = hashes[i as usize];
            if sorted.last() != Some(&h) {
                sorted.push(h);
            }
            id_of[i as usize] = (sorted.len() - 1) as u32;
        }
        let lookup = |h: &StorePathHash| sorted.binary_search(h).ok().map(|i| i as u32);
        let mut offsets = Vec::with_capacity(sorted.len() + 1);
        let mut edges = Vec::with_capacity(refs.len());
        let mut missing = 0u64;
        let mut k = 0;
        for id in 0..sorted.len() as u32 {
            offsets.push(edges.len() as u64);
            let start = edges.len();
            while k < n && id_of[order[k] as usize] == id {
                let i = order[k] as usize;
                for r in &refs[ref_start[i] as usize..ref_start[i + 1] as usize] {
                    match lookup(r) {
                        Some(t) => edges.push(t),
                        None => missing += 1,
                    }
                }
                k += 1;
            }
            edges[start..].sort_unstable();
            let mut w = start;
            for r in start..edges.len() {
                if r == start || edges[r] != edges[w - 1] {
                    edges[w] = edges[r];
                    w += 1;
                }
            }
            edges.truncate(w);
        }
        offsets.push(edges.len() as u64);
        edges.shrink_to_fit();
        (
            Graph {
                hashes: sorted,
                offsets,
                edges,
                missing_refs: missing,
            },
            id_of,
        )
    }
}

impl Graph {
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    pub fn id(&self, h: &StorePathHash) -> Option<u32> {
        self.hashes.binary_search(h).ok().map(|i| i as u32)
    }

    pub fn refs(&self, id: u32) -> &[u32] {
        let i = id as usize;
        &self.edges[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Bytes held by the graph's arrays.
    pub fn memory_bytes(&self) -> usize {
        self.hashes.capacity() * 20 + self.offsets.capacity() * 8 + self.edges.capacity() * 4
    }

    /// Mark the closure of `seeds` under references. Returns, per node, `NONE` when not
    /// reached, the node itself for a seed, or the node it was first reached from — so a
    /// chain seed → … → node can be read backwards.
    pub fn closure(&self, seeds: &[u32]) -> Vec<u32> {
        let mut parent = vec![NONE; self.len()];
        let mut stack = Vec::with_capacity(1024);
        for &s in seeds {
            if parent[s as usize] == NONE {
                parent[s as usize] = s;
                stack.push(s);
            }
        }
        while let Some(n) = stack.pop() {
            for &r in self.refs(n) {
                if parent[r as usize] == NONE {
                    parent[r as usize] = n;
                    stack.push(r);
                }
            }
        }
        parent
    }

    /// The reverse graph (referrers).
    pub fn reversed(&self) -> Graph {
        let n = self.len();
        let mut counts = vec![0u64; n + 1];
        for &t in &self.edges {
            counts[t as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut edges = vec![0u32; self.edges.len()];
        for s in 0..n as u32 {
            for &t in self.refs(s) {
                edges[fill[t as usize] as usize] = s;
                fill[t as usize] += 1;
            }
        }
        Graph {
            hashes: self.hashes.clone(),
            offsets,
            edges,
            missing_refs: 0,
        }
    }
}

/// "No node".
pub const NONE: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(i: u32) -> StorePathHash {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&(i.wrapping_mul(2654435761)).to_be_bytes());
        b[4..8].copy_from_slice(&i.to_be_bytes());
        StorePathHash(b)
    }

    fn build(n: u32, edges: &[(u32, u32)]) -> Graph {
        let mut b = GraphBuilder::default();
        for i in 0..n {
            b.add(h(i), edges.iter().filter(|e| e.0 == i).map(|e| h(e.1)));
        }
        b.build().0
    }

    #[test]
    fn missing_refs_are_counted_and_dups_merged() {
        let mut b = GraphBuilder::default();
        b.add(h(1), [h(2), h(2), h(99)]);
        b.add(h(2), []);
        let (g, ids) = b.build();
        assert_eq!(g.missing_refs, 1);
        assert_eq!(g.refs(ids[0]), &[ids[1]]);
    }

    proptest! {
        #[test]
        fn closure_is_closed_and_minimal(n in 1u32..60, raw in proptest::collection::vec((0u32..60, 0u32..60), 0..200), seeds in proptest::collection::vec(0u32..60, 0..5)) {
            let edges: Vec<(u32, u32)> = raw.into_iter().filter(|(a, b)| *a < n && *b < n).collect();
            let g = build(n, &edges);
            let seed_ids: Vec<u32> = seeds.iter().filter(|s| **s < n).map(|s| g.id(&h(*s)).unwrap()).collect();
            let p = g.closure(&seed_ids);
            // closed under references
            for s in 0..g.len() as u32 {
                if p[s as usize] != NONE {
                    for &r in g.refs(s) { prop_assert!(p[r as usize] != NONE); }
                }
            }
            // every marked node has a chain back to a seed
            for s in 0..g.len() as u32 {
                if p[s as usize] == NONE { continue; }
                let mut cur = s; let mut steps = 0;
                while p[cur as usize] != cur { let par = p[cur as usize]; prop_assert!(g.refs(par).contains(&cur)); cur = par; steps += 1; prop_assert!(steps <= g.len()); }
                prop_assert!(seed_ids.contains(&cur));
            }
            // the complement is closed under referrers
            let rev = g.reversed();
            for s in 0..g.len() as u32 {
                if p[s as usize] == NONE {
                    for &q in rev.refs(s) { prop_assert!(p[q as usize] == NONE); }
                }
            }
        }
    }
}
