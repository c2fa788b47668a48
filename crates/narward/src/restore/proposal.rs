//! Pure: the demand-driven restore proposal.
//!
//! From the store paths clients asked for and did not get ([`Demand`], from the access
//! statistics), what each path's state is ([`Catalog`], from a plan: hidden and archived,
//! kept with an archived NAR, hot, or deleted), the reference graph and the restoration
//! policy, a ranked and priced proposal within the monthly budget:
//!
//! 1. a demanded path is a candidate when it is archived (hidden) or in the plan's restore
//!    set, and was missed at least `demand.min_misses` times in the window (once is
//!    enough for a path of a root set);
//! 2. its group is the path and, with `demand.closure`, every path of its closure that is
//!    not hot (deleted paths of the closure are counted: they need `narward recover`);
//! 3. the tier is the policy's (default, or the cheapest meeting the deadline) for the
//!    union of all groups;
//! 4. groups are ranked by misses (most first), then by their own cost (cheapest first),
//!    then by path;
//! 5. in rank order, each group's paths not already taken by an earlier group are priced;
//!    a group of a root set with `approval = "required"` needs approval (not paid from the
//!    budget); any other group is proposed while it fits in what is left of the budget,
//!    else it is over budget (later, cheaper groups may still fit).

use super::Tier;
use super::estimate::{ClassSet, Hours, TierEstimate, choose_tier, estimate, rearchive_not_before};
use super::policy::{Approval, RestorePolicy};
use crate::access::Demand;
use crate::cost::Pricing;
use crate::graph::Graph;
use narward_formats::store_path::StorePathHash;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Where a path stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathState {
    /// Archived: its narinfo is hidden (clients get 404), its NAR archived or hidden.
    Archived,
    /// Kept, narinfo visible, but its NAR is in GLACIER or DEEP_ARCHIVE.
    NarArchived,
    /// Kept and servable.
    Hot,
    /// Deleted (quarantined first): `narward recover`, not a restore.
    Deleted,
}

/// An object to bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreObject {
    pub key: String,
    /// `nar`, `listing` or `narinfo`.
    pub kind: String,
    /// Where it is (GLACIER/DEEP_ARCHIVE need a restore; others only a copy back).
    pub storage_class: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// One store path of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPath {
    /// Base name `<hash>-<name>`.
    pub path: String,
    pub state: PathState,
    /// What restoring it brings back (empty for hot and deleted paths).
    pub objects: Vec<RestoreObject>,
    /// When its NAR entered its archive class (or a lower bound), for the minimum storage
    /// duration.
    pub archived_at: Option<i64>,
}

/// Every path of the cache by hash.
pub type Catalog = BTreeMap<StorePathHash, CatalogPath>;

/// What the proposal decided for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Within the budget: what `restore --confirm` would restore.
    Proposed,
    /// A path of a root set that needs approval: not paid from the budget.
    NeedsApproval,
    /// Does not fit in what is left of the monthly budget.
    OverBudget,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::NeedsApproval => "needs-approval",
            Status::OverBudget => "over-budget",
        }
    }
}

/// A demanded path with the part of its closure it brings back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub rank: u32,
    /// The demanded path (base name).
    pub path: String,
    pub misses: u64,
    pub root_set: Option<String>,
    pub status: Status,
    /// Paths this group brings back that no earlier group does (base names, sorted).
    pub paths: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Cost at the chosen tier of what this group adds.
    pub cost_usd: f64,
    /// Cost at the chosen tier of the whole group on its own (used for ranking).
    pub standalone_cost_usd: f64,
    /// Expected time until its objects are readable, at the chosen tier.
    pub hours: Hours,
    /// Paths of its closure that were deleted: the group is not substitutable until they
    /// are recovered (`narward recover`).
    pub deleted_in_closure: u64,
    /// Earliest time a plan should archive these paths again (unix seconds).
    pub rearchive_not_before: i64,
}

/// Demand that does not become a group, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Missed narinfos of paths the plan does not know (never in the cache, or uploaded
    /// after the plan).
    pub not_in_plan: u64,
    /// Missed narinfos of paths that are hot (e.g. uploaded since the misses).
    pub already_hot: u64,
    /// Missed narinfos of deleted paths (`narward recover`, not a restore).
    pub deleted: u64,
    /// Archived paths missed fewer than `demand.min_misses` times.
    pub below_threshold: u64,
}

/// The proposal's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalBody {
    pub tier: Tier,
    /// Why this tier (default, or the deadline).
    pub tier_reason: String,
    pub budget_usd: f64,
    pub spent_before_usd: f64,
    /// Cost of the proposed groups at the chosen tier.
    pub proposed_usd: f64,
    /// Every tier for the proposed objects, fastest first.
    pub estimates: Vec<TierEstimate>,
    pub groups: Vec<Group>,
    pub skipped: Skipped,
    /// Every object of every group, by group rank then key; a row's status is its group's.
    /// Not in the JSON header: the artifact keeps them in `objects.csv`.
    #[serde(skip)]
    pub objects: Vec<(u32, RestoreObject)>,
}

/// Inputs of [`propose`].
pub struct ProposalInput<'a> {
    /// Most missed first (see [`crate::access::AccessStats::narinfo_demand`]; give it
    /// `min_misses` 1: root sets need only one miss).
    pub demand: &'a [Demand],
    pub catalog: &'a Catalog,
    pub graph: &'a Graph,
    pub policy: &'a RestorePolicy,
    pub pricing: &'a Pricing,
    pub now: i64,
    /// Already spent on restores this month.
    pub spent_usd: f64,
}

struct Candidate {
    hash: StorePathHash,
    misses: u64,
    root_set: Option<(String, Approval)>,
    closure: Vec<StorePathHash>,
    deleted: u64,
}

/// Compute the proposal.
///
/// # Errors
/// No retrieval tier meets the policy's deadline, or its default tier is not available
/// for the demanded objects (the message says why).
pub fn propose(inp: &ProposalInput) -> Result<ProposalBody, String> {
    let (mut cands, skipped) = candidates(inp);
    let all: Vec<StorePathHash> = cands
        .iter()
        .flat_map(|c| c.closure.iter().copied())
        .collect();
    let all_est = estimate(
        &class_sets(inp.catalog, all.iter()),
        inp.pricing,
        inp.policy.days,
    );
    let p = inp.policy;
    let tier = choose_tier(&all_est, p.default_tier, p.deadline_hours)?;
    let tier_reason = match p.deadline_hours {
        Some(d) => format!("cheapest tier getting every object back within {d} hours"),
        None => "the policy's default tier".to_string(),
    };
    let cost_of = |paths: &[StorePathHash]| -> TierEstimate {
        let e = estimate(&class_sets(inp.catalog, paths.iter()), inp.pricing, p.days);
        e.into_iter()
            .find(|e| e.tier == tier)
            .unwrap_or_else(|| empty_estimate(tier))
    };
    let mut ranked: Vec<(Candidate, f64)> = cands
        .drain(..)
        .map(|c| {
            let cost = cost_of(&c.closure).total_usd;
            (c, cost)
        })
        .collect();
    ranked.sort_by(|(a, ca), (b, cb)| {
        b.misses
            .cmp(&a.misses)
            .then(ca.total_cmp(cb))
            .then_with(|| path_of(inp.catalog, &a.hash).cmp(path_of(inp.catalog, &b.hash)))
    });
    let mut left = (p.monthly_budget_usd - inp.spent_usd).max(0.0);
    let mut taken: HashSet<StorePathHash> = HashSet::new();
    let mut groups = Vec::new();
    let mut objects = Vec::new();
    let mut proposed_paths = Vec::new();
    for (i, (c, standalone)) in ranked.into_iter().enumerate() {
        let rank = i as u32 + 1;
        let new: Vec<StorePathHash> = c
            .closure
            .iter()
            .copied()
            .filter(|h| !taken.contains(h))
            .collect();
        let e = cost_of(&new);
        let status = match &c.root_set {
            Some((_, Approval::Required)) => Status::NeedsApproval,
            _ if e.total_usd <= left + 1e-12 => Status::Proposed,
            _ => Status::OverBudget,
        };
        if status == Status::Proposed {
            left -= e.total_usd;
            taken.extend(new.iter().copied());
            proposed_paths.extend(new.iter().copied());
        }
        let g = group(inp, &c, rank, status, &new, &e, standalone);
        for h in &new {
            for o in inp
                .catalog
                .get(h)
                .map(|c| c.objects.as_slice())
                .unwrap_or(&[])
            {
                objects.push((rank, o.clone()));
            }
        }
        groups.push(g);
    }
    objects.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then(a.key.cmp(&b.key)));
    let estimates = estimate(
        &class_sets(inp.catalog, proposed_paths.iter()),
        inp.pricing,
        p.days,
    );
    let proposed_usd = estimates
        .iter()
        .find(|e| e.tier == tier)
        .map_or(0.0, |e| e.total_usd);
    Ok(ProposalBody {
        tier,
        tier_reason,
        budget_usd: p.monthly_budget_usd,
        spent_before_usd: inp.spent_usd,
        proposed_usd,
        estimates,
        groups,
        skipped,
        objects,
    })
}

fn empty_estimate(tier: Tier) -> TierEstimate {
    TierEstimate {
        tier,
        available: true,
        unavailable: None,
        retrieval_usd: 0.0,
        requests_usd: 0.0,
        temporary_copy_usd: 0.0,
        republish_usd: 0.0,
        total_usd: 0.0,
        hours: Hours { min: 0.0, max: 0.0 },
    }
}

fn path_of<'a>(c: &'a Catalog, h: &StorePathHash) -> &'a str {
    c.get(h).map_or("", |p| p.path.as_str())
}

fn group(
    inp: &ProposalInput,
    c: &Candidate,
    rank: u32,
    status: Status,
    new: &[StorePathHash],
    e: &TierEstimate,
    standalone: f64,
) -> Group {
    let mut paths: Vec<String> = new
        .iter()
        .map(|h| path_of(inp.catalog, h).to_string())
        .collect();
    paths.sort();
    let objs = new
        .iter()
        .filter_map(|h| inp.catalog.get(h))
        .flat_map(|p| p.objects.iter());
    let (objects, bytes) = objs.fold((0, 0), |(n, b), o| (n + 1, b + o.size));
    let ready = inp.now + (e.hours.max * 3600.0).ceil() as i64;
    let rearchive = new
        .iter()
        .filter_map(|h| inp.catalog.get(h))
        .map(|p| {
            let min = p
                .objects
                .iter()
                .filter_map(|o| inp.pricing.class(&o.storage_class))
                .map(|c| c.min_duration_days)
                .max()
                .unwrap_or(0);
            rearchive_not_before(ready, inp.policy.keep_hot_days, p.archived_at, min)
        })
        .max()
        .unwrap_or(ready + i64::from(inp.policy.keep_hot_days) * 86_400);
    Group {
        rank,
        path: path_of(inp.catalog, &c.hash).to_string(),
        misses: c.misses,
        root_set: c.root_set.as_ref().map(|(n, _)| n.clone()),
        status,
        paths,
        objects,
        bytes,
        cost_usd: e.total_usd,
        standalone_cost_usd: standalone,
        hours: e.hours,
        deleted_in_closure: c.deleted,
        rearchive_not_before: rearchive,
    }
}

/// Storage class → objects of the given paths.
fn class_sets<'a>(
    cat: &Catalog,
    paths: impl Iterator<Item = &'a StorePathHash>,
) -> BTreeMap<String, ClassSet> {
    let mut m: BTreeMap<String, ClassSet> = BTreeMap::new();
    let mut seen = HashSet::new();
    for h in paths {
        if !seen.insert(*h) {
            continue;
        }
        for o in cat.get(h).map(|p| p.objects.as_slice()).unwrap_or(&[]) {
            let e = m.entry(o.storage_class.clone()).or_default();
            e.count += 1;
            e.bytes += o.size;
        }
    }
    m
}

fn candidates(inp: &ProposalInput) -> (Vec<Candidate>, Skipped) {
    let mut sk = Skipped::default();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for d in inp.demand {
        if !seen.insert(d.hash) {
            continue;
        }
        let Some(cp) = inp.catalog.get(&d.hash) else {
            sk.not_in_plan += 1;
            continue;
        };
        match cp.state {
            PathState::Hot => {
                sk.already_hot += 1;
                continue;
            }
            PathState::Deleted => {
                sk.deleted += 1;
                continue;
            }
            PathState::Archived | PathState::NarArchived => {}
        }
        let set = inp.policy.root_set_of(&d.hash);
        let need = if set.is_some() {
            1
        } else {
            inp.policy.min_misses
        };
        if d.misses < need {
            sk.below_threshold += 1;
            continue;
        }
        let (closure, deleted) = closure_to_restore(inp, d.hash);
        out.push(Candidate {
            hash: d.hash,
            misses: d.misses,
            root_set: set.map(|s| (s.name.clone(), s.approval)),
            closure,
            deleted,
        });
    }
    (out, sk)
}

/// The path and, with `demand.closure`, every path of its closure that is archived;
/// and how many of its closure are deleted.
fn closure_to_restore(inp: &ProposalInput, h: StorePathHash) -> (Vec<StorePathHash>, u64) {
    let ids = if inp.policy.closure {
        super::catalog::closure_of(inp.graph, &[h])
    } else {
        vec![h]
    };
    let mut deleted = 0;
    let mut v: Vec<StorePathHash> = ids
        .into_iter()
        .filter(|x| match inp.catalog.get(x).map(|p| p.state) {
            Some(PathState::Archived | PathState::NarArchived) => true,
            Some(PathState::Deleted) => {
                deleted += 1;
                false
            }
            _ => false,
        })
        .collect();
    v.sort_by(|a, b| path_of(inp.catalog, a).cmp(path_of(inp.catalog, b)));
    (v, deleted)
}
