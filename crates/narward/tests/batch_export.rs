//! `narward batch-export`: an s3:// plan (made as the other S3 tests make them: the example
//! cache uploaded to moto, indexed, planned) as S3 Batch Operations jobs: the manifests
//! hold exactly the plan's objects, in the safe phase order, with the right operations.

mod common;
use common::*;
use narward::plan::{Decision, Plan};
use narward_formats::keys::Category;
use std::collections::BTreeSet;
use std::path::Path;

/// The example policy with `actions` changed: (key, value) pairs replaced.
fn policy(dir: &Path, changes: &[(&str, &str)]) -> std::path::PathBuf {
    let ex = repo().join("examples");
    copy_tree(&ex.join("roots"), &dir.join("roots"));
    let mut text = std::fs::read_to_string(ex.join("policy.toml")).unwrap();
    for (k, v) in changes {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{k} =")))
            .unwrap_or_else(|| panic!("{k} not in the example policy"))
            .to_string();
        text = text.replace(&line, &format!("{k} = {v}"));
    }
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn s3_plan(
    d: &Path,
    tag: &str,
    changes: &[(&str, &str)],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let b = format!("nw-bx{tag}-{}", n % 1_000_000_000);
    upload(&b, &repo().join("examples/cache"), None);
    let st = d.join(format!("st-{tag}"));
    let url = format!("s3://{b}?endpoint={}&region=us-east-1", s3_endpoint());
    narward_ok(&st, &["index", "--cache", &url]);
    let pol = policy(&d.join(format!("pol-{tag}")), changes);
    let plan = d.join(format!("plan-{tag}"));
    narward_ok(
        &st,
        &[
            "plan",
            "--policy",
            pol.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    );
    (st, plan)
}

fn manifest_keys(dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(dir.join("manifest.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split_once(',').unwrap().1.to_string())
        .collect()
}

fn keys(p: &Plan, f: impl Fn(&narward::plan::ObjectDecision) -> bool) -> BTreeSet<String> {
    p.objects
        .iter()
        .filter(|o| f(o))
        .map(|o| o.key.clone())
        .collect()
}

fn jobs_of(out: &Path) -> Vec<serde_json::Value> {
    json(&std::fs::read_to_string(out.join("jobs.json")).unwrap())
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn batch_export_writes_the_plan_phase_by_phase_with_exactly_its_objects() {
    let d = tempfile::tempdir().unwrap();
    let (st, plan_dir) = s3_plan(d.path(), "a", &[("archive_min_size", "\"0\"")]);
    let plan = Plan::read(&plan_dir).unwrap();
    let out = d.path().join("jobs");
    narward_ok(
        &st,
        &[
            "batch-export",
            plan_dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let jobs = jobs_of(&out);
    let names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "01-hide-copy-to-archive",
            "02-hide-expire",
            "03-transition-deep_archive",
            "04-quarantine-copy",
            "05-quarantine-expire"
        ]
    );
    let phases: Vec<u64> = jobs.iter().map(|j| j["phase"].as_u64().unwrap()).collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    let hidden = keys(&plan, |o| {
        o.decision == Decision::Archive && o.category != Category::Nar
    });
    let moved = keys(&plan, |o| {
        o.decision == Decision::Archive && o.transition_to.is_some()
    });
    let deleted = keys(&plan, |o| o.decision == Decision::Delete);
    assert!(!hidden.is_empty() && !moved.is_empty() && !deleted.is_empty());
    assert_eq!(manifest_keys(&out.join(names[0])), hidden);
    assert_eq!(manifest_keys(&out.join(names[1])), hidden);
    assert_eq!(manifest_keys(&out.join(names[2])), moved);
    assert_eq!(manifest_keys(&out.join(names[3])), deleted);
    assert_eq!(manifest_keys(&out.join(names[4])), deleted);
    for (j, want) in jobs
        .iter()
        .zip([&hidden, &hidden, &moved, &deleted, &deleted])
    {
        assert_eq!(j["objects"].as_u64().unwrap(), want.len() as u64);
    }
    // The operations: copy to the archive prefix, tag, transition in place, quarantine.
    let job = |n: &str| json(&std::fs::read_to_string(out.join(n).join("job.json")).unwrap());
    let copy = &job(names[0])["Operation"]["S3PutObjectCopy"];
    assert_eq!(copy["TargetKeyPrefix"], "narward-archive/");
    let t = &job(names[2])["Operation"]["S3PutObjectCopy"];
    assert_eq!(t["StorageClass"], "DEEP_ARCHIVE");
    assert!(t.get("TargetKeyPrefix").is_none(), "in place: {t}");
    let tag = &job(names[1])["Operation"]["S3PutObjectTagging"]["TagSet"][0];
    assert_eq!(tag["Key"], "narward-expire");
    let q = &job(names[3])["Operation"]["S3PutObjectCopy"];
    assert!(
        q["TargetKeyPrefix"]
            .as_str()
            .unwrap()
            .starts_with("narward-quarantine/"),
        "{q}"
    );
    // The ETag in the request is the manifest's MD5 (a single-PUT upload's ETag).
    use md5::Digest;
    let m = std::fs::read(out.join(names[2]).join("manifest.csv")).unwrap();
    assert_eq!(
        job(names[2])["Manifest"]["Location"]["ETag"],
        hex::encode(md5::Md5::digest(&m))
    );
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(
        readme.contains("EACH PHASE MUST HAVE FINISHED COMPLETELY"),
        "{readme}"
    );
    let lc = json(&std::fs::read_to_string(out.join("lifecycle.json")).unwrap());
    assert_eq!(lc["Rules"][0]["Filter"]["Tag"]["Key"], "narward-expire");
    // Never overwritten.
    let again = narward(
        &st,
        &[
            "batch-export",
            plan_dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn batch_export_hides_narinfos_of_deleted_paths_before_quarantining_their_nars() {
    let d = tempfile::tempdir().unwrap();
    let (st, plan_dir) = s3_plan(d.path(), "d", &[("unreachable", "\"delete\"")]);
    let plan = Plan::read(&plan_dir).unwrap();
    let out = d.path().join("jobs");
    narward_ok(
        &st,
        &[
            "batch-export",
            plan_dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let names: Vec<String> = jobs_of(&out)
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "01-hide-copy-to-quarantine",
            "02-hide-expire",
            "03-quarantine-copy",
            "04-quarantine-expire"
        ]
    );
    let face = |o: &narward::plan::ObjectDecision| {
        o.decision == Decision::Delete
            && matches!(o.category, Category::Narinfo | Category::Listing)
    };
    let hidden = keys(&plan, face);
    let rest = keys(&plan, |o| o.decision == Decision::Delete && !face(o));
    assert!(hidden.iter().any(|k| k.ends_with(".narinfo")));
    assert!(rest.iter().any(|k| k.starts_with("nar/")));
    assert_eq!(manifest_keys(&out.join(&names[0])), hidden);
    assert_eq!(manifest_keys(&out.join(&names[2])), rest);
}

#[test]
fn batch_export_of_a_file_plan_is_refused_naming_the_plan() {
    let d = tempfile::tempdir().unwrap();
    let st = d.path().join("st");
    let cache = repo().join("examples/cache");
    narward_ok(
        &st,
        &["index", "--cache", &format!("file://{}", cache.display())],
    );
    let plan = d.path().join("plan");
    let pol = repo().join("examples/policy.toml");
    narward_ok(
        &st,
        &[
            "plan",
            "--policy",
            pol.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    );
    let out = narward(
        &st,
        &[
            "batch-export",
            plan.to_str().unwrap(),
            "--out",
            d.path().join("j").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains(plan.to_str().unwrap()) && e.contains("not s3://"),
        "{e}"
    );
    assert!(!d.path().join("j").exists());
}
