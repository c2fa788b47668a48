//! Growth of a cache from the last-modified dates of its objects: objects and bytes added
//! per calendar month (UTC) by kind of object, the cumulative size, and a projection from a
//! least-squares fit (linear or exponential, whichever explains the monthly additions
//! better, with its R²).
//!
//! Only objects still present are seen: what was deleted since does not show, and an
//! overwritten object counts in the month of its last write.

use crate::listing::Listing;
use crate::plan::CountBytes;
use narward_formats::keys::Category;
use serde::Serialize;
use std::collections::BTreeMap;

pub use narward_formats::date::ymd;

/// `YYYY-MM-DD` of a unix time, UTC.
pub fn date(t: i64) -> String {
    let (y, m, d) = ymd(t);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Months since year 0 (`year·12 + month − 1`).
pub fn month_number(t: i64) -> i64 {
    let (y, m, _) = ymd(t);
    y * 12 + i64::from(m) - 1
}

/// `YYYY-MM` of a month number.
pub fn month_label(n: i64) -> String {
    format!("{:04}-{:02}", n.div_euclid(12), n.rem_euclid(12) + 1)
}

/// One calendar month.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MonthRow {
    /// `YYYY-MM`.
    pub month: String,
    pub objects: u64,
    pub bytes: u64,
    pub by_category: BTreeMap<Category, CountBytes>,
    /// Objects and bytes present at the end of the month (undated objects included from
    /// the start), so the last row equals the index's totals.
    pub cumulative_objects: u64,
    pub cumulative_bytes: u64,
    /// The month is the current one (not over yet): left out of the fit.
    pub partial: bool,
}

/// A least-squares fit of monthly added bytes `y` against the month `t` (0 = first month).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    /// `linear` (y = a + b·t) or `exponential` (y = a·e^(b·t), fitted on ln y).
    pub model: String,
    pub a: f64,
    pub b: f64,
    /// R² of the fitted values against the monthly added bytes (original scale for both
    /// models, so they compare).
    pub r2: f64,
    /// Complete months the fit used.
    pub months: usize,
    /// The formula with its numbers, for people.
    pub formula: String,
}

impl Fit {
    /// The fitted monthly added bytes at month `t` (never negative).
    pub fn at(&self, t: f64) -> f64 {
        let v = if self.model == "exponential" {
            self.a * (self.b * t).exp()
        } else {
            self.a + self.b * t
        };
        v.max(0.0)
    }
}

/// One projected month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionRow {
    pub month: String,
    pub added_bytes: u64,
    pub cumulative_bytes: u64,
    /// The monthly storage bill at that size, at today's cost per byte.
    pub monthly_usd: f64,
}

/// Growth of the cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Growth {
    /// Every month from the first upload to the last, empty months included.
    pub months: Vec<MonthRow>,
    /// Objects without a last-modified date.
    pub undated: CountBytes,
    /// The fit used for the projection (`None`: fewer than 3 complete months).
    pub fit: Option<Fit>,
    /// Every fit tried, best first.
    pub fits: Vec<Fit>,
    /// The next 24 months.
    pub projection: Vec<ProjectionRow>,
    /// How the projection was made, or why there is none.
    pub method: String,
}

fn r2(ys: &[f64], pred: impl Fn(f64) -> f64) -> f64 {
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let ss_tot: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    let ss_res: f64 = ys
        .iter()
        .enumerate()
        .map(|(t, y)| (y - pred(t as f64)).powi(2))
        .sum();
    if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// Ordinary least squares `y = a + b·x`.
fn least_squares(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

/// Linear and exponential fits of `ys` (monthly added bytes), best R² first.
pub fn fits(ys: &[f64]) -> Vec<Fit> {
    let mut out = Vec::new();
    let gib = (1u64 << 30) as f64;
    let pts: Vec<(f64, f64)> = ys.iter().enumerate().map(|(t, y)| (t as f64, *y)).collect();
    if let Some((a, b)) = least_squares(&pts) {
        let f = Fit {
            model: "linear".into(),
            a,
            b,
            r2: 0.0,
            months: ys.len(),
            formula: format!(
                "Added bytes per month = {:.3} GiB {} {:.3} GiB × t",
                a / gib,
                if b < 0.0 { "−" } else { "+" },
                b.abs() / gib
            ),
        };
        out.push(Fit {
            r2: r2(ys, |t| f.at(t)),
            ..f
        });
    }
    let logs: Vec<(f64, f64)> = pts
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|p| (p.0, p.1.ln()))
        .collect();
    if logs.len() >= 3
        && let Some((la, b)) = least_squares(&logs)
    {
        let f = Fit {
            model: "exponential".into(),
            a: la.exp(),
            b,
            r2: 0.0,
            months: ys.len(),
            formula: format!(
                "Added bytes per month = {:.3} GiB × e^({:.4} × t) ({:+.1} % per month)",
                la.exp() / gib,
                b,
                (b.exp() - 1.0) * 100.0
            ),
        };
        out.push(Fit {
            r2: r2(ys, |t| f.at(t)),
            ..f
        });
    }
    out.sort_by(|x, y| y.r2.total_cmp(&x.r2));
    out
}

/// Growth of `objects` as of `now`; `usd_per_byte` prices the projection.
pub fn compute(objects: &Listing, now: i64, usd_per_byte: f64) -> Growth {
    let mut by_month: BTreeMap<i64, MonthRow> = BTreeMap::new();
    let mut undated = CountBytes::default();
    for o in objects {
        let Some(t) = o.last_modified() else {
            undated.count += 1;
            undated.bytes += o.size();
            continue;
        };
        let m = by_month.entry(month_number(t)).or_default();
        m.objects += 1;
        m.bytes += o.size();
        let c = m.by_category.entry(o.category()).or_default();
        c.count += 1;
        c.bytes += o.size();
    }
    let mut g = Growth {
        undated,
        ..Default::default()
    };
    let (Some(&first), Some(&last)) = (by_month.keys().next(), by_month.keys().next_back()) else {
        g.method = "no dated objects: no growth to show".into();
        return g;
    };
    let this_month = month_number(now);
    let (mut co, mut cb) = (undated.count, undated.bytes);
    for n in first..=last {
        let mut row = by_month.remove(&n).unwrap_or_default();
        row.month = month_label(n);
        co += row.objects;
        cb += row.bytes;
        row.cumulative_objects = co;
        row.cumulative_bytes = cb;
        row.partial = n >= this_month;
        g.months.push(row);
    }
    let complete: Vec<f64> = g
        .months
        .iter()
        .filter(|m| !m.partial)
        .map(|m| m.bytes as f64)
        .collect();
    if complete.len() < 3 {
        g.method = format!(
            "no projection: the objects span {} complete month(s) of last-modified dates; a fit needs at least 3",
            complete.len()
        );
        return g;
    }
    g.fits = fits(&complete);
    let Some(best) = g.fits.first().cloned() else {
        g.method = "no projection: the monthly additions cannot be fitted".into();
        return g;
    };
    let n = complete.len();
    g.method = format!(
        "least-squares {} fit of bytes added per month over the {n} complete months {}…{} (t = 0 is {}); R² = {:.3}. {}. Chosen over the {} because its R² (on monthly added bytes) is higher. The projection adds the fitted monthly additions to today's size and prices it at today's cost per byte.",
        best.model,
        g.months[0].month,
        g.months[n - 1].month,
        g.months[0].month,
        best.r2,
        best.formula,
        g.fits.get(1).map_or(
            "alternatives (none could be fitted)".to_string(),
            |f| format!("{} fit (R² = {:.3})", f.model, f.r2)
        ),
    );
    // Projection: from the month after the last month with data (or after this month).
    let start = last.max(this_month - 1) + 1;
    let mut cum = cb as f64;
    for k in 0..24 {
        let month = start + k;
        let t = (month - first) as f64;
        let added = best.at(t);
        cum += added;
        g.projection.push(ProjectionRow {
            month: month_label(month),
            added_bytes: added.round() as u64,
            cumulative_bytes: cum.round() as u64,
            monthly_usd: cum * usd_per_byte,
        });
    }
    g.fit = Some(best);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(ymd(0), (1970, 1, 1));
        assert_eq!(date(1_700_000_000), "2023-11-14");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(month_label(month_number(1_700_000_000)), "2023-11");
        assert_eq!(month_label(2024 * 12), "2024-01");
    }

    #[test]
    fn linear_data_prefers_the_linear_fit() {
        let ys: Vec<f64> = (0..12).map(|t| 1e9 + 2e8 * t as f64).collect();
        let f = fits(&ys);
        assert_eq!(f[0].model, "linear");
        assert!((f[0].r2 - 1.0).abs() < 1e-12);
        assert!((f[0].b - 2e8).abs() < 1.0);
    }

    #[test]
    fn exponential_data_prefers_the_exponential_fit() {
        let ys: Vec<f64> = (0..24).map(|t| 1e9 * (0.08 * t as f64).exp()).collect();
        let f = fits(&ys);
        assert_eq!(f[0].model, "exponential");
        assert!((f[0].b - 0.08).abs() < 1e-9);
        assert!(f[0].r2 > f[1].r2);
    }
}
