use super::*;
use crate::apply::Phase;
use crate::apply::exec::run_one_batch;
use crate::apply::program::Op;
use crate::cache::file_store::FileStore;
use crate::cache::store_wrap::{FaultConfig, Faulty};
use crate::cache::test_store::{Spy, block};
use std::time::Duration;

/// A store that records every delete request: single deletes by key, batches by keys.
type Counting<S> = Spy<S>;

fn opts() -> ExecOptions {
    ExecOptions {
        backoff: Duration::from_millis(1),
        max_attempts: 8,
        ..ExecOptions::default()
    }
}

/// `fraction` of the requests (and of the keys of each batch) fail with one of `kinds`,
/// only once each (`after_effect` 0), reads never.
fn faults(fraction: f64, kinds: &[StoreErrorKind], seed: u64) -> FaultConfig {
    FaultConfig {
        fraction,
        kinds: kinds.to_vec(),
        after_effect: 0.0,
        seed,
        reads: false,
    }
}

/// Delete `keys` from the quarantine area of `s`, journaling nothing.
fn delete_quarantined<S: Store>(s: &S, keys: &[String]) -> Result<Deleted> {
    block(delete_keys(s, Area::Quarantine, keys, &opts(), &mut |_| {
        Ok(())
    }))
}

/// A file:// store with `n` quarantined objects `100/nar/<i>.nar`; their keys.
fn quarantined(n: usize) -> (tempfile::TempDir, FileStore, Vec<String>) {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let q = d.path().join("q");
    std::fs::create_dir_all(q.join("100/nar")).unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("100/nar/{i:05}.nar")).collect();
    for k in &keys {
        std::fs::write(q.join(k), k.as_bytes()).unwrap();
    }
    let s = FileStore::open(&cache, &d.path().join("a"), &q).unwrap();
    (d, s, keys)
}

#[test]
fn more_than_1000_keys_are_deleted_in_several_announced_batches_of_at_most_1000() {
    let (d, s, keys) = quarantined(2345);
    let s = Counting::new(s);
    let mut announced: Vec<Vec<String>> = Vec::new();
    let mut announce = |k: &[String]| {
        announced.push(k.to_vec());
        Ok(())
    };
    let r = block(delete_keys(
        &s,
        Area::Quarantine,
        &keys,
        &opts(),
        &mut announce,
    ))
    .unwrap();
    let batches = s.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 3);
    assert!(batches.iter().all(|b| b.len() <= 1000));
    assert!(s.singles.lock().unwrap().is_empty());
    assert_eq!(announced, batches, "each batch journaled with its keys");
    assert_eq!(r.requests, 3);
    assert_eq!(r.deleted, keys);
    assert!(r.failed.is_empty());
    assert!(keys.iter().all(|k| !d.path().join("q").join(k).exists()));
}

#[test]
fn a_key_failing_transiently_in_a_batch_is_retried_until_deleted() {
    let (d, s, keys) = quarantined(1500);
    let kinds = [StoreErrorKind::Transient, StoreErrorKind::Throttled];
    let cfg = FaultConfig {
        after_effect: 0.5,
        ..faults(0.3, &kinds, 7)
    };
    let s = Faulty::new(s, cfg);
    let r = delete_quarantined(&s, &keys).unwrap();
    assert!(s.injected() > 300, "{} faults", s.injected());
    assert!(
        r.failed.is_empty(),
        "{:?}",
        &r.failed[..3.min(r.failed.len())]
    );
    assert_eq!(r.deleted, keys, "each key counted once, in order");
    assert!(r.requests > 2, "retries are further (smaller) batches");
    assert!(keys.iter().all(|k| !d.path().join("q").join(k).exists()));
}

#[test]
fn a_key_failing_for_good_in_a_batch_is_reported_kept_and_never_counted_as_deleted() {
    let (d, s, keys) = quarantined(1200);
    let s = Faulty::new(s, faults(0.05, &[StoreErrorKind::Other], 11));
    let r = delete_quarantined(&s, &keys).unwrap();
    assert!(!r.failed.is_empty());
    assert_eq!(r.failed.len() as u64, s.injected());
    assert_eq!(r.deleted.len() + r.failed.len(), keys.len());
    for f in &r.failed {
        assert!(f.reason.contains("injected fault"), "{f:?}");
        assert!(!r.deleted.contains(&f.key), "{} counted as deleted", f.key);
        assert!(d.path().join("q").join(&f.key).exists(), "{} lost", f.key);
    }
    for k in &r.deleted {
        assert!(!d.path().join("q").join(k).exists());
    }
}

#[test]
fn denied_in_a_batch_stops_the_deletes() {
    let (_d, s, keys) = quarantined(10);
    let s = Faulty::new(s, faults(1.0, &[StoreErrorKind::Denied], 1));
    let e = delete_quarantined(&s, &keys).unwrap_err();
    assert!(e.to_string().contains("denied"), "{e}");
}

#[test]
fn only_content_addressed_nars_are_batchable_sources() {
    assert!(batchable_source(
        "nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz"
    ));
    assert!(!batchable_source(
        "0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo"
    ));
    assert!(!batchable_source("0a3yijp35sygmy51cnrrz11vimwapz7c.ls"));
    assert!(!batchable_source(
        "log/0a3yijp35sygmy51cnrrz11vimwapz7c-x.drv"
    ));
    assert!(!batchable_source("nar/not-a-hash.nar.xz"));
    assert!(batchable_source(&nar_key(7)));
}

/// NAR keys (52 nix32 characters) for the executor test.
fn nar_key(i: usize) -> String {
    let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut h = Vec::new();
    let mut x = i + 1;
    for _ in 0..52 {
        h.push(alphabet[x % 32]);
        x /= 32;
    }
    // The first character holds the highest bits (at most '1' for 256 bits).
    h.reverse();
    format!("nar/{}.nar.xz", String::from_utf8_lossy(&h))
}

fn quarantine_op(key: &str, size: u64) -> Op {
    Op {
        key: key.into(),
        size,
        etag: None,
        to: Loc::quarantine(format!("1/{key}")),
        storage_class: None,
        delete_source: true,
        guards: Vec::new(),
    }
}

/// A file:// cache holding each of `keys` (5 bytes), and a quarantine step for each.
fn cache_of(keys: &[&String]) -> (tempfile::TempDir, FileStore, Vec<Op>) {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let ops = keys
        .iter()
        .map(|k| {
            let p = cache.join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"bytes").unwrap();
            quarantine_op(k, 5)
        })
        .collect();
    let s = FileStore::open(&cache, &d.path().join("a"), &d.path().join("q")).unwrap();
    (d, s, ops)
}

#[test]
fn nar_sources_of_a_batch_are_deleted_in_one_delete_objects_request_and_others_singly() {
    let nars: Vec<String> = (0..5).map(nar_key).collect();
    let log = "log/0a3yijp35sygmy51cnrrz11vimwapz7c-x.drv".to_string();
    let (d, inner, ops) = cache_of(&nars.iter().chain([&log]).collect::<Vec<_>>());
    let cache = d.path().join("cache");
    let s = Counting::new(inner);
    let (r, rep) = run_one_batch(&s, d.path(), ops, &opts());
    r.unwrap();
    let batches = s.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1);
    let mut got = batches[0].clone();
    got.sort();
    let mut want = nars.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(*s.singles.lock().unwrap(), vec![log.clone()]);
    assert_eq!(rep.phases[&Phase::Quarantine].moved, 6);
    for k in nars.iter().chain([&log]) {
        assert!(!cache.join(k).exists(), "{k} still in the cache");
        assert!(d.path().join("q/1").join(k).exists(), "{k} not quarantined");
    }
}

#[test]
fn a_nar_whose_batched_source_delete_fails_is_skipped_not_moved_and_kept() {
    let nars: Vec<String> = (0..40).map(nar_key).collect();
    let (d, inner, ops) = cache_of(&nars.iter().collect::<Vec<_>>());
    let cache = d.path().join("cache");
    // Deletes (per key of the batch) and copies fail, heads never (reads: false): some
    // steps fail at their copy (skipped, kept), some at their batched source delete.
    let s = Faulty::new(inner, faults(0.2, &[StoreErrorKind::Other], 5));
    let (r, rep) = run_one_batch(&s, d.path(), ops, &opts());
    r.unwrap();
    let pr = &rep.phases[&Phase::Quarantine];
    assert!(pr.skipped > 0);
    assert_eq!(pr.moved + pr.skipped, 40);
    let delete_failures = rep
        .skipped
        .iter()
        .filter(|k| k.reason.contains("deleting the source failed"))
        .count();
    assert!(delete_failures > 0, "{:?}", rep.skipped);
    for k in &nars {
        let in_cache = cache.join(k).exists();
        let in_q = d.path().join("q/1").join(k).exists();
        let skipped = rep.skipped.iter().any(|x| &x.key == k);
        // Never lost; moved exactly when it left the cache.
        assert!(in_cache || in_q, "{k} lost");
        assert_eq!(
            skipped, in_cache,
            "{k}: skipped {skipped}, in cache {in_cache}"
        );
    }
}

/// Retries never stack: over a throttling store (which retries itself, here 2 retries),
/// a request that always fails retryably is sent 3 times in all, whatever
/// `max_attempts` says, both as a DeleteObjects batch (whole and per key) and as a single
/// request through `exec::retry`. (They used to multiply: up to 8 × 11 attempts.)
#[test]
fn retries_do_not_stack_a_store_that_always_fails_retryably_gets_bounded_attempts() {
    use crate::cache::store_wrap::{ThrottleConfig, Throttled};
    let (_d, s, keys) = quarantined(5);
    let always = FaultConfig {
        reads: true,
        ..faults(1.0, &[StoreErrorKind::Throttled], 1)
    };
    let cfg = ThrottleConfig {
        max_retries: 2,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(2),
        ..ThrottleConfig::default()
    };
    let t = Throttled::new(Counting::new(Faulty::new(s, always)), cfg);
    let r = delete_quarantined(&t, &keys).unwrap();
    assert_eq!(r.failed.len(), 5, "{r:?}");
    assert!(r.deleted.is_empty());
    assert_eq!(t.inner().batches.lock().unwrap().len(), 3, "1 + 2 retries");
    assert_eq!(r.requests, 1, "one request as the caller sees it");
    let before = t.inner().inner.injected();
    let l = Loc::quarantine(keys[0].clone());
    assert!(block(crate::apply::exec::retry(&opts(), &t, || t.head(&l))).is_err());
    assert_eq!(t.inner().inner.injected() - before, 3, "1 + 2 retries");
    // A store that does not retry itself is retried by the caller, max_attempts times.
    let (_d, s, keys) = quarantined(1);
    let always = FaultConfig {
        reads: true,
        ..faults(1.0, &[StoreErrorKind::Transient], 1)
    };
    let f = Faulty::new(s, always);
    let l = Loc::quarantine(keys[0].clone());
    assert!(block(crate::apply::exec::retry(&opts(), &f, || f.head(&l))).is_err());
    assert_eq!(f.injected(), 8);
}
