//! The plan from the index's mapped column files equals the plan computed from the narinfo
//! texts (in memory, and streamed from an index without column files), byte for byte.

use super::*;

/// The plan of the index in `st`, written decision by decision into `out` and read back.
fn written_as_decided(st: &Path, policy: &Policy, out: &Path) -> Plan {
    let mut sink = Writing::new(out);
    let planned =
        plan_from_state(st, policy, policy.roots.clone(), "test", NOW, &mut sink).unwrap();
    let header = sink
        .w
        .unwrap()
        .finish(planned.header, &planned.restore)
        .unwrap();
    let read = Plan::read(out).unwrap();
    assert_eq!(read.header, header);
    assert_eq!(read.restore, planned.restore);
    read
}

/// The plan of `index` read back from disk three ways.
fn plans_from_disk(index: &Index, policy: &Policy) -> (Plan, Plan) {
    let d = tempfile::tempdir().unwrap();
    let st = saved(index, d.path());
    let mapped = compute_from_state(&st, policy, "test", NOW).unwrap();
    // Written as decided, then read back: the same plan (files and checksum aside).
    let mut written = written_as_decided(&st, policy, &d.path().join("plan"));
    written.header.files = mapped.header.files.clone();
    written.header.checksum.clone_from(&mapped.header.checksum);
    assert_eq!(written.paths, mapped.paths);
    assert_eq!(written.objects, mapped.objects);
    assert_eq!(written.restore, mapped.restore);
    assert_eq!(written.header, mapped.header);
    // And the same files as the plan in memory written whole.
    mapped.clone().write(&d.path().join("whole")).unwrap();
    assert_eq!(
        Plan::read(&d.path().join("whole")).unwrap().header.files,
        Plan::read(&d.path().join("plan")).unwrap().header.files
    );
    // An index written before the columns existed: its narinfo stream, no columns.
    as_before_columns(&st, index);
    let streamed = compute_from_state(&st, policy, "test", NOW).unwrap();
    (mapped, streamed)
}

/// Make the saved index in `st` one written before the columns existed: the narinfo
/// stream of `index`, no columns, no quirks.
fn as_before_columns(st: &std::path::Path, index: &Index) {
    let dir = st.join("index");
    let mut meta = Index::load_meta(st).unwrap();
    let names: Vec<&str> = crate::cache_graph::file_names().collect();
    meta.files
        .retain(|k, _| !names.contains(&k.as_str()) && k != crate::index::QUIRKS_FILE);
    let p = dir.join(crate::index::NARINFOS_FILE);
    let dg = crate::index::write_stream(&p, &index.narinfos).unwrap();
    meta.files
        .insert(crate::index::NARINFOS_FILE.to_string(), dg);
    crate::index::write_meta(&dir, &mut meta).unwrap();
}

/// The audit of `index` three ways: in memory, from the saved index's mapped columns and
/// quirks file, and from the same index without them (built in memory from the narinfos).
fn audits(index: &Index) -> [crate::audit::AuditReport; 3] {
    let d = tempfile::tempdir().unwrap();
    let st = saved(index, d.path());
    let from_disk = || {
        let (i, v) = Index::load_view(&st).unwrap();
        crate::audit::audit_view(&i, &v, &[], usize::MAX).unwrap()
    };
    let mapped = from_disk();
    as_before_columns(&st, index);
    let built = from_disk();
    let mut in_memory = crate::audit::audit_index(index, &[], usize::MAX).unwrap();
    in_memory.generation = mapped.generation;
    [in_memory, mapped, built]
}

fn same(a: &Plan, b: &Plan) -> Result<(), TestCaseError> {
    prop_assert_eq!(&a.paths, &b.paths);
    prop_assert_eq!(&a.objects, &b.objects);
    prop_assert_eq!(&a.restore, &b.restore);
    prop_assert_eq!(
        serde_json::to_string(&a.header).unwrap(),
        serde_json::to_string(&b.header).unwrap()
    );
    Ok(())
}

/// A cache as `index` fetched it: its spec, damaging edits, the narinfos that have an
/// earlier text and those whose fetch failed ([`fetched_and_saved`]).
type Fetched = (
    Spec,
    Vec<(proptest::sample::Index, At, Edit)>,
    Vec<proptest::sample::Index>,
    Vec<proptest::sample::Index>,
);

fn fetched() -> impl Strategy<Value = Fetched> {
    use proptest::collection::vec;
    (
        spec(),
        vec(edit(), 0..3),
        vec(any::<proptest::sample::Index>(), 0..3),
        vec(any::<proptest::sample::Index>(), 0..2),
    )
}

/// The index of `s` as `index` fetched it (texts damaged by `edits`, an earlier text for
/// each of `changed`, a fetch error for each of `failed`), saved under `<dir>/state`.
fn fetched_and_saved(f: &Fetched) -> (Index, tempfile::TempDir) {
    let index = fetched_index(f);
    let d = tempfile::tempdir().unwrap();
    saved(&index, d.path());
    (index, d)
}

/// The index of `s` as `index` fetched it, in memory (see [`fetched_and_saved`]).
fn fetched_index((s, edits, changed, failed): &Fetched) -> Index {
    let (mut index, _) = build(s);
    damage(&mut index, edits);
    for c in changed {
        let r = c.index(index.narinfos.len());
        let earlier = b"StorePath: earlier\n".to_vec();
        index.narinfos[r]
            .earlier
            .push(serde_bytes::ByteBuf::from(earlier));
    }
    for f in failed {
        let i = f.index(index.narinfos.len());
        let r = &mut index.narinfos[i];
        r.text.clear();
        r.fetch_error = Some("connection reset".into());
    }
    index
}

/// The column files `ColumnFiles` writes row by row (at most `pass_ids` referrer ids per
/// pass, when given) for the records of `index` are the bytes of `Columns::files` of the in-memory
/// build, file for file, and their digests those `columns::write` gives.
fn streamed_files_equal_the_in_memory_columns(
    index: &Index,
    pass_ids: Option<usize>,
) -> Result<(), TestCaseError> {
    use crate::cache_graph::build::{Columns, ColumnsBuilder};
    use crate::index::columns::{self, ColumnFiles};
    let cols = Columns::build(&index.objects, |f| index.narinfos.iter().try_for_each(f)).unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut sink = ColumnFiles::create(d.path()).unwrap();
    if let Some(ids) = pass_ids {
        sink = sink.with_pass_ids(ids);
    }
    let mut b = ColumnsBuilder::with_sink(&index.objects, sink);
    for r in &index.narinfos {
        b.record(r).unwrap();
    }
    let digests = b.finish().unwrap().into_digests();
    for (name, bytes) in cols.files() {
        let got = std::fs::read(d.path().join(name)).unwrap();
        prop_assert!(got == bytes.as_ref(), "{} differs", name);
    }
    let m = tempfile::tempdir().unwrap();
    prop_assert_eq!(digests, columns::write(m.path(), &cols).unwrap());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// `index` no longer writes the narinfo stream: the columns and the quirks give back
    /// every record it fetched (damaged texts, earlier texts, fetch errors), which is what
    /// an incremental `index` builds on.
    #[test]
    fn a_saved_index_gives_back_every_narinfo_record_without_a_narinfo_stream(
        f in fetched(),
    ) {
        let (index, d) = fetched_and_saved(&f);
        let st = d.path().join("state");
        prop_assert!(!st.join("index").join(crate::index::NARINFOS_FILE).exists());
        let back = Index::load(&st).unwrap();
        prop_assert_eq!(&back.narinfos, &index.narinfos);
    }

    /// An incremental `index` streams the previous generation instead of loading it: the
    /// records it streams are those `Index::load` gives back (every record fetched), and
    /// what its first pass compares without printing a narinfo back (key, ETag, size,
    /// fetch error) is each record's own.
    #[test]
    fn the_streamed_previous_generation_gives_back_every_record_and_what_decides_reuse(
        f in fetched(),
    ) {
        let (index, d) = fetched_and_saved(&f);
        let st = d.path().join("state");
        let meta = Index::load_meta(&st).unwrap();
        let dir = st.join("index");
        let mut streamed = Vec::new();
        crate::index::generation::for_each_narinfo(&dir, &meta, |r| {
            streamed.push(r);
            Ok(())
        })
        .unwrap();
        prop_assert_eq!(&streamed, &index.narinfos);
        let mut cheap = Vec::new();
        crate::index::generation::walk_narinfos(&dir, &meta, |p| {
            cheap.push((p.key.to_string(), p.etag.map(str::to_string), p.size, p.fetch_failed));
            Ok(())
        })
        .unwrap();
        let want: Vec<_> = index
            .narinfos
            .iter()
            .map(|r| (r.key.clone(), r.etag.clone(), r.size, r.fetch_error.is_some()))
            .collect();
        prop_assert_eq!(cheap, want);
    }

    /// The streaming sink `narward index` and the benchmark generator write through gives
    /// the bytes and digests of the in-memory columns (unparseable, doubtful, fetch
    /// failures, earlier texts, missing and self references, extra NARs).
    #[test]
    fn column_files_written_row_by_row_are_the_in_memory_columns_byte_for_byte(
        f in fetched(),
    ) {
        streamed_files_equal_the_in_memory_columns(&fetched_index(&f), None)?;
    }

    /// The referrer fill with a pass budget of a few ids (many passes over the reference
    /// files, a target larger than the budget alone in its pass) gives the same bytes.
    #[test]
    fn referrer_fill_in_tiny_passes_gives_the_same_bytes(
        f in fetched(),
        pass_ids in 1usize..4,
    ) {
        streamed_files_equal_the_in_memory_columns(&fetched_index(&f), Some(pass_ids))?;
    }

    /// Audit reads the same view however the index was written: the quirks file and the
    /// mapped columns give the audit the narinfo texts give.
    #[test]
    fn audit_from_mapped_columns_equals_audit_from_narinfo_texts(
        s in spec(),
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let (mut index, _) = build(&s);
        damage(&mut index, &edits);
        let [a, b, c] = audits(&index);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&b, &c);
    }
}

/// Every row of the Parquet file `p`: each value as a one-row Arrow array (compared by
/// value, whatever batch it came from).
fn parquet_rows(p: &Path) -> Vec<Vec<arrow_array::ArrayRef>> {
    let f = std::fs::File::open(p).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for b in r {
        let b = b.unwrap();
        for i in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| c.slice(i, 1)).collect());
        }
    }
    rows
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Export writes a few rows at a time: the tables are the same, row for row, whatever
    /// the batch size.
    #[test]
    fn export_in_small_batches_equals_export_in_one(f in fetched(), rows in 1usize..4) {
        let (index, d) = fetched_and_saved(&f);
        let (i, v) = Index::load_view(&d.path().join("state")).unwrap();
        let g = v.graph().unwrap();
        let snap = v.snapshot(&i, &g);
        let (small, one) = (d.path().join("small"), d.path().join("one"));
        let a = crate::export::export_in_batches(&snap, &small, rows).unwrap();
        let b = crate::export::export_in_batches(&snap, &one, usize::MAX).unwrap();
        prop_assert_eq!((a.objects, a.narinfos, a.references), (b.objects, b.narinfos, b.references));
        prop_assert_eq!(a.narinfos, index.narinfos.len());
        for t in ["objects.parquet", "narinfos.parquet", "references.parquet"] {
            let (x, y) = (parquet_rows(&small.join(t)), parquet_rows(&one.join(t)));
            prop_assert!(!x.is_empty() || t == "references.parquet");
            prop_assert_eq!(x.len(), y.len(), "{}", t);
            for (r, (a, b)) in x.iter().zip(&y).enumerate() {
                prop_assert!(a.iter().zip(b).all(|(a, b)| a.to_data() == b.to_data()), "{} row {}", t, r);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn plan_from_mapped_columns_equals_plan_from_narinfo_texts(
        s in spec(),
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let (mut index, policy) = build(&s);
        damage(&mut index, &edits);
        let in_memory = compute(&index, &policy, "test", NOW).unwrap();
        let (mapped, streamed) = plans_from_disk(&index, &policy);
        same(&in_memory, &mapped)?;
        same(&in_memory, &streamed)?;
    }
}

/// The policy keeping `roots` and nothing else (no rule keeps young or CA paths).
fn roots_only(roots: &[usize]) -> Policy {
    let roots: Vec<String> = roots
        .iter()
        .map(|r| format!("\"/nix/store/{}-p{r}\"", hash20(*r, 1)))
        .collect();
    let text = format!(
        "[roots]\npaths = [{}]\n[keep]\ncontent_addressed = false\nmin_age_days = 0\n[actions]\nunreachable = \"delete\"\n",
        roots.join(", ")
    );
    Policy::from_str(&text, Path::new("."), "test").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Issue 9: the report's closure of a root set is the plan's kept set for the same
    /// roots under a keep-nothing-else policy, damaged (unparseable) narinfos included.
    #[test]
    fn report_closure_of_each_root_set_equals_the_plans_kept_set(
        s in spec(),
        edits in proptest::collection::vec(edit(), 0..3),
        pick in proptest::collection::vec(any::<bool>(), 40),
    ) {
        let (mut index, _) = build(&s);
        damage(&mut index, &edits);
        let roots: Vec<usize> = (0..s.n).filter(|i| pick[i % pick.len()]).collect();
        let policy = roots_only(&roots);
        let plan = compute(&index, &policy, "test", NOW).unwrap();
        let kept: std::collections::BTreeSet<String> = plan
            .paths
            .iter()
            .filter(|p| p.decision == Decision::Keep)
            .map(|p| p.path[..32].to_string())
            .collect();
        let cols = Columns::build(&index.objects, |f| index.narinfos.iter().try_for_each(f)).unwrap();
        let graph = CacheGraph::new(cols.parts()).unwrap();
        let (_, ids) = crate::report::root_set_closure(&graph, policy.roots.hashes());
        let closure: std::collections::BTreeSet<String> =
            ids.iter().map(|&i| graph.hash(i).to_string()).collect();
        prop_assert_eq!(&closure, &kept);
        let data = crate::report::build_index(&index, Some(&policy), &[], &crate::cost::Pricing::default_aws(), NOW).unwrap();
        let sets = data.root_sets.unwrap().sets;
        prop_assert_eq!(sets.iter().map(|r| r.closure_paths).sum::<u64>(), kept.len() as u64 * sets.len() as u64);
    }
}

/// `why` found referrers by parsing every narinfo again, so an unparseable narinfo that
/// keeps a path (through what its text names) was never shown as its referrer: it now
/// comes from the cache graph's reverse references, the ones the plan followed.
#[test]
fn why_lists_an_unparseable_narinfo_among_the_referrers_it_keeps() {
    let (index, policy) = edited(3, 0, 0, |_| {
        format!(
            "StorePath broken\nReferences: /nix/store/{}-p1\n",
            hash20(1, 1)
        )
    });
    let plan = compute(&index, &policy, "test", NOW).unwrap();
    let cols = Columns::build(&index.objects, |f| index.narinfos.iter().try_for_each(f)).unwrap();
    let graph = CacheGraph::new(cols.parts()).unwrap();
    let w = crate::explain::why(&plan, &hash20(1, 1), Some(&graph)).unwrap();
    assert_eq!(w.decision, Decision::Keep);
    let referrers: Vec<&str> = w.referrers.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        referrers,
        [hash20(0, 1).as_str()],
        "the unparseable narinfo of path 0"
    );
    assert!(
        crate::explain::why(&plan, &hash20(2, 1), Some(&graph))
            .unwrap()
            .referrers
            .is_empty()
    );
}
