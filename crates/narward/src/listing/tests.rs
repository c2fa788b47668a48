use super::*;
use narward_formats::hash::Sha256;
use proptest::prelude::*;

fn rec(key: &str, etag: Option<&str>, class: Option<&str>) -> ObjectRecord {
    ObjectRecord {
        key: key.into(),
        size: key.len() as u64,
        etag: etag.map(Into::into),
        last_modified: Some(1_700_000_000),
        storage_class: class.map(Into::into),
        link_target: None,
    }
}

fn etag_strategy() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[0-9a-f]{32}".prop_map(Some),
        ("[0-9a-f]{32}", 0u32..20_000).prop_map(|(h, n)| Some(format!("{h}-{n}"))),
        // Odd ones: upper case, leading zero parts, huge part counts, short, empty, unicode.
        "[0-9A-F]{32}".prop_map(Some),
        "[0-9a-f]{32}-0[0-9]{1,3}".prop_map(Some),
        "[0-9a-f]{32}-[0-9]{10,12}".prop_map(Some),
        "[0-9a-f]{32}-".prop_map(Some),
        "\\PC{0,40}".prop_map(Some),
    ]
}

fn class_strategy() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(narward_formats::storage_class::NAMES.to_vec())
            .prop_map(|s| Some(s.to_string())),
        "[A-Z_]{0,12}".prop_map(Some),
        "\\PC{0,8}".prop_map(Some),
    ]
}

const NIX32: &str = "[0-9a-df-np-sv-z]";

fn re(r: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(r).unwrap().boxed()
}

/// Keys of every shape a listing packs, near misses of them, and any text.
fn key_strategy() -> impl Strategy<Value = String> {
    let ext = "(|\\.xz|\\.zst|\\.bz2|\\.lzip|\\.lz4|\\.br|\\.gz|\\.XZ|x)";
    prop_oneof![
        re("\\PC{0,60}"),
        re(&format!("{NIX32}{{32}}\\.(narinfo|ls)")),
        // Not nix32 (e, o, t, u), a wrong length, upper case.
        re("[0-9a-z]{31,33}\\.(narinfo|ls)"),
        re("[0-9A-Z]{32}\\.narinfo"),
        re(&format!("nar/{NIX32}{{52}}\\.nar{ext}")),
        // 52 digits whose first one sets bits above 256 (not canonical).
        re(&format!("nar/[g-z]{NIX32}{{51}}\\.nar\\.xz")),
        re("nar/[0-9a-z]{50,53}\\.nar(\\.xz)?"),
        re("debuginfo/[0-9a-fA-F]{39,41}"),
        re("debuginfo/[0-9a-f]{40}"),
    ]
}

fn record_strategy() -> impl Strategy<Value = ObjectRecord> {
    (
        key_strategy(),
        prop_oneof![any::<u64>(), 0u64..1 << 33, Just(u64::from(u32::MAX))],
        etag_strategy(),
        prop_oneof![
            Just(None),
            any::<i64>().prop_map(Some),
            (0i64..1 << 33).prop_map(Some),
            Just(Some(i64::MIN)),
            Just(Some(i64::from(u32::MAX))),
        ],
        class_strategy(),
        prop_oneof![Just(None), "\\PC{0,30}".prop_map(Some)],
    )
        .prop_map(
            |(key, size, etag, last_modified, storage_class, link_target)| ObjectRecord {
                key,
                size,
                etag,
                last_modified,
                storage_class,
                link_target,
            },
        )
}

proptest! {
    /// A listing gives back exactly the records it was built from, in key order, and finds
    /// each key (and no other).
    #[test]
    fn listing_gives_back_every_record(
        mut records in proptest::collection::vec(record_strategy(), 0..120),
        absent in "\\PC{0,20}",
    ) {
        records.sort_by(|a, b| a.key.cmp(&b.key));
        records.dedup_by(|a, b| a.key == b.key);
        let mut shuffled = records.clone();
        shuffled.reverse();
        let l = Listing::from_records(shuffled).unwrap();
        prop_assert_eq!(l.len(), records.len());
        for (i, r) in records.iter().enumerate() {
            prop_assert_eq!(&l.to_record(i).unwrap(), r);
            prop_assert_eq!(l.find(&r.key), Some(i));
            let o = l.at(i);
            prop_assert_eq!(o.storage_class(), r.storage_class());
            prop_assert_eq!(o.is_archived(), r.is_archived());
            prop_assert_eq!(o.category(), r.category());
            if let Some(e) = &r.etag {
                prop_assert!(o.etag().is_some_and(|x| x == e.as_str()));
            }
        }
        prop_assert_eq!(l.to_records(), records.clone());
        prop_assert_eq!(l.iter().rev().count(), records.len());
        prop_assert!(l.get(records.len()).is_none());
        if !records.iter().any(|r| r.key == absent) {
            prop_assert_eq!(l.find(&absent), None);
        }
    }
}

proptest! {
    /// Records in any order, some keys twice: the listing holds each key once, sorted,
    /// with the first record pushed for it.
    #[test]
    fn unsorted_listing_sorts_and_keeps_the_first_of_a_key(
        records in proptest::collection::vec(record_strategy(), 0..80),
        repeat in proptest::collection::vec(any::<proptest::sample::Index>(), 0..20),
    ) {
        let mut all = records.clone();
        for r in &repeat {
            if !records.is_empty() {
                let mut again = records[r.index(records.len())].clone();
                again.size = again.size.wrapping_add(1);
                all.push(again);
            }
        }
        let mut want: Vec<ObjectRecord> = Vec::new();
        for r in &all {
            if !want.iter().any(|w| w.key == r.key) {
                want.push(r.clone());
            }
        }
        want.sort_by(|a, b| a.key.cmp(&b.key));
        let mut u = UnsortedListing::new();
        for r in all {
            u.push(r);
        }
        prop_assert_eq!(u.finish().to_records(), want);
    }
}

#[test]
fn listing_refuses_duplicates_and_disorder() {
    let mut l = Listing::new();
    l.push(rec("b", None, None)).unwrap();
    assert_eq!(
        l.push(rec("b", None, None)),
        Err(ListingError::Duplicate("b".into()))
    );
    assert!(matches!(
        l.push(rec("a", None, None)),
        Err(ListingError::OutOfOrder { .. })
    ));
    assert_eq!(l.len(), 1);
    assert!(Listing::from_records(vec![rec("x", None, None), rec("x", None, None)]).is_err());
    let collected: Result<Listing, _> = [rec("z", None, None), rec("y", None, None)]
        .into_iter()
        .collect();
    assert_eq!(collected.unwrap().at(0).key(), "y");
}

#[test]
fn etags_are_stored_compactly_and_compare_as_text() {
    let md5 = "0123456789abcdef0123456789abcdef";
    let multi = format!("{md5}-12");
    let l = Listing::from_records(vec![
        rec("a", Some(md5), Some("STANDARD")),
        rec("b", Some(&multi), None),
        rec("c", Some("W/\"x\""), Some("REDUCED_REDUNDANCY")),
        rec("d", Some(&format!("{md5}-012")), Some("DEEP_ARCHIVE")),
    ])
    .unwrap();
    assert!(matches!(l.at(0).etag(), Some(Etag::Md5(_))));
    assert!(matches!(l.at(1).etag(), Some(Etag::Multipart(_, 12))));
    assert!(matches!(l.at(2).etag(), Some(Etag::Text(t)) if t == "W/\"x\""));
    assert!(matches!(l.at(3).etag(), Some(Etag::Text(_))));
    assert_eq!(l.at(1).etag().unwrap().to_string(), multi);
    assert!(l.at(0).etag().unwrap() == md5);
    assert!(l.at(0).etag().unwrap() != multi.as_str());
    // An explicit STANDARD stays distinguishable from none; an unknown class is kept.
    assert_eq!(l.at(0).listed_storage_class(), Some("STANDARD"));
    assert_eq!(l.at(1).listed_storage_class(), None);
    assert_eq!(l.at(2).storage_class(), "REDUCED_REDUNDANCY");
    assert!(l.at(3).is_archived());
    assert!(l.etag_text.len() == 2 && l.parts.len() == 1 && l.class_text.len() == 1);
}

/// Issue 9: an object with an MD5 ETag costs 30 bytes plus its packed key: a narinfo 50,
/// a NAR 62, a key of another shape its length (and 8 bytes per 65,536 objects).
#[test]
fn listing_costs_30_bytes_per_object_plus_its_packed_key() {
    let n = 30_000;
    let records: Vec<ObjectRecord> = (0..n)
        .map(|i: usize| {
            let h20 = nixbase32::encode(&Sha256::digest(&i.to_le_bytes()).0[..20]);
            let h32 = nixbase32::encode(&Sha256::digest(&i.to_be_bytes()).0);
            let key = match i % 3 {
                0 => format!("{h20}.narinfo"),
                1 => format!("nar/{h32}.nar.xz"),
                _ => format!("log/{h20}-hello-{i}.drv"),
            };
            let etag = format!("{:032x}", i * 7919);
            let mut r = rec(&key, Some(&etag), None);
            r.storage_class = i.is_multiple_of(3).then(|| "DEEP_ARCHIVE".into());
            r.last_modified = Some(1_700_000_000 + i as i64);
            r
        })
        .collect();
    let text: usize = records
        .iter()
        .filter(|r| r.key.starts_with("log/"))
        .map(|r| r.key.len())
        .sum();
    let l = Listing::from_records(records.clone()).unwrap();
    // One block of key ends: its start is 8 bytes.
    assert_eq!(
        l.heap_bytes(),
        text + 20 * (n / 3) + 32 * (n / 3) + 30 * n + 8
    );
    assert_eq!(l.to_records(), {
        let mut r = records;
        r.sort_by(|a, b| a.key.cmp(&b.key));
        r
    });
}

proptest! {
    /// Packed keys order as their texts (the sort and the search compare them packed).
    #[test]
    fn packed_keys_order_and_are_found_as_their_texts(
        keys in proptest::collection::vec(key_strategy(), 0..60),
    ) {
        let mut u = UnsortedListing::new();
        for k in &keys {
            u.push(rec(k, None, None));
        }
        let l = u.finish();
        let mut want = keys.clone();
        want.sort();
        want.dedup();
        let got: Vec<String> = l.iter().map(|o| o.key().to_string()).collect();
        prop_assert_eq!(&got, &want);
        for (i, k) in want.iter().enumerate() {
            prop_assert_eq!(l.find(k), Some(i));
            let o = l.at(i);
            let key = o.key();
            prop_assert_eq!(key.kind(), keys::classify(k));
            prop_assert_eq!(o.category(), keys::classify(k).category());
            let h = match keys::classify(k) {
                keys::ObjectKind::Narinfo(h) => Some(h),
                _ => None,
            };
            prop_assert_eq!(o.narinfo_hash(), h);
            for (j, other) in want.iter().enumerate() {
                prop_assert_eq!(o.key_is(other), i == j);
            }
            for (j, other) in want.iter().enumerate() {
                prop_assert_eq!(l.key_cmp(i, j), k.cmp(other));
            }
        }
    }
}

#[test]
fn keys_of_a_fixed_shape_are_packed_and_others_are_not() {
    let h20 = "0a3yijp35sygmy51cnrrz11vimwapz7c";
    let h32 = "0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c";
    let packed = [
        format!("{h20}.narinfo"),
        format!("{h20}.ls"),
        format!("nar/{h32}.nar"),
        format!("nar/{h32}.nar.zst"),
        format!("nar/{h32}.nar.lzip"),
        format!("debuginfo/{}", "ab".repeat(20)),
    ];
    let text = [
        format!("{}.narinfo", h20.to_uppercase()),
        format!("{h20}x.narinfo"),
        format!("nar/{h32}.nar.gz"),
        // The first digit carries bits past 256: no 32 bytes print as it.
        format!("nar/z{}.nar.xz", &h32[1..]),
        format!("debuginfo/{}", "AB".repeat(20)),
        "nix-cache-info".to_string(),
    ];
    let all: Vec<ObjectRecord> = packed
        .iter()
        .chain(&text)
        .map(|k| rec(k, None, None))
        .collect();
    let l = Listing::from_records(all).unwrap();
    for k in &packed {
        let i = l.find(k).unwrap();
        assert_ne!(KeyForm::of_code(l.form[i]), KeyForm::Text, "{k}");
        assert_eq!(l.at(i).key(), *k);
    }
    for k in &text {
        let i = l.find(k).unwrap();
        assert_eq!(KeyForm::of_code(l.form[i]), KeyForm::Text, "{k}");
    }
    let packed_bytes: usize = packed
        .iter()
        .map(|k| if k.starts_with("nar/") { 32 } else { 20 })
        .sum();
    let text_bytes: usize = text.iter().map(String::len).sum();
    assert_eq!(l.keys.len(), packed_bytes + text_bytes);
}

#[test]
fn keys_of_64_kib_sizes_past_4_gib_and_odd_mtimes_come_back() {
    let long = "k".repeat(LONG_KEY + 5);
    let mut a = rec(&long, None, None);
    a.size = 5 << 30;
    a.last_modified = Some(-1);
    let mut b = rec("z", None, None);
    b.size = u64::from(u32::MAX);
    b.last_modified = Some(i64::from(u32::MAX) + 1);
    let mut c = rec("zz", None, None);
    c.last_modified = None;
    let l = Listing::from_records(vec![c.clone(), b.clone(), a.clone()]).unwrap();
    assert_eq!(l.to_records(), vec![a, b, c]);
    assert_eq!(l.long_keys.len(), 1);
    assert_eq!(l.find(&long), Some(0));
    assert_eq!((l.big_size.len(), l.mtime_side.len()), (2, 3));
}

#[test]
fn key_ends_cross_blocks_of_65536_objects() {
    let n = (1usize << BLOCK_BITS) * 2 + 7;
    let records: Vec<ObjectRecord> = (0..n)
        .map(|i| rec(&format!("k{i:09}{}", "x".repeat(i % 5)), None, None))
        .collect();
    let l = Listing::from_records(records.clone()).unwrap();
    assert_eq!(l.block_start.len(), 3);
    for i in [0, 1, 65_535, 65_536, 65_537, 131_071, 131_072, n - 1] {
        assert_eq!(l.at(i).key(), records[i].key, "{i}");
        assert_eq!(l.find(&records[i].key), Some(i));
    }
}

proptest! {
    /// Issue 9: a plan's object decision carries the listed ETag, not its hex text
    /// formatted per decision (~10 % of plan CPU). Written, it is the very bytes its text
    /// was (bincode, JSON); read back, the same ETag.
    #[test]
    fn a_decision_etag_is_written_as_its_text_and_read_back(e in etag_strategy()) {
        let compact = e.as_deref().map(|t| Etag::parse(t).into_owned());
        prop_assert_eq!(bincode::serialize(&compact).unwrap(), bincode::serialize(&e).unwrap());
        prop_assert_eq!(
            serde_json::to_string(&compact).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
        let back: Option<Etag<'static>> =
            bincode::deserialize(&bincode::serialize(&e).unwrap()).unwrap();
        prop_assert_eq!(&back, &compact);
        prop_assert_eq!(back.map(|b| b.to_string()), e);
    }
}

#[test]
fn multipart_part_counts_print_back_at_both_ends() {
    let md5 = "0123456789abcdef0123456789abcdef";
    for n in [0u32, 1, 9, 10, 99, 100, u32::MAX] {
        let t = format!("{md5}-{n}");
        let e = Etag::parse(&t);
        assert!(matches!(e, Etag::Multipart(_, m) if m == n), "{t}");
        assert_eq!(e.with_text(str::to_string), t);
    }
}

proptest! {
    /// Issue 9: `plan` lets the MD5s go during its closure and reads them back from the
    /// listing's records: the listing is then the one it was.
    #[test]
    fn md5s_let_go_and_read_back_give_the_same_listing(
        mut records in proptest::collection::vec(record_strategy(), 1..60),
    ) {
        records.sort_by(|a, b| a.key.cmp(&b.key));
        records.dedup_by(|a, b| a.key == b.key);
        let l = Listing::from_records(records.clone()).unwrap();
        let mut gone = l.clone();
        gone.let_md5_go();
        prop_assert_eq!(gone.md5.len(), 0);
        // Read again as `plan` reads them: from the records' bytes.
        let again = |r: &ObjectRecord| -> EtagRecord {
            bincode::deserialize(&bincode::serialize(r).unwrap()).unwrap()
        };
        gone.refill_md5(|f| records.iter().try_for_each(|r| f(again(r)))).unwrap();
        prop_assert_eq!(&gone, &l);
        // Records that are not the listing's are refused, and nothing is filled.
        let mut short = l.clone();
        short.let_md5_go();
        let err = short.refill_md5(|f| records.iter().skip(1).try_for_each(|r| f(EtagRecord::of(r))));
        prop_assert!(err.is_err());
        prop_assert!(short.md5.is_empty());
    }
}

#[test]
#[should_panic(expected = "MD5s are let go")]
fn an_etag_read_while_the_md5s_are_let_go_is_a_bug() {
    let md5 = "0123456789abcdef0123456789abcdef";
    let mut l = Listing::from_records(vec![rec("a", Some(md5), None)]).unwrap();
    l.let_md5_go();
    let _ = l.at(0).etag();
}

/// Keys of different shapes are ordered by their first 8 bytes where those differ, and in
/// full where they do not (a narinfo whose hash starts with `nar`, texts that are a
/// prefix of a packed key).
#[test]
fn keys_of_different_shapes_with_common_prefixes_sort_as_their_texts() {
    let h32 = "0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c";
    let keys = [
        "nar0ijp35sygmy51cnrrz11vimwapz7c.narinfo".to_string(),
        "nar0ijp35sygmy51cnrrz11vimwapz7c.ls".to_string(),
        "narzijp35sygmy51cnrrz11vimwapz7c.narinfo".to_string(),
        format!("nar/{h32}.nar"),
        format!("nar/{h32}.nar.xz"),
        format!("nar/{}.nar", &h32[..51]),
        "nar/".to_string(),
        "nar/0i1d".to_string(),
        "nar/0i1dmr".to_string(),
        "nar".to_string(),
        "debuginf".to_string(),
        "debuginfo/".to_string(),
        format!("debuginfo/{}", "0f".repeat(20)),
        format!("debuginfo/{}z", "0f".repeat(20)),
        // Long keys are held whole, beside the heap.
        format!("nar/{}", "0".repeat(LONG_KEY)),
        format!("nar0{}", "i".repeat(LONG_KEY)),
    ];
    let mut u = UnsortedListing::new();
    for k in keys.iter().rev() {
        u.push(rec(k, None, None));
    }
    let l = u.finish();
    let mut want = keys.to_vec();
    want.sort();
    let got: Vec<String> = l.iter().map(|o| o.key().to_string()).collect();
    assert_eq!(got, want);
    for (i, k) in want.iter().enumerate() {
        assert_eq!(l.find(k), Some(i), "{k}");
    }
}
