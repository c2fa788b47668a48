//! narward through the fault-injecting proxy (tests/common/fault_proxy.rs) in front of the
//! local moto server: throttling, 500s, connection resets and lost answers. The store
//! wrapped in `Throttled` finishes every operation, nothing is lost, and the achieved
//! rate is reported; `narward index` completes too.

mod common;
use common::*;
use narward::cache::S3Options;
use narward::cache::s3_store::{S3Layout, S3Store};
use narward::cache::store::*;
use narward::cache::store_wrap::{ThrottleConfig, Throttled, delete_all};
use narward_testkit::fault_proxy::{FaultConfig, FaultProxy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn opts(bucket: &str, endpoint: String) -> S3Options {
    S3Options {
        bucket: bucket.into(),
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        ..Default::default()
    }
}

async fn open(bucket: &str, endpoint: String, attempts: u32) -> S3Store {
    let o = opts(bucket, endpoint);
    let layout = S3Layout::new(&o, None, "archive/", "quarantine/");
    S3Store::open(&o, layout, attempts).await.unwrap()
}

/// A new bucket named after `tag`, and a store opened on it directly (no proxy).
async fn new_bucket(tag: &str) -> (String, S3Store) {
    let b = s3_fx::bucket_name(tag);
    let direct = open(&b, s3_endpoint(), 3).await;
    direct
        .client()
        .create_bucket()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    (b, direct)
}

/// key → ETag of an area.
async fn contents(s: &S3Store, area: Area) -> BTreeMap<String, Option<String>> {
    s.list(area, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.etag))
        .collect()
}

fn cfg() -> ThrottleConfig {
    ThrottleConfig {
        concurrency: 16,
        max_rate: 400.0,
        min_rate: 10.0,
        decrease_every: Duration::from_millis(500),
        recovery_per_sec: 100.0,
        max_retries: 12,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(500),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_store_completes_copies_and_deletes_through_faults_and_loses_nothing() {
    let (b, direct) = new_bucket("faults").await;
    let n = 150;
    for i in 0..n {
        let body = format!("nar number {i}").repeat(i + 1);
        direct
            .put_if_absent(&Loc::cache(format!("nar/{i:04}.nar")), body.as_bytes())
            .await
            .unwrap();
    }
    direct
        .put_if_absent(&Loc::cache("keep.narinfo"), b"k")
        .await
        .unwrap();
    let before = contents(&direct, Area::Cache).await;

    let proxy = FaultProxy::start(
        &s3_endpoint(),
        FaultConfig {
            slow_down: 0.05,
            internal_error: 0.04,
            reset: 0.03,
            lost_answer: 0.03,
            seed: 42,
            max_requests: 5_000,
            lifetime: Duration::from_secs(240),
            ..Default::default()
        },
    );
    // One attempt in the SDK: every retry is the wrapper's.
    let store = Arc::new(Throttled::new(open(&b, proxy.url(), 1).await, cfg()));
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = store.clone();
        let etag = before[&format!("nar/{i:04}.nar")].clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("nar/{i:04}.nar");
            let opts = CopyOptions {
                storage_class: Some("STANDARD_IA".into()),
                if_match: etag,
                if_absent: true,
            };
            s.copy(&Loc::cache(key.clone()), &Loc::archive(key.clone()), &opts)
                .await?;
            // Half deleted one by one, half in a batch below.
            if i % 2 == 0 {
                s.delete(&Loc::cache(key), None).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let odd: Vec<(String, Option<String>)> = (0..n)
        .filter(|i| i % 2 == 1)
        .map(|i| (format!("nar/{i:04}.nar"), None))
        .collect();
    let r = delete_all(store.as_ref(), Area::Cache, &odd).await.unwrap();
    assert!(r.iter().all(|r| r.result.is_ok()), "{r:?}");

    let stats = store.stats();
    eprintln!(
        "through the fault proxy: {} operations at {:.1}/s achieved (allowed {:.0}/s, lowest {:.0}/s), {} retries ({} throttled, {} transient); proxy: {} requests, {} faults",
        stats.succeeded,
        stats.achieved_rate,
        cfg().max_rate,
        stats.rate_lowest,
        stats.retries,
        stats.throttled,
        stats.transient,
        proxy.stats.get(&proxy.stats.requests),
        proxy.stats.faults()
    );
    assert!(proxy.stats.faults() >= 20, "faults were injected");
    assert!(stats.retries > 0 && stats.failed == 0, "{stats:?}");
    // 150 copies, 75 single deletes, at least one batch of 75.
    assert!(stats.succeeded > n as u64 * 3 / 2, "{stats:?}");
    assert!(stats.achieved_rate > 0.0);
    drop(proxy);

    // Nothing lost: the archive holds every NAR with its ETag, in its class; the cache
    // holds only what was never touched.
    let archive = contents(&direct, Area::Archive).await;
    let cache = contents(&direct, Area::Cache).await;
    let want: BTreeMap<_, _> = before
        .iter()
        .filter(|(k, _)| k.starts_with("nar/"))
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    assert_eq!(archive, want);
    assert_eq!(cache.keys().collect::<Vec<_>>(), ["keep.narinfo"]);
    for o in direct.list(Area::Archive, "").await.unwrap() {
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"), "{o:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_store_adapts_to_a_rate_limit_and_reports_the_achieved_rate() {
    let (b, direct) = new_bucket("ratelimit").await;
    direct.put_if_absent(&Loc::cache("k"), b"x").await.unwrap();
    let limit = 40.0;
    let proxy = FaultProxy::start(
        &s3_endpoint(),
        FaultConfig {
            rate_limit: Some(limit),
            burst: Some(5.0),
            max_requests: 5_000,
            lifetime: Duration::from_secs(120),
            ..Default::default()
        },
    );
    let store = Arc::new(Throttled::new(
        open(&b, proxy.url(), 1).await,
        ThrottleConfig {
            max_rate: 200.0,
            decrease_every: Duration::from_millis(500),
            recovery_per_sec: 4.0,
            ..cfg()
        },
    ));
    let mut tasks = Vec::new();
    for _ in 0..400 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.head(&Loc::cache("k")).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    let s = store.stats();
    let ratio = s.achieved_rate / limit;
    eprintln!(
        "rate limit {limit}/s: achieved {:.1}/s ({:.0} % of the allowed rate), {} throttled answers, allowed rate fell to {:.0}/s",
        s.achieved_rate,
        100.0 * ratio,
        s.throttled,
        s.rate_lowest
    );
    assert_eq!(s.succeeded, 400);
    assert!(s.throttled > 0, "the limit was hit: {s:?}");
    assert!(s.rate_lowest < 200.0, "the rate was lowered: {s:?}");
    assert!(proxy.stats.get(&proxy.stats.rate_limited) > 0);
    // The controller settles near the limit instead of collapsing (issue 10's benchmark
    // target is 90 %; this guard is lower because the test machine is shared).
    assert!(
        ratio >= 0.6,
        "achieved {:.0} % of the allowed rate",
        100.0 * ratio
    );
}

#[test]
fn index_through_the_fault_proxy_completes_with_the_same_paths() {
    let ex = repo().join("examples/cache");
    let d = tempfile::tempdir().unwrap();
    let b = s3_fx::bucket_name("idxfault");
    upload(&b, &ex, None);
    let direct_state = d.path().join("direct");
    let url = |ep: &str| format!("s3://{b}?endpoint={ep}&region=us-east-1");
    narward_ok(&direct_state, &["index", "--cache", &url(&s3_endpoint())]);
    let proxy = FaultProxy::start(
        &s3_endpoint(),
        FaultConfig {
            slow_down: 0.06,
            internal_error: 0.05,
            reset: 0.04,
            seed: 9,
            max_requests: 5_000,
            lifetime: Duration::from_secs(120),
            ..Default::default()
        },
    );
    let st = d.path().join("proxied");
    let m = json(&narward_ok(
        &st,
        &["index", "--json", "--cache", &url(&proxy.url())],
    ));
    assert_eq!(m["narinfos"], 13, "{m}");
    assert!(proxy.stats.faults() > 0, "faults were injected");
    assert_eq!(
        json(&narward_ok(&st, &["paths"])),
        json(&narward_ok(&direct_state, &["paths"]))
    );
    // verify through the proxy reaches the same verdict as directly (the example cache has
    // one narinfo whose NAR is missing on purpose).
    let v = |ep: &str| {
        let out = narward(&st, &["verify", "--json", "--cache", &url(ep)]);
        (
            out.status.code(),
            json(&String::from_utf8_lossy(&out.stdout))["problems"].clone(),
        )
    };
    assert_eq!(v(&proxy.url()), v(&s3_endpoint()));
    assert_eq!(v(&s3_endpoint()).0, Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_copy_that_fails_midway_is_aborted_and_leaves_nothing() {
    let (b, direct) = new_bucket("mpuabort").await;
    let data: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let from = Loc::cache("nar/big.nar");
    direct.put_if_absent(&from, &data).await.unwrap();
    // Requests through the proxy, in order: HEAD source, CreateMultipartUpload,
    // UploadPartCopy 1, UploadPartCopy 2 (fails), AbortMultipartUpload.
    let proxy = FaultProxy::start(
        &s3_endpoint(),
        FaultConfig {
            fail_nth: vec![4],
            max_requests: 100,
            lifetime: Duration::from_secs(60),
            ..Default::default()
        },
    );
    let o = opts(&b, proxy.url());
    let mut layout = S3Layout::new(&o, None, "archive/", "quarantine/");
    layout.multipart_threshold = 1024 * 1024;
    layout.part_size = 5 * 1024 * 1024;
    let s = S3Store::open(&o, layout, 1).await.unwrap();
    let to = Loc::archive("nar/big.nar");
    let e = s
        .copy(&from, &to, &CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Transient, "{e}");
    assert_eq!(
        proxy.stats.get(&proxy.stats.requests),
        5,
        "the upload was aborted"
    );
    drop(proxy);
    let uploads = direct
        .client()
        .list_multipart_uploads()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    assert!(direct.head(&to).await.unwrap().is_none());
}
