//! The incremental `narward index` row: a cache indexed once, then `percent` % of its
//! narinfos new or changed, then `narward index` again on that state (what is timed).
//!
//! The generated `file://` cache is never touched: the changed cache is a tree of hard
//! links to it (no new inodes, no copied bytes), and a changed or new narinfo is written
//! as a new file renamed over its link, so the original file keeps its content.
//!
//! Hard-linking changes every file's ctime, and `narward index` hashes again any narinfo
//! whose ctime is not older than the previous listing's start by its racy margin
//! ([`narward::cache::file_stat::RACY_MARGIN_NS`]); a real cache's previous index ran
//! long after its narinfos were written, so the setup waits out that margin before the
//! first index.

use crate::measure::{self, Limits};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the timed runs start from.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The hard-linked, then changed, cache.
    pub cache: PathBuf,
    /// The state directory indexed from the cache before the change (copied per run).
    pub base_state: PathBuf,
    /// Narinfos added.
    pub new: u64,
    /// Narinfos whose text changed (a second signature appended, as a re-signing does).
    pub changed: u64,
    /// The full index of the unchanged cache that made `base_state` (seconds).
    pub full_index_s: f64,
}

/// A second signature, by a key nobody trusts: the narinfo still parses, its text differs.
const EXTRA_SIG: &str = "Sig: narward-bench-2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n";

/// Hard-link `cache` into `dir/cache`, index it into `dir/base-state` with `narward`, then
/// change `percent` % of its narinfos (half new, half changed).
///
/// # Errors
/// A step fails (its command and output are named).
pub fn prepare(
    narward: &Path,
    cache: &Path,
    dir: &Path,
    percent: f64,
    limits: Limits,
) -> Result<Prepared> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let linked = dir.join("cache");
    let st = Command::new("cp")
        .arg("-al")
        .arg(cache)
        .arg(&linked)
        .status()
        .context("running cp -al")?;
    if !st.success() {
        bail!(
            "cp -al {} {} failed ({st})",
            cache.display(),
            linked.display()
        );
    }
    // As in a real cache: the narinfos are older than the first index by the racy margin.
    let margin = narward::cache::file_stat::RACY_MARGIN_NS.unsigned_abs();
    std::thread::sleep(std::time::Duration::from_nanos(margin + 500_000_000));
    let base_state = dir.join("base-state");
    let s = measure::run(
        index_command(narward, &base_state, &linked),
        limits,
        &dir.join("full-index"),
    )?;
    if !s.ok() {
        bail!(
            "the full index before the change failed (exit {}): {}",
            s.status,
            s.stderr_tail.trim()
        );
    }
    let (new, changed) = change_narinfos(&linked, percent)?;
    Ok(Prepared {
        cache: linked,
        base_state,
        new,
        changed,
        full_index_s: s.wall_s,
    })
}

/// `narward --state STATE -q --json index --cache file://CACHE`.
pub fn index_command(narward: &Path, state: &Path, cache: &Path) -> Command {
    let mut c = Command::new(narward);
    c.arg("--state")
        .arg(state)
        .args(["-q", "--json", "index", "--cache"])
        .arg(format!("file://{}", cache.display()));
    c
}

/// Copy `from` (a state directory) to `to`, replacing it.
///
/// # Errors
/// `cp -a` fails.
pub fn copy_state(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .context("running cp -a")?;
    if !st.success() {
        bail!("cp -a {} {} failed ({st})", from.display(), to.display());
    }
    Ok(())
}

/// The store-path hash of a new path made from an existing one: its characters reversed
/// (still nixbase32, and as random as the original).
fn new_hash(h: &str) -> String {
    h.chars().rev().collect()
}

/// Change `percent` % of the narinfos in `cache` (every k-th by name: one in two of them
/// gets a second signature, the other one a new path with the same content under a new
/// hash). Returns (new, changed).
fn change_narinfos(cache: &Path, percent: f64) -> Result<(u64, u64)> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .with_context(|| format!("listing {}", cache.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".narinfo"))
        .collect();
    names.sort_unstable();
    if percent <= 0.0 || names.is_empty() {
        return Ok((0, 0));
    }
    let k = ((100.0 / percent) as usize).max(1);
    let (mut new, mut changed) = (0u64, 0u64);
    for (i, name) in names.iter().enumerate().filter(|(i, _)| i % k == 0) {
        let p = cache.join(name);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        if (i / k).is_multiple_of(2) {
            let tmp = cache.join(format!("{name}.tmp"));
            std::fs::write(&tmp, format!("{text}{EXTRA_SIG}"))
                .with_context(|| format!("writing {}", tmp.display()))?;
            // rename replaces the link: the generated cache's file keeps its content.
            std::fs::rename(&tmp, &p).with_context(|| format!("replacing {}", p.display()))?;
            changed += 1;
        } else {
            let Some(h) = name.strip_suffix(".narinfo") else {
                continue;
            };
            let nh = new_hash(h);
            let np = cache.join(format!("{nh}.narinfo"));
            if np.exists() {
                continue;
            }
            let t = text.replacen(&format!("/nix/store/{h}-"), &format!("/nix/store/{nh}-"), 1);
            std::fs::write(&np, t).with_context(|| format!("writing {}", np.display()))?;
            new += 1;
        }
    }
    Ok((new, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_change_leaves_the_hard_linked_original_untouched() {
        let d = tempfile::tempdir().unwrap();
        let orig = d.path().join("orig");
        std::fs::create_dir_all(&orig).unwrap();
        let h = "0123456789abcdfghijklmnpqrsvwxyz";
        for i in 0..10 {
            let hh = format!("{}{i}", &h[..31]);
            std::fs::write(
                orig.join(format!("{hh}.narinfo")),
                format!("StorePath: /nix/store/{hh}-x\n"),
            )
            .unwrap();
        }
        let linked = d.path().join("linked");
        assert!(
            Command::new("cp")
                .arg("-al")
                .arg(&orig)
                .arg(&linked)
                .status()
                .unwrap()
                .success()
        );
        let (new, changed) = change_narinfos(&linked, 20.0).unwrap();
        assert_eq!((new, changed), (1, 1));
        // The original is as generated.
        for e in std::fs::read_dir(&orig).unwrap() {
            let t = std::fs::read_to_string(e.unwrap().path()).unwrap();
            assert!(!t.contains("Sig:"), "{t}");
        }
        assert_eq!(std::fs::read_dir(&orig).unwrap().count(), 10);
        let linked_n = std::fs::read_dir(&linked).unwrap().count();
        assert_eq!(linked_n, 11);
        let sigs = std::fs::read_dir(&linked)
            .unwrap()
            .filter(|e| {
                std::fs::read_to_string(e.as_ref().unwrap().path())
                    .unwrap()
                    .contains(EXTRA_SIG)
            })
            .count();
        assert_eq!(sigs, 1);
    }
}
