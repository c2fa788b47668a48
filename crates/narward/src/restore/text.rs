//! Pure: a proposal as text for people.

use super::artifact::ProposalHeader;
use super::estimate::hours_text;
use super::proposal::Status;
use crate::cost::money;
use crate::explain::human_bytes as bytes;
use narward_formats::date::civil_from_days;
use std::fmt::Write;

fn day(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
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
    tier_lines(&mut o, "the proposed objects per tier", &b.estimates, None);
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

/// `restore of N paths[ with their closures]`: what a request asked for.
fn asked(e: &super::request::RequestEstimate, closure: bool) -> String {
    let with = if closure { " with their closures" } else { "" };
    format!("restore of {} paths{with}", e.requested)
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
        "{}: {} archived paths to bring back, {} objects, {}",
        asked(e, closure),
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
    class_and_tier_lines(&mut o, e, tier);
    o
}

/// The objects per storage class of a request's estimate, then its per-tier lines with
/// `tier` marked.
fn class_and_tier_lines(o: &mut String, e: &super::request::RequestEstimate, tier: super::Tier) {
    for (class, s) in &e.by_class {
        let _ = writeln!(*o, "  {class}: {} objects, {}", s.count, bytes(s.bytes));
    }
    tier_lines(o, "per tier", &e.estimates, Some(tier));
}

/// The per-tier lines of an estimate under `heading`, the tier `marked` (`--tier`) marked.
fn tier_lines(
    o: &mut String,
    heading: &str,
    estimates: &[super::estimate::TierEstimate],
    marked: Option<super::Tier>,
) {
    let _ = writeln!(
        *o,
        "  {heading} (retrieval + requests + temporary copies + republishing):"
    );
    for t in estimates {
        let mark = if Some(t.tier) == marked {
            "  <- --tier"
        } else {
            ""
        };
        let what = if t.available {
            format!("readable in {}", hours_text(t.hours))
        } else {
            t.unavailable
                .as_deref()
                .unwrap_or("unavailable")
                .to_string()
        };
        let total = if t.available {
            money(t.total_usd)
        } else {
            "-".to_string()
        };
        let _ = writeln!(*o, "    {:<9} {total:>12}  {what}{mark}", t.tier.as_str());
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
        "{}: {} archived paths ({} cold NARs, {}), {} quarantined (recovered without a retrieval), {} hot already",
        asked(e, closure),
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
    class_and_tier_lines(&mut o, e, tier);
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

#[cfg(test)]
mod tests {
    use super::super::Tier;
    use super::super::estimate::{ClassSet, estimate};
    use super::*;

    /// Finding "restore/text.rs repeats its per-tier table" (the proposal's and the
    /// request's): one `tier_lines` writes both, the proposal's with its own heading and no
    /// mark, the request's with exactly the `--tier` line marked; an unavailable tier
    /// shows `-` and why.
    #[test]
    fn one_per_tier_table_for_proposals_and_requests_marks_only_the_given_tier() {
        let set = [(
            "DEEP_ARCHIVE".to_string(),
            ClassSet {
                count: 3,
                bytes: 5 << 30,
            },
        )]
        .into_iter()
        .collect();
        let est = estimate(&set, &crate::cost::Pricing::default_aws(), 7);
        let expedited = est.iter().find(|t| t.tier == Tier::Expedited).unwrap();
        assert!(
            !expedited.available,
            "the fixture needs an unavailable tier"
        );

        let mut proposal = String::new();
        tier_lines(&mut proposal, "the proposed objects per tier", &est, None);
        let lines: Vec<&str> = proposal.lines().collect();
        assert_eq!(lines.len(), est.len() + 1);
        assert_eq!(
            lines[0],
            "  the proposed objects per tier (retrieval + requests + temporary copies + republishing):"
        );
        assert!(!proposal.contains("<- --tier"));

        let mut request = String::new();
        tier_lines(&mut request, "per tier", &est, Some(Tier::Bulk));
        let marked: Vec<&str> = request
            .lines()
            .filter(|l| l.ends_with("  <- --tier"))
            .collect();
        assert_eq!(marked.len(), 1);
        assert!(marked[0].starts_with(&format!("    {:<9} ", Tier::Bulk.as_str())));
        for (t, line) in est.iter().zip(request.lines().skip(1)) {
            if t.available {
                assert!(line.contains(&money(t.total_usd)) && line.contains("readable in "));
            } else {
                let why = t.unavailable.as_deref().unwrap();
                assert!(line.contains(&format!("{:>12}  {why}", "-")), "{line}");
            }
        }
    }
}
