//! Access statistics and the demand-driven restore proposal on the example cache
//! (file://): ingest synthetic S3 access logs, plan, propose, show, refuse edits.

mod common;

use common::{copy_tree, json, narward, narward_ok, repo};
use std::path::{Path, PathBuf};

const APP_ONE_29: &str = "27xrcg1gcw6gxjhk3v3mbgw4i0fk6siv";
const LIBFOO_11: &str = "k36ahwak8pqilvk9a22a9c6m9piays98";
const TMP_EXPERIMENT: &str = "q3dvz0fwb84hvh861d7slxrcqp6zr87k";
/// 10/Feb/2019:00:00:00 UTC.
const NOW: &str = "1549756800";

fn example() -> PathBuf {
    repo().join("examples")
}

fn get(key: &str, day: u32, status: &str) -> String {
    format!(
        "owner nix-cache [{day:02}/Feb/2019:12:00:00 +0000] 192.0.2.3 - REQ REST.GET.OBJECT {key} \"GET /{key} HTTP/1.1\" {status} - 113 113 7 - \"-\" \"curl\" - trailing"
    )
}

/// `narward index` of the example cache (file://) into the state `d`.
fn index_example(d: &Path) {
    let url = format!("file://{}", example().join("cache").display());
    narward_ok(d, &["index", "--cache", &url]);
}

/// The arguments of `narward plan --policy POLICY --out OUT`.
fn plan_args<'a>(policy: &'a Path, out: &'a Path) -> [&'a str; 5] {
    let s = |p: &'a Path| p.to_str().unwrap();
    ["plan", "--policy", s(policy), "--out", s(out)]
}

/// `narward plan --policy POLICY --out OUT` from the state `d`, which must succeed.
fn plan_ok(d: &Path, policy: &Path, out: &Path) {
    narward_ok(d, &plan_args(policy, out));
}

/// The example policy, its roots by absolute path and `edit` applied, written to
/// `d/name`.
fn example_policy(d: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(example().join("policy.toml"))
        .unwrap()
        .replace("\"roots/", &format!("\"{}/roots/", example().display()));
    let policy = d.join(name);
    std::fs::write(&policy, edit(text)).unwrap();
    policy
}

/// Index and plan the example (unreachable paths archived), ingest the logs.
fn setup(d: &Path) -> PathBuf {
    index_example(d);
    let plan = d.join("plan");
    let policy = example().join("policy.toml");
    plan_ok(d, &policy, &plan);
    let logs = d.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut lines = Vec::new();
    for day in [7, 8, 9] {
        lines.push(get(&format!("{APP_ONE_29}.narinfo"), day, "404"));
    }
    lines.push(get(&format!("{LIBFOO_11}.narinfo"), 9, "404"));
    lines.push(get(&format!("{TMP_EXPERIMENT}.narinfo"), 9, "404"));
    // Old misses, outside the 30-day window.
    for _ in 0..5 {
        lines.push(get(&format!("{LIBFOO_11}.narinfo"), 1, "404").replace("Feb/2019", "Dec/2018"));
    }
    lines.push(get("nix-cache-info", 9, "200"));
    lines.push("garbage é line".into());
    lines.push(get(&format!("{APP_ONE_29}.narinfo"), 9, "404").replace("+0000", "+0é0"));
    std::fs::write(logs.join("2019-02-09-log"), lines.join("\n") + "\n").unwrap();
    let out = narward(d, &["access-logs", "ingest", logs.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("1 files read") && stdout.contains("2 malformed"),
        "{stdout}"
    );
    assert!(stdout.contains("10 misses"), "{stdout}");
    assert!(
        stderr.contains("2019-02-09-log:12:") && stderr.contains("2019-02-09-log:13:"),
        "{stderr}"
    );
    plan
}

fn propose(d: &Path, plan: &Path, extra: &[&str]) -> std::process::Output {
    let policy = example().join("restore-policy.toml");
    let mut args = vec![
        "restore",
        "--from-demand",
        "--plan",
        plan.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--now",
        NOW,
    ];
    args.extend_from_slice(extra);
    narward(d, &args)
}

#[test]
fn demand_from_a_synthetic_access_log_proposes_the_expected_restore_set() {
    let d = tempfile::tempdir().unwrap();
    let plan = setup(d.path());
    let out_dir = d.path().join("proposal");
    let out = propose(
        d.path(),
        &plan,
        &["--out", out_dir.to_str().unwrap(), "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("nothing was requested: execute a proposal with `narward restore --proposal DIR --confirm NAME`"),
        "the CLI must say that nothing was executed"
    );
    let j = json(&String::from_utf8_lossy(&out.stdout));
    let body = &j["proposal"]["body"];
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{body:#}");
    // app-one-2.9: 3 misses ≥ min_misses 3; its closure brings libfoo-1.1 (archived) but
    // not libbase (kept, hot).
    assert!(groups[0]["path"].as_str().unwrap().starts_with(APP_ONE_29));
    assert_eq!(groups[0]["status"], "proposed");
    let paths: Vec<&str> = groups[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with(LIBFOO_11)));
    // tmp-experiment: one miss, in a root set that needs approval.
    assert!(
        groups[1]["path"]
            .as_str()
            .unwrap()
            .starts_with(TMP_EXPERIMENT)
    );
    assert_eq!(groups[1]["status"], "needs-approval");
    assert_eq!(groups[1]["root_set"], "experiments");
    // libfoo-1.1 alone: one miss in the window (five older ones do not count).
    assert_eq!(body["skipped"]["below_threshold"], 1);
    assert_eq!(body["tier"], "bulk");
    assert!(body["proposed_usd"].as_f64().unwrap() <= 25.0);
    let tiers: Vec<&str> = body["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["expedited", "standard", "bulk"]);
    // The artifact reads back, and shows the same ranking as text.
    let shown = narward_ok(d.path(), &["restore", "show", out_dir.to_str().unwrap()]);
    assert!(
        shown.contains(&format!("#1 proposed {APP_ONE_29}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("#2 needs-approval {TMP_EXPERIMENT}")),
        "{shown}"
    );
    assert!(
        shown.contains("bulk") && shown.contains("readable in"),
        "{shown}"
    );
    let csv = std::fs::read_to_string(out_dir.join("objects.csv")).unwrap();
    assert!(csv.contains(&format!("{LIBFOO_11}.narinfo")), "{csv}");
}

#[test]
fn a_proposal_is_never_overwritten_and_an_edited_one_is_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let plan = setup(d.path());
    let out_dir = d.path().join("proposal");
    let dry = propose(
        d.path(),
        &plan,
        &["--out", out_dir.to_str().unwrap(), "--dry-run"],
    );
    assert!(dry.status.success());
    assert!(!out_dir.exists(), "--dry-run writes nothing");
    assert!(String::from_utf8_lossy(&dry.stdout).contains("tier bulk"));
    assert!(
        propose(d.path(), &plan, &["--out", out_dir.to_str().unwrap()])
            .status
            .success()
    );
    let again = propose(d.path(), &plan, &["--out", out_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    let csv = out_dir.join("objects.csv");
    let t = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&csv, t.replacen("proposed", "over-budget", 1)).unwrap();
    let shown = narward(d.path(), &["restore", "show", out_dir.to_str().unwrap()]);
    assert_eq!(shown.status.code(), Some(2));
    let e = String::from_utf8_lossy(&shown.stderr);
    assert!(
        e.contains(&csv.display().to_string()) && e.contains("altered"),
        "{e}"
    );
}

#[test]
fn restore_without_access_statistics_or_with_a_bad_policy_fails_clearly() {
    let d = tempfile::tempdir().unwrap();
    index_example(d.path());
    let plan = d.path().join("plan");
    let policy = example().join("policy.toml");
    plan_ok(d.path(), &policy, &plan);
    let out = propose(d.path(), &plan, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("access-logs ingest"));
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, "[budget]\nmonthly_usd = 10\n[retrieval]\ndays = 0\n").unwrap();
    let out = narward(
        d.path(),
        &[
            "restore",
            "--from-demand",
            "--plan",
            plan.to_str().unwrap(),
            "--policy",
            bad.to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("bad.toml") && e.contains("retrieval.days") && e.contains("line 4"),
        "{e}"
    );
}

#[test]
fn the_report_shows_hit_and_miss_rates_per_kind_from_the_access_statistics() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let out = d.path().join("report");
    narward_ok(d.path(), &["report", "--out", out.to_str().unwrap()]);
    let j = json(&std::fs::read_to_string(out.join("report.json")).unwrap());
    let kinds = j["access"]["kinds"].as_array().unwrap();
    let ni = kinds.iter().find(|k| k["kind"] == "narinfo").unwrap();
    // 3 + 1 + 1 + 5 misses of narinfos; the malformed line is not counted.
    assert_eq!(
        (ni["requests"].as_u64(), ni["misses"].as_u64()),
        (Some(10), Some(10))
    );
    assert_eq!(ni["miss_rate"].as_f64(), Some(1.0));
    let ci = kinds.iter().find(|k| k["kind"] == "cache-info").unwrap();
    assert_eq!(ci["hit_rate"].as_f64(), Some(1.0));
    assert_eq!(j["access"]["malformed"], 2);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"access\"><h2>Hits and misses</h2>"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| narinfo | 10 | 0 | 10 | 0.0 % | 100.0 % |"),
        "{md}"
    );
}

#[test]
fn keep_accessed_within_days_can_use_the_state_access_statistics() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    // app-one-2.9 is garbage (archived by examples/policy.toml) until a hit keeps it (the
    // log is of 2019: the window reaches back that far).
    let logs = d.path().join("more-logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(
        logs.join("hit"),
        get(&format!("{APP_ONE_29}.narinfo"), 9, "200") + "\n",
    )
    .unwrap();
    narward_ok(d.path(), &["access-logs", "ingest", logs.to_str().unwrap()]);
    let policy = example_policy(d.path(), "policy.toml", |t| {
        t.replace(
            "# accessed_within_days = 180",
            "accessed_within_days = 100000\naccess_stats = true",
        )
    });
    let plan = d.path().join("plan-accessed");
    plan_ok(d.path(), &policy, &plan);
    let why = |p: &str| {
        json(&narward_ok(
            d.path(),
            &["why", "--json", "--plan", plan.to_str().unwrap(), p],
        ))
    };
    let w = why(APP_ONE_29);
    assert_eq!(w["decision"], "keep", "{w:#}");
    assert!(
        w.to_string().contains("access"),
        "kept for its access: {w:#}"
    );
    assert_eq!(
        why(LIBFOO_11)["decision"],
        "keep",
        "its closure is kept with it"
    );
    assert_ne!(
        why(TMP_EXPERIMENT)["decision"],
        "keep",
        "missed, never read: not kept"
    );
    // Without statistics in the state, the policy is refused.
    let empty = tempfile::tempdir().unwrap();
    index_example(empty.path());
    let out = narward(empty.path(), &plan_args(&policy, &empty.path().join("p")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keep.access_stats"));
}

#[test]
fn restore_of_paths_estimates_every_tier_and_only_as_a_dry_run() {
    let d = tempfile::tempdir().unwrap();
    let plan = setup(d.path());
    let p = plan.to_str().unwrap();
    let app = format!("/nix/store/{APP_ONE_29}-app-one-2.9");
    let j = json(&narward_ok(
        d.path(),
        &[
            "restore",
            &app,
            "--closure",
            "--plan",
            p,
            "--dry-run",
            "--json",
        ],
    ));
    let e = &j["estimate"];
    // app-one-2.9 and libfoo-1.1 are archived; libbase is hot.
    assert_eq!(e["paths"].as_array().unwrap().len(), 2, "{e:#}");
    assert_eq!(e["hot"], 1);
    assert_eq!(e["estimates"].as_array().unwrap().len(), 3);
    let alone = json(&narward_ok(
        d.path(),
        &["restore", APP_ONE_29, "--plan", p, "--dry-run", "--json"],
    ));
    assert_eq!(alone["estimate"]["paths"].as_array().unwrap().len(), 1);
    let text = narward_ok(
        d.path(),
        &[
            "restore",
            &app,
            "--plan",
            p,
            "--dry-run",
            "--tier",
            "standard",
        ],
    );
    assert!(
        text.contains("standard") && text.contains("<- --tier"),
        "{text}"
    );
    // Without --dry-run and without --confirm: the estimate, then a clear refusal.
    let out = narward(d.path(), &["restore", &app, "--plan", p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--confirm"));
    // A whole release from a root file; a bad line names the file and line.
    let rel = d.path().join("rel.txt");
    std::fs::write(
        &rel,
        format!("{app}\n/nix/store/{TMP_EXPERIMENT}-tmp-experiment-0.1\n"),
    )
    .unwrap();
    let j = json(&narward_ok(
        d.path(),
        &[
            "restore",
            "--roots",
            rel.to_str().unwrap(),
            "--closure",
            "--plan",
            p,
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(j["estimate"]["paths"].as_array().unwrap().len(), 3);
    std::fs::write(&rel, format!("{app}\nnot-a-path\n")).unwrap();
    let out = narward(
        d.path(),
        &[
            "restore",
            "--roots",
            rel.to_str().unwrap(),
            "--plan",
            p,
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2", rel.display())), "{err}");
}

/// The `kind,storage_class` of every NAR row of a proposal's objects.csv.
/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// A plan of one cache used with the index of another (a wrong `--state` or bucket): the
/// estimate is refused with an error naming the plan and both caches, and nothing is
/// written to either state.
#[test]
fn restore_refuses_a_plan_of_another_cache_naming_both() {
    let d = tempfile::tempdir().unwrap();
    let plan = setup(d.path());
    let other = tempfile::tempdir().unwrap();
    let cache = other.path().join("othercache");
    copy_tree(&example().join("cache"), &cache);
    let state = other.path().join("state");
    narward_ok(
        &state,
        &["index", "--cache", &format!("file://{}", cache.display())],
    );
    let before = files(&state);
    let p = plan.to_str().unwrap();
    let out = narward(&state, &["restore", APP_ONE_29, "--plan", p, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(p) && e.contains("othercache"), "{e}");
    assert!(
        e.contains(&example().join("cache").display().to_string()),
        "{e}"
    );
    assert_eq!(files(&state), before);
}

fn nar_rows(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("objects.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(",nar,"))
        .map(|l| l.split(',').skip(5).take(1).collect::<String>())
        .collect()
}

#[test]
fn a_nar_left_in_place_or_kept_is_not_in_the_proposal_and_a_transitioned_one_is() {
    let d = tempfile::tempdir().unwrap();
    let plan = setup(d.path());
    // examples/policy.toml: the example's NARs are under archive_min_size, so they stay in
    // the cache (hidden only): restoring app-one-2.9 needs only its narinfos back.
    let small = d.path().join("small");
    assert!(
        propose(d.path(), &plan, &["--out", small.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(nar_rows(&small), Vec::<String>::new());
    // With archive_min_size = 0 the archived NARs go to DEEP_ARCHIVE: they come back by
    // a bulk restore of up to 48 h.
    let policy = example_policy(d.path(), "policy0.toml", |t| {
        t.replace("archive_min_size = \"128KiB\"", "archive_min_size = \"0\"")
    });
    let plan0 = d.path().join("plan0");
    plan_ok(d.path(), &policy, &plan0);
    let big = d.path().join("big");
    let out = propose(
        d.path(),
        &plan0,
        &["--out", big.to_str().unwrap(), "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(nar_rows(&big), ["DEEP_ARCHIVE", "DEEP_ARCHIVE"]);
    let j = json(&String::from_utf8_lossy(&out.stdout));
    let g = &j["proposal"]["body"]["groups"][0];
    assert_eq!(g["hours"]["max"].as_f64(), Some(48.0), "{g:#}");
}
