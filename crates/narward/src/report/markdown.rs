//! `report.md`: the short version, for a pull request, an issue or an e-mail.

use super::{ReportData, date, decision_totals};
use crate::cost::{money, months_text};
use crate::explain::human_bytes;
use crate::plan::Decision;
use std::fmt::Write;

/// The Markdown summary.
pub fn render(d: &ReportData) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Cache report: `{}`\n", d.cache);
    let _ = writeln!(
        o,
        "Index generation {} (updated {}), report of {}, prices: {}. Full report: `report.html`; data: `report.json`.\n",
        d.index_generation,
        date(d.index_updated_at),
        date(d.generated_at),
        d.pricing.name
    );
    let t = &d.totals;
    let _ = writeln!(o, "## Today\n");
    let _ = writeln!(
        o,
        "- **{}** objects, **{}** ({} store paths)",
        t.objects,
        human_bytes(t.bytes),
        t.store_paths
    );
    let _ = writeln!(
        o,
        "- storage bill **{}/month** ({}/year)\n",
        money(d.bill.monthly_usd),
        money(d.bill.monthly_usd * 12.0)
    );
    let _ = writeln!(o, "| storage class | objects | bytes | $/month |");
    let _ = writeln!(o, "|---|---:|---:|---:|");
    for c in &d.bill.by_class {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            c.class,
            c.objects,
            human_bytes(c.bytes),
            money(c.monthly_usd)
        );
    }
    let _ = writeln!(o, "\n| kind | objects | bytes | $/month |");
    let _ = writeln!(o, "|---|---:|---:|---:|");
    for c in &d.bill.by_category {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            c.category,
            c.objects,
            human_bytes(c.bytes),
            money(c.monthly_usd)
        );
    }
    let g = &d.growth;
    let _ = writeln!(o, "\n## Growth\n");
    let _ = writeln!(o, "{}\n", g.method);
    if let (Some(p12), Some(p24)) = (g.projection.get(11), g.projection.get(23)) {
        let _ = writeln!(
            o,
            "- in 12 months ({}): **{}**, {}/month",
            p12.month,
            human_bytes(p12.cumulative_bytes),
            money(p12.monthly_usd)
        );
        let _ = writeln!(
            o,
            "- in 24 months ({}): **{}**, {}/month",
            p24.month,
            human_bytes(p24.cumulative_bytes),
            money(p24.monthly_usd)
        );
    }
    if !d.composition.families.is_empty() {
        let _ = writeln!(o, "\n## Largest name families\n");
        for f in d.composition.families.iter().take(10) {
            let _ = writeln!(
                o,
                "- `{}`: {} ({} paths)",
                f.family,
                human_bytes(f.bytes),
                f.paths
            );
        }
    }
    if let Some(r) = &d.root_sets {
        let _ = writeln!(o, "\n## Root sets\n");
        let _ = writeln!(o, "| set | roots | closure | unique | shared |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|");
        for s in &r.sets {
            let _ = writeln!(
                o,
                "| {} | {} | {} ({} paths) | {} | {} |",
                s.label,
                s.roots,
                human_bytes(s.closure_bytes),
                s.closure_paths,
                human_bytes(s.unique_bytes),
                human_bytes(s.shared_bytes)
            );
        }
        let _ = writeln!(
            o,
            "\nIn no closure: {} paths, {}.",
            r.outside.count,
            human_bytes(r.outside.bytes)
        );
    }
    if !d.plans.is_empty() {
        let _ = writeln!(o, "\n## Plans\n");
        let _ = writeln!(
            o,
            "| plan | deleted | archived | saving/month | one-time | break-even | not worth archiving |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
        for p in &d.plans {
            let t = decision_totals(&p.summary);
            let get = |d: Decision| t.iter().find(|x| x.0 == d).map(|x| x.1).unwrap_or_default();
            let nw: u64 = p
                .cost
                .targets
                .iter()
                .map(|t| t.not_worth_archiving.count)
                .sum();
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {} | {} NARs |",
                p.name,
                human_bytes(get(Decision::Delete).bytes),
                human_bytes(get(Decision::Archive).bytes),
                money(p.cost.monthly_saving_usd),
                money(p.cost.one_time.total_usd),
                months_text(p.cost.break_even_months),
                nw
            );
        }
    }
    let _ = writeln!(o, "\n## Break-even object size\n");
    for r in &d.break_even.classes {
        let _ = writeln!(
            o,
            "- {}: {}",
            r.class,
            r.break_even_size
                .map_or("never pays back".into(), human_bytes)
        );
    }
    if let Some(a) = &d.access {
        super::access::markdown(&mut o, a);
    }
    o
}
