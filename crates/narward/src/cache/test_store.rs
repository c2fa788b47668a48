//! The one test store of the unit tests of apply and restore: [`Spy`] wraps a store (a
//! `FileStore` in practice), passes every call on, records the requests a test counts
//! (copies, single and batch deletes, listings), and on demand fails the next copies or makes the
//! archive area's NARs cold (DEEP_ARCHIVE until a restore is requested and `ready`).

use super::ObjectMeta;
use super::store::{
    Area, BatchDeleteResult, CopyOptions, Loc, PutOutcome, RestoreOutcome, Store, StoreError,
    StoreErrorKind, StoreResult, Tier, Versioning,
};
use crate::model::ObjectRecord;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

pub struct Spy<S> {
    pub inner: S,
    /// Destination keys of every copy asked for, in order (failed ones too).
    pub copies: Mutex<Vec<String>>,
    /// Keys of single deletes, and of each DeleteObjects batch.
    pub singles: Mutex<Vec<String>>,
    pub batches: Mutex<Vec<Vec<String>>>,
    /// Listings asked for, by area.
    pub lists: Mutex<Vec<Area>>,
    /// The next this many copies fail with `fail_kind`.
    pub fail_copies: AtomicU32,
    pub fail_kind: StoreErrorKind,
    /// Archive-area `nar/…` objects are in DEEP_ARCHIVE (see the module doc).
    pub cold: bool,
    /// RestoreObject requests (cold mode), and the keys asked for.
    pub restores: AtomicUsize,
    pub requested: Mutex<BTreeSet<String>>,
    /// Requested cold objects are readable.
    pub ready: AtomicBool,
}

impl<S: Store> Spy<S> {
    pub fn new(inner: S) -> Spy<S> {
        Spy {
            inner,
            copies: Mutex::new(Vec::new()),
            singles: Mutex::new(Vec::new()),
            batches: Mutex::new(Vec::new()),
            lists: Mutex::new(Vec::new()),
            fail_copies: AtomicU32::new(0),
            fail_kind: StoreErrorKind::Other,
            cold: false,
            restores: AtomicUsize::new(0),
            requested: Mutex::new(BTreeSet::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// The next `n` copies fail with `kind`.
    pub fn failing_copies(mut self, n: u32, kind: StoreErrorKind) -> Spy<S> {
        self.fail_copies = AtomicU32::new(n);
        self.fail_kind = kind;
        self
    }

    /// Archive-area NARs are cold.
    pub fn with_cold_archive(mut self) -> Spy<S> {
        self.cold = true;
        self
    }

    fn is_cold(&self, loc: &Loc) -> bool {
        self.cold && loc.area == Area::Archive && loc.key.starts_with("nar/")
    }

    fn readable(&self, loc: &Loc) -> bool {
        !self.is_cold(loc)
            || (self.ready.load(Ordering::SeqCst)
                && self.requested.lock().unwrap().contains(&loc.key))
    }
}

impl<S: Store> Store for Spy<S> {
    fn describe(&self, area: Area) -> String {
        self.inner.describe(area)
    }
    fn archives_in_place(&self) -> bool {
        self.inner.archives_in_place()
    }
    fn retries_itself(&self) -> bool {
        self.inner.retries_itself()
    }
    async fn head(&self, loc: &Loc) -> StoreResult<Option<ObjectMeta>> {
        let m = self.inner.head(loc).await?;
        Ok(m.map(|mut m| {
            if self.is_cold(loc) {
                m.storage_class = Some("DEEP_ARCHIVE".into());
                if self.requested.lock().unwrap().contains(&loc.key) {
                    let ongoing = !self.readable(loc);
                    m.restore = Some(format!("ongoing-request=\"{ongoing}\""));
                }
            }
            m
        }))
    }
    async fn get(&self, loc: &Loc) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get(loc).await
    }
    async fn list(&self, area: Area, prefix: &str) -> StoreResult<Vec<ObjectRecord>> {
        self.lists.lock().unwrap().push(area);
        self.inner.list(area, prefix).await
    }
    async fn put_if_absent(&self, loc: &Loc, bytes: &[u8]) -> StoreResult<PutOutcome> {
        self.inner.put_if_absent(loc, bytes).await
    }
    async fn copy(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        self.copies.lock().unwrap().push(to.key.clone());
        let left = self.fail_copies.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_copies.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::new(self.fail_kind, "copy", from, "injected"));
        }
        if !self.readable(from) {
            let kind = StoreErrorKind::InvalidObjectState;
            return Err(StoreError::new(kind, "copy", from, "archived"));
        }
        self.inner.copy(from, to, opts).await
    }
    async fn delete(&self, loc: &Loc, v: Option<&str>) -> StoreResult<()> {
        self.singles.lock().unwrap().push(loc.key.clone());
        self.inner.delete(loc, v).await
    }
    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        let ks = keys.iter().map(|(k, _)| k.clone()).collect();
        self.batches.lock().unwrap().push(ks);
        self.inner.delete_batch(area, keys).await
    }
    async fn restore(&self, loc: &Loc, days: u32, tier: Tier) -> StoreResult<RestoreOutcome> {
        if !self.cold {
            return self.inner.restore(loc, days, tier).await;
        }
        self.restores.fetch_add(1, Ordering::SeqCst);
        let fresh = self.requested.lock().unwrap().insert(loc.key.clone());
        Ok(if fresh {
            RestoreOutcome::Started
        } else {
            RestoreOutcome::InProgress
        })
    }
    async fn versioning(&self, area: Area) -> StoreResult<Versioning> {
        self.inner.versioning(area).await
    }
}

/// Run a future to its end on a current-thread runtime (with time).
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}
