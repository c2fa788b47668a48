//! `S3Store` (the mutating store interface on S3) against the local moto server started by
//! scripts/test.sh: every operation, its typed errors, archive classes, multipart copy,
//! batch deletes beyond 1,000 keys and versioned buckets.

mod common;
use common::*;
use narward::cache::S3Options;
use narward::cache::s3_store::{DEFAULT_QUARANTINE_PREFIX, S3Layout, S3Store};
use narward::cache::store::*;
use narward::cache::store_wrap::delete_all;

fn bucket_name(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("nw-{tag}-{}", n % 1_000_000_000)
}

fn opts(bucket: &str, prefix: &str) -> S3Options {
    S3Options {
        bucket: bucket.into(),
        prefix: prefix.into(),
        endpoint: Some(s3_endpoint()),
        region: Some("us-east-1".into()),
        ..Default::default()
    }
}

/// A fresh bucket and a store on it (cache prefix `c`, archive in the same bucket).
async fn store(tag: &str) -> (S3Store, aws_sdk_s3::Client, String) {
    let b = bucket_name(tag);
    let o = opts(&b, "c");
    let layout = S3Layout::new(&o, None, "narward-archive/", DEFAULT_QUARANTINE_PREFIX);
    let s = S3Store::open(&o, layout, 2).await.unwrap();
    let client = s.client().clone();
    client.create_bucket().bucket(&b).send().await.unwrap();
    (s, client, b)
}

fn kind<T: std::fmt::Debug>(r: StoreResult<T>) -> StoreErrorKind {
    r.expect_err("expected an error").kind
}

#[tokio::test(flavor = "multi_thread")]
async fn put_if_absent_head_get_and_list_by_area() {
    let (s, client, b) = store("basic").await;
    let loc = Loc::cache("abc.narinfo");
    let PutOutcome::Created { etag } = s.put_if_absent(&loc, b"one").await.unwrap() else {
        panic!("first put must create");
    };
    assert!(etag.is_some());
    // If-None-Match: * is enforced: the second put finds the first object, unchanged.
    match s.put_if_absent(&loc, b"two").await.unwrap() {
        PutOutcome::Exists(m) => assert_eq!(m.size, 3),
        o => panic!("{o:?}"),
    }
    assert_eq!(s.get(&loc).await.unwrap().unwrap(), b"one");
    // Keys are relative to their area; the store adds the prefixes.
    let raw = client
        .get_object()
        .bucket(&b)
        .key("c/abc.narinfo")
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw.body.collect().await.unwrap().into_bytes().as_ref(),
        b"one"
    );
    s.put_if_absent(&Loc::quarantine("t1/abc.narinfo"), b"q")
        .await
        .unwrap();
    s.put_if_absent(&Loc::archive("abc.narinfo"), b"a")
        .await
        .unwrap();
    s.put_if_absent(&Loc::cache("nar/a b+c.nar"), b"n")
        .await
        .unwrap();
    let keys =
        |v: Vec<narward::model::ObjectRecord>| v.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list(Area::Quarantine, "").await.unwrap()),
        ["t1/abc.narinfo"]
    );
    assert_eq!(
        keys(s.list(Area::Archive, "").await.unwrap()),
        ["abc.narinfo"]
    );
    assert_eq!(
        keys(s.list(Area::Cache, "nar/").await.unwrap()),
        ["nar/a b+c.nar"]
    );
    // The other areas live under the cache prefix, but listing the cache leaves them out.
    assert_eq!(
        keys(s.list(Area::Cache, "").await.unwrap()),
        ["abc.narinfo", "nar/a b+c.nar"]
    );
    assert!(s.get(&Loc::cache("nope")).await.unwrap().is_none());
    assert!(s.head(&Loc::cache("nope")).await.unwrap().is_none());
    let h = s.head(&loc).await.unwrap().unwrap();
    assert_eq!(h.size, 3);
    assert_eq!(
        s.describe(Area::Quarantine),
        format!("s3://{b}/c/narward-quarantine/ at {}", s3_endpoint())
    );
    assert!(s.archives_in_place());
    assert_eq!(
        s.versioning(Area::Cache).await.unwrap(),
        Versioning::Unversioned
    );
    // Deleting an absent key succeeds.
    s.delete(&Loc::cache("nope"), None).await.unwrap();
    s.delete(&loc, None).await.unwrap();
    assert!(s.head(&loc).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_checks_the_source_etag_and_repeats_safely() {
    let (s, _c, _b) = store("copy").await;
    let from = Loc::cache("nar/x.nar.xz");
    let to = Loc::archive("nar/x.nar.xz");
    s.put_if_absent(&from, b"nar bytes").await.unwrap();
    let etag = s.head(&from).await.unwrap().unwrap().etag.unwrap();
    let wrong = CopyOptions {
        if_match: Some("0123456789abcdef0123456789abcdef".into()),
        ..Default::default()
    };
    let e = s.copy(&from, &to, &wrong).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::PreconditionFailed, "{e}");
    assert!(e.to_string().contains("cache:nar/x.nar.xz"), "{e}");
    assert!(s.head(&to).await.unwrap().is_none(), "nothing copied");
    let ok = CopyOptions {
        if_match: Some(etag.clone()),
        if_absent: true,
        storage_class: Some("STANDARD_IA".into()),
    };
    let m = s.copy(&from, &to, &ok).await.unwrap();
    assert_eq!(m.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(m.etag.as_deref(), Some(etag.as_str()));
    // Repeated after a crash: the destination holds the same bytes, so it succeeds.
    s.copy(&from, &to, &ok).await.unwrap();
    // A destination with other bytes is never overwritten by an if_absent copy.
    let other = Loc::archive("nar/other.nar.xz");
    s.put_if_absent(&other, b"different").await.unwrap();
    assert_eq!(
        kind(s.copy(&from, &other, &ok).await),
        StoreErrorKind::PreconditionFailed
    );
    assert_eq!(s.get(&other).await.unwrap().unwrap(), b"different");
    // A change of class in place, repeated (as after a crash): done once, then a no-op,
    // although the object can no longer be read or copied.
    let cold = CopyOptions {
        storage_class: Some("GLACIER".into()),
        if_match: Some(etag.clone()),
        if_absent: true,
    };
    let m = s.copy(&from, &from, &cold).await.unwrap();
    assert_eq!(m.storage_class.as_deref(), Some("GLACIER"));
    let again = s.copy(&from, &from, &cold).await.unwrap();
    assert_eq!(again.storage_class.as_deref(), Some("GLACIER"));
    assert_eq!(kind(s.get(&from).await), StoreErrorKind::InvalidObjectState);
    // A missing source is NotFound, naming the source.
    let e = s
        .copy(&Loc::cache("nar/none"), &to, &CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::NotFound);
    assert_eq!(e.loc, Loc::cache("nar/none"));
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_object_is_invalid_object_state_until_restored() {
    let (s, _c, _b) = store("cold").await;
    let hot = Loc::cache("nar/hot.nar.xz");
    s.put_if_absent(&hot, b"warm data").await.unwrap();
    for class in ["GLACIER", "DEEP_ARCHIVE"] {
        let cold = Loc::cache(format!("nar/{class}.nar.xz"));
        let opts = CopyOptions {
            storage_class: Some(class.into()),
            ..Default::default()
        };
        let m = s.copy(&hot, &cold, &opts).await.unwrap();
        assert_eq!(m.storage_class.as_deref(), Some(class));
        assert_eq!(kind(s.get(&cold).await), StoreErrorKind::InvalidObjectState);
        // Nor can it be copied before a restore.
        assert_eq!(
            kind(
                s.copy(&cold, &Loc::archive("x"), &CopyOptions::default())
                    .await
            ),
            StoreErrorKind::InvalidObjectState
        );
        assert_eq!(s.head(&cold).await.unwrap().unwrap().restore, None);
        assert_eq!(
            s.restore(&cold, 3, Tier::Bulk).await.unwrap(),
            RestoreOutcome::Started
        );
        // moto restores at once, so the second request finds a restored copy (200); real
        // S3 answers 409 RestoreAlreadyInProgress (InProgress) until the restore is done.
        assert_eq!(
            s.restore(&cold, 3, Tier::Bulk).await.unwrap(),
            RestoreOutcome::AlreadyRestored
        );
        let h = s.head(&cold).await.unwrap().unwrap();
        assert!(h.restore.is_some(), "x-amz-restore after a restore: {h:?}");
        assert_eq!(s.get(&cold).await.unwrap().unwrap(), b"warm data");
    }
    assert_eq!(
        s.restore(&hot, 3, Tier::Bulk).await.unwrap(),
        RestoreOutcome::NotArchived
    );
    assert_eq!(
        kind(s.restore(&Loc::cache("nar/none"), 3, Tier::Bulk).await),
        StoreErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_objects_are_copied_in_parts_above_the_threshold() {
    let b = bucket_name("mpu");
    let o = opts(&b, "");
    let mut layout = S3Layout::new(&o, Some(&format!("{b}-arch")), "archive/", "q/");
    layout.multipart_threshold = 1024 * 1024;
    layout.part_size = 5 * 1024 * 1024;
    let s = S3Store::open(&o, layout, 2).await.unwrap();
    for bk in [b.clone(), format!("{b}-arch")] {
        s.client().create_bucket().bucket(bk).send().await.unwrap();
    }
    assert!(!s.archives_in_place());
    let data: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let from = Loc::cache("nar/big.nar");
    s.put_if_absent(&from, &data).await.unwrap();
    let src = s.head(&from).await.unwrap().unwrap();
    let to = Loc::archive("nar/big.nar");
    let opts = CopyOptions {
        storage_class: Some("GLACIER_IR".into()),
        if_match: src.etag.clone(),
        if_absent: true,
    };
    let m = s.copy(&from, &to, &opts).await.unwrap();
    // Three parts (5 + 5 + 1 MiB): a multipart ETag, the storage class, the same bytes.
    assert!(
        m.etag.as_deref().is_some_and(|e| e.ends_with("-3")),
        "{m:?}"
    );
    assert_eq!(m.size, data.len() as u64);
    assert_eq!(m.storage_class.as_deref(), Some("GLACIER_IR"));
    assert_eq!(s.get(&to).await.unwrap().unwrap(), data);
    // Repeating it recognises the earlier copy by the source ETag it recorded.
    assert_eq!(s.copy(&from, &to, &opts).await.unwrap().etag, m.etag);
    // A wrong ETag stops a multipart copy too, before any part.
    let wrong = CopyOptions {
        if_match: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(
        kind(s.copy(&from, &Loc::archive("nar/big2.nar"), &wrong).await),
        StoreErrorKind::PreconditionFailed
    );
    assert!(
        s.head(&Loc::archive("nar/big2.nar"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_batches_of_more_than_a_thousand_keys_with_results_per_key() {
    let (s, _c, _b) = store("batch").await;
    let keys: Vec<(String, Option<String>)> = (0..1_050)
        .map(|i| (format!("nar/{i:05}.nar"), None))
        .collect();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for (k, _) in keys.clone() {
        let (s, sem) = (s.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            s.put_if_absent(&Loc::cache(k), b"x").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.put_if_absent(&Loc::cache("keep.narinfo"), b"k")
        .await
        .unwrap();
    // One request takes at most 1,000 keys.
    assert_eq!(
        kind(s.delete_batch(Area::Cache, &keys).await),
        StoreErrorKind::Other
    );
    let mut with_absent = keys.clone();
    with_absent.push(("nar/never-existed".into(), None));
    let r = delete_all(s.as_ref(), Area::Cache, &with_absent)
        .await
        .unwrap();
    assert_eq!(r.len(), with_absent.len());
    for (got, want) in r.iter().zip(&with_absent) {
        assert_eq!(got.key, want.0);
        assert!(got.result.is_ok(), "{got:?}");
    }
    let left: Vec<String> = s
        .list(Area::Cache, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["keep.narinfo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn versioned_delete_leaves_a_noncurrent_version_that_can_be_seen_and_removed() {
    let (s, c, b) = store("ver").await;
    c.put_bucket_versioning()
        .bucket(&b)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.versioning(Area::Cache).await.unwrap(),
        Versioning::Enabled
    );
    let loc = Loc::cache("nar/v.nar");
    s.put_if_absent(&loc, b"v1").await.unwrap();
    let v1 = s.head(&loc).await.unwrap().unwrap().version_id.unwrap();
    s.delete(&loc, None).await.unwrap();
    assert!(
        s.head(&loc).await.unwrap().is_none(),
        "current is a delete marker"
    );
    let vs = s.list_versions(Area::Cache, "nar/").await.unwrap();
    assert_eq!(vs.len(), 2, "{vs:?}");
    assert!(vs.iter().any(|v| v.is_delete_marker && v.is_latest));
    let old = vs.iter().find(|v| !v.is_delete_marker).unwrap();
    assert_eq!(old.version_id.as_deref(), Some(v1.as_str()));
    assert!(!old.is_latest);
    let h = s.head_version(&loc, &v1).await.unwrap().unwrap();
    assert_eq!(h.size, 2);
    // The noncurrent version is the quarantine: deleting it by id removes the data.
    let r = delete_all(&s, Area::Cache, &[(loc.key.clone(), Some(v1.clone()))])
        .await
        .unwrap();
    assert!(r[0].result.is_ok(), "{r:?}");
    assert!(s.head_version(&loc, &v1).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_an_error_naming_bucket_and_key() {
    let b = bucket_name("missing");
    let o = opts(&b, "");
    let layout = S3Layout::new(&o, None, "a/", "q/");
    let s = S3Store::open(&o, layout, 1).await.unwrap();
    let e = s.put_if_absent(&Loc::cache("k"), b"x").await.unwrap_err();
    assert!(!e.kind.is_retryable(), "{e}");
    assert!(e.to_string().contains(&format!("s3://{b}/k")), "{e}");
    // A HEAD cannot tell a missing bucket from a missing object; check_buckets can.
    assert!(s.head(&Loc::cache("k")).await.unwrap().is_none());
    let e = s.check_buckets().await.unwrap_err();
    assert!(e.to_string().contains("the bucket does not exist"), "{e}");
    assert_eq!(e.kind, StoreErrorKind::Other);
    let (ok, _c, _b) = store("buckets").await;
    ok.check_buckets().await.unwrap();
}
