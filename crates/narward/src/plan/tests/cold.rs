//! Plans of caches whose objects are already in a cold storage class, and of kept paths
//! whose NAR is archived (the restore set).

use super::*;
use crate::policy::ByteSize;

/// Three unrelated paths, path 0 the only root, the others archived to `target` with no
/// minimum size; the NAR of path `i` is in `classes[i]` (None: STANDARD). An `s3://` cache,
/// so the plan writes Batch Operations manifests.
fn cold_cache(classes: [Option<&str>; 3], target: &str) -> (Index, Policy) {
    let s = Spec {
        n: 3,
        edges: Vec::new(),
        roots: vec![0],
        young: Vec::new(),
        ca: Vec::new(),
        missing_nar: Vec::new(),
        broken: Vec::new(),
        shared_nar: Vec::new(),
        orphans: 0,
        delete: false,
    };
    let (mut index, mut policy) = build(&s);
    index.meta.cache = "s3://cache".into();
    index.meta.cache_url = "s3://cache".into();
    for (i, c) in classes.iter().enumerate() {
        let key = format!("nar/{}.nar.xz", sha(i, 2));
        let o = index.objects.iter_mut().find(|o| o.key == key).unwrap();
        o.storage_class = c.map(str::to_string);
    }
    policy.file.actions.archive_storage_class = target.into();
    policy.file.actions.archive_min_size = ByteSize(0);
    (index, policy)
}

fn nar_key(i: usize) -> String {
    format!("nar/{}.nar.xz", sha(i, 2))
}

/// The plan's manifests/`name` (empty when not written).
fn manifest(plan: &mut Plan, name: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("plan");
    plan.write(&dir).unwrap();
    std::fs::read_to_string(dir.join("manifests").join(name)).unwrap_or_default()
}

fn hidden(plan: &Plan, i: usize) -> bool {
    let n = plan.object(&format!("{}.narinfo", hash20(i, 1))).unwrap();
    n.decision == Decision::Archive
}

#[test]
fn a_deep_archive_nar_under_a_glacier_policy_is_not_in_transition_csv() {
    let (index, policy) = cold_cache([None, Some("DEEP_ARCHIVE"), None], "GLACIER");
    let mut plan = compute(&index, &policy, "test", NOW);
    let o = plan.object(&nar_key(1)).unwrap();
    assert_eq!(o.decision, Decision::Archive);
    assert_eq!(
        o.transition_to, None,
        "a DEEP_ARCHIVE NAR must not move to GLACIER"
    );
    assert!(hidden(&plan, 1), "its path is hidden all the same");
    // Path 2 (STANDARD) does move: the manifest is written, without path 1's NAR.
    assert_eq!(
        plan.object(&nar_key(2)).unwrap().transition_to.as_deref(),
        Some("GLACIER")
    );
    let t = manifest(&mut plan, "transition.csv");
    assert!(t.contains(&nar_key(2)), "{t}");
    assert!(!t.contains(&nar_key(1)), "{t}");
}

#[test]
fn a_glacier_nar_under_a_deep_archive_policy_is_not_in_transition_csv() {
    let (index, policy) = cold_cache([None, Some("GLACIER"), None], "DEEP_ARCHIVE");
    let mut plan = compute(&index, &policy, "test", NOW);
    assert_eq!(plan.object(&nar_key(1)).unwrap().transition_to, None);
    assert!(hidden(&plan, 1));
    let s = &plan.header.summary;
    assert_eq!(s.already_archived_nars.count, 1);
    assert_eq!(s.transitions.count, 1);
    assert_eq!(s.hidden_only_small_nars.count, 0);
    let hide = manifest(&mut plan, "hide.csv");
    assert!(
        hide.contains(&format!("{}.narinfo", hash20(1, 1))),
        "{hide}"
    );
}

#[test]
fn readable_glacier_ir_and_intelligent_tiering_nars_are_transitioned_like_standard_ones() {
    let (index, policy) = cold_cache(
        [None, Some("GLACIER_IR"), Some("INTELLIGENT_TIERING")],
        "DEEP_ARCHIVE",
    );
    let mut plan = compute(&index, &policy, "test", NOW);
    for i in [1, 2] {
        assert_eq!(
            plan.object(&nar_key(i)).unwrap().transition_to.as_deref(),
            Some("DEEP_ARCHIVE"),
            "path {i}"
        );
    }
    assert_eq!(plan.header.summary.already_archived_nars.count, 0);
    let t = manifest(&mut plan, "transition.csv");
    assert!(t.contains(&nar_key(1)) && t.contains(&nar_key(2)), "{t}");
}

#[test]
fn a_removed_cold_nar_is_deleted_without_a_restore() {
    let (index, mut policy) = cold_cache(
        [None, Some("DEEP_ARCHIVE"), Some("GLACIER")],
        "DEEP_ARCHIVE",
    );
    policy.file.actions.unreachable = crate::policy::Unreachable::Delete;
    let mut plan = compute(&index, &policy, "test", NOW);
    for i in [1, 2] {
        let o = plan.object(&nar_key(i)).unwrap();
        assert_eq!(
            (o.decision, o.transition_to.as_deref()),
            (Decision::Delete, None)
        );
    }
    let d = manifest(&mut plan, "delete.csv");
    assert!(d.contains(&nar_key(1)) && d.contains(&nar_key(2)), "{d}");
}
