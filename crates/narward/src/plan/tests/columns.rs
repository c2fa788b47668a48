//! The plan from the index's mapped column files equals the plan computed from the narinfo
//! texts (in memory, and streamed from an index without column files), byte for byte.

use super::*;

/// The plan of `index` read back from disk three ways.
fn plans_from_disk(index: &Index, policy: &Policy) -> (Plan, Plan) {
    let d = tempfile::tempdir().unwrap();
    let st = d.path().join("state");
    let mut saved = index.clone();
    saved.meta.format_version = crate::index::FORMAT_VERSION;
    saved.save(&st).unwrap();
    let mapped = compute_from_state(&st, policy, "test", NOW).unwrap();
    // An index written before the columns existed: same meta without them.
    let mut meta = Index::load_meta(&st).unwrap();
    let names: Vec<&str> = crate::cache_graph::file_names().collect();
    meta.files.retain(|k, _| !names.contains(&k.as_str()));
    crate::index::write_meta(&st.join("index"), &mut meta).unwrap();
    let streamed = compute_from_state(&st, policy, "test", NOW).unwrap();
    (mapped, streamed)
}

fn same(a: &Plan, b: &Plan) -> Result<(), TestCaseError> {
    prop_assert_eq!(&a.paths, &b.paths);
    prop_assert_eq!(&a.objects, &b.objects);
    prop_assert_eq!(&a.restore, &b.restore);
    prop_assert_eq!(
        serde_json::to_string(&a.header).unwrap(),
        serde_json::to_string(&b.header).unwrap()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn plan_from_mapped_columns_equals_plan_from_narinfo_texts(
        s in spec(),
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let (mut index, policy) = build(&s);
        for (which, at, e) in &edits {
            let r = which.index(index.narinfos.len());
            apply(&mut index.narinfos[r].text, at, e);
        }
        let in_memory = compute(&index, &policy, "test", NOW);
        let (mapped, streamed) = plans_from_disk(&index, &policy);
        same(&in_memory, &mapped)?;
        same(&in_memory, &streamed)?;
    }
}
