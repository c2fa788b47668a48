//! Deletes in DeleteObjects batches (edge): at most 1,000 keys a request, a result per
//! key. A key that fails with a retryable error (`Throttled`, `Transient`) is sent again
//! in a smaller batch, with backoff, up to `max_attempts`; a key that still fails is
//! reported with its error and never counted as deleted; `Denied` stops the caller.
//!
//! Which deletes may be batched (docs/apply.md): DeleteObjects cannot be
//! conditional per key, so a batch widens the window between a step's ETag check and its
//! delete. That is safe only where a write to the same key cannot bring other bytes:
//! - objects in the quarantine area (`apply --finalize`): only narward writes there;
//! - content-addressed NARs (`nar/<file hash>.nar…`, [`batchable_source`]): the key is
//!   the hash of the bytes, so a re-upload has the same bytes, and the verified copy
//!   holds them.
//!
//! Narinfos, `.ls` and every other key can be rewritten with new content: their deletes
//! stay single requests, right after their own ETag check.
//!
//! [`DeleteLog`] journals each finalize batch (its keys) before the request is sent.

use super::exec::ExecOptions;
use super::program::Skip;
use crate::cache::store::{Area, BatchDeleteResult, Loc, Store, StoreError, StoreErrorKind};
use crate::cache::store_wrap::{DELETE_BATCH_MAX, pause, retry_failed_keys};
use anyhow::{Context, Result};
use narward_formats::keys::{Category, classify};
use serde::Serialize;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether an apply may delete the source `key` (in the cache area) in a DeleteObjects
/// batch after its copy was verified: only content-addressed NARs.
pub fn batchable_source(key: &str) -> bool {
    classify(key).category() == Category::Nar
}

/// What deleting a list of keys did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    /// Keys deleted (or already absent), in input order.
    pub deleted: Vec<String>,
    /// Keys not deleted, with the error (still there, or unknown: reported, not counted).
    pub failed: Vec<Skip>,
    /// DeleteObjects requests sent (retries of failed keys included).
    pub requests: u64,
}

/// One DeleteObjects request of ≤ 1,000 keys, the request retried as a whole on a
/// retryable error, then its retryable per-key failures sent again (smaller batches);
/// by the store itself when it retries ([`Store::retries_itself`]), else here.
///
/// # Errors
/// `Denied` (for the request or any key): the caller stops.
async fn one_batch<S: Store>(
    store: &S,
    area: Area,
    keys: &[(String, Option<String>)],
    o: &ExecOptions,
    requests: &AtomicU64,
) -> Result<Vec<BatchDeleteResult>, StoreError> {
    let mut results = send(store, area, keys, o, requests).await?;
    let rounds = if store.retries_itself() {
        0
    } else {
        o.max_attempts.saturating_sub(1)
    };
    let round = |attempt: u32, _: StoreError, sub: Vec<(String, Option<String>)>| async move {
        tokio::time::sleep(pause(o.backoff, super::exec::MAX_PAUSE, attempt)).await;
        send(store, area, &sub, o, requests).await
    };
    retry_failed_keys(&mut results, rounds, round).await?;
    if let Some(e) = results.iter().find_map(|r| {
        r.result
            .as_ref()
            .err()
            .filter(|e| e.kind == StoreErrorKind::Denied)
    }) {
        return Err(e.clone());
    }
    Ok(results)
}

/// Send one request (retried as a whole while retryable); a request that fails for good
/// gives every key its error. The answer has one result per key, in input order.
async fn send<S: Store>(
    store: &S,
    area: Area,
    keys: &[(String, Option<String>)],
    o: &ExecOptions,
    requests: &AtomicU64,
) -> Result<Vec<BatchDeleteResult>, StoreError> {
    let r = super::exec::retry(o, store, || {
        requests.fetch_add(1, Ordering::Relaxed);
        store.delete_batch(area, keys)
    })
    .await;
    let answers = match r {
        Err(e) if e.kind == StoreErrorKind::Denied => return Err(e),
        Err(e) => keys
            .iter()
            .map(|(k, v)| BatchDeleteResult {
                key: k.clone(),
                version_id: v.clone(),
                result: Err(e.clone()),
            })
            .collect(),
        Ok(a) => a,
    };
    Ok(in_order(area, keys, answers))
}

/// The answers by key, in input order; a key the answer does not mention is an error
/// (never counted as deleted).
fn in_order(
    area: Area,
    keys: &[(String, Option<String>)],
    answers: Vec<BatchDeleteResult>,
) -> Vec<BatchDeleteResult> {
    let mut by_key: std::collections::HashMap<String, BatchDeleteResult> =
        answers.into_iter().map(|a| (a.key.clone(), a)).collect();
    keys.iter()
        .map(|(k, v)| {
            by_key.remove(k).unwrap_or_else(|| BatchDeleteResult {
                key: k.clone(),
                version_id: v.clone(),
                result: Err(StoreError::new(
                    StoreErrorKind::Other,
                    "delete batch",
                    &Loc {
                        area,
                        key: k.clone(),
                    },
                    "no result for this key in the DeleteObjects answer",
                )),
            })
        })
        .collect()
}

/// Delete `keys` of `area` in batches of at most 1,000, one after the other, calling
/// `announce` with each batch's keys before its request (the journal).
///
/// # Errors
/// `announce` fails; `Denied` (the batches before are done; deleting again is harmless).
pub async fn delete_keys<S: Store>(
    store: &S,
    area: Area,
    keys: &[String],
    o: &ExecOptions,
    announce: &mut dyn FnMut(&[String]) -> Result<()>,
) -> Result<Deleted> {
    let mut out = Deleted::default();
    let requests = AtomicU64::new(0);
    for chunk in keys.chunks(DELETE_BATCH_MAX) {
        announce(chunk)?;
        let batch: Vec<(String, Option<String>)> =
            chunk.iter().map(|k| (k.clone(), None)).collect();
        let results = one_batch(store, area, &batch, o, &requests)
            .await
            .map_err(|e| anyhow::anyhow!("{e}: stopping"))?;
        for r in results {
            match r.result {
                Ok(()) => out.deleted.push(r.key),
                Err(e) => out.failed.push(Skip {
                    key: r.key,
                    reason: e.to_string(),
                }),
            }
        }
    }
    out.requests = requests.into_inner();
    Ok(out)
}

/// Delete the sources of a batch's steps `pending` (indices into `ops`, copies verified)
/// from the cache area in one DeleteObjects request (a batch has ≤ 1,000 steps): each
/// step is `Moved` once its key is deleted, else skipped naming the error (the copy and
/// the source are both kept; a resumed or repeated apply deletes the source then).
///
/// # Errors
/// `Denied`: the run stops (the batch stays announced and is redone on resume).
pub async fn delete_sources<S: Store>(
    store: &S,
    ops: &[super::program::Op],
    pending: &[usize],
    o: &ExecOptions,
) -> Result<Vec<(usize, super::exec::StepResult)>, StoreError> {
    use super::exec::StepResult;
    let mut out = Vec::with_capacity(pending.len());
    let requests = AtomicU64::new(0);
    for chunk in pending.chunks(DELETE_BATCH_MAX) {
        let keys: Vec<(String, Option<String>)> =
            chunk.iter().map(|&i| (ops[i].key.clone(), None)).collect();
        let results = one_batch(store, Area::Cache, &keys, o, &requests).await?;
        for (&i, r) in chunk.iter().zip(results) {
            let step = match r.result {
                Ok(()) => StepResult::Moved,
                Err(e) => StepResult::Skipped(format!(
                    "copied to {}, but deleting the source failed ({e}); both are kept",
                    ops[i].to
                )),
            };
            out.push((i, step));
        }
    }
    Ok(out)
}

/// The finalize journal, `<state>/apply/finalize.journal`, append-only: one record a
/// line, `<16 hex of SHA-256(json)> <json>` like the apply journal: `delete` (the area
/// and keys of one DeleteObjects batch, fsynced before the request) and `deleted`
/// (counts after it). A finalize interrupted after a `delete` record is finished by
/// running `--finalize` again: it lists the quarantine afresh, and deleting a key
/// again is harmless.
pub struct DeleteLog {
    path: PathBuf,
    file: std::fs::File,
}

#[derive(Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum LogRecord<'a> {
    Delete {
        at: i64,
        area: &'static str,
        keys: &'a [String],
    },
    Deleted {
        at: i64,
        deleted: usize,
        failed: &'a [Skip],
    },
}

impl DeleteLog {
    /// Open (create) the finalize journal of the state directory `state`.
    ///
    /// # Errors
    /// It cannot be created or opened.
    pub fn open(state: &Path) -> Result<DeleteLog> {
        let dir = state.join("apply");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("finalize.journal");
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("journal {}", path.display()))?;
        Ok(DeleteLog { path, file })
    }

    fn append(&mut self, r: &LogRecord<'_>) -> Result<()> {
        let line = super::journal::line(r)?;
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("writing journal {}", self.path.display()))
    }

    /// Record the keys of a batch about to be deleted (fsynced).
    ///
    /// # Errors
    /// Write or fsync failure.
    pub fn announce(&mut self, area: Area, keys: &[String]) -> Result<()> {
        self.append(&LogRecord::Delete {
            at: crate::index::now(),
            area: area.as_str(),
            keys,
        })
    }

    /// Record what a finalize's deletes did.
    ///
    /// # Errors
    /// Write or fsync failure.
    pub fn done(&mut self, deleted: &[String], failed: &[Skip]) -> Result<()> {
        self.append(&LogRecord::Deleted {
            at: crate::index::now(),
            deleted: deleted.len(),
            failed,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;
