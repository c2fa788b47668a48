//! `narward apply`, `recover` and `apply --finalize` on a copy of the bundled file://
//! example cache, through the real binary.

mod common;
use common::file_fx::*;
use common::*;
use std::collections::BTreeMap;

use std::process::Command;

fn removed(p: &narward::plan::Plan) -> Vec<&narward::plan::ObjectDecision> {
    p.objects
        .iter()
        .filter(|o| o.decision != narward::plan::Decision::Keep)
        .collect()
}

fn moves(o: &narward::plan::ObjectDecision) -> bool {
    use narward_formats::keys::Category;
    matches!(o.category, Category::Narinfo | Category::Listing)
        || o.decision == narward::plan::Decision::Delete
        || o.transition_to.is_some()
}

fn apply_ok(fx: &Fx, extra: &[&str]) -> serde_json::Value {
    let plan = fx.plan();
    let mut args = vec!["apply", plan.as_str(), "--confirm", "cache", "--json"];
    args.extend_from_slice(extra);
    json(&fx.ok(&args))
}

/// `narward apply --finalize --json` as if at unix time `now`; its report.
fn finalize_at(fx: &Fx, now: &str) -> serde_json::Value {
    json(&fx.ok(&[
        "apply",
        "--finalize",
        "--confirm",
        "cache",
        "--json",
        "--now",
        now,
    ]))
}

#[test]
fn apply_moves_exactly_the_planned_objects_and_keeps_narinfos_byte_for_byte() {
    let fx = fixture("archive");
    let before = tree(&fx.cache());
    let p = plan_of(&fx);
    let r = apply_ok(&fx, &["--now", &T0.to_string()]);
    assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{r}");
    let after = tree(&fx.cache());
    let (archive, quarantine) = (tree(&fx.archive()), tree(&fx.quarantine()));
    let mut expect_cache = before.clone();
    let mut expect_archive = BTreeMap::new();
    let mut expect_quarantine = BTreeMap::new();
    for o in removed(&p).into_iter().filter(|o| moves(o)) {
        let bytes = expect_cache.remove(&o.key).expect("planned object exists");
        if o.decision == narward::plan::Decision::Archive {
            expect_archive.insert(o.key.clone(), bytes);
        } else {
            expect_quarantine.insert(format!("{T0}/{}", o.key), bytes);
        }
    }
    assert!(
        expect_archive.keys().any(|k| k.starts_with("nar/")),
        "the test plan archives NARs"
    );
    assert!(expect_archive.keys().any(|k| k.ends_with(".narinfo")));
    assert!(!expect_quarantine.is_empty(), "the orphan NAR is deleted");
    assert_eq!(after, expect_cache);
    assert_eq!(archive, expect_archive);
    assert_eq!(quarantine, expect_quarantine);
}

#[test]
fn a_nar_changed_after_the_plan_is_skipped_and_reported() {
    let fx = fixture("archive");
    let p = plan_of(&fx);
    let nar = removed(&p)
        .into_iter()
        .find(|o| o.key.starts_with("nar/") && o.transition_to.is_some())
        .unwrap()
        .key
        .clone();
    let f = fx.cache().join(&nar);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.push(0);
    std::fs::write(&f, &bytes).unwrap();
    let plan = fx.plan();
    let out = fx.run(&["apply", &plan, "--confirm", "cache", "--json"]);
    assert_eq!(out.status.code(), Some(1), "skips exit 1");
    let r = json(&String::from_utf8_lossy(&out.stdout));
    let skipped = r["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["key"] == nar.as_str() && s["reason"].as_str().unwrap().contains("changed")),
        "{r}"
    );
    assert_eq!(
        std::fs::read(&f).unwrap(),
        bytes,
        "changed NAR left in place"
    );
    assert!(!fx.archive().join(&nar).exists());
}

#[test]
fn a_narinfo_uploaded_after_the_plan_keeps_the_removed_path_it_references() {
    let fx = fixture("delete");
    let p = plan_of(&fx);
    let victim = p
        .paths
        .iter()
        .find(|x| x.path.contains("libfoo-1.1"))
        .unwrap();
    assert_eq!(victim.decision, narward::plan::Decision::Delete);
    let vhash = &victim.path[..32];
    let kept_nar = p
        .objects
        .iter()
        .find(|o| o.key.starts_with("nar/") && o.decision == narward::plan::Decision::Keep)
        .unwrap()
        .key
        .clone();
    let new = "1111111111111111111111111111111a";
    std::fs::write(
        fx.cache().join(format!("{new}.narinfo")),
        format!(
            "StorePath: /nix/store/{new}-new-upload\nURL: {kept_nar}\nCompression: xz\nNarSize: 1\nReferences: {}\n",
            victim.path
        ),
    )
    .unwrap();
    let plan = fx.plan();
    let out = fx.run(&["apply", &plan, "--confirm", "cache", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let ni = fx.cache().join(format!("{vhash}.narinfo"));
    assert!(ni.exists(), "referenced path's narinfo kept");
    let nar = victim.nar_key.as_deref().unwrap();
    assert!(fx.cache().join(nar).exists(), "its NAR kept");
    // Its own reference (libbase, kept anyway) is untouched; app-one-2.9 (unreferenced) is gone.
    let other = p
        .paths
        .iter()
        .find(|x| x.path.contains("app-one-2.9"))
        .unwrap();
    assert!(
        !fx.cache()
            .join(format!("{}.narinfo", &other.path[..32]))
            .exists()
    );
}

#[test]
fn confirm_with_a_wrong_name_refuses_and_changes_nothing() {
    let fx = fixture("delete");
    let before = tree(&fx.cache());
    let plan = fx.plan();
    for args in [
        vec!["apply", plan.as_str(), "--confirm", "cach"],
        vec!["apply", plan.as_str()],
    ] {
        let out = fx.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--confirm"));
    }
    assert_eq!(tree(&fx.cache()), before);
}

#[test]
fn dry_run_changes_nothing_and_lists_every_request() {
    let fx = fixture("delete");
    let before = tree(&fx.cache());
    let p = plan_of(&fx);
    let plan = fx.plan();
    let r = json(&fx.ok(&["apply", &plan, "--dry-run", "--json"]));
    assert_eq!(tree(&fx.cache()), before);
    assert!(!fx.quarantine().exists() || tree(&fx.quarantine()).is_empty());
    let reqs: Vec<&str> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for o in removed(&p).into_iter().filter(|o| moves(o)) {
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
    }
    assert!(r["cost"]["one_time"].is_object(), "{r}");
    assert_eq!(r["phases"]["hide"]["objects"], 3, "{r}");
    // A real apply afterwards is not blocked by the dry run.
    apply_ok(&fx, &[]);
}

#[test]
fn finalize_respects_the_grace_window_and_recovers_what_became_reachable() {
    let fx = fixture("delete");
    apply_ok(&fx, &["--now", &T0.to_string()]);
    let q0 = tree(&fx.quarantine());
    assert!(!q0.is_empty());
    let fin = |now: i64| finalize_at(&fx, &now.to_string());
    let r = fin(T0 + 29 * DAY);
    assert_eq!(r["deleted"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(tree(&fx.quarantine()), q0);
    // A new upload references the quarantined libfoo-1.1: finalize brings it back.
    let p = plan_of(&fx);
    let victim = p
        .paths
        .iter()
        .find(|x| x.path.contains("libfoo-1.1"))
        .unwrap();
    let vni = format!("{}.narinfo", &victim.path[..32]);
    let new = "1111111111111111111111111111111a";
    std::fs::write(
        fx.cache().join(format!("{new}.narinfo")),
        format!(
            "StorePath: /nix/store/{new}-new\nURL: nar/none.nar.xz\nReferences: {}\n",
            victim.path
        ),
    )
    .unwrap();
    let r = fin(T0 + 31 * DAY);
    assert!(
        r["recovered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["narinfo"] == vni.as_str()),
        "{r}"
    );
    assert!(fx.cache().join(&vni).exists());
    assert!(fx.cache().join(victim.nar_key.as_deref().unwrap()).exists());
    assert!(!r["deleted"].as_array().unwrap().is_empty());
    assert!(tree(&fx.quarantine()).is_empty(), "the rest is deleted");
}

#[test]
fn finalize_without_grace_needs_unsafe_no_grace_and_confirm_and_is_loud() {
    let fx = fixture("delete");
    apply_ok(&fx, &["--now", &T0.to_string()]);
    let q0 = tree(&fx.quarantine());
    let now = (T0 + 1).to_string();
    for args in [
        vec![
            "apply",
            "--finalize",
            "--grace",
            "0",
            "--confirm",
            "cache",
            "--now",
            &now,
        ],
        vec!["apply", "--finalize", "--unsafe-no-grace", "--now", &now],
    ] {
        let out = fx.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    assert_eq!(tree(&fx.quarantine()), q0);
    let out = fx.run(&[
        "apply",
        "--finalize",
        "--unsafe-no-grace",
        "--confirm",
        "cache",
        "--now",
        &now,
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));
    assert!(tree(&fx.quarantine()).is_empty());
}

#[test]
fn recover_brings_a_quarantined_path_and_its_closure_back() {
    let fx = fixture("delete");
    let before = tree(&fx.cache());
    apply_ok(&fx, &["--now", &T0.to_string()]);
    let p = plan_of(&fx);
    let app = p
        .paths
        .iter()
        .find(|x| x.path.contains("libfoo-1.1"))
        .unwrap();
    let r = json(&fx.ok(&["recover", &format!("/nix/store/{}", app.path), "--json"]));
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert!(
        fx.cache()
            .join(format!("{}.narinfo", &app.path[..32]))
            .exists()
    );
    let nar = app.nar_key.as_deref().unwrap();
    assert_eq!(
        std::fs::read(fx.cache().join(nar)).unwrap(),
        before[nar],
        "NAR back byte for byte"
    );
    // --closure on a path without removed references brings just that path back.
    let top = p
        .paths
        .iter()
        .find(|x| x.path.contains("tmp-experiment"))
        .unwrap();
    fx.ok(&["recover", &top.path[..32], "--closure"]);
    assert!(
        fx.cache()
            .join(format!("{}.narinfo", &top.path[..32]))
            .exists()
    );
    let out = fx.run(&["recover", "00000000000000000000000000000000"]);
    assert_eq!(out.status.code(), Some(2));
    // app-one-2.9's NAR is missing in the example: its narinfo is never put back.
    let broken = p
        .paths
        .iter()
        .find(|x| x.path.contains("app-one-2.9"))
        .unwrap();
    let out = fx.run(&["recover", &broken.path, "--closure"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot recover"));
    assert!(
        !fx.cache()
            .join(format!("{}.narinfo", &broken.path[..32]))
            .exists()
    );
}

/// The final cache + archive + quarantine of `fx`: area/name → SHA-256 of the bytes.
fn final_trees(fx: &Fx) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut m = BTreeMap::new();
    for (area, root) in [
        ("cache", fx.cache()),
        ("archive", fx.archive()),
        ("quarantine", fx.quarantine()),
    ] {
        for (k, v) in tree(&root) {
            m.insert(format!("{area}/{k}"), hex::encode(sha2::Sha256::digest(&v)));
        }
    }
    m
}

fn apply_cmd(fx: &Fx, resume: bool, abort_after: Option<u64>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_narward"));
    let plan = fx.plan();
    if resume {
        c.args(["apply", "--resume"]);
    } else {
        c.args([
            "apply",
            &plan,
            "--confirm",
            "cache",
            "--now",
            &T0.to_string(),
        ]);
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
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if let Some(n) = abort_after {
        c.env("NARWARD_APPLY_ABORT_AFTER", n.to_string());
    }
    c
}

/// Resume until an apply finishes; returns how many runs were killed on the way.
fn resume_to_end(fx: &Fx, mut first: Command, abort_on_resume: Option<u64>) -> u32 {
    let mut kills = 0;
    let st = first.status().unwrap();
    let mut done = st.success() || st.code() == Some(1);
    kills += u32::from(!done);
    let mut abort = abort_on_resume;
    while !done {
        let out = apply_cmd(fx, true, abort.take())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let st = out.status;
        done = st.success() || st.code() == Some(1);
        kills += u32::from(!done);
        assert!(
            kills < 10,
            "resume does not converge: {st}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    kills
}

#[test]
fn kill_and_resume_reaches_the_state_of_an_uninterrupted_run() {
    let golden_fx = fixture("archive");
    let template = golden_fx.dir.join("template");
    std::fs::create_dir(&template).unwrap();
    for d in ["cache", "state", "plan"] {
        copy_preserving(&golden_fx.dir.join(d), &template.join(d));
    }
    let reset = |fx: &Fx| {
        for d in [
            "cache",
            "state",
            "plan",
            "cache.narward-archive",
            "cache.narward-quarantine",
        ] {
            let _ = std::fs::remove_dir_all(fx.dir.join(d));
            if template.join(d).exists() {
                copy_preserving(&template.join(d), &fx.dir.join(d));
            }
        }
    };
    let t = std::time::Instant::now();
    let st = apply_cmd(&golden_fx, false, None).status().unwrap();
    let mut run_us = (t.elapsed().as_micros() as u64).max(1000);
    assert!(st.success());
    let golden = final_trees(&golden_fx);
    // Mutations of the uninterrupted run: every point can be a crash point.
    let moved = golden.keys().filter(|k| !k.starts_with("cache/")).count();
    let mutations = 2 * moved as u64;
    let mut kills = 0u32;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for k in 1..=mutations {
        reset(&golden_fx);
        let again = Some(1 + next() % mutations);
        kills += resume_to_end(&golden_fx, apply_cmd(&golden_fx, false, Some(k)), again);
        assert_eq!(
            final_trees(&golden_fx),
            golden,
            "abort after {k}, then {again:?}"
        );
    }
    // Real SIGKILLs at random instants of a run, until at least 50 kill points in all.
    let mut i = 0;
    while kills < 50 || i < 20 {
        i += 1;
        assert!(i < 300, "only {kills} kill points after {i} runs");
        reset(&golden_fx);
        let started = std::time::Instant::now();
        let mut child = apply_cmd(&golden_fx, false, None).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_micros(next() % run_us));
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
        } else {
            // A run that ended before its kill instant shrinks the window to its own
            // length (the first, cold run can be much slower than warm ones).
            run_us = run_us.min((started.elapsed().as_micros() as u64).max(1000));
        }
        let st = child.wait().unwrap();
        if !st.success() {
            kills += 1;
            // A kill before the journal exists leaves nothing to resume: start again.
            let j = std::fs::read_dir(golden_fx.state().join("apply"))
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .any(|e| e.path().join("journal").exists())
                })
                .unwrap_or(false);
            let cmd = apply_cmd(&golden_fx, j, None);
            resume_to_end(&golden_fx, cmd, None);
        }
        assert_eq!(final_trees(&golden_fx), golden, "SIGKILL run {i}");
    }
    assert!(kills >= 50, "only {kills} kill points");
}

/// `scripts/nix-substitute-check.sh` against the file:// cache of `fx`.
fn nix_substitute(fx: &Fx, paths: &[String]) -> std::process::Output {
    let key = std::fs::read_to_string(repo().join("examples/trusted-key.txt")).unwrap();
    Command::new("bash")
        .arg(repo().join("scripts/nix-substitute-check.sh"))
        .arg(format!("file://{}", fx.cache().display()))
        .arg(key.trim())
        .args(paths)
        .output()
        .unwrap()
}

#[test]
fn real_nix_substitutes_every_root_after_apply_and_a_removed_path_after_recover() {
    if !nix_available() {
        return;
    }
    let fx = fixture("delete");
    apply_ok(&fx, &[]);
    let mut roots: Vec<String> = Vec::new();
    for f in ["release-a.txt", "release-b.txt"] {
        roots.extend(path_set(&repo().join("examples/roots").join(f)));
    }
    let out = nix_substitute(&fx, &roots);
    assert!(
        out.status.success(),
        "roots (signatures required): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = "/nix/store/k36ahwak8pqilvk9a22a9c6m9piays98-libfoo-1.1".to_string();
    let out = nix_substitute(&fx, std::slice::from_ref(&removed));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a removed path is not available"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("k36ahwak8pqilvk9a22a9c6m9piays98"),
        "Nix names the missing path: {err}"
    );
    fx.ok(&["recover", &removed]);
    let out = nix_substitute(&fx, &[removed]);
    assert!(
        out.status.success(),
        "after recover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn resume_from_a_damaged_journal_is_refused_naming_it() {
    let fx = fixture("archive");
    let st = apply_cmd(&fx, false, Some(3)).status().unwrap();
    assert!(!st.success(), "aborted");
    let dir = std::fs::read_dir(fx.state().join("apply"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("journal").exists())
        .unwrap();
    let j = dir.join("journal");
    let text = std::fs::read_to_string(&j).unwrap();
    assert!(text.lines().count() >= 3, "{text}");
    std::fs::write(
        &j,
        text.replacen("\"t\":\"checked\"", "\"t\":\"chequed\"", 1),
    )
    .unwrap();
    let before = final_trees(&fx);
    let out = fx.run(&["apply", "--resume"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&j.display().to_string()) && err.contains("line 2"),
        "{err}"
    );
    assert_eq!(
        final_trees(&fx),
        before,
        "nothing done from a damaged journal"
    );
}

#[test]
fn finalize_and_recover_use_the_areas_the_apply_used() {
    let fx = fixture("delete");
    let other = fx.dir.join("elsewhere/q");
    let q = other.display().to_string();
    apply_ok(&fx, &["--now", &T0.to_string(), "--quarantine-dir", &q]);
    assert!(!tree(&other).is_empty());
    let p = plan_of(&fx);
    let lib = p
        .paths
        .iter()
        .find(|x| x.path.contains("libfoo-1.1"))
        .unwrap();
    fx.ok(&["recover", &lib.path]);
    assert!(
        fx.cache()
            .join(format!("{}.narinfo", &lib.path[..32]))
            .exists()
    );
    let now = (T0 + 31 * DAY).to_string();
    let r = finalize_at(&fx, &now);
    assert!(!r["deleted"].as_array().unwrap().is_empty(), "{r}");
    assert!(tree(&other).is_empty());
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

#[test]
fn finalize_of_more_than_1000_quarantined_objects_uses_several_journaled_delete_batches() {
    let fx = fixture("delete");
    apply_ok(&fx, &["--now", &T0.to_string()]);
    let cache0 = tree(&fx.cache());
    // 1,500 more quarantined objects of an earlier apply (only narward writes there).
    let old = fx.quarantine().join((T0 - DAY).to_string()).join("nar");
    std::fs::create_dir_all(&old).unwrap();
    for i in 0..1500 {
        std::fs::write(old.join(format!("{i:05}.nar")), i.to_string()).unwrap();
    }
    let q0 = tree(&fx.quarantine());
    assert!(q0.len() > 1500);
    let now = (T0 + 31 * DAY).to_string();
    let r = finalize_at(&fx, &now);
    assert!(
        r["delete_requests"].as_u64().unwrap() >= 2,
        "{}",
        r["delete_requests"]
    );
    assert_eq!(r["deleted"].as_array().unwrap().len(), q0.len());
    assert!(
        r["failed"].as_array().unwrap().is_empty(),
        "{}",
        r["failed"]
    );
    // The same end state as deleting one by one: the quarantine is empty, the cache as
    // it was.
    assert!(tree(&fx.quarantine()).is_empty());
    assert_eq!(tree(&fx.cache()), cache0);
    // Each batch was journaled (its keys) before its request, then the outcome.
    let j = std::fs::read_to_string(fx.state().join("apply/finalize.journal")).unwrap();
    let recs: Vec<serde_json::Value> = j
        .lines()
        .map(|l| serde_json::from_str(l.split_once(' ').unwrap().1).unwrap())
        .collect();
    let batches: Vec<&serde_json::Value> = recs.iter().filter(|x| x["t"] == "delete").collect();
    assert!(batches.len() >= 2);
    assert!(
        batches
            .iter()
            .all(|b| b["keys"].as_array().unwrap().len() <= 1000)
    );
    let journaled: usize = batches
        .iter()
        .map(|b| b["keys"].as_array().unwrap().len())
        .sum();
    assert_eq!(journaled, q0.len());
    assert_eq!(recs.last().unwrap()["t"], "deleted");
}
