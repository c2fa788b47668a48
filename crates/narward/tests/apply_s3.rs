//! `narward apply`, `apply --resume`, `apply --finalize`, `recover` and `verify` on s3://
//! copies of the bundled example cache in the local moto server (scripts/moto.sh), through
//! the real binary: the same claims as tests/apply_file.rs, plus what only S3 has (storage
//! classes, InvalidObjectState, key prefixes, versioned buckets, the fault proxy).

mod common;
use common::s3_fx::*;
use common::*;

use narward::cache::S3Options;
use narward::plan::{Decision, ObjectDecision};
use narward_formats::keys::Category;
use narward_testkit::fault_proxy::{FaultConfig, FaultProxy};
use std::collections::BTreeMap;

use std::process::{Command, Stdio};
use std::time::Duration;

/// `narward apply --finalize --json` as if at unix time `now`; its report.
fn finalize_at(fx: &Fx, now: &str) -> serde_json::Value {
    json(&fx.ok(&[
        "apply",
        "--finalize",
        "--confirm",
        &fx.bucket,
        "--json",
        "--now",
        now,
    ]))
}

#[test]
fn apply_on_s3_moves_exactly_the_planned_objects_and_keeps_narinfos_byte_for_byte() {
    for prefix in ["", "some/prefix"] {
        let fx = fixture("exact", prefix, "archive");
        let p = fx.plan_value();
        let before = fx.listing();
        let bytes_before = fx.s3.snapshot(&fx.bucket);
        let r = fx.apply(&["--now", &T0.to_string()]);
        assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{r}");
        assert!(r.get("versioning_note").is_none(), "unversioned: {r}");
        let after = fx.listing();
        assert_eq!(after, expected_after(&fx, &p, &before), "prefix {prefix:?}");
        let archived_nars: Vec<&ObjectDecision> = removed(&p)
            .into_iter()
            .filter(|o| o.category == Category::Nar && o.transition_to.is_some())
            .collect();
        assert!(!archived_nars.is_empty(), "the plan archives NARs");
        for o in &archived_nars {
            let k = fx.full(&o.key);
            assert_eq!(fx.s3.head_class(&fx.bucket, &k), "DEEP_ARCHIVE", "{k}");
            assert_eq!(
                fx.s3.get(&fx.bucket, &k),
                Err("InvalidObjectState".to_string()),
                "GET of an archived NAR {k}"
            );
        }
        let mut hidden = 0;
        for o in removed(&p).into_iter().filter(|o| hidden_kind(o)) {
            let area = if o.decision == Decision::Archive {
                ARCHIVE.to_string()
            } else {
                format!("{QUARANTINE}{T0}/")
            };
            let copy = fx.s3.get(&fx.bucket, &fx.full(&format!("{area}{}", o.key)));
            assert_eq!(
                copy.as_ref(),
                Ok(&bytes_before[&fx.full(&o.key)]),
                "{} kept byte for byte in {area}",
                o.key
            );
            hidden += 1;
        }
        assert!(hidden >= 3, "the plan hides narinfos");
        let (code, v) = fx.verify();
        assert_eq!(code, Some(0), "verify after apply (prefix {prefix:?}): {v}");
    }
}

#[test]
fn a_nar_changed_after_the_plan_is_skipped_and_reported_on_s3() {
    let fx = fixture("changed", "", "archive");
    let p = fx.plan_value();
    let nar = removed(&p)
        .into_iter()
        .find(|o| o.category == Category::Nar && o.transition_to.is_some())
        .unwrap()
        .key
        .clone();
    let mut bytes = fx.s3.get(&fx.bucket, &nar).unwrap();
    bytes.push(0);
    fx.s3.put(&fx.bucket, &nar, &bytes);
    let plan = fx.plan();
    let out = fx.run(&["apply", &plan, "--confirm", &fx.bucket, "--json"]);
    assert_eq!(out.status.code(), Some(1), "skips exit 1");
    let r = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        r["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == nar.as_str() && s["reason"].as_str().unwrap().contains("changed")),
        "{r}"
    );
    assert_eq!(fx.s3.get(&fx.bucket, &nar).unwrap(), bytes, "left in place");
    assert_eq!(fx.s3.head_class(&fx.bucket, &nar), "STANDARD");
}

#[test]
fn dry_run_on_s3_changes_nothing_and_prints_every_request_with_counts_and_bytes() {
    let fx = fixture("dry", "pre", "delete");
    let before = fx.listing();
    let p = fx.plan_value();
    let plan = fx.plan();
    let r = json(&fx.ok(&["apply", &plan, "--dry-run", "--json"]));
    assert_eq!(fx.listing(), before, "a dry run changes nothing");
    let reqs: Vec<&str> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut bytes = 0;
    for o in removed(&p)
        .into_iter()
        .filter(|o| hidden_kind(o) || o.decision == Decision::Delete)
    {
        assert!(
            reqs.iter()
                .any(|q| q.starts_with(&format!("COPY cache:{} ", o.key))),
            "{} missing in {reqs:?}",
            o.key
        );
        assert!(
            deleted_in(&reqs, &o.key),
            "no delete of {} in {reqs:?}",
            o.key
        );
        bytes += o.size;
    }
    let phases = &r["phases"];
    let total: u64 = ["hide", "quarantine"]
        .iter()
        .map(|k| phases[k]["bytes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, bytes, "{r}");
    assert_eq!(phases["hide"]["objects"], 3, "{r}");
    assert!(
        phases["quarantine"]["requests"].as_u64().unwrap() > 0,
        "{r}"
    );
    let text = fx.ok(&["apply", &plan, "--dry-run"]);
    assert!(text.contains("nothing is changed"), "{text}");
    assert!(text.contains("hide") && text.contains("bytes"), "{text}");
    assert_eq!(fx.listing(), before);
    // A real apply afterwards is not blocked by the dry run.
    fx.apply(&[]);
    assert_ne!(fx.listing(), before);
}

/// `narward apply` of `fx`'s plan at `T0` (or `--resume`), small batches, optionally
/// aborting after `abort_after` mutations (NARWARD_APPLY_ABORT_AFTER).
fn apply_cmd(fx: &Fx, resume: bool, abort_after: Option<u64>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_narward"));
    if resume {
        c.args(["apply", "--resume"]);
    } else {
        c.args(["apply", &fx.plan(), "--confirm", &fx.bucket]);
        c.args(["--now", &T0.to_string()]);
    }
    c.args([
        "--batch-size",
        "2",
        "--concurrency",
        "3",
        "--quiet",
        "--state",
    ])
    .arg(fx.state())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(n) = abort_after {
        c.env("NARWARD_APPLY_ABORT_AFTER", n.to_string());
    }
    c
}

/// Whether an apply journal exists in the state (a kill before it leaves nothing to
/// resume).
fn has_journal(fx: &Fx) -> bool {
    std::fs::read_dir(fx.state().join("apply"))
        .map(|rd| rd.flatten().any(|e| e.path().join("journal").exists()))
        .unwrap_or(false)
}

/// Resume until an apply finishes; returns how many runs died on the way.
fn resume_to_end(fx: &Fx, mut first: Command, abort_on_resume: Option<u64>) -> u32 {
    let st = first.status().unwrap();
    let mut done = st.success() || st.code() == Some(1);
    let mut kills = u32::from(!done);
    let mut abort = abort_on_resume;
    while !done {
        let resume = has_journal(fx);
        let out = apply_cmd(fx, resume, abort.take())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        done = out.status.success() || out.status.code() == Some(1);
        kills += u32::from(!done);
        assert!(
            kills < 10,
            "resume does not converge: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    kills
}

/// xorshift64: reproducible "random" kill points.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_and_resume_on_s3_reaches_the_bucket_of_an_uninterrupted_run() {
    let fx = fixture("kill", "", "archive");
    let p = fx.plan_value();
    let before = fx.listing();
    let snap = fx.s3.snapshot(&fx.bucket);
    let template = fx.dir.join("state-template");
    copy_tree(&fx.state(), &template);
    let reset = || {
        fx.s3.reset(&fx.bucket, &snap);
        let _ = std::fs::remove_dir_all(fx.state());
        copy_tree(&template, &fx.state());
        assert_eq!(fx.listing(), before, "reset to a fresh copy");
    };
    let t = std::time::Instant::now();
    assert!(apply_cmd(&fx, false, None).status().unwrap().success());
    let mut run_us = (t.elapsed().as_micros() as u64).max(1000);
    let golden = fx.listing();
    assert_eq!(
        golden,
        expected_after(&fx, &p, &before),
        "uninterrupted run"
    );
    // Crash points at every mutation of the run (copy, delete), each with a second crash
    // at a random point of the resume.
    let moved = removed(&p).len() as u64;
    let mutations = 2 * moved;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut kills = 0u32;
    for k in 1..=mutations {
        reset();
        let again = Some(1 + rng.next() % mutations);
        kills += resume_to_end(&fx, apply_cmd(&fx, false, Some(k)), again);
        assert_eq!(fx.listing(), golden, "abort after {k}, then {again:?}");
    }
    // Real SIGKILLs at random instants of a run (also during the index refresh and before
    // the journal exists), until at least 50 kill points in all.
    let mut i = 0;
    while kills < 50 || i < 15 {
        i += 1;
        assert!(i < 200, "only {kills} kill points after {i} runs");
        reset();
        let started = std::time::Instant::now();
        let mut child = apply_cmd(&fx, false, None).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % run_us));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
        } else {
            // The first (cold) run can be much slower than warm ones: a run that ended
            // before its kill instant shrinks the window to its own length, so kill
            // instants keep landing inside runs on a fast machine too.
            run_us = run_us.min((started.elapsed().as_micros() as u64).max(1000));
        }
        if !child.wait().unwrap().success() {
            kills += 1;
            let cmd = apply_cmd(&fx, has_journal(&fx), None);
            resume_to_end(&fx, cmd, None);
        }
        assert_eq!(fx.listing(), golden, "SIGKILL run {i}");
    }
    eprintln!(
        "kill-and-resume on S3: {kills} kill points, {i} SIGKILL runs, {:.0}s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn apply_through_the_fault_proxy_completes_with_the_clean_runs_bucket_and_reports_the_rate() {
    let clean = fixture("clean", "", "archive");
    clean.apply(&["--now", &T0.to_string()]);
    let proxy = FaultProxy::start(
        &s3_endpoint(),
        FaultConfig {
            slow_down: 0.08,
            internal_error: 0.04,
            reset: 0.03,
            lost_answer: 0.03,
            seed: 7,
            max_requests: 10_000,
            lifetime: Duration::from_secs(240),
            ..Default::default()
        },
    );
    let fx = fixture_at("faulty", "", "archive", &proxy.url());
    let r = fx.apply(&["--now", &T0.to_string()]);
    let faults = proxy.stats.faults();
    drop(proxy);
    assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(
        fx.listing(),
        clean.listing(),
        "same end state as the clean run"
    );
    let t = &r["throttle"];
    eprintln!(
        "apply through the fault proxy ({faults} faults injected): {} store operations at {:.1}/s achieved, {} retries ({} throttled, {} transient), allowed rate lowest {:.0}/s",
        t["succeeded"],
        t["operations_per_second"],
        t["retries"],
        t["throttled"],
        t["transient"],
        t["rate_lowest"]
    );
    assert!(faults > 0, "faults were injected");
    assert!(t["succeeded"].as_u64().unwrap() > 0, "{r}");
    assert!(t["operations_per_second"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(t["failed"], 0, "{r}");
    assert!(
        t["throttled"].as_u64().unwrap() + t["transient"].as_u64().unwrap() > 0,
        "the store saw the faults: {r}"
    );
    // The cache is sound after the apply, read directly.
    let st = fx.dir.join("verify-state");
    let url = s3_url(&fx.bucket, "", &s3_endpoint());
    let out = narward(&st, &["verify", "--json", "--cache", &url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Bug: the bucket check before acting was made by the bare S3 store (one attempt, no
/// retries), so a single `500` or `503 SlowDown` on HeadBucket failed apply, resume,
/// finalize and recover with exit 2.
#[test]
fn a_bucket_check_answered_500_is_retried_not_fatal() {
    let fx = fixture("check", "", "archive");
    let proxy = FaultProxy::start(
        &s3_endpoint(),
        FaultConfig {
            fail_nth: vec![1, 2],
            lifetime: Duration::from_secs(60),
            ..Default::default()
        },
    );
    let kept = fx
        .plan_value()
        .paths
        .iter()
        .find(|p| p.decision == Decision::Keep)
        .unwrap()
        .path
        .clone();
    let url = s3_url(&fx.bucket, "", &proxy.url());
    let st = fx.dir.join("state-check");
    let out = narward(&st, &["recover", &kept, "--cache", &url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.stats.get(&proxy.stats.internal_error), 2);
}

impl S3 {
    fn last_modified(&self, bucket: &str, key: &str) -> (i64, u32) {
        let t = *self.head(bucket, key).last_modified().unwrap();
        (t.secs(), t.subsec_nanos())
    }

    fn restore(&self, bucket: &str, key: &str) {
        self.rt.block_on(async {
            self.c
                .restore_object()
                .bucket(bucket)
                .key(key)
                .restore_request(aws_sdk_s3::types::RestoreRequest::builder().days(1).build())
                .send()
                .await
                .unwrap();
        });
    }
}

fn quarantined(fx: &Fx) -> BTreeMap<String, Obj> {
    fx.listing()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&fx.full(QUARANTINE)))
        .collect()
}

#[test]
fn finalize_on_s3_respects_the_grace_window_and_recovers_what_became_reachable() {
    let fx = fixture("fin", "", "delete");
    let before = fx.listing();
    fx.apply(&["--now", &T0.to_string()]);
    let q0 = quarantined(&fx);
    assert!(!q0.is_empty());
    let fin = |now: i64| finalize_at(&fx, &now.to_string());
    let r = fin(T0 + 29 * DAY);
    assert_eq!(r["deleted"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(
        quarantined(&fx),
        q0,
        "nothing deleted inside the grace window"
    );
    // A new upload references the quarantined libfoo-1.1: finalize brings it back.
    let p = fx.plan_value();
    let (victim, vni, vnar) = path_keys(&p, "libfoo-1.1");
    // A narinfo uploaded since: a kept path's text under a new store path, referencing
    // the quarantined libfoo-1.1.
    let kept = p
        .paths
        .iter()
        .find(|x| x.decision == Decision::Keep && x.nar_key.is_some())
        .unwrap();
    let text = String::from_utf8(
        fx.s3
            .get(&fx.bucket, &format!("{}.narinfo", &kept.path[..32]))
            .unwrap(),
    )
    .unwrap();
    let new = "1111111111111111111111111111111a";
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("Sig:") && !l.starts_with("Deriver:"))
        .map(|l| {
            if l.starts_with("StorePath:") {
                format!("StorePath: /nix/store/{new}-new\n")
            } else if l.starts_with("References:") {
                format!("References: {}\n", &victim[11..])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fx.s3
        .put(&fx.bucket, &format!("{new}.narinfo"), text.as_bytes());
    let r = fin(T0 + 31 * DAY);
    assert!(
        r["recovered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["narinfo"] == vni.as_str()),
        "{r}"
    );
    let after = fx.listing();
    for k in [&vni, &vnar] {
        assert_eq!(after.get(k), before.get(k), "{k} back as it was");
    }
    assert!(!r["deleted"].as_array().unwrap().is_empty(), "{r}");
    assert!(quarantined(&fx).is_empty(), "the rest is deleted for good");
    let (code, v) = fx.verify();
    assert_eq!(code, Some(0), "{v}");
}

#[test]
fn recover_on_s3_brings_a_quarantined_path_back_nar_before_narinfo() {
    let fx = fixture("rec", "pre", "delete");
    let before = fx.listing();
    let bytes = fx.s3.snapshot(&fx.bucket);
    fx.apply(&["--now", &T0.to_string()]);
    let p = fx.plan_value();
    let (path, ni, nar) = path_keys(&p, "libfoo-1.1");
    assert!(!fx.listing().contains_key(&fx.full(&ni)));
    let r = json(&fx.ok(&["recover", &path, "--json"]));
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    let after = fx.listing();
    for k in [fx.full(&ni), fx.full(&nar)] {
        assert_eq!(after.get(&k), before.get(&k), "{k} back");
        assert_eq!(fx.s3.get(&fx.bucket, &k).as_ref(), Ok(&bytes[&k]));
    }
    assert!(
        fx.s3.last_modified(&fx.bucket, &fx.full(&nar))
            <= fx.s3.last_modified(&fx.bucket, &fx.full(&ni)),
        "the NAR is back before the narinfo"
    );
    assert!(
        !quarantined(&fx)
            .keys()
            .any(|k| k.ends_with(&ni) || k.ends_with(&nar)),
        "moved out of the quarantine"
    );
    let (code, v) = fx.verify();
    assert_eq!(code, Some(0), "{v}");
}

/// Bug: on S3 an archived NAR stays at its key in DEEP_ARCHIVE, so `recover` found it
/// "in the cache" and published the narinfo: a visible narinfo whose NAR answers
/// InvalidObjectState. Recover must refuse until the NAR is restored, and then move it
/// back to STANDARD before the narinfo.
#[test]
fn recover_of_an_archived_path_on_s3_refuses_while_its_nar_is_cold() {
    let fx = fixture("cold", "", "archive");
    fx.apply(&["--now", &T0.to_string()]);
    let p = fx.plan_value();
    let (path, ni, nar) = path_keys(&p, "libfoo-1.1");
    assert_eq!(fx.s3.head_class(&fx.bucket, &nar), "DEEP_ARCHIVE");
    let out = fx.run(&["recover", &path]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&nar) && err.contains("restore"), "{err}");
    assert!(!fx.listing().contains_key(&ni), "no narinfo published");
    assert!(fx.listing().contains_key(&format!("{ARCHIVE}{ni}")));
    let (code, v) = fx.verify();
    assert_eq!(code, Some(0), "{v}");
    // Restored (moto restores at once): recover moves the NAR back to STANDARD first.
    fx.s3.restore(&fx.bucket, &nar);
    fx.ok(&["recover", &path]);
    assert_eq!(fx.s3.head_class(&fx.bucket, &nar), "STANDARD");
    assert!(fx.listing().contains_key(&ni));
    assert!(!fx.listing().contains_key(&format!("{ARCHIVE}{ni}")));
    let (code, v) = fx.verify();
    assert_eq!(code, Some(0), "{v}");
}

/// In a versioned bucket apply quarantines by copy to the quarantine prefix, like in an
/// unversioned one; the delete of the source adds a delete marker and leaves the data as
/// a noncurrent version (freed only by a NoncurrentVersionExpiration rule, as the plan's
/// delete mode says). Recover and finalize work the same.
#[test]
fn apply_in_a_versioned_bucket_quarantines_by_copy_and_leaves_noncurrent_versions() {
    let s3 = S3::new();
    let bucket = bucket_name("ver");
    s3.enable_versioning(&bucket);
    let fx = Fx::uploaded(s3, bucket, "");
    fx.index_at("", &s3_endpoint());
    fx.plan_with(&policy(&fx.dir, "delete"));
    let show = fx.ok(&["plan", "show", &fx.plan()]);
    assert!(show.contains("CONDITIONAL"), "{show}");
    let p = fx.plan_value();
    let before = fx.listing();
    let r = fx.apply(&["--now", &T0.to_string()]);
    assert!(
        r["versioning_note"]
            .as_str()
            .is_some_and(|n| n.contains("NoncurrentVersionExpiration")),
        "apply states what frees the noncurrent versions: {r}"
    );
    assert_eq!(fx.listing(), expected_after(&fx, &p, &before));
    let versions = fx.s3.versions(&fx.bucket);
    let mut moved = 0;
    for o in removed(&p)
        .into_iter()
        .filter(|o| before.contains_key(&o.key))
    {
        let (noncurrent, marker) = versions.get(&o.key).cloned().unwrap_or_default();
        assert!(marker, "{}: a delete marker hides it", o.key);
        assert_eq!(
            noncurrent,
            vec![before[&o.key].etag.clone()],
            "{}: its data is a noncurrent version",
            o.key
        );
        moved += 1;
    }
    assert!(moved >= 3);
    let (code, v) = fx.verify();
    assert_eq!(code, Some(0), "{v}");
    // recover from the quarantine copy; finalize deletes the other copies (delete markers).
    let (path, ni, _) = path_keys(&p, "libfoo-1.1");
    fx.ok(&["recover", &path]);
    assert_eq!(fx.listing().get(&ni), before.get(&ni));
    let now = (T0 + 31 * DAY).to_string();
    fx.ok(&[
        "apply",
        "--finalize",
        "--confirm",
        &fx.bucket,
        "--now",
        &now,
    ]);
    assert!(quarantined(&fx).is_empty());
    let versions = fx.s3.versions(&fx.bucket);
    assert!(
        versions
            .iter()
            .any(|(k, (nc, m))| k.starts_with(QUARANTINE) && *m && !nc.is_empty()),
        "finalized quarantine copies stay as noncurrent versions: {versions:?}"
    );
}

#[test]
fn real_nix_substitutes_every_root_from_s3_after_apply_and_a_removed_path_after_recover() {
    if !nix_available() {
        return;
    }
    let mut roots: Vec<String> = Vec::new();
    for f in ["release-a.txt", "release-b.txt"] {
        roots.extend(path_set(&repo().join("examples/roots").join(f)));
    }
    for unreachable in ["delete", "archive"] {
        let fx = fixture("nix", "", unreachable);
        fx.apply(&[]);
        let out = nix_substitute(&fx, &roots);
        assert!(
            out.status.success(),
            "{unreachable}: roots: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (removed, _, nar) = path_keys(&fx.plan_value(), "libfoo-1.1");
        let out = nix_substitute(&fx, std::slice::from_ref(&removed));
        assert_eq!(out.status.code(), Some(1), "{unreachable}: not available");
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{unreachable}: Nix on a removed path: {err}");
        assert!(
            err.contains(&removed[11..43])
                && err.contains("no substituter")
                && !err.contains("NAR")
                && !err.contains("403"),
            "{unreachable}: a clean 'not available' naming the path, not a broken NAR: {err}"
        );
        if unreachable == "archive" {
            fx.s3.restore(&fx.bucket, &nar);
        }
        fx.ok(&["recover", &removed]);
        let out = nix_substitute(&fx, std::slice::from_ref(&removed));
        assert!(
            out.status.success(),
            "{unreachable}: after recover: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn apply_to_a_separate_archive_bucket_moves_nars_there_in_the_archive_class() {
    let s3 = S3::new();
    let abucket = bucket_name("arch");
    s3.rt.block_on(async {
        s3.c.create_bucket().bucket(&abucket).send().await.unwrap();
    });
    let fx = Fx::uploaded(s3, bucket_name("src"), "");
    fx.index_at("", &s3_endpoint());
    fx.plan_with(&archive_bucket_policy(&fx.dir, "archive", &abucket));
    let p = fx.plan_value();
    let before = fx.listing();
    let r = fx.apply(&["--now", &T0.to_string()]);
    assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{r}");
    let mut want_cache = before.clone();
    let mut want_archive = BTreeMap::new();
    for o in removed(&p) {
        let Some(mut obj) = before.get(&o.key).cloned() else {
            continue;
        };
        if o.decision == Decision::Delete {
            want_cache.remove(&o.key);
            want_cache.insert(format!("{QUARANTINE}{T0}/{}", o.key), obj);
        } else if hidden_kind(o) || o.transition_to.is_some() {
            want_cache.remove(&o.key);
            if let Some(c) = &o.transition_to {
                obj.class = c.clone();
            }
            want_archive.insert(format!("{ARCHIVE}{}", o.key), obj);
        }
    }
    assert!(want_archive.values().any(|o| o.class == "DEEP_ARCHIVE"));
    assert_eq!(fx.listing(), want_cache);
    assert_eq!(fx.s3.listing(&abucket), want_archive);
    let (code, v) = fx.verify();
    assert_eq!(code, Some(0), "{v}");
}

impl S3 {
    /// Upload `bytes` at `key` as a one-part multipart upload (ETag `<md5 of md5s>-1`, as
    /// S3 gives objects uploaded in parts).
    fn put_multipart(&self, bucket: &str, key: &str, bytes: &[u8]) {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        self.rt.block_on(async {
            let up = self
                .c
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            let id = up.upload_id().unwrap();
            let part = self
                .c
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(1)
                .body(bytes.to_vec().into())
                .send()
                .await
                .unwrap();
            let done = CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                )
                .build();
            // moto answers with an XML root the SDK does not parse; the HEAD below checks.
            let _ = self
                .c
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .multipart_upload(done)
                .send()
                .await;
        });
        let l = self.listing(bucket);
        assert!(l[key].etag.ends_with("-1\""), "{:?}", l[key]);
    }
}

/// A bucket whose NARs were uploaded in parts, indexed and planned with `unreachable`;
/// then, for every mutation point of the apply, a crash there and a resume: the resume
/// reports nothing skipped and the bucket equals the one of an uninterrupted run.
fn resume_after_every_mutation_with_nars_uploaded_in_parts(tag: &str, unreachable: &str) {
    let fx = Fx::uploaded(S3::new(), bucket_name(tag), "");
    let snap = fx.s3.snapshot(&fx.bucket);
    let reset = || {
        for key in fx.listing().into_keys() {
            fx.s3.rt.block_on(async {
                fx.s3
                    .c
                    .delete_object()
                    .bucket(&fx.bucket)
                    .key(key)
                    .send()
                    .await
                    .unwrap();
            });
        }
        for (key, bytes) in &snap {
            if key.starts_with("nar/") {
                fx.s3.put_multipart(&fx.bucket, key, bytes);
            } else {
                fx.s3.put(&fx.bucket, key, bytes);
            }
        }
    };
    reset();
    fx.index_at("", &s3_endpoint());
    fx.plan_with(&policy(&fx.dir, unreachable));
    let before = fx.listing();
    let template = fx.dir.join("state-template");
    copy_tree(&fx.state(), &template);
    let restart = || {
        reset();
        assert_eq!(fx.listing(), before);
        let _ = std::fs::remove_dir_all(fx.state());
        copy_tree(&template, &fx.state());
    };
    assert!(apply_cmd(&fx, false, None).status().unwrap().success());
    let golden = fx.listing();
    let p = fx.plan_value();
    assert!(
        removed(&p)
            .iter()
            .any(|o| o.category == Category::Nar && before[&o.key].etag.ends_with("-1\"")),
        "the plan moves NARs uploaded in parts"
    );
    for k in 1..=2 * removed(&p).len() as u64 {
        restart();
        if apply_cmd(&fx, false, Some(k)).status().unwrap().success() {
            continue;
        }
        let out = fx.run(&["apply", "--resume", "--json"]);
        let r = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(0), "abort after {k}: {r}");
        assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{r}");
        assert_eq!(fx.listing(), golden, "abort after {k}");
    }
}

/// Bug: S3 gives a server-side copy an ETag of its own (the MD5 of the bytes), not the
/// multipart ETag (`…-N`) of an object uploaded in parts. A NAR archived in place has
/// its new ETag at once; a run killed before the batch was journaled done resumed into a
/// copy conditional on the plan's ETag, which failed: the NAR was reported "changed since
/// the plan" (exit 1) although apply itself had changed it.
#[test]
fn resumed_in_place_archive_of_a_nar_uploaded_in_parts_is_not_reported_changed() {
    resume_after_every_mutation_with_nars_uploaded_in_parts("mpu-arch", "archive");
}

/// Bug: the same ETag difference between a copy and a source uploaded in parts made a
/// resumed quarantine step find "the destination exists with other content": the NAR
/// was skipped and left in the cache beside its quarantine copy, unlike an uninterrupted
/// run. Copies of such sources now record the source's ETag in the copy's metadata.
#[test]
fn resumed_quarantine_of_a_nar_uploaded_in_parts_matches_an_uninterrupted_run() {
    resume_after_every_mutation_with_nars_uploaded_in_parts("mpu-del", "delete");
}

/// Whether the dry run's requests delete `key`: a single `DELETE cache:KEY`, or a
/// `DELETE-OBJECTS cache: N keys: K1 K2 …` batch naming it (content-addressed NARs).
fn deleted_in(reqs: &[&str], key: &str) -> bool {
    reqs.iter().any(|q| {
        *q == format!("DELETE cache:{key}")
            || q.strip_prefix("DELETE-OBJECTS cache: ")
                .and_then(|r| r.split_once(" keys: "))
                .is_some_and(|(_, ks)| ks.split(' ').any(|k| k == key))
    })
}

impl S3 {
    /// Put `n` small objects under `prefix` (concurrently): their keys.
    fn put_many(&self, bucket: &str, prefix: &str, n: usize) -> Vec<String> {
        let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:05}.nar")).collect();
        self.rt.block_on(async {
            let puts = keys.iter().map(|k| {
                self.c
                    .put_object()
                    .bucket(bucket)
                    .key(k)
                    .body(k.as_bytes().to_vec().into())
                    .send()
            });
            for r in futures::future::join_all(puts).await {
                r.unwrap();
            }
        });
        keys
    }
}

/// A finalize of more than 1,000 quarantined objects sends several DeleteObjects
/// requests (counted at the proxy), and one failed (500) request is retried: the end
/// state is an empty quarantine and the untouched cache, each object counted once.
#[test]
fn finalize_on_s3_of_more_than_1000_quarantined_objects_uses_several_delete_objects_requests() {
    let proxy = FaultProxy::start(
        &s3_endpoint(),
        FaultConfig {
            lifetime: Duration::from_secs(240),
            ..Default::default()
        },
    );
    let fx = fixture_at("finb", "", "delete", &proxy.url());
    fx.apply(&["--now", &T0.to_string()]);
    let old = format!("{}{}/nar/", fx.full(QUARANTINE), T0 - DAY);
    fx.s3.put_many(&fx.bucket, &old, 1100);
    let q0 = quarantined(&fx);
    assert!(q0.len() > 1100);
    let cache0: BTreeMap<String, Obj> = fx
        .listing()
        .into_iter()
        .filter(|(k, _)| !k.starts_with(&fx.full(QUARANTINE)))
        .collect();
    let seen = proxy.request_lines().len();
    let now = (T0 + 31 * DAY).to_string();
    let r = finalize_at(&fx, &now);
    let deletes: Vec<String> = proxy.request_lines()[seen..]
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("?delete"))
        .cloned()
        .collect();
    assert!(deletes.len() >= 2, "{deletes:?}");
    assert_eq!(r["delete_requests"].as_u64().unwrap(), deletes.len() as u64);
    let deleted = r["deleted"].as_array().unwrap();
    assert_eq!(deleted.len(), q0.len(), "each object counted once");
    assert!(
        r["failed"].as_array().unwrap().is_empty(),
        "{}",
        r["failed"]
    );
    assert!(quarantined(&fx).is_empty());
    assert_eq!(fx.listing(), cache0, "the cache and archive as before");
}

/// Per-key failures of a DeleteObjects batch on S3 (injected per key by the Faulty
/// wrapper around the real S3 store): a key failing for good is reported, stays in the
/// bucket and is never counted as deleted; transient ones are retried until deleted.
#[test]
fn per_key_failures_of_a_delete_objects_batch_on_s3_are_retried_or_reported_never_lost() {
    use narward::apply::batch_delete::delete_keys;
    use narward::apply::exec::ExecOptions;
    use narward::cache::s3_store::{S3Layout, S3Store};
    use narward::cache::store::{Area, StoreErrorKind};
    use narward::cache::store_wrap::{FaultConfig as StoreFaults, Faulty};
    let s3 = S3::new();
    let bucket = bucket_name("perkey");
    s3.rt
        .block_on(async { s3.c.create_bucket().bucket(&bucket).send().await.unwrap() });
    let keys: Vec<String> = s3
        .put_many(&bucket, QUARANTINE, 1200)
        .into_iter()
        .map(|k| k[QUARANTINE.len()..].to_string())
        .collect();
    let o = S3Options {
        bucket: bucket.clone(),
        endpoint: Some(s3_endpoint()),
        region: Some("us-east-1".into()),
        ..Default::default()
    };
    let eo = ExecOptions {
        backoff: Duration::from_millis(1),
        ..ExecOptions::default()
    };
    let run = |kinds: Vec<StoreErrorKind>, keys: &[String]| {
        s3.rt.block_on(async {
            let layout = S3Layout::new(&o, None, ARCHIVE, QUARANTINE);
            let store = S3Store::open(&o, layout, 1).await.unwrap();
            let cfg = StoreFaults {
                fraction: 0.05,
                kinds,
                after_effect: 0.3,
                seed: 9,
                reads: false,
            };
            let f = Faulty::new(store, cfg);
            let d = delete_keys(&f, Area::Quarantine, keys, &eo, &mut |_| Ok(()))
                .await
                .unwrap();
            (d, f.injected())
        })
    };
    let (d, injected) = run(vec![StoreErrorKind::Other], &keys);
    assert!(injected > 0 && !d.failed.is_empty());
    assert_eq!(d.deleted.len() + d.failed.len(), keys.len());
    let left: Vec<String> = s3
        .listing(&bucket)
        .into_keys()
        .map(|k| k[QUARANTINE.len()..].to_string())
        .collect();
    for k in &d.deleted {
        assert!(!left.contains(k), "{k} counted as deleted but still there");
    }
    // A failure whose effect happened (answer lost) is gone although reported; every
    // other reported key is still there: nothing is counted as deleted that is not.
    for f in &d.failed {
        assert!(!d.deleted.contains(&f.key));
    }
    assert!(left.len() <= d.failed.len());
    // The reported keys, again with only transient per-key faults: all deleted.
    let again: Vec<String> = d.failed.iter().map(|f| f.key.clone()).collect();
    let (d2, _) = run(
        vec![StoreErrorKind::Transient, StoreErrorKind::Throttled],
        &again,
    );
    assert!(d2.failed.is_empty(), "{:?}", d2.failed);
    assert_eq!(d2.deleted.len(), again.len());
    assert!(s3.listing(&bucket).is_empty());
}
