//! `narward restore`: estimates (`--dry-run`), execution (`--confirm NAME`, in
//! [`super::restore_exec`]), `--resume`, `status`, `--from-demand` proposals and `show`.

use super::{Global, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use narward::access::store as access_store;
use narward::index::Index;
use narward::plan::Plan;
use narward::restore::artifact::{self, ProposalHeader};
use narward::restore::proposal::{ProposalInput, propose};
use narward::restore::{RestorePolicy, catalog, text};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::ExitCode;

/// What executing needs, said wherever a proposal is shown.
const NOT_EXECUTED: &str = "nothing was requested: execute a proposal with `narward restore --proposal DIR --confirm NAME`";

#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_long_help = "Examples:
  narward restore /nix/store/<hash>-hello-2.12 --closure --dry-run
  narward restore /nix/store/<hash>-hello-2.12 --closure --tier standard --confirm nix-cache
  narward restore --roots release-23.05/store-paths.xz --closure --confirm nix-cache
  narward restore status --wait --timeout 172800
  narward restore --resume
  narward restore --from-demand --plan plans/today --policy restore-policy.toml --out proposals/jan
  narward restore show proposals/jan
  narward restore --proposal proposals/jan --confirm nix-cache

What is brought back is found in the store itself: paths whose narinfo is in the archive
area (their NAR archived in place in GLACIER/DEEP_ARCHIVE, or in the archive bucket or
directory) or in the quarantine area (deleted, not finalized: recovered at once, without a
retrieval). Each cold NAR gets one RestoreObject (journaled in <state>/restore/<id>/: never
requested twice, also after a crash). Once readable, objects are made hot again in a safe
order: every NAR (copied back to STANDARD, or moved back from the archive area) and .ls
first, then the narinfos, byte for byte, each after the narinfos of its references: a
client never sees a narinfo before its NAR or its references. file:// caches have no
retrieval: objects move back from the archive directory at once.

Exit status: 0 done or waiting for retrievals (see `restore status`); 1 some objects
failed (listed; `restore status` retries them), or `status --wait` timed out; 2 refused
or failed (wrong --confirm, damaged journal or proposal, access denied)."
)]
pub struct RestoreArgs {
    #[command(subcommand)]
    pub action: Option<RestoreAction>,
    /// Store paths to restore (/nix/store/<hash>-<name>, <hash>-<name> or <hash>).
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
    /// With PATHs or --roots: their closures too.
    #[arg(long)]
    pub closure: bool,
    /// A file of store paths (one per line, or store-paths.xz, or fallback-paths.nix), e.g.
    /// a whole release (with --closure).
    #[arg(long, value_name = "FILE")]
    pub roots: Option<PathBuf>,
    /// Retrieval tier: bulk, standard or expedited (a proposal is executed at its own tier).
    #[arg(long, default_value = "bulk")]
    pub tier: String,
    /// RestoreObject Days: how long the restored copy stays readable (republishing copies
    /// it to STANDARD before then).
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Propose what the restoration policy restores on demand: archived paths whose
    /// .narinfo was missed (404) often enough in the access statistics (`narward
    /// access-logs ingest`), with the archived part of their closures, ranked, priced per
    /// retrieval tier and within the monthly budget.
    #[arg(long)]
    pub from_demand: bool,
    /// The plan that describes the archive (its archived paths and restore set): for
    /// --from-demand, and for an estimate from the plan alone with PATHs and --dry-run
    /// (without it, the estimate looks at the store).
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
    /// The cache's name typed back (the bucket, or the directory's name): restoring
    /// refuses without it. With --from-demand --out DIR: write the proposal, then execute it.
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
    /// Execute the proposal in this directory (`restore --from-demand --out DIR`): its
    /// proposed groups (not those needing approval or over budget), with their closures.
    #[arg(long, value_name = "DIR")]
    pub proposal: Option<PathBuf>,
    /// Continue every unfinished restore (after a crash): the same as `restore status`.
    #[arg(long)]
    pub resume: bool,
    /// The cache (default: the one the state directory indexes).
    #[arg(long, value_name = "URL")]
    pub cache: Option<String>,
    #[command(flatten)]
    pub areas: super::apply_cmd::AreaArgs,
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
    /// Every restore of the state directory: per path waiting (retrieval under way),
    /// readable, republished or failed. It also moves each restore on: requests what is
    /// not requested yet (never twice), republishes what became readable in the safe order,
    /// and retries what failed.
    #[command(after_long_help = "Examples:
  narward restore status
  narward restore status --json
  narward restore status --wait --timeout 172800 --interval 600   # Deep Archive bulk: up to 48 h

Exit status: 0 every restore republished or still waiting for its retrieval; 1 some
path failed (the reason is shown: a NAR nowhere, a reference not brought back, a restored
copy that expired before republishing), or --wait timed out; 2 a journal is damaged or
the store cannot be reached.")]
    Status {
        /// Poll until every restore is republished (or one fails, or --timeout passes).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit 1).
        #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
        timeout: u64,
        /// With --wait: seconds between polls.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        interval: u64,
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

pub async fn run(g: &Global, a: RestoreArgs) -> Result<ExitCode> {
    use std::time::Duration;
    match &a.action {
        Some(RestoreAction::Show { dir }) => {
            show(g, &artifact::read(dir)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(RestoreAction::Status {
            wait,
            timeout,
            interval,
        }) => {
            let (t, i) = (
                Duration::from_secs(*timeout),
                Duration::from_secs(*interval),
            );
            return super::restore_exec::status_cmd(g, *wait, t, i).await;
        }
        None => {}
    }
    if a.resume {
        return super::restore_exec::status_cmd(g, false, Duration::ZERO, Duration::ZERO).await;
    }
    if let Some(dir) = &a.proposal {
        let h = artifact::read(dir)?;
        return execute(g, &a, proposal_roots(&h), true, Some(h.body.tier)).await;
    }
    if !a.from_demand && (!a.paths.is_empty() || a.roots.is_some()) {
        if a.plan.is_some() && a.dry_run {
            return request(g, &a);
        }
        let roots = request_roots(&a)?;
        return execute(
            g,
            &a,
            roots.iter().map(|h| h.to_string()).collect(),
            a.closure,
            None,
        )
        .await;
    }
    if !a.from_demand {
        bail!(
            "give store paths (or --roots FILE), --proposal DIR, --from-demand, --resume, `restore status` or `restore show DIR`"
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
        if a.confirm.is_some() {
            if !g.json {
                print!("{}", text::proposal_text(&h));
                println!("proposal written to {}; executing it", out.display());
            }
            return execute(g, &a, proposal_roots(&h), true, Some(h.body.tier)).await;
        }
        show(g, &h)?;
        if !g.json {
            println!("proposal written to {}", out.display());
        }
    } else {
        show(g, &h)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The hashes of the proposed groups of a proposal.
fn proposal_roots(h: &ProposalHeader) -> Vec<String> {
    use narward::restore::proposal::Status;
    let mut v: Vec<String> = h
        .body
        .groups
        .iter()
        .filter(|g| g.status == Status::Proposed)
        .flat_map(|g| g.paths.iter().chain(std::iter::once(&g.path)))
        .filter_map(|p| {
            p.trim_start_matches("/nix/store/")
                .get(..32)
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn tier_and_days(a: &RestoreArgs) -> Result<narward::restore::Tier> {
    let tier =
        narward::restore::Tier::parse(&a.tier).map_err(|e| anyhow::anyhow!("--tier: {e}"))?;
    if !(1..=30_000).contains(&a.days) {
        bail!("--days {}: expected 1 to 30000", a.days);
    }
    Ok(tier)
}

/// Execute (or with --dry-run estimate from the store) a restore of `roots`, at the
/// proposal's `tier` if given, else --tier.
async fn execute(
    g: &Global,
    a: &RestoreArgs,
    roots: Vec<String>,
    closure: bool,
    tier: Option<narward::restore::Tier>,
) -> Result<ExitCode> {
    let given = tier_and_days(a)?;
    let tier = tier.unwrap_or(given);
    let pricing = super::pricing(a.pricing.as_deref())?;
    let url_text = super::cache_url_or_state(a.cache.as_deref(), &g.state)?;
    let url = narward::cache::CacheUrl::parse(&url_text)?;
    let areas = super::apply_cmd::areas_or_journal(&a.areas, &g.state, &url)?;
    let n = super::restore_exec::NewRestore {
        url_text,
        roots,
        closure,
        tier,
        days: a.days,
        dry_run: a.dry_run,
        confirm: a.confirm.clone(),
        pricing,
        areas,
        now: a.now.unwrap_or_else(narward::index::now),
    };
    super::restore_exec::new_cmd(g, n).await
}

/// The hashes of the PATHs and --roots.
fn request_roots(a: &RestoreArgs) -> Result<Vec<narward_formats::store_path::StorePathHash>> {
    use narward_formats::store_path::StorePath;
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
    Ok(roots)
}

/// The pricing table given by `--pricing`, or the built-in one.
/// The state's index (checked to be of the plan's cache: its generation is returned),
/// the plan's restore catalog and the index's reference graph.
fn catalog_and_graph(
    g: &Global,
    plan_dir: &std::path::Path,
    plan: &Plan,
) -> Result<(
    u64,
    narward::restore::proposal::Catalog,
    narward::graph::Graph,
)> {
    let (idx, view) = Index::load_view(&g.state)?;
    if idx.meta.cache != plan.header.cache {
        bail!(
            "the plan {} is for {}, the index in {} for {}",
            plan_dir.display(),
            plan.header.cache,
            g.state.display(),
            idx.meta.cache
        );
    }
    let graph = catalog::graph_of(&view.graph()?);
    Ok((idx.meta.generation, catalog::from_plan(plan), graph))
}

/// `restore PATH... | --roots FILE --plan PLAN --dry-run`: the estimate from the plan.
fn request(g: &Global, a: &RestoreArgs) -> Result<ExitCode> {
    use narward::restore::request::estimate_request;
    let Some(plan_dir) = &a.plan else {
        bail!("`narward restore PATH... --plan DIR --dry-run` needs --plan DIR");
    };
    let tier = tier_and_days(a)?;
    let roots = request_roots(a)?;
    let plan = Plan::read(plan_dir)?;
    let pricing = super::pricing(a.pricing.as_deref())?;
    let (_, cat, graph) = catalog_and_graph(g, plan_dir, &plan)?;
    let e = estimate_request(&cat, &graph, &roots, a.closure, &pricing, a.days);
    if g.json {
        print_json(&serde_json::json!({ "estimate": e, "tier": tier, "executed": false }))?;
    } else {
        print!("{}", text::request_text(&e, a.closure, tier));
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
    let roots = read_root_section(&r, std::path::Path::new("."), "--roots")?;
    Ok(roots.hashes().to_vec())
}

fn compute(
    g: &Global,
    a: &RestoreArgs,
    plan_dir: &std::path::Path,
    policy_path: &std::path::Path,
) -> Result<ProposalHeader> {
    let plan = Plan::read(plan_dir)?;
    let policy = RestorePolicy::load(policy_path)?;
    let pricing = super::pricing(a.pricing.as_deref())?;
    if !access_store::exists(&g.state) {
        bail!(
            "no access statistics in {}: run `narward access-logs ingest LOGS...` first",
            access_store::access_dir(&g.state).display()
        );
    }
    let (ameta, stats) = access_store::load(&g.state)?;
    let (generation, cat, graph) = catalog_and_graph(g, plan_dir, &plan)?;
    if generation != plan.header.index_generation {
        eprintln!(
            "narward: note: the index is at generation {generation}, the plan was computed from {}; closures are today's",
            plan.header.index_generation
        );
    }
    let now = a.now.unwrap_or_else(narward::index::now);
    let prefix = narward::access::cache_prefix(&plan.header.cache_url);
    let demand = stats.narinfo_demand(&prefix, now, policy.window_days, 1);
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
