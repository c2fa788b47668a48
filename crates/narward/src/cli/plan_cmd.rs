//! `narward plan`, `plan show`, `plan diff`, `why`.

use super::{Global, PlanAction, PlanArgs, WhyArgs, print_json};
use anyhow::{Result, bail};
use narward::explain;
use narward::index::{self, Index};
use narward::plan::{self, Plan};
use narward::policy::Policy;
use std::process::ExitCode;

pub fn run(g: &Global, a: PlanArgs) -> Result<ExitCode> {
    match a.action {
        Some(PlanAction::Show { plan }) => {
            let p = Plan::read(&plan)?;
            if g.json {
                print_json(&p.header)?;
            } else {
                print!("{}", explain::summary_text(&p));
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
            let policy = Policy::load(&policy_path)?;
            let idx = Index::load(&g.state)?;
            let now = a.now.unwrap_or_else(index::now);
            let mut p = plan::compute(&idx, &policy, &policy_path.display().to_string(), now);
            p.write(&out)?;
            if g.json {
                print_json(&p.header)?;
            } else {
                print!("{}", explain::summary_text(&p));
                println!("plan written to {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn why(g: &Global, a: WhyArgs) -> Result<ExitCode> {
    let p = Plan::read(&a.plan)?;
    let idx = match Index::load(&g.state) {
        Ok(i) if i.meta.cache == p.header.cache => {
            if i.meta.generation != p.header.index_generation {
                eprintln!(
                    "narward: note: the index is at generation {}, the plan was computed from {}; referrers are today's",
                    i.meta.generation, p.header.index_generation
                );
            }
            Some(i)
        }
        _ => None,
    };
    let Some(w) = explain::why(&p, &a.path, idx.as_ref()) else {
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
