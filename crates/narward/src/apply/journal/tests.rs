use super::*;

fn begin() -> Begin {
    Begin {
        plan: "abc".into(),
        plan_dir: "/p".into(),
        cache: "file:///c".into(),
        archive: "file:///a".into(),
        quarantine: "file:///q".into(),
        stamp: "1700000000".into(),
        batch_size: 10,
    }
}

fn written() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("j");
    let mut j = Journal::create(&dir, begin()).unwrap();
    for r in [
        Record::Skip(Skip {
            key: "x.narinfo".into(),
            reason: "changed".into(),
        }),
        Record::Checked,
        Record::Announce { seq: 0 },
        Record::Done { seq: 0 },
        Record::Announce { seq: 1 },
    ] {
        j.append(&r).unwrap();
    }
    (d, dir)
}

#[test]
fn resume_state_is_a_cursor_with_the_batch_in_flight() {
    let (_d, dir) = written();
    let (_, s) = Journal::open(&dir).unwrap();
    assert_eq!(s.begin, begin());
    assert!(s.checked && !s.finished);
    assert_eq!((s.next_seq, s.in_flight), (1, Some(1)));
    assert_eq!(s.skips.len(), 1);
    assert!(
        Journal::create(&dir, begin()).is_err(),
        "never started twice"
    );
}

#[test]
fn torn_last_record_is_dropped_and_cut() {
    let (_d, dir) = written();
    let p = dir.join("journal");
    let good = std::fs::read(&p).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(&line(&Record::Done { seq: 1 }).unwrap().as_bytes()[..20]);
    std::fs::write(&p, &torn).unwrap();
    let (mut j, s) = Journal::open(&dir).unwrap();
    assert_eq!((s.next_seq, s.in_flight), (1, Some(1)));
    assert_eq!(std::fs::read(&p).unwrap(), good, "torn bytes cut");
    j.append(&Record::Done { seq: 1 }).unwrap();
    let (_, s) = Journal::open(&dir).unwrap();
    assert_eq!((s.next_seq, s.in_flight), (2, None));
}

#[test]
fn damaged_record_is_refused_naming_the_file_and_line() {
    let (_d, dir) = written();
    let p = dir.join("journal");
    let text = std::fs::read_to_string(&p).unwrap();
    let damaged = text.replacen("\"seq\":0", "\"seq\":7", 1);
    assert_ne!(damaged, text);
    std::fs::write(&p, damaged).unwrap();
    let e = format!("{:#}", Journal::open(&dir).err().unwrap());
    assert!(
        e.contains(&p.display().to_string()) && e.contains("line 4"),
        "{e}"
    );
}

#[test]
fn done_out_of_order_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::create(d.path(), begin()).unwrap();
    j.append(&Record::Done { seq: 3 }).unwrap();
    assert!(Journal::open(d.path()).is_err());
}
