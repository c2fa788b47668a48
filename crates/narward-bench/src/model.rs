//! The shape of a synthetic cache: a DAG of store paths built over 50 "releases".
//!
//! Paths are created in time order, so a path's id is also a topological rank: every
//! reference points to a lower id (plus an optional self-reference, as 36 % of real
//! narinfos have). Three kinds of paths:
//!
//! - **core** (`C` = n/500, at most 4,000): low-level paths (glibc, zlib, openssl…). Core
//!   slot `j` references lower slots only; references to core are drawn with a cubic skew
//!   toward slot 0, so a few thousand paths are referenced by most others.
//! - **packages** (`S` = n/25 slots): a package slot references core and lower package
//!   slots. One release is the current value of every slot; between releases 10 % of the
//!   core and 15 % of the package slots are rebuilt (new paths), so consecutive releases
//!   share about 85 % of their roots and most of their closure.
//! - **garbage**: staging/PR builds that no release contains (about two thirds of the
//!   paths); they reference the core and packages of their epoch and each other.
//!
//! A release's roots are the current paths of a fixed set of `S/4` "job" slots, like
//! Hydra's `store-paths` (roots, not closures). Each path takes one real corpus record:
//! its name, NAR and file size, number of references, self-reference, deriver and CA.

use crate::corpus::Corpus;
use crate::rng::{Rng, derived};
use narward_formats::store_path::StorePathHash;

/// Unix time of epoch 0 (2025-01-06, a Monday); one epoch (release) per week.
pub const BASE_TIME: i64 = 1_736_121_600;
pub const EPOCH_SECS: i64 = 7 * 86_400;

/// Sizes of the model for `n` paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub n: usize,
    pub releases: usize,
    pub core: usize,
    pub packages: usize,
    pub roots_per_release: usize,
    pub core_rebuilt_per_release: usize,
    pub packages_rebuilt_per_release: usize,
}

/// The smallest supported cache.
pub const MIN_PATHS: usize = 1000;

impl Shape {
    pub fn for_paths(n: usize) -> Shape {
        let n = n.max(MIN_PATHS);
        let core = (n / 500).clamp(20, 4000);
        let packages = (n / 25).max(40);
        Shape {
            n,
            releases: 50,
            core,
            packages,
            roots_per_release: (packages / 4).max(1),
            core_rebuilt_per_release: core.div_ceil(10),
            packages_rebuilt_per_release: (packages * 3).div_ceil(20),
        }
    }

    /// Paths that belong to some release's package set (core and packages).
    pub fn release_paths(&self) -> usize {
        self.core
            + self.packages
            + (self.releases - 1)
                * (self.core_rebuilt_per_release + self.packages_rebuilt_per_release)
    }
}

/// What kind of path an id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Core = 0,
    Package = 1,
    Garbage = 2,
}

/// The generated graph. Per-path values that are not stored (hashes of the NAR, of the
/// compressed file, of the deriver) are derived from `(seed, id)` on demand.
pub struct Dag {
    pub seed: u64,
    pub shape: Shape,
    pub hashes: Vec<StorePathHash>,
    /// Corpus record of each path.
    pub rec: Vec<u16>,
    pub kind: Vec<Kind>,
    pub epoch: Vec<u8>,
    /// First id of each epoch, plus `n` at the end.
    pub epoch_start: Vec<u32>,
    ref_off: Vec<u64>,
    /// References other than self, to lower ids, sorted by id.
    refs: Vec<u32>,
    /// Root ids of each release.
    pub releases: Vec<Vec<u32>>,
}

impl Dag {
    /// Build the DAG for `n` paths (at least [`MIN_PATHS`]).
    pub fn generate(corpus: &Corpus, n: usize, seed: u64) -> Dag {
        let shape = Shape::for_paths(n);
        let n = shape.n;
        let mut rng = Rng::new(seed);
        let low = corpus.low_level(8);
        let nrec = corpus.records.len() as u64;
        let est_edges = (n as f64 * corpus.mean_refs() * 1.02) as usize;
        let mut d = Dag {
            seed,
            shape,
            hashes: Vec::with_capacity(n),
            rec: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            epoch: Vec::with_capacity(n),
            epoch_start: Vec::with_capacity(shape.releases + 1),
            ref_off: Vec::with_capacity(n + 1),
            refs: Vec::with_capacity(est_edges),
            releases: Vec::with_capacity(shape.releases),
        };
        d.ref_off.push(0);
        let (c, s) = (shape.core, shape.packages);
        let mut core = vec![0u32; c];
        let mut pkgs = vec![0u32; s];
        let mut root_slots = sample_sorted(&mut rng, s, shape.roots_per_release);
        root_slots.sort_unstable();
        let garbage_total = n - shape.release_paths();
        let mut tmp: Vec<u32> = Vec::with_capacity(1024);
        let mut garbage_now: Vec<u32> = Vec::new();
        for e in 0..shape.releases {
            d.epoch_start.push(d.hashes.len() as u32);
            let core_slots: Vec<usize> = if e == 0 {
                (0..c).collect()
            } else {
                sample_sorted(&mut rng, c, shape.core_rebuilt_per_release)
            };
            for j in core_slots {
                let r = low[rng.below(low.len() as u64) as usize];
                let k = corpus.records[r as usize].refs as usize;
                draw(&mut rng, k, &mut tmp, |rng| {
                    (j > 0).then(|| {
                        let u = rng.unit();
                        core[(j as f64 * u * u) as usize]
                    })
                });
                core[j] = d.push(&mut rng, r, Kind::Core, e, &tmp);
            }
            let pkg_slots: Vec<usize> = if e == 0 {
                (0..s).collect()
            } else {
                sample_sorted(&mut rng, s, shape.packages_rebuilt_per_release)
            };
            for k_slot in pkg_slots {
                let r = rng.below(nrec) as u16;
                let k = corpus.records[r as usize].refs as usize;
                draw(&mut rng, k, &mut tmp, |rng| {
                    let u = rng.unit();
                    Some(if k_slot == 0 || rng.chance(0.5) {
                        core[(c as f64 * u * u * u) as usize]
                    } else {
                        pkgs[(k_slot as f64 * u * u) as usize]
                    })
                });
                pkgs[k_slot] = d.push(&mut rng, r, Kind::Package, e, &tmp);
            }
            let g = garbage_total / shape.releases
                + if e + 1 == shape.releases {
                    garbage_total % shape.releases
                } else {
                    0
                };
            garbage_now.clear();
            for _ in 0..g {
                let r = rng.below(nrec) as u16;
                let k = corpus.records[r as usize].refs as usize;
                let v_slot = rng.below(s as u64) as f64;
                draw(&mut rng, k, &mut tmp, |rng| {
                    let x = rng.unit();
                    let u = rng.unit();
                    Some(if x < 0.4 {
                        core[(c as f64 * u * u * u) as usize]
                    } else if x < 0.8 || garbage_now.is_empty() {
                        pkgs[(v_slot * u * u) as usize]
                    } else {
                        garbage_now[(garbage_now.len() as f64 * u) as usize]
                    })
                });
                let id = d.push(&mut rng, r, Kind::Garbage, e, &tmp);
                garbage_now.push(id);
            }
            // Hydra's `store-paths` lists build outputs, never `.drv` files (and Nix
            // would read a `.drv` installable's content instead of its narinfo).
            let roots = root_slots
                .iter()
                .map(|&sl| pkgs[sl])
                .filter(|&id| {
                    !corpus.records[d.rec[id as usize] as usize]
                        .name
                        .ends_with(".drv")
                })
                .collect();
            d.releases.push(roots);
        }
        d.epoch_start.push(d.hashes.len() as u32);
        debug_assert_eq!(d.hashes.len(), n);
        d.refs.shrink_to_fit();
        d
    }

    fn push(&mut self, rng: &mut Rng, rec: u16, kind: Kind, epoch: usize, refs: &[u32]) -> u32 {
        let id = self.hashes.len() as u32;
        let mut h = [0u8; 20];
        rng.fill(&mut h);
        self.hashes.push(StorePathHash(h));
        self.rec.push(rec);
        self.kind.push(kind);
        self.epoch.push(epoch as u8);
        self.refs.extend_from_slice(refs);
        self.ref_off.push(self.refs.len() as u64);
        id
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// References other than self (all to lower ids).
    pub fn refs(&self, id: u32) -> &[u32] {
        let i = id as usize;
        &self.refs[self.ref_off[i] as usize..self.ref_off[i + 1] as usize]
    }

    pub fn self_ref(&self, corpus: &Corpus, id: u32) -> bool {
        corpus.records[self.rec[id as usize] as usize].self_ref
    }

    /// Edges as written in narinfos (self-references included).
    pub fn edge_count(&self, corpus: &Corpus) -> u64 {
        self.refs.len() as u64
            + (0..self.len() as u32)
                .filter(|&i| self.self_ref(corpus, i))
                .count() as u64
    }

    /// When the path was uploaded: its epoch's week, spread by creation order.
    pub fn last_modified(&self, id: u32) -> i64 {
        let e = self.epoch[id as usize] as usize;
        let (a, b) = (self.epoch_start[e] as i64, self.epoch_start[e + 1] as i64);
        BASE_TIME + e as i64 * EPOCH_SECS + (id as i64 - a) * (EPOCH_SECS - 1) / (b - a).max(1)
    }

    pub fn nar_hash(&self, id: u32) -> [u8; 32] {
        derived(self.seed, id, 1)
    }
    /// The SHA-256 of the (compressed) NAR file, which names it: `nar/<nix32>.nar.xz`.
    pub fn file_hash(&self, id: u32) -> [u8; 32] {
        derived(self.seed, id, 2)
    }
    pub fn deriver_hash(&self, id: u32) -> StorePathHash {
        StorePathHash(derived(self.seed, id, 3))
    }
    pub fn ca_hash(&self, id: u32) -> [u8; 32] {
        derived(self.seed, id, 4)
    }
    /// A stand-in ETag (S3 uses the MD5 of the content; nothing here checks it).
    pub fn etag(&self, id: u32, object: u64) -> String {
        hex::encode(derived::<16>(self.seed, id, 8 + object))
    }

    /// Ids of the closure of every release's roots (what a correct planner keeps).
    pub fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.len()];
        let mut stack: Vec<u32> = Vec::new();
        for r in self.releases.iter().flatten() {
            if !live[*r as usize] {
                live[*r as usize] = true;
                stack.push(*r);
            }
        }
        while let Some(x) = stack.pop() {
            for &t in self.refs(x) {
                if !live[t as usize] {
                    live[t as usize] = true;
                    stack.push(t);
                }
            }
        }
        live
    }

    /// Distinct roots over all releases.
    pub fn distinct_roots(&self) -> usize {
        let mut v: Vec<u32> = self.releases.iter().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    }

    /// Ids in the order of their `<hash>.narinfo` keys.
    pub fn by_hash(&self) -> Vec<u32> {
        let mut o: Vec<u32> = (0..self.len() as u32).collect();
        o.sort_unstable_by_key(|&i| self.hashes[i as usize]);
        o
    }

    /// Ids in the order of their `nar/<filehash>.nar.xz` keys (nix32 text order is the
    /// numeric order of the little-endian hash, i.e. its bytes compared from the last).
    pub fn by_file_hash(&self) -> Vec<u32> {
        let mut o: Vec<u32> = (0..self.len() as u32).collect();
        o.sort_by_cached_key(|&i| {
            let mut h = self.file_hash(i);
            h.reverse();
            h
        });
        o
    }
}

/// `k` distinct values of `0..m`, sorted.
fn sample_sorted(rng: &mut Rng, m: usize, k: usize) -> Vec<usize> {
    let k = k.min(m);
    let mut v: Vec<usize> = (0..m).collect();
    for i in 0..k {
        let j = i + rng.below((m - i) as u64) as usize;
        v.swap(i, j);
    }
    v.truncate(k);
    v.sort_unstable();
    v
}

/// Up to `k` distinct targets from `pick` (fewer when the pools are too small).
fn draw(
    rng: &mut Rng,
    k: usize,
    out: &mut Vec<u32>,
    mut pick: impl FnMut(&mut Rng) -> Option<u32>,
) {
    out.clear();
    if k == 0 {
        return;
    }
    let mut attempts = 0;
    while out.len() < k && attempts < 3 * k + 16 {
        attempts += 1;
        match pick(rng) {
            Some(t) => out.push(t),
            None => break,
        }
        if out.len() == k {
            out.sort_unstable();
            out.dedup();
        }
    }
    out.sort_unstable();
    out.dedup();
}
