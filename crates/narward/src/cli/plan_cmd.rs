//! `narward plan`, `plan show`, `plan diff`, `why`.

use super::{Global, PlanAction, PlanArgs, WhyArgs, print_json};
use anyhow::{Context, Result, bail};
use narward::cost;
use narward::explain;
use narward::index::{self, Index};
use narward::plan::{
    self, Begin, ObjectDecision, PathDecision, Plan, PlanSink, PlanWriter, PlanWriterThread,
};
use narward::policy::{Policy, RootOverrides, check_plan_roots};
use std::process::ExitCode;

/// The pricing table given by `--pricing`, or the built-in one.
pub fn run(g: &Global, a: PlanArgs) -> Result<ExitCode> {
    let now = a.now.unwrap_or_else(index::now);
    match a.action {
        Some(PlanAction::Show { plan }) => {
            let p = Plan::read(&plan)?;
            let c = cost::price_plan(&p, &super::pricing(a.pricing.as_deref())?, now);
            if g.json {
                print_json(&serde_json::json!({ "plan": p.header, "cost": c }))?;
            } else {
                print!("{}", explain::summary_text(&p));
                print!("{}", cost::plan_cost_text(&c));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(PlanAction::Diff { a, b, top }) => {
            let (pa, pb) = (Plan::read(&a)?, Plan::read(&b)?);
            if pa.header.cache != pb.header.cache {
                eprintln!(
                    "narward: note: the plans are for different caches ({} and {})",
                    pa.header.cache, pb.header.cache
                );
            }
            let d = explain::diff(&pa, &pb, top);
            if g.json {
                print_json(&d)?;
            } else {
                print!("{}", d.to_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let (Some(policy_path), Some(out)) = (a.policy, a.out) else {
                bail!(
                    "`narward plan` needs --policy FILE and --out DIR (or: plan show DIR, plan diff A B)"
                );
            };
            let mut policy = Policy::load(&policy_path)?;
            if policy.file.keep.access_stats {
                add_access_stats(&mut policy, &policy_path, &g.state)?;
            }
            // Read the pricing table first: a bad table leaves no plan behind.
            let pricing = super::pricing(a.pricing.as_deref())?;
            // The index is verified before any decision is written; every decision is
            // written (and priced) as it is made, never all in memory.
            let mut sink = Writing {
                out: &out,
                policy: &policy.file,
                allow: RootOverrides {
                    few_roots: a.allow_few_roots,
                    empty_cache: a.allow_empty_cache,
                },
                writer: None,
                pricer: cost::PlanPricer::new(&pricing, now),
            };
            // The roots are let go of once found, before the closure (issue 9: a release
            // root list is tens of bytes per path).
            let roots = std::mem::take(&mut policy.roots);
            let planned = plan::plan_from_state(
                &g.state,
                &policy,
                roots,
                &policy_path.display().to_string(),
                now,
                &mut sink,
            )?;
            let Some(writer) = sink.writer else {
                bail!("no plan was written for {}", planned.header.cache);
            };
            let header = writer.finish(planned.header, &planned.restore)?;
            narward::progress::phase("plan: written");
            let c = sink.pricer.finish(&header);
            narward::progress::phase("plan: priced");
            if g.json {
                print_json(&serde_json::json!({ "plan": header, "cost": c }))?;
            } else {
                print!("{}", explain::summary_text_of(&header, &planned.restore));
                print!("{}", cost::plan_cost_text(&c));
                println!("plan written to {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `narward plan`'s sink: refuses a plan with too few roots before anything is written,
/// then writes and prices every decision as it comes.
struct Writing<'a> {
    out: &'a std::path::Path,
    policy: &'a narward::policy::PolicyFile,
    allow: RootOverrides,
    writer: Option<PlanWriterThread>,
    pricer: cost::PlanPricer<'a>,
}

impl PlanSink for Writing<'_> {
    fn begin(&mut self, b: &Begin<'_>) -> Result<()> {
        check_plan_roots(b.roots, b.paths, self.policy, self.allow).with_context(|| {
            format!(
                "refusing to write a plan for {} (nothing was written)",
                b.cache
            )
        })?;
        let w = PlanWriter::create(self.out, b.cache, b.paths, b.objects)?;
        self.writer = Some(PlanWriterThread::spawn(w));
        Ok(())
    }

    fn path(&mut self, p: PathDecision) -> Result<()> {
        match &mut self.writer {
            Some(w) => w.path(p),
            None => bail!("a plan decision came before the plan began"),
        }
    }

    fn object(&mut self, o: ObjectDecision) -> Result<()> {
        self.pricer.add(&o);
        match &mut self.writer {
            Some(w) => w.object(o),
            None => bail!("a plan decision came before the plan began"),
        }
    }
}

/// `keep.access_stats`: the last reads the state's access statistics know.
fn add_access_stats(
    policy: &mut Policy,
    file: &std::path::Path,
    state: &std::path::Path,
) -> Result<()> {
    use narward::access::store;
    if !store::exists(state) {
        bail!(
            "policy {}: keep.access_stats is set but {} holds no access statistics: run `narward access-logs ingest LOGS...` first",
            file.display(),
            store::access_dir(state).display()
        );
    }
    let (_, stats) = store::load(state)?;
    policy.add_last_access(stats.last_access(""));
    Ok(())
}

pub fn why(g: &Global, a: WhyArgs) -> Result<ExitCode> {
    let p = Plan::read(&a.plan)?;
    let meta = Index::load_meta(&g.state)
        .ok()
        .filter(|m| m.cache == p.header.cache);
    if let Some(m) = &meta
        && m.generation != p.header.index_generation
    {
        eprintln!(
            "narward: note: the index is at generation {}, the plan was computed from {}; referrers are today's",
            m.generation, p.header.index_generation
        );
    }
    // Referrers come from the index's cache graph: mapped from its columns, or built from
    // its narinfos for an index written before they existed.
    let mapped = match &meta {
        Some(m) => Index::open_columns(&g.state, m)?,
        None => None,
    };
    let built = match (&meta, &mapped) {
        (Some(_), None) => Some(Index::load_view(&g.state)?.1),
        _ => None,
    };
    let graph = match (&mapped, &built) {
        (Some(m), _) => Some(m.graph()?),
        (None, Some(v)) => Some(v.graph()?),
        _ => None,
    };
    let Some(w) = explain::why(&p, &a.path, graph.as_ref()) else {
        if explain::looks_like_path(&a.path) {
            bail!(
                "{} is not in the plan (no narinfo for it in the cache when the plan was made)",
                a.path
            );
        }
        bail!(
            "{:?} is neither a store path nor an object key of the plan",
            a.path
        );
    };
    if g.json {
        print_json(&w)?;
    } else {
        print!("{}", w.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
