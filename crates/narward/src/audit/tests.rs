use super::*;
use crate::cache_graph::build::Columns;
use crate::cache_graph::quirks;
use crate::listing::Listing;
use crate::model::ObjectRecord;
use narward_formats::narinfo::NarInfo;
use proptest::prelude::*;
use std::io::Read as _;

const CACHE_KEY: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

/// The 489 real cache.nixos.org narinfos of the formats crate's test data.
fn corpus() -> Vec<String> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../narward-formats/tests/data/cache-nixos-org-narinfos.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.split("\n\n")
        .map(|r| r.trim_end_matches('\n'))
        .filter(|r| !r.is_empty())
        .map(|r| format!("{r}\n"))
        .collect()
}

fn obj(key: String) -> ObjectRecord {
    ObjectRecord {
        key,
        size: 1,
        etag: None,
        last_modified: None,
        storage_class: None,
        link_target: None,
    }
}

/// A cache of these narinfo texts (key from each text's StorePath, as written by Nix),
/// each with its NAR object.
fn cache_of(texts: &[(String, String)]) -> (Vec<ObjectRecord>, Vec<FetchedRecord>) {
    let mut objs = Vec::new();
    let mut recs = Vec::new();
    for (key, t) in texts {
        objs.push(obj(key.clone()));
        if let Some(u) = t.lines().find_map(|l| l.strip_prefix("URL: ")) {
            objs.push(obj(keys::nar_key_for_url(u).to_string()));
        }
        recs.push(FetchedRecord {
            key: key.clone(),
            etag: None,
            size: t.len() as u64,
            text: t.clone().into_bytes(),
            fetch_error: None,
            earlier: Vec::new(),
        });
    }
    objs.sort_by(|a, b| a.key.cmp(&b.key));
    objs.dedup_by(|a, b| a.key == b.key);
    recs.sort_by(|a, b| a.key.cmp(&b.key));
    recs.dedup_by(|a, b| a.key == b.key);
    (objs, recs)
}

fn key_of(text: &str) -> String {
    let ni = NarInfo::parse(text).unwrap();
    format!("{}.narinfo", ni.store_path.hash)
}

/// For every record: the verdict audit gives (columns, or the quirk text) equals Nix's
/// verdict from the text, under `trusted`. Returns how many were quirks.
fn verdicts_agree(objs: &[ObjectRecord], recs: &[FetchedRecord], trusted: &[PublicKey]) -> usize {
    let objs = Listing::from_records(objs.to_vec()).unwrap();
    let cols = Columns::build(&objs, |f| recs.iter().try_for_each(f)).unwrap();
    let g = CacheGraph::new(cols.parts()).unwrap();
    let q = quirks::collect(&g, recs);
    for r in recs {
        let ObjectKind::Narinfo(h) = keys::classify(&r.key) else {
            continue;
        };
        let id = g.id(&h).unwrap();
        let from_text = r.parse().ok().map(|ni| ni.verify(trusted));
        let from_columns = sig_verdict(&g, &q, id, trusted);
        assert_eq!(from_columns, from_text, "{}", r.key);
    }
    q.len()
}

/// Every corpus narinfo but the two with an old `System:` line prints back byte for byte
/// from the columns (references in the cache by their paths' names, the others from the
/// holes), so only those two texts are kept, and every signature verifies from the columns.
#[test]
fn corpus_prints_back_from_the_columns_but_two_quirks() {
    let texts: Vec<(String, String)> = corpus().into_iter().map(|t| (key_of(&t), t)).collect();
    let (objs, recs) = cache_of(&texts);
    let trusted = [PublicKey::parse(CACHE_KEY).unwrap()];
    assert_eq!(verdicts_agree(&objs, &recs, &trusted), 2);
    let objs = Listing::from_records(objs).unwrap();
    let cols = Columns::build(&objs, |f| recs.iter().try_for_each(f)).unwrap();
    let g = CacheGraph::new(cols.parts()).unwrap();
    assert!(g.missing_refs() > 0, "the corpus has closure holes");
    let q = quirks::collect(&g, &recs);
    assert!(
        q.iter()
            .all(|r| String::from_utf8_lossy(&r.text).contains("\nSystem: "))
    );
    for (id, r) in recs.iter().enumerate() {
        let ni = g.narinfo(id as u32).unwrap();
        assert!(
            matches!(ni.verify(&trusted), SigStatus::Valid { .. }),
            "{}",
            r.key
        );
        if !q.iter().any(|x| x.key == r.key) {
            assert_eq!(ni.to_string().as_bytes(), &r.text[..]);
        }
    }
}

/// One edit of a corpus text.
#[derive(Debug, Clone)]
enum Edit {
    None,
    /// Flip a character of the first signature.
    Sig(usize),
    NarSize,
    DropSigs,
    /// Drop the first reference.
    DropRef,
    /// Rename the references (a name no path of the cache has).
    RenameRefs,
    /// StorePath names another path.
    StorePath,
    /// Not a narinfo any more.
    Garbage,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => Just(Edit::None),
        1 => (0usize..80).prop_map(Edit::Sig),
        1 => Just(Edit::NarSize),
        1 => Just(Edit::DropSigs),
        1 => Just(Edit::DropRef),
        1 => Just(Edit::RenameRefs),
        1 => Just(Edit::StorePath),
        1 => Just(Edit::Garbage),
    ]
}

fn apply(t: &str, e: &Edit) -> String {
    let map_line = |prefix: &str, f: &dyn Fn(&str) -> String| -> String {
        t.lines()
            .map(|l| match l.strip_prefix(prefix) {
                Some(v) => format!("{prefix}{}\n", f(v)),
                None => format!("{l}\n"),
            })
            .collect()
    };
    match e {
        Edit::None => t.to_string(),
        Edit::Sig(i) => map_line("Sig: ", &|v| {
            let mut b = v.as_bytes().to_vec();
            let k = v.find(':').map_or(0, |c| c + 1) + i % 40;
            if let Some(c) = b.get_mut(k) {
                *c = if *c == b'A' { b'B' } else { b'A' };
            }
            String::from_utf8(b).unwrap()
        }),
        Edit::NarSize => map_line("NarSize: ", &|v| {
            format!("{}", v.parse::<u64>().unwrap() + 1)
        }),
        Edit::DropSigs => t
            .lines()
            .filter(|l| !l.starts_with("Sig:"))
            .map(|l| format!("{l}\n"))
            .collect(),
        Edit::DropRef => map_line("References: ", &|v| {
            v.split(' ').skip(1).collect::<Vec<_>>().join(" ")
        }),
        Edit::RenameRefs => map_line("References: ", &|v| {
            v.split(' ')
                .map(|r| {
                    if r.is_empty() {
                        String::new()
                    } else {
                        format!("{r}x")
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        }),
        Edit::StorePath => map_line("StorePath: /nix/store/", &|v| format!("0{}", &v[1..])),
        Edit::Garbage => format!("not a narinfo\n{t}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// For every corpus narinfo, in a cache holding a random part of the corpus (so any
    /// reference may be a path of the cache or a hole), with random edits: the signature
    /// verdict audit takes from the columns (or from the quirk text `index` keeps) equals
    /// Nix's verdict from the text, with the cache's key trusted and with none.
    #[test]
    fn signature_verdict_from_columns_equals_verdict_from_text(
        picks in proptest::collection::vec((any::<bool>(), edit()), 489),
    ) {
        let texts: Vec<(String, String)> = corpus()
            .into_iter()
            .zip(&picks)
            .filter(|(_, (keep, _))| *keep)
            .map(|(t, (_, e))| (key_of(&t), apply(&t, e)))
            .collect();
        let (objs, recs) = cache_of(&texts);
        verdicts_agree(&objs, &recs, &[PublicKey::parse(CACHE_KEY).unwrap()]);
        verdicts_agree(&objs, &recs, &[]);
    }
}

#[test]
fn audit_does_not_call_a_nar_a_used_symlink_reads_an_orphan() {
    let text = corpus().swap_remove(0);
    let (mut objs, recs) = cache_of(&[(key_of(&text), text)]);
    let nar = objs
        .iter()
        .position(|o| matches!(keys::classify(&o.key), ObjectKind::Nar { .. }))
        .unwrap();
    // The narinfo's NAR is a link to NAR `b`, itself a link to NAR `c`; NAR `d` is a
    // real orphan.
    let n = |c: char| format!("nar/0{}.nar", c.to_string().repeat(51));
    objs[nar].link_target = Some(n('b'));
    let mut b = obj(n('b'));
    b.link_target = Some(n('c'));
    objs.extend([b, obj(n('c')), obj(n('d'))]);
    objs.sort_by(|a, b| a.key.cmp(&b.key));
    let index = Index::for_tests(Listing::from_records(objs).unwrap(), recs);
    let r = audit_index(&index, &[], usize::MAX).unwrap();
    assert_eq!(r.orphan_nars.count, 1, "{r:?}");
    assert_eq!(r.orphan_nars.examples, [format!("{} (1 bytes)", n('d'))]);
    assert_eq!(r.orphan_nar_bytes, 1);
}

#[test]
fn a_nar_two_narinfos_name_is_shared_and_one_named_once_is_neither_shared_nor_orphan() {
    let c = corpus();
    let url = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("URL: "))
            .unwrap()
            .to_string()
    };
    // The second narinfo points at the first one's NAR; the third keeps its own.
    let (a, b, third) = (c[0].clone(), c[1].clone(), c[2].clone());
    let b = b.replace(&url(&b), &url(&a));
    let texts = [(key_of(&a), a), (key_of(&b), b), (key_of(&third), third)];
    let (objs, recs) = cache_of(&texts);
    let index = Index::for_tests(Listing::from_records(objs).unwrap(), recs);
    let r = audit_index(&index, &[], usize::MAX).unwrap();
    assert_eq!(r.shared_nars.count, 1, "{r:?}");
    let shared = &r.shared_nars.examples[0];
    assert!(
        shared.contains(&texts[0].0) && shared.contains(&texts[1].0),
        "{shared}"
    );
    assert!(!shared.contains(&texts[2].0), "{shared}");
    assert_eq!(r.orphan_nars.count, 0, "{r:?}");
}
