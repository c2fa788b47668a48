//! Reading plans back: the summary (`plan show`), what moved between two plans
//! (`plan diff`) and why one path or object has its fate (`why`). Pure functions over
//! plans (and, for referrers, the index).

use crate::cache_graph::CacheGraph;
use crate::plan::{CountBytes, Decision, PathDecision, Plan, PlanHeader, Reason, RestoreItem};
use narward_formats::store_path::{STORE_DIR, StorePath, StorePathHash};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Bytes for people: 1.5 GiB.
pub fn human_bytes(b: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The text of `plan show`.
pub fn summary_text(plan: &Plan) -> String {
    summary_text_of(&plan.header, &plan.restore)
}

/// [`summary_text`] of a plan's header and restore set (what `narward plan` holds once
/// it has written the decisions).
pub fn summary_text_of(h: &PlanHeader, restore: &[RestoreItem]) -> String {
    let s = &h.summary;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "plan for {} (index generation {})",
        h.cache, h.index_generation
    );
    let _ = writeln!(
        o,
        "  policy {} (sha256 {})",
        h.policy_file,
        &h.policy_sha256[..16.min(h.policy_sha256.len())]
    );
    let _ = writeln!(o, "  checksum {}", h.checksum);
    let _ = writeln!(
        o,
        "  bucket versioning: {} ({}); a delete is: {}",
        h.versioning.state.as_str(),
        h.versioning.source,
        h.delete_mode()
    );
    let _ = writeln!(
        o,
        "roots: {} given, {} found in the cache, {} missing",
        h.roots.total, h.roots.found, h.roots.missing
    );
    for (l, n, m) in &h.roots.by_source {
        let _ = writeln!(o, "    {l}: {n} roots, {m} missing");
    }
    for m in h.roots.missing_examples.iter().take(10) {
        let _ = writeln!(o, "    missing: {m}");
    }
    let _ = writeln!(o, "store paths:");
    for d in Decision::ALL {
        let cb = s.paths.get(&d).copied().unwrap_or_default();
        let _ = writeln!(
            o,
            "  {:8} {:>10} paths {:>12}",
            d.as_str(),
            cb.count,
            human_bytes(cb.bytes)
        );
    }
    if !s.kept_by_reason.is_empty() {
        let r: Vec<String> = s
            .kept_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(o, "  kept because: {}", r.join(", "));
    }
    let _ = writeln!(o, "objects:");
    for d in Decision::ALL {
        let Some(cats) = s.objects.get(&d) else {
            continue;
        };
        let total = cats
            .values()
            .fold(CountBytes::default(), |a, b| CountBytes {
                count: a.count + b.count,
                bytes: a.bytes + b.bytes,
            });
        let per: Vec<String> = cats
            .iter()
            .map(|(c, cb)| format!("{} {}", c.as_str(), cb.count))
            .collect();
        let _ = writeln!(
            o,
            "  {:8} {:>10} objects {:>12}  ({})",
            d.as_str(),
            total.count,
            human_bytes(total.bytes),
            per.join(", ")
        );
    }
    if s.transitions.count + s.hidden_only_small_nars.count > 0 {
        let _ = writeln!(
            o,
            "  archive: {} NARs ({}) move to {}; {} NARs ({}) below the minimum size are only hidden",
            s.transitions.count,
            human_bytes(s.transitions.bytes),
            h.archive_storage_class,
            s.hidden_only_small_nars.count,
            human_bytes(s.hidden_only_small_nars.bytes)
        );
    }
    if s.already_archived_nars.count > 0 {
        let _ = writeln!(
            o,
            "  already archived: {} NARs ({}) are in GLACIER or DEEP_ARCHIVE already: their paths are hidden, the NARs are not copied",
            s.already_archived_nars.count,
            human_bytes(s.already_archived_nars.bytes)
        );
    }
    restore_warning(&mut o, h, restore);
    if s.unparseable_narinfos > 0 {
        let _ = writeln!(
            o,
            "  {} unparseable narinfos kept as unknown",
            s.unparseable_narinfos
        );
    }
    if s.closure_holes > 0 {
        let _ = writeln!(
            o,
            "  {} references to paths with no narinfo (closure holes)",
            s.closure_holes
        );
    }
    o
}

/// The warning about the restore set: kept paths whose NAR is archived, so their narinfo
/// is served while the NAR cannot be fetched.
fn restore_warning(o: &mut String, h: &PlanHeader, restore: &[RestoreItem]) {
    let r = h.summary.restore;
    if r.count == 0 {
        return;
    }
    let _ = writeln!(
        o,
        "  warning: {} kept paths ({}) have their NAR in GLACIER or DEEP_ARCHIVE: their narinfos are served but the NARs cannot be fetched until restored (the plan's restore set{})",
        r.count,
        human_bytes(r.bytes),
        if crate::plan::s3_location(&h.cache).is_some() {
            ", manifests/restore.csv"
        } else {
            ""
        }
    );
    for i in restore.iter().take(5) {
        let _ = writeln!(
            o,
            "    {STORE_DIR}/{} -> {} ({}, {})",
            i.path,
            i.nar_key,
            i.storage_class,
            human_bytes(i.size)
        );
    }
    if restore.len() > 5 {
        let _ = writeln!(o, "    … and {} more", restore.len() - 5);
    }
}

/// What moved between two plans.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PlanDiff {
    pub a: String,
    pub b: String,
    /// "from->to" → objects and bytes, for objects present in both.
    pub objects_moved: BTreeMap<String, CountBytes>,
    /// "from->to" → paths and NAR file bytes, for paths present in both.
    pub paths_moved: BTreeMap<String, CountBytes>,
    pub objects_only_in_a: u64,
    pub objects_only_in_b: u64,
    /// The largest paths whose decision differs: (path, from, to, NAR file bytes).
    pub largest: Vec<(String, Decision, Decision, u64)>,
}

/// Compare two plans by object key and by store path.
pub fn diff(a: &Plan, b: &Plan, top: usize) -> PlanDiff {
    let mut d = PlanDiff {
        a: a.header.checksum.clone(),
        b: b.header.checksum.clone(),
        ..Default::default()
    };
    let bo: HashMap<&str, &crate::plan::ObjectDecision> =
        b.objects.iter().map(|o| (o.key.as_str(), o)).collect();
    for o in &a.objects {
        match bo.get(o.key.as_str()) {
            None => d.objects_only_in_a += 1,
            Some(x) if x.decision != o.decision => {
                let e = d
                    .objects_moved
                    .entry(format!("{}->{}", o.decision.as_str(), x.decision.as_str()))
                    .or_default();
                e.count += 1;
                e.bytes += o.size;
            }
            Some(_) => {}
        }
    }
    let ao: std::collections::HashSet<&str> = a.objects.iter().map(|o| o.key.as_str()).collect();
    d.objects_only_in_b = b
        .objects
        .iter()
        .filter(|o| !ao.contains(o.key.as_str()))
        .count() as u64;
    let bp: HashMap<&str, &PathDecision> = b.paths.iter().map(|p| (p.path.as_str(), p)).collect();
    let mut moved = Vec::new();
    for p in &a.paths {
        if let Some(x) = bp.get(p.path.as_str())
            && x.decision != p.decision
        {
            let e = d
                .paths_moved
                .entry(format!("{}->{}", p.decision.as_str(), x.decision.as_str()))
                .or_default();
            let bytes = p.file_size.unwrap_or(p.nar_size);
            e.count += 1;
            e.bytes += bytes;
            moved.push((p.path.clone(), p.decision, x.decision, bytes));
        }
    }
    moved.sort_by(|x, y| y.3.cmp(&x.3).then(x.0.cmp(&y.0)));
    moved.truncate(top);
    d.largest = moved;
    d
}

impl PlanDiff {
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "plan A {}\nplan B {}", self.a, self.b);
        if self.paths_moved.is_empty() && self.objects_moved.is_empty() {
            let _ = writeln!(o, "no object or path changes its decision");
        }
        for (k, v) in &self.paths_moved {
            let _ = writeln!(
                o,
                "  paths   {k:18} {:>10} {:>12}",
                v.count,
                human_bytes(v.bytes)
            );
        }
        for (k, v) in &self.objects_moved {
            let _ = writeln!(
                o,
                "  objects {k:18} {:>10} {:>12}",
                v.count,
                human_bytes(v.bytes)
            );
        }
        if self.objects_only_in_a + self.objects_only_in_b > 0 {
            let _ = writeln!(
                o,
                "  objects only in A: {}, only in B: {}",
                self.objects_only_in_a, self.objects_only_in_b
            );
        }
        if !self.largest.is_empty() {
            let _ = writeln!(o, "largest paths that moved:");
            for (p, f, t, b) in &self.largest {
                let _ = writeln!(
                    o,
                    "  {:>10}  {} -> {}  {STORE_DIR}/{p}",
                    human_bytes(*b),
                    f.as_str(),
                    t.as_str()
                );
            }
        }
        o
    }
}

/// One step of a `why` chain.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub path: String,
    pub decision: Decision,
    pub reason: String,
}

/// The answer of `why`.
#[derive(Debug, Clone, Serialize)]
pub struct Why {
    pub path: String,
    pub decision: Decision,
    pub reason: Reason,
    pub explanation: String,
    /// For a kept path: root → … → path.
    pub chain: Vec<Step>,
    /// The objects of this path and their decisions: (key, decision, transition_to).
    pub objects: Vec<(String, Decision, Option<String>)>,
    /// Direct referrers and their decisions (when the index is at hand).
    pub referrers: Vec<Step>,
    pub nearest_kept_referrer: Option<String>,
    /// For a kept path whose NAR is archived: its restore-set entry (the path is not
    /// servable until the NAR is restored).
    pub restore: Option<RestoreItem>,
}

/// Explain one path (full path, base name or hash) or one object key.
///
/// `graph`: the [`CacheGraph`] of the plan's cache, for the direct referrers (its reverse
/// references: the same references the plan followed, unknown narinfos included).
pub fn why(plan: &Plan, query: &str, graph: Option<&CacheGraph<'_>>) -> Option<Why> {
    let pd = match plan.path(query) {
        Some(p) => p,
        None => {
            let o = plan.object(query)?;
            return Some(Why {
                path: o.key.clone(),
                decision: o.decision,
                reason: o.reason.clone(),
                explanation: format!("object {}: {} — {}", o.key, o.decision.as_str(), o.reason),
                chain: Vec::new(),
                objects: vec![(o.key.clone(), o.decision, o.transition_to.clone())],
                referrers: Vec::new(),
                nearest_kept_referrer: None,
                restore: None,
            });
        }
    };
    let mut chain = vec![Step {
        path: pd.path.clone(),
        decision: pd.decision,
        reason: pd.reason.to_string(),
    }];
    let mut cur = pd;
    while let Reason::Reachable { from } = &cur.reason {
        let Some(next) = plan.path(&from.to_string()) else {
            break;
        };
        if chain.len() > plan.paths.len() {
            break;
        }
        chain.push(Step {
            path: next.path.clone(),
            decision: next.decision,
            reason: next.reason.to_string(),
        });
        cur = next;
    }
    chain.reverse();
    let hash = pd.path.split('-').next().unwrap_or(&pd.path).to_string();
    let mut objects = Vec::new();
    for k in [
        Some(format!("{hash}.narinfo")),
        pd.nar_key.clone(),
        Some(format!("{hash}.ls")),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(o) = plan.object(&k) {
            objects.push((o.key.clone(), o.decision, o.transition_to.clone()));
        }
    }
    let referrers = graph.map_or_else(Vec::new, |g| direct_referrers(plan, g, &hash));
    let nearest_kept_referrer = referrers
        .iter()
        .find(|r| r.decision == Decision::Keep)
        .map(|r| r.path.clone());
    let explanation = match pd.decision {
        Decision::Keep => {
            let names: Vec<String> = chain
                .iter()
                .map(|s| format!("{STORE_DIR}/{}", s.path))
                .collect();
            format!(
                "kept: {}\n  chain: {}",
                keep_headline(pd, &chain),
                names.join("\n      -> ")
            )
        }
        d => {
            let mut e = format!("{}: {}", d.as_str(), pd.reason);
            match &nearest_kept_referrer {
                Some(r) => {
                    let _ = write!(e, "; nearest kept referrer {STORE_DIR}/{r}");
                }
                None if graph.is_some() => {
                    let _ = write!(
                        e,
                        "; no kept path refers to it ({} removed referrers)",
                        referrers.len()
                    );
                }
                None => {}
            }
            e
        }
    };
    let restore = plan.restore_item(&pd.path).cloned();
    let explanation = match nar_note(plan, pd, restore.as_ref()) {
        Some(n) => format!("{explanation}\n  {n}"),
        None => explanation,
    };
    Some(Why {
        path: format!("{STORE_DIR}/{}", pd.path),
        decision: pd.decision,
        reason: pd.reason.clone(),
        explanation,
        chain,
        objects,
        referrers,
        nearest_kept_referrer,
        restore,
    })
}

/// The paths whose references name `hash` (itself excepted), with their decisions.
fn direct_referrers(plan: &Plan, g: &CacheGraph<'_>, hash: &str) -> Vec<Step> {
    let Some(id) = StorePathHash::parse(hash).ok().and_then(|h| g.id(&h)) else {
        return Vec::new();
    };
    g.referrers(id)
        .iter()
        .filter(|&&r| r != id)
        .filter_map(|&r| plan.path(&g.hash(r).to_string()))
        .map(|p| Step {
            path: p.path.clone(),
            decision: p.decision,
            reason: p.reason.to_string(),
        })
        .collect()
}

/// What `why` says about a path's NAR in an archive class: a kept path's must be restored
/// (`restore`: its restore-set entry); an archived path's is only hidden, never copied.
fn nar_note(plan: &Plan, pd: &PathDecision, restore: Option<&RestoreItem>) -> Option<String> {
    if let Some(r) = restore {
        return Some(format!(
            "its NAR {} is archived ({}): it must be restored for the path to be servable (the narinfo is served, the NAR cannot be fetched)",
            r.nar_key, r.storage_class
        ));
    }
    let o = plan.object(pd.nar_key.as_deref()?)?;
    let class = o.storage_class.as_deref()?;
    (o.decision == Decision::Archive && crate::model::is_archive_class(class)).then(|| {
        format!(
            "its NAR {} is in {class} already: only the path is hidden, the NAR is not copied",
            o.key
        )
    })
}

/// Why a kept path is kept, in one line: its own reason, or for a path kept because it is
/// referenced, that it is reachable, from which root (or rule) and through which referrer.
/// `chain` runs root → … → the path.
fn keep_headline(pd: &PathDecision, chain: &[Step]) -> String {
    let Reason::Reachable { from } = &pd.reason else {
        return pd.reason.to_string();
    };
    let referrer = chain
        .len()
        .checked_sub(2)
        .and_then(|i| chain.get(i))
        .map_or_else(
            || format!("{STORE_DIR}/{from}-…"),
            |s| format!("{STORE_DIR}/{}", s.path),
        );
    match chain.first() {
        Some(top) if chain.len() > 1 => format!(
            "reachable from {STORE_DIR}/{}, kept as {}; referenced by {referrer}",
            top.path, top.reason
        ),
        _ => format!("reachable: referenced by {referrer}"),
    }
}

impl Why {
    pub fn to_text(&self) -> String {
        let mut o = format!("{}\n  {}\n", self.path, self.explanation);
        for (k, d, t) in &self.objects {
            let _ = writeln!(
                o,
                "  object {k}: {}{}",
                d.as_str(),
                t.as_ref().map(|c| format!(" (to {c})")).unwrap_or_default()
            );
        }
        if !self.referrers.is_empty() {
            let _ = writeln!(o, "  referrers:");
            for r in &self.referrers {
                let _ = writeln!(o, "    {} {STORE_DIR}/{}", r.decision.as_str(), r.path);
            }
        }
        o
    }
}

/// Whether `q` looks like something `why` can answer (for a helpful error).
pub fn looks_like_path(q: &str) -> bool {
    StorePath::parse_any(q).is_ok() || q.len() == 32
}
