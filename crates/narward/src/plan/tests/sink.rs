//! Decisions go to the sink as they are made (issue 9: "write decisions as they are
//! made"), in the order readers rely on, and a plan abandoned half-written leaves nothing.

use super::*;

/// What a sink saw, in order.
#[derive(Default)]
struct Recording {
    events: Vec<String>,
    /// Fail at this event (counted from 0), if set.
    fail_at: Option<usize>,
}

impl Recording {
    fn see(&mut self, e: String) -> Result<()> {
        if self.fail_at == Some(self.events.len()) {
            bail!("sink refused event {}", self.events.len());
        }
        self.events.push(e);
        Ok(())
    }
}

impl PlanSink for Recording {
    fn begin(&mut self, b: &Begin<'_>) -> Result<()> {
        self.see(format!("begin {} {}", b.paths, b.objects))
    }
    fn path(&mut self, p: PathDecision) -> Result<()> {
        self.see(format!("path {}", p.path))
    }
    fn object(&mut self, o: ObjectDecision) -> Result<()> {
        self.see(format!("object {}", o.key))
    }
}

fn small_cache() -> (Index, Policy) {
    let s = Spec {
        n: 6,
        edges: vec![(1, 0), (3, 2), (5, 1)],
        roots: vec![5],
        missing_nar: vec![4],
        broken: vec![3],
        orphans: 2,
        delete: true,
        ..Spec::default()
    };
    build(&s)
}

#[test]
fn decisions_are_written_as_they_are_made_in_the_order_readers_search() {
    let (index, policy) = small_cache();
    let d = tempfile::tempdir().unwrap();
    let st = saved(&index, d.path());
    let mut rec = Recording::default();
    plan_from_state(&st, &policy, policy.roots.clone(), "test", NOW, &mut rec).unwrap();
    let n = index.narinfos.len();
    let m = index.objects.len();
    assert_eq!(rec.events[0], format!("begin {n} {m}"));
    let paths: Vec<&String> = rec.events[1..=n].iter().collect();
    let objects: Vec<&String> = rec.events[n + 1..].iter().collect();
    assert!(paths.iter().all(|e| e.starts_with("path ")), "{paths:?}");
    assert!(
        objects.iter().all(|e| e.starts_with("object ")),
        "{objects:?}"
    );
    assert_eq!(objects.len(), m);
    assert!(
        paths.windows(2).all(|w| w[0] < w[1]),
        "paths sorted: {paths:?}"
    );
    assert!(objects.windows(2).all(|w| w[0] < w[1]), "objects sorted");
    // The sink's error stops planning at once: no decision is made after it.
    for fail_at in [0, 2, n + 1] {
        let mut rec = Recording {
            fail_at: Some(fail_at),
            ..Default::default()
        };
        let e =
            plan_from_state(&st, &policy, policy.roots.clone(), "test", NOW, &mut rec).unwrap_err();
        assert!(e.to_string().contains("sink refused"), "{e:#}");
        assert_eq!(rec.events.len(), fail_at);
    }
}

#[test]
fn a_plan_that_fails_while_written_leaves_no_plan_directory() {
    let (index, policy) = small_cache();
    let d = tempfile::tempdir().unwrap();
    let st = saved(&index, d.path());
    let out = d.path().join("plan");
    let mut sink = Writing::new(&out);
    sink.fail_after = Some(2);
    assert!(plan_from_state(&st, &policy, policy.roots.clone(), "test", NOW, &mut sink).is_err());
    assert!(d.path().join(".plan.partial").exists(), "written meanwhile");
    drop(sink);
    assert!(!out.exists());
    assert!(!d.path().join(".plan.partial").exists());
    // An empty --out directory is replaced by the whole plan.
    std::fs::create_dir(&out).unwrap();
    let mut plan = compute(&index, &policy, "test", NOW).unwrap();
    plan.write(&out).unwrap();
    let read = Plan::read(&out).unwrap();
    assert_eq!(read.paths, plan.paths);
    assert_eq!(read.objects, plan.objects);
    assert!(!d.path().join(".plan.partial").exists());
}

/// The plan of [`small_cache`], and a directory to write it in.
fn small_plan() -> (Plan, tempfile::TempDir) {
    let (index, policy) = small_cache();
    (
        compute(&index, &policy, "test", NOW).unwrap(),
        tempfile::tempdir().unwrap(),
    )
}

#[test]
fn plan_writer_refuses_decisions_out_of_order() {
    let (plan, d) = small_plan();
    let out = d.path().join("plan");
    let mut w = PlanWriter::create(&out, "s3://c", 2, 0).unwrap();
    w.path(&plan.paths[1]).unwrap();
    let e = w.path(&plan.paths[0]).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e:#}");
    drop(w);
    assert!(!out.exists());
}

#[test]
fn plan_writer_thread_writes_the_same_plan_and_reports_the_writers_errors() {
    let (plan, d) = small_plan();
    let out = d.path().join("plan");
    let n = |v: usize| v as u64;
    let w = PlanWriter::create(&out, "s3://c", n(plan.paths.len()), n(plan.objects.len()));
    let mut t = PlanWriterThread::spawn(w.unwrap());
    for p in &plan.paths {
        t.path(p.clone()).unwrap();
    }
    for o in &plan.objects {
        t.object(o.clone()).unwrap();
    }
    t.finish(plan.header.clone(), &plan.restore).unwrap();
    let read = Plan::read(&out).unwrap();
    assert_eq!(read.paths, plan.paths);
    assert_eq!(read.objects, plan.objects);
    // Out of order: the thread's error comes back, and nothing is left behind.
    let out2 = d.path().join("plan2");
    let w = PlanWriter::create(&out2, "s3://c", 2, 0).unwrap();
    let mut t = PlanWriterThread::spawn(w);
    t.path(plan.paths[1].clone()).unwrap();
    t.path(plan.paths[0].clone()).unwrap();
    let e = t.finish(plan.header.clone(), &[]).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e:#}");
    assert!(!out2.exists());
    assert!(!d.path().join(".plan2.partial").exists());
}

/// The operator's `--out` is named when its parent cannot take the plan (here a file
/// stands where the parent directory should be), and nothing is written.
#[test]
fn plan_writer_error_when_the_out_parent_is_not_writable_names_the_out_directory() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("plan");
    let e = PlanWriter::create(&out, "s3://c", 0, 0).err().unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains(&out.display().to_string()), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Issue 9: `plan` reads its listing's ETags again after the closure. Records read again
/// that are not the listing's fail the plan before the sink sees anything.
#[test]
fn etags_read_again_that_are_not_the_listings_fail_before_the_sink_sees_anything() {
    let (index, policy) = small_cache();
    let source = |f: &mut dyn FnMut(&FetchedRecord) -> Result<()>| -> Result<()> {
        index.narinfos.iter().try_for_each(&mut *f)
    };
    let cols = Columns::build(&index.objects, source).unwrap();
    for skip in [0usize, 1] {
        // One record short, or one record out of place.
        let again = |f: &mut dyn FnMut(EtagRecord) -> Result<()>| -> Result<()> {
            let mut rs = index.objects.to_records();
            if skip == 0 {
                rs.pop();
            } else {
                rs.swap(0, 1);
            }
            rs.iter().try_for_each(|r| f(EtagRecord::of(r)))
        };
        let input = PlanInput {
            meta: &index.meta,
            debuginfo: &index.debuginfo,
            policy: &policy,
            policy_file: "test",
            now: NOW,
            records_again: Some(&again),
        };
        let graph = CacheGraph::new(cols.parts()).unwrap();
        let mut objects = index.objects.clone();
        let mut rec = Recording::default();
        let roots = policy.roots.clone();
        let e = compute_with_graph(
            &input,
            roots,
            &mut objects,
            graph,
            Default::default(),
            &mut rec,
        )
        .unwrap_err();
        assert!(e.to_string().contains("read again"), "{e:#}");
        assert!(rec.events.is_empty(), "{:?}", rec.events);
    }
}
