//! `narward restore --from-demand …` and `narward restore show DIR`.

use super::{Global, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use narward::access::store as access_store;
use narward::cost::Pricing;
use narward::index::Index;
use narward::plan::Plan;
use narward::restore::artifact::{self, ProposalHeader};
use narward::restore::proposal::{ProposalInput, propose};
use narward::restore::{RestorePolicy, catalog, text};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::ExitCode;

/// What executing needs, said wherever a proposal is shown.
const NOT_EXECUTED: &str = "nothing was requested: executing a proposal needs `narward restore --confirm`, which is not available yet (it comes with the apply engine)";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RestoreArgs {
    #[command(subcommand)]
    pub action: Option<RestoreAction>,
    /// Store paths to restore (/nix/store/<hash>-<name>, <hash>-<name> or <hash>). Today
    /// only with --dry-run: the estimate per retrieval tier.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
    /// With PATHs or --roots: their closures too.
    #[arg(long)]
    pub closure: bool,
    /// A file of store paths (one per line, or store-paths.xz, or fallback-paths.nix), e.g.
    /// a whole release (with --closure).
    #[arg(long, value_name = "FILE")]
    pub roots: Option<PathBuf>,
    /// Retrieval tier for PATHs / --roots: bulk, standard or expedited.
    #[arg(long, default_value = "bulk")]
    pub tier: String,
    /// RestoreObject Days for PATHs / --roots: how long the restored copy stays readable.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Propose what the restoration policy restores on demand: archived paths whose
    /// .narinfo was missed (404) often enough in the access statistics (`narward
    /// access-logs ingest`), with the archived part of their closures, ranked, priced per
    /// retrieval tier and within the monthly budget.
    #[arg(long)]
    pub from_demand: bool,
    /// The plan that describes the archive (its archived paths and restore set).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// The restoration policy (TOML; see examples/restore-policy.toml).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Directory to write the proposal into (must not exist or be empty).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only print the proposal or the estimate: nothing is written or requested.
    #[arg(long)]
    pub dry_run: bool,
    /// USD already spent on restores this calendar month (deducted from the budget).
    #[arg(long, default_value_t = 0.0, value_name = "USD")]
    pub spent_this_month: f64,
    /// A pricing table (TOML) instead of the built-in AWS S3 us-east-1 prices.
    #[arg(long, value_name = "FILE")]
    pub pricing: Option<PathBuf>,
    /// Compute as if now were this unix time (tests).
    #[arg(long, hide = true)]
    pub now: Option<i64>,
}

#[derive(Subcommand, Debug)]
pub enum RestoreAction {
    /// Print a proposal written by `restore --from-demand --out DIR`, after checking that
    /// none of its files was edited, added or removed.
    Show {
        /// The proposal directory.
        dir: PathBuf,
    },
}

fn show(g: &Global, h: &ProposalHeader) -> Result<()> {
    if g.json {
        let objects: Vec<_> = h
            .body
            .objects
            .iter()
            .map(|(rank, o)| serde_json::json!({ "rank": rank, "object": o }))
            .collect();
        print_json(&serde_json::json!({ "proposal": h, "objects": objects, "executed": false }))?;
    } else {
        print!("{}", text::proposal_text(h));
    }
    eprintln!("narward: note: {NOT_EXECUTED}");
    Ok(())
}

pub fn run(g: &Global, a: RestoreArgs) -> Result<ExitCode> {
    if let Some(RestoreAction::Show { dir }) = &a.action {
        show(g, &artifact::read(dir)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !a.from_demand && (!a.paths.is_empty() || a.roots.is_some()) {
        return request(g, &a);
    }
    if !a.from_demand {
        bail!(
            "give store paths (or --roots FILE) with --plan and --dry-run for an estimate, --from-demand for a proposal, or `restore show DIR`"
        );
    }
    let (Some(plan_dir), Some(policy_path)) = (&a.plan, &a.policy) else {
        bail!("`narward restore --from-demand` needs --plan DIR and --policy FILE");
    };
    if a.out.is_none() && !a.dry_run {
        bail!("give --out DIR to write the proposal, or --dry-run to only print it");
    }
    if !(a.spent_this_month.is_finite() && a.spent_this_month >= 0.0) {
        bail!(
            "--spent-this-month {}: expected USD ≥ 0",
            a.spent_this_month
        );
    }
    let mut h = compute(g, &a, plan_dir, policy_path)?;
    if let (Some(out), false) = (&a.out, a.dry_run) {
        artifact::write(&mut h, out)?;
        show(g, &h)?;
        if !g.json {
            println!("proposal written to {}", out.display());
        }
    } else {
        show(g, &h)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore PATH... | --roots FILE --plan PLAN --dry-run`: the estimate.
fn request(g: &Global, a: &RestoreArgs) -> Result<ExitCode> {
    use narward::restore::request::estimate_request;
    use narward_formats::store_path::StorePath;
    let Some(plan_dir) = &a.plan else {
        bail!("`narward restore PATH...` needs --plan DIR (the plan that describes the archive)");
    };
    let tier =
        narward::restore::Tier::parse(&a.tier).map_err(|e| anyhow::anyhow!("--tier: {e}"))?;
    if !(1..=30_000).contains(&a.days) {
        bail!("--days {}: expected 1 to 30000", a.days);
    }
    let mut roots = Vec::new();
    for p in &a.paths {
        let t = p.trim();
        let hash = match StorePath::parse_any(t) {
            Ok(sp) => sp.hash,
            Err(e) => narward_formats::store_path::StorePathHash::parse(t)
                .map_err(|_| anyhow::anyhow!("{p:?} is not a store path or hash: {e}"))?,
        };
        roots.push(hash);
    }
    if let Some(f) = &a.roots {
        roots.extend(read_roots_file(f)?);
    }
    let plan = Plan::read(plan_dir)?;
    let pricing = match &a.pricing {
        Some(f) => Pricing::load(f)?,
        None => Pricing::default_aws(),
    };
    let idx = Index::load(&g.state)?;
    if idx.meta.cache != plan.header.cache {
        bail!(
            "the plan {} is for {}, the index in {} for {}",
            plan_dir.display(),
            plan.header.cache,
            g.state.display(),
            idx.meta.cache
        );
    }
    let cat = catalog::from_plan(&plan);
    let graph = catalog::graph_from_index(&idx);
    let e = estimate_request(&cat, &graph, &roots, a.closure, &pricing, a.days);
    if g.json {
        print_json(&serde_json::json!({ "estimate": e, "tier": tier, "executed": false }))?;
    } else {
        print!("{}", text::request_text(&e, a.closure, tier));
    }
    if !a.dry_run {
        bail!(
            "restoring is not available yet (it comes with the apply engine): nothing was requested; use --dry-run to see only the estimate"
        );
    }
    eprintln!("narward: note: dry run: nothing was requested");
    Ok(ExitCode::SUCCESS)
}

/// The store paths of a root file, read like a policy's roots (by extension: `.xz`,
/// `.nix`, else one path per line).
fn read_roots_file(f: &std::path::Path) -> Result<Vec<narward_formats::store_path::StorePathHash>> {
    use narward::policy::{RootsSection, read_root_section};
    let name = f.to_string_lossy();
    let mut r = RootsSection::default();
    if name.ends_with(".xz") {
        r.store_paths_xz.push(f.to_path_buf());
    } else if name.ends_with(".nix") {
        r.fallback_paths.push(f.to_path_buf());
    } else {
        r.files.push(f.to_path_buf());
    }
    let (roots, _) = read_root_section(&r, std::path::Path::new("."), "--roots")?;
    Ok(roots.into_iter().map(|r| r.hash).collect())
}

fn compute(
    g: &Global,
    a: &RestoreArgs,
    plan_dir: &std::path::Path,
    policy_path: &std::path::Path,
) -> Result<ProposalHeader> {
    let plan = Plan::read(plan_dir)?;
    let policy = RestorePolicy::load(policy_path)?;
    let pricing = match &a.pricing {
        Some(f) => Pricing::load(f)?,
        None => Pricing::default_aws(),
    };
    if !access_store::exists(&g.state) {
        bail!(
            "no access statistics in {}: run `narward access-logs ingest LOGS...` first",
            access_store::access_dir(&g.state).display()
        );
    }
    let (ameta, stats) = access_store::load(&g.state)?;
    let idx = Index::load(&g.state)?;
    if idx.meta.cache != plan.header.cache {
        bail!(
            "the plan {} is for {}, the index in {} for {}",
            plan_dir.display(),
            plan.header.cache,
            g.state.display(),
            idx.meta.cache
        );
    }
    if idx.meta.generation != plan.header.index_generation {
        eprintln!(
            "narward: note: the index is at generation {}, the plan was computed from {}; closures are today's",
            idx.meta.generation, plan.header.index_generation
        );
    }
    let now = a.now.unwrap_or_else(narward::index::now);
    let prefix = narward::access_log::cache_prefix(&plan.header.cache_url);
    let demand = stats.narinfo_demand(&prefix, now, policy.window_days, 1);
    let cat = catalog::from_plan(&plan);
    let graph = catalog::graph_from_index(&idx);
    let body = propose(&ProposalInput {
        demand: &demand,
        catalog: &cat,
        graph: &graph,
        policy: &policy,
        pricing: &pricing,
        now,
        spent_usd: a.spent_this_month,
    })
    .map_err(|e| anyhow::anyhow!("restore policy {}: {e}", policy.file))
    .context("no proposal was written")?;
    Ok(ProposalHeader {
        format_version: artifact::PROPOSAL_FORMAT,
        created_at: now,
        cache: plan.header.cache.clone(),
        plan_checksum: plan.header.checksum.clone(),
        plan_index_generation: plan.header.index_generation,
        access_stats_checksum: ameta.checksum,
        policy_file: policy.file.clone(),
        policy_sha256: hex::encode(Sha256::digest(policy.text.as_bytes())),
        policy_text: policy.text.clone(),
        pricing: pricing.name.clone(),
        body,
        files: Default::default(),
        checksum: String::new(),
    })
}
