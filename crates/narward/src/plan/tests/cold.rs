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
        roots: vec![0],
        ..Spec::default()
    };
    let (mut index, mut policy) = build(&s);
    index.meta.cache = "s3://cache".into();
    index.meta.cache_url = "s3://cache".into();
    index
        .objects
        .edit(|objects| {
            for (i, c) in classes.iter().enumerate() {
                let key = format!("nar/{}.nar.xz", sha(i, 2));
                let o = objects.iter_mut().find(|o| o.key == key).unwrap();
                o.storage_class = c.map(str::to_string);
            }
        })
        .unwrap();
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
    let mut plan = compute(&index, &policy, "test", NOW).unwrap();
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
    let w = crate::explain::why(&plan, &hash20(1, 1), None).unwrap();
    assert!(
        w.explanation
            .contains("is in DEEP_ARCHIVE already: only the path is hidden"),
        "{}",
        w.explanation
    );
    let t = manifest(&mut plan, "transition.csv");
    assert!(t.contains(&nar_key(2)), "{t}");
    assert!(!t.contains(&nar_key(1)), "{t}");
}

#[test]
fn a_glacier_nar_under_a_deep_archive_policy_is_not_in_transition_csv() {
    let (index, policy) = cold_cache([None, Some("GLACIER"), None], "DEEP_ARCHIVE");
    let mut plan = compute(&index, &policy, "test", NOW).unwrap();
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
    let mut plan = compute(&index, &policy, "test", NOW).unwrap();
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
    let mut plan = compute(&index, &policy, "test", NOW).unwrap();
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

/// Path 0 (the root) and path 1 (kept through a reference from 0), with their NARs in
/// `classes`; path 2 unreachable.
fn kept_cold_cache(classes: [Option<&str>; 3]) -> (Index, Policy) {
    let s = Spec {
        n: 3,
        edges: vec![(0, 1)],
        roots: vec![0],
        ..Spec::default()
    };
    let (mut index, policy) = build(&s);
    index.meta.cache = "s3://cache".into();
    index
        .objects
        .edit(|objects| {
            for (i, c) in classes.iter().enumerate() {
                let key = nar_key(i);
                let o = objects.iter_mut().find(|o| o.key == key).unwrap();
                o.storage_class = c.map(str::to_string);
            }
        })
        .unwrap();
    (index, policy)
}

#[test]
fn kept_paths_whose_nar_is_archived_are_the_plans_restore_set() {
    let (index, policy) =
        kept_cold_cache([Some("GLACIER_IR"), Some("DEEP_ARCHIVE"), Some("GLACIER")]);
    let mut plan = compute(&index, &policy, "test", NOW).unwrap();
    // Path 0's NAR is readable (GLACIER_IR); path 2 is removed, not restored.
    assert_eq!(plan.restore.len(), 1, "{:?}", plan.restore);
    let r = plan.restore[0].clone();
    assert_eq!(r.path, format!("{}-p1", hash20(1, 1)));
    assert_eq!(
        (r.nar_key.as_str(), r.storage_class.as_str()),
        (nar_key(1).as_str(), "DEEP_ARCHIVE")
    );
    assert_eq!(r.size, 1001);
    assert_eq!(
        plan.header.summary.restore,
        CountBytes {
            count: 1,
            bytes: 1001
        }
    );
    // Written in the artifact and read back; the manifest names the NAR.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("plan");
    plan.write(&dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("manifests/restore.csv")).unwrap();
    assert_eq!(csv.trim(), format!("cache,{}", nar_key(1)));
    let back = Plan::read(&dir).unwrap();
    assert_eq!(back.restore, plan.restore);
    assert_eq!(back.restore_item(&hash20(1, 1)), Some(&r));
    assert_eq!(back.restore_item(&hash20(0, 1)), None);
}

#[test]
fn plan_show_warns_about_kept_paths_whose_nar_is_archived() {
    let (index, policy) = kept_cold_cache([None, Some("GLACIER"), None]);
    let plan = compute(&index, &policy, "test", NOW).unwrap();
    let text = crate::explain::summary_text(&plan);
    assert!(text.contains("warning: 1 kept paths"), "{text}");
    assert!(text.contains("manifests/restore.csv"), "{text}");
    assert!(text.contains(&nar_key(1)), "{text}");
    let (index, policy) = kept_cold_cache([None, None, Some("GLACIER")]);
    let plan = compute(&index, &policy, "test", NOW).unwrap();
    assert!(plan.restore.is_empty());
    let text = crate::explain::summary_text(&plan);
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn why_on_a_kept_path_whose_nar_is_archived_says_it_must_be_restored() {
    let (index, policy) = kept_cold_cache([None, Some("DEEP_ARCHIVE"), None]);
    let plan = compute(&index, &policy, "test", NOW).unwrap();
    let w = crate::explain::why(&plan, &hash20(1, 1), None).unwrap();
    assert_eq!(w.decision, Decision::Keep);
    assert!(w.restore.is_some());
    assert!(
        w.explanation
            .contains("archived (DEEP_ARCHIVE): it must be restored"),
        "{}",
        w.explanation
    );
    let w = crate::explain::why(&plan, &hash20(0, 1), None).unwrap();
    assert!(w.restore.is_none());
    assert!(!w.explanation.contains("restored"), "{}", w.explanation);
}
