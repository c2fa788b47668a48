use super::*;
use crate::apply::journal::Journal;
use crate::cache::file_store::FileStore;
use crate::cache::test_store::{Spy, block};

/// A FileStore whose first copies fail.
type Flaky = Spy<FileStore>;

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
    let s = Spy::new(inner).failing_copies(fail, kind);
    (d, s, op)
}

fn opts() -> ExecOptions {
    ExecOptions {
        backoff: Duration::from_millis(1),
        max_attempts: 5,
        ..ExecOptions::default()
    }
}

#[test]
fn throttled_and_transient_errors_are_retried_until_the_step_succeeds() {
    for kind in [StoreErrorKind::Throttled, StoreErrorKind::Transient] {
        let (d, s, op) = setup(3, kind);
        let r = block(run_step(&s, &op, &opts(), false)).unwrap();
        assert_eq!(r, StepResult::Moved);
        assert_eq!(s.copies.lock().unwrap().len(), 4);
        assert!(!d.path().join("cache").join(NAR).exists());
        assert!(d.path().join("q/1").join(NAR).exists());
    }
}

#[test]
fn retries_give_up_after_max_attempts_and_skip_the_object() {
    let (d, s, op) = setup(50, StoreErrorKind::Transient);
    let r = block(run_step(&s, &op, &opts(), false)).unwrap();
    assert!(
        matches!(r, StepResult::Skipped(ref m) if m.contains("injected")),
        "{r:?}"
    );
    assert_eq!(s.copies.lock().unwrap().len(), 5);
    assert!(
        d.path().join("cache").join(NAR).exists(),
        "source untouched"
    );
}

#[test]
fn a_nar_whose_narinfo_is_still_in_the_cache_is_never_moved() {
    let (d, s, op) = setup(0, StoreErrorKind::Other);
    std::fs::write(d.path().join("cache").join(NI), b"StorePath: x\n").unwrap();
    let r = block(run_step(&s, &op, &opts(), false)).unwrap();
    assert!(
        matches!(r, StepResult::Skipped(ref m) if m.contains(NI)),
        "{r:?}"
    );
    assert_eq!(s.copies.lock().unwrap().len(), 0);
}

#[test]
fn a_step_repeated_after_its_source_was_deleted_counts_as_done() {
    let (_d, s, op) = setup(0, StoreErrorKind::Other);
    assert_eq!(
        block(run_step(&s, &op, &opts(), false)).unwrap(),
        StepResult::Moved
    );
    assert_eq!(
        block(run_step(&s, &op, &opts(), false)).unwrap(),
        StepResult::Moved
    );
}

#[test]
fn denied_stops_the_run_and_leaves_the_batch_announced_for_resume() {
    let (d, s, op) = setup(1, StoreErrorKind::Denied);
    let (r, _) = run_one_batch(&s, d.path(), vec![op], &opts());
    let e = r.unwrap_err();
    assert!(e.to_string().contains("denied"), "{e}");
    let (_, st) = Journal::open(&d.path().join("j")).unwrap();
    assert_eq!((st.next_seq, st.in_flight), (0, Some(0)));
    assert!(d.path().join("cache").join(NAR).exists());
}
