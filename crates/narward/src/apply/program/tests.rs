use super::*;
use crate::cache::store::Area;
use crate::index::Index;
use crate::listing::Listing;
use crate::model::{FetchedRecord, ObjectRecord};
use crate::plan::compute;
use crate::policy::Policy;
use narward_formats::nixbase32;
use proptest::prelude::*;
use std::path::Path;

const NOW: i64 = 2_000_000_000;

fn hash(i: usize) -> String {
    let mut b = [0u8; 20];
    b[0] = 7;
    b[1..9].copy_from_slice(&(i as u64).to_le_bytes());
    nixbase32::encode(&b)
}

fn nar(i: usize) -> String {
    let mut b = [0u8; 32];
    b[1..9].copy_from_slice(&(i as u64).to_le_bytes());
    format!("nar/{}.nar.xz", nixbase32::encode(&b))
}

fn narinfo_text(i: usize, refs: &[usize]) -> String {
    let r: Vec<String> = refs.iter().map(|b| format!("{}-p{b}", hash(*b))).collect();
    format!(
        "StorePath: /nix/store/{}-p{i}\nURL: {}\nCompression: xz\nFileHash: sha256:{}\nFileSize: {}\nNarHash: sha256:{}\nNarSize: 9\nReferences: {}\n",
        hash(i),
        nar(i),
        &nar(i)[4..56],
        300_000 + i,
        &nar(i)[4..56],
        r.join(" ")
    )
}

fn rec(key: String, size: u64, etag: &str) -> ObjectRecord {
    ObjectRecord {
        link_target: None,
        key,
        size,
        etag: Some(etag.into()),
        last_modified: Some(NOW - 400 * 86_400),
        storage_class: None,
    }
}

fn fetched(key: String, text: String, etag: &str) -> FetchedRecord {
    FetchedRecord {
        key,
        etag: Some(etag.into()),
        size: text.len() as u64,
        text: text.into_bytes(),
        fetch_error: None,
        earlier: Vec::new(),
    }
}

fn index(objects: Vec<ObjectRecord>, narinfos: Vec<FetchedRecord>) -> Index {
    let mut objects = objects;
    let mut narinfos = narinfos;
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    narinfos.sort_by(|a, b| a.key.cmp(&b.key));
    let mut index = Index::for_tests(Listing::from_records(objects).unwrap(), narinfos);
    index.meta.format_version = 1;
    index.meta.cache = "file:///t".into();
    index.meta.cache_url = "file:///t".into();
    index.meta.updated_at = NOW;
    index
}

/// A random cache; references only to lower-numbered paths.
#[derive(Debug, Clone)]
struct Spec {
    n: usize,
    edges: Vec<(usize, usize)>,
    roots: Vec<usize>,
    delete: bool,
    /// New narinfos uploaded after the plan: (new path number offset, references).
    uploads: Vec<Vec<usize>>,
    /// Objects changed after the plan (path number, whether the NAR rather than narinfo).
    changed: Vec<(usize, bool)>,
}

impl Spec {
    /// A cache of `n` paths with these `edges` and `roots`, nothing changed since the plan.
    fn of(n: usize, edges: &[(usize, usize)], roots: &[usize], delete: bool) -> Spec {
        Spec {
            n,
            edges: edges.to_vec(),
            roots: roots.to_vec(),
            delete,
            uploads: vec![],
            changed: vec![],
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (2usize..30).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec((0..n, 0..n), 0..60),
            proptest::collection::vec(0..n, 0..3),
            any::<bool>(),
            proptest::collection::vec(proptest::collection::vec(0..n, 0..3), 0..3),
            proptest::collection::vec((0..n, any::<bool>()), 0..3),
        )
            .prop_map(|(n, e, roots, delete, uploads, changed)| Spec {
                n,
                edges: e
                    .into_iter()
                    .filter(|(a, b)| a != b)
                    .map(|(a, b)| if a > b { (a, b) } else { (b, a) })
                    .collect(),
                roots,
                delete,
                uploads,
                changed,
            })
    })
}

fn refs(s: &Spec, i: usize) -> Vec<usize> {
    let set: BTreeSet<usize> = s
        .edges
        .iter()
        .filter(|(a, _)| *a == i)
        .map(|(_, b)| *b)
        .collect();
    set.into_iter().collect()
}

fn cache(s: &Spec) -> (Vec<ObjectRecord>, Vec<FetchedRecord>) {
    let (mut objects, mut narinfos) = (Vec::new(), Vec::new());
    for i in 0..s.n {
        let t = narinfo_text(i, &refs(s, i));
        objects.push(rec(format!("{}.narinfo", hash(i)), t.len() as u64, "e0"));
        objects.push(rec(nar(i), 300_000 + i as u64, "e0"));
        objects.push(rec(format!("{}.ls", hash(i)), 10, "e0"));
        narinfos.push(fetched(format!("{}.narinfo", hash(i)), t, "e0"));
    }
    (objects, narinfos)
}

fn planned(s: &Spec) -> Plan {
    let (o, n) = cache(s);
    let roots: Vec<String> = s
        .roots
        .iter()
        .map(|r| format!("\"/nix/store/{}-p{r}\"", hash(*r)))
        .collect();
    let text = format!(
        "[roots]\npaths = [{}]\n[keep]\nmin_age_days = 0\n[actions]\nunreachable = \"{}\"\narchive_min_size = \"1KiB\"\n",
        roots.join(", "),
        if s.delete { "delete" } else { "archive" }
    );
    let policy = Policy::from_str(&text, Path::new("."), "test").unwrap();
    compute(&index(o, n), &policy, "test", NOW).unwrap()
}

/// The cache after the plan: uploads (paths numbered from n) and changed objects.
fn fresh(s: &Spec) -> Index {
    let (mut o, mut n) = cache(s);
    for (j, r) in s.uploads.iter().enumerate() {
        let i = s.n + j;
        let t = narinfo_text(i, r);
        o.push(rec(format!("{}.narinfo", hash(i)), t.len() as u64, "new"));
        o.push(rec(nar(i), 1, "new"));
        n.push(fetched(format!("{}.narinfo", hash(i)), t, "new"));
    }
    for (i, is_nar) in &s.changed {
        let key = if *is_nar {
            nar(*i)
        } else {
            format!("{}.narinfo", hash(*i))
        };
        for r in o.iter_mut().filter(|r| r.key == key) {
            r.etag = Some("changed".into());
        }
        for r in n.iter_mut().filter(|r| r.key == key) {
            r.etag = Some("changed".into());
        }
    }
    index(o, n)
}

/// [`recheck`] against an index held in memory (its columns and quirks built as `index`
/// builds them).
fn recheck_in(plan: &Plan, fresh: &Index) -> Vec<Skip> {
    crate::cache_graph::with_snapshot(fresh, |s| recheck(plan, s)).unwrap()
}

fn layout() -> Layout {
    Layout {
        archives_in_place: false,
        quarantine_stamp: "1700000000".into(),
        batch_size: 3,
    }
}

fn run(s: &Spec) -> (Plan, Vec<Batch>) {
    let plan = planned(s);
    let kept = plan
        .paths
        .iter()
        .filter(|p| p.decision == Decision::Keep)
        .count();
    assert_eq!(
        kept,
        reachable(s).len(),
        "the test cache must plan removals"
    );
    let skips: BTreeSet<String> = recheck_in(&plan, &fresh(s))
        .into_iter()
        .map(|k| k.key)
        .collect();
    let prog = program(&plan, &skips, &layout());
    (plan, prog)
}

/// Paths reachable from the roots.
fn reachable(s: &Spec) -> BTreeSet<usize> {
    let mut stack: Vec<usize> = s.roots.clone();
    let mut seen = BTreeSet::new();
    while let Some(i) = stack.pop() {
        if seen.insert(i) {
            stack.extend(refs(s, i));
        }
    }
    seen
}

/// Paths that uploads (or changed narinfos) reach through references.
fn protected(s: &Spec) -> BTreeSet<usize> {
    let mut stack: Vec<usize> = s.uploads.iter().flatten().copied().collect();
    stack.extend(s.changed.iter().filter(|(_, n)| !n).map(|(i, _)| *i));
    let mut seen = BTreeSet::new();
    while let Some(i) = stack.pop() {
        if seen.insert(i) {
            stack.extend(refs(s, i));
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn narinfo_is_hidden_before_its_nar_moves(s in spec()) {
        let (plan, prog) = run(&s);
        let mut hidden = BTreeSet::new();
        for b in &prog {
            for op in &b.ops {
                if b.phase == Phase::Hide {
                    hidden.insert(op.key.clone());
                    continue;
                }
                for p in plan.paths.iter().filter(|p| p.nar_key.as_deref() == Some(&op.key)) {
                    let ni = format!("{}.narinfo", hash_of(&p.path));
                    prop_assert!(p.decision == Decision::Keep || hidden.contains(&ni) || op.guards.contains(&ni),
                        "{} moves before {ni} is hidden", op.key);
                    prop_assert!(op.guards.contains(&ni), "{} lacks the guard {ni}", op.key);
                }
            }
        }
        let phases: Vec<Phase> = prog.iter().map(|b| b.phase).collect();
        let mut sorted = phases.clone();
        sorted.sort();
        prop_assert_eq!(phases, sorted);
    }

    #[test]
    fn nothing_kept_or_newly_referenced_is_ever_touched(s in spec()) {
        let (plan, prog) = run(&s);
        let prot = protected(&s);
        for op in prog.iter().flat_map(|b| &b.ops) {
            let o = plan.object(&op.key).expect("a key of the plan");
            prop_assert!(o.decision != Decision::Keep, "kept {} touched", op.key);
            for i in &prot {
                for k in [format!("{}.narinfo", hash(*i)), format!("{}.ls", hash(*i)), nar(*i)] {
                    prop_assert!(op.key != k, "{k} is referenced since the plan but touched");
                }
            }
            for (i, is_nar) in &s.changed {
                let k = if *is_nar { nar(*i) } else { format!("{}.narinfo", hash(*i)) };
                prop_assert!(op.key != k, "changed {k} touched");
            }
        }
    }

    #[test]
    fn steps_only_touch_keys_of_the_plan(s in spec()) {
        let (plan, prog) = run(&s);
        let skips: BTreeSet<String> = recheck_in(&plan, &fresh(&s)).into_iter().map(|k| k.key).collect();
        let counts = Program::new(&plan, &skips, &layout()).counts();
        for p in Phase::ALL {
            let n: usize = prog.iter().filter(|b| b.phase == p).map(|b| b.ops.len()).sum();
            prop_assert_eq!(counts[p as usize], n as u64);
        }
        let mut seen = BTreeSet::new();
        for (i, b) in prog.iter().enumerate() {
            prop_assert_eq!(b.seq, i as u64);
            prop_assert!(b.ops.len() <= 3 && !b.ops.is_empty());
            for op in &b.ops {
                prop_assert!(plan.object(&op.key).is_some());
                prop_assert!(seen.insert(op.key.clone()), "{} twice", op.key);
                match op.to.area {
                    Area::Cache => prop_assert!(false, "file:// never copies within the cache"),
                    Area::Archive => prop_assert_eq!(&op.to.key, &op.key),
                    Area::Quarantine => prop_assert_eq!(op.to.key.clone(), format!("1700000000/{}", op.key)),
                }
            }
        }
    }
}

#[test]
fn in_place_archive_changes_class_and_keeps_the_source() {
    let s = Spec::of(2, &[], &[0], false);
    let plan = planned(&s);
    let l = Layout {
        archives_in_place: true,
        ..layout()
    };
    let prog = program(&plan, &BTreeSet::new(), &l);
    let ops: Vec<&Op> = prog
        .iter()
        .filter(|b| b.phase == Phase::Archive)
        .flat_map(|b| &b.ops)
        .collect();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].to, Loc::cache(nar(1)));
    assert!(!ops[0].delete_source);
    assert_eq!(ops[0].storage_class.as_deref(), Some("DEEP_ARCHIVE"));
}

#[test]
fn a_narinfo_uploaded_since_the_plan_keeps_the_removed_closure_it_references() {
    // 2 -> 1 -> 0, root none of them; an upload references 2.
    let s = Spec {
        uploads: vec![vec![2]],
        ..Spec::of(4, &[(2, 1), (1, 0)], &[3], true)
    };
    let plan = planned(&s);
    assert!(
        plan.path(&hash(0)).unwrap().decision == Decision::Delete,
        "{:?} {:?}",
        plan.paths,
        plan.objects
    );
    let skips = recheck_in(&plan, &fresh(&s));
    for i in 0..3 {
        for k in [format!("{}.narinfo", hash(i)), nar(i)] {
            assert!(skips.iter().any(|x| x.key == k), "{k} not kept: {skips:?}");
        }
    }
}

/// Safety finding: a narinfo uploaded since the plan that the fresh index could not
/// fetch was read as naming nothing, so the removed paths it references were moved or
/// deleted anyway. What it references is unknown: the re-check now keeps every removed
/// object, naming it.
#[test]
fn a_narinfo_uploaded_since_the_plan_that_could_not_be_read_keeps_every_removed_object() {
    let s = Spec {
        uploads: vec![vec![2]],
        ..Spec::of(4, &[(2, 1), (1, 0)], &[3], true)
    };
    let plan = planned(&s);
    let mut f = fresh(&s);
    let new_key = format!("{}.narinfo", hash(4));
    for r in f.narinfos.iter_mut().filter(|r| r.key == new_key) {
        r.text.clear();
        r.fetch_error = Some("connection reset".into());
    }
    let skips = recheck_in(&plan, &f);
    let removed: Vec<&str> = plan
        .objects
        .iter()
        .filter(|o| o.decision != Decision::Keep)
        .map(|o| o.key.as_str())
        .collect();
    assert!(!removed.is_empty());
    for k in removed {
        let skip = skips.iter().find(|x| x.key == k);
        assert!(skip.is_some(), "{k} not kept: {skips:?}");
        let why = &skip.unwrap().reason;
        assert!(
            why.contains(&new_key) && why.contains("could not be read"),
            "{why}"
        );
    }
}

/// The re-check reads links from the fresh index: a kept NAR that became a symlink since
/// the plan (through a chain ending in a cycle) keeps every object it reads; a removed
/// link keeps nothing.
#[test]
fn the_recheck_keeps_what_a_staying_symlink_reads_through_chains_and_cycles() {
    let s = Spec::of(3, &[], &[0], true);
    let (mut o, n) = cache(&s);
    for i in 10..13 {
        o.push(rec(nar(i), 300_000, "e0"));
    }
    let plan = compute(
        &index(o, n),
        &Policy::from_str(
            &format!(
                "[roots]\npaths = [\"/nix/store/{}-p0\"]\n[keep]\nmin_age_days = 0\n[actions]\nunreachable = \"delete\"\norphan_nars = \"delete\"\n",
                hash(0)
            ),
            Path::new("."),
            "test",
        )
        .unwrap(),
        "test",
        NOW,
    ).unwrap();
    for k in [nar(1), nar(10), nar(11), nar(12)] {
        assert_eq!(plan.object(&k).unwrap().decision, Decision::Delete, "{k}");
    }
    let mut f = fresh(&s);
    let mut objects = f.objects.to_records();
    for i in 10..13 {
        objects.push(rec(nar(i), 300_000, "e0"));
    }
    f.objects = Listing::from_records(objects).unwrap();
    let link = |f: &mut Index, from: String, to: String| {
        let mut objects = f.objects.to_records();
        let i = objects.iter().position(|o| o.key == from).unwrap();
        objects[i].link_target = Some(to);
        f.objects = Listing::from_records(objects).unwrap();
    };
    link(&mut f, nar(0), nar(10));
    link(&mut f, nar(10), nar(11));
    link(&mut f, nar(11), nar(10));
    link(&mut f, nar(1), nar(12));
    let skips = recheck_in(&plan, &f);
    let skipped: BTreeSet<&str> = skips.iter().map(|x| x.key.as_str()).collect();
    assert!(skipped.contains(nar(10).as_str()), "{skips:?}");
    assert!(skipped.contains(nar(11).as_str()), "{skips:?}");
    assert!(!skipped.contains(nar(12).as_str()), "{skips:?}");
    assert!(!skipped.contains(nar(1).as_str()), "{skips:?}");
}
