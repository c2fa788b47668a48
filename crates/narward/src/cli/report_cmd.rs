//! `narward report`: the cost and growth report of the indexed cache.

use super::{Global, print_json};
use anyhow::{Context, Result};
use clap::Args;
use narward::cost::money;
use narward::explain::human_bytes;
use narward::index::{self, Index};
use narward::plan::Plan;
use narward::policy::Policy;
use narward::report;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Directory to write report.html, report.json and report.md into (created if needed;
    /// earlier report files in it are replaced).
    #[arg(long, value_name = "DIR", default_value = "report")]
    pub out: PathBuf,
    /// A policy file: the report then shows the closure of each of its root sources (each
    /// release) and what they share.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// A plan directory (repeatable): the report prices each plan and compares them.
    #[arg(long = "plan", value_name = "DIR")]
    pub plans: Vec<PathBuf>,
    /// A pricing table (TOML) instead of the built-in AWS S3 us-east-1 prices; see
    /// crates/narward/pricing/aws-us-east-1.toml for the format.
    #[arg(long, value_name = "FILE")]
    pub pricing: Option<PathBuf>,
    /// Report as if now were this unix time (for reproducible reports and tests).
    #[arg(long, hide = true)]
    pub now: Option<i64>,
}

pub fn run(g: &Global, a: ReportArgs) -> Result<ExitCode> {
    let pricing = super::pricing(a.pricing.as_deref())?;
    let policy = a.policy.as_deref().map(Policy::load).transpose()?;
    let (idx, view) = Index::load_view(&g.state)?;
    let graph = view.graph()?;
    let mut plans = Vec::new();
    for dir in &a.plans {
        let p = Plan::read(dir)?;
        if p.header.cache != idx.meta.cache {
            eprintln!(
                "narward: note: plan {} is for {}, not the indexed cache {}",
                dir.display(),
                p.header.cache,
                idx.meta.cache
            );
        } else if p.header.index_generation != idx.meta.generation {
            eprintln!(
                "narward: note: plan {} was computed from index generation {}, the index is at {}",
                dir.display(),
                p.header.index_generation,
                idx.meta.generation
            );
        }
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
        plans.push((name, p));
    }
    let now = a.now.unwrap_or_else(index::now);
    let snap = view.snapshot(&idx, &graph);
    let mut data = report::build(&snap, policy.as_ref(), &plans, &pricing, now);
    if narward::access::store::exists(&g.state) {
        let (meta, stats) = narward::access::store::load(&g.state)?;
        let prefix = narward::access::cache_prefix(&idx.meta.cache_url);
        data.access = Some(report::access::section(&stats, &prefix, meta.updated_at));
    }
    report::write(&data, &a.out)
        .with_context(|| format!("writing the report into {}", a.out.display()))?;
    if g.json {
        print_json(&serde_json::json!({
            "out": a.out,
            "files": ["report.html", "report.json", "report.md"],
            "totals": data.totals,
            "monthly_usd": data.bill.monthly_usd,
        }))?;
    } else {
        println!(
            "report of {}: {} objects, {}, {}/month at {}",
            data.cache,
            data.totals.objects,
            human_bytes(data.totals.bytes),
            money(data.bill.monthly_usd),
            data.pricing.name
        );
        for p in &data.plans {
            println!(
                "  plan {}: saves {}/month, one-time {}",
                p.name,
                money(p.cost.monthly_saving_usd),
                money(p.cost.one_time.total_usd)
            );
        }
        println!("wrote {}", a.out.join("report.html").display());
    }
    Ok(ExitCode::SUCCESS)
}
