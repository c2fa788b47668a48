//! The restoration policy: who pays for getting archived paths back, how fast, and which
//! paths come back on demand. A TOML file; `examples/restore-policy.toml` documents every
//! key.
//!
//! [`RestorePolicy::load`] validates the file and reads every root set before anything is
//! computed; an error names the file, the key and the line.

use super::estimate::Tier;
use crate::policy::{Roots, RootsSection, read_root_section};
use anyhow::{Result, bail};
use narward_formats::store_path::StorePathHash;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use toml::Spanned;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestorePolicyFile {
    pub budget: BudgetSection,
    #[serde(default)]
    pub retrieval: RetrievalSection,
    #[serde(default)]
    pub demand: DemandSection,
    #[serde(default)]
    pub root_sets: Vec<RootSetSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// Most that restores may cost per calendar month (USD): retrieval, requests, the
    /// temporary restored copies and republishing.
    pub monthly_usd: Spanned<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSection {
    /// `bulk`, `standard` or `expedited`.
    #[serde(default = "default_tier")]
    pub default_tier: Spanned<String>,
    /// When set: the cheapest tier whose slowest time is within this many hours, instead
    /// of `default_tier`.
    pub deadline_hours: Option<Spanned<f64>>,
    /// RestoreObject `Days`: how long the restored temporary copy stays readable.
    #[serde(default = "default_days")]
    pub days: Spanned<u32>,
    /// How long republished paths stay hot before a plan may archive them again (the
    /// archive class's minimum storage duration is added when it has not run out).
    #[serde(default = "default_keep_hot")]
    pub keep_hot_days: Spanned<u32>,
}

impl Default for RetrievalSection {
    fn default() -> Self {
        RetrievalSection {
            default_tier: default_tier(),
            deadline_hours: None,
            days: default_days(),
            keep_hot_days: default_keep_hot(),
        }
    }
}

fn default_tier() -> Spanned<String> {
    Spanned::new(0..0, "bulk".into())
}
fn default_days() -> Spanned<u32> {
    Spanned::new(0..0, 7)
}
fn default_keep_hot() -> Spanned<u32> {
    Spanned::new(0..0, 90)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandSection {
    /// A path is proposed when its `.narinfo` was missed (404) at least this often...
    #[serde(default = "default_min_misses")]
    pub min_misses: Spanned<u64>,
    /// ...within this many days up to now.
    #[serde(default = "default_window")]
    pub window_days: Spanned<u32>,
    /// Propose the archived part of each path's closure with it (default true: a path
    /// without its references cannot be substituted).
    #[serde(default = "default_true")]
    pub closure: bool,
}

impl Default for DemandSection {
    fn default() -> Self {
        DemandSection {
            min_misses: default_min_misses(),
            window_days: default_window(),
            closure: true,
        }
    }
}

fn default_min_misses() -> Spanned<u64> {
    Spanned::new(0..0, 3)
}
fn default_window() -> Spanned<u32> {
    Spanned::new(0..0, 30)
}
fn default_true() -> bool {
    true
}

/// What a request for a path of a root set needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Restored on request: one miss is demand enough; paid from the budget.
    Automatic,
    /// Listed on one miss too, but marked as needing approval; not paid from the budget.
    Required,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSetSection {
    pub name: Spanned<String>,
    pub approval: Approval,
    /// The paths, as in a plan policy's `[roots]`.
    pub roots: RootsSection,
}

/// A root set with its paths read.
#[derive(Debug, Clone)]
pub struct RootSet {
    pub name: String,
    pub approval: Approval,
    pub roots: Roots,
    pub hashes: HashSet<StorePathHash>,
}

/// A validated restoration policy.
#[derive(Debug, Clone)]
pub struct RestorePolicy {
    /// The file's name as given (labels errors and the proposal).
    pub file: String,
    /// The text, copied into proposals.
    pub text: String,
    pub monthly_budget_usd: f64,
    pub default_tier: Tier,
    pub deadline_hours: Option<f64>,
    pub days: u32,
    pub keep_hot_days: u32,
    pub min_misses: u64,
    pub window_days: u32,
    pub closure: bool,
    pub root_sets: Vec<RootSet>,
}

/// `file: key (line N): message`.
fn at(
    name: &str,
    text: &str,
    key: &str,
    span: std::ops::Range<usize>,
    msg: String,
) -> anyhow::Error {
    if span.end == 0 {
        return anyhow::anyhow!("restore policy {name}: {key}: {msg}");
    }
    let line = text
        .get(..span.start)
        .map_or(0, |t| t.bytes().filter(|&b| b == b'\n').count())
        + 1;
    anyhow::anyhow!("restore policy {name}: {key} (line {line}): {msg}")
}

impl RestorePolicy {
    /// Read and validate a restoration policy; relative paths are relative to its
    /// directory.
    ///
    /// # Errors
    /// Unreadable file, TOML error (line and column), unknown key, a value out of range
    /// (key and line), an unreadable or malformed root source (file and line).
    pub fn load(path: &Path) -> Result<RestorePolicy> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("restore policy {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_str(&text, base, &path.display().to_string())
    }

    /// Parse policy text; `base` resolves relative paths, `name` labels errors.
    ///
    /// # Errors
    /// As [`RestorePolicy::load`].
    pub fn from_str(text: &str, base: &Path, name: &str) -> Result<RestorePolicy> {
        let f: RestorePolicyFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("restore policy {name}: {e}"))?;
        let err = |key: &str, span, msg: String| at(name, text, key, span, msg);
        let b = &f.budget.monthly_usd;
        if !(b.get_ref().is_finite() && *b.get_ref() >= 0.0) {
            return Err(err(
                "budget.monthly_usd",
                b.span(),
                format!("{} is not an amount of USD ≥ 0", b.get_ref()),
            ));
        }
        let r = &f.retrieval;
        let default_tier = Tier::parse(r.default_tier.get_ref())
            .map_err(|m| err("retrieval.default_tier", r.default_tier.span(), m))?;
        if let Some(d) = &r.deadline_hours
            && !(d.get_ref().is_finite() && *d.get_ref() > 0.0)
        {
            return Err(err(
                "retrieval.deadline_hours",
                d.span(),
                format!("{} is not a number of hours > 0", d.get_ref()),
            ));
        }
        for (key, v, max) in [
            ("retrieval.days", &r.days, 30_000),
            ("retrieval.keep_hot_days", &r.keep_hot_days, 36_500),
        ] {
            if !(1..=max).contains(v.get_ref()) {
                return Err(err(
                    key,
                    v.span(),
                    format!("{} is not a number of days from 1 to {max}", v.get_ref()),
                ));
            }
        }
        let d = &f.demand;
        if *d.min_misses.get_ref() == 0 {
            return Err(err(
                "demand.min_misses",
                d.min_misses.span(),
                "must be at least 1".into(),
            ));
        }
        if !(1..=3660).contains(d.window_days.get_ref()) {
            return Err(err(
                "demand.window_days",
                d.window_days.span(),
                format!(
                    "{} is not a number of days from 1 to 3660",
                    d.window_days.get_ref()
                ),
            ));
        }
        let root_sets = read_root_sets(&f.root_sets, text, base, name)?;
        Ok(RestorePolicy {
            file: name.to_string(),
            text: text.to_string(),
            monthly_budget_usd: *b.get_ref(),
            default_tier,
            deadline_hours: r.deadline_hours.as_ref().map(|d| *d.get_ref()),
            days: *r.days.get_ref(),
            keep_hot_days: *r.keep_hot_days.get_ref(),
            min_misses: *d.min_misses.get_ref(),
            window_days: *d.window_days.get_ref(),
            closure: d.closure,
            root_sets,
        })
    }

    /// The root sets that contain `hash`, first first.
    pub fn root_set_of(&self, hash: &StorePathHash) -> Option<&RootSet> {
        self.root_sets.iter().find(|s| s.hashes.contains(hash))
    }
}

fn read_root_sets(
    sets: &[RootSetSection],
    text: &str,
    base: &Path,
    name: &str,
) -> Result<Vec<RootSet>> {
    let mut out: Vec<RootSet> = Vec::new();
    for (i, s) in sets.iter().enumerate() {
        let n = s.name.get_ref();
        let key = format!("root_sets[{i}].name");
        if n.trim().is_empty() {
            return Err(at(name, text, &key, s.name.span(), "is empty".into()));
        }
        if out.iter().any(|o| &o.name == n) {
            return Err(at(
                name,
                text,
                &key,
                s.name.span(),
                format!("{n:?} is the name of an earlier root set"),
            ));
        }
        let label = format!("restore policy {name}: root_sets[{i}] ({n})");
        let roots = read_root_section(&s.roots, base, &label)
            .map_err(|e| anyhow::anyhow!("{label}: {e:#}"))?;
        if roots.is_empty() {
            bail!("{label}: names no store path (an empty root set is most likely a wrong file)");
        }
        out.push(RootSet {
            name: n.clone(),
            approval: s.approval,
            hashes: roots.hashes().iter().copied().collect(),
            roots,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-hello-2.12";

    fn parse(t: &str) -> Result<RestorePolicy> {
        RestorePolicy::from_str(t, Path::new("/nonexistent"), "r.toml")
    }

    fn err(t: &str) -> String {
        format!("{:#}", parse(t).unwrap_err())
    }

    #[test]
    fn defaults_and_every_key() {
        let p = parse("[budget]\nmonthly_usd = 20\n").unwrap();
        assert_eq!(p.monthly_budget_usd, 20.0);
        assert_eq!(p.default_tier, Tier::Bulk);
        assert_eq!(
            (p.days, p.keep_hot_days, p.min_misses, p.window_days),
            (7, 90, 3, 30)
        );
        assert!(p.closure && p.deadline_hours.is_none() && p.root_sets.is_empty());
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("rel.txt"), format!("{P1}\n")).unwrap();
        let t = "[budget]\nmonthly_usd = 5.5\n[retrieval]\ndefault_tier = \"standard\"\ndeadline_hours = 12\ndays = 3\nkeep_hot_days = 30\n[demand]\nmin_misses = 1\nwindow_days = 7\nclosure = false\n[[root_sets]]\nname = \"releases\"\napproval = \"automatic\"\n[root_sets.roots]\nfiles = [\"rel.txt\"]\n";
        let p = RestorePolicy::from_str(t, d.path(), "r.toml").unwrap();
        assert_eq!(p.default_tier, Tier::Standard);
        assert_eq!(p.deadline_hours, Some(12.0));
        assert_eq!(
            (p.days, p.keep_hot_days, p.min_misses, p.window_days),
            (3, 30, 1, 7)
        );
        assert!(!p.closure);
        assert_eq!(p.root_sets[0].approval, Approval::Automatic);
        let r0 = p.root_sets[0].roots.get(0).unwrap();
        assert_eq!(r0.path(), P1);
        let h = r0.hash;
        assert_eq!(p.root_set_of(&h).map(|s| s.name.as_str()), Some("releases"));
    }

    #[test]
    fn the_example_restore_policy_is_valid() {
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/restore-policy.toml");
        let p = RestorePolicy::load(&f).unwrap();
        assert_eq!(p.monthly_budget_usd, 25.0);
        assert_eq!(p.root_sets.len(), 2);
        assert_eq!(p.root_sets[1].approval, Approval::Required);
        assert!(p.root_sets[0].roots.len() >= 2);
    }

    #[test]
    fn invalid_values_name_file_key_and_line() {
        for (t, key, line) in [
            ("[budget]\nmonthly_usd = -1\n", "budget.monthly_usd", 2),
            ("[budget]\nmonthly_usd = nan\n", "budget.monthly_usd", 2),
            (
                "[budget]\nmonthly_usd = 1\n[retrieval]\n\ndefault_tier = \"fast\"\n",
                "retrieval.default_tier",
                5,
            ),
            (
                "[budget]\nmonthly_usd = 1\n[retrieval]\ndeadline_hours = 0\n",
                "retrieval.deadline_hours",
                4,
            ),
            (
                "[budget]\nmonthly_usd = 1\n[retrieval]\ndays = 0\n",
                "retrieval.days",
                4,
            ),
            (
                "[budget]\nmonthly_usd = 1\n[retrieval]\nkeep_hot_days = 0\n",
                "retrieval.keep_hot_days",
                4,
            ),
            (
                "[budget]\nmonthly_usd = 1\n[demand]\nmin_misses = 0\n",
                "demand.min_misses",
                4,
            ),
            (
                "[budget]\nmonthly_usd = 1\n[demand]\nwindow_days = 0\n",
                "demand.window_days",
                4,
            ),
        ] {
            let m = err(t);
            assert!(
                m.contains("r.toml") && m.contains(key) && m.contains(&format!("line {line}")),
                "{t}: {m}"
            );
        }
    }

    #[test]
    fn unknown_keys_missing_budget_and_bad_root_sets_are_refused() {
        let m = err("[budget]\nmonthly_usd = 1\n[demand]\nmin_mises = 2\n");
        assert!(
            m.contains("r.toml") && m.contains("min_mises") && m.contains("line 4"),
            "{m}"
        );
        assert!(err("[retrieval]\ndays = 2\n").contains("budget"));
        let m = err(
            "[budget]\nmonthly_usd = 1\n[[root_sets]]\nname = \"a\"\napproval = \"maybe\"\n[root_sets.roots]\n",
        );
        assert!(m.contains("approval") || m.contains("maybe"), "{m}");
        let m = err(
            "[budget]\nmonthly_usd = 1\n[[root_sets]]\nname = \"a\"\napproval = \"required\"\n[root_sets.roots]\nfiles = [\"nope.txt\"]\n",
        );
        assert!(m.contains("root_sets[0]") && m.contains("nope.txt"), "{m}");
        let m = err(
            "[budget]\nmonthly_usd = 1\n[[root_sets]]\nname = \"a\"\napproval = \"required\"\n[root_sets.roots]\n",
        );
        assert!(m.contains("names no store path"), "{m}");
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), format!("{P1}\n/nix/store/bad\n")).unwrap();
        let t = "[budget]\nmonthly_usd = 1\n[[root_sets]]\nname = \"a\"\napproval = \"required\"\n[root_sets.roots]\nfiles = [\"a.txt\"]\n";
        let m = format!(
            "{:#}",
            RestorePolicy::from_str(t, d.path(), "r.toml").unwrap_err()
        );
        assert!(m.contains("a.txt:2"), "{m}");
        let t = format!(
            "[budget]\nmonthly_usd = 1\n[[root_sets]]\nname = \"a\"\napproval = \"required\"\nroots = {{ paths = [\"{P1}\"] }}\n[[root_sets]]\nname = \"a\"\napproval = \"required\"\nroots = {{ paths = [\"{P1}\"] }}\n"
        );
        let m = err(&t);
        assert!(
            m.contains("root_sets[1].name") && m.contains("line 8"),
            "{m}"
        );
    }
}
