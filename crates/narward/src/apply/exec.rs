//! The executor (edge, tokio): runs a program's batches against any [`Store`], journaled.
//!
//! Each batch is announced in the journal (fsynced) before its first request, and marked
//! done after its last; its steps run with bounded concurrency. One step:
//! 1. guards: every narinfo of the paths using this NAR must be gone from the cache area
//!    (hidden), else the step is skipped;
//! 2. conditional copy (`if_match` the plan's ETag, `if_absent`) to the destination, and
//!    verification of the copy's size against the plan;
//! 3. delete of the source: a single request right after an ETag check, except for
//!    content-addressed NARs, whose sources are deleted together in one DeleteObjects
//!    request once every step of the batch has run (see [`super::batch_delete`]).
//!
//! A repeated step (after a crash) finds the destination already holding the same bytes,
//! or the source already gone and the destination present: both count as done.
//! `Throttled`/`Transient` errors are retried with exponential backoff and jitter;
//! `PreconditionFailed` (changed since the plan), `NotFound` and per-object failures skip
//! the object and are reported; `Denied` stops the run.

use super::Phase;
use super::journal::{Journal, Record};
use super::program::{Batch, Op, Skip};
use crate::cache::store::{CopyOptions, Loc, Store, StoreError, StoreErrorKind, StoreResult};
use crate::cache::store_wrap::pause;
use anyhow::{Result, bail};
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Tuning of a run.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Steps in flight at once.
    pub concurrency: usize,
    /// Attempts per request on retryable errors.
    pub max_attempts: u32,
    /// First backoff delay.
    pub backoff: Duration,
    /// For tests: abort the process (as a crash would) after this many store mutations.
    pub abort_after: Option<u64>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            concurrency: 16,
            max_attempts: 8,
            backoff: Duration::from_millis(100),
            abort_after: None,
        }
    }
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    Moved,
    Skipped(String),
    /// Copied and verified; the source is to be deleted in the batch's DeleteObjects
    /// request (content-addressed NARs only).
    AwaitingDelete,
}

/// Counts of one phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PhaseReport {
    pub moved: u64,
    pub bytes: u64,
    pub skipped: u64,
}

/// The summary of a run (`--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub phases: BTreeMap<Phase, PhaseReport>,
    /// Objects left alone (re-check and run), with the reason.
    pub skipped: Vec<Skip>,
    pub seconds: f64,
    pub objects_per_second: f64,
    /// What the adaptive throttling of the store did (S3): requests, throttled and
    /// transient answers, retries, allowed and achieved rates. `None` for stores without
    /// throttling (`file://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleReport>,
    /// In a bucket whose versioning is enabled or suspended: what the deletes left behind
    /// (noncurrent versions) and what frees their storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versioning_note: Option<String>,
}

/// The note of a run in a bucket with `v`ersioning (`None` when unversioned).
pub fn versioning_note(v: crate::cache::store::Versioning) -> Option<String> {
    use crate::cache::store::Versioning;
    match v {
        Versioning::Unversioned => None,
        Versioning::Enabled | Versioning::Suspended => Some(
            "the bucket is versioned: each object moved or deleted remains as a noncurrent version behind a delete marker, billed until a NoncurrentVersionExpiration lifecycle rule expires it (the plan's saving is conditional on that)".into(),
        ),
    }
}

/// The throttling of a run: the wrapper's counters (per store operation: a HEAD, a copy,
/// a delete; a copy is one to three HTTP requests), and the rate achieved over the run's
/// batches (`operations_per_second`: successful operations / `seconds`).
#[derive(Debug, Clone, Serialize)]
pub struct ThrottleReport {
    #[serde(flatten)]
    pub stats: crate::cache::store_wrap::ThrottleStats,
    pub operations_per_second: f64,
}

static MUTATIONS: AtomicU64 = AtomicU64::new(0);

/// Count one store mutation; with `abort_after` (tests) abort the process there, as a crash
/// would.
pub fn checkpoint(o: &ExecOptions) {
    let n = MUTATIONS.fetch_add(1, Ordering::SeqCst) + 1;
    if o.abort_after.is_some_and(|a| n >= a) {
        eprintln!("narward: aborting after {n} mutations (NARWARD_APPLY_ABORT_AFTER)");
        std::process::abort();
    }
}

/// Call `f` (a request to `store`) until it succeeds or fails with a non-retryable error
/// or `max_attempts` ran out, sleeping with backoff ([`crate::cache::store_wrap::pause`])
/// between attempts. A store that retries itself (`Throttled`) is asked once: one retry
/// layer, never attempts multiplied.
pub async fn retry<S: Store, T, F, Fut>(o: &ExecOptions, store: &S, mut f: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let max_attempts = if store.retries_itself() {
        1
    } else {
        o.max_attempts
    };
    let mut attempt = 0u32;
    loop {
        match f().await {
            Err(e) if e.kind.is_retryable() && attempt + 1 < max_attempts => {
                tokio::time::sleep(pause(o.backoff, MAX_PAUSE, attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// The longest wait between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(20);

/// Run one step (`Err` only for errors that must stop the run: `Denied`); with
/// `defer_delete`, a step that would delete its source answers
/// [`StepResult::AwaitingDelete`] instead (the caller batches those deletes).
async fn run_step<S: Store>(
    store: &S,
    op: &Op,
    o: &ExecOptions,
    defer_delete: bool,
) -> StoreResult<StepResult> {
    match step(store, op, o, defer_delete).await {
        Ok(r) => Ok(r),
        Err(e) if e.kind == StoreErrorKind::Denied => Err(e),
        Err(e) => Ok(StepResult::Skipped(e.to_string())),
    }
}

async fn step<S: Store>(
    store: &S,
    op: &Op,
    o: &ExecOptions,
    defer_delete: bool,
) -> StoreResult<StepResult> {
    for g in &op.guards {
        let l = Loc::cache(g.clone());
        if retry(o, store, || store.head(&l)).await?.is_some() {
            return Ok(StepResult::Skipped(format!(
                "its narinfo {g} is still in the cache (not hidden)"
            )));
        }
    }
    let from = Loc::cache(op.key.clone());
    let opts = CopyOptions {
        storage_class: op.storage_class.clone(),
        if_match: op.etag.clone(),
        if_absent: op.delete_source,
    };
    match retry(o, store, || store.copy(&from, &op.to, &opts)).await {
        Ok(m) if m.size == op.size => {}
        Ok(m) => {
            return Ok(StepResult::Skipped(format!(
                "copy to {} has {} bytes, the plan says {}; source left in place",
                op.to, m.size, op.size
            )));
        }
        Err(e) if e.kind == StoreErrorKind::NotFound && op.delete_source => {
            // Already moved by an earlier, interrupted run?
            return match retry(o, store, || store.head(&op.to)).await? {
                Some(m) if m.size == op.size => Ok(StepResult::Moved),
                _ => Ok(StepResult::Skipped(e.to_string())),
            };
        }
        Err(e) => return Err(e),
    }
    checkpoint(o);
    if op.delete_source {
        // The source must still be what was copied (a re-upload since is left alone).
        let now = retry(o, store, || store.head(&from)).await?;
        if let (Some(m), Some(want)) = (&now, &op.etag)
            && m.etag.as_deref() != Some(want.as_str())
        {
            return Ok(StepResult::Skipped(format!(
                "changed during the step (ETag {:?}, plan {want:?}); the copy in {} and the source are both kept",
                m.etag, op.to
            )));
        }
        if defer_delete {
            return Ok(StepResult::AwaitingDelete);
        }
        retry(o, store, || store.delete(&from, None)).await?;
        checkpoint(o);
    }
    Ok(StepResult::Moved)
}

/// Run `batches` (in order) from the journal's cursor `next_seq` on, journaling each;
/// `counts` are the steps per phase, for the progress bars.
///
/// # Errors
/// The journal cannot be written; a `Denied` error (the run stops; resume later).
pub async fn run<S: Store>(
    store: &S,
    batches: impl Iterator<Item = Batch>,
    counts: [u64; 3],
    next_seq: u64,
    journal: &mut Journal,
    o: &ExecOptions,
    report: &mut Report,
) -> Result<()> {
    let start = Instant::now();
    let mut bar: Option<(Phase, indicatif::ProgressBar)> = None;
    for b in batches {
        if bar.as_ref().is_none_or(|(p, _)| *p != b.phase) {
            if let Some((_, pb)) = bar.take() {
                pb.finish();
            }
            let pb = crate::progress::bar(counts[b.phase as usize], b.phase.as_str());
            bar = Some((b.phase, pb));
        }
        let Some((_, pb)) = &bar else { continue };
        if b.seq < next_seq {
            pb.inc(b.ops.len() as u64);
            continue;
        }
        journal.append(&Record::Announce { seq: b.seq })?;
        let results = run_batch(store, &b, o, pb).await;
        let denied = tally(&b, results, journal, report)?;
        if let Some(e) = denied {
            pb.abandon();
            bail!("{e}: stopping (fix the permissions, then `narward apply --resume`)");
        }
        journal.append(&Record::Done { seq: b.seq })?;
    }
    if let Some((_, pb)) = bar {
        pb.finish();
    }
    report.seconds = start.elapsed().as_secs_f64();
    let moved: u64 = report.phases.values().map(|p| p.moved).sum();
    report.objects_per_second = moved as f64 / report.seconds.max(1e-9);
    Ok(())
}

/// Run the steps of one batch (bounded concurrency), then delete the sources of its
/// content-addressed NARs in one DeleteObjects request.
async fn run_batch<S: Store>(
    store: &S,
    b: &Batch,
    o: &ExecOptions,
    pb: &indicatif::ProgressBar,
) -> Vec<(usize, StoreResult<StepResult>)> {
    let mut results: Vec<(usize, StoreResult<StepResult>)> =
        futures::stream::iter(b.ops.iter().enumerate())
            .map(|(i, op)| async move {
                let defer = op.delete_source && super::batch_delete::batchable_source(&op.key);
                (i, run_step(store, op, o, defer).await)
            })
            .buffer_unordered(o.concurrency.max(1))
            .inspect(|_| pb.inc(1))
            .collect()
            .await;
    let pending: Vec<usize> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(StepResult::AwaitingDelete)))
        .map(|(i, _)| *i)
        .collect();
    if pending.is_empty() {
        return results;
    }
    results.retain(|(_, r)| !matches!(r, Ok(StepResult::AwaitingDelete)));
    match super::batch_delete::delete_sources(store, &b.ops, &pending, o).await {
        Ok(done) => {
            checkpoint(o);
            results.extend(done.into_iter().map(|(i, r)| (i, Ok(r))));
        }
        Err(e) => results.extend(pending.iter().map(|&i| (i, Err(e.clone())))),
    }
    results
}

/// Count a batch's results into `report`, journaling skips; gives a `Denied` error if any.
fn tally(
    b: &Batch,
    results: Vec<(usize, StoreResult<StepResult>)>,
    journal: &mut Journal,
    report: &mut Report,
) -> Result<Option<StoreError>> {
    let pr = report.phases.entry(b.phase).or_default();
    let mut denied = None;
    for (i, r) in results {
        let op = &b.ops[i];
        match r {
            Ok(StepResult::Moved) => {
                pr.moved += 1;
                pr.bytes += op.size;
            }
            Ok(not_moved) => {
                // run_batch resolves every deferred delete; one left over counts as
                // skipped (its source is kept), never as moved.
                let reason = match not_moved {
                    StepResult::Skipped(r) => r,
                    _ => "its source delete was never sent; the source is kept".into(),
                };
                pr.skipped += 1;
                let k = Skip {
                    key: op.key.clone(),
                    reason,
                };
                journal.append(&Record::Skip(k.clone()))?;
                report.skipped.push(k);
            }
            Err(e) => denied = Some(e),
        }
    }
    Ok(denied)
}

/// Tests: run `ops` as batch 0 of the quarantine phase, journaled in `<dir>/j`; what
/// [`run`] answered, and its report.
#[cfg(test)]
pub(crate) fn run_one_batch<S: Store>(
    store: &S,
    dir: &std::path::Path,
    ops: Vec<Op>,
    o: &ExecOptions,
) -> (Result<()>, Report) {
    let begin = super::journal::Begin {
        plan: "p".into(),
        plan_dir: "/p".into(),
        cache: "c".into(),
        archive: "a".into(),
        quarantine: "q".into(),
        stamp: "1".into(),
        batch_size: ops.len().max(1),
    };
    let mut j = Journal::create(&dir.join("j"), begin).expect("a test journal");
    let n = ops.len() as u64;
    let b = Batch {
        phase: Phase::Quarantine,
        seq: 0,
        ops,
    };
    let mut rep = Report::default();
    let r = crate::cache::test_store::block(run(
        store,
        std::iter::once(b),
        [0, 0, n],
        0,
        &mut j,
        o,
        &mut rep,
    ));
    (r, rep)
}

#[cfg(test)]
mod tests;
