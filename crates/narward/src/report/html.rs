//! `report.html`: one self-contained page (inline CSS, inline SVG, no script, no external
//! resource), readable printed or on screen.

use super::svg::{self, Frame, HRow, Marker, Series, Unit, esc};
use super::{MonthRow, ReportData, TOP, date, decision_totals};
use crate::cost::{OneTimeCost, PlanCost, money, months_text};
use crate::explain::human_bytes;
use crate::plan::{CountBytes, Decision};
use narward_formats::keys::Category;
use std::collections::BTreeSet;
use std::fmt::Write;

const CSS: &str = r#"
:root { --ink:#0f172a; --muted:#475569; --line:#e2e8f0; --bg:#f8fafc; --accent:#2563eb; --warn:#b45309; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 14px/1.5 "DejaVu Sans", "Liberation Sans", -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px 48px; }
header.top { background: linear-gradient(135deg, #0f172a 0%, #1e3a8a 100%); color: #fff; padding: 28px 0 22px; }
header.top .wrap { padding-bottom: 0; }
.brand { font-size: 12px; letter-spacing: .14em; text-transform: uppercase; color: #93c5fd; font-weight: bold; }
h1 { margin: 4px 0 6px; font-size: 28px; }
header.top .sub { color: #cbd5e1; font-size: 13px; }
header.top code { color: #fff; background: rgba(255,255,255,.12); padding: 1px 6px; border-radius: 4px; }
nav { margin-top: 14px; display: flex; flex-wrap: wrap; gap: 6px; }
nav a { color: #e2e8f0; text-decoration: none; font-size: 12.5px; padding: 3px 10px; border: 1px solid rgba(255,255,255,.25); border-radius: 999px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(175px, 1fr)); gap: 12px; margin: 22px 0 8px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; box-shadow: 0 1px 2px rgba(15,23,42,.05); }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
.card .v { font-size: 23px; font-weight: bold; margin-top: 2px; white-space: nowrap; letter-spacing: -.01em; }
.card .v .u { font-size: 14px; font-weight: normal; color: var(--muted); margin-left: 2px; }
.card .s { color: var(--muted); font-size: 12px; margin-top: 2px; }
.card.good .v { color: #15803d; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px; margin: 18px 0; }
h2 { margin: 0 0 4px; font-size: 20px; }
h3 { margin: 18px 0 6px; font-size: 15.5px; }
p.lead { color: var(--muted); margin: 0 0 12px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
svg.chart { width: 100%; height: auto; display: block; margin: 6px 0; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 4px; font-size: 13px; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f1f5f9; color: #334155; font-weight: 600; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: bold; border-top: 2px solid #cbd5e1; }
tbody tr:nth-child(even) td { background: #fafcff; }
code, .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; font-size: 12px; }
.fit { background: #eff6ff; border-left: 4px solid var(--accent); padding: 8px 12px; margin: 8px 0; border-radius: 0 6px 6px 0; }
.warn { background: #fffbeb; border-left: 4px solid #f59e0b; padding: 8px 12px; margin: 8px 0; border-radius: 0 6px 6px 0; color: #78350f; }
.muted { color: var(--muted); }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
.pill { display:inline-block; padding: 0 7px; border-radius: 999px; font-size: 11.5px; background:#e0e7ff; color:#3730a3; margin: 1px 2px; }
.plan { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 12px 0; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 26px; }
ul.notes li { margin: 3px 0; color: #334155; }
@media print { body { background: #fff; } section, .card { box-shadow: none; break-inside: avoid; } header.top { background: #1e3a8a; -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"#;

/// A colour per kind of object.
pub fn category_color(c: Category) -> &'static str {
    match c {
        Category::Nar => "#2563eb",
        Category::Narinfo => "#f59e0b",
        Category::Listing => "#10b981",
        Category::DebugInfo => "#8b5cf6",
        Category::Log => "#ef4444",
        Category::Realisation => "#14b8a6",
        Category::CacheInfo => "#64748b",
        Category::Other => "#94a3b8",
    }
}

/// A readable name per kind of object.
pub fn category_name(c: Category) -> &'static str {
    match c {
        Category::Nar => "NAR",
        Category::Narinfo => "narinfo",
        Category::Listing => ".ls listing",
        Category::DebugInfo => "debuginfo",
        Category::Log => "build log",
        Category::Realisation => "realisation",
        Category::CacheInfo => "nix-cache-info",
        Category::Other => "other",
    }
}

fn class_color(c: &str) -> &'static str {
    use narward_formats::storage_class::StorageClass as S;
    match S::parse(c) {
        Some(S::Standard) => "#2563eb",
        Some(S::IntelligentTiering) => "#0891b2",
        Some(S::StandardIa) => "#16a34a",
        Some(S::OnezoneIa) => "#65a30d",
        Some(S::GlacierIr) => "#ca8a04",
        Some(S::Glacier) => "#ea580c",
        Some(S::DeepArchive) => "#7c3aed",
        None => "#64748b",
    }
}

/// Money for a headline: whole cents, or "< $0.01".
fn money_short(x: f64) -> String {
    if x.abs() < 0.005 && x != 0.0 {
        "< $0.01".into()
    } else {
        money(x)
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else if part > 0 && part * 2000 < whole {
        "< 0.1 %".into()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

fn n(v: u64) -> String {
    let s = v.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

fn frame(id: &str, title: &str, y: &str, x: &str, unit: Unit, width: f64, height: f64) -> Frame {
    Frame {
        id: id.into(),
        title: title.into(),
        y_label: y.into(),
        x_label: x.into(),
        unit,
        width,
        height,
    }
}

fn card(o: &mut String, class: &str, k: &str, v: &str, s: &str) {
    // A trailing "/mo" is set smaller, so long values fit.
    let (v, unit) = v.strip_suffix("/mo").map_or((v, ""), |x| (x, "/mo"));
    let _ = write!(
        o,
        "<div class=\"card {class}\"><div class=\"k\">{}</div><div class=\"v\">{}<span class=\"u\">{unit}</span></div><div class=\"s\">{}</div></div>",
        esc(k),
        esc(v),
        esc(s)
    );
}

fn cards(o: &mut String, d: &ReportData) {
    o.push_str("<div class=\"cards\">");
    let t = &d.totals;
    card(
        o,
        "",
        "Objects",
        &n(t.objects),
        &format!("{} store paths", n(t.store_paths)),
    );
    card(
        o,
        "",
        "Stored",
        &human_bytes(t.bytes),
        &format!("{} in NARs of store paths", human_bytes(t.path_bytes)),
    );
    card(
        o,
        "",
        "Storage bill",
        &format!("{}/mo", money_short(d.bill.monthly_usd)),
        &format!(
            "{}/month, {}/year at {}",
            money(d.bill.monthly_usd),
            money(d.bill.monthly_usd * 12.0),
            d.pricing.name
        ),
    );
    let g = &d.growth;
    let complete: Vec<_> = g.months.iter().filter(|m| !m.partial).collect();
    let last12: Vec<_> = complete.iter().rev().take(12).collect();
    if !last12.is_empty() {
        let sum: u64 = last12.iter().map(|m| m.bytes).sum();
        card(
            o,
            "",
            "Growth",
            &format!("{}/mo", human_bytes(sum / last12.len() as u64)),
            &format!("average of the last {} complete months", last12.len()),
        );
    } else {
        card(o, "", "Growth", "–", "no complete month of uploads yet");
    }
    match g.projection.get(11) {
        Some(p) => card(
            o,
            "",
            "In 12 months",
            &human_bytes(p.cumulative_bytes),
            &format!(
                "{}/mo, {} fit (R² {:.2})",
                money(p.monthly_usd),
                g.fit.as_ref().map_or("", |f| f.model.as_str()),
                g.fit.as_ref().map_or(0.0, |f| f.r2)
            ),
        ),
        None => card(o, "", "In 12 months", "–", "not enough history to project"),
    }
    if let Some(best) = d.plans.iter().max_by(|a, b| {
        a.cost
            .monthly_saving_usd
            .total_cmp(&b.cost.monthly_saving_usd)
    }) {
        card(
            o,
            "good",
            "Best plan saves",
            &format!("{}/mo", money_short(best.cost.monthly_saving_usd)),
            &format!(
                "{}: {}/month; one-time {}, break-even {}",
                best.name,
                money(best.cost.monthly_saving_usd),
                money(best.cost.one_time.total_usd),
                months_text(best.cost.break_even_months)
            ),
        );
    }
    o.push_str("</div>");
}

/// A chart of monthly bills: one bar a `(label, color, US dollars a month, bytes)`.
fn bill_bars<'a>(
    id: &str,
    title: &str,
    bills: impl Iterator<Item = (String, &'a str, f64, u64)>,
) -> String {
    let rows: Vec<HRow> = bills
        .map(|(label, color, usd, bytes)| HRow {
            label,
            parts: vec![(usd, color.into(), "monthly".into())],
            note: Some(format!("{}/mo · {}", money(usd), human_bytes(bytes))),
        })
        .collect();
    let f = frame(id, title, "", "US dollars per month", Unit::Usd, 560.0, 0.0);
    svg::hbars(&f, &rows, &[])
}

fn cost_section(o: &mut String, d: &ReportData) {
    let b = &d.bill;
    o.push_str("<section id=\"cost\"><h2>What the cache costs today</h2>");
    let _ = write!(
        o,
        "<p class=\"lead\">Monthly storage bill of the {} objects in the index, priced with <b>{}</b>. STANDARD is priced over its volume tiers; archive classes include their per-object overhead.</p>",
        n(b.objects),
        esc(&d.pricing.name)
    );
    let by_class = b.by_class.iter().map(|c| {
        let label = c.class.clone();
        (label, class_color(&c.class), c.monthly_usd, c.bytes)
    });
    let by_kind = b.by_category.iter().map(|c| {
        let label = category_name(c.category).to_string();
        (label, category_color(c.category), c.monthly_usd, c.bytes)
    });
    o.push_str("<div class=\"grid2\"><div>");
    o.push_str(&bill_bars(
        "chart-bill-class",
        "Monthly bill by storage class",
        by_class,
    ));
    o.push_str("</div><div>");
    o.push_str(&bill_bars(
        "chart-bill-kind",
        "Monthly bill by kind of object",
        by_kind,
    ));
    o.push_str("</div></div>");
    o.push_str("<div class=\"grid2\"><div><table><thead><tr><th>Storage class</th><th class=\"n\">Objects</th><th class=\"n\">Bytes</th><th class=\"n\">Billed bytes</th><th class=\"n\">$/month</th></tr></thead><tbody>");
    for c in &b.by_class {
        let _ = write!(
            o,
            "<tr><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&c.class),
            if c.priced {
                ""
            } else {
                " <span class=\"muted\">(unpriced: as STANDARD)</span>"
            },
            n(c.objects),
            human_bytes(c.bytes),
            human_bytes(c.billable_bytes + c.standard_overhead_bytes),
            money(c.monthly_usd)
        );
    }
    let _ = write!(
        o,
        "<tr class=\"total\"><td>Total</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td class=\"n\">{}</td></tr></tbody></table></div>",
        n(b.objects),
        human_bytes(b.bytes),
        money(b.monthly_usd)
    );
    o.push_str("<div><table><thead><tr><th>Kind of object</th><th class=\"n\">Objects</th><th class=\"n\">Bytes</th><th class=\"n\">Share of bytes</th><th class=\"n\">$/month</th></tr></thead><tbody>");
    for c in &b.by_category {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            category_name(c.category),
            n(c.objects),
            human_bytes(c.bytes),
            pct(c.bytes, b.bytes),
            money(c.monthly_usd)
        );
    }
    let _ = write!(
        o,
        "<tr class=\"total\"><td>Total</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">100 %</td><td class=\"n\">{}</td></tr></tbody></table></div></div>",
        n(b.objects),
        human_bytes(b.bytes),
        money(b.monthly_usd)
    );
    o.push_str("</section>");
}

/// One stacked series a category of `cats`, a value a month of `months` (`value` of the
/// month's entry for the category; none where the month has none).
fn category_series(
    cats: &[Category],
    months: &[MonthRow],
    value: impl Fn(&CountBytes) -> u64,
) -> Vec<Series> {
    cats.iter()
        .map(|c| Series {
            name: category_name(*c).into(),
            color: category_color(*c).into(),
            values: months
                .iter()
                .map(|m| m.by_category.get(c).map(|x| value(x) as f64))
                .collect(),
            dashed: false,
        })
        .collect()
}

fn growth_section(o: &mut String, d: &ReportData) {
    let g = &d.growth;
    o.push_str("<section id=\"growth\"><h2>Growth</h2>");
    o.push_str("<p class=\"lead\">Objects and bytes added per calendar month (UTC), from the last-modified dates of the objects present now.</p>");
    if g.months.is_empty() {
        let _ = write!(o, "<p>{}</p></section>", esc(&g.method));
        return;
    }
    let labels: Vec<String> = g.months.iter().map(|m| m.month.clone()).collect();
    // NAR first: the bulk of the bytes sits at the bottom of each bar.
    let present: BTreeSet<Category> = g
        .months
        .iter()
        .flat_map(|m| m.by_category.keys().copied())
        .collect();
    let cats: Vec<Category> = std::iter::once(Category::Nar)
        .chain(Category::ALL.into_iter().filter(|c| *c != Category::Nar))
        .filter(|c| present.contains(c))
        .collect();
    let series = category_series(&cats, &g.months, |x| x.bytes);
    o.push_str(&svg::stacked_bars(
        &frame(
            "chart-growth-bytes",
            "Bytes added per month, by kind of object",
            "bytes added",
            "month of last modification (UTC)",
            Unit::Bytes,
            1130.0,
            340.0,
        ),
        &labels,
        &series,
        None,
    ));
    let count_series = category_series(&cats, &g.months, |x| x.count);
    // Cumulative size and projection on one time axis.
    let mut all: Vec<String> = labels.clone();
    all.extend(g.projection.iter().map(|p| p.month.clone()));
    let nm = g.months.len();
    let mut actual: Vec<Option<f64>> = g
        .months
        .iter()
        .map(|m| Some(m.cumulative_bytes as f64))
        .collect();
    actual.resize(all.len(), None);
    let mut proj: Vec<Option<f64>> = vec![None; all.len()];
    if !g.projection.is_empty() {
        proj[nm - 1] = g.months.last().map(|m| m.cumulative_bytes as f64);
        for (i, p) in g.projection.iter().enumerate() {
            proj[nm + i] = Some(p.cumulative_bytes as f64);
        }
    }
    let mut line_series = vec![Series {
        name: "stored (cumulative)".into(),
        color: "#2563eb".into(),
        values: actual,
        dashed: false,
    }];
    if let Some(f) = &g.fit {
        line_series.push(Series {
            name: format!("projection ({} fit, R² {:.2})", f.model, f.r2),
            color: "#dc2626".into(),
            values: proj,
            dashed: true,
        });
    }
    let marker = (!g.projection.is_empty()).then(|| Marker {
        at: (nm - 1) as f64,
        label: "today".into(),
        color: "#64748b".into(),
    });
    o.push_str("<div class=\"grid2\"><div>");
    o.push_str(&svg::stacked_bars(
        &frame(
            "chart-growth-objects",
            "Objects added per month",
            "objects added",
            "month (UTC)",
            Unit::Count,
            560.0,
            320.0,
        ),
        &labels,
        &count_series,
        None,
    ));
    o.push_str("</div><div>");
    o.push_str(&svg::lines(
        &frame(
            "chart-cumulative",
            if g.projection.is_empty() {
                "Cumulative size"
            } else {
                "Cumulative size and 24-month projection"
            },
            "bytes stored",
            "month (UTC)",
            Unit::Bytes,
            560.0,
            320.0,
        ),
        &all,
        &line_series,
        marker.as_ref(),
    ));
    o.push_str("</div></div>");
    let _ = write!(
        o,
        "<div class=\"fit\"><b>Model.</b> {}</div>",
        esc(&g.method)
    );
    if g.projection.len() >= 24 {
        let p12 = &g.projection[11];
        let p24 = &g.projection[23];
        let _ = write!(
            o,
            "<p>Projected size: <b>{}</b> in 12 months ({} {}/month), <b>{}</b> in 24 months ({} {}/month) — at today's cost per byte and storage-class mix.</p>",
            human_bytes(p12.cumulative_bytes),
            esc(&p12.month),
            money(p12.monthly_usd),
            human_bytes(p24.cumulative_bytes),
            esc(&p24.month),
            money(p24.monthly_usd)
        );
    }
    o.push_str("<details><summary>Monthly table</summary><table><thead><tr><th>Month</th><th class=\"n\">Objects added</th><th class=\"n\">Bytes added</th>");
    for c in &cats {
        let _ = write!(o, "<th class=\"n\">{}</th>", category_name(*c));
    }
    o.push_str("<th class=\"n\">Cumulative objects</th><th class=\"n\">Cumulative bytes</th></tr></thead><tbody>");
    for m in &g.months {
        let _ = write!(
            o,
            "<tr><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            esc(&m.month),
            if m.partial {
                " <span class=\"muted\">(so far)</span>"
            } else {
                ""
            },
            n(m.objects),
            human_bytes(m.bytes)
        );
        for c in &cats {
            let _ = write!(
                o,
                "<td class=\"n\">{}</td>",
                m.by_category
                    .get(c)
                    .map_or("–".into(), |x| human_bytes(x.bytes))
            );
        }
        let _ = write!(
            o,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            n(m.cumulative_objects),
            human_bytes(m.cumulative_bytes)
        );
    }
    o.push_str("</tbody></table>");
    if !g.projection.is_empty() {
        o.push_str("<h3>Projection</h3><table><thead><tr><th>Month</th><th class=\"n\">Bytes added (fitted)</th><th class=\"n\">Cumulative bytes</th><th class=\"n\">Storage bill/month</th></tr></thead><tbody>");
        for p in &g.projection {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&p.month),
                human_bytes(p.added_bytes),
                human_bytes(p.cumulative_bytes),
                money(p.monthly_usd)
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</details></section>");
}

fn composition_section(o: &mut String, d: &ReportData) {
    let c = &d.composition;
    o.push_str("<section id=\"composition\"><h2>Composition</h2>");
    o.push_str("<p class=\"lead\">What the bytes are: object sizes, name families, the largest store paths.</p>");
    if !c.size_histogram.is_empty() {
        let labels: Vec<String> = c
            .size_histogram
            .iter()
            .map(|b| human_bytes(b.lo).replace(".0 ", " "))
            .collect();
        // The break-even size of the archive class the plans use (else DEEP_ARCHIVE).
        let class = d
            .plans
            .first()
            .map_or("DEEP_ARCHIVE", |p| p.archive_storage_class.as_str());
        let marker = d
            .break_even
            .classes
            .iter()
            .find(|r| r.class == class)
            .and_then(|r| r.break_even_size.map(|s| (r, s)))
            .and_then(|(r, s)| {
                let j = c
                    .size_histogram
                    .iter()
                    .position(|b| s >= b.lo && s < b.hi)?;
                let lo = c.size_histogram[j].lo.max(1) as f64;
                Some(Marker {
                    at: j as f64 + (s as f64 / lo).log2().clamp(0.0, 1.0),
                    label: format!("{} break-even {}", r.class, human_bytes(s)),
                    color: "#dc2626".into(),
                })
            });
        let obj = |nar: bool| -> Vec<Option<f64>> {
            c.size_histogram
                .iter()
                .map(|b| {
                    Some(if nar {
                        b.nar_objects as f64
                    } else {
                        (b.objects - b.nar_objects) as f64
                    })
                })
                .collect()
        };
        let byt = |nar: bool| -> Vec<Option<f64>> {
            c.size_histogram
                .iter()
                .map(|b| {
                    Some(if nar {
                        b.nar_bytes as f64
                    } else {
                        (b.bytes - b.nar_bytes) as f64
                    })
                })
                .collect()
        };
        let two = |f: &dyn Fn(bool) -> Vec<Option<f64>>| {
            vec![
                Series {
                    name: "NAR".into(),
                    color: category_color(Category::Nar).into(),
                    values: f(true),
                    dashed: false,
                },
                Series {
                    name: "other objects".into(),
                    color: "#f59e0b".into(),
                    values: f(false),
                    dashed: false,
                },
            ]
        };
        o.push_str("<div class=\"grid2\"><div>");
        o.push_str(&svg::stacked_bars(
            &frame(
                "chart-size-objects",
                "Objects by size (log scale)",
                "objects",
                "object size, powers of two (bucket lower bound)",
                Unit::Count,
                560.0,
                330.0,
            ),
            &labels,
            &two(&obj),
            marker.as_ref(),
        ));
        o.push_str("</div><div>");
        o.push_str(&svg::stacked_bars(
            &frame(
                "chart-size-bytes",
                "Bytes by object size (log scale)",
                "bytes",
                "object size, powers of two (bucket lower bound)",
                Unit::Bytes,
                560.0,
                330.0,
            ),
            &labels,
            &two(&byt),
            marker.as_ref(),
        ));
        o.push_str("</div></div>");
    }
    if !c.families.is_empty() {
        let _ = write!(
            o,
            "<h3>Bytes by name family</h3><p class=\"muted\">{} families: each store path name without its version; *-debug outputs, ISO/disk images and sources are grouped on their own.{}</p>",
            n(c.family_count),
            if c.family_count as usize > TOP {
                format!(
                    " The {} largest are shown, the rest summed in the last row.",
                    TOP - 1
                )
            } else {
                String::new()
            }
        );
        let rows: Vec<HRow> = c
            .families
            .iter()
            .map(|f| HRow {
                label: f.family.clone(),
                parts: vec![(f.bytes as f64, "#0ea5e9".into(), "bytes".into())],
                note: Some(format!(
                    "{} · {} path{}",
                    human_bytes(f.bytes),
                    n(f.paths),
                    if f.paths == 1 { "" } else { "s" }
                )),
            })
            .collect();
        o.push_str(&svg::hbars(
            &frame(
                "chart-families",
                "Largest name families",
                "",
                "bytes of NAR objects",
                Unit::Bytes,
                1130.0,
                0.0,
            ),
            &rows,
            &[],
        ));
    }
    if !c.largest_paths.is_empty() {
        let with_sets = d.root_sets.is_some();
        let _ = write!(
            o,
            "<h3>Largest store paths</h3><table><thead><tr><th>#</th><th>Store path</th><th>Family</th><th>Class</th><th class=\"n\">NAR object</th><th class=\"n\">NarSize</th>{}</tr></thead><tbody>",
            if with_sets {
                "<th>In root sets</th>"
            } else {
                ""
            }
        );
        for (i, p) in c.largest_paths.iter().enumerate() {
            let _ = write!(
                o,
                "<tr><td class=\"n\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                i + 1,
                esc(&p.path),
                esc(&p.family),
                esc(p.storage_class.as_deref().unwrap_or("STANDARD")),
                human_bytes(p.bytes),
                human_bytes(p.nar_size)
            );
            if with_sets {
                o.push_str("<td>");
                if p.root_sets.is_empty() {
                    o.push_str("<span class=\"muted\">none (unreachable)</span>");
                }
                for s in &p.root_sets {
                    let _ = write!(o, "<span class=\"pill\">{}</span>", esc(s));
                }
                o.push_str("</td>");
            }
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>");
}

fn roots_section(o: &mut String, d: &ReportData) {
    let Some(r) = &d.root_sets else { return };
    o.push_str("<section id=\"roots\"><h2>Root sets and what they share</h2>");
    let _ = write!(
        o,
        "<p class=\"lead\">Each root source of the policy (e.g. each release) and the closure of its roots under references. <b>Unique</b> bytes are in no other set's closure: they are what dropping that set alone would free. {} paths ({}) are in no closure.</p>",
        n(r.outside.count),
        human_bytes(r.outside.bytes)
    );
    let rows: Vec<HRow> = r
        .sets
        .iter()
        .map(|s| HRow {
            label: s.label.clone(),
            parts: vec![
                (s.unique_bytes as f64, "#7c3aed".into(), "unique".into()),
                (s.shared_bytes as f64, "#c4b5fd".into(), "shared".into()),
            ],
            note: Some(format!(
                "{} · {} paths",
                human_bytes(s.closure_bytes),
                n(s.closure_paths)
            )),
        })
        .collect();
    o.push_str(&svg::hbars(
        &frame(
            "chart-root-sets",
            "Closure size per root set",
            "",
            "bytes of NAR objects in the closure",
            Unit::Bytes,
            1130.0,
            0.0,
        ),
        &rows,
        &[
            ("unique to the set".into(), "#7c3aed".into()),
            ("shared with another set".into(), "#c4b5fd".into()),
        ],
    ));
    o.push_str("<table><thead><tr><th>Root set</th><th class=\"n\">Roots</th><th class=\"n\">Missing roots</th><th class=\"n\">Closure paths</th><th class=\"n\">Closure bytes</th><th class=\"n\">Unique paths</th><th class=\"n\">Unique bytes</th><th class=\"n\">Shared bytes</th></tr></thead><tbody>");
    for s in &r.sets {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&s.label),
            n(s.roots),
            n(s.missing),
            n(s.closure_paths),
            human_bytes(s.closure_bytes),
            n(s.unique_paths),
            human_bytes(s.unique_bytes),
            human_bytes(s.shared_bytes)
        );
    }
    let _ = write!(
        o,
        "<tr class=\"total\"><td>Union of all sets</td><td></td><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td><td></td></tr></tbody></table>",
        n(r.union.count),
        human_bytes(r.union.bytes)
    );
    if let Some(m) = &r.overlap
        && r.sets.len() > 1
    {
        o.push_str("<h3>Bytes shared between sets</h3><table><thead><tr><th></th>");
        for s in &r.sets {
            let _ = write!(o, "<th class=\"n\">{}</th>", esc(&s.label));
        }
        o.push_str("</tr></thead><tbody>");
        for (i, s) in r.sets.iter().enumerate() {
            let _ = write!(o, "<tr><th>{}</th>", esc(&s.label));
            for (j, v) in m[i].iter().enumerate() {
                let base = m[i][i].max(1) as f64;
                let a = (*v as f64 / base).clamp(0.0, 1.0);
                let style = if i == j {
                    "background:#f1f5f9;".to_string()
                } else {
                    format!("background:rgba(124,58,237,{:.2});", a * 0.35)
                };
                let _ = write!(
                    o,
                    "<td class=\"n\" style=\"{style}\">{}</td>",
                    human_bytes(*v)
                );
            }
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table><p class=\"muted\">Bytes in both the row set's and the column set's closure; the diagonal is the set's whole closure. Shading: share of the row set's closure.</p>");
    }
    if r.closure_holes > 0 {
        let _ = write!(
            o,
            "<div class=\"warn\">{} references point to paths with no narinfo in the cache (closure holes): those closures are incomplete.</div>",
            n(r.closure_holes)
        );
    }
    o.push_str("</section>");
}

fn one_time_text(t: &OneTimeCost) -> String {
    format!(
        "transitions {} ({} NARs), copies {} ({} objects), early deletion {} ({} objects)",
        money(t.transitions.usd),
        n(t.transitions.count),
        money(t.copies.usd),
        n(t.copies.count),
        money(t.early_deletion.usd),
        n(t.early_deletion.count)
    )
}

fn plan_detail(o: &mut String, name: &str, p: &super::PlanReport) {
    let c: &PlanCost = &p.cost;
    let _ = write!(
        o,
        "<div class=\"plan\"><h3>Plan <code>{}</code></h3><p class=\"muted\">policy {} · computed {} from index generation {} · archive class {} · checksum <code>{}</code></p>",
        esc(name),
        esc(&p.policy_file),
        date(p.created_at),
        p.index_generation,
        esc(&p.archive_storage_class),
        esc(&p.checksum.chars().take(16).collect::<String>())
    );
    if p.stale {
        o.push_str("<div class=\"warn\">This plan was computed from another index generation than the one this report describes: its decisions may not match today's cache.</div>");
    }
    let _ = write!(
        o,
        "<p>Roots: {} given, {} found, {} missing.</p>",
        n(p.roots.total),
        n(p.roots.found),
        n(p.roots.missing)
    );
    o.push_str("<div class=\"grid2\"><div><table><thead><tr><th>Decision</th><th class=\"n\">Store paths</th><th class=\"n\">Objects</th><th class=\"n\">Bytes</th></tr></thead><tbody>");
    for (dec, cb) in decision_totals(&p.summary) {
        let paths = p.summary.paths.get(&dec).copied().unwrap_or_default();
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            dec.as_str(),
            n(paths.count),
            n(cb.count),
            human_bytes(cb.bytes)
        );
    }
    o.push_str("</tbody></table></div><div><table><tbody>");
    let rows = [
        ("Monthly bill before", money(c.before.monthly_usd)),
        ("Monthly bill after", money(c.after.monthly_usd)),
        (
            "Monthly saving",
            format!(
                "<b>{}</b> (deletions {}, archiving {})",
                money(c.monthly_saving_usd),
                money(c.saving_from_deletes_usd),
                money(c.saving_from_archive_usd)
            ),
        ),
        (
            "One-time cost",
            format!(
                "<b>{}</b><br><span class=\"muted\">{}</span>",
                money(c.one_time.total_usd),
                one_time_text(&c.one_time)
            ),
        ),
        ("Break-even", months_text(c.break_even_months)),
    ];
    for (k, v) in rows {
        let _ = write!(o, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    o.push_str("</tbody></table></div></div>");
    for t in &c.targets {
        let _ = write!(
            o,
            "<p>{} NARs ({}) move to <b>{}</b>, saving {}/month; break-even size {} at {:.0}-month payback.</p>",
            n(t.transitions.count),
            human_bytes(t.transitions.bytes),
            esc(&t.class),
            money(t.monthly_saving_usd),
            t.break_even_size.map_or("none".into(), human_bytes),
            c.payback_months
        );
        if t.not_worth_archiving.count > 0 {
            let _ = write!(
                o,
                "<div class=\"warn\"><b>Not worth archiving:</b> {} of these NARs ({}) are smaller than the {} break-even size; their transition fee does not pay back within {:.0} months. Raise <code>actions.archive_min_size</code> to at least {}.</div>",
                n(t.not_worth_archiving.count),
                human_bytes(t.not_worth_archiving.bytes),
                esc(&t.class),
                c.payback_months,
                t.break_even_size
                    .map_or("(none pays back)".into(), |b| format!(
                        "{}KiB",
                        b.div_ceil(1024)
                    ))
            );
        }
    }
    if c.hidden_only_nars.count > 0 {
        let _ = write!(
            o,
            "<p class=\"muted\">{} archived NARs ({}) are below the plan's minimum size and stay in their class (hidden only).</p>",
            n(c.hidden_only_nars.count),
            human_bytes(c.hidden_only_nars.bytes)
        );
    }
    o.push_str("</div>");
}

fn plans_section(o: &mut String, d: &ReportData) {
    if d.plans.is_empty() {
        return;
    }
    o.push_str("<section id=\"plans\"><h2>Plans</h2>");
    o.push_str("<p class=\"lead\">What each plan would save per month, what applying it costs once (transition requests, copies of hidden objects, early-deletion charges), and when it pays for itself.</p>");
    let mut rows = vec![HRow {
        label: "today".into(),
        parts: vec![(d.bill.monthly_usd, "#64748b".into(), "bill".into())],
        note: Some(format!("{}/mo", money(d.bill.monthly_usd))),
    }];
    for p in &d.plans {
        rows.push(HRow {
            label: format!("after {}", p.name),
            parts: vec![(p.cost.after.monthly_usd, "#16a34a".into(), "bill".into())],
            note: Some(format!(
                "{}/mo (saves {})",
                money(p.cost.after.monthly_usd),
                money(p.cost.monthly_saving_usd)
            )),
        });
    }
    o.push_str(&svg::hbars(
        &frame(
            "chart-plans",
            "Monthly storage bill, today and after each plan",
            "",
            "US dollars per month",
            Unit::Usd,
            1130.0,
            0.0,
        ),
        &rows,
        &[],
    ));
    o.push_str("<table><thead><tr><th>Plan</th><th class=\"n\">Deleted</th><th class=\"n\">Archived</th><th class=\"n\">Kept</th><th class=\"n\">Bill after</th><th class=\"n\">Saving/month</th><th class=\"n\">One-time</th><th class=\"n\">Break-even</th><th class=\"n\">Not worth archiving</th></tr></thead><tbody>");
    for p in &d.plans {
        let t = decision_totals(&p.summary);
        let get = |d: Decision| t.iter().find(|x| x.0 == d).map(|x| x.1).unwrap_or_default();
        let nw: u64 = p
            .cost
            .targets
            .iter()
            .map(|t| t.not_worth_archiving.count)
            .sum();
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\"><b>{}</b></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&p.name),
            human_bytes(get(Decision::Delete).bytes),
            human_bytes(get(Decision::Archive).bytes),
            human_bytes(get(Decision::Keep).bytes),
            money(p.cost.after.monthly_usd),
            money(p.cost.monthly_saving_usd),
            money(p.cost.one_time.total_usd),
            months_text(p.cost.break_even_months),
            if nw == 0 {
                "–".to_string()
            } else {
                format!("{} NARs", n(nw))
            }
        );
    }
    o.push_str("</tbody></table>");
    for p in &d.plans {
        plan_detail(o, &p.name, p);
    }
    o.push_str("</section>");
}

fn break_even_section(o: &mut String, d: &ReportData) {
    let b = &d.break_even;
    let _ = write!(
        o,
        "<section id=\"break-even\"><h2>When archiving pays</h2><p class=\"lead\">Moving an object out of STANDARD costs a per-object transition fee; it pays back once the monthly saving has covered the fee. Below the <b>break-even size</b> (at a {:.0}-month payback) an object is not worth archiving. Per-object model of reference.md §5: first-tier STANDARD rate, minimum billable sizes, and the 32 KB + 8 KB overhead of GLACIER/DEEP_ARCHIVE.</p>",
        b.payback_months
    );
    o.push_str("<table><thead><tr><th>Target class</th><th class=\"n\">Break-even size</th>");
    for s in &b.sizes {
        let _ = write!(
            o,
            "<th class=\"n\">{}</th>",
            human_bytes(*s).replace(".0 ", " ")
        );
    }
    o.push_str("<th class=\"n\">NARs ≥ break-even</th><th class=\"n\">their share of NAR bytes</th></tr></thead><tbody>");
    for r in &b.classes {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\"><b>{}</b></td>",
            esc(&r.class),
            r.break_even_size.map_or("never".into(), human_bytes)
        );
        for m in &r.payback_months {
            let _ = write!(
                o,
                "<td class=\"n\">{}</td>",
                m.map_or("never".into(), |m| format!("{m:.2}"))
            );
        }
        let _ = write!(
            o,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            pct(r.nars_above.count, b.nars.count),
            pct(r.nars_above.bytes, b.nars.bytes)
        );
    }
    o.push_str("</tbody></table><p class=\"muted\">Columns by object size: months until the transition pays back. The last two columns: share of this cache's NAR objects (and of their bytes) at or above the break-even size.");
    if !b.not_cheaper.is_empty() {
        let _ = write!(
            o,
            " Not shown: {} (its storage price in the table is not below STANDARD's, so a move never pays back in this model).",
            esc(&b.not_cheaper.join(", "))
        );
    }
    o.push_str("</p></section>");
}

/// The whole page.
pub fn render(d: &ReportData) -> String {
    let mut o = String::with_capacity(256 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"generator\" content=\"narward {}\"><title>Cache report — {}</title><style>{CSS}</style></head><body>",
        env!("CARGO_PKG_VERSION"),
        esc(&d.cache)
    );
    let _ = write!(
        o,
        "<header class=\"top\"><div class=\"wrap\"><div class=\"brand\">narward · binary cache report</div><h1>{}</h1><div class=\"sub\">cache <code>{}</code> · index generation {} (updated {}) · report of {} · prices: {}</div><nav><a href=\"#cost\">Cost</a><a href=\"#growth\">Growth</a><a href=\"#composition\">Composition</a>{}{}<a href=\"#break-even\">Break-even</a><a href=\"#notes\">Method</a></nav></div></header><main class=\"wrap\">",
        esc(&d.cache),
        esc(&d.cache_url),
        d.index_generation,
        date(d.index_updated_at),
        date(d.generated_at),
        esc(&d.pricing.name),
        if d.root_sets.is_some() {
            "<a href=\"#roots\">Root sets</a>"
        } else {
            ""
        },
        if d.plans.is_empty() {
            ""
        } else {
            "<a href=\"#plans\">Plans</a>"
        }
    );
    cards(&mut o, d);
    cost_section(&mut o, d);
    growth_section(&mut o, d);
    composition_section(&mut o, d);
    roots_section(&mut o, d);
    plans_section(&mut o, d);
    if let Some(a) = &d.access {
        super::access::html(&mut o, a);
    }
    break_even_section(&mut o, d);
    o.push_str("<section id=\"notes\"><h2>Method and assumptions</h2><ul class=\"notes\">");
    for n in &d.notes {
        let _ = write!(o, "<li>{}</li>", esc(n));
    }
    let _ = writeln!(
        o,
        "</ul></section><footer>Generated by narward {} on {} from index generation {}. The same data is in report.json.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        date(d.generated_at),
        d.index_generation
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding "report/html.rs repeats its chart boilerplate": the two monthly-bill charts
    /// come from one `bill_bars` (a bar and a `$/mo · bytes` note a row), the growth
    /// charts' per-category series from one `category_series` (bytes or counts, a gap
    /// where a month has none of the category).
    #[test]
    fn one_bill_chart_and_one_category_series_builder_serve_every_chart() {
        let rows = [
            ("STANDARD".to_string(), "#111111", 12.5, 3 << 30),
            ("DEEP_ARCHIVE".to_string(), "#222222", 0.25, 7 << 30),
        ];
        let svg = bill_bars("chart-x", "Bill <by> class", rows.into_iter());
        assert!(svg.contains("id=\"chart-x\""), "{svg}");
        assert!(svg.contains("Bill &lt;by&gt; class"), "{svg}");
        assert!(svg.contains("#111111") && svg.contains("#222222"));
        assert!(
            svg.contains(&format!("{}/mo · 3.0 GiB", money(12.5))),
            "{svg}"
        );
        assert!(
            svg.contains(&format!("{}/mo · 7.0 GiB", money(0.25))),
            "{svg}"
        );

        let month = |m: &str, nar: Option<(u64, u64)>| MonthRow {
            month: m.into(),
            objects: 0,
            bytes: 0,
            by_category: nar
                .map(|(count, bytes)| (Category::Nar, CountBytes { count, bytes }))
                .into_iter()
                .collect(),
            cumulative_objects: 0,
            cumulative_bytes: 0,
            partial: false,
        };
        let months = [month("2026-01", Some((2, 900))), month("2026-02", None)];
        let cats = [Category::Nar, Category::Narinfo];
        let bytes = category_series(&cats, &months, |x| x.bytes);
        let counts = category_series(&cats, &months, |x| x.count);
        assert_eq!(bytes.len(), 2);
        assert_eq!(bytes[0].name, category_name(Category::Nar));
        assert_eq!(bytes[0].color, category_color(Category::Nar));
        assert_eq!(bytes[0].values, [Some(900.0), None]);
        assert_eq!(counts[0].values, [Some(2.0), None]);
        assert_eq!(bytes[1].values, [None, None]);
        assert!(bytes.iter().chain(&counts).all(|s| !s.dashed));
    }
}
