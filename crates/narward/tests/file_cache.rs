//! `file://` caches that are not plain trees of regular files: symlinked narinfos inside
//! and outside the root, reads through an inventory, and narinfos rewritten in place with
//! the same size and mtime — through the real binary.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// libfoo-1.1: garbage in the example (reachable from no root).
const LIBFOO_11: &str = "k36ahwak8pqilvk9a22a9c6m9piays98";
const LIBFOO_11_NAR: &str = "nar/13i80bv13cv66fc1p08xlhw17r8iyd2prpsvmnyilcpz8hj58w93.nar.xz";
/// app-one-3.0: a root of release-a; references libfoo-1.2.
const APP_ONE_30: &str = "y7f65f40783p3aj8539vppl9k71z1168";

/// A private copy of the example cache.
fn copy_example(dir: &Path) -> PathBuf {
    let dst = dir.join("cache");
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(repo().join("examples/cache"))
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

fn index(state: &Path, cache: &Path, extra: &[&str]) -> Value {
    let url = format!("file://{}", cache.display());
    let mut args = vec!["index", "--json", "--cache", url.as_str()];
    args.extend_from_slice(extra);
    json(&narward_ok(state, &args))
}

/// Plan with examples/policy.toml (unreachable paths archived, orphan NARs deleted).
fn plan(state: &Path) -> PathBuf {
    let out = state.join("plan");
    let policy = repo().join("examples/policy.toml");
    narward_ok(
        state,
        &[
            "plan",
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    out
}

fn why(state: &Path, plan: &Path, what: &str) -> Value {
    json(&narward_ok(
        state,
        &["why", "--json", "--plan", plan.to_str().unwrap(), what],
    ))
}

fn paths_of(state: &Path) -> Value {
    json(&narward_ok(state, &["paths"]))
}

#[test]
fn symlinked_narinfo_inside_root_is_indexed_like_a_file() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    let plain = d.path().join("plain");
    index(&plain, &repo().join("examples/cache"), &[]);
    // The narinfo lives in a directory of the cache; its key is a symlink to it.
    let key = format!("{LIBFOO_11}.narinfo");
    std::fs::create_dir(cache.join("real")).unwrap();
    std::fs::rename(cache.join(&key), cache.join("real").join(&key)).unwrap();
    std::os::unix::fs::symlink(format!("real/{key}"), cache.join(&key)).unwrap();
    let st = d.path().join("st");
    let m = index(&st, &cache, &[]);
    assert_eq!(m["narinfos"], 13, "{m}");
    assert_eq!(m["last_update"]["fetch_errors"], 0, "{m}");
    assert_eq!(paths_of(&st), paths_of(&plain));
}

#[test]
fn symlinked_narinfo_outside_root_is_present_but_unknown_and_its_nar_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let key = format!("{LIBFOO_11}.narinfo");
    std::fs::rename(cache.join(&key), outside.join(&key)).unwrap();
    std::os::unix::fs::symlink(outside.join(&key), cache.join(&key)).unwrap();
    let st = d.path().join("st");
    let m = index(&st, &cache, &[]);
    assert_eq!(m["narinfos"], 13, "the symlinked narinfo is listed: {m}");
    assert_eq!(m["last_update"]["fetch_errors"], 1, "{m}");
    let idx = narward::index::Index::load(&st).unwrap();
    let rec = idx.narinfos.iter().find(|n| n.key == key).unwrap();
    let err = rec.fetch_error.as_deref().unwrap();
    assert!(
        err.contains(&key) && err.contains("outside the cache root"),
        "{err}"
    );
    // Its NAR is not an orphan: the plan keeps it (and whatever else might be its).
    let p = plan(&st);
    let w = why(&st, &p, LIBFOO_11_NAR);
    assert_eq!(w["decision"], "keep", "{w}");
}

#[test]
fn inventory_reads_through_a_file_cache_refuse_keys_leaving_the_root() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    // An inventory listing the cache as it is...
    let live = d.path().join("live");
    index(&live, &cache, &[]);
    let objects = narward::index::Index::load(&live)
        .unwrap()
        .objects
        .to_records();
    let rep = d.path().join("report");
    let manifest = narward::inventory::write_report(
        &rep,
        "cache",
        &objects,
        narward::inventory::WriteFormat::CsvGz,
        100,
    )
    .unwrap();
    // ...then a listed narinfo becomes a symlink out of the root.
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let key = format!("{APP_ONE_30}.narinfo");
    std::fs::rename(cache.join(&key), outside.join(&key)).unwrap();
    std::os::unix::fs::symlink(outside.join(&key), cache.join(&key)).unwrap();
    let st = d.path().join("st");
    let m = index(&st, &cache, &["--inventory", manifest.to_str().unwrap()]);
    assert_eq!(m["last_update"]["fetch_errors"], 1, "{m}");
    let idx = narward::index::Index::load(&st).unwrap();
    let rec = idx.narinfos.iter().find(|n| n.key == key).unwrap();
    assert!(
        rec.text.is_empty(),
        "read through a symlink out of the root"
    );
    let err = rec.fetch_error.as_deref().unwrap();
    assert!(
        err.contains(&key) && err.contains("outside the cache root"),
        "{err}"
    );
}

#[test]
fn incremental_file_index_refetches_a_narinfo_rewritten_with_same_size_and_mtime() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    let st = d.path().join("st");
    index(&st, &cache, &[]);
    // app-one-3.0 now references libfoo-1.1 instead of libfoo-1.2: same length, and the
    // mtime is put back, so only the content tells.
    let p = cache.join(format!("{APP_ONE_30}.narinfo"));
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    let old = std::fs::read_to_string(&p).unwrap();
    let new = old.replace(
        "6h3933iihjj8kzciqxqk9g02zc9f9g59-libfoo-1.2",
        &format!("{LIBFOO_11}-libfoo-1.1"),
    );
    assert_eq!(old.len(), new.len());
    assert_ne!(old, new);
    std::fs::write(&p, &new).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let m = index(&st, &cache, &[]);
    assert_eq!(m["last_update"]["fetched"], 1, "{m}");
    let idx = narward::index::Index::load(&st).unwrap();
    let rec = idx
        .narinfos
        .iter()
        .find(|n| n.key == format!("{APP_ONE_30}.narinfo"))
        .unwrap();
    assert_eq!(rec.text, new.as_bytes());
    // libfoo-1.1 is referenced by a root again: the plan keeps it.
    let plan = plan(&st);
    let w = why(&st, &plan, &format!("/nix/store/{LIBFOO_11}-libfoo-1.1"));
    assert_eq!(w["decision"], "keep", "{w}");
}

#[test]
fn an_empty_file_listing_warns_on_stderr_and_in_json() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let st = d.path().join("st");
    let url = format!("file://{}", empty.display());
    let out = narward(&st, &["index", "--json", "--cache", &url]);
    assert_eq!(out.status.code(), Some(0));
    let m = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(m["objects"], 0);
    let w = m["warnings"][0].as_str().unwrap_or_default();
    assert!(w.contains("listing") && w.contains("empty"), "{m}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("warning") && e.contains("empty"), "{e}");
}

#[test]
fn access_log_with_multibyte_time_zone_is_reported_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let st = d.path().join("st");
    index(&st, &repo().join("examples/cache"), &[]);
    let log = d.path().join("access.log");
    let good = "owner b [06/Feb/2019:00:00:38 +0000] 192.0.2.3 - REQ REST.GET.OBJECT k.narinfo \"GET /b/k.narinfo HTTP/1.1\" 200 - 1 1 7 - \"-\" \"curl\" -";
    std::fs::write(
        &log,
        format!(
            "{good}\n{}\n{}\n",
            good.replace("+0000", "+0é0"),
            good.replace("2019", "99999999999999999999")
        ),
    )
    .unwrap();
    let policy = d.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[roots]\nfiles = [\"{}\"]\n[keep]\nmin_age_days = 0\naccessed_within_days = 30\naccess_logs = [\"{}\"]\n",
            repo().join("examples/roots/release-a.txt").display(),
            log.display()
        ),
    )
    .unwrap();
    let out = narward(
        &st,
        &[
            "plan",
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            st.join("plan").to_str().unwrap(),
        ],
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(e.contains("2 malformed lines"), "{e}");
    let place = |n: usize| format!("{}:{n}:", log.display());
    assert!(e.contains(&place(2)) && e.contains(&place(3)), "{e}");
}

/// Plan with `examples/<policy>` into `<state>/<name>`.
fn plan_with(state: &Path, policy: &str, name: &str) -> PathBuf {
    let out = state.join(name);
    let policy = repo().join("examples").join(policy);
    let args = [
        "plan",
        "--policy",
        policy.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    narward_ok(state, &args);
    out
}

/// A kept path's NAR key is a symlink to a NAR no narinfo names: the target is kept by
/// every plan, and apply and finalize leave it in place, so the link never dangles.
#[test]
fn the_target_of_a_symlinked_nar_of_a_kept_path_is_never_removed() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    let text = std::fs::read_to_string(cache.join(format!("{APP_ONE_30}.narinfo"))).unwrap();
    let nar = text
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap()
        .to_string();
    let target = format!("nar/{}.nar.xz", "0".repeat(52));
    let bytes = std::fs::read(cache.join(&nar)).unwrap();
    std::fs::rename(cache.join(&nar), cache.join(&target)).unwrap();
    let base = target.trim_start_matches("nar/");
    std::os::unix::fs::symlink(base, cache.join(&nar)).unwrap();
    let st = d.path().join("st");
    index(&st, &cache, &[]);
    let idx = narward::index::Index::load(&st).unwrap();
    let link = idx.object(&nar).unwrap();
    assert_eq!(link.link_target(), Some(target.as_str()));
    for (policy, name) in [("policy.toml", "p1"), ("policy-delete.toml", "p2")] {
        let p = plan_with(&st, policy, name);
        let w = why(&st, &p, &target);
        assert_eq!(w["decision"], "keep", "{policy}: {w}");
        assert!(
            w.to_string().contains(&nar),
            "{policy}: names the link: {w}"
        );
        let w = why(&st, &p, &nar);
        assert_eq!(w["decision"], "keep", "{policy}: {w}");
    }
    let p = st.join("p2");
    let r = narward_ok(
        &st,
        &["apply", p.to_str().unwrap(), "--confirm", "cache", "--json"],
    );
    assert!(
        json(&r)["skipped"].as_array().is_some(),
        "apply reported: {r}"
    );
    narward_ok(
        &st,
        &[
            "apply",
            "--finalize",
            "--grace",
            "0",
            "--unsafe-no-grace",
            "--confirm",
            "cache",
        ],
    );
    assert_eq!(
        std::fs::read(cache.join(&nar)).unwrap(),
        bytes,
        "the kept path's NAR is still read through its link"
    );
    assert!(cache.join(format!("{APP_ONE_30}.narinfo")).exists());
}

/// `index` streams the previous generation (printed back from its columns and quirks)
/// and the fetched narinfos into the new one: an incremental run (a narinfo added, one
/// gone, one re-signed, a new one damaged, a quirk reused) writes exactly the files,
/// listing, quirks and column files included, that a first run on the same cache writes,
/// fetches only what changed, and leaves no temporary record stream behind.
#[test]
fn incremental_index_writes_the_same_generation_as_a_full_one() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    // A quirk (an old `System:` line: the columns do not print it back) that stays
    // unchanged, so the second run takes it from the previous generation's quirks.
    let quirk = cache.join(format!("{LIBFOO_11}.narinfo"));
    let mut t = std::fs::read_to_string(&quirk).unwrap();
    t.push_str("System: x86_64-linux\n");
    std::fs::write(&quirk, t).unwrap();
    let aside = d.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    let added = format!("{APP_ONE_30}.narinfo");
    std::fs::rename(cache.join(&added), aside.join(&added)).unwrap();
    let inc = d.path().join("incremental");
    let first_run = index(&inc, &cache, &[]);
    assert_ne!(first_run["files"]["quirks.bin.zst"]["records"], 0);
    std::fs::rename(aside.join(&added), cache.join(&added)).unwrap();
    // A narinfo other than the quirk and the added one (the first such, each time).
    let other_narinfo = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.extension().is_some_and(|x| x == "narinfo") && *p != quirk && !p.ends_with(&added)
            })
            .unwrap()
    };
    let gone = other_narinfo();
    std::fs::remove_file(&gone).unwrap();
    let resigned = other_narinfo();
    let mut t = std::fs::read_to_string(&resigned).unwrap();
    t.push_str("Sig: extra-1:AAAA\n");
    std::fs::write(&resigned, t).unwrap();
    // A new narinfo that does not parse (a changed one keeps its earlier text, so that
    // one would differ from a first run by design).
    std::fs::write(
        cache.join(format!("{}.narinfo", "0".repeat(32))),
        "garbage\n",
    )
    .unwrap();
    let second = index(&inc, &cache, &[]);
    let full = d.path().join("full");
    let first = index(&full, &cache, &[]);
    let lu = &second["last_update"];
    assert_eq!(
        (lu["fetched"].as_u64(), lu["dropped"].as_u64()),
        (Some(3), Some(1)),
        "{second}"
    );
    assert_eq!(second["generation"], 2);
    assert_eq!(
        second["files"], first["files"],
        "incremental and full generations differ"
    );
    assert_eq!(second["unparseable"], first["unparseable"]);
    assert_eq!(second["unparseable"], 1);
    let left: Vec<_> = std::fs::read_dir(inc.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!inc.join("index.new").exists());
}

/// The `file://` stat cache: a second `index` takes the MD5 of every narinfo unchanged
/// since the first one (settled: older than the first listing by the racy margin) from
/// the previous generation instead of reading it, hashes the re-signed one again (its
/// ctime changed), and still writes the generation a full run writes.
#[test]
fn an_incremental_index_reuses_the_md5_of_settled_narinfos_and_hashes_changed_ones() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    // Let the copied files settle (older than the first listing by the racy margin).
    let margin = narward::cache::file_stat::RACY_MARGIN_NS as u64;
    std::thread::sleep(std::time::Duration::from_nanos(margin + 200_000_000));
    let inc = d.path().join("incremental");
    let first = index(&inc, &cache, &[]);
    assert_eq!(first["last_update"]["md5_reused"], 0, "{first}");
    assert!(first["files"]["filestat.bin.zst"]["records"].as_u64() > Some(0));
    let resigned = cache.join(format!("{LIBFOO_11}.narinfo"));
    let mut t = std::fs::read_to_string(&resigned).unwrap();
    t.push_str("Sig: extra-1:AAAA\n");
    std::fs::write(&resigned, t).unwrap();
    let second = index(&inc, &cache, &[]);
    let hashed = first["files"]["filestat.bin.zst"]["records"]
        .as_u64()
        .unwrap();
    let lu = &second["last_update"];
    assert_eq!(lu["md5_reused"].as_u64(), Some(hashed - 1), "{second}");
    assert_eq!(lu["fetched"].as_u64(), Some(1), "{second}");
    let full = index(&d.path().join("full"), &cache, &[]);
    assert_eq!(
        second["files"], full["files"],
        "incremental and full differ"
    );
}

/// A damaged stat cache is no base for an update: the next `index` fails naming the
/// file, exit code 1 or 2, and the previous generation stays in place.
#[test]
fn a_damaged_stat_cache_fails_the_next_index_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let cache = copy_example(d.path());
    let st = d.path().join("st");
    index(&st, &cache, &[]);
    let f = st.join("index").join("filestat.bin.zst");
    let mut b = std::fs::read(&f).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(&f, b).unwrap();
    let url = format!("file://{}", cache.display());
    let out = narward(&st, &["index", "--json", "--cache", url.as_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{out:?}");
    assert!(err.contains("filestat.bin.zst"), "{err}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(st.join("index/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["generation"], 1);
}
