//! The generator's output is what it claims: narinfos that parse and verify, an index
//! narward loads (byte-identical to what `Index::save` writes), an acyclic reference graph,
//! releases that overlap, inventories that agree with the index, and a closure size that
//! narward's planner reproduces.

use narward::index::Index;
use narward::policy::Policy;
use narward_bench::corpus::{self, Corpus};
use narward_bench::generate::{self, Formats, Options, Summary};
use narward_bench::model::Dag;
use narward_formats::narinfo::NarInfo;
use narward_formats::signature::PublicKey;
use narward_formats::store_path::StorePathHash;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

const N: usize = 3000;

fn generated() -> (tempfile::TempDir, Summary) {
    let d = tempfile::tempdir().unwrap();
    let s = generate::generate(&Options {
        paths: N,
        seed: 42,
        out: d.path().to_path_buf(),
        formats: Formats::ALL,
        sign: true,
        corpus: corpus::default_path(),
    })
    .unwrap();
    (d, s)
}

fn unzstd(p: &Path) -> Vec<u8> {
    let b = std::fs::read(p).unwrap();
    let mut out = Vec::new();
    zstd::Decoder::new(&b[12..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn generated_cache_is_consistent() {
    let (d, s) = generated();
    let dir = d.path();
    assert_eq!(s.paths, N);

    // The index loads; every narinfo parses, is signed by the bench key, and is keyed by its hash.
    let idx = Index::load(&dir.join("state")).unwrap();
    assert_eq!(idx.narinfos.len(), N);
    assert_eq!(idx.objects.len() as u64, s.objects);
    assert!(idx.narinfos.windows(2).all(|w| w[0].key < w[1].key));
    assert!(
        idx.objects
            .iter()
            .zip(idx.objects.iter().skip(1))
            .all(|(a, b)| a.key() < b.key())
    );
    let pk = PublicKey::parse(
        std::fs::read_to_string(dir.join("trusted-key.txt"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let mut refs: HashMap<StorePathHash, Vec<StorePathHash>> = HashMap::new();
    for rec in &idx.narinfos {
        let ni = rec.parse().unwrap();
        assert_eq!(rec.key, format!("{}.narinfo", ni.store_path.hash));
        assert!(matches!(
            ni.verify(std::slice::from_ref(&pk)),
            narward_formats::SigStatus::Valid { .. }
        ));
        assert_eq!(
            ni.to_string(),
            std::str::from_utf8(&rec.text).unwrap(),
            "prints back byte for byte"
        );
        assert!(idx.object(ni.url).is_some(), "NAR object listed");
        refs.insert(
            ni.store_path.hash,
            ni.references.iter().map(|r| r.hash).collect(),
        );
    }

    // The generator writes with narward's own writers: every data file of its index
    // (streams and column files) is byte for byte what Index::save writes.
    let copy = tempfile::tempdir().unwrap();
    let mut idx = idx;
    let files: Vec<String> = idx.meta.files.keys().cloned().collect();
    assert!(files.len() > 3, "streams and column files: {files:?}");
    idx.save(copy.path()).unwrap();
    for f in &files {
        assert_eq!(
            std::fs::read(dir.join("state/index").join(f)).unwrap(),
            std::fs::read(copy.path().join("index").join(f)).unwrap(),
            "{f}"
        );
    }
    for f in ["objects.bin.zst", "quirks.bin.zst", "debuginfo.bin.zst"] {
        assert!(!unzstd(&dir.join("state/index").join(f)).is_empty(), "{f}");
    }
    assert!(
        !dir.join("state/index/narinfos.bin.zst").exists(),
        "no narinfo stream, as `narward index` writes none"
    );

    // Acyclic apart from self-references (Kahn), and no reference points outside the cache.
    let mut indeg: HashMap<StorePathHash, usize> = refs.keys().map(|h| (*h, 0)).collect();
    let mut edges = 0u64;
    for (h, rs) in &refs {
        for r in rs {
            edges += 1;
            assert!(refs.contains_key(r), "reference to a path not in the cache");
            if r != h {
                *indeg.get_mut(r).unwrap() += 1;
            }
        }
    }
    assert_eq!(edges, s.edges);
    let mut ready: Vec<StorePathHash> = indeg.iter().filter(|x| *x.1 == 0).map(|x| *x.0).collect();
    let mut done = 0;
    while let Some(h) = ready.pop() {
        done += 1;
        for r in &refs[&h] {
            if *r != h {
                let e = indeg.get_mut(r).unwrap();
                *e -= 1;
                if *e == 0 {
                    ready.push(*r);
                }
            }
        }
    }
    assert_eq!(done, N, "the reference graph has a cycle");

    // A small set of low-level paths (the 1 % most referenced) is referenced by most paths.
    let mut referrers: HashMap<StorePathHash, usize> = HashMap::new();
    for (h, rs) in &refs {
        for r in rs.iter().filter(|r| *r != h) {
            *referrers.entry(*r).or_default() += 1;
        }
    }
    let mut by_count: Vec<(usize, StorePathHash)> =
        referrers.iter().map(|(h, c)| (*c, *h)).collect();
    by_count.sort_unstable_by(|a, b| b.cmp(a));
    let low: HashSet<StorePathHash> = by_count.iter().take(N / 100).map(|x| x.1).collect();
    let using = refs
        .iter()
        .filter(|(h, rs)| rs.iter().any(|r| r != *h && low.contains(r)))
        .count();
    assert!(
        using * 10 > N * 6,
        "only {using} of {N} paths reference the 1 % most referenced"
    );

    // 50 releases whose roots overlap heavily.
    let mut releases: Vec<HashSet<String>> = Vec::new();
    for e in 0..50 {
        let t = std::fs::read_to_string(dir.join(format!("roots/release-{e:02}.txt"))).unwrap();
        releases.push(t.lines().map(str::to_string).collect());
    }
    for w in releases.windows(2) {
        let shared = w[1].intersection(&w[0]).count();
        assert!(
            shared * 10 >= w[1].len() * 7,
            "consecutive releases share {shared} of {}",
            w[1].len()
        );
    }
    assert!(
        releases[0].intersection(&releases[49]).count() < releases[0].len(),
        "releases change over time"
    );

    // narward's planner keeps exactly the generator's closure.
    let pol = Policy::load(&dir.join("policy.toml")).unwrap();
    let p = narward::plan::compute(&idx, &pol, "policy.toml", narward::index::now()).unwrap();
    let kept = p.header.summary.paths[&narward::plan::Decision::Keep].count;
    assert_eq!(kept, s.expected_live);
    assert_eq!(p.header.roots.missing, 0);
    assert!(
        s.expected_live > 0 && (s.expected_live as usize) < N,
        "some paths are garbage"
    );

    // The file:// cache has the same narinfos and right-sized NAR stand-ins.
    let mut files = 0;
    for e in std::fs::read_dir(dir.join("cache")).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".narinfo") {
            files += 1;
            let text = std::fs::read_to_string(e.path()).unwrap();
            let ni = NarInfo::parse(&text).unwrap();
            assert_eq!(ni.store_path.hash.to_string(), stem);
            let nar = std::fs::metadata(dir.join("cache").join(ni.url)).unwrap();
            assert_eq!(Some(nar.len()), ni.file_size);
        }
    }
    assert_eq!(files, N);

    // Both inventories list exactly the index's objects.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for fmt in ["csv", "parquet"] {
        let loc = narward::inventory::ManifestLocation::Local(generate::manifest_path(dir, fmt));
        let l = rt
            .block_on(narward::inventory::read(
                &loc,
                &narward::inventory::CacheScope::default(),
                1,
            ))
            .unwrap();
        assert_eq!(l.objects, idx.objects, "{fmt} inventory");
    }
}

#[test]
fn dag_references_point_backwards() {
    let c = Corpus::load(&corpus::default_path()).unwrap();
    let d = Dag::generate(&c, 5000, 7);
    assert_eq!(d.len(), 5000);
    for id in 0..d.len() as u32 {
        assert!(d.refs(id).iter().all(|&t| t < id));
    }
    assert_eq!(d.releases.len(), 50);
    // Same seed, same data.
    let d2 = Dag::generate(&c, 5000, 7);
    assert_eq!(d.hashes, d2.hashes);
}
