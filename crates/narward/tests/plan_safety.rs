//! Safety hardening (issue 8): edited plans, unusual narinfo URLs, narinfos named for another
//! path, empty or absent root sets, and the smaller checks of audit and `why` — through the
//! real binary on copies of the bundled example cache.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

fn example() -> PathBuf {
    repo().join("examples")
}

/// A path of release-a (a root), one reached only through it, and two garbage paths.
const TOOL: &str = "1c7lv6q6jxdin88da9cyhnvrh0mgxgf9";
const TOOL_NAR: &str = "nar/0rx0n8r4y0gjdfk33krf7a6bbw2pvgga9qvwwvrz9pkhfjjc64kb.nar.xz";
const LIBBASE: &str = "cihbjbd97jhajp3a3i7bn78zlylxzhlw";
const LIBFOO_OLD: &str = "k36ahwak8pqilvk9a22a9c6m9piays98";
const LIBFOO_OLD_NAR: &str = "nar/13i80bv13cv66fc1p08xlhw17r8iyd2prpsvmnyilcpz8hj58w93.nar.xz";
const TMP_EXPERIMENT: &str = "q3dvz0fwb84hvh861d7slxrcqp6zr87k";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A private copy of the example cache in `d/cache`.
fn cache_copy(d: &Path) -> PathBuf {
    let cache = d.join("cache");
    copy_tree(&example().join("cache"), &cache);
    cache
}

fn index(state: &Path, cache: &Path) {
    narward_ok(
        state,
        &["index", "--cache", &format!("file://{}", cache.display())],
    );
}

/// Run `narward plan` with `policy` into `d/<out>`, with extra flags.
fn plan(state: &Path, policy: &Path, out: &Path, flags: &[&str]) -> Output {
    let mut args = vec!["plan", "--policy", s(policy), "--out", s(out)];
    args.extend_from_slice(flags);
    narward(state, &args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_out(o: &Output) -> Value {
    json(&String::from_utf8_lossy(&o.stdout))
}

fn why(state: &Path, plan: &Path, q: &str) -> Value {
    json(&narward_ok(state, &["why", "--json", "--plan", s(plan), q]))
}

fn audit(state: &Path) -> Value {
    json_out(&narward(state, &["audit", "--json"]))
}

// ---- Finding 2: the plan's header and manifests are checksummed ----

/// An index of the example cache in `d/state`, and a plan of it bound to an s3:// identity
/// (so it has the S3 Batch Operations CSV manifests) written by the library into `d/plan`.
fn s3_bound_plan(d: &Path) -> (PathBuf, PathBuf) {
    let state = d.join("state");
    index(&state, &example().join("cache"));
    let mut idx = narward::index::Index::load(&state).unwrap();
    idx.meta.cache = "s3://bucket/cache".into();
    let policy = narward::policy::Policy::load(&example().join("policy-delete.toml")).unwrap();
    let mut p = narward::plan::compute(&idx, &policy, "policy-delete.toml", 2_000_000_000).unwrap();
    let dir = d.join("plan");
    p.write(&dir).unwrap();
    assert!(dir.join("manifests/delete.csv").exists());
    (state, dir)
}

/// Every command that reads a plan refuses `bad` with exit 2, naming `file`.
fn every_reader_refuses(state: &Path, good: &Path, bad: &Path, file: &str) {
    let report_out = state.join("report-out");
    let runs: Vec<Vec<&str>> = vec![
        vec!["plan", "show", s(bad)],
        vec!["why", "--plan", s(bad), TOOL],
        vec!["report", "--plan", s(bad), "--out", s(&report_out)],
        vec!["plan", "diff", s(good), s(bad)],
        vec!["plan", "diff", s(bad), s(good)],
    ];
    for args in runs {
        let o = narward(state, &args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?} must refuse: {e}");
        assert!(
            e.contains(file) && e.contains("checksum mismatch"),
            "{args:?} must name {file}: {e}"
        );
    }
}

fn fresh_copy(from: &Path, to: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(to);
    copy_tree(from, to);
    to.to_path_buf()
}

#[test]
fn edited_plan_header_is_refused_by_every_reader() {
    let d = tempfile::tempdir().unwrap();
    let (state, good) = s3_bound_plan(d.path());
    narward_ok(&state, &["plan", "show", s(&good)]);
    for (field, value) in [
        ("cache", json!("s3://another-bucket/cache")),
        ("index_generation", json!(7)),
        ("archive_storage_class", json!("STANDARD")),
        ("archive_prefix", json!("../../")),
    ] {
        let bad = fresh_copy(&good, &d.path().join("bad"));
        let f = bad.join("plan.json");
        let mut h: Value = json(&std::fs::read_to_string(&f).unwrap());
        assert_ne!(h[field], value);
        h[field] = value;
        std::fs::write(&f, serde_json::to_string_pretty(&h).unwrap()).unwrap();
        every_reader_refuses(&state, &good, &bad, "plan.json was altered");
    }
}

#[test]
fn altered_added_or_deleted_manifest_is_refused_by_every_reader() {
    let d = tempfile::tempdir().unwrap();
    let (state, good) = s3_bound_plan(d.path());
    // A root's NAR appended to delete.csv.
    let bad = fresh_copy(&good, &d.path().join("bad"));
    let csv = bad.join("manifests/delete.csv");
    let mut t = std::fs::read_to_string(&csv).unwrap();
    assert!(!t.contains(TOOL_NAR));
    t.push_str(&format!("bucket,cache/{TOOL_NAR}\n"));
    std::fs::write(&csv, t).unwrap();
    every_reader_refuses(&state, &good, &bad, "manifests/delete.csv was altered");
    // An extra manifest file.
    let bad = fresh_copy(&good, &d.path().join("bad"));
    std::fs::write(
        bad.join("manifests/extra.csv"),
        format!("bucket,cache/{TOOL_NAR}\n"),
    )
    .unwrap();
    every_reader_refuses(&state, &good, &bad, "manifests/extra.csv was added");
    // A deleted one.
    let bad = fresh_copy(&good, &d.path().join("bad"));
    std::fs::remove_file(bad.join("manifests/decisions.parquet")).unwrap();
    every_reader_refuses(
        &state,
        &good,
        &bad,
        "manifests/decisions.parquet is missing",
    );
}

// ---- Finding 7: unusual URLs must not orphan the real NAR ----

/// Rewrite the `URL:` line of `<hash>.narinfo` in `cache` with `f`.
fn edit_url(cache: &Path, hash: &str, f: impl Fn(&str) -> String) {
    let p = cache.join(format!("{hash}.narinfo"));
    let t = std::fs::read_to_string(&p).unwrap();
    let out: String = t
        .lines()
        .map(|l| match l.strip_prefix("URL: ") {
            Some(u) => format!("URL: {}\n", f(u)),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(out, t);
    std::fs::write(&p, out).unwrap();
}

/// With `f` applied to the URL of a root's narinfo, audit reports the URL (not a missing
/// NAR, not an orphan), and the plan keeps the path and its NAR.
fn unusual_url_keeps_the_root_nar(f: impl Fn(&str) -> String) {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_copy(d.path());
    edit_url(&cache, TOOL, f);
    let state = d.path().join("state");
    index(&state, &cache);
    let a = audit(&state);
    let missing = a["missing_nar"]["examples"].to_string();
    assert!(!missing.contains("tool-1.0"), "NAR wrongly missing: {a}");
    assert_eq!(a["unusual_nar_urls"]["count"], 1, "{a}");
    assert_eq!(a["orphan_nars"]["count"], 1, "only the planted orphan: {a}");
    let out = d.path().join("plan");
    let o = plan(&state, &example().join("policy-delete.toml"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(why(&state, &out, TOOL_NAR)["decision"], "keep");
    assert_eq!(why(&state, &out, TOOL)["decision"], "keep");
}

#[test]
fn url_with_trailing_cr_does_not_orphan_the_real_nar() {
    unusual_url_keeps_the_root_nar(|u| format!("{u}\r"));
}

#[test]
fn url_with_leading_slash_does_not_orphan_the_real_nar() {
    unusual_url_keeps_the_root_nar(|u| format!("/{u}"));
}

#[test]
fn crlf_narinfo_does_not_orphan_the_real_nar() {
    // Every line ends in \r\n: the narinfo does not parse, and the lenient reading of it
    // must still find its NAR.
    let d = tempfile::tempdir().unwrap();
    let cache = cache_copy(d.path());
    let p = cache.join(format!("{LIBFOO_OLD}.narinfo"));
    let t = std::fs::read_to_string(&p).unwrap().replace('\n', "\r\n");
    std::fs::write(&p, t).unwrap();
    let state = d.path().join("state");
    index(&state, &cache);
    let a = audit(&state);
    assert_eq!(a["unparseable_narinfos"]["count"], 1, "{a}");
    assert_eq!(a["orphan_nars"]["count"], 1, "only the planted orphan: {a}");
    let out = d.path().join("plan");
    let o = plan(&state, &example().join("policy-delete.toml"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(why(&state, &out, LIBFOO_OLD)["decision"], "keep");
    assert_eq!(why(&state, &out, LIBFOO_OLD_NAR)["decision"], "keep");
}

#[test]
fn absolute_url_keeps_its_path_as_unknown_and_the_nar_of_this_cache() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_copy(d.path());
    edit_url(&cache, LIBFOO_OLD, |u| {
        format!("https://elsewhere.example.org/{u}")
    });
    let state = d.path().join("state");
    index(&state, &cache);
    let a = audit(&state);
    assert!(
        !a["missing_nar"]["examples"]
            .to_string()
            .contains("libfoo-1.1"),
        "{a}"
    );
    assert_eq!(a["foreign_nar_urls"]["count"], 1, "{a}");
    assert_eq!(a["orphan_nars"]["count"], 1, "only the planted orphan: {a}");
    let out = d.path().join("plan");
    let o = plan(&state, &example().join("policy-delete.toml"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let w = why(&state, &out, LIBFOO_OLD);
    assert_eq!(w["decision"], "keep", "{w}");
    assert!(w["reason"].get("unverifiable").is_some(), "{w}");
    assert_eq!(why(&state, &out, LIBFOO_OLD_NAR)["decision"], "keep");
}

// ---- Finding 8: a narinfo whose file name's hash is not its StorePath's ----

#[test]
fn narinfo_named_for_another_path_is_reported_and_kept_as_unknown() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_copy(d.path());
    let other = "0000000000000000000000000000000a";
    std::fs::rename(
        cache.join(format!("{TMP_EXPERIMENT}.narinfo")),
        cache.join(format!("{other}.narinfo")),
    )
    .unwrap();
    let state = d.path().join("state");
    index(&state, &cache);
    let a = audit(&state);
    assert_eq!(a["store_path_mismatch"]["count"], 1, "{a}");
    assert!(a["errors"].as_u64().unwrap() > 0);
    let out = d.path().join("plan");
    let o = plan(&state, &example().join("policy-delete.toml"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let w = why(&state, &out, other);
    assert_eq!(w["decision"], "keep", "{w}");
    assert!(w["reason"].get("unverifiable").is_some(), "{w}");
    // No path is invented from the other narinfo's name.
    assert_eq!(w["path"], format!("/nix/store/{other}"), "{w}");
    // Its NAR (named by its URL) is kept too.
    let nar = w["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o[0].as_str().unwrap().starts_with("nar/"))
        .cloned()
        .unwrap_or_else(|| panic!("no NAR object for {other}: {w}"));
    assert_eq!(nar[1], "keep", "{w}");
}

// ---- Finding 9: an empty or absent root set must not delete everything ----

fn write_policy(d: &Path, roots: &str) -> PathBuf {
    let p = d.join("p.toml");
    std::fs::write(
        &p,
        format!(
            "[roots]\n{roots}\n[keep]\nmin_age_days = 0\n[actions]\nunreachable = \"delete\"\n"
        ),
    )
    .unwrap();
    p
}

fn refused(o: &Output, out: &Path, what: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(what) && e.contains("--allow-few-roots"), "{e}");
    assert!(!out.exists(), "nothing may be written for a refused plan");
}

#[test]
fn plan_without_roots_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    index(&state, &example().join("cache"));
    let p = write_policy(d.path(), "");
    let out = d.path().join("plan");
    refused(&plan(&state, &p, &out, &[]), &out, "names no roots");
}

#[test]
fn plan_whose_roots_are_all_absent_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    index(&state, &example().join("cache"));
    let p = write_policy(
        d.path(),
        "paths = [\"/nix/store/00000000000000000000000000000000-absent\"]",
    );
    let out = d.path().join("plan");
    refused(&plan(&state, &p, &out, &[]), &out, "none of the 1 roots");
}

#[test]
fn plan_with_too_few_roots_found_is_refused_below_the_policy_threshold() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    index(&state, &example().join("cache"));
    let roots = format!(
        "paths = [\"/nix/store/{TOOL}-tool-1.0\", \"/nix/store/00000000000000000000000000000000-a\", \"/nix/store/00000000000000000000000000000001-b\"]"
    );
    let p = write_policy(d.path(), &roots);
    let out = d.path().join("plan");
    refused(&plan(&state, &p, &out, &[]), &out, "only 1 of 3 roots");
    // A lower threshold in the policy accepts it.
    let p = write_policy(d.path(), &format!("{roots}\nmin_found_fraction = 0.3"));
    let o = plan(&state, &p, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An out-of-range threshold is a policy error.
    let p = write_policy(d.path(), &format!("{roots}\nmin_found_fraction = 1.5"));
    let o = plan(&state, &p, &d.path().join("x"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("min_found_fraction"), "{}", stderr(&o));
}

#[test]
fn allow_few_roots_flag_writes_the_refused_plan() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    index(&state, &example().join("cache"));
    let p = write_policy(d.path(), "");
    let out = d.path().join("plan");
    let o = plan(&state, &p, &out, &["--allow-few-roots"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("plan.json").exists());
}

#[test]
fn plan_of_an_empty_cache_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
    let state = d.path().join("state");
    index(&state, &cache);
    let p = write_policy(d.path(), "");
    let out = d.path().join("plan");
    let o = plan(&state, &p, &out, &["--allow-few-roots"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("no narinfo") && e.contains("--allow-empty-cache"),
        "{e}"
    );
    assert!(!out.exists());
    let o = plan(
        &state,
        &p,
        &out,
        &["--allow-few-roots", "--allow-empty-cache"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

// ---- Smaller items ----

#[test]
fn plan_out_that_is_a_file_is_named_in_the_error() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    index(&state, &example().join("cache"));
    let file = d.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = plan(&state, &example().join("policy.toml"), &file, &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(s(&file)) && e.contains("not a directory"), "{e}");
}

#[test]
fn why_headlines_a_reachable_path_as_reachable_not_as_a_root() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    index(&state, &example().join("cache"));
    let out = d.path().join("plan");
    let o = plan(&state, &example().join("policy.toml"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = narward_ok(&state, &["why", "--plan", s(&out), LIBBASE]);
    let headline = text.lines().nth(1).unwrap_or("");
    assert!(
        headline.contains("kept: reachable from") && !headline.contains("kept: root"),
        "{text}"
    );
    assert!(headline.contains("referenced by /nix/store/"), "{text}");
    let text = narward_ok(&state, &["why", "--plan", s(&out), TOOL]);
    assert!(
        text.lines().nth(1).unwrap_or("").contains("kept: root ("),
        "{text}"
    );
}

#[test]
fn garbage_or_foreign_nix_cache_info_is_an_audit_error() {
    for (content, expect) in [
        ("<html>not found</html>\n", "no StoreDir"),
        ("StoreDir: /gnu/store\nWantMassQuery: 1\n", "/gnu/store"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let cache = cache_copy(d.path());
        std::fs::write(cache.join("nix-cache-info"), content).unwrap();
        let state = d.path().join("state");
        index(&state, &cache);
        let a = audit(&state);
        let ci = a["cache_info"].to_string();
        assert!(ci.contains(expect), "{a}");
    }
    // The genuine one passes.
    let d = tempfile::tempdir().unwrap();
    index(d.path(), &example().join("cache"));
    assert_eq!(audit(d.path())["cache_info"], json!([]));
}

#[test]
fn nar_size_differing_from_an_uncompressed_nar_is_an_audit_error() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_copy(d.path());
    let p = cache.join(format!("{TOOL}.narinfo"));
    let t = std::fs::read_to_string(&p)
        .unwrap()
        .replace("Compression: xz\n", "Compression: none\n");
    std::fs::write(&p, t).unwrap();
    let state = d.path().join("state");
    index(&state, &cache);
    let a = audit(&state);
    assert_eq!(a["nar_size_mismatch"]["count"], 1, "{a}");
    assert!(
        a["nar_size_mismatch"]["examples"][0]
            .as_str()
            .unwrap()
            .contains("tool-1.0"),
        "{a}"
    );
}
