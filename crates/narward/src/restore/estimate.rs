//! Pure: what getting a set of archived objects back costs, and how long it takes, per
//! retrieval tier.
//!
//! Prices come from the cost model ([`crate::cost::Pricing`]: `retrieval.<tier>` per class,
//! `per_gb` and `per_1000` restore requests). Times are AWS's documented restore times
//! (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects-retrieval-options.html>):
//! GLACIER (Flexible Retrieval) expedited 1–5 min, standard 3–5 h, bulk 5–12 h;
//! DEEP_ARCHIVE standard within 12 h, bulk within 48 h, no expedited tier.
//!
//! Besides the retrieval, a restore pays for the temporary copy, billed at the STANDARD
//! rate for the RestoreObject `Days`, and republishing copies each object back into
//! STANDARD (one COPY request each, at the STANDARD PUT price). Objects of readable classes
//! (STANDARD, *_IA, GLACIER_IR, INTELLIGENT_TIERING) need no restore: only the copy, and
//! the class's per-GB read fee if it has one.

use crate::cost::{GB, MONTH_DAYS, Pricing};
use crate::model::is_archive_class;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A retrieval tier (RestoreObject `Tier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Expedited,
    Standard,
    Bulk,
}

impl Tier {
    /// Fastest first.
    pub const ALL: [Tier; 3] = [Tier::Expedited, Tier::Standard, Tier::Bulk];

    /// `expedited`, `standard`, `bulk` (as in the pricing table and RestoreObject).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Expedited => "expedited",
            Tier::Standard => "standard",
            Tier::Bulk => "bulk",
        }
    }

    /// # Errors
    /// Not one of the three names.
    pub fn parse(s: &str) -> Result<Tier, String> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a tier: bulk, standard or expedited"))
    }
}

/// Restore time bounds of a tier, in hours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hours {
    pub min: f64,
    pub max: f64,
}

/// How long a restore of `class` at `tier` takes (`None`: the class has no such tier).
/// Readable classes need no restore (zero hours).
pub fn tier_hours(class: &str, tier: Tier) -> Option<Hours> {
    let h = |min, max| Some(Hours { min, max });
    match (class, tier) {
        ("GLACIER", Tier::Expedited) => h(1.0 / 60.0, 5.0 / 60.0),
        ("GLACIER", Tier::Standard) => h(3.0, 5.0),
        ("GLACIER", Tier::Bulk) => h(5.0, 12.0),
        ("DEEP_ARCHIVE", Tier::Expedited) => None,
        ("DEEP_ARCHIVE", Tier::Standard) => h(0.0, 12.0),
        ("DEEP_ARCHIVE", Tier::Bulk) => h(0.0, 48.0),
        _ => h(0.0, 0.0),
    }
}

/// Objects of one storage class to get back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSet {
    pub count: u64,
    pub bytes: u64,
}

/// What one tier would cost and take for a whole set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierEstimate {
    pub tier: Tier,
    /// Whether every class of the set can be restored at this tier with known prices.
    pub available: bool,
    /// Why not, when not.
    pub unavailable: Option<String>,
    /// Per-GB retrieval fees.
    pub retrieval_usd: f64,
    /// RestoreObject requests.
    pub requests_usd: f64,
    /// The temporary copies at the STANDARD rate for `days`.
    pub temporary_copy_usd: f64,
    /// COPY requests putting objects back in STANDARD.
    pub republish_usd: f64,
    pub total_usd: f64,
    /// Slowest and fastest expected time until every object is readable.
    pub hours: Hours,
}

/// Cost and time of restoring `set` (storage class → objects) for `days` days, per tier,
/// fastest tier first.
pub fn estimate(set: &BTreeMap<String, ClassSet>, p: &Pricing, days: u32) -> Vec<TierEstimate> {
    Tier::ALL
        .into_iter()
        .map(|t| estimate_tier(set, p, days, t))
        .collect()
}

fn estimate_tier(
    set: &BTreeMap<String, ClassSet>,
    p: &Pricing,
    days: u32,
    tier: Tier,
) -> TierEstimate {
    let mut e = TierEstimate {
        tier,
        available: true,
        unavailable: None,
        retrieval_usd: 0.0,
        requests_usd: 0.0,
        temporary_copy_usd: 0.0,
        republish_usd: 0.0,
        total_usd: 0.0,
        hours: Hours { min: 0.0, max: 0.0 },
    };
    let std = p.standard();
    for (class, s) in set.iter().filter(|(_, s)| s.count > 0) {
        let gb = s.bytes as f64 / GB;
        e.republish_usd += s.count as f64 * std.put_per_1000 / 1000.0;
        let cp = p.class(class);
        if !is_archive_class(class) {
            let read = cp
                .and_then(|c| c.retrieval.get("standard"))
                .map_or(0.0, |r| r.per_gb);
            e.retrieval_usd += gb * read;
            continue;
        }
        let (Some(h), Some(r)) = (
            tier_hours(class, tier),
            cp.and_then(|c| c.retrieval.get(tier.as_str())),
        ) else {
            e.available = false;
            let why = if tier_hours(class, tier).is_none() {
                format!("{class} has no {} tier", tier.as_str())
            } else {
                format!(
                    "the pricing table {} has no {} retrieval price for {class}",
                    p.name,
                    tier.as_str()
                )
            };
            e.unavailable = Some(e.unavailable.map_or(why.clone(), |u| format!("{u}; {why}")));
            continue;
        };
        e.retrieval_usd += gb * r.per_gb;
        e.requests_usd += s.count as f64 * r.per_1000 / 1000.0;
        e.temporary_copy_usd += gb * std.first_rate() * f64::from(days) / MONTH_DAYS;
        e.hours.min = e.hours.min.max(h.min);
        e.hours.max = e.hours.max.max(h.max);
    }
    e.total_usd = e.retrieval_usd + e.requests_usd + e.temporary_copy_usd + e.republish_usd;
    e
}

/// The tier a policy picks: with a deadline, the cheapest available tier whose slowest
/// time is within it (the faster one on a tie); else `default`, when available. `Err`
/// says why none fits.
///
/// # Errors
/// No available tier meets the deadline, or the default tier is not available.
pub fn choose_tier(
    est: &[TierEstimate],
    default: Tier,
    deadline_hours: Option<f64>,
) -> Result<Tier, String> {
    match deadline_hours {
        Some(d) => est
            .iter()
            .filter(|e| e.available && e.hours.max <= d)
            .min_by(|a, b| {
                a.total_usd
                    .total_cmp(&b.total_usd)
                    .then(a.hours.max.total_cmp(&b.hours.max))
            })
            .map(|e| e.tier)
            .ok_or_else(|| {
                format!("no retrieval tier gets every object back within the deadline of {d} hours")
            }),
        None => match est.iter().find(|e| e.tier == default) {
            Some(e) if e.available => Ok(default),
            Some(e) => Err(format!(
                "the default tier {} is not available: {}",
                default.as_str(),
                e.unavailable.as_deref().unwrap_or("unknown reason")
            )),
            None => Err(format!("no estimate for tier {}", default.as_str())),
        },
    }
}

/// Human text for a time range: `1–5 min`, `3–5 h`, `≤ 48 h`, `0 h (no restore needed)`.
pub fn hours_text(h: Hours) -> String {
    let one = |x: f64| {
        if x < 1.0 {
            format!("{} min", (x * 60.0).round())
        } else {
            format!("{} h", (x * 10.0).round() / 10.0)
        }
    };
    if h.max == 0.0 {
        "0 h (no restore needed)".into()
    } else if h.min == 0.0 {
        format!("≤ {}", one(h.max))
    } else if h.max < 1.0 {
        format!("{}–{} min", (h.min * 60.0).round(), (h.max * 60.0).round())
    } else {
        format!("{}–{}", one(h.min).trim_end_matches(" h"), one(h.max))
    }
}

/// The earliest time a republished path may be archived again: `keep_hot_days` after it
/// was republished, and not before the archived copy has completed its class's minimum
/// storage duration (`min_duration_days` after `archived_at`, when known), since replacing
/// it sooner is charged as an early deletion.
pub fn rearchive_not_before(
    republished_at: i64,
    keep_hot_days: u32,
    archived_at: Option<i64>,
    min_duration_days: u32,
) -> i64 {
    let hot = republished_at + i64::from(keep_hot_days) * 86_400;
    archived_at.map_or(hot, |a| hot.max(a + i64::from(min_duration_days) * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[(&str, u64, u64)]) -> BTreeMap<String, ClassSet> {
        v.iter()
            .map(|&(c, count, bytes)| (c.to_string(), ClassSet { count, bytes }))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    const G: u64 = 1 << 30;

    #[test]
    fn deep_archive_costs_and_times_per_tier_from_the_pricing_table() {
        let p = Pricing::default_aws();
        let e = estimate(&set(&[("DEEP_ARCHIVE", 1000, 100 * G)]), &p, 7);
        assert_eq!(e.iter().map(|e| e.tier).collect::<Vec<_>>(), Tier::ALL);
        let [exp, std, bulk] = [&e[0], &e[1], &e[2]];
        assert!(!exp.available && exp.unavailable.as_deref().unwrap().contains("no expedited"));
        // standard: $0.02/GB + $0.10/1000 [IC]; bulk: $0.0025/GB + $0.025/1000 [IC].
        assert!(
            close(std.retrieval_usd, 2.0) && close(std.requests_usd, 0.1),
            "{std:?}"
        );
        assert!(
            close(bulk.retrieval_usd, 0.25) && close(bulk.requests_usd, 0.025),
            "{bulk:?}"
        );
        assert_eq!((std.hours.max, bulk.hours.max), (12.0, 48.0));
        let temp = 100.0 * 0.023 * 7.0 / MONTH_DAYS;
        assert!(close(bulk.temporary_copy_usd, temp), "{bulk:?}");
        assert!(close(bulk.republish_usd, 1000.0 * 0.005 / 1000.0));
        assert!(close(bulk.total_usd, 0.25 + 0.025 + temp + 0.005));
    }

    #[test]
    fn glacier_has_three_tiers_and_a_mixed_set_takes_the_slowest_time() {
        let p = Pricing::default_aws();
        let e = estimate(&set(&[("GLACIER", 10, G)]), &p, 1);
        assert!(e.iter().all(|e| e.available));
        assert!(close(e[0].retrieval_usd, 0.03) && close(e[0].requests_usd, 0.1));
        assert_eq!(hours_text(e[0].hours), "1–5 min");
        assert_eq!(hours_text(e[1].hours), "3–5 h");
        assert_eq!(hours_text(e[2].hours), "5–12 h");
        assert!(close(e[2].retrieval_usd + e[2].requests_usd, 0.0));
        let mixed = estimate(
            &set(&[
                ("GLACIER", 1, G),
                ("DEEP_ARCHIVE", 1, G),
                ("STANDARD", 5, G),
            ]),
            &p,
            1,
        );
        assert!(!mixed[0].available);
        assert_eq!(mixed[2].hours.max, 48.0);
        assert_eq!(hours_text(mixed[2].hours), "5–48 h");
        // STANDARD objects: only the copy.
        let hot = estimate(&set(&[("STANDARD", 5, G)]), &p, 1);
        assert!(hot.iter().all(|e| e.available
            && e.hours.max == 0.0
            && close(e.total_usd, 5.0 * 0.005 / 1000.0)));
    }

    #[test]
    fn a_deadline_picks_the_cheapest_tier_meeting_it() {
        let p = Pricing::default_aws();
        let e = estimate(&set(&[("GLACIER", 1000, 10 * G)]), &p, 1);
        assert_eq!(choose_tier(&e, Tier::Expedited, Some(12.0)), Ok(Tier::Bulk));
        assert_eq!(choose_tier(&e, Tier::Bulk, Some(5.0)), Ok(Tier::Standard));
        assert_eq!(choose_tier(&e, Tier::Bulk, Some(0.5)), Ok(Tier::Expedited));
        assert_eq!(choose_tier(&e, Tier::Standard, None), Ok(Tier::Standard));
        let da = estimate(&set(&[("DEEP_ARCHIVE", 1, G)]), &p, 1);
        assert_eq!(choose_tier(&da, Tier::Bulk, Some(24.0)), Ok(Tier::Standard));
        assert!(
            choose_tier(&da, Tier::Bulk, Some(1.0))
                .unwrap_err()
                .contains("deadline")
        );
        assert!(
            choose_tier(&da, Tier::Expedited, None)
                .unwrap_err()
                .contains("no expedited")
        );
    }

    #[test]
    fn a_pricing_table_without_a_tier_price_makes_the_tier_unavailable() {
        let mut p = Pricing::default_aws();
        p.classes
            .get_mut("GLACIER")
            .unwrap()
            .retrieval
            .remove("bulk");
        let e = estimate(&set(&[("GLACIER", 1, G)]), &p, 1);
        assert!(
            !e[2].available
                && e[2]
                    .unavailable
                    .as_deref()
                    .unwrap()
                    .contains("no bulk retrieval price")
        );
    }

    #[test]
    fn rearchival_waits_for_the_hot_period_and_the_class_minimum_duration() {
        let day = 86_400;
        // Archived 10 days ago in DEEP_ARCHIVE (180 days minimum), kept hot 30 days.
        assert_eq!(
            rearchive_not_before(100 * day, 30, Some(90 * day), 180),
            270 * day
        );
        // Archived long ago: the hot period decides.
        assert_eq!(
            rearchive_not_before(1000 * day, 30, Some(0), 180),
            1030 * day
        );
        assert_eq!(rearchive_not_before(0, 7, None, 90), 7 * day);
    }
}
