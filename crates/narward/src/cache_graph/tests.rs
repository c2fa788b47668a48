use super::build::Columns;
use super::*;
use crate::model::{FetchedRecord, ObjectRecord};
use narward_formats::store_path::StorePathHash;
use proptest::prelude::*;

fn obj(key: &str) -> ObjectRecord {
    ObjectRecord {
        link_target: None,
        key: key.into(),
        size: 1,
        etag: None,
        last_modified: None,
        storage_class: None,
    }
}

/// A cache of `n` paths, path `i` referencing path `i + 1`; path 1's narinfo is garbage.
fn columns(n: usize) -> (crate::listing::Listing, Columns) {
    let hashes: Vec<String> = (0..n)
        .map(|i| StorePathHash([i as u8 * 7 + 1; 20]).to_string())
        .collect();
    let mut objs: Vec<ObjectRecord> = hashes
        .iter()
        .map(|h| obj(&format!("{h}.narinfo")))
        .collect();
    objs.extend(hashes.iter().map(|h| obj(&format!("nar/{h}.nar"))));
    objs.sort_by(|a, b| a.key.cmp(&b.key));
    let mut recs: Vec<FetchedRecord> = (0..n)
        .map(|i| {
            let h = &hashes[i];
            let next = hashes.get(i + 1).map_or(String::new(), |r| format!("{r}-p"));
            let text = if i == 1 {
                format!("garbage naming /nix/store/{next} and nar/{h}.nar\n")
            } else {
                format!(
                    "StorePath: /nix/store/{h}-p\nURL: nar/{h}.nar\nCompression: none\nNarHash: sha256:{}\nNarSize: 1\nReferences: {next}\n",
                    "0".repeat(52)
                )
            };
            FetchedRecord {
                key: format!("{h}.narinfo"),
                etag: None,
                size: 1,
                text: text.into_bytes(),
                fetch_error: None,
                earlier: Vec::new(),
            }
        })
        .collect();
    recs.sort_by(|a, b| a.key.cmp(&b.key));
    let objs = crate::listing::Listing::from_records(objs).unwrap();
    let c = Columns::build(&objs, |f| recs.iter().try_for_each(f)).unwrap();
    (objs, c)
}

#[test]
fn ids_follow_narinfo_key_order_and_lookups_find_every_path() {
    let (objs, c) = columns(20);
    let g = CacheGraph::new(c.parts()).unwrap();
    let keys: Vec<String> = objs
        .iter()
        .map(|o| o.key().to_string())
        .filter(|k| k.ends_with(".narinfo"))
        .collect();
    assert_eq!(g.len(), keys.len());
    for (id, k) in keys.iter().enumerate() {
        let h = g.hash(id as u32);
        assert_eq!(format!("{h}.narinfo"), *k);
        assert_eq!(g.id(&h), Some(id as u32));
    }
    assert_eq!(g.id(&StorePathHash([0; 20])), None);
}

#[test]
fn an_unparseable_narinfo_keeps_what_its_text_names() {
    let (_, c) = columns(4);
    let g = CacheGraph::new(c.parts()).unwrap();
    let h = |i: usize| StorePathHash([i as u8 * 7 + 1; 20]);
    let broken = g.id(&h(1)).unwrap();
    assert_eq!(g.status(broken), Status::Unparseable);
    assert_eq!(g.unparseable(), 1);
    // Its own hash (in the NAR key) and the next path's.
    assert!(g.refs(broken).contains(&g.id(&h(2)).unwrap()));
    assert!(
        g.nar_object(broken).is_some(),
        "its NAR is found in the text"
    );
    // Referrers are the reverse of references.
    let p0 = g.id(&h(0)).unwrap();
    assert!(g.referrers(broken).contains(&p0));
    assert_eq!(g.status(p0), Status::Parsed);
    assert_eq!(g.name(p0), "p");
    assert_eq!(g.compression(p0), compression_code(Some("none")));
}

#[test]
fn damaged_columns_are_refused_naming_the_file() {
    let (_, c) = columns(6);
    let mut bad = c.clone();
    bad.refs[0] = 99;
    let e = CacheGraph::new(bad.parts()).unwrap_err().to_string();
    assert!(e.contains("refs"), "{e}");
    let mut bad = c.clone();
    bad.name.off[1] = u64::MAX;
    let e = CacheGraph::new(bad.parts()).unwrap_err().to_string();
    assert!(e.contains("paths.name"), "{e}");
    let mut bad = c.clone();
    bad.status[2] = 9;
    let e = CacheGraph::new(bad.parts()).unwrap_err().to_string();
    assert!(e.contains("paths.status"), "{e}");
    let mut bad = c.clone();
    bad.hash.swap(0, 1);
    let e = CacheGraph::new(bad.parts()).unwrap_err().to_string();
    assert!(e.contains("paths.hash"), "{e}");
    let mut bad = c;
    bad.nar_size.pop();
    let e = CacheGraph::new(bad.parts()).unwrap_err().to_string();
    assert!(e.contains("paths.nar_size"), "{e}");
}

#[test]
fn column_files_round_trip_through_bytes() {
    let (_, c) = columns(9);
    let files = c.files();
    assert_eq!(files.len(), FILES.len());
    // Copy each file into u64-aligned storage, as a memory map would be.
    let owned: Vec<(&str, Vec<u64>, usize)> = files
        .iter()
        .map(|(n, b)| {
            let mut v = vec![0u64; b.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..b.len()].copy_from_slice(b);
            (*n, v, b.len())
        })
        .collect();
    let get = |name: &str| -> &[u8] {
        owned
            .iter()
            .find(|f| f.0 == name)
            .map_or(&[][..], |f| &bytemuck::cast_slice::<u64, u8>(&f.1)[..f.2])
    };
    let g = CacheGraph::new(parts_from_bytes(&get).unwrap()).unwrap();
    let want = CacheGraph::new(c.parts()).unwrap();
    for id in 0..g.len() as u32 {
        assert_eq!(g.hash(id), want.hash(id));
        assert_eq!(g.refs(id), want.refs(id));
        assert_eq!(g.why(id), want.why(id));
        assert_eq!(g.url(id), want.url(id));
    }
}

proptest! {
    #[test]
    fn key_order_is_the_order_of_narinfo_keys(a in any::<[u8; 20]>(), b in any::<[u8; 20]>()) {
        let (ka, kb) = (StorePathHash(a).to_string(), StorePathHash(b).to_string());
        prop_assert_eq!(key_order(&a, &b), ka.cmp(&kb));
    }

    #[test]
    fn buckets_follow_key_order_at_every_table_size(a in any::<[u8; 20]>(), b in any::<[u8; 20]>(), bits in 12u32..=26) {
        use super::view::bucket;
        if key_order(&a, &b).is_le() {
            prop_assert!(bucket(&a, bits) <= bucket(&b, bits));
        }
        prop_assert!(bucket(&a, bits) < 1 << bits);
    }

    #[test]
    fn key_order_agrees_with_keys_that_differ_in_one_byte(a in any::<[u8; 20]>(), at in 0usize..20, v in any::<u8>()) {
        let mut b = a;
        b[at] = v;
        let (ka, kb) = (StorePathHash(a).to_string(), StorePathHash(b).to_string());
        prop_assert_eq!(key_order(&a, &b), ka.cmp(&kb));
        prop_assert_eq!(key_order(&a, &a), std::cmp::Ordering::Equal);
    }
}

#[test]
fn snapshot_quirk_lookup_builds_no_key_and_finds_what_the_key_finds() {
    let (_, c) = columns(20);
    let g = CacheGraph::new(c.parts()).unwrap();
    // Every other path has a quirk, plus keys sorting right next to theirs.
    let mut quirks: Vec<FetchedRecord> = (0..g.len() as u32)
        .step_by(2)
        .flat_map(|id| {
            let h = g.hash(id).to_string();
            [format!("{h}.narinfo"), format!("{h}.narinfo0"), h]
        })
        .map(|key| FetchedRecord {
            key,
            etag: None,
            size: 1,
            text: b"x".to_vec(),
            fetch_error: None,
            earlier: Vec::new(),
        })
        .collect();
    quirks.sort_by(|a, b| a.key.cmp(&b.key));
    for id in 0..g.len() as u32 {
        let key = format!("{}.narinfo", g.hash(id));
        let want = quirks::find(&quirks, &key).map(|r| r.key.as_str());
        assert_eq!(quirks::of(&g, &quirks, id).map(|r| r.key.as_str()), want);
        assert_eq!(want.is_some(), id % 2 == 0, "{key}");
    }
    assert!(quirks::of(&g, &[], 0).is_none());
}

#[test]
fn the_checks_let_go_of_every_column_file_they_scan_once_each() {
    let (_, c) = columns(9);
    let mut rec = Recorded::default();
    let g = CacheGraph::new_releasing(c.parts(), &mut rec).unwrap();
    let released = rec.done;
    // Stretches passed only move forward within a file, never past its end, and a file is
    // passed only before it is done.
    for (i, (f, bytes)) in rec.passed.iter().enumerate() {
        let len = c.files().into_iter().find(|x| x.0 == f).map(|x| x.1.len());
        assert!(Some(*bytes) <= len, "{f}: passed {bytes} of {len:?}");
        let before = rec.passed[..i]
            .iter()
            .filter(|p| &p.0 == f)
            .map(|p| p.1)
            .max();
        assert!(before.is_none_or(|b| b <= *bytes), "{f} passed backwards");
        assert!(
            !released[..rec.done_at[i]].contains(f),
            "{f} passed after done"
        );
    }
    for f in ["refs.ids", "referrers.ids", "refs.off", "extra_nars.ids"] {
        assert!(rec.passed.iter().any(|p| p.0 == f), "{f} never passed");
    }
    let mut sorted = released.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        released.len(),
        "a file let go twice: {released:?}"
    );
    let scanned: Vec<&str> = FILES
        .iter()
        .map(|f| f.0)
        .filter(|n| n.ends_with(".off") || n.ends_with(".heap") || n.ends_with(".ids"))
        .chain(["paths.status", "paths.nar_object"])
        .collect();
    for f in &scanned {
        assert!(
            released.iter().any(|r| r == f),
            "{f} never let go: {released:?}"
        );
    }
    assert_eq!(released.len(), scanned.len(), "{released:?}");
    // The lookups still read `paths.hash`: it is never let go by the checks.
    assert!(!released.iter().any(|r| r == "paths.hash"));
    let want = CacheGraph::new(c.parts()).unwrap();
    for id in 0..g.len() as u32 {
        assert_eq!(g.refs(id), want.refs(id));
        assert_eq!(g.id(&g.hash(id)), Some(id));
    }
}

/// What the checks told: the stretches passed (with how many files were done by then)
/// and the files done.
#[derive(Default)]
struct Recorded {
    passed: Vec<(String, usize)>,
    done_at: Vec<usize>,
    done: Vec<String>,
}

impl Checked for Recorded {
    fn passed(&mut self, file: &str, bytes: usize) {
        self.passed.push((file.to_string(), bytes));
        self.done_at.push(self.done.len());
    }

    fn done(&mut self, file: &str) {
        self.done.push(file.to_string());
    }
}

#[test]
fn the_bucket_table_grows_with_the_paths_about_four_a_bucket() {
    use super::view::bucket_bits;
    assert_eq!(bucket_bits(0), 12);
    assert_eq!(bucket_bits(10_000_000), 22);
    assert_eq!(bucket_bits(275_000_000), 26);
    for n in [100_000usize, 1_000_000, 10_000_000] {
        let per = n as f64 / f64::from(1u32 << bucket_bits(n));
        assert!((1.0..=4.0).contains(&per), "{n}: {per} paths a bucket");
    }
}

/// Counts the times a scan let its pages go.
struct Counting(std::cell::Cell<u32>);

impl LetGo for Counting {
    fn let_go(&self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn a_scan_lets_its_pages_go_once_per_stretch_of_paths() {
    let (objs, c) = columns(3);
    let g = CacheGraph::new(c.parts()).unwrap();
    let index = crate::index::Index::for_tests(objs, Vec::new());
    let pages = Counting(std::cell::Cell::new(0));
    let s = Snapshot {
        index: &index,
        graph: &g,
        quirks: &[],
        pages: Pages(Some(&pages)),
    };
    for id in 0..3 * SCAN_STRETCH + 5 {
        s.pages.scanned(id);
    }
    assert_eq!(pages.0.get(), 3);
    s.pages.let_go();
    assert_eq!(pages.0.get(), 4);
    // Columns held in memory have nothing to let go.
    Pages(None).let_go();
    assert_eq!(pages.0.get(), 4);
}
