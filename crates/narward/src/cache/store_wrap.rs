//! Helpers and wrappers over any [`Store`]: batch deletes of any size in chunks of 1,000.

use super::store::{Area, BatchDeleteResult, Store, StoreResult};

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
