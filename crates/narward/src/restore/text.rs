//! Pure: a proposal as text for people.

use super::artifact::ProposalHeader;
use super::estimate::hours_text;
use super::proposal::Status;
use crate::cost::money;
use narward_formats::date::civil_from_days;
use std::fmt::Write;

fn day(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// The ranked proposal with its per-tier estimates.
pub fn proposal_text(h: &ProposalHeader) -> String {
    let b = &h.body;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "restore proposal for {} (plan {}, policy {})",
        h.cache,
        short(&h.plan_checksum),
        h.policy_file
    );
    let _ = writeln!(
        o,
        "  tier {} ({}); budget {} a month, {} spent before, {} proposed",
        b.tier.as_str(),
        b.tier_reason,
        money(b.budget_usd),
        money(b.spent_before_usd),
        money(b.proposed_usd)
    );
    let _ = writeln!(
        o,
        "  the proposed objects per tier (retrieval + requests + temporary copies + republishing):"
    );
    for e in &b.estimates {
        if e.available {
            let _ = writeln!(
                o,
                "    {:<9} {:>12}  readable in {}",
                e.tier.as_str(),
                money(e.total_usd),
                hours_text(e.hours)
            );
        } else {
            let _ = writeln!(
                o,
                "    {:<9} {:>12}  {}",
                e.tier.as_str(),
                "-",
                e.unavailable.as_deref().unwrap_or("unavailable")
            );
        }
    }
    if b.groups.is_empty() {
        let _ = writeln!(
            o,
            "  no archived path was missed often enough: nothing to propose"
        );
    }
    for g in &b.groups {
        let set = g
            .root_set
            .as_ref()
            .map(|s| format!(", root set {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  #{} {} {} ({} misses{set}): {} paths, {} objects, {}, {} at {}, readable in {}; may be archived again from {}",
            g.rank,
            g.status.as_str(),
            g.path,
            g.misses,
            g.paths.len(),
            g.objects,
            bytes(g.bytes),
            money(g.cost_usd),
            b.tier.as_str(),
            hours_text(g.hours),
            day(g.rearchive_not_before)
        );
        if g.deleted_in_closure > 0 {
            let _ = writeln!(
                o,
                "      {} paths of its closure were deleted: recover them (narward recover) or it stays unsubstitutable",
                g.deleted_in_closure
            );
        }
    }
    let n = |s: Status| b.groups.iter().filter(|g| g.status == s).count();
    let _ = writeln!(
        o,
        "  {} proposed, {} need approval, {} over budget",
        n(Status::Proposed),
        n(Status::NeedsApproval),
        n(Status::OverBudget)
    );
    let s = &b.skipped;
    let _ = writeln!(
        o,
        "  missed narinfos not proposed: {} below the threshold, {} hot already, {} deleted (narward recover), {} not in the plan",
        s.below_threshold, s.already_hot, s.deleted, s.not_in_plan
    );
    o
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// The estimate of `restore PATH... --dry-run`, with `tier` marked.
pub fn request_text(
    e: &super::request::RequestEstimate,
    closure: bool,
    tier: super::Tier,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "restore of {} paths{}: {} archived paths to bring back, {} objects, {}",
        e.requested,
        if closure { " with their closures" } else { "" },
        e.paths.len(),
        e.objects,
        bytes(e.bytes)
    );
    let _ = writeln!(
        o,
        "  {} hot already, {} deleted (narward recover, not a restore), {} not in the plan",
        e.hot,
        e.deleted,
        e.not_in_plan.len()
    );
    for h in &e.not_in_plan {
        let _ = writeln!(o, "    not in the plan: {h}");
    }
    for (class, s) in &e.by_class {
        let _ = writeln!(o, "  {class}: {} objects, {}", s.count, bytes(s.bytes));
    }
    tier_lines(&mut o, &e.estimates, tier);
    o
}

/// The per-tier lines of an estimate, `tier` marked.
fn tier_lines(o: &mut String, estimates: &[super::estimate::TierEstimate], tier: super::Tier) {
    let _ = writeln!(
        *o,
        "  per tier (retrieval + requests + temporary copies + republishing):"
    );
    for t in estimates {
        let mark = if t.tier == tier { "  <- --tier" } else { "" };
        if t.available {
            let _ = writeln!(
                *o,
                "    {:<9} {:>12}  readable in {}{mark}",
                t.tier.as_str(),
                money(t.total_usd),
                hours_text(t.hours)
            );
        } else {
            let _ = writeln!(
                *o,
                "    {:<9} {:>12}  {}{mark}",
                t.tier.as_str(),
                "-",
                t.unavailable.as_deref().unwrap_or("unavailable")
            );
        }
    }
}

/// What `narward restore PATH... [--dry-run]` found in the store, with every tier's cost
/// and time.
pub fn discovery_text(
    d: &super::exec::Discovery,
    e: &super::request::RequestEstimate,
    closure: bool,
    tier: super::Tier,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "restore of {} paths{}: {} archived paths ({} cold NARs, {}), {} quarantined (recovered without a retrieval), {} hot already",
        e.requested,
        if closure { " with their closures" } else { "" },
        e.paths.len(),
        e.objects,
        bytes(e.bytes),
        e.deleted,
        e.hot,
    );
    for h in &e.not_in_plan {
        let _ = writeln!(
            o,
            "  not found: {h} (neither in the cache, the archive nor the quarantine area)"
        );
    }
    for p in d.broken() {
        let _ = writeln!(
            o,
            "  cannot be brought back: {} ({}); it and the paths depending on it stay hidden",
            p.store_path,
            p.broken.as_deref().unwrap_or("")
        );
    }
    for (class, s) in &e.by_class {
        let _ = writeln!(o, "  {class}: {} objects, {}", s.count, bytes(s.bytes));
    }
    tier_lines(&mut o, &e.estimates, tier);
    o
}

/// `narward restore status`: one restore.
pub fn status_text(s: &super::exec::RestoreStatus) -> String {
    let mut o = String::new();
    let counts: Vec<String> = ["republished", "readable", "waiting", "failed"]
        .iter()
        .map(|k| format!("{} {k}", s.counts.get(k).copied().unwrap_or(0)))
        .collect();
    let reqs: Vec<String> = s.requests.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        o,
        "restore {} of {} ({} tier){}: {}; RestoreObject: {}",
        s.id,
        s.cache,
        s.tier,
        if s.finished { ", finished" } else { "" },
        counts.join(", "),
        if reqs.is_empty() {
            "none".to_string()
        } else {
            reqs.join(", ")
        }
    );
    for p in &s.paths {
        let d = p
            .detail
            .as_deref()
            .map(|d| format!("  ({d})"))
            .unwrap_or_default();
        let _ = writeln!(o, "  {:<11} {}{d}", p.status, p.path);
    }
    o
}
