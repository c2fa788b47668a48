use super::*;
use crate::cache::file_store::FileStore;
use crate::cache::test_store::{Spy, block};

/// A FileStore that records the destination of every copy.
type Recording = Spy<FileStore>;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Quarantine (stamp 100) holding A → B, each with its NAR; B's NAR absent when `no_nar_b`.
fn setup(no_nar_b: bool) -> (tempfile::TempDir, Recording) {
    let d = tempfile::tempdir().unwrap();
    let q = d.path().join("q/100");
    std::fs::create_dir_all(q.join("nar")).unwrap();
    std::fs::create_dir_all(d.path().join("cache")).unwrap();
    for (h, refs) in [(A, format!("{B}-b")), (B, String::new())] {
        std::fs::write(
            q.join(format!("{h}.narinfo")),
            format!("StorePath: /nix/store/{h}-x\nURL: nar/{h}.nar.xz\nReferences: {refs}\n"),
        )
        .unwrap();
        if !(no_nar_b && h == B) {
            std::fs::write(q.join(format!("nar/{h}.nar.xz")), h).unwrap();
        }
    }
    let inner = FileStore::open(
        &d.path().join("cache"),
        &d.path().join("a"),
        &d.path().join("q"),
    )
    .unwrap();
    let s = Spy::new(inner);
    (d, s)
}

#[test]
fn recover_closure_brings_references_first_and_each_nar_before_its_narinfo() {
    let (d, s) = setup(false);
    let r = block(recover(&s, A, true, &ExecOptions::default())).unwrap();
    assert_eq!(r.len(), 2);
    let copies = s.copies.lock().unwrap().clone();
    assert_eq!(
        copies,
        [
            format!("nar/{B}.nar.xz"),
            format!("{B}.narinfo"),
            format!("nar/{A}.nar.xz"),
            format!("{A}.narinfo"),
        ]
    );
    assert_eq!(
        std::fs::read_dir(d.path().join("q/100/nar"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn recover_without_closure_refuses_a_path_whose_reference_is_not_in_the_cache() {
    let (d, s) = setup(false);
    let e = block(recover(&s, A, false, &ExecOptions::default())).unwrap_err();
    assert!(
        e.to_string().contains(B) && e.to_string().contains("--closure"),
        "{e}"
    );
    assert!(!d.path().join(format!("cache/{A}.narinfo")).exists());
    assert!(s.copies.lock().unwrap().is_empty(), "nothing moved");
    // B alone (no references) is fine, and then A alone too.
    block(recover(&s, B, false, &ExecOptions::default())).unwrap();
    block(recover(&s, A, false, &ExecOptions::default())).unwrap();
    assert!(d.path().join(format!("cache/{A}.narinfo")).exists());
}

#[test]
fn recover_never_publishes_a_narinfo_whose_nar_is_missing() {
    let (d, s) = setup(true);
    let e = block(recover(&s, B, false, &ExecOptions::default())).unwrap_err();
    assert!(e.to_string().contains(&format!("nar/{B}.nar.xz")), "{e}");
    assert!(!d.path().join(format!("cache/{B}.narinfo")).exists());
    assert!(
        d.path().join(format!("q/100/{B}.narinfo")).exists(),
        "left in quarantine"
    );
}

/// A fresh index in which the cache area holds one narinfo, `cccc….narinfo`, per text
/// (the visible narinfos finalize reads).
fn visible_index(texts: &[String]) -> crate::index::Index {
    let key = format!("{}.narinfo", "c".repeat(32));
    crate::index::Index {
        meta: serde_json::from_value(serde_json::json!({
            "format_version": 3, "cache": "c", "cache_url": "c", "generation": 1,
            "updated_at": 0, "source": "t", "objects": 0, "narinfos": 0, "unparseable": 0,
            "last_update": {"listed": 0, "narinfo_objects": 0, "fetched": 0, "reused": 0,
                            "dropped": 0, "fetch_errors": 0}
        }))
        .unwrap(),
        objects: texts
            .iter()
            .map(|_| crate::model::ObjectRecord {
                key: key.clone(),
                size: 0,
                etag: None,
                last_modified: None,
                storage_class: None,
                link_target: None,
            })
            .collect::<Result<_, _>>()
            .unwrap(),
        narinfos: texts
            .iter()
            .map(|t| crate::model::FetchedRecord {
                key: key.clone(),
                etag: None,
                size: 0,
                text: t.clone().into_bytes(),
                fetch_error: None,
                earlier: Vec::new(),
            })
            .collect(),
        debuginfo: Vec::new(),
    }
}

#[test]
fn finalize_keeps_the_grace_window_and_recovers_what_a_visible_narinfo_names() {
    let (d, s) = setup(false);
    let o = ExecOptions::default();
    let finalize = |f: &crate::index::Index, now| {
        crate::cache_graph::with_snapshot(f, |snap| {
            block(finalize(&s, snap, now, 100, &o, &mut |_| Ok(())))
        })
        .unwrap()
    };
    let r = finalize(&visible_index(&[]), 150).unwrap();
    assert!(r.deleted.is_empty() && r.waiting == 4, "{r:?}");
    // Something visible references B: B is recovered, A deleted once the window passed.
    let visible = format!("StorePath: /nix/store/c-c\nReferences: {B}-b\n");
    let r = finalize(&visible_index(&[visible]), 300).unwrap();
    assert_eq!(r.recovered.len(), 1, "{r:?}");
    assert!(d.path().join(format!("cache/{B}.narinfo")).exists());
    assert!(d.path().join(format!("cache/nar/{B}.nar.xz")).exists());
    assert_eq!(r.deleted.len(), 2, "{r:?}");
    assert!(!d.path().join(format!("q/100/{A}.narinfo")).exists());
}

/// Finalize lists the quarantine once when nothing leaves it before the deletes (the
/// first listing is still the truth), and again when a path was recovered from it.
#[test]
fn finalize_lists_the_quarantine_again_only_after_recovering_from_it() {
    let (_d, s) = setup(false);
    let o = ExecOptions::default();
    let quarantine_lists = |texts: &[String], now| {
        s.lists.lock().unwrap().clear();
        crate::cache_graph::with_snapshot(&visible_index(texts), |snap| {
            block(finalize(&s, snap, now, 100, &o, &mut |_| Ok(())))
        })
        .unwrap()
        .unwrap();
        let lists = s.lists.lock().unwrap();
        lists.iter().filter(|a| **a == Area::Quarantine).count()
    };
    assert_eq!(quarantine_lists(&[], 150), 1, "nothing recovered");
    let visible = format!("StorePath: /nix/store/c-c\nReferences: {B}-b\n");
    assert_eq!(quarantine_lists(&[visible], 150), 2, "B recovered");
}

/// Safety finding: finalize read a visible narinfo that could not be fetched as naming
/// nothing, so after the grace window it deleted the quarantined objects the narinfo may
/// reference. It now refuses, naming the narinfo, and changes nothing.
#[test]
fn finalize_refuses_while_a_visible_narinfo_could_not_be_read() {
    let (d, s) = setup(false);
    let mut fresh = visible_index(&[String::new()]);
    fresh.narinfos[0].fetch_error = Some("connection reset".into());
    let q0: Vec<_> = [A, B]
        .iter()
        .flat_map(|h| {
            [
                format!("q/100/{h}.narinfo"),
                format!("q/100/nar/{h}.nar.xz"),
            ]
        })
        .collect();
    let e = crate::cache_graph::with_snapshot(&fresh, |snap| {
        block(finalize(
            &s,
            snap,
            300,
            100,
            &ExecOptions::default(),
            &mut |_| Ok(()),
        ))
    })
    .unwrap()
    .unwrap_err();
    let m = e.to_string();
    assert!(m.contains(&format!("{}.narinfo", "c".repeat(32))), "{m}");
    assert!(m.contains("connection reset"), "{m}");
    for k in &q0 {
        assert!(d.path().join(k).exists(), "{k} deleted");
    }
    assert!(s.batches.lock().unwrap().is_empty() && s.singles.lock().unwrap().is_empty());
}

/// Quarantine (stamp 100) holding each `(hash, references)` path with its NAR.
fn quarantine_of(paths: &[(&str, &[&str])]) -> (tempfile::TempDir, Recording) {
    let (d, s) = setup(false);
    let q = d.path().join("q/100");
    for (h, refs) in paths {
        let r: Vec<String> = refs.iter().map(|r| format!("{r}-x")).collect();
        std::fs::write(
            q.join(format!("{h}.narinfo")),
            format!(
                "StorePath: /nix/store/{h}-x\nURL: nar/{h}.nar.xz\nReferences: {}\n",
                r.join(" ")
            ),
        )
        .unwrap();
        std::fs::write(q.join(format!("nar/{h}.nar.xz")), h).unwrap();
    }
    (d, s)
}

/// The narinfos among the copies, in order.
fn narinfo_copies(s: &Recording) -> Vec<String> {
    let c = s.copies.lock().unwrap();
    c.iter()
        .filter(|k| k.ends_with(".narinfo"))
        .cloned()
        .collect()
}

const X: &str = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
const Y: &str = "00000000000000000000000000000000";
const W: &str = "11111111111111111111111111111111";

/// A visible narinfo names X; X → Y → W, all quarantined, and X also names W directly.
/// Each is recovered after what it references (hash order would put X first).
#[test]
fn finalize_recovers_narinfos_references_first() {
    let (_d, s) = quarantine_of(&[(X, &[Y, W]), (Y, &[W]), (W, &[])]);
    let visible = format!(
        "StorePath: /nix/store/{}-c\nReferences: {X}-x\n",
        "c".repeat(32)
    );
    let fresh = visible_index(&[visible]);
    let o = ExecOptions::default();
    let r = crate::cache_graph::with_snapshot(&fresh, |snap| {
        block(finalize(&s, snap, 150, 100, &o, &mut |_| Ok(())))
    })
    .unwrap()
    .unwrap();
    assert_eq!(r.recovered.len(), 3, "{r:?}");
    assert_eq!(
        narinfo_copies(&s),
        [W, Y, X].map(|h| format!("{h}.narinfo")),
        "references first"
    );
}

/// R → X, R → Y, X → Y: a depth-first walk reversed would bring X back before Y.
#[test]
fn recover_closure_brings_references_first_in_a_dag() {
    let r_hash = "22222222222222222222222222222222";
    let (_d, s) = quarantine_of(&[(r_hash, &[X, Y]), (X, &[Y]), (Y, &[])]);
    let out = block(recover(&s, r_hash, true, &ExecOptions::default())).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(
        narinfo_copies(&s),
        [Y, X, r_hash].map(|h| format!("{h}.narinfo"))
    );
}
