//! Wrappers over any [`Store`], and batch helpers:
//! - [`DryRun`]: reads pass through, mutations are recorded instead of made (`apply
//!   --dry-run`), with a summary per operation kind;
//! - [`Faulty`]: fails a chosen fraction of operations with chosen kinds, from a seed
//!   (tests of retry, resume and per-key handling);
//! - [`Throttled`]: bounded concurrency, a request rate that halves on throttling and
//!   recovers slowly, and retries with exponential backoff and full jitter on `Throttled`
//!   and `Transient`; reports the achieved rate;
//! - [`delete_all`]: any number of keys in DeleteObjects batches of at most 1,000.

use super::ObjectMeta;
use super::store::{
    Area, BatchDeleteResult, CopyOptions, Loc, PutOutcome, RestoreOutcome, Store, StoreError,
    StoreErrorKind, StoreResult, Tier, Versioning,
};
use crate::model::ObjectRecord;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most keys one DeleteObjects request may carry.
pub const DELETE_BATCH_MAX: usize = 1000;

/// Delete any number of keys of one area, in batches of at most 1,000, one after the
/// other; the per-key results in input order. A batch that fails as a whole stops here
/// with its error (the earlier batches are done; deleting again is harmless).
///
/// # Errors
/// The first batch-level failure.
pub async fn delete_all<S: Store>(
    store: &S,
    area: Area,
    keys: &[(String, Option<String>)],
) -> StoreResult<Vec<BatchDeleteResult>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(DELETE_BATCH_MAX) {
        out.extend(store.delete_batch(area, chunk).await?);
    }
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ------------------------------------------------------------------------ dry run ----

/// A mutation a dry run did not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MutationKind {
    Put,
    Copy,
    Delete,
    Restore,
}

impl MutationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MutationKind::Put => "put",
            MutationKind::Copy => "copy",
            MutationKind::Delete => "delete",
            MutationKind::Restore => "restore",
        }
    }
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub op: MutationKind,
    /// The object acted on (the destination of a copy).
    pub loc: String,
    /// The source of a copy.
    pub from: Option<String>,
    /// The storage class of a copy.
    pub storage_class: Option<String>,
    /// Bytes written (put, copy: the source's size); 0 for deletes and restores, whose
    /// sizes the caller knows from the plan.
    pub bytes: u64,
}

/// Requests and bytes of one operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpCount {
    pub requests: u64,
    pub bytes: u64,
}

/// Reads pass through to the wrapped store; mutations are recorded and answered as if
/// they had succeeded (a copy answers with the source's metadata and the new class; a
/// put with `Created`), so an apply runs to the end without changing anything. Later
/// reads do not see the recorded mutations. The first `keep` requests are kept in full
/// (for printing); all are counted.
pub struct DryRun<S> {
    inner: S,
    keep: usize,
    records: Mutex<Vec<Recorded>>,
    counts: Mutex<BTreeMap<MutationKind, OpCount>>,
}

impl<S: Store> DryRun<S> {
    pub fn new(inner: S, keep: usize) -> DryRun<S> {
        DryRun {
            inner,
            keep,
            records: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The first `keep` recorded requests, in the order they were made.
    pub fn records(&self) -> Vec<Recorded> {
        lock(&self.records).clone()
    }

    /// Requests and bytes per operation kind.
    pub fn summary(&self) -> BTreeMap<MutationKind, OpCount> {
        lock(&self.counts).clone()
    }

    /// One line per operation kind: `copy: 12 requests, 3.4 GiB`.
    pub fn summary_text(&self) -> String {
        self.summary()
            .iter()
            .map(|(k, c)| {
                format!(
                    "{}: {} requests, {}\n",
                    k.as_str(),
                    c.requests,
                    crate::explain::human_bytes(c.bytes)
                )
            })
            .collect()
    }

    fn record(&self, r: Recorded) {
        {
            let mut c = lock(&self.counts);
            let e = c.entry(r.op).or_default();
            e.requests += 1;
            e.bytes += r.bytes;
        }
        let mut v = lock(&self.records);
        if v.len() < self.keep {
            v.push(r);
        }
    }

    fn simple(&self, op: MutationKind, loc: &Loc, bytes: u64) {
        self.record(Recorded {
            op,
            loc: loc.to_string(),
            from: None,
            storage_class: None,
            bytes,
        });
    }
}

impl<S: Store> Store for DryRun<S> {
    fn describe(&self, area: Area) -> String {
        format!("{} (dry run)", self.inner.describe(area))
    }
    fn archives_in_place(&self) -> bool {
        self.inner.archives_in_place()
    }
    fn retries_itself(&self) -> bool {
        self.inner.retries_itself()
    }
    async fn head(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(loc).await
    }
    async fn get(&self, loc: &Loc) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get(loc).await
    }
    async fn list(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        self.inner.list(area, prefix).await
    }
    async fn put_if_absent(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        self.simple(MutationKind::Put, loc, bytes.len() as u64);
        Ok(PutOutcome::Created { etag: None })
    }
    async fn copy(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        let Some(mut src) = self.inner.head(from).await? else {
            return Err(StoreError::new(
                StoreErrorKind::NotFound,
                "copy",
                from,
                "the source does not exist",
            ));
        };
        self.record(Recorded {
            op: MutationKind::Copy,
            loc: to.to_string(),
            from: Some(from.to_string()),
            storage_class: opts.storage_class.clone(),
            bytes: src.size,
        });
        src.storage_class = opts.storage_class.clone();
        src.restore = None;
        src.version_id = None;
        Ok(src)
    }
    async fn delete(&self, loc: &Loc, _version_id: Option<&str>) -> StoreResult<()> {
        self.simple(MutationKind::Delete, loc, 0);
        Ok(())
    }
    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        Ok(keys
            .iter()
            .map(|(k, v)| {
                self.simple(
                    MutationKind::Delete,
                    &Loc {
                        area,
                        key: k.clone(),
                    },
                    0,
                );
                BatchDeleteResult {
                    key: k.clone(),
                    version_id: v.clone(),
                    result: Ok(()),
                }
            })
            .collect())
    }
    async fn restore(&self, loc: &Loc, _days: u32, _tier: Tier) -> StoreResult<RestoreOutcome> {
        self.simple(MutationKind::Restore, loc, 0);
        Ok(RestoreOutcome::Started)
    }
    async fn versioning(&self, area: Area) -> StoreResult<Versioning> {
        self.inner.versioning(area).await
    }
}

// ------------------------------------------------------------------------- faulty ----

/// Which faults [`Faulty`] injects.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Fraction of operations (0.0–1.0) that fail.
    pub fraction: f64,
    /// The kinds a failure has, chosen at random among these.
    pub kinds: Vec<StoreErrorKind>,
    /// Of the failures, the fraction that happen *after* the operation took effect (the
    /// answer was lost): what a resumed apply must cope with.
    pub after_effect: f64,
    pub seed: u64,
    /// Whether reads (head, get, list, versioning) fail too, or only mutations.
    pub reads: bool,
}

/// Fails a configured fraction of operations, deterministically from a seed. For tests.
pub struct Faulty<S> {
    inner: S,
    cfg: FaultConfig,
    rng: Mutex<StdRng>,
    injected: AtomicU64,
}

impl<S: Store> Faulty<S> {
    pub fn new(inner: S, cfg: FaultConfig) -> Faulty<S> {
        Faulty {
            inner,
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            cfg,
            injected: AtomicU64::new(0),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many failures were injected.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// `Some((kind, after_effect))` when this operation is to fail.
    fn draw(&self, read: bool) -> Option<(StoreErrorKind, bool)> {
        if read && !self.cfg.reads || self.cfg.kinds.is_empty() {
            return None;
        }
        let mut r = lock(&self.rng);
        if r.r#gen::<f64>() >= self.cfg.fraction {
            return None;
        }
        let kind = self.cfg.kinds[r.gen_range(0..self.cfg.kinds.len())];
        let after = !read && r.r#gen::<f64>() < self.cfg.after_effect;
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some((kind, after))
    }

    async fn run<T, F>(&self, op: &'static str, loc: &Loc, read: bool, f: F) -> StoreResult<T>
    where
        F: Future<Output = StoreResult<T>>,
    {
        match self.draw(read) {
            None => f.await,
            Some((kind, after)) => {
                if after {
                    // The effect happens; only its answer is lost.
                    let _ = f.await;
                }
                Err(StoreError::new(kind, op, loc, "injected fault"))
            }
        }
    }
}

impl<S: Store> Store for Faulty<S> {
    fn describe(&self, area: Area) -> String {
        self.inner.describe(area)
    }
    fn archives_in_place(&self) -> bool {
        self.inner.archives_in_place()
    }
    async fn head(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        self.run("head", loc, true, self.inner.head(loc)).await
    }
    async fn get(&self, loc: &Loc) -> StoreResult<Option<Vec<u8>>> {
        self.run("get", loc, true, self.inner.get(loc)).await
    }
    async fn list(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        let loc = Loc {
            area,
            key: prefix.to_string(),
        };
        self.run("list", &loc, true, self.inner.list(area, prefix))
            .await
    }
    async fn put_if_absent(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        self.run("put", loc, false, self.inner.put_if_absent(loc, bytes))
            .await
    }
    async fn copy(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        self.run("copy", to, false, self.inner.copy(from, to, opts))
            .await
    }
    async fn delete(&self, loc: &Loc, version_id: Option<&str>) -> StoreResult<()> {
        self.run("delete", loc, false, self.inner.delete(loc, version_id))
            .await
    }
    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        // Faults per key, like DeleteObjects' <Error> entries: the key is left alone, or
        // (after_effect) deleted with its answer lost.
        let faults: Vec<Option<(StoreErrorKind, bool)>> =
            keys.iter().map(|_| self.draw(false)).collect();
        let sent: Vec<(String, Option<String>)> = keys
            .iter()
            .zip(&faults)
            .filter(|(_, f)| f.is_none_or(|(_, after)| after))
            .map(|(k, _)| k.clone())
            .collect();
        let mut answers = self.inner.delete_batch(area, &sent).await?.into_iter();
        let mut out = Vec::with_capacity(keys.len());
        for ((key, version_id), fault) in keys.iter().zip(faults) {
            let answer = match fault {
                Some((_, false)) => None,
                _ => answers.next(),
            };
            let result = match (fault, answer) {
                (Some((kind, _)), _) => {
                    let loc = Loc {
                        area,
                        key: key.clone(),
                    };
                    Err(StoreError::new(
                        kind,
                        "delete batch",
                        &loc,
                        "injected fault",
                    ))
                }
                (None, Some(a)) => a.result,
                (None, None) => Ok(()),
            };
            out.push(BatchDeleteResult {
                key: key.clone(),
                version_id: version_id.clone(),
                result,
            });
        }
        Ok(out)
    }
    async fn restore(&self, loc: &Loc, days: u32, tier: Tier) -> StoreResult<RestoreOutcome> {
        self.run("restore", loc, false, self.inner.restore(loc, days, tier))
            .await
    }
    async fn versioning(&self, area: Area) -> StoreResult<Versioning> {
        let loc = Loc {
            area,
            key: String::new(),
        };
        self.run("versioning", &loc, true, self.inner.versioning(area))
            .await
    }
}

// ---------------------------------------------------------------------- throttled ----

/// Settings of [`Throttled`].
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Starting and highest request rate (requests per second).
    pub max_rate: f64,
    /// The rate never goes below this.
    pub min_rate: f64,
    /// On throttling (at most once per `decrease_every`) the rate becomes the success rate
    /// observed since the last decrease, but at most `rate × decrease` and at least
    /// `rate × 0.5`: it falls fast to what the server accepts, then stays near it.
    pub decrease: f64,
    pub decrease_every: Duration,
    /// Requests per second regained per second without throttling, while the pacing
    /// holds requests back (at most a quarter of the rate a second).
    pub recovery_per_sec: f64,
    /// Retries of one request (after the first attempt).
    pub max_retries: u32,
    /// Backoff base and cap: the n-th retry waits a random time in
    /// `[0, min(cap, base·2ⁿ)]` (full jitter).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            concurrency: 64,
            max_rate: 3000.0,
            min_rate: 5.0,
            decrease: 0.8,
            decrease_every: Duration::from_millis(500),
            recovery_per_sec: 50.0,
            max_retries: 10,
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_secs(20),
        }
    }
}

/// What a [`Throttled`] store did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThrottleStats {
    /// Operations that succeeded (after retries).
    pub succeeded: u64,
    /// Operations that failed for good.
    pub failed: u64,
    /// Attempts answered `Throttled`, and `Transient`.
    pub throttled: u64,
    pub transient: u64,
    pub retries: u64,
    /// The allowed rate now, and the lowest it fell to.
    pub rate_now: f64,
    pub rate_lowest: f64,
    pub elapsed_secs: f64,
    /// `succeeded / elapsed_secs`.
    pub achieved_rate: f64,
}

struct RateState {
    rate: f64,
    lowest: f64,
    next_at: Instant,
    last_decrease: Option<Instant>,
    last_increase: Instant,
    /// Successes since `window_start` (the last decrease): the observed success rate.
    window_ok: u64,
    window_start: Instant,
}

/// The wait before retry number `attempt` (from 0): a random time in
/// `[0, min(cap, base·2^attempt)]` (full jitter). The one backoff of narward's retries.
pub fn pause(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    exp.min(cap).mul_f64(rand::random::<f64>())
}

/// The positions in `results` of the keys whose delete failed with a retryable error.
fn retryable(results: &[BatchDeleteResult]) -> Vec<usize> {
    (0..results.len())
        .filter(|&i| {
            results[i]
                .result
                .as_ref()
                .is_err_and(|e| e.kind.is_retryable())
        })
        .collect()
}

/// The one retry loop of a batch delete's per-key failures: up to `rounds` times, the
/// keys of `results` that failed with a retryable error are sent again as a smaller batch
/// by `round(attempt, first retryable error, keys)` (which waits its backoff first), and
/// their new results replace the old ones in place. Used by [`Throttled`] and, for a store
/// that does not retry itself, by `apply`'s batch deletes.
///
/// # Errors
/// A round that fails as a whole.
pub async fn retry_failed_keys<F, Fut>(
    results: &mut [BatchDeleteResult],
    rounds: u32,
    mut round: F,
) -> StoreResult<()>
where
    F: FnMut(u32, StoreError, Vec<(String, Option<String>)>) -> Fut,
    Fut: Future<Output = StoreResult<Vec<BatchDeleteResult>>>,
{
    for attempt in 0..rounds {
        let again = retryable(results);
        let Some(Err(first)) = again.first().map(|&i| results[i].result.clone()) else {
            break;
        };
        let sub: Vec<(String, Option<String>)> = again
            .iter()
            .map(|&i| (results[i].key.clone(), results[i].version_id.clone()))
            .collect();
        let redo = round(attempt, first, sub).await?;
        for (&i, r) in again.iter().zip(redo) {
            results[i] = r;
        }
    }
    Ok(())
}

/// Adaptive rate control over a store: at most `concurrency` requests in flight, spaced
/// at the current allowed rate; a `Throttled` or `Transient` answer lowers the rate (see
/// [`ThrottleConfig::decrease`]; at most once per `decrease_every`, so a burst of failures
/// counts once) and the request is retried after a fully jittered exponential backoff; the rate grows
/// back by `recovery_per_sec` (at most a quarter of itself) each second that requests
/// wait for their slot. Per-key retryable failures of a batch delete
/// are retried as a smaller batch.
pub struct Throttled<S> {
    inner: S,
    cfg: ThrottleConfig,
    slots: tokio::sync::Semaphore,
    state: Mutex<RateState>,
    started: Instant,
    succeeded: AtomicU64,
    failed: AtomicU64,
    throttled: AtomicU64,
    transient: AtomicU64,
    retries: AtomicU64,
}

impl<S: Store> Throttled<S> {
    pub fn new(inner: S, cfg: ThrottleConfig) -> Throttled<S> {
        let now = Instant::now();
        Throttled {
            inner,
            slots: tokio::sync::Semaphore::new(cfg.concurrency.max(1)),
            state: Mutex::new(RateState {
                rate: cfg.max_rate,
                lowest: cfg.max_rate,
                next_at: now,
                last_decrease: None,
                last_increase: now,
                window_ok: 0,
                window_start: now,
            }),
            cfg,
            started: now,
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            transient: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn stats(&self) -> ThrottleStats {
        let st = lock(&self.state);
        let elapsed = self.started.elapsed().as_secs_f64();
        let ok = self.succeeded.load(Ordering::Relaxed);
        ThrottleStats {
            succeeded: ok,
            failed: self.failed.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            transient: self.transient.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_now: st.rate,
            rate_lowest: st.lowest,
            elapsed_secs: elapsed,
            achieved_rate: if elapsed > 0.0 {
                ok as f64 / elapsed
            } else {
                0.0
            },
        }
    }

    /// When the next request may start (reserving its slot in time).
    fn reserve(&self) -> Instant {
        let mut st = lock(&self.state);
        let now = Instant::now();
        // The rate is regained only for the time the pacing held requests back (slots
        // reserved up to `next_at`): idle time, e.g. while requests sleep in backoff,
        // does not raise it. It grows by at most a quarter of itself a second, so at a
        // low allowed rate it does not overshoot by multiples between two throttlings.
        let busy = st
            .next_at
            .min(now)
            .saturating_duration_since(st.last_increase);
        let step = self.cfg.recovery_per_sec.min(st.rate * 0.25);
        st.rate = (st.rate + step * busy.as_secs_f64()).min(self.cfg.max_rate);
        st.last_increase = now;
        let at = st.next_at.max(now);
        st.next_at = at + Duration::from_secs_f64(1.0 / st.rate.max(self.cfg.min_rate));
        at
    }

    fn slow_down(&self) {
        let mut st = lock(&self.state);
        let now = Instant::now();
        if st
            .last_decrease
            .is_some_and(|t| now.duration_since(t) < self.cfg.decrease_every)
        {
            return;
        }
        st.last_decrease = Some(now);
        let secs = now.duration_since(st.window_start).as_secs_f64();
        let observed = if secs > 0.0 {
            st.window_ok as f64 / secs
        } else {
            0.0
        };
        let target = observed.min(st.rate * self.cfg.decrease).max(st.rate * 0.5);
        st.rate = target.max(self.cfg.min_rate);
        st.window_ok = 0;
        st.window_start = now;
        st.lowest = st.lowest.min(st.rate);
        st.last_increase = now;
    }

    fn backoff(&self, attempt: u32) -> Duration {
        pause(self.cfg.backoff_base, self.cfg.backoff_cap, attempt)
    }

    /// Note a failed attempt; whether to retry it.
    fn on_error(&self, e: &StoreError, attempt: u32) -> bool {
        match e.kind {
            StoreErrorKind::Throttled => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                self.slow_down();
            }
            StoreErrorKind::Transient => {
                self.transient.fetch_add(1, Ordering::Relaxed);
                self.slow_down();
            }
            _ => return false,
        }
        attempt < self.cfg.max_retries
    }

    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut attempt = 0u32;
        loop {
            let r = {
                let _slot = self.slots.acquire().await;
                let at = self.reserve();
                tokio::time::sleep_until(at.into()).await;
                f().await
            };
            match r {
                Ok(v) => {
                    self.succeeded.fetch_add(1, Ordering::Relaxed);
                    lock(&self.state).window_ok += 1;
                    return Ok(v);
                }
                Err(e) if self.on_error(&e, attempt) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }

    async fn delete_batch_retrying(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        let mut results = self.run(|| self.inner.delete_batch(area, keys)).await?;
        let round = |attempt: u32, e: StoreError, sub: Vec<(String, Option<String>)>| {
            self.on_error(&e, attempt);
            self.retries.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(self.backoff(attempt)).await;
                self.run(|| self.inner.delete_batch(area, &sub)).await
            }
        };
        retry_failed_keys(&mut results, self.cfg.max_retries, round).await?;
        Ok(results)
    }
}

impl<S: Store> Store for Throttled<S> {
    fn describe(&self, area: Area) -> String {
        self.inner.describe(area)
    }
    fn archives_in_place(&self) -> bool {
        self.inner.archives_in_place()
    }
    fn retries_itself(&self) -> bool {
        true
    }
    async fn head(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        self.run(|| self.inner.head(loc)).await
    }
    async fn get(&self, loc: &Loc) -> StoreResult<Option<Vec<u8>>> {
        self.run(|| self.inner.get(loc)).await
    }
    async fn list(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        self.run(|| self.inner.list(area, prefix)).await
    }
    async fn put_if_absent(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        self.run(|| self.inner.put_if_absent(loc, bytes)).await
    }
    async fn copy(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        self.run(|| self.inner.copy(from, to, opts)).await
    }
    async fn delete(&self, loc: &Loc, version_id: Option<&str>) -> StoreResult<()> {
        self.run(|| self.inner.delete(loc, version_id)).await
    }
    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        self.delete_batch_retrying(area, keys).await
    }
    async fn restore(&self, loc: &Loc, days: u32, tier: Tier) -> StoreResult<RestoreOutcome> {
        self.run(|| self.inner.restore(loc, days, tier)).await
    }
    async fn versioning(&self, area: Area) -> StoreResult<Versioning> {
        self.run(|| self.inner.versioning(area)).await
    }
}

#[cfg(test)]
mod tests;
