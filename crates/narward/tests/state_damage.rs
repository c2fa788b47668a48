//! Issue 8: no damaged state file and no changed narinfo may yield a plan that removes
//! live data. Damage is refused naming the file; a changed narinfo is reported by audit
//! and planned with the union of what every version names.

mod common;
use common::*;
use narward::index::Index;
use narward::plan::{self, Decision, Plan};
use narward::policy::Policy;
use std::path::{Path, PathBuf};

const NOW: i64 = 2_000_000_000;
/// Every file of `<state>/index/`: the streams, the quirks and the column files of the
/// cache graph (`index` writes no narinfo stream: the columns and quirks give the texts
/// back).
fn state_files() -> Vec<&'static str> {
    [
        "meta.json",
        "objects.bin.zst",
        "debuginfo.bin.zst",
        "quirks.bin.zst",
    ]
    .into_iter()
    .chain(narward::cache_graph::file_names())
    .collect()
}

fn example() -> PathBuf {
    repo().join("examples")
}

fn index_cache(state: &Path, cache: &Path) -> String {
    let url = format!("file://{}", cache.display());
    narward_ok(state, &["index", "--json", "--cache", &url])
}

fn plan_of(state: &Path, policy: &Policy) -> anyhow::Result<Plan> {
    plan::compute_from_state(state, policy, "policy.toml", NOW)
}

fn audit_of(state: &Path) -> anyhow::Result<narward::audit::AuditReport> {
    let (idx, view) = Index::load_view(state)?;
    narward::audit::audit_view(&idx, &view, &[], 20)
}

/// Byte positions to damage: every one of a small file, a few hundred spread over a large one.
fn positions(len: usize) -> Vec<usize> {
    if len <= 3000 {
        (0..len).collect()
    } else {
        let step = len / 600;
        (0..len).step_by(step.max(1)).chain([len - 1]).collect()
    }
}

fn plan_args(out_dir: &Path) -> Vec<&'static str> {
    let pol = example().join("policy.toml");
    let leak =
        |p: &Path| -> &'static str { Box::leak(p.to_str().unwrap().to_string().into_boxed_str()) };
    vec!["plan", "--policy", leak(&pol), "--out", leak(out_dir)]
}

/// The binary's plan files and audit output on the intact state.
fn cli_results(st: &Path, tmp: &Path) -> std::collections::HashMap<&'static str, Vec<u8>> {
    let out_dir = tmp.join("plan-good");
    let o = narward(st, &plan_args(&out_dir));
    assert_eq!(o.status.code(), Some(0));
    let mut r = std::collections::HashMap::new();
    for f in ["paths.bin.zst", "objects.bin.zst"] {
        r.insert(f, std::fs::read(out_dir.join(f)).unwrap());
    }
    r.insert("audit", narward(st, &["audit"]).stdout);
    r
}

#[test]
fn damaged_state_file_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let st = d.path().join("state");
    index_cache(&st, &example().join("cache"));
    let policy = Policy::load(&example().join("policy.toml")).unwrap();
    let good_plan = plan_of(&st, &policy).unwrap();
    let good_audit = audit_of(&st).unwrap();
    assert!(
        good_plan.paths.iter().any(|p| p.decision != Decision::Keep),
        "the example plan removes something, so a damaged one could remove more"
    );
    let good_cli = cli_results(&st, d.path());
    let mut refused = 0;
    for name in state_files() {
        let f = st.join("index").join(name);
        let orig = std::fs::read(&f).unwrap();
        if orig.is_empty() {
            continue; // no byte to flip (an empty column); the truncation test extends it
        }
        for pos in positions(orig.len()) {
            let mut bad = orig.clone();
            bad[pos] ^= 1 << (pos % 8);
            std::fs::write(&f, &bad).unwrap();
            match plan_of(&st, &policy) {
                Err(e) => {
                    let m = format!("{e:#}");
                    assert!(
                        m.contains(name),
                        "{name}@{pos}: error does not name it: {m}"
                    );
                    refused += 1;
                }
                Ok(p) => {
                    assert_eq!(p.paths, good_plan.paths, "{name}@{pos}: a different plan");
                    assert_eq!(p.objects, good_plan.objects, "{name}@{pos}");
                }
            }
            match audit_of(&st) {
                Err(e) => assert!(format!("{e:#}").contains(name), "{name}@{pos}: {e:#}"),
                Ok(a) => assert_eq!(a, good_audit, "{name}@{pos}: a different audit"),
            }
        }
        // Through the binary: exit code 2 and the file named, or (for a command that does
        // not read the file: `plan` reads the columns, not the quirks) the same result as
        // on the intact state; never a crash.
        for pos in [0, orig.len() / 3, orig.len() / 2, orig.len() - 1] {
            let mut bad = orig.clone();
            bad[pos] ^= 1 << (pos % 8);
            std::fs::write(&f, &bad).unwrap();
            let out_dir = d.path().join(format!("plan-{name}-{pos}"));
            // An incremental `index` on a damaged state refuses too: no new generation is
            // built on top of garbage.
            for a in [&plan_args(&out_dir)[..], &["audit"][..], &["index"][..]] {
                let o = narward(&st, a);
                let err = String::from_utf8_lossy(&o.stderr);
                if o.status.code() == Some(2) || a[0] == "index" {
                    assert_eq!(o.status.code(), Some(2), "{name}@{pos} {a:?}: {err}");
                    assert!(err.contains(name), "{name}@{pos} {a:?}: {err}");
                } else if a[0] == "plan" {
                    assert_eq!(o.status.code(), Some(0), "{name}@{pos}: {err}");
                    for f in ["paths.bin.zst", "objects.bin.zst"] {
                        let got = std::fs::read(out_dir.join(f)).unwrap();
                        assert_eq!(got, good_cli[f], "{name}@{pos}: a different plan");
                    }
                } else {
                    assert_eq!(
                        o.stdout, good_cli["audit"],
                        "{name}@{pos}: a different audit"
                    );
                }
            }
        }
        std::fs::write(&f, &orig).unwrap();
    }
    assert!(refused > 1000, "only {refused} flips were refused");
    // Undamaged again: the same plan.
    assert_eq!(plan_of(&st, &policy).unwrap().paths, good_plan.paths);
}

#[test]
fn truncated_or_extended_state_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let st = d.path().join("state");
    index_cache(&st, &example().join("cache"));
    let policy = Policy::load(&example().join("policy.toml")).unwrap();
    let good = plan_of(&st, &policy).unwrap();
    for name in state_files() {
        let f = st.join("index").join(name);
        let orig = std::fs::read(&f).unwrap();
        let mut longer = orig.clone();
        longer.push(b'\n');
        // An empty column can only be extended.
        let bads = if orig.is_empty() {
            vec![longer]
        } else {
            vec![orig[..orig.len() - 1].to_vec(), longer, Vec::new()]
        };
        for bad in bads {
            std::fs::write(&f, &bad).unwrap();
            match plan_of(&st, &policy) {
                Err(e) => assert!(format!("{e:#}").contains(name), "{name}: {e:#}"),
                // A newline after meta.json's JSON changes nothing; plan does not read the
                // quirks (the columns hold what it needs).
                Ok(p) => assert!(
                    ["meta.json", "quirks.bin.zst"].contains(&name) && p.paths == good.paths,
                    "{name}"
                ),
            }
        }
        std::fs::write(&f, &orig).unwrap();
    }
}

/// A policy for the example: app-two-0.9 is the only root and nothing is kept by rule.
fn app_two_policy(dir: &Path) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(
        &p,
        "[roots]\npaths = [\"/nix/store/iq8gc68q1gxnfr2sfg5rn5j4acyfw98n-app-two-0.9\"]\n\
         [keep]\ncontent_addressed = false\nmin_age_days = 0\n\
         [actions]\nunreachable = \"delete\"\norphan_nars = \"delete\"\n",
    )
    .unwrap();
    p
}

const APP_TWO: &str = "iq8gc68q1gxnfr2sfg5rn5j4acyfw98n.narinfo";
const CONF: &str = "xx3hkakpsdxrnyb83kbp58j1bfvysgvd-app-two.conf";

#[test]
fn narinfo_changed_since_last_index_is_reported_and_planned_with_both_versions() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    copy_tree(&example().join("cache"), &cache);
    let st = d.path().join("state");
    index_cache(&st, &cache);
    let policy = Policy::load(&app_two_policy(d.path())).unwrap();
    let before = plan_of(&st, &policy).unwrap();
    assert_eq!(before.path(CONF).unwrap().decision, Decision::Keep);
    // Drop the reference to app-two.conf (the size changes, so it is fetched again).
    let ni = cache.join(APP_TWO);
    let t = std::fs::read_to_string(&ni).unwrap();
    let edited = t.replace(&format!(" {CONF}"), "");
    assert_ne!(edited, t);
    std::fs::write(&ni, edited).unwrap();
    let m = json(&narward_ok(&st, &["index", "--json"]));
    assert_eq!(m["last_update"]["changed"], 1, "{m}");
    let after = plan_of(&st, &policy).unwrap();
    assert_eq!(
        after.path(CONF).unwrap().decision,
        Decision::Keep,
        "the reference the earlier narinfo named is kept"
    );
    let a = audit_of(&st).unwrap();
    assert_eq!(a.narinfo_changed.count, 1);
    assert!(
        a.narinfo_changed.examples[0].starts_with(APP_TWO)
            && a.narinfo_changed.examples[0].contains("References"),
        "{:?}",
        a.narinfo_changed.examples
    );
    // The earlier text survives further generations (here: a refetch with a new mtime).
    let t2 = std::fs::read_to_string(&ni).unwrap();
    std::fs::write(&ni, format!("{t2}\n")).unwrap();
    narward_ok(&st, &["index"]);
    assert_eq!(
        plan_of(&st, &policy).unwrap().path(CONF).unwrap().decision,
        Decision::Keep
    );
    assert_eq!(audit_of(&st).unwrap().narinfo_changed.count, 1);
}

#[test]
fn added_signature_is_not_a_narinfo_change() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    copy_tree(&example().join("cache"), &cache);
    let st = d.path().join("state");
    index_cache(&st, &cache);
    let ni = cache.join(APP_TWO);
    let t = std::fs::read_to_string(&ni).unwrap();
    std::fs::write(&ni, format!("{t}Sig: other-1:AAAA\n")).unwrap();
    let m = json(&narward_ok(&st, &["index", "--json"]));
    assert_eq!(m["last_update"]["fetched"], 1, "{m}");
    assert_eq!(m["last_update"]["changed"], 0, "{m}");
    assert_eq!(audit_of(&st).unwrap().narinfo_changed.count, 0);
}

#[test]
fn failed_first_index_leaves_no_state_directory() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    copy_tree(&example().join("cache"), &cache);
    let st = d.path().join("state");
    let url_text = format!("file://{}", cache.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(async {
        let url = narward::cache::CacheUrl::parse(&url_text)?;
        let c = narward::cache::Cache::open(&url, 1).await?;
        // The cache disappears after it was opened: listing fails inside `update`.
        std::fs::remove_dir_all(&cache)?;
        narward::index::update(
            &st,
            &url_text,
            &url,
            &c,
            narward::index::ListingSource::Live,
            4,
        )
        .await
    });
    assert!(r.is_err());
    assert!(!st.exists(), "a failed first index left {}", st.display());
}
