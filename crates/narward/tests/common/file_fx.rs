//! A work directory with a file:// copy of examples/cache, indexed and planned (used by
//! apply_file and restore_exec).

use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const T0: i64 = 1_800_000_000;
pub const DAY: i64 = 86_400;

/// A work directory holding `cache/` (a copy of examples/cache), the policy and its roots,
/// the state, and a plan.
pub struct Fx {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Fx {
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }
    pub fn archive(&self) -> PathBuf {
        self.dir.join("cache.narward-archive")
    }
    pub fn quarantine(&self) -> PathBuf {
        self.dir.join("cache.narward-quarantine")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn plan(&self) -> String {
        self.dir.join("plan").display().to_string()
    }
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        narward(&self.state(), args)
    }
    pub fn ok(&self, args: &[&str]) -> String {
        narward_ok(&self.state(), args)
    }
}

/// Copy the example, index it and plan with `unreachable` (archive NARs of at least 1 KiB,
/// orphans deleted).
pub fn fixture(unreachable: &str) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    copy_preserving(&repo().join("examples/cache"), &dir.join("cache"));
    copy_preserving(&repo().join("examples/roots"), &dir.join("roots"));
    let policy = std::fs::read_to_string(repo().join("examples/policy.toml"))
        .unwrap()
        .replace(
            "unreachable = \"archive\"",
            &format!("unreachable = \"{unreachable}\""),
        )
        .replace("archive_min_size = \"128KiB\"", "archive_min_size = \"1B\"");
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let fx = Fx { _tmp: tmp, dir };
    let url = format!("file://{}", fx.cache().display());
    fx.ok(&["index", "--cache", &url]);
    let policy = fx.dir.join("policy.toml").display().to_string();
    fx.ok(&["plan", "--policy", &policy, "--out", &fx.plan()]);
    fx
}

/// `cp -a`: the file:// ETag of a NAR includes its mtime.
pub fn copy_preserving(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Every file under `root`: relative name → bytes (temporary files included, so a
/// leftover one fails a comparison).
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    if !root.exists() {
        return m;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let k = p.strip_prefix(root).unwrap().display().to_string();
                m.insert(k, std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

/// The plan's decisions: key → (decision, moved?) from `plan show`-independent reading
/// of the library.
pub fn plan_of(fx: &Fx) -> narward::plan::Plan {
    narward::plan::Plan::read(Path::new(&fx.plan())).unwrap()
}
