//! A dense reference graph: store-path hashes mapped to `u32` ids, references as flat CSR
//! arrays, and the closure every reader shares ([`closure_of`]). The CacheGraph's hash and
//! reference columns are built with it ([`crate::cache_graph`]: what plans read, mapped);
//! restore builds small ones of its own.
//!
//! Two ways to build one: [`GraphBuilder`] takes nodes in any order (and holds references
//! as hashes until `build`); [`Graph::with_nodes`] + [`Graph::push_refs`] take the node set
//! first and the references in id order, resolving each to a `u32` at once, so building
//! never holds more than the final graph (what builds the CacheGraph columns).

use narward_formats::store_path::StorePathHash;

/// The graph. Node `i` is `hashes[i]`; its references are `edges[offsets[i]..offsets[i+1]]`.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub hashes: Vec<StorePathHash>,
    /// Lookup table: (hash, id) sorted by hash bytes, so a lookup reads no other array.
    lookup: Vec<Entry>,
    /// `lookup[buckets[b]..buckets[b + 1]]` holds the hashes whose top `bucket_bits` bits are
    /// `b` (hashes are uniform, so a bucket holds a handful).
    buckets: Vec<u32>,
    bucket_bits: u32,
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
        order.sort_unstable_by_key(|&i| hashes[i as usize].0);
        let mut sorted: Vec<StorePathHash> = Vec::with_capacity(n);
        let mut id_of = vec![0u32; n];
        for &i in &order {
            let h = hashes[i as usize];
            if sorted.last() != Some(&h) {
                sorted.push(h);
            }
            id_of[i as usize] = (sorted.len() - 1) as u32;
        }
        let lookup = |h: &StorePathHash| {
            sorted
                .binary_search_by(|x| x.0.cmp(&h.0))
                .ok()
                .map(|i| i as u32)
        };
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
        let (lookup, buckets, bucket_bits) = lookup_table(&sorted);
        (
            Graph {
                hashes: sorted,
                lookup,
                buckets,
                bucket_bits,
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

    /// A graph of these nodes (ids are positions; duplicates share the first id) and no
    /// edges yet; add references with [`Graph::push_refs`] in increasing id order.
    pub fn with_nodes(hashes: Vec<StorePathHash>, edges_hint: usize) -> Graph {
        let (lookup, buckets, bucket_bits) = lookup_table(&hashes);
        let mut offsets = Vec::with_capacity(hashes.len() + 1);
        offsets.push(0);
        Graph {
            hashes,
            lookup,
            buckets,
            bucket_bits,
            offsets,
            edges: Vec::with_capacity(edges_hint),
            missing_refs: 0,
        }
    }

    /// A graph of these nodes for lookups and [`Graph::resolve_into`] only: no reference
    /// is ever pushed (nothing is allocated for them).
    pub fn nodes_only(hashes: Vec<StorePathHash>) -> Graph {
        let (lookup, buckets, bucket_bits) = lookup_table(&hashes);
        Graph {
            hashes,
            lookup,
            buckets,
            bucket_bits,
            offsets: vec![0],
            edges: Vec::new(),
            missing_refs: 0,
        }
    }

    /// Set the references of node `id`. Ids must come in increasing order; nodes skipped
    /// have no references. References to unknown hashes are counted in `missing_refs`.
    ///
    /// # Panics
    /// If `id` is lower than an id already given (a caller bug, not bad input).
    pub fn push_refs(&mut self, id: u32, refs: impl IntoIterator<Item = StorePathHash>) {
        let id = id as usize;
        assert!(id + 1 >= self.offsets.len(), "push_refs: ids must increase");
        while self.offsets.len() <= id {
            self.offsets.push(self.edges.len() as u64);
        }
        // Grow by an eighth at a time rather than doubling: for a graph of billions of edges
        // doubling wastes up to half the memory (large reallocations are remapped by the
        // allocator, not copied).
        if self.edges.len() + 64 > self.edges.capacity() {
            self.edges
                .reserve_exact((self.edges.capacity() / 8).max(1 << 16));
        }
        let mut edges = std::mem::take(&mut self.edges);
        self.missing_refs += self.resolve_into(refs, &mut edges);
        self.edges = edges;
        self.offsets.push(self.edges.len() as u64);
    }

    /// Append the ids of `refs` to `out`, that tail sorted and deduplicated, storing
    /// nothing in the graph: one row's references resolved (what a builder that writes each
    /// row as it goes uses). Returns how many name no node (closure holes).
    pub fn resolve_into(
        &self,
        refs: impl IntoIterator<Item = StorePathHash>,
        out: &mut Vec<u32>,
    ) -> u64 {
        let start = out.len();
        let mut missing = 0;
        for r in refs {
            match self.id(&r) {
                Some(t) => out.push(t),
                None => missing += 1,
            }
        }
        out[start..].sort_unstable();
        let mut w = start;
        for r in start..out.len() {
            if r == start || out[r] != out[w - 1] {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
        missing
    }

    /// Close the graph after the last [`Graph::push_refs`].
    pub fn finish(&mut self) {
        while self.offsets.len() <= self.hashes.len() {
            self.offsets.push(self.edges.len() as u64);
        }
        // Give back the growth slack (a large allocation shrinks in place).
        self.edges.shrink_to_fit();
        self.offsets.shrink_to_fit();
    }

    pub fn id(&self, h: &StorePathHash) -> Option<u32> {
        let b = bucket(h, self.bucket_bits);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let slice = &self.lookup[lo..hi];
        let k = key(h);
        slice
            .binary_search_by(|e| (e.a, e.b, e.c).cmp(&k))
            .ok()
            .map(|i| slice[i].id)
    }

    /// The references as CSR: offsets (`len() + 1`) and target ids.
    pub fn csr(&self) -> (&[u64], &[u32]) {
        (&self.offsets, &self.edges)
    }

    /// The hashes and the reference CSR (offsets, target ids), without a copy.
    pub fn into_parts(self) -> (Vec<StorePathHash>, Vec<u64>, Vec<u32>) {
        (self.hashes, self.offsets, self.edges)
    }

    pub fn refs(&self, id: u32) -> &[u32] {
        let i = id as usize;
        &self.edges[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Mark the closure of `seeds` under references. Returns, per node, `NONE` when not
    /// reached, the node itself for a seed, or the node it was first reached from — so a
    /// chain seed → … → node can be read backwards.
    pub fn closure(&self, seeds: &[u32]) -> Vec<u32> {
        closure_of(self.len(), |i| self.refs(i), seeds)
    }
}

/// A hash as integers, so comparing two is two integer compares, not a `memcmp` call.
type Key = (u64, u64, u32);

/// One lookup entry: the hash as integers, then the id (24 bytes, ordered by hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    a: u64,
    b: u64,
    c: u32,
    id: u32,
}

fn key(h: &StorePathHash) -> Key {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    let mut c = [0u8; 4];
    a.copy_from_slice(&h.0[..8]);
    b.copy_from_slice(&h.0[8..16]);
    c.copy_from_slice(&h.0[16..]);
    (
        u64::from_be_bytes(a),
        u64::from_be_bytes(b),
        u32::from_be_bytes(c),
    )
}

fn bucket(h: &StorePathHash, bits: u32) -> usize {
    (key(h).0 >> (64 - bits)) as usize
}

/// The (hash, id) table sorted by hash bytes, its buckets, and the bucket bits (about one
/// bucket per four nodes, between 2^8 and 2^24 buckets). For duplicate hashes only the lowest id
/// is kept, so lookups are deterministic.
fn lookup_table(hashes: &[StorePathHash]) -> (Vec<Entry>, Vec<u32>, u32) {
    let mut lookup: Vec<Entry> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (a, b, c) = key(h);
            Entry {
                a,
                b,
                c,
                id: i as u32,
            }
        })
        .collect();
    lookup.sort_unstable();
    lookup.dedup_by(|x, y| (x.a, x.b, x.c) == (y.a, y.b, y.c));
    lookup.shrink_to_fit();
    // About one bucket per four nodes: a bucket is then one or two cache lines of entries,
    // and the table costs about 1 B per node.
    let bits = (usize::BITS - (hashes.len() / 4).max(1).leading_zeros()).clamp(8, 24);
    let mut buckets = vec![0u32; (1usize << bits) + 1];
    for e in &lookup {
        buckets[(e.a >> (64 - bits)) as usize + 1] += 1;
    }
    for i in 0..1usize << bits {
        buckets[i + 1] += buckets[i];
    }
    (lookup, buckets, bits)
}

/// "No node".
pub const NONE: u32 = u32::MAX;

/// Mark the closure of `seeds` under `refs` in a graph of `n` nodes. Returns, per node,
/// `NONE` when not reached, the node itself for a seed, or the node it was first reached
/// from — so a chain seed → … → node can be read backwards.
///
/// Whether a node was reached is asked of a bitset (n / 8 bytes, which stays in the CPU's
/// cache where the parents, 4 bytes a node, do not): nearly every reference names a node
/// reached already, and only a new one writes its parent.
pub fn closure_of<'r>(n: usize, refs: impl Fn(u32) -> &'r [u32], seeds: &[u32]) -> Vec<u32> {
    let mut parent = vec![NONE; n];
    let mut seen = vec![0u64; n.div_ceil(64)];
    let mut first_visit = |x: u32| {
        let (w, b) = ((x / 64) as usize, 1u64 << (x % 64));
        let new = seen[w] & b == 0;
        seen[w] |= b;
        new
    };
    let mut stack = Vec::with_capacity(1024);
    for &s in seeds {
        if first_visit(s) {
            parent[s as usize] = s;
            stack.push(s);
        }
    }
    while let Some(x) = stack.pop() {
        for &r in refs(x) {
            if first_visit(r) {
                parent[r as usize] = x;
                stack.push(r);
            }
        }
    }
    parent
}

/// The reverse of the CSR `(off, ids)` over `n` nodes: per node, the nodes naming it, in
/// increasing order.
pub fn reverse_csr(n: usize, off: &[u64], ids: &[u32]) -> (Vec<u64>, Vec<u32>) {
    let mut counts = vec![0u64; n + 1];
    for &t in ids {
        counts[t as usize + 1] += 1;
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    let offsets = counts.clone();
    let mut fill = counts;
    let mut edges = vec![0u32; ids.len()];
    for s in 0..n {
        for &t in &ids[off[s] as usize..off[s + 1] as usize] {
            edges[fill[t as usize] as usize] = s as u32;
            fill[t as usize] += 1;
        }
    }
    (offsets, edges)
}

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

    #[test]
    fn lookup_entries_are_24_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn hashes_sharing_a_prefix_are_told_apart() {
        let mut a = [7u8; 20];
        let mut b = [7u8; 20];
        a[19] = 1;
        b[19] = 2;
        let c = [7u8; 20];
        let g = Graph::with_nodes(vec![StorePathHash(a), StorePathHash(b)], 0);
        assert_eq!(g.id(&StorePathHash(a)), Some(0));
        assert_eq!(g.id(&StorePathHash(b)), Some(1));
        assert_eq!(g.id(&StorePathHash(c)), None);
    }

    proptest! {
        #[test]
        fn streaming_construction_equals_the_builder(n in 1u32..40, raw in proptest::collection::vec((0u32..40, 0u32..45), 0..150)) {
            let edges: Vec<(u32, u32)> = raw.into_iter().filter(|(a, _)| *a < n).collect();
            let a = build(n, &edges);
            let mut g = Graph::with_nodes((0..n).map(h).collect(), 0);
            for i in 0..n {
                if i % 3 == 2 { continue; } // skipped ids get no references
                g.push_refs(i, edges.iter().filter(|e| e.0 == i).map(|e| h(e.1)));
            }
            g.finish();
            for i in 0..n {
                let want: std::collections::BTreeSet<StorePathHash> = if i % 3 == 2 { Default::default() } else {
                    a.refs(a.id(&h(i)).unwrap()).iter().map(|&t| a.hashes[t as usize]).collect()
                };
                let got: std::collections::BTreeSet<StorePathHash> = g.refs(i).iter().map(|&t| g.hashes[t as usize]).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(g.id(&h(i)), Some(i));
            }
            prop_assert_eq!(g.id(&h(1000)), None);
        }

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
            let (off, ids) = g.csr();
            let (roff, rids) = reverse_csr(g.len(), off, ids);
            for s in 0..g.len() {
                if p[s] == NONE {
                    for &q in &rids[roff[s] as usize..roff[s + 1] as usize] { prop_assert!(p[q as usize] == NONE); }
                }
            }
        }
    }
}
