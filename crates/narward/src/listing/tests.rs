use super::*;
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

fn record_strategy() -> impl Strategy<Value = ObjectRecord> {
    (
        "\\PC{0,60}",
        any::<u64>(),
        etag_strategy(),
        prop_oneof![
            Just(None),
            any::<i64>().prop_map(Some),
            Just(Some(i64::MIN))
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

/// Issue 9: about key length + 41 bytes per object with an MD5 ETag.
#[test]
fn listing_costs_key_length_plus_41_bytes_per_object() {
    let n = 10_000;
    let records: Vec<ObjectRecord> = (0..n)
        .map(|i| {
            let key = format!("nar/{i:052}.nar.xz");
            let etag = format!("{:032x}", i * 7919);
            let mut r = rec(&key, Some(&etag), None);
            r.storage_class = (i % 3 == 0).then(|| "DEEP_ARCHIVE".into());
            r
        })
        .collect();
    let keys: usize = records.iter().map(|r| r.key.len()).sum();
    let l = Listing::from_records(records).unwrap();
    assert_eq!(l.heap_bytes(), keys + 41 * n);
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
