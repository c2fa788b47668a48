//! Proven against Nix itself: a cache written by real Nix (`nix copy --to file://…`) is
//! indexed (from the directory and from S3) exactly as `nix path-info` sees it, its
//! signatures verify, and a plan keeps exactly `nix-store -qR` of the roots.
//! Needs real Nix (scripts/test.sh sets NARWARD_TEST_NIX=1); CI fails without it.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::Command;

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn real_nix_cache_index_plan_and_substitution() {
    if !nix_available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("fx");
    sh(Command::new("bash")
        .arg(repo().join("scripts/make-nix-fixture.sh"))
        .arg(&out)
        .env("NARWARD_FIXTURE_KEY_DIR", d.path().join("keys")));
    let cache = out.join("cache");
    let url = format!("file://{}", cache.display());
    let st = d.path().join("state");
    narward_ok(&st, &["index", "--cache", &url]);

    // 1. The index agrees with Nix's own reading of the cache.
    let nix_json = sh(Command::new("nix").args(["path-info", "--all", "--json", "--store", &url]));
    let ours = json(&narward_ok(&st, &["paths"]));
    assert_eq!(normalize(&ours), normalize(&json(&nix_json)));

    // 2. Signatures made by Nix verify; the one path uploaded unsigned is reported.
    let pk = std::fs::read_to_string(d.path().join("keys/pk")).unwrap();
    let a = json(&String::from_utf8_lossy(
        &narward(&st, &["audit", "--json", "--trusted-key", pk.trim()]).stdout,
    ));
    let n = a["narinfos"].as_u64().unwrap();
    assert_eq!(a["signatures"]["valid"].as_u64().unwrap() + 1, n, "{a}");
    assert_eq!(a["signatures"]["unsigned"]["count"], 1);
    assert_eq!(a["missing_nar"]["count"], 0);
    assert_eq!(a["closure_holes"]["count"], 0);

    // 3. The kept set is exactly the union of `nix-store -qR` of the roots.
    for (label, files) in [
        ("a", vec!["release-a.txt"]),
        ("ab", vec!["release-a.txt", "release-b.txt"]),
    ] {
        let roots: Vec<String> = files
            .iter()
            .flat_map(|f| path_set(&out.join("roots").join(f)))
            .collect();
        let want: BTreeSet<String> = sh(Command::new("nix-store").arg("-qR").args(&roots))
            .lines()
            .map(str::to_string)
            .collect();
        let policy = d.path().join(format!("{label}.toml"));
        let list: Vec<String> = files
            .iter()
            .map(|f| format!("\"{}\"", out.join("roots").join(f).display()))
            .collect();
        std::fs::write(&policy, format!("[roots]\nfiles = [{}]\n[keep]\nmin_age_days = 0\n[actions]\nunreachable = \"delete\"\n", list.join(", "))).unwrap();
        let plan = d.path().join(format!("plan-{label}"));
        narward_ok(
            &st,
            &[
                "plan",
                "--policy",
                policy.to_str().unwrap(),
                "--out",
                plan.to_str().unwrap(),
            ],
        );
        let mut kept = BTreeSet::new();
        for p in json(&nix_json).as_array().unwrap() {
            let path = p["path"].as_str().unwrap();
            let w = json(&narward_ok(
                &st,
                &["why", "--json", "--plan", plan.to_str().unwrap(), path],
            ));
            if w["decision"] == "keep" {
                kept.insert(path.to_string());
            }
        }
        assert_eq!(kept, want, "release set {label}");
    }

    // 4. The same cache in S3: identical index, and a real Nix client substitutes from it.
    let bucket = format!("nix-real-{}", std::process::id());
    let http = upload(&bucket, &cache, None);
    let st3 = d.path().join("state-s3");
    narward_ok(
        &st3,
        &[
            "index",
            "--cache",
            &format!("s3://{bucket}?endpoint={}&region=us-east-1", s3_endpoint()),
        ],
    );
    assert_eq!(json(&narward_ok(&st3, &["paths"])), ours);
    let roots: Vec<String> = path_set(&out.join("roots/release-a.txt"))
        .into_iter()
        .collect();
    sh(Command::new("bash")
        .arg(repo().join("scripts/nix-substitute-check.sh"))
        .arg(&http)
        .arg(pk.trim())
        .args(&roots));
}
