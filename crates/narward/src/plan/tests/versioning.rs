//! Plans of caches in versioned buckets.

use super::*;
use crate::model::{BucketVersioning, NoncurrentVersions, VersioningState};

fn deleting_cache(v: Option<BucketVersioning>) -> (Index, Policy) {
    let s = Spec {
        n: 2,
        roots: vec![0],
        delete: true,
        ..Spec::default()
    };
    let (mut index, policy) = build(&s);
    index.meta.versioning = v;
    (index, policy)
}

#[test]
fn a_plan_records_the_buckets_versioning_and_states_deletes_as_delete_markers() {
    let v = BucketVersioning {
        state: VersioningState::Enabled,
        source: "GetBucketVersioning".into(),
        noncurrent: None,
    };
    let (index, policy) = deleting_cache(Some(v.clone()));
    let plan = compute(&index, &policy, "test", NOW).unwrap();
    assert_eq!(plan.header.versioning, v);
    assert_eq!(
        plan.header.delete_mode(),
        "delete marker + noncurrent-version expiry"
    );
    let text = crate::explain::summary_text(&plan);
    assert!(
        text.contains("bucket versioning: enabled (GetBucketVersioning); a delete is: delete marker + noncurrent-version expiry"),
        "{text}"
    );
    // Written and read back with the header.
    let d = tempfile::tempdir().unwrap();
    let mut plan = plan;
    plan.write(&d.path().join("p")).unwrap();
    assert_eq!(
        Plan::read(&d.path().join("p")).unwrap().header.versioning,
        v
    );
}

#[test]
fn an_index_without_a_versioning_record_plans_as_if_versioned() {
    let (index, policy) = deleting_cache(None);
    let plan = compute(&index, &policy, "test", NOW).unwrap();
    assert_eq!(plan.header.versioning.state, VersioningState::Unknown);
    assert!(plan.header.versioning.noncurrent.is_none());
    assert_ne!(plan.header.delete_mode(), "delete");
    let c = crate::cost::price_plan(&plan, &crate::cost::Pricing::default_aws(), NOW);
    assert!(c.versioning.saving_conditional);
    let (index, policy) = deleting_cache(Some(BucketVersioning {
        state: VersioningState::Unversioned,
        source: "file:// (no versioning)".into(),
        noncurrent: Some(NoncurrentVersions::default()),
    }));
    let plan = compute(&index, &policy, "test", NOW).unwrap();
    assert_eq!(plan.header.delete_mode(), "delete");
}
