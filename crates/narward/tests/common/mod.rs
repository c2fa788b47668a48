//! Shared helpers of the integration tests: run the real `narward` binary, find the repo,
//! reach the local S3 server (moto, started by scripts/test.sh) and real Nix.
#![allow(dead_code)]

pub mod file_fx;
pub mod s3_fx;

use narward_formats::hash::Sha256;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Run `narward ARGS` with `--state STATE`; returns the output (any exit code).
pub fn narward(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_narward"))
        .args(args)
        .arg("--state")
        .arg(state)
        .arg("--quiet")
        .output()
        .expect("run narward")
}

/// Run and require success; returns stdout.
pub fn narward_ok(state: &Path, args: &[&str]) -> String {
    let out = narward(state, args);
    assert!(
        out.status.success(),
        "narward {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

/// The local S3 endpoint. scripts/test.sh starts moto and sets it; running the S3 tests
/// without it is a mistake worth a clear failure, not a silent skip.
pub fn s3_endpoint() -> String {
    std::env::var("NARWARD_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("NARWARD_TEST_S3_ENDPOINT is not set: run the tests with `bash scripts/test.sh` (it starts a local moto S3 server)")
    })
}

/// Copy a directory tree into a fresh bucket on the local S3 server (public-read, so Nix
/// can use it as an http binary cache). Returns the bucket's http URL.
pub fn upload(bucket: &str, dir: &Path, prefix: Option<&str>) -> String {
    let mut c = Command::new("python3");
    c.arg(repo().join("scripts/s3-upload-cache.py"))
        .arg(bucket)
        .arg(dir);
    if let Some(p) = prefix {
        c.arg("--prefix").arg(p);
    }
    let out = c.output().expect("python3");
    assert!(
        out.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether real Nix is usable. In CI (CI=true) it must be: a missing Nix fails the test
/// instead of silently skipping what the Nix tests prove.
pub fn nix_available() -> bool {
    if std::env::var("NARWARD_TEST_NIX").is_ok_and(|v| v == "1") {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("CI is set but NARWARD_TEST_NIX is not: scripts/test.sh could not make Nix work");
    }
    eprintln!("NOTE: real Nix not available (run via scripts/test.sh); skipping the Nix part");
    false
}

/// Copy a directory tree (for tests that damage a cache).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// Read a file of store paths (sorted, one per line, `#` comments).
pub fn path_set(p: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn nix32(h: &str) -> String {
    Sha256::parse(h)
        .map(|(s, _)| s.to_nix32_prefixed())
        .unwrap_or_else(|e| panic!("{h}: {e}"))
}

/// Nix's `path-info --json` and narward's `paths` in one comparable shape.
pub fn normalize(v: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|p| {
            let mut refs: Vec<String> = p["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            refs.sort();
            let mut sigs: Vec<String> = p
                .get("signatures")
                .and_then(|s| s.as_array())
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            sigs.sort();
            serde_json::json!({
                "path": p["path"],
                "narHash": nix32(p["narHash"].as_str().unwrap()),
                "narSize": p["narSize"],
                "references": refs,
                "deriver": p.get("deriver").cloned().unwrap_or(Value::Null),
                "signatures": sigs,
                "ca": p.get("ca").cloned().unwrap_or(Value::Null),
                "url": p["url"],
                "downloadHash": p.get("downloadHash").and_then(|h| h.as_str()).map(nix32),
                "downloadSize": p.get("downloadSize").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}
