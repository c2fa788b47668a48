//! The cost model: prices as data ([`Pricing`], a TOML table; the built-in default is AWS S3
//! us-east-1 from `pricing/aws-us-east-1.toml`, every figure cited from reference.md §4),
//! and pure functions over listings and plans:
//!
//! - [`monthly_bill`]: the monthly storage bill of a set of objects, by storage class and by
//!   kind of object (tiered STANDARD prices, minimum billable sizes, the 32 KB + 8 KB
//!   per-object overhead of GLACIER/DEEP_ARCHIVE, Intelligent-Tiering monitoring);
//! - [`price_plan`]: what a plan saves each month, what it costs once (transitions, copies of
//!   hidden objects, early-deletion charges), when it breaks even, and which archived NARs
//!   are too small to pay back their transition;
//! - [`break_even_size`] and [`payback_months`]: the per-object model of reference.md §5.
//!
//! Units: GB = 2^30 bytes, a month = 365.25/12 days. Storage only: reads, egress and
//! restores depend on traffic the index does not know, so they are priced by the table but
//! not included in bills.

use crate::explain::human_bytes;
use crate::listing::Listing;
use crate::model::{NoncurrentVersions, VersioningState};
use crate::plan::{Decision, ObjectDecision, Plan, PlanHeader};
use anyhow::{Context, Result, bail};
use narward_formats::keys::Category;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Bytes per GB (AWS bills GB of 2^30 bytes).
pub const GB: f64 = 1_073_741_824.0;
/// Days per billing month.
pub const MONTH_DAYS: f64 = 365.25 / 12.0;
/// The class S3 assumes when a listing gives none.
pub const STANDARD: &str = StorageClass::Standard.as_str();
/// Storage classes as S3 spells them, cheapest access first (the one list, in
/// `narward-formats`).
pub use narward_formats::storage_class::NAMES as STORAGE_CLASSES;
use narward_formats::storage_class::StorageClass;

const DEFAULT_AWS: &str = include_str!("../pricing/aws-us-east-1.toml");

/// A pricing table (see `pricing/aws-us-east-1.toml` for every key and its unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// What the table prices, e.g. "AWS S3 us-east-1".
    pub name: String,
    pub currency: String,
    /// When the figures were taken, and from where.
    #[serde(default)]
    pub as_of: String,
    pub model: ModelParams,
    /// Storage classes by the name S3 gives them; must include STANDARD.
    pub classes: BTreeMap<String, ClassPrice>,
    /// Data transfer out to the internet.
    #[serde(default)]
    pub egress: Egress,
    #[serde(default)]
    pub operations: Operations,
}

/// Parameters of the model itself (not prices).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// The payback horizon behind break-even sizes (reference.md §5 uses 12 months).
    pub payback_months: f64,
}

/// Prices of one storage class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassPrice {
    /// $/GB-month by cumulative volume; the last tier has no bound.
    pub storage: Vec<StorageTier>,
    /// $ per 1000 PUT/COPY/POST/LIST requests.
    pub put_per_1000: f64,
    /// $ per 1000 GET requests.
    pub get_per_1000: f64,
    /// $ per 1000 lifecycle transitions into this class (none: never a transition target).
    #[serde(default)]
    pub transition_in_per_1000: Option<f64>,
    /// $ per GB transitioned into this class (an optional per-volume fee).
    #[serde(default)]
    pub transition_in_per_gb: f64,
    /// Retrieval prices by tier name (`standard`, `bulk`, `expedited`).
    #[serde(default)]
    pub retrieval: BTreeMap<String, Retrieval>,
    /// Deleting or moving an object younger than this is charged for the remaining days.
    #[serde(default)]
    pub min_duration_days: u32,
    /// Smaller objects are billed as this size.
    #[serde(default)]
    pub min_billable_bytes: u64,
    /// Per-object metadata billed at this class's rate (32 KB for GLACIER/DEEP_ARCHIVE).
    #[serde(default)]
    pub overhead_bytes_at_class_rate: u64,
    /// Per-object metadata billed at the STANDARD rate (8 KB for GLACIER/DEEP_ARCHIVE).
    #[serde(default)]
    pub overhead_bytes_at_standard_rate: u64,
    /// Monthly monitoring fee per 1000 objects (Intelligent-Tiering).
    #[serde(default)]
    pub monitoring_per_1000_objects: f64,
    /// Objects not larger than this are not monitored.
    #[serde(default)]
    pub monitoring_min_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageTier {
    /// Cumulative upper bound of the tier in GB; `None` on the last tier.
    #[serde(default)]
    pub up_to_gb: Option<f64>,
    pub per_gb_month: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    /// $/GB by cumulative monthly volume; the last tier has no bound.
    pub tiers: Vec<EgressTier>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressTier {
    #[serde(default)]
    pub up_to_gb: Option<f64>,
    pub per_gb: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retrieval {
    pub per_gb: f64,
    pub per_1000: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operations {
    #[serde(default)]
    pub inventory_per_million_objects: f64,
    #[serde(default)]
    pub batch_per_job: f64,
    #[serde(default)]
    pub batch_per_million_objects: f64,
}

/// The price of `gb` under volume tiers given as (upper bound, price) pairs.
fn tiered(tiers: impl Iterator<Item = (Option<f64>, f64)>, gb: f64) -> f64 {
    let mut cost = 0.0;
    let mut lo = 0.0;
    for (up, price) in tiers {
        let hi = up.unwrap_or(f64::INFINITY);
        if gb > lo {
            cost += (gb.min(hi) - lo) * price;
        }
        lo = hi;
        if gb <= hi {
            break;
        }
    }
    cost
}

fn check_tiers(what: &str, tiers: &[(Option<f64>, f64)]) -> Result<()> {
    if tiers.is_empty() {
        bail!("{what}: at least one tier is needed");
    }
    let mut lo = 0.0;
    for (i, (up, price)) in tiers.iter().enumerate() {
        if !(price.is_finite() && *price >= 0.0) {
            bail!("{what}[{i}]: the price must be a number ≥ 0, got {price}");
        }
        match up {
            Some(u) if !(u.is_finite() && *u > lo) => {
                bail!("{what}[{i}]: up_to_gb must increase (got {u} after {lo})")
            }
            Some(u) => lo = *u,
            None if i + 1 != tiers.len() => {
                bail!("{what}[{i}]: only the last tier may omit up_to_gb")
            }
            None => {}
        }
    }
    if tiers.last().is_some_and(|t| t.0.is_some()) {
        bail!("{what}: the last tier must omit up_to_gb (it has no upper bound)");
    }
    Ok(())
}

impl Pricing {
    /// The built-in table: AWS S3 us-east-1 (reference.md §4).
    pub fn default_aws() -> Pricing {
        Self::from_toml(DEFAULT_AWS, "built-in pricing/aws-us-east-1.toml")
            .expect("the built-in pricing table is valid (checked by a unit test)")
    }

    /// Read a pricing table.
    ///
    /// # Errors
    /// Unreadable file; a TOML error or an unknown key (with the file, line and column); an
    /// invalid table (no STANDARD class, tiers out of order, negative prices), naming the key.
    pub fn load(path: &Path) -> Result<Pricing> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("pricing table {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parse a pricing table; `name` labels errors.
    ///
    /// # Errors
    /// As [`Pricing::load`].
    pub fn from_toml(text: &str, name: &str) -> Result<Pricing> {
        let p: Pricing =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("pricing table {name}: {e}"))?;
        p.validate()
            .with_context(|| format!("pricing table {name}"))?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        if !self.classes.contains_key(STANDARD) {
            bail!("classes.STANDARD is missing (it prices metadata overhead and unknown classes)");
        }
        if !(self.model.payback_months.is_finite() && self.model.payback_months > 0.0) {
            bail!("model.payback_months must be > 0");
        }
        for (n, c) in &self.classes {
            let t: Vec<_> = c
                .storage
                .iter()
                .map(|t| (t.up_to_gb, t.per_gb_month))
                .collect();
            check_tiers(&format!("classes.{n}.storage"), &t)?;
            let nums = [
                ("put_per_1000", c.put_per_1000),
                ("get_per_1000", c.get_per_1000),
                (
                    "transition_in_per_1000",
                    c.transition_in_per_1000.unwrap_or(0.0),
                ),
                ("transition_in_per_gb", c.transition_in_per_gb),
                ("monitoring_per_1000_objects", c.monitoring_per_1000_objects),
            ];
            for (k, v) in nums {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("classes.{n}.{k} must be a number ≥ 0, got {v}");
                }
            }
        }
        if !self.egress.tiers.is_empty() {
            let t: Vec<_> = self
                .egress
                .tiers
                .iter()
                .map(|t| (t.up_to_gb, t.per_gb))
                .collect();
            check_tiers("egress.tiers", &t)?;
        }
        Ok(())
    }

    /// The prices of a class (`None`: not in the table).
    pub fn class(&self, name: &str) -> Option<&ClassPrice> {
        self.classes.get(name)
    }

    /// The prices of STANDARD.
    pub fn standard(&self) -> &ClassPrice {
        &self.classes[STANDARD]
    }

    /// The first-tier STANDARD rate ($/GB-month): what one more small object costs.
    pub fn standard_rate(&self) -> f64 {
        self.standard().first_rate()
    }

    /// The cost of sending `gb` GB to the internet in one month.
    pub fn egress_cost(&self, gb: f64) -> f64 {
        tiered(self.egress.tiers.iter().map(|t| (t.up_to_gb, t.per_gb)), gb)
    }
}

impl ClassPrice {
    /// The first-tier rate, $/GB-month.
    pub fn first_rate(&self) -> f64 {
        self.storage.first().map_or(0.0, |t| t.per_gb_month)
    }

    /// Monthly storage cost of `gb` GB in this class, over its volume tiers.
    pub fn storage_cost(&self, gb: f64) -> f64 {
        tiered(
            self.storage.iter().map(|t| (t.up_to_gb, t.per_gb_month)),
            gb,
        )
    }

    /// Bytes billed at this class's rate for one object of `size` bytes.
    pub fn billable_bytes(&self, size: u64) -> u64 {
        size.max(self.min_billable_bytes) + self.overhead_bytes_at_class_rate
    }

    /// Whether an object of `size` bytes pays the monitoring fee.
    pub fn monitored(&self, size: u64) -> bool {
        self.monitoring_per_1000_objects > 0.0 && size > self.monitoring_min_bytes
    }

    /// The per-object transition price (lifecycle transition, or else a COPY into the class).
    pub fn transition_price(&self) -> f64 {
        self.transition_in_per_1000.unwrap_or(self.put_per_1000) / 1000.0
    }
}

/// Money for people: `$1,234.57`, `$0.0012`.
pub fn money(x: f64) -> String {
    let neg = x < 0.0;
    let a = x.abs();
    let body = if a != 0.0 && a < 0.01 {
        // Two significant digits: small caches and single objects cost fractions of a cent.
        let decimals = ((-a.log10()).ceil() as usize + 1).min(12);
        format!("{a:.decimals$}")
    } else if a < 1000.0 {
        format!("{a:.2}")
    } else {
        let s = format!("{a:.2}");
        let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
        let mut out = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        format!("{out}.{frac}")
    };
    format!("{}${body}", if neg { "-" } else { "" })
}

// ------------------------------------------------------------------------------- bills ---

/// One storage class of a bill.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassBill {
    pub class: String,
    /// Whether the table prices this class (an unpriced class is billed as STANDARD).
    pub priced: bool,
    pub objects: u64,
    pub bytes: u64,
    /// Bytes billed at the class rate: sizes raised to the minimum, plus per-object overhead.
    pub billable_bytes: u64,
    /// Per-object metadata billed at the STANDARD rate.
    pub standard_overhead_bytes: u64,
    /// Objects paying the monitoring fee.
    pub monitored_objects: u64,
    pub storage_usd: f64,
    pub overhead_usd: f64,
    pub monitoring_usd: f64,
    pub monthly_usd: f64,
}

/// One kind of object of a bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryBill {
    pub category: Category,
    pub objects: u64,
    pub bytes: u64,
    pub monthly_usd: f64,
}

/// The monthly storage bill of a set of objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bill {
    pub pricing: String,
    pub currency: String,
    pub objects: u64,
    pub bytes: u64,
    pub monthly_usd: f64,
    /// Average rate of the STANDARD volume after tiering, $/GB-month.
    pub standard_avg_rate: f64,
    pub by_class: Vec<ClassBill>,
    pub by_category: Vec<CategoryBill>,
    /// Classes seen that the table does not price (billed as STANDARD).
    pub unpriced_classes: Vec<String>,
}

#[derive(Default, Clone, Copy)]
struct Cell {
    objects: u64,
    bytes: u64,
    billable: u64,
    std_overhead: u64,
    monitored: u64,
}

/// Accumulates objects, then prices them as one bill (tiers apply to the totals).
struct Biller<'p> {
    p: &'p Pricing,
    cells: BTreeMap<(String, Category), Cell>,
}

impl<'p> Biller<'p> {
    fn new(p: &'p Pricing) -> Self {
        Biller {
            p,
            cells: BTreeMap::new(),
        }
    }

    fn add(&mut self, category: Category, size: u64, class: &str) {
        let p = self.p;
        let cp = p.class(class).unwrap_or_else(|| p.standard());
        // Found without allocating: a bill has a few cells, and plans add millions of
        // objects.
        let found = self
            .cells
            .iter_mut()
            .find(|((c, k), _)| *k == category && c == class)
            .map(|(_, c)| c);
        let c = match found {
            Some(c) => c,
            None => self.cells.entry((class.to_string(), category)).or_default(),
        };
        c.objects += 1;
        c.bytes += size;
        c.billable += cp.billable_bytes(size);
        c.std_overhead += cp.overhead_bytes_at_standard_rate;
        c.monitored += u64::from(cp.monitored(size));
    }

    /// Add `count` objects of `bytes` in all, as one cell: the minimum billable size is
    /// applied to the total (exact when the class has none, else a lower bound).
    fn add_many(&mut self, category: Category, class: &str, count: u64, bytes: u64) {
        let p = self.p;
        let cp = p.class(class).unwrap_or_else(|| p.standard());
        let c = self.cells.entry((class.to_string(), category)).or_default();
        c.objects += count;
        c.bytes += bytes;
        c.billable += bytes.max(count.saturating_mul(cp.min_billable_bytes))
            + count.saturating_mul(cp.overhead_bytes_at_class_rate);
        c.std_overhead += count.saturating_mul(cp.overhead_bytes_at_standard_rate);
        // Sizes are unknown one by one: monitored when the average size is.
        if count > 0 && cp.monitored(bytes / count) {
            c.monitored += count;
        }
    }

    /// Add the noncurrent versions a listing knows.
    fn add_noncurrent(&mut self, n: &NoncurrentVersions) {
        for c in &n.cells {
            self.add_many(c.category, &c.storage_class, c.count, c.bytes);
        }
    }

    fn finish(self) -> Bill {
        let p = self.p;
        // Volumes per priced class (unpriced ones count as STANDARD), then average rates.
        let mut volume: BTreeMap<&str, u64> = BTreeMap::new();
        for ((class, _), c) in &self.cells {
            let priced = if p.class(class).is_some() {
                class.as_str()
            } else {
                STANDARD
            };
            *volume.entry(priced).or_default() += c.billable;
            *volume.entry(STANDARD).or_default() += c.std_overhead;
        }
        let rate: BTreeMap<&str, f64> = volume
            .iter()
            .map(|(k, v)| {
                let cp = p.class(k).unwrap_or_else(|| p.standard());
                let gb = *v as f64 / GB;
                let r = if gb > 0.0 {
                    cp.storage_cost(gb) / gb
                } else {
                    cp.first_rate()
                };
                (*k, r)
            })
            .collect();
        let std_rate = rate
            .get(STANDARD)
            .copied()
            .unwrap_or_else(|| p.standard_rate());
        let mut by_class: BTreeMap<String, ClassBill> = BTreeMap::new();
        let mut by_cat: BTreeMap<Category, CategoryBill> = BTreeMap::new();
        let mut unpriced = Vec::new();
        for ((class, cat), c) in &self.cells {
            let cp = p.class(class);
            if cp.is_none() && !unpriced.contains(class) {
                unpriced.push(class.clone());
            }
            let r = rate[cp.map_or(STANDARD, |_| class.as_str())];
            let cpx = cp.unwrap_or_else(|| p.standard());
            let storage = c.billable as f64 / GB * r;
            let overhead = c.std_overhead as f64 / GB * std_rate;
            let monitoring = c.monitored as f64 / 1000.0 * cpx.monitoring_per_1000_objects;
            let b = by_class.entry(class.clone()).or_insert_with(|| ClassBill {
                class: class.clone(),
                priced: cp.is_some(),
                ..Default::default()
            });
            b.objects += c.objects;
            b.bytes += c.bytes;
            b.billable_bytes += c.billable;
            b.standard_overhead_bytes += c.std_overhead;
            b.monitored_objects += c.monitored;
            b.storage_usd += storage;
            b.overhead_usd += overhead;
            b.monitoring_usd += monitoring;
            b.monthly_usd += storage + overhead + monitoring;
            let k = by_cat.entry(*cat).or_insert_with(|| CategoryBill {
                category: *cat,
                objects: 0,
                bytes: 0,
                monthly_usd: 0.0,
            });
            k.objects += c.objects;
            k.bytes += c.bytes;
            k.monthly_usd += storage + overhead + monitoring;
        }
        let mut by_class: Vec<ClassBill> = by_class.into_values().collect();
        let order = |c: &str| {
            STORAGE_CLASSES
                .iter()
                .position(|x| *x == c)
                .unwrap_or(STORAGE_CLASSES.len())
        };
        by_class.sort_by(|a, b| {
            order(&a.class)
                .cmp(&order(&b.class))
                .then(a.class.cmp(&b.class))
        });
        Bill {
            pricing: p.name.clone(),
            currency: p.currency.clone(),
            objects: by_class.iter().map(|c| c.objects).sum(),
            bytes: by_class.iter().map(|c| c.bytes).sum(),
            monthly_usd: by_class.iter().map(|c| c.monthly_usd).sum(),
            standard_avg_rate: std_rate,
            by_class,
            by_category: by_cat.into_values().collect(),
            unpriced_classes: unpriced,
        }
    }
}

/// The monthly storage bill of `objects`, by storage class and by kind of object.
///
/// STANDARD is priced over its volume tiers (including the 8 KB per archived object that
/// S3 bills at the STANDARD rate); other classes at their own tiers. Objects are billed at
/// no less than their class's minimum size, plus the class's per-object overhead.
/// Intelligent-Tiering objects are billed at the class's `storage` price (the table's
/// Frequent Access rate: a listing does not say which tier an object is in) plus monitoring.
/// A class the table does not price is billed as STANDARD and named in `unpriced_classes`.
pub fn monthly_bill(objects: &Listing, p: &Pricing) -> Bill {
    let mut b = Biller::new(p);
    for o in objects {
        b.add(o.category(), o.size(), o.storage_class());
    }
    b.finish()
}

/// [`monthly_bill`] of `objects` plus the noncurrent versions a listing of all versions
/// knows (`None`: not listed; the bill then counts current objects only).
pub fn monthly_bill_with_versions(
    objects: &Listing,
    noncurrent: Option<&NoncurrentVersions>,
    p: &Pricing,
) -> Bill {
    let mut b = Biller::new(p);
    for o in objects {
        b.add(o.category(), o.size(), o.storage_class());
    }
    if let Some(n) = noncurrent {
        b.add_noncurrent(n);
    }
    b.finish()
}

// ------------------------------------------------------------------ per-object model ---

/// `a + b·S` (S in bytes): one piece of a piecewise-affine cost.
#[derive(Clone, Copy)]
struct Affine {
    a: f64,
    b: f64,
}

impl Affine {
    fn at(self, s: f64) -> f64 {
        self.a + self.b * s
    }
}

/// Monthly cost of one object in class `cp`, affine for sizes on one side of the class's
/// thresholds (`below_min`: billed at the minimum size; `monitored`: pays monitoring).
fn object_cost(p: &Pricing, cp: &ClassPrice, below_min: bool, monitored: bool) -> Affine {
    let r = cp.first_rate() / GB;
    let mut a = r * cp.overhead_bytes_at_class_rate as f64
        + p.standard_rate() / GB * cp.overhead_bytes_at_standard_rate as f64;
    let mut b = r;
    if below_min {
        a += r * cp.min_billable_bytes as f64;
        b = 0.0;
    }
    if monitored {
        a += cp.monitoring_per_1000_objects / 1000.0;
    }
    Affine { a, b }
}

fn object_cost_at(p: &Pricing, cp: &ClassPrice, size: u64) -> f64 {
    object_cost(p, cp, size < cp.min_billable_bytes, cp.monitored(size)).at(size as f64)
}

/// Monthly saving of moving one object of `size` bytes from STANDARD into `class`, at
/// first-tier rates (reference.md §5's model).
pub fn monthly_saving_per_object(p: &Pricing, class: &str, size: u64) -> Option<f64> {
    let cp = p.class(class)?;
    Some(object_cost_at(p, p.standard(), size) - object_cost_at(p, cp, size))
}

/// Months until moving one object of `size` bytes from STANDARD into `class` pays back its
/// transition price (reference.md §5). `None` when the class is not priced, cannot be a
/// transition target, or the move never pays back.
pub fn payback_months(p: &Pricing, class: &str, size: u64) -> Option<f64> {
    let cp = p.class(class)?;
    cp.transition_in_per_1000?;
    let saving = monthly_saving_per_object(p, class, size)?;
    let t = cp.transition_price() + cp.transition_in_per_gb * size as f64 / GB;
    (saving > 0.0).then(|| t / saving)
}

/// The smallest object size (bytes) from which every larger object moved from STANDARD into
/// `class` pays back its transition within `payback` months (reference.md §5: ≈208 KB for
/// DEEP_ARCHIVE at 12 months). `None` when the class is not priced, cannot be a transition
/// target, or large objects never pay back.
pub fn break_even_size(p: &Pricing, class: &str, payback: f64) -> Option<u64> {
    let cp = p.class(class)?;
    cp.transition_in_per_1000?;
    let std = p.standard();
    // g(S) = payback·(cost in STANDARD − cost in class) − transition price: affine between
    // the thresholds where a minimum size or the monitoring fee starts or stops applying.
    let mut cuts: Vec<u64> = vec![
        0,
        std.min_billable_bytes,
        cp.min_billable_bytes,
        std.monitoring_min_bytes.saturating_add(1),
        cp.monitoring_min_bytes.saturating_add(1),
    ];
    cuts.sort_unstable();
    cuts.dedup();
    let piece = |lo: u64| -> Affine {
        let s = object_cost(
            p,
            std,
            lo < std.min_billable_bytes,
            std.monitoring_per_1000_objects > 0.0 && lo > std.monitoring_min_bytes,
        );
        let c = object_cost(
            p,
            cp,
            lo < cp.min_billable_bytes,
            cp.monitoring_per_1000_objects > 0.0 && lo > cp.monitoring_min_bytes,
        );
        Affine {
            a: payback * (s.a - c.a) - cp.transition_price(),
            b: payback * (s.b - c.b) - cp.transition_in_per_gb / GB,
        }
    };
    // Walk down from the unbounded piece; the answer is where g last becomes ≥ 0.
    let last = piece(*cuts.last()?);
    if last.b <= 0.0 {
        return None;
    }
    let mut hi = f64::INFINITY;
    for &lo in cuts.iter().rev() {
        let g = piece(lo);
        let lo_f = lo as f64;
        if g.at(lo_f) >= 0.0 {
            // Non-negative at the start of the piece; if also at its end, go further down.
            let end = if hi.is_finite() {
                g.at(hi)
            } else {
                f64::INFINITY
            };
            if end >= 0.0 || g.b >= 0.0 {
                hi = lo_f;
                continue;
            }
            // Decreasing and crossing zero inside: objects above the crossing fail.
            return Some(hi as u64);
        }
        // Negative at the start: the crossing is inside this piece (or at its end).
        if g.b > 0.0 {
            let root = -g.a / g.b;
            if root < hi {
                return Some(root.ceil() as u64);
            }
        }
        return Some(hi as u64);
    }
    Some(0)
}

// --------------------------------------------------------------------------- plans ---

/// A count, bytes and price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub count: u64,
    pub bytes: u64,
    pub usd: f64,
}

impl Charge {
    fn add(&mut self, bytes: u64, usd: f64) {
        self.count += 1;
        self.bytes += bytes;
        self.usd += usd;
    }
}

/// What a plan costs once, when it is applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OneTimeCost {
    /// Archived NARs moved into their target class (per-object transition price).
    pub transitions: Charge,
    /// Other archived objects (narinfos, listings…) copied under the archive prefix, at the
    /// PUT price of their class.
    pub copies: Charge,
    /// Objects deleted or moved before their class's minimum duration: the remaining days.
    pub early_deletion: Charge,
    /// Objects leaving a class with a minimum duration whose age is unknown (not charged).
    pub unknown_age: u64,
    pub total_usd: f64,
}

/// One target storage class of a plan's archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCost {
    pub class: String,
    /// NARs that move into the class.
    pub transitions: Charge,
    /// Monthly saving of these moves (STANDARD at its average rate before the plan).
    pub monthly_saving_usd: f64,
    /// Break-even size at the table's payback horizon (reference.md §5).
    pub break_even_size: Option<u64>,
    /// Moved NARs below the break-even size: their transition does not pay back in time.
    pub not_worth_archiving: Charge,
}

/// The price of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanCost {
    pub pricing: String,
    pub currency: String,
    pub payback_months: f64,
    pub before: Bill,
    pub after: Bill,
    pub monthly_saving_usd: f64,
    /// Part of the saving that comes from deletions (the rest from archiving).
    pub saving_from_deletes_usd: f64,
    pub saving_from_archive_usd: f64,
    pub one_time: OneTimeCost,
    /// One-time cost ÷ monthly saving (`None`: the plan saves nothing).
    pub break_even_months: Option<f64>,
    pub targets: Vec<TargetCost>,
    /// Archived NARs that stay in their class (below `archive_min_size`, or already in
    /// GLACIER or DEEP_ARCHIVE): hidden only.
    pub hidden_only_nars: Charge,
    /// What the bucket's versioning means for the saving.
    pub versioning: VersioningCost,
}

/// The saving of a plan in a bucket that keeps versions: a delete there is a delete
/// marker, and the data stays billed as a noncurrent version until a lifecycle rule
/// (NoncurrentVersionExpiration) or a delete by version id (after the grace window)
/// removes it; an archive copy leaves its source as a noncurrent version too. So the
/// saving is conditional, and until then the bill does not fall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersioningCost {
    pub state: VersioningState,
    /// `delete`, or `delete marker + noncurrent-version expiry`.
    pub delete_mode: String,
    /// Whether `monthly_saving_usd` is delivered only once noncurrent versions expire or
    /// are deleted by version id (versioning enabled, suspended or unknown).
    pub saving_conditional: bool,
    /// The condition, in words (`None` when the saving is not conditional).
    pub condition: Option<String>,
    /// The monthly saving until then (delete markers free nothing, every copied object is
    /// billed twice): usually negative.
    pub monthly_saving_until_expiry_usd: f64,
    /// Noncurrent versions already in the bucket, counted in both bills. `None`: the
    /// listing does not list versions, so the bills are lower bounds.
    pub noncurrent: Option<Charge>,
    /// The bills count current objects only (the bucket may hold versions not listed).
    pub bill_is_lower_bound: bool,
}

/// Price a plan: its monthly saving (bill before − bill after applying every decision:
/// deleted objects vanish, archived NARs with `transition_to` change class, other archived
/// objects stay where they are), its one-time cost (transitions, copies of hidden objects,
/// early-deletion charges for objects younger than their class's minimum duration at `now`),
/// months to break even, and per target class the break-even size and the moved NARs below
/// it.
///
/// Ages come from `last_modified`: S3 listings do not give the date of an object's last
/// transition, so an early-deletion charge for an object transitioned after its upload is
/// underestimated.
pub fn price_plan(plan: &Plan, p: &Pricing, now: i64) -> PlanCost {
    let mut pricer = PlanPricer::new(p, now);
    for o in &plan.objects {
        pricer.add(o);
    }
    pricer.finish(&plan.header)
}

/// [`price_plan`] one object at a time, as a plan's decisions are made: nothing per
/// object is held.
pub struct PlanPricer<'p> {
    p: &'p Pricing,
    now: i64,
    before: Biller<'p>,
    no_deletes: Biller<'p>,
    after: Biller<'p>,
    /// The bill of a versioned bucket before any noncurrent version expires.
    until_expiry: Biller<'p>,
    one: OneTimeCost,
    targets: BTreeMap<String, TargetCost>,
    /// Per target class, the saving of its moves as `fixed + per_std_rate × the average
    /// STANDARD rate before the plan` (known only once every object was seen).
    target_saving: BTreeMap<String, (f64, f64)>,
    hidden_only: Charge,
}

impl<'p> PlanPricer<'p> {
    pub fn new(p: &'p Pricing, now: i64) -> PlanPricer<'p> {
        PlanPricer {
            p,
            now,
            before: Biller::new(p),
            no_deletes: Biller::new(p),
            after: Biller::new(p),
            until_expiry: Biller::new(p),
            one: OneTimeCost::default(),
            targets: BTreeMap::new(),
            target_saving: BTreeMap::new(),
            hidden_only: Charge::default(),
        }
    }

    /// Count one object of the plan.
    pub fn add(&mut self, o: &ObjectDecision) {
        let p = self.p;
        let class = o.storage_class.as_deref().unwrap_or(STANDARD);
        self.before.add(o.category, o.size, class);
        self.until_expiry.add(o.category, o.size, class);
        let cp = p.class(class).unwrap_or_else(|| p.standard());
        let leaves = match (o.decision, &o.transition_to) {
            (Decision::Keep, _) => {
                self.no_deletes.add(o.category, o.size, class);
                self.after.add(o.category, o.size, class);
                false
            }
            (Decision::Delete, _) => true,
            (Decision::Archive, Some(to)) => {
                self.no_deletes.add(o.category, o.size, class);
                self.after.add(o.category, o.size, to);
                self.until_expiry.add(o.category, o.size, to);
                self.transition(o, class, to);
                true
            }
            (Decision::Archive, None) => {
                self.no_deletes.add(o.category, o.size, class);
                self.after.add(o.category, o.size, class);
                if o.category == Category::Nar {
                    self.hidden_only.add(o.size, 0.0);
                    false
                } else {
                    self.until_expiry.add(o.category, o.size, class);
                    self.one.copies.add(o.size, cp.put_per_1000 / 1000.0);
                    true
                }
            }
        };
        if leaves && cp.min_duration_days > 0 {
            self.early_deletion(o, cp);
        }
    }

    /// An archived NAR moving from `class` to `to`: its transition price and its share of
    /// the target's monthly saving.
    fn transition(&mut self, o: &ObjectDecision, class: &str, to: &str) {
        let p = self.p;
        let tp = p.class(to).unwrap_or_else(|| p.standard());
        let price = tp.transition_price() + tp.transition_in_per_gb * o.size as f64 / GB;
        self.one.transitions.add(o.size, price);
        let payback = p.model.payback_months;
        let t = self
            .targets
            .entry(to.to_string())
            .or_insert_with(|| TargetCost {
                class: to.to_string(),
                transitions: Charge::default(),
                monthly_saving_usd: 0.0,
                break_even_size: break_even_size(p, to, payback),
                not_worth_archiving: Charge::default(),
            });
        t.transitions.add(o.size, price);
        if t.break_even_size.is_none_or(|b| o.size < b) {
            t.not_worth_archiving.add(o.size, price);
        }
        // Monthly cost before minus after, at the class rates; STANDARD (and unpriced
        // classes) at the average STANDARD rate of the bill before, added in `finish`.
        let fp = p.class(class).unwrap_or_else(|| p.standard());
        let from_std = class == STANDARD || p.class(class).is_none();
        let from_billable = fp.billable_bytes(o.size) as f64;
        let (mut fixed, mut per_std) = (0.0, 0.0);
        if from_std {
            per_std += from_billable;
        } else {
            fixed += from_billable * fp.first_rate() / GB;
        }
        per_std += fp.overhead_bytes_at_standard_rate as f64;
        fixed -= tp.billable_bytes(o.size) as f64 * tp.first_rate() / GB;
        per_std -= tp.overhead_bytes_at_standard_rate as f64;
        let e = self.target_saving.entry(to.to_string()).or_default();
        e.0 += fixed;
        e.1 += per_std;
    }

    /// An object leaving a class with a minimum duration before its end.
    fn early_deletion(&mut self, o: &ObjectDecision, cp: &ClassPrice) {
        match o.last_modified {
            None => self.one.unknown_age += 1,
            Some(t) => {
                let age_days = (self.now - t).max(0) as f64 / 86_400.0;
                let left = cp.min_duration_days as f64 - age_days;
                if left > 0.0 {
                    let usd = cp.billable_bytes(o.size) as f64 / GB
                        * cp.first_rate()
                        * (left / MONTH_DAYS);
                    self.one.early_deletion.add(o.size, usd);
                }
            }
        }
    }

    /// The price of the plan whose every object was added.
    pub fn finish(mut self, header: &PlanHeader) -> PlanCost {
        let p = self.p;
        // Noncurrent versions the listing knows stay in every bill: a plan does not touch
        // them.
        if let Some(n) = &header.versioning.noncurrent {
            for b in [
                &mut self.before,
                &mut self.no_deletes,
                &mut self.after,
                &mut self.until_expiry,
            ] {
                b.add_noncurrent(n);
            }
        }
        let mut one = self.one;
        one.total_usd = one.transitions.usd + one.copies.usd + one.early_deletion.usd;
        let before = self.before.finish();
        let no_deletes = self.no_deletes.finish();
        let after = self.after.finish();
        let mut targets = self.targets;
        for t in targets.values_mut() {
            let (fixed, per_std) = self
                .target_saving
                .get(&t.class)
                .copied()
                .unwrap_or_default();
            t.monthly_saving_usd = fixed + per_std * before.standard_avg_rate / GB;
        }
        let saving = before.monthly_usd - after.monthly_usd;
        let versioning = versioning_cost(header, p, &before, saving, self.until_expiry);
        PlanCost {
            pricing: p.name.clone(),
            currency: p.currency.clone(),
            payback_months: p.model.payback_months,
            monthly_saving_usd: saving,
            saving_from_deletes_usd: before.monthly_usd - no_deletes.monthly_usd,
            saving_from_archive_usd: no_deletes.monthly_usd - after.monthly_usd,
            break_even_months: (saving > 0.0).then(|| one.total_usd / saving),
            one_time: one,
            targets: targets.into_values().collect(),
            hidden_only_nars: self.hidden_only,
            versioning,
            before,
            after,
        }
    }
}

/// What versioning does to a plan's saving (see [`VersioningCost`]); `saving` is the
/// saving once every version the plan leaves behind is gone.
fn versioning_cost(
    header: &PlanHeader,
    p: &Pricing,
    before: &Bill,
    saving: f64,
    until_expiry: Biller<'_>,
) -> VersioningCost {
    let v = &header.versioning;
    let conditional = v.state.deletes_leave_versions();
    let noncurrent = v.noncurrent.as_ref().map(|n| {
        let mut b = Biller::new(p);
        b.add_noncurrent(n);
        let (count, bytes) = n.total();
        Charge {
            count,
            bytes,
            usd: b.finish().monthly_usd,
        }
    });
    VersioningCost {
        state: v.state,
        delete_mode: header.delete_mode().to_string(),
        saving_conditional: conditional,
        condition: conditional.then(|| {
            "delivered only once the noncurrent versions this plan leaves expire (a NoncurrentVersionExpiration lifecycle rule) or are deleted by version id after the grace window".to_string()
        }),
        monthly_saving_until_expiry_usd: if conditional {
            before.monthly_usd - until_expiry.finish().monthly_usd
        } else {
            saving
        },
        bill_is_lower_bound: noncurrent.is_none(),
        noncurrent,
    }
}

/// Months for people: "0.3 months", "never".
pub fn months_text(m: Option<f64>) -> String {
    match m {
        None => "never".into(),
        Some(m) if m < 0.05 => "immediately (< 0.1 month)".into(),
        Some(m) if m >= 120.0 => format!("{m:.0} months ({:.0} years)", m / 12.0),
        Some(m) => format!("{m:.1} months"),
    }
}

/// What versioning means for the saving, in `plan` and `plan show`.
fn versioning_text(o: &mut String, c: &PlanCost) {
    let v = &c.versioning;
    if let Some(cond) = &v.condition {
        let _ = writeln!(
            o,
            "  CONDITIONAL saving: bucket versioning is {}, so a delete is a {}; the saving is {cond}",
            v.state.as_str(),
            v.delete_mode
        );
        let _ = writeln!(
            o,
            "    until then the bill changes by {}/month (delete markers free nothing; copied objects are billed twice)",
            money(v.monthly_saving_until_expiry_usd)
        );
    }
    match &v.noncurrent {
        Some(n) if n.count > 0 => {
            let _ = writeln!(
                o,
                "  noncurrent versions: {} ({}), {}/month, counted in both bills",
                n.count,
                human_bytes(n.bytes),
                money(n.usd)
            );
        }
        Some(_) => {}
        None => {
            let _ = writeln!(
                o,
                "  note: the listing does not list noncurrent versions: the bills count current objects only and are a lower bound"
            );
        }
    }
}

/// The cost section of `plan` and `plan show`.
pub fn plan_cost_text(c: &PlanCost) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "cost ({}, {}; storage only, reads and egress excluded):",
        c.pricing, c.currency
    );
    let _ = writeln!(
        o,
        "  monthly storage bill    {:>12}  before the plan",
        money(c.before.monthly_usd)
    );
    let _ = writeln!(
        o,
        "                          {:>12}  after it",
        money(c.after.monthly_usd)
    );
    let _ = writeln!(
        o,
        "  monthly saving          {:>12}  (deletions {}, archiving {})",
        money(c.monthly_saving_usd),
        money(c.saving_from_deletes_usd),
        money(c.saving_from_archive_usd)
    );
    versioning_text(&mut o, c);
    let one = &c.one_time;
    let _ = writeln!(
        o,
        "  one-time cost           {:>12}  (transitions {} for {} NARs, copies {} for {} objects, early deletion {} for {} objects)",
        money(one.total_usd),
        money(one.transitions.usd),
        one.transitions.count,
        money(one.copies.usd),
        one.copies.count,
        money(one.early_deletion.usd),
        one.early_deletion.count,
    );
    if one.unknown_age > 0 {
        let _ = writeln!(
            o,
            "  note: {} objects leaving a class with a minimum duration have no date; early deletion not charged for them",
            one.unknown_age
        );
    }
    let _ = writeln!(
        o,
        "  break-even              {:>12}",
        months_text(c.break_even_months)
    );
    for t in &c.targets {
        let be = t
            .break_even_size
            .map_or("none (never pays back)".to_string(), human_bytes);
        let _ = writeln!(
            o,
            "  {}: {} NARs ({}) move, saving {}/month; break-even size {} at {:.0}-month payback",
            t.class,
            t.transitions.count,
            human_bytes(t.transitions.bytes),
            money(t.monthly_saving_usd),
            be,
            c.payback_months
        );
        if t.not_worth_archiving.count > 0 {
            let _ = writeln!(
                o,
                "    warning: {} of them ({}) are below the break-even size and not worth archiving: raise actions.archive_min_size to {}",
                t.not_worth_archiving.count,
                human_bytes(t.not_worth_archiving.bytes),
                t.break_even_size
                    .map_or("(none pays back)".into(), |b| format!(
                        "\"{}KiB\"",
                        b.div_ceil(1024)
                    ))
            );
        }
    }
    if !c.before.unpriced_classes.is_empty() {
        let _ = writeln!(
            o,
            "  note: storage classes not in the pricing table, billed as STANDARD: {}",
            c.before.unpriced_classes.join(", ")
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ObjectDecision, PlanHeader, Reason, Summary};

    const KB: f64 = 1024.0;

    fn aws() -> Pricing {
        Pricing::default_aws()
    }

    fn kb(b: u64) -> f64 {
        b as f64 / KB
    }

    #[test]
    fn builtin_table_parses_and_has_every_s3_class() {
        let p = aws();
        for c in STORAGE_CLASSES {
            assert!(p.class(c).is_some(), "{c}");
        }
        assert_eq!(p.standard().storage.len(), 3);
        assert_eq!(p.class("DEEP_ARCHIVE").unwrap().min_duration_days, 180);
        assert_eq!(p.model.payback_months, 12.0);
    }

    #[test]
    fn break_even_sizes_match_reference_section_5() {
        let p = aws();
        let be = |c| kb(break_even_size(&p, c, 12.0).unwrap());
        // reference.md §5: ≈208 KB GDA, ≈151 KB GFR, ≈98 KB GIR (1 KB = 1024 bytes).
        assert!(
            (be("DEEP_ARCHIVE") - 208.0).abs() <= 1.0,
            "{}",
            be("DEEP_ARCHIVE")
        );
        assert!((be("GLACIER") - 151.0).abs() <= 1.0, "{}", be("GLACIER"));
        assert!(
            (be("GLACIER_IR") - 98.0).abs() <= 1.0,
            "{}",
            be("GLACIER_IR")
        );
        // STANDARD is not a transition target.
        assert_eq!(break_even_size(&p, "STANDARD", 12.0), None);
        assert_eq!(break_even_size(&p, "NO_SUCH_CLASS", 12.0), None);
    }

    #[test]
    fn break_even_without_overhead_and_with_the_unconfirmed_checksum_fee() {
        // §5: "Without the overhead term it would be 198.5 KB" (GDA), 135 KB (GFR).
        let mut p = aws();
        for c in ["DEEP_ARCHIVE", "GLACIER"] {
            let cp = p.classes.get_mut(c).unwrap();
            cp.overhead_bytes_at_class_rate = 0;
            cp.overhead_bytes_at_standard_rate = 0;
        }
        let gda = kb(break_even_size(&p, "DEEP_ARCHIVE", 12.0).unwrap());
        assert!((gda - 198.5).abs() <= 1.0, "{gda}");
        let gfr = kb(break_even_size(&p, "GLACIER", 12.0).unwrap());
        assert!((gfr - 135.0).abs() <= 1.0, "{gfr}");
        // §5: with a $0.004/GB fee on transition the GDA break-even rises to about 211 KB.
        let mut p = aws();
        p.classes
            .get_mut("DEEP_ARCHIVE")
            .unwrap()
            .transition_in_per_gb = 0.004;
        let gda = kb(break_even_size(&p, "DEEP_ARCHIVE", 12.0).unwrap());
        assert!((gda - 211.0).abs() <= 1.0, "{gda}");
    }

    #[test]
    fn payback_months_table_of_reference_section_5() {
        let p = aws();
        let k = 1024u64;
        #[rustfmt::skip]
        let table: [(u64, [Option<f64>; 4]); 5] = [
            (64 * k,        [Some(44.0), Some(33.4), Some(21.9), None]),
            (128 * k,       [Some(20.2), Some(14.4), Some(8.6),  Some(7.8)]),
            (256 * k,       [Some(9.7),  Some(6.7),  Some(4.3),  Some(3.9)]),
            (1024 * k,      [Some(2.35), Some(1.61), Some(1.08), Some(0.98)]),
            (10 * 1024 * k, [Some(0.23), Some(0.16), Some(0.11), Some(0.10)]),
        ];
        let classes = ["DEEP_ARCHIVE", "GLACIER", "GLACIER_IR", "STANDARD_IA"];
        for (size, want) in table {
            for (c, w) in classes.iter().zip(want) {
                let got = payback_months(&p, c, size);
                match (got, w) {
                    (None, None) => {}
                    (Some(g), Some(w)) => {
                        assert!(
                            (g - w).abs() <= 0.1,
                            "{c} at {size} B: got {g:.3}, §5 says {w}"
                        )
                    }
                    _ => panic!("{c} at {size} B: got {got:?}, §5 says {w:?}"),
                }
            }
        }
    }

    #[test]
    fn break_even_size_is_where_payback_crosses_the_horizon() {
        let p = aws();
        for c in [
            "DEEP_ARCHIVE",
            "GLACIER",
            "GLACIER_IR",
            "STANDARD_IA",
            "ONEZONE_IA",
        ] {
            let b = break_even_size(&p, c, 12.0).unwrap();
            assert!(payback_months(&p, c, b).unwrap() <= 12.0 + 1e-9, "{c}");
            assert!(
                payback_months(&p, c, b - 1).is_none_or(|m| m > 12.0),
                "{c}: one byte less still pays back"
            );
        }
    }

    #[test]
    fn tiered_standard_bill() {
        let p = aws();
        let std = p.standard();
        // 600 TB: 50 TB at 0.023, 450 TB at 0.022, 100 TB at 0.021.
        let gb = 600.0 * 1024.0;
        let want = 51_200.0 * 0.023 + 460_800.0 * 0.022 + 102_400.0 * 0.021;
        assert!((std.storage_cost(gb) - want).abs() < 1e-6);
        assert!((std.storage_cost(10.0) - 0.23).abs() < 1e-12);
        assert_eq!(std.storage_cost(0.0), 0.0);
        assert!((p.egress_cost(100.0)).abs() < 1e-12);
        assert!((p.egress_cost(110.0) - 0.9).abs() < 1e-9);
    }

    fn rec(key: &str, size: u64, class: Option<&str>) -> crate::model::ObjectRecord {
        crate::model::ObjectRecord {
            link_target: None,
            key: key.into(),
            size,
            etag: None,
            last_modified: Some(0),
            storage_class: class.map(str::to_string),
        }
    }

    const NAR: &str = "nar/0000000000000000000000000000000000000000000000000000.nar.xz";

    #[test]
    fn bill_applies_minimum_size_and_archive_overhead() {
        let p = aws();
        let objs = vec![
            rec(NAR, 1 << 30, None),
            rec(
                "00000000000000000000000000000000.narinfo",
                1000,
                Some("STANDARD_IA"),
            ),
            rec(
                "nar/1111111111111111111111111111111111111111111111111111.nar.xz",
                1 << 30,
                Some("DEEP_ARCHIVE"),
            ),
            rec("log/abc-foo.drv", 10, Some("REDUCED_REDUNDANCY")),
        ];
        let b = monthly_bill(&Listing::from_records(objs).unwrap(), &p);
        assert_eq!(b.objects, 4);
        assert_eq!(b.bytes, (2u64 << 30) + 1010);
        let ia = b
            .by_class
            .iter()
            .find(|c| c.class == "STANDARD_IA")
            .unwrap();
        assert_eq!(ia.billable_bytes, 131_072);
        assert!((ia.monthly_usd - 131_072.0 / GB * 0.0125).abs() < 1e-15);
        let gda = b
            .by_class
            .iter()
            .find(|c| c.class == "DEEP_ARCHIVE")
            .unwrap();
        assert_eq!(gda.billable_bytes, (1 << 30) + 32_768);
        assert_eq!(gda.standard_overhead_bytes, 8_192);
        let want = (GB + 32_768.0) / GB * 0.00099 + 8_192.0 / GB * 0.023;
        assert!(
            (gda.monthly_usd - want).abs() < 1e-12,
            "{} vs {want}",
            gda.monthly_usd
        );
        assert_eq!(b.unpriced_classes, vec!["REDUCED_REDUNDANCY".to_string()]);
        let by_cat: f64 = b.by_category.iter().map(|c| c.monthly_usd).sum();
        assert!((by_cat - b.monthly_usd).abs() < 1e-12);
        let nar = b
            .by_category
            .iter()
            .find(|c| c.category == Category::Nar)
            .unwrap();
        assert_eq!(nar.objects, 2);
    }

    #[test]
    fn intelligent_tiering_monitoring_only_above_128k() {
        let p = aws();
        let objs: Vec<_> = (0u64..2000)
            .map(|i| {
                rec(
                    &format!("x{i}"),
                    if i.is_multiple_of(2) {
                        131_072
                    } else {
                        131_073
                    },
                    Some("INTELLIGENT_TIERING"),
                )
            })
            .collect();
        let b = monthly_bill(&Listing::from_records(objs).unwrap(), &p);
        assert_eq!(b.by_class[0].monitored_objects, 1000);
        assert!((b.by_class[0].monitoring_usd - 0.0025).abs() < 1e-12);
    }

    fn od(
        key: &str,
        size: u64,
        class: Option<&str>,
        d: Decision,
        to: Option<&str>,
        age_days: i64,
    ) -> ObjectDecision {
        ObjectDecision {
            key: key.into(),
            category: narward_formats::keys::classify(key).category(),
            size,
            etag: None,
            last_modified: Some(NOW - age_days * 86_400),
            storage_class: class.map(str::to_string),
            decision: d,
            transition_to: to.map(str::to_string),
            reason: Reason::Unreachable,
        }
    }

    const NOW: i64 = 1_700_000_000;

    fn plan_of(objects: Vec<ObjectDecision>) -> Plan {
        let mut objects = objects;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Plan {
            header: PlanHeader {
                format_version: 1,
                cache: "file:///x".into(),
                cache_url: "file:///x".into(),
                index_generation: 1,
                created_at: NOW,
                policy_file: "p.toml".into(),
                policy_sha256: String::new(),
                policy_text: String::new(),
                archive_storage_class: "DEEP_ARCHIVE".into(),
                archive_prefix: "narward-archive/".into(),
                archive_bucket: None,
                versioning: crate::model::BucketVersioning {
                    state: VersioningState::Unversioned,
                    source: "test".into(),
                    noncurrent: Some(NoncurrentVersions::default()),
                },
                roots: Default::default(),
                summary: Summary::default(),
                files: Default::default(),
                checksum: String::new(),
            },
            paths: Vec::new(),
            objects,
            restore: Vec::new(),
        }
    }

    fn nar(i: u32) -> String {
        format!("nar/{i:052}.nar.xz")
    }

    #[test]
    fn plan_saving_one_time_cost_and_break_even() {
        let p = aws();
        let gib = 1u64 << 30;
        let plan = plan_of(vec![
            // 10 GiB kept.
            od(&nar(1), 10 * gib, None, Decision::Keep, None, 400),
            // 4 GiB deleted from STANDARD: saves 4 × 0.023, no one-time cost.
            od(&nar(2), 4 * gib, None, Decision::Delete, None, 400),
            // 1 GiB archived to DEEP_ARCHIVE.
            od(
                &nar(3),
                gib,
                None,
                Decision::Archive,
                Some("DEEP_ARCHIVE"),
                400,
            ),
            // A 100 KiB NAR archived to DEEP_ARCHIVE: below the break-even size.
            od(
                &nar(4),
                100 * 1024,
                None,
                Decision::Archive,
                Some("DEEP_ARCHIVE"),
                400,
            ),
            // A small NAR only hidden, and its narinfo copied away.
            od(&nar(5), 1000, None, Decision::Archive, None, 400),
            od(
                "00000000000000000000000000000005.narinfo",
                500,
                None,
                Decision::Archive,
                None,
                400,
            ),
            // Deleted from DEEP_ARCHIVE 30 days after upload: 150 days of early deletion.
            od(
                &nar(6),
                gib,
                Some("DEEP_ARCHIVE"),
                Decision::Delete,
                None,
                30,
            ),
        ]);
        let c = price_plan(&plan, &p, NOW);
        let gda = 0.00099;
        let oh = 8192.0 / GB * 0.023 + 32_768.0 / GB * gda;
        let del = 4.0 * 0.023 + (1.0 + 32_768.0 / GB) * gda + 8192.0 / GB * 0.023;
        assert!(
            (c.saving_from_deletes_usd - del).abs() < 1e-9,
            "{}",
            c.saving_from_deletes_usd
        );
        let small = 100.0 * 1024.0 / GB;
        let arch = (1.0 + small) * (0.023 - gda) - 2.0 * oh;
        assert!(
            (c.saving_from_archive_usd - arch).abs() < 1e-9,
            "{}",
            c.saving_from_archive_usd
        );
        assert!((c.monthly_saving_usd - (del + arch)).abs() < 1e-9);
        assert!((c.before.monthly_usd - c.after.monthly_usd - c.monthly_saving_usd).abs() < 1e-12);
        assert_eq!(c.one_time.transitions.count, 2);
        assert!((c.one_time.transitions.usd - 2.0 * 0.05 / 1000.0).abs() < 1e-12);
        assert_eq!(c.one_time.copies.count, 1);
        assert_eq!(c.hidden_only_nars.count, 1);
        assert_eq!(c.one_time.early_deletion.count, 1);
        let early = (1.0 + 32_768.0 / GB) * gda * (150.0 / MONTH_DAYS);
        assert!((c.one_time.early_deletion.usd - early).abs() < 1e-9);
        let be = c.break_even_months.unwrap();
        assert!((be - c.one_time.total_usd / c.monthly_saving_usd).abs() < 1e-12);
        let t = &c.targets[0];
        assert_eq!(t.class, "DEEP_ARCHIVE");
        assert_eq!(t.transitions.count, 2);
        assert_eq!(t.not_worth_archiving.count, 1);
        assert_eq!(t.not_worth_archiving.bytes, 100 * 1024);
        assert!((kb(t.break_even_size.unwrap()) - 208.0).abs() <= 1.0);
        assert!((t.monthly_saving_usd - arch).abs() < 1e-9);
        let text = plan_cost_text(&c);
        assert!(text.contains("not worth archiving"), "{text}");
        assert!(text.contains("\"209KiB\""), "{text}");
    }

    #[test]
    fn deleting_a_cold_nar_charges_the_early_deletion_minimum_and_hiding_it_does_not() {
        let p = aws();
        let gib = 1u64 << 30;
        let plan = plan_of(vec![
            // GLACIER 30 days old: 60 of its 90 days left.
            od(&nar(1), gib, Some("GLACIER"), Decision::Delete, None, 30),
            // DEEP_ARCHIVE 200 days old: past its 180 days, nothing to pay.
            od(
                &nar(2),
                gib,
                Some("DEEP_ARCHIVE"),
                Decision::Delete,
                None,
                200,
            ),
            // Already in DEEP_ARCHIVE and archived: only hidden, it does not leave its class.
            od(
                &nar(3),
                gib,
                Some("DEEP_ARCHIVE"),
                Decision::Archive,
                None,
                10,
            ),
        ]);
        let c = price_plan(&plan, &p, NOW);
        assert_eq!(c.one_time.early_deletion.count, 1);
        let gfr = p.class("GLACIER").unwrap();
        let want = gfr.billable_bytes(gib) as f64 / GB * gfr.first_rate() * (60.0 / MONTH_DAYS);
        assert!((c.one_time.early_deletion.usd - want).abs() < 1e-9);
        assert_eq!(c.one_time.transitions.count, 0);
        assert_eq!(c.hidden_only_nars.count, 1);
    }

    /// The plan of `plan_saving_one_time_cost_and_break_even`, in a bucket with `state` and
    /// the noncurrent versions `noncurrent`.
    fn versioned_plan(state: VersioningState, noncurrent: Option<NoncurrentVersions>) -> Plan {
        let gib = 1u64 << 30;
        let mut plan = plan_of(vec![
            od(&nar(1), 10 * gib, None, Decision::Keep, None, 400),
            od(&nar(2), 4 * gib, None, Decision::Delete, None, 400),
            od(
                &nar(3),
                gib,
                None,
                Decision::Archive,
                Some("DEEP_ARCHIVE"),
                400,
            ),
        ]);
        plan.header.versioning.state = state;
        plan.header.versioning.noncurrent = noncurrent;
        plan
    }

    #[test]
    fn deletes_in_a_versioned_bucket_save_only_once_noncurrent_versions_expire() {
        let p = aws();
        let c = price_plan(&versioned_plan(VersioningState::Enabled, None), &p, NOW);
        let v = &c.versioning;
        assert!(v.saving_conditional);
        assert_eq!(v.delete_mode, "delete marker + noncurrent-version expiry");
        assert!(
            v.condition
                .as_deref()
                .unwrap()
                .contains("NoncurrentVersionExpiration")
        );
        // Until then: the deleted 4 GiB stay billed and the archived NAR is billed twice.
        let gda = 0.00099;
        let twice = -((1.0 + 32_768.0 / GB) * gda + 8192.0 / GB * 0.023);
        assert!(
            (v.monthly_saving_until_expiry_usd - twice).abs() < 1e-9,
            "{}",
            v.monthly_saving_until_expiry_usd
        );
        assert!(c.monthly_saving_usd > 0.0);
        assert!(v.bill_is_lower_bound && v.noncurrent.is_none());
        let text = plan_cost_text(&c);
        assert!(text.contains("CONDITIONAL saving"), "{text}");
        assert!(
            text.contains("delete marker + noncurrent-version expiry"),
            "{text}"
        );
        assert!(text.contains("lower bound"), "{text}");
        // JSON states it too.
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["versioning"]["saving_conditional"], true);
        // Unknown versioning is treated the same; an unversioned bucket is not.
        let c = price_plan(&versioned_plan(VersioningState::Unknown, None), &p, NOW);
        assert!(c.versioning.saving_conditional);
        let c = price_plan(
            &versioned_plan(
                VersioningState::Unversioned,
                Some(NoncurrentVersions::default()),
            ),
            &p,
            NOW,
        );
        assert!(!c.versioning.saving_conditional);
        assert_eq!(
            c.versioning.monthly_saving_until_expiry_usd,
            c.monthly_saving_usd
        );
        let text = plan_cost_text(&c);
        assert!(
            !text.contains("CONDITIONAL") && !text.contains("lower bound"),
            "{text}"
        );
    }

    #[test]
    fn the_bill_counts_noncurrent_versions_the_listing_knows() {
        let p = aws();
        let mut n = NoncurrentVersions::default();
        n.add(&nar(9), 2 << 30, None);
        n.add(&nar(8), 1 << 30, Some("DEEP_ARCHIVE"));
        let plain = price_plan(
            &versioned_plan(
                VersioningState::Enabled,
                Some(NoncurrentVersions::default()),
            ),
            &p,
            NOW,
        );
        let c = price_plan(&versioned_plan(VersioningState::Enabled, Some(n)), &p, NOW);
        let nc = c.versioning.noncurrent.unwrap();
        assert_eq!((nc.count, nc.bytes), (2, 3 << 30));
        assert!(!c.versioning.bill_is_lower_bound);
        let want = 2.0 * 0.023 + (1.0 + 32_768.0 / GB) * 0.00099 + 8192.0 / GB * 0.023;
        assert!((nc.usd - want).abs() < 1e-9, "{}", nc.usd);
        assert!((c.before.monthly_usd - plain.before.monthly_usd - want).abs() < 1e-9);
        assert!((c.after.monthly_usd - plain.after.monthly_usd - want).abs() < 1e-9);
        assert_eq!(c.before.objects, plain.before.objects + 2);
        assert!((c.monthly_saving_usd - plain.monthly_saving_usd).abs() < 1e-9);
        assert!(plan_cost_text(&c).contains("noncurrent versions: 2"));
    }

    #[test]
    fn a_plan_that_keeps_everything_never_breaks_even() {
        let p = aws();
        let plan = plan_of(vec![od(&nar(1), 1 << 20, None, Decision::Keep, None, 1)]);
        let c = price_plan(&plan, &p, NOW);
        assert_eq!(c.monthly_saving_usd, 0.0);
        assert_eq!(c.break_even_months, None);
        assert!(plan_cost_text(&c).contains("never"));
    }

    #[test]
    fn bad_tables_are_refused_with_the_key_or_line() {
        let e = Pricing::from_toml("name = 1\n", "p.toml").unwrap_err();
        assert!(format!("{e:#}").contains("p.toml"), "{e:#}");
        let t = DEFAULT_AWS.replace("put_per_1000 = 0.005   # [IC]", "put_per_thousand = 0.005");
        let e = Pricing::from_toml(&t, "p.toml").unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("p.toml") && m.contains("line ") && m.contains("put_per_thousand"),
            "{m}"
        );
        let t = DEFAULT_AWS.replace(
            "{ up_to_gb = 512_000, per_gb_month = 0.022 }",
            "{ up_to_gb = 100, per_gb_month = 0.022 }",
        );
        let e = Pricing::from_toml(&t, "p.toml").unwrap_err();
        assert!(
            format!("{e:#}").contains("classes.STANDARD.storage[1]"),
            "{e:#}"
        );
        let t = DEFAULT_AWS.replace("[classes.STANDARD]", "[classes.STANDARD_X]");
        let e = Pricing::from_toml(&t, "p.toml").unwrap_err();
        assert!(
            format!("{e:#}").contains("classes.STANDARD is missing"),
            "{e:#}"
        );
    }

    #[test]
    fn money_formats() {
        assert_eq!(money(1234.567), "$1,234.57");
        assert_eq!(money(0.0012), "$0.0012");
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(0.000_006_1), "$0.0000061");
        assert_eq!(money(-12.5), "-$12.50");
        assert_eq!(money(1_000_000.0), "$1,000,000.00");
    }
}
