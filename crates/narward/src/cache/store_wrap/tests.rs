//! Unit tests of the wrappers' logic over [`MemStore`].

use super::*;
use std::collections::HashMap;

/// A tiny in-memory `Store` for unit-testing wrapper LOGIC only (counting, recording,
/// retrying, rate control). It makes no claim about S3 or file:// behaviour; those are
/// tested against moto and real directories.
#[derive(Default)]
struct MemStore {
    objects: Mutex<HashMap<Loc, Vec<u8>>>,
    calls: AtomicU64,
}

impl MemStore {
    fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
    fn meta(b: &[u8]) -> ObjectMeta {
        ObjectMeta {
            size: b.len() as u64,
            etag: Some(format!("{:x}", b.len())),
            storage_class: None,
            restore: None,
            last_modified: None,
            version_id: None,
        }
    }
    fn len(&self) -> usize {
        lock(&self.objects).len()
    }
}

impl Store for MemStore {
    fn describe(&self, area: Area) -> String {
        format!("mem:{}", area.as_str())
    }
    fn archives_in_place(&self) -> bool {
        false
    }
    async fn head(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        self.call();
        Ok(lock(&self.objects).get(loc).map(|b| Self::meta(b)))
    }
    async fn get(&self, loc: &Loc) -> StoreResult<Option<Vec<u8>>> {
        self.call();
        Ok(lock(&self.objects).get(loc).cloned())
    }
    async fn list(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        self.call();
        let mut v: Vec<ObjectRecord> = lock(&self.objects)
            .iter()
            .filter(|(l, _)| l.area == area && l.key.starts_with(prefix))
            .map(|(l, b)| ObjectRecord {
                link_target: None,
                key: l.key.clone(),
                size: b.len() as u64,
                etag: None,
                last_modified: None,
                storage_class: None,
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }
    async fn put_if_absent(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        self.call();
        let mut o = lock(&self.objects);
        if let Some(b) = o.get(loc) {
            return Ok(PutOutcome::Exists(Self::meta(b)));
        }
        o.insert(loc.clone(), bytes.to_vec());
        Ok(PutOutcome::Created { etag: None })
    }
    async fn copy(&self, from: &Loc, to: &Loc, _opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        self.call();
        let mut o = lock(&self.objects);
        let b = o
            .get(from)
            .cloned()
            .ok_or_else(|| StoreError::new(StoreErrorKind::NotFound, "copy", from, "absent"))?;
        let m = Self::meta(&b);
        o.insert(to.clone(), b);
        Ok(m)
    }
    async fn delete(&self, loc: &Loc, _v: Option<&str>) -> StoreResult<()> {
        self.call();
        lock(&self.objects).remove(loc);
        Ok(())
    }
    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        self.call();
        let mut o = lock(&self.objects);
        Ok(keys
            .iter()
            .map(|(k, v)| {
                o.remove(&Loc {
                    area,
                    key: k.clone(),
                });
                BatchDeleteResult {
                    key: k.clone(),
                    version_id: v.clone(),
                    result: Ok(()),
                }
            })
            .collect())
    }
    async fn restore(&self, _loc: &Loc, _d: u32, _t: Tier) -> StoreResult<RestoreOutcome> {
        self.call();
        Ok(RestoreOutcome::NotArchived)
    }
    async fn versioning(&self, _area: Area) -> StoreResult<Versioning> {
        self.call();
        Ok(Versioning::Unversioned)
    }
}

fn keys(n: usize) -> Vec<(String, Option<String>)> {
    (0..n).map(|i| (format!("nar/{i:05}"), None)).collect()
}

#[tokio::test]
async fn delete_all_sends_batches_of_at_most_a_thousand() {
    let m = MemStore::default();
    for (k, _) in keys(2_345) {
        m.put_if_absent(&Loc::cache(k), b"x").await.unwrap();
    }
    let before = m.calls();
    let r = delete_all(&m, Area::Cache, &keys(2_345)).await.unwrap();
    assert_eq!(r.len(), 2_345);
    assert_eq!(m.calls() - before, 3, "1000 + 1000 + 345");
    assert_eq!(m.len(), 0);
}

#[tokio::test]
async fn dry_run_records_mutations_and_changes_nothing() {
    let d = DryRun::new(MemStore::default(), 2);
    d.inner()
        .put_if_absent(&Loc::cache("nar/a"), b"12345")
        .await
        .unwrap();
    let opts = CopyOptions {
        storage_class: Some("DEEP_ARCHIVE".into()),
        ..Default::default()
    };
    let m = d
        .copy(&Loc::cache("nar/a"), &Loc::archive("nar/a"), &opts)
        .await
        .unwrap();
    assert_eq!(m.storage_class.as_deref(), Some("DEEP_ARCHIVE"));
    d.put_if_absent(&Loc::quarantine("x"), b"abc")
        .await
        .unwrap();
    d.delete(&Loc::cache("nar/a"), None).await.unwrap();
    d.delete_batch(Area::Cache, &keys(3)).await.unwrap();
    // Nothing changed; reads pass through.
    assert_eq!(d.inner().len(), 1);
    assert_eq!(
        d.get(&Loc::cache("nar/a")).await.unwrap().unwrap(),
        b"12345"
    );
    // A copy of a missing source fails as it would for real.
    assert_eq!(
        d.copy(&Loc::cache("nar/b"), &Loc::archive("nar/b"), &opts)
            .await
            .unwrap_err()
            .kind,
        StoreErrorKind::NotFound
    );
    let s = d.summary();
    assert_eq!(
        s[&MutationKind::Copy],
        OpCount {
            requests: 1,
            bytes: 5
        }
    );
    assert_eq!(
        s[&MutationKind::Put],
        OpCount {
            requests: 1,
            bytes: 3
        }
    );
    assert_eq!(s[&MutationKind::Delete].requests, 4);
    let r = d.records();
    assert_eq!(r.len(), 2, "only the first `keep` are kept");
    assert_eq!(r[0].from.as_deref(), Some("cache:nar/a"));
    assert_eq!(r[0].loc, "archive:nar/a");
    assert!(d.describe(Area::Cache).contains("dry run"));
    let text = d.summary_text();
    assert!(
        text.contains("copy: 1 requests") && text.contains("delete: 4 requests"),
        "{text}"
    );
}

fn faulty(fraction: f64, seed: u64) -> Faulty<MemStore> {
    Faulty::new(
        MemStore::default(),
        FaultConfig {
            fraction,
            kinds: vec![StoreErrorKind::Throttled, StoreErrorKind::Transient],
            after_effect: 0.5,
            seed,
            reads: true,
        },
    )
}

async fn failure_pattern(f: &Faulty<MemStore>) -> Vec<Option<StoreErrorKind>> {
    let mut v = Vec::new();
    for i in 0..1000 {
        let r = f.put_if_absent(&Loc::cache(format!("k{i}")), b"x").await;
        v.push(r.err().map(|e| e.kind));
    }
    v
}

#[tokio::test]
async fn faulty_batch_delete_leaves_failed_keys_alone_unless_the_answer_was_lost() {
    let f = Faulty::new(
        MemStore::default(),
        FaultConfig {
            fraction: 0.3,
            kinds: vec![StoreErrorKind::Throttled],
            after_effect: 0.0,
            seed: 3,
            reads: false,
        },
    );
    for (k, _) in keys(200) {
        f.inner().put_if_absent(&Loc::cache(k), b"x").await.unwrap();
    }
    let r = f.delete_batch(Area::Cache, &keys(200)).await.unwrap();
    let failed = r.iter().filter(|r| r.result.is_err()).count();
    assert!(failed > 20 && failed < 100, "{failed}");
    // Exactly the failed keys are still there.
    assert_eq!(f.inner().len(), failed);
    for x in &r {
        let there = f
            .inner()
            .head(&Loc::cache(x.key.clone()))
            .await
            .unwrap()
            .is_some();
        assert_eq!(there, x.result.is_err(), "{x:?}");
    }
}

#[tokio::test]
async fn faulty_fails_the_configured_fraction_deterministically() {
    let a = faulty(0.2, 7);
    let pa = failure_pattern(&a).await;
    let pb = failure_pattern(&faulty(0.2, 7)).await;
    let pc = failure_pattern(&faulty(0.2, 8)).await;
    assert_eq!(pa, pb, "same seed, same faults");
    assert_ne!(pa, pc);
    let n = pa.iter().filter(|k| k.is_some()).count();
    assert!((150..250).contains(&n), "{n} of 1000");
    assert_eq!(a.injected(), n as u64);
    assert!(pa.contains(&Some(StoreErrorKind::Throttled)));
    assert!(pa.contains(&Some(StoreErrorKind::Transient)));
    // Some failures happened after the effect: the object exists although the put failed.
    let written = a.inner().len();
    assert!(written > 1000 - n && written < 1000, "{written}");
}

fn fast_cfg() -> ThrottleConfig {
    ThrottleConfig {
        concurrency: 8,
        max_rate: 2000.0,
        min_rate: 50.0,
        decrease: 0.5,
        decrease_every: Duration::from_millis(20),
        recovery_per_sec: 200.0,
        max_retries: 20,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(20),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_retries_faults_until_every_operation_is_done() {
    let t = std::sync::Arc::new(Throttled::new(faulty(0.2, 1), fast_cfg()));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            t.put_if_absent(&Loc::cache(format!("k{i}")), b"x").await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(t.inner().inner().len(), 400, "nothing lost");
    let s = t.stats();
    assert_eq!(s.succeeded, 400);
    assert_eq!(s.failed, 0);
    assert!(
        s.retries > 0 && s.throttled + s.transient == s.retries,
        "{s:?}"
    );
    assert!(s.rate_lowest < 2000.0, "the rate went down: {s:?}");
    assert!(s.achieved_rate > 0.0);
    // Per-key faults of batch deletes are retried too.
    let keys: Vec<(String, Option<String>)> = (0..400).map(|i| (format!("k{i}"), None)).collect();
    let r = t.delete_batch(Area::Cache, &keys).await.unwrap();
    assert!(r.iter().all(|r| r.result.is_ok()), "{r:?}");
    assert_eq!(t.inner().inner().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_does_not_retry_what_cannot_succeed() {
    let t = Throttled::new(MemStore::default(), fast_cfg());
    let e = t
        .copy(
            &Loc::cache("absent"),
            &Loc::archive("x"),
            &CopyOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::NotFound);
    assert_eq!(t.inner().calls(), 1);
    assert_eq!(t.stats().failed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_falls_to_the_observed_success_rate_but_never_below_half() {
    let cfg = ThrottleConfig {
        decrease_every: Duration::from_millis(0),
        ..fast_cfg()
    };
    let t = Throttled::new(MemStore::default(), cfg);
    // 300 successes in about 0.3 s: some 1,000/s observed, below 2,000 × 0.8.
    let start = Instant::now();
    for i in 0..300 {
        t.head(&Loc::cache(format!("k{i}"))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(start.elapsed())).await;
    let e = StoreError::new(StoreErrorKind::Throttled, "x", &Loc::cache("k"), "");
    t.on_error(&e, 0);
    let r = t.stats().rate_now;
    assert!((1000.0..1600.0).contains(&r), "{r}");
    // Next, nothing succeeded: halved, not lower.
    t.on_error(&e, 0);
    let r2 = t.stats().rate_now;
    assert!((r2 - r * 0.5).abs() < 1.0, "{r} → {r2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_keeps_to_the_allowed_rate() {
    let cfg = ThrottleConfig {
        max_rate: 200.0,
        ..fast_cfg()
    };
    let t = Throttled::new(MemStore::default(), cfg);
    let start = Instant::now();
    for i in 0..100 {
        t.head(&Loc::cache(format!("k{i}"))).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    // 100 requests at 200/s: the last starts 0.495 s after the first.
    assert!(secs >= 0.45, "{secs}");
    assert!(secs < 2.0, "{secs}");
}

/// A throttling layer (over an empty store) that has seen `n` `Throttled` answers and no
/// success.
fn throttled_times(cfg: ThrottleConfig, n: usize) -> Throttled<MemStore> {
    let t = Throttled::new(MemStore::default(), cfg);
    let e = StoreError::new(StoreErrorKind::Throttled, "x", &Loc::cache("k"), "");
    for _ in 0..n {
        t.on_error(&e, 0);
    }
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_halves_the_rate_once_per_window_and_recovers_slowly() {
    let cfg = ThrottleConfig {
        decrease_every: Duration::from_secs(60),
        ..fast_cfg()
    };
    let t = throttled_times(cfg, 5);
    let s = t.stats();
    // Nothing succeeded yet: the observed rate is 0, so the rate halves, once.
    assert_eq!(
        s.rate_now, 1000.0,
        "a burst of throttling lowers the rate once"
    );
    // Slots reserved 0.2 s ahead: the pacing holds requests back, so the rate grows.
    for _ in 0..200 {
        t.reserve();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.reserve();
    let r = t.stats().rate_now;
    assert!(r > 1000.0 && r < 1100.0, "recovers by about 200/s: {r}");
}

/// Bench finding (`narward-bench run --only throttle`, 50 req/s allowed): the rate grew
/// by `recovery_per_sec` for every second since the last change, also while every
/// request slept in backoff, so it climbed from 24 to 733 req/s between throttlings and
/// only 66 % of the allowed rate was achieved.
#[tokio::test(flavor = "multi_thread")]
async fn idle_time_does_not_raise_the_allowed_rate() {
    let t = throttled_times(fast_cfg(), 1);
    let r0 = t.stats().rate_now;
    // Nothing waits for a slot for 0.3 s (every request asleep in backoff).
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.reserve();
    let r = t.stats().rate_now;
    assert!(r - r0 < 1.0, "{r0} → {r}: idle time raised the rate");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_low_rate_grows_by_at_most_a_quarter_of_itself_a_second() {
    let cfg = ThrottleConfig {
        decrease_every: Duration::from_millis(0),
        ..fast_cfg()
    };
    // Nothing succeeded: halved each time, 2,000 → 62.5 (the floor is 50).
    let t = throttled_times(cfg, 5);
    let r0 = t.stats().rate_now;
    assert!((r0 - 62.5).abs() < 1.0, "{r0}");
    for _ in 0..40 {
        t.reserve();
    }
    // 40 slots at 62.5/s: the pacing is busy for the next 0.64 s.
    tokio::time::sleep(Duration::from_millis(400)).await;
    t.reserve();
    let r = t.stats().rate_now;
    // recovery_per_sec is 200, but a quarter of 62.5 a second for 0.4 s is ≈ 6.
    assert!(r > r0 && r < r0 + 8.0, "{r0} → {r}");
}

/// Finding "two near-copies of the per-key batch-delete retry loop" (apply's batch
/// deletes and `Throttled`): both now use `retry_failed_keys`, which resends only the
/// retryable failures, replaces exactly their results, and stops after `rounds`.
#[tokio::test]
async fn one_retry_loop_for_batch_deletes_resends_only_retryable_keys_within_its_rounds() {
    let loc = |k: &str| Loc {
        area: Area::Cache,
        key: k.to_string(),
    };
    let answer = |k: &str, kind: Option<StoreErrorKind>| BatchDeleteResult {
        key: k.to_string(),
        version_id: None,
        result: match kind {
            None => Ok(()),
            Some(kind) => Err(StoreError::new(kind, "delete batch", &loc(k), "test")),
        },
    };
    let mut results = vec![
        answer("ok", None),
        answer("slow", Some(StoreErrorKind::Throttled)),
        answer("gone", Some(StoreErrorKind::Other)),
        answer("flaky", Some(StoreErrorKind::Transient)),
    ];
    let sent = Mutex::new(Vec::new());
    let round = |attempt: u32, first: StoreError, sub: Vec<(String, Option<String>)>| {
        lock(&sent).push((attempt, first.kind, sub.clone()));
        // "slow" stays throttled; everything else sent is deleted.
        let redo = sub
            .iter()
            .map(|(k, _)| answer(k, (k == "slow").then_some(StoreErrorKind::Throttled)))
            .collect();
        async move { Ok(redo) }
    };
    retry_failed_keys(&mut results, 3, round).await.unwrap();
    let sent = lock(&sent).clone();
    let keys =
        |v: &[(String, Option<String>)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(sent.len(), 3, "bounded by rounds while a key keeps failing");
    assert_eq!(keys(&sent[0].2), ["slow", "flaky"]);
    assert_eq!(sent[0].1, StoreErrorKind::Throttled);
    assert_eq!(keys(&sent[1].2), ["slow"]);
    assert_eq!(
        sent.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "attempts counted from 0"
    );
    assert!(results[0].result.is_ok() && results[3].result.is_ok());
    assert_eq!(
        results[1].result.as_ref().unwrap_err().kind,
        StoreErrorKind::Throttled
    );
    assert_eq!(
        results[2].result.as_ref().unwrap_err().kind,
        StoreErrorKind::Other
    );
    assert_eq!(
        results.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["ok", "slow", "gone", "flaky"],
        "input order kept"
    );
}
