use super::*;
use crate::apply::journal::{Begin, Journal};
use crate::cache::ObjectMeta;
use crate::cache::file_store::FileStore;
use crate::cache::store::{Area, BatchDeleteResult, PutOutcome, RestoreOutcome, Tier, Versioning};
use crate::model::ObjectRecord;
use std::sync::atomic::AtomicU32;

/// A FileStore whose first `fail_copies` copies fail with `kind`.
struct Flaky {
    inner: FileStore,
    fail_copies: AtomicU32,
    kind: StoreErrorKind,
    copies: AtomicU32,
}

impl Store for Flaky {
    fn describe(&self, area: Area) -> String {
        self.inner.describe(area)
    }
    fn archives_in_place(&self) -> bool {
        false
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
        self.inner.put_if_absent(loc, bytes).await
    }
    async fn copy(&self, from: &Loc, to: &Loc, opts: &CopyOptions) -> StoreResult<ObjectMeta> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        let left = self.fail_copies.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_copies.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::new(self.kind, "copy", from, "injected"));
        }
        self.inner.copy(from, to, opts).await
    }
    async fn delete(&self, loc: &Loc, v: Option<&str>) -> StoreResult<()> {
        self.inner.delete(loc, v).await
    }
    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> StoreResult<Vec<BatchDeleteResult>> {
        self.inner.delete_batch(area, keys).await
    }
    async fn restore(&self, loc: &Loc, days: u32, tier: Tier) -> StoreResult<RestoreOutcome> {
        self.inner.restore(loc, days, tier).await
    }
    async fn versioning(&self, area: Area) -> StoreResult<Versioning> {
        self.inner.versioning(area).await
    }
}

const NAR: &str = "nar/0a3yijp35sygmy51cnrrz11vimwapz7c.nar.xz";
const NI: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo";

fn setup(fail: u32, kind: StoreErrorKind) -> (tempfile::TempDir, Flaky, Op) {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    std::fs::create_dir_all(cache.join("nar")).unwrap();
    std::fs::write(cache.join(NAR), b"nar bytes").unwrap();
    let inner = FileStore::open(&cache, &d.path().join("a"), &d.path().join("q")).unwrap();
    let op = Op {
        key: NAR.into(),
        size: 9,
        etag: None,
        to: Loc::quarantine(format!("1/{NAR}")),
        storage_class: None,
        delete_source: true,
        guards: vec![NI.into()],
    };
    let s = Flaky {
        inner,
        fail_copies: AtomicU32::new(fail),
        kind,
        copies: AtomicU32::new(0),
    };
    (d, s, op)
}

fn opts() -> ExecOptions {
    ExecOptions {
        backoff: Duration::from_millis(1),
        max_attempts: 5,
        ..ExecOptions::default()
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn throttled_and_transient_errors_are_retried_until_the_step_succeeds() {
    for kind in [StoreErrorKind::Throttled, StoreErrorKind::Transient] {
        let (d, s, op) = setup(3, kind);
        let r = block(run_op(&s, &op, &opts())).unwrap();
        assert_eq!(r, StepResult::Moved);
        assert_eq!(s.copies.load(Ordering::SeqCst), 4);
        assert!(!d.path().join("cache").join(NAR).exists());
        assert!(d.path().join("q/1").join(NAR).exists());
    }
}

#[test]
fn retries_give_up_after_max_attempts_and_skip_the_object() {
    let (d, s, op) = setup(50, StoreErrorKind::Transient);
    let r = block(run_op(&s, &op, &opts())).unwrap();
    assert!(
        matches!(r, StepResult::Skipped(ref m) if m.contains("injected")),
        "{r:?}"
    );
    assert_eq!(s.copies.load(Ordering::SeqCst), 5);
    assert!(
        d.path().join("cache").join(NAR).exists(),
        "source untouched"
    );
}

#[test]
fn a_nar_whose_narinfo_is_still_in_the_cache_is_never_moved() {
    let (d, s, op) = setup(0, StoreErrorKind::Other);
    std::fs::write(d.path().join("cache").join(NI), b"StorePath: x\n").unwrap();
    let r = block(run_op(&s, &op, &opts())).unwrap();
    assert!(
        matches!(r, StepResult::Skipped(ref m) if m.contains(NI)),
        "{r:?}"
    );
    assert_eq!(s.copies.load(Ordering::SeqCst), 0);
}

#[test]
fn a_step_repeated_after_its_source_was_deleted_counts_as_done() {
    let (_d, s, op) = setup(0, StoreErrorKind::Other);
    assert_eq!(block(run_op(&s, &op, &opts())).unwrap(), StepResult::Moved);
    assert_eq!(block(run_op(&s, &op, &opts())).unwrap(), StepResult::Moved);
}

#[test]
fn denied_stops_the_run_and_leaves_the_batch_announced_for_resume() {
    let (d, s, op) = setup(1, StoreErrorKind::Denied);
    let jdir = d.path().join("j");
    let begin = Begin {
        plan: "p".into(),
        plan_dir: "/p".into(),
        cache: "c".into(),
        archive: "a".into(),
        quarantine: "q".into(),
        stamp: "1".into(),
        batch_size: 10,
    };
    let mut j = Journal::create(&jdir, begin).unwrap();
    let batches = vec![Batch {
        phase: Phase::Quarantine,
        seq: 0,
        ops: vec![op],
    }];
    let mut rep = Report::default();
    let e = block(run(
        &s,
        batches.into_iter(),
        [0, 0, 1],
        0,
        &mut j,
        &opts(),
        &mut rep,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("denied"), "{e}");
    drop(j);
    let (_, st) = Journal::open(&jdir).unwrap();
    assert_eq!((st.next_seq, st.in_flight), (0, Some(0)));
    assert!(d.path().join("cache").join(NAR).exists());
}
