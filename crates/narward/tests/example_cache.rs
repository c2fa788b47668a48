//! End-to-end on the bundled example cache (made by real Nix, see examples/README.md):
//! index, audit, paths, plan, why, diff, export — through the real binary.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn example() -> std::path::PathBuf {
    repo().join("examples")
}

fn index_example(state: &Path) {
    let url = format!("file://{}", example().join("cache").display());
    narward_ok(state, &["index", "--cache", &url]);
}

#[test]
fn index_agrees_with_nix_path_info() {
    let d = tempfile::tempdir().unwrap();
    index_example(d.path());
    let ours = json(&narward_ok(d.path(), &["paths"]));
    let nix = json(&std::fs::read_to_string(example().join("path-info.json")).unwrap());
    assert_eq!(normalize(&ours), normalize(&nix));
}

#[test]
fn audit_finds_the_planted_defects_and_fails() {
    let d = tempfile::tempdir().unwrap();
    index_example(d.path());
    let key = std::fs::read_to_string(example().join("trusted-key.txt")).unwrap();
    let out = narward(d.path(), &["audit", "--json", "--trusted-key", key.trim()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "integrity errors must fail the audit"
    );
    let r = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(r["signatures"]["valid"], 12);
    assert_eq!(r["signatures"]["unsigned"]["count"], 1);
    assert!(
        r["signatures"]["unsigned"]["examples"][0]
            .as_str()
            .unwrap()
            .contains("tmp-experiment-0.1")
    );
    assert_eq!(r["missing_nar"]["count"], 1);
    assert!(
        r["missing_nar"]["examples"][0]
            .as_str()
            .unwrap()
            .contains("app-one-2.9")
    );
    assert_eq!(r["orphan_nars"]["count"], 1);
    assert_eq!(r["closure_holes"]["count"], 0);
    assert_eq!(r["unparseable_narinfos"]["count"], 0);
    // A wrong key: everything is signed by an unknown key.
    let other = "other-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
    let r = json(&String::from_utf8_lossy(
        &narward(d.path(), &["audit", "--json", "--trusted-key", other]).stdout,
    ));
    assert_eq!(r["signatures"]["valid"], 0);
    assert_eq!(r["signatures"]["unknown_key"]["count"], 11);
}

/// Index the example into `dir` and plan it with examples/policy.toml; returns the plan.
fn plan_example(dir: &Path) -> std::path::PathBuf {
    index_example(dir);
    let plan = dir.join("plan");
    let policy = example().join("policy.toml");
    narward_ok(
        dir,
        &[
            "plan",
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    );
    plan
}

fn kept_and_removed(plan: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    // `why --json` on every path of the example is the public way to read decisions.
    let all: Vec<Value> = json(&std::fs::read_to_string(example().join("path-info.json")).unwrap())
        .as_array()
        .unwrap()
        .clone();
    let state = tempfile::tempdir().unwrap();
    let (mut kept, mut removed) = (BTreeSet::new(), BTreeSet::new());
    for p in all {
        let path = p["path"].as_str().unwrap();
        let w = json(&narward_ok(
            state.path(),
            &["why", "--json", "--plan", plan.to_str().unwrap(), path],
        ));
        if w["decision"] == "keep" {
            kept.insert(path.to_string());
        } else {
            removed.insert(path.to_string());
        }
    }
    (kept, removed)
}

#[test]
fn plan_keeps_exactly_the_nix_closures_of_the_roots() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_example(d.path());
    let (kept, removed) = kept_and_removed(&plan);
    let mut want = path_set(&example().join("closure-a.txt"));
    want.extend(path_set(&example().join("closure-b.txt")));
    assert_eq!(kept, want);
    assert_eq!(removed, path_set(&example().join("garbage.txt")));

    // Only release-a, no rules: kept = closure-a exactly.
    let p2 = d.path().join("a-only.toml");
    std::fs::write(
        &p2,
        format!(
            "[roots]\nfiles = [\"{}\"]\n[keep]\nmin_age_days = 0\n[actions]\nunreachable = \"delete\"\n",
            example().join("roots/release-a.txt").display()
        ),
    )
    .unwrap();
    let plan2 = d.path().join("plan-a");
    narward_ok(
        d.path(),
        &[
            "plan",
            "--policy",
            p2.to_str().unwrap(),
            "--out",
            plan2.to_str().unwrap(),
        ],
    );
    let (kept, _) = kept_and_removed(&plan2);
    assert_eq!(kept, path_set(&example().join("closure-a.txt")));

    // The diff between the two plans names what moved.
    let diff = json(&narward_ok(
        d.path(),
        &[
            "plan",
            "diff",
            "--json",
            plan.to_str().unwrap(),
            plan2.to_str().unwrap(),
        ],
    ));
    assert!(
        diff["paths_moved"]["keep->delete"]["count"]
            .as_u64()
            .unwrap()
            >= 4,
        "{diff}"
    );
    assert!(
        diff["paths_moved"]["archive->delete"]["count"]
            .as_u64()
            .unwrap()
            == 3,
        "{diff}"
    );
}

#[test]
fn why_explains_a_chain_and_a_removal() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_example(d.path());
    let w = json(&narward_ok(
        d.path(),
        &[
            "why",
            "--json",
            "--plan",
            plan.to_str().unwrap(),
            "cihbjbd97jhajp3a3i7bn78zlylxzhlw",
        ],
    ));
    let chain = w["chain"].as_array().unwrap();
    assert!(chain.len() >= 2, "{w}");
    assert!(
        chain[0]["reason"].as_str().unwrap().starts_with("root"),
        "{w}"
    );
    assert!(
        chain.last().unwrap()["path"]
            .as_str()
            .unwrap()
            .ends_with("libbase-2.38")
    );
    let w = json(&narward_ok(
        d.path(),
        &[
            "why",
            "--json",
            "--plan",
            plan.to_str().unwrap(),
            "/nix/store/k36ahwak8pqilvk9a22a9c6m9piays98-libfoo-1.1",
        ],
    ));
    assert_eq!(w["decision"], "archive");
    assert_eq!(w["reason"], "unreachable");
    assert_eq!(w["nearest_kept_referrer"], Value::Null);
    assert_eq!(
        w["referrers"][0]["path"].as_str().unwrap(),
        "27xrcg1gcw6gxjhk3v3mbgw4i0fk6siv-app-one-2.9"
    );
    let out = narward(
        d.path(),
        &[
            "why",
            "--plan",
            plan.to_str().unwrap(),
            "00000000000000000000000000000000",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the plan"));
}

#[test]
fn plans_are_immutable_and_tampering_is_detected() {
    let d = tempfile::tempdir().unwrap();
    index_example(d.path());
    let plan = d.path().join("plan");
    let policy = example().join("policy.toml");
    let args = [
        "plan",
        "--policy",
        policy.to_str().unwrap(),
        "--out",
        plan.to_str().unwrap(),
    ];
    narward_ok(d.path(), &args);
    let again = narward(d.path(), &args);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("immutable"));
    let show = json(&narward_ok(
        d.path(),
        &["plan", "show", "--json", plan.to_str().unwrap()],
    ));
    let header = if show.get("plan").is_some() {
        &show["plan"]
    } else {
        &show
    };
    assert_eq!(header["index_generation"], 1);
    assert_eq!(header["roots"]["missing"], 0);
    let f = plan.join("objects.bin.zst");
    let mut b = std::fs::read(&f).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    std::fs::write(&f, b).unwrap();
    let out = narward(d.path(), &["plan", "show", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"));
}

#[test]
fn incremental_index_fetches_only_what_changed() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    copy_tree(&example().join("cache"), &cache);
    let url = format!("file://{}", cache.display());
    let st = d.path().join("state");
    let m = json(&narward_ok(&st, &["index", "--json", "--cache", &url]));
    assert_eq!(m["last_update"]["fetched"], 13);
    let m = json(&narward_ok(&st, &["index", "--json"]));
    assert_eq!(m["generation"], 2);
    assert_eq!(m["last_update"]["fetched"], 0);
    assert_eq!(m["last_update"]["reused"], 13);
    // Change one narinfo (an unknown field is legal), delete another, add a broken one.
    let ni = cache.join("1c7lv6q6jxdin88da9cyhnvrh0mgxgf9.narinfo");
    let mut t = std::fs::read_to_string(&ni).unwrap();
    t.push_str("Extra: field\n");
    std::fs::write(&ni, t).unwrap();
    std::fs::remove_file(cache.join("k36ahwak8pqilvk9a22a9c6m9piays98.narinfo")).unwrap();
    std::fs::write(
        cache.join("00000000000000000000000000000000.narinfo"),
        "StorePath: nonsense\n",
    )
    .unwrap();
    let m = json(&narward_ok(&st, &["index", "--json"]));
    assert_eq!(m["last_update"]["fetched"], 2);
    assert_eq!(m["last_update"]["dropped"], 1);
    assert_eq!(m["last_update"]["reused"], 11);
    assert_eq!(m["unparseable"], 1);
    let a = json(&String::from_utf8_lossy(
        &narward(&st, &["audit", "--json"]).stdout,
    ));
    assert_eq!(a["unparseable_narinfos"]["count"], 1);
    assert!(
        a["unparseable_narinfos"]["examples"][0]
            .as_str()
            .unwrap()
            .starts_with("00000000000000000000000000000000.narinfo")
    );
    // libfoo-1.1's narinfo is gone: app-one-2.9 now has a hole.
    assert_eq!(a["closure_holes"]["count"], 1);
    // The unparseable narinfo is kept by any plan, whatever the policy.
    let p = d.path().join("p.toml");
    std::fs::write(
        &p,
        "[keep]\nmin_age_days = 0\n[actions]\nunreachable = \"delete\"\n",
    )
    .unwrap();
    let plan = d.path().join("plan");
    narward_ok(
        &st,
        &[
            "plan",
            "--allow-few-roots",
            "--policy",
            p.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    );
    let w = json(&narward_ok(
        &st,
        &[
            "why",
            "--json",
            "--plan",
            plan.to_str().unwrap(),
            "00000000000000000000000000000000.narinfo",
        ],
    ));
    assert_eq!(w["decision"], "keep", "{w}");
}

#[test]
fn min_age_protects_young_objects() {
    // The checkout's files are young: with the default min_age_days (7) nothing is removed.
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    copy_tree(&example().join("cache"), &cache);
    let st = d.path().join("state");
    narward_ok(&st, &["index", "--cache", cache.to_str().unwrap()]);
    let p = d.path().join("p.toml");
    std::fs::write(
        &p,
        "[actions]\nunreachable = \"delete\"\norphan_nars = \"delete\"\n",
    )
    .unwrap();
    let plan = d.path().join("plan");
    let h = json(&narward_ok(
        &st,
        &[
            "plan",
            "--json",
            "--allow-few-roots",
            "--policy",
            p.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    ));
    let h = if h.get("plan").is_some() {
        h["plan"].clone()
    } else {
        h
    };
    assert!(h["summary"]["objects"].get("delete").is_none(), "{h}");
    assert!(h["summary"]["objects"].get("archive").is_none(), "{h}");
}

#[test]
fn bad_policy_is_refused_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    index_example(d.path());
    let p = d.path().join("bad.toml");
    std::fs::write(&p, "[roots]\nfiles = []\n[keep]\nmin_age = 3\n").unwrap();
    let out = narward(
        d.path(),
        &[
            "plan",
            "--policy",
            p.to_str().unwrap(),
            "--out",
            d.path().join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("bad.toml") && e.contains("line 4") && e.contains("min_age"),
        "{e}"
    );
    assert!(
        !d.path().join("x").exists(),
        "nothing may be written for a bad policy"
    );
}

#[test]
fn export_parquet_has_every_row() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let d = tempfile::tempdir().unwrap();
    index_example(d.path());
    let out = d.path().join("pq");
    narward_ok(d.path(), &["export", "--parquet", out.to_str().unwrap()]);
    let rows = |f: &str| {
        let r = SerializedFileReader::new(std::fs::File::open(out.join(f)).unwrap()).unwrap();
        r.metadata().file_metadata().num_rows()
    };
    assert_eq!(rows("objects.parquet"), 27);
    assert_eq!(rows("narinfos.parquet"), 13);
    let refs: usize = json(&std::fs::read_to_string(example().join("path-info.json")).unwrap())
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["references"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows("references.parquet") as usize, refs);
}
