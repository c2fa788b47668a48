use super::*;
use crate::cache::file_store::FileStore;
use crate::cache::test_store::{Spy, block};
use std::sync::atomic::Ordering;

/// A FileStore whose archive-area NARs are in DEEP_ARCHIVE: unreadable until a
/// RestoreObject (counted) and `ready`; `x-amz-restore` says which.
type Cold = Spy<FileStore>;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// The archive directory holds A → B, each narinfo beside its cold NAR.
fn setup() -> (tempfile::TempDir, Cold) {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    std::fs::create_dir_all(a.join("nar")).unwrap();
    std::fs::create_dir_all(d.path().join("cache")).unwrap();
    for (h, refs) in [(A, format!("{B}-b")), (B, String::new())] {
        write_narinfo(&a, h, &refs);
        std::fs::write(a.join(format!("nar/{h}.nar.xz")), h).unwrap();
    }
    let inner = FileStore::open(&d.path().join("cache"), &a, &d.path().join("q")).unwrap();
    let s = Spy::new(inner).with_cold_archive();
    (d, s)
}

fn begin() -> super::super::journal::Begin {
    super::super::journal::Begin {
        id: "t".into(),
        cache_url: "file:///c".into(),
        cache: "file:///c".into(),
        archive_dir: None,
        quarantine_dir: None,
        tier: "bulk".into(),
        days: 7,
        roots: vec![A.into()],
        closure: true,
        created_at: 0,
    }
}

/// Write `<h>.narinfo` into `dir`: store path `<h>-x`, NAR `nar/<h>.nar.xz`, `refs`.
fn write_narinfo(dir: &std::path::Path, h: &str, refs: &str) {
    std::fs::write(
        dir.join(format!("{h}.narinfo")),
        format!("StorePath: /nix/store/{h}-x\nURL: nar/{h}.nar.xz\nReferences: {refs}\n"),
    )
    .unwrap();
}

/// Journal `found` as a checked restore `t` under `state`, then reopen it: the journal
/// directory, the journal and its folded state.
fn journal_of(state: &std::path::Path, found: &Discovery) -> (std::path::PathBuf, Journal, State) {
    let mut j = super::super::journal::create(state, begin()).unwrap();
    for p in &found.paths {
        j.append(&Record::Path(p.clone())).unwrap();
    }
    j.append(&Record::Checked).unwrap();
    let jdir = super::super::journal::dir(state, "t");
    let (j, st) = super::super::journal::open(&jdir).unwrap();
    (jdir, j, st)
}

#[test]
fn a_nar_being_restored_is_waiting_requested_once_and_no_narinfo_precedes_it() {
    let (d, s) = setup();
    let o = ExecOptions::default();
    let state = d.path().join("state");
    let found = block(discover(&s, &[A.to_string()], true, &o)).unwrap();
    assert_eq!(found.paths.len(), 2);
    assert_eq!(found.cold_nars().count(), 2);
    let (jdir, mut j, mut st) = journal_of(&state, &found);
    for _ in 0..2 {
        block(advance(&s, &mut st, &mut j, &o)).unwrap();
        let r = block(status(&s, &st, &o)).unwrap();
        assert_eq!(r.counts.get("waiting"), Some(&2), "{r:?}");
        assert!(st.published.is_empty() && !st.finished);
        assert!(!d.path().join(format!("cache/{B}.narinfo")).exists());
    }
    assert_eq!(
        s.restores.load(Ordering::SeqCst),
        2,
        "never requested twice"
    );
    // Reopened after a "crash": the journal remembers the requests.
    let (mut j, mut st) = super::super::journal::open(&jdir).unwrap();
    s.ready.store(true, Ordering::SeqCst);
    block(advance(&s, &mut st, &mut j, &o)).unwrap();
    assert_eq!(s.restores.load(Ordering::SeqCst), 2);
    assert!(st.finished);
    assert_eq!(
        st.published,
        [
            format!("nar/{A}.nar.xz"),
            format!("nar/{B}.nar.xz"),
            format!("{B}.narinfo"),
            format!("{A}.narinfo"),
        ]
    );
    let r = block(status(&s, &st, &o)).unwrap();
    assert_eq!(r.counts.get("republished"), Some(&2));
    assert_eq!(r.requests.get("started"), Some(&2));
}

/// A reference outside the restore set was hot at discovery and removed before the
/// republish: the narinfo referencing it is not published (reported failed, naming the
/// reference) until the reference is back, then it is.
#[test]
fn restore_rechecks_out_of_set_references_before_publishing() {
    const C: &str = "cccccccccccccccccccccccccccccccc";
    let (d, s) = setup();
    let a = d.path().join("a");
    write_narinfo(&a, A, &format!("{B}-b {C}-c"));
    let c_ni = d.path().join(format!("cache/{C}.narinfo"));
    let c_text = format!("StorePath: /nix/store/{C}-c\nURL: nar/{C}.nar.xz\nReferences: \n");
    std::fs::write(&c_ni, &c_text).unwrap();
    let o = ExecOptions::default();
    let state = d.path().join("state");
    let found = block(discover(&s, &[A.to_string()], true, &o)).unwrap();
    assert_eq!((found.paths.len(), found.hot), (2, 1), "{found:?}");
    assert!(found.broken().next().is_none());
    let (_, mut j, mut st) = journal_of(&state, &found);
    // An apply hides C after discovery.
    std::fs::remove_file(&c_ni).unwrap();
    s.ready.store(true, Ordering::SeqCst);
    block(advance(&s, &mut st, &mut j, &o)).unwrap();
    assert!(st.is_published(&format!("{B}.narinfo")));
    assert!(!st.is_published(&format!("{A}.narinfo")) && !st.finished);
    assert!(!d.path().join(format!("cache/{A}.narinfo")).exists());
    let r = block(status(&s, &st, &o)).unwrap();
    let pa = r.paths.iter().find(|p| p.path.contains(A)).unwrap();
    assert_eq!(pa.status, "failed", "{r:?}");
    assert!(pa.detail.as_deref().unwrap_or("").contains(C), "{pa:?}");
    // C is back: the next advance publishes A.
    std::fs::write(&c_ni, &c_text).unwrap();
    block(advance(&s, &mut st, &mut j, &o)).unwrap();
    assert!(st.finished && st.is_published(&format!("{A}.narinfo")));
    assert!(d.path().join(format!("cache/{A}.narinfo")).exists());
}

/// A and B reference each other (damaged narinfos); D references E, whose NAR is
/// nowhere. None of their narinfos is ever published, and status says so: each is
/// `failed` with its reason (so `status --wait` ends with exit 1), none `waiting` or
/// `readable` forever.
#[test]
fn a_cyclic_or_broken_restore_path_is_reported_failed_not_waited_for() {
    const D: &str = "dddddddddddddddddddddddddddddddd";
    const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    let (d, s) = setup();
    let a = d.path().join("a");
    for (h, refs, nar) in [
        (A, format!("{B}-b"), true),
        (B, format!("{A}-a"), true),
        (D, format!("{E}-e"), true),
        (E, String::new(), false),
    ] {
        write_narinfo(&a, h, &refs);
        if nar {
            std::fs::write(a.join(format!("nar/{h}.nar.xz")), h).unwrap();
        }
    }
    let o = ExecOptions::default();
    let state = d.path().join("state");
    let found = block(discover(&s, &[A.to_string(), D.to_string()], true, &o)).unwrap();
    assert_eq!(found.paths.len(), 4, "{found:?}");
    let (_, mut j, mut st) = journal_of(&state, &found);
    s.ready.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        block(advance(&s, &mut st, &mut j, &o)).unwrap();
    }
    assert!(!st.finished);
    let r = block(status(&s, &st, &o)).unwrap();
    assert_eq!(r.counts.get("failed"), Some(&4), "{r:?}");
    let detail = |h: &str| {
        let p = r.paths.iter().find(|p| p.path.contains(h)).unwrap();
        p.detail.clone().unwrap_or_default()
    };
    assert!(
        detail(A).contains("cycle") && detail(B).contains("cycle"),
        "{r:?}"
    );
    assert!(detail(D).contains(E), "{r:?}");
    assert!(detail(E).contains(&format!("nar/{E}.nar.xz")), "{r:?}");
    for h in [A, B, D, E] {
        assert!(!d.path().join(format!("cache/{h}.narinfo")).exists(), "{h}");
    }
}

/// A store that logs every HEAD and GET (`HEAD <area>/<key>`) and passes all on.
struct Reads<S> {
    inner: S,
    log: std::sync::Mutex<Vec<String>>,
}

impl<S> Reads<S> {
    fn note(&self, op: &str, l: &Loc) {
        let line = format!("{op} {}/{}", l.area.as_str(), l.key);
        self.log.lock().unwrap().push(line);
    }
    fn count(&self, line: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == line)
            .count()
    }
}

impl<S: Store> Store for Reads<S> {
    fn describe(&self, area: Area) -> String {
        self.inner.describe(area)
    }
    fn archives_in_place(&self) -> bool {
        self.inner.archives_in_place()
    }
    async fn head(
        &self,
        l: &Loc,
    ) -> crate::cache::store::StoreResult<Option<crate::cache::ObjectMeta>> {
        self.note("HEAD", l);
        self.inner.head(l).await
    }
    async fn get(&self, l: &Loc) -> crate::cache::store::StoreResult<Option<Vec<u8>>> {
        self.note("GET", l);
        self.inner.get(l).await
    }
    async fn list(
        &self,
        area: Area,
        prefix: &str,
    ) -> crate::cache::store::StoreResult<Vec<crate::model::ObjectRecord>> {
        self.inner.list(area, prefix).await
    }
    async fn put_if_absent(
        &self,
        l: &Loc,
        bytes: &[u8],
    ) -> crate::cache::store::StoreResult<crate::cache::store::PutOutcome> {
        self.inner.put_if_absent(l, bytes).await
    }
    async fn copy(
        &self,
        from: &Loc,
        to: &Loc,
        opts: &crate::cache::store::CopyOptions,
    ) -> crate::cache::store::StoreResult<crate::cache::ObjectMeta> {
        self.inner.copy(from, to, opts).await
    }
    async fn delete(&self, l: &Loc, v: Option<&str>) -> crate::cache::store::StoreResult<()> {
        self.inner.delete(l, v).await
    }
    async fn delete_batch(
        &self,
        area: Area,
        keys: &[(String, Option<String>)],
    ) -> crate::cache::store::StoreResult<Vec<crate::cache::store::BatchDeleteResult>> {
        self.inner.delete_batch(area, keys).await
    }
    async fn restore(
        &self,
        l: &Loc,
        days: u32,
        tier: Tier,
    ) -> crate::cache::store::StoreResult<RestoreOutcome> {
        self.inner.restore(l, days, tier).await
    }
    async fn versioning(
        &self,
        area: Area,
    ) -> crate::cache::store::StoreResult<crate::cache::store::Versioning> {
        self.inner.versioning(area).await
    }
}

/// Discovery reads each narinfo of the cache once: a hot path met by the walk is
/// neither HEADed before its GET nor HEADed again by the reference check, and a hash
/// that is nowhere is looked up once.
#[test]
fn restore_discovery_reads_each_cache_narinfo_once() {
    const C: &str = "cccccccccccccccccccccccccccccccc";
    const Z: &str = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    let d = tempfile::tempdir().unwrap();
    let (a, c) = (d.path().join("a"), d.path().join("cache"));
    std::fs::create_dir_all(a.join("nar")).unwrap();
    std::fs::create_dir_all(c.join("nar")).unwrap();
    write_narinfo(&a, A, &format!("{C}-c {Z}-z"));
    std::fs::write(a.join(format!("nar/{A}.nar.xz")), A).unwrap();
    write_narinfo(&c, C, "");
    std::fs::write(c.join(format!("nar/{C}.nar.xz")), C).unwrap();
    let inner = FileStore::open(&c, &a, &d.path().join("q")).unwrap();
    let s = Reads {
        inner,
        log: std::sync::Mutex::new(Vec::new()),
    };
    let o = ExecOptions::default();
    let found = block(discover(&s, &[A.to_string()], true, &o)).unwrap();
    assert_eq!((found.paths.len(), found.hot), (1, 1), "{found:?}");
    let pa = &found.paths[0];
    let why = pa.broken.as_deref().unwrap_or("");
    assert!(why.contains(Z), "Z is nowhere: {found:?}");
    let log = s.log.lock().unwrap().clone();
    assert_eq!(s.count(&format!("GET cache/{C}.narinfo")), 1, "{log:#?}");
    assert_eq!(s.count(&format!("HEAD cache/{C}.narinfo")), 0, "{log:#?}");
    assert_eq!(s.count(&format!("GET cache/{Z}.narinfo")), 1, "{log:#?}");
    assert_eq!(s.count(&format!("HEAD cache/{Z}.narinfo")), 0, "{log:#?}");
}

/// B, in the restore set, was published by this restore and removed again (an apply)
/// before A, which references it, was: A's narinfo is not published (failed, naming B),
/// so no client sees A without B.
#[test]
fn restore_rechecks_in_set_references_before_publishing() {
    let (d, s) = setup();
    let o = ExecOptions::default();
    let state = d.path().join("state");
    let found = block(discover(&s, &[A.to_string()], true, &o)).unwrap();
    assert_eq!(found.paths.len(), 2, "{found:?}");
    let (_, mut j, mut st) = journal_of(&state, &found);
    // The journal says B is back; the cache does not have it (removed since).
    for key in [format!("nar/{B}.nar.xz"), format!("{B}.narinfo")] {
        record(&mut st, &mut j, Record::Published { key }).unwrap();
    }
    s.ready.store(true, Ordering::SeqCst);
    block(advance(&s, &mut st, &mut j, &o)).unwrap();
    assert!(st.is_published(&format!("nar/{A}.nar.xz")), "{st:?}");
    assert!(!st.is_published(&format!("{A}.narinfo")) && !st.finished);
    assert!(!d.path().join(format!("cache/{A}.narinfo")).exists());
    let r = block(status(&s, &st, &o)).unwrap();
    let pa = r.paths.iter().find(|p| p.path.contains(A)).unwrap();
    assert_eq!(pa.status, "failed", "{r:?}");
    assert!(pa.detail.as_deref().unwrap_or("").contains(B), "{pa:?}");
}
