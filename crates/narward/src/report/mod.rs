//! Reports for the people who pay for a cache: why storage grows, what it costs, what a
//! policy would save.
//!
//! [`build`] takes the index (and optionally a policy, for the closures of its root sets,
//! plans, and a pricing table) and gives a [`ReportData`] value: pure, serializable, and
//! reconciled with the index (its totals equal the index's; a unit test holds it to that).
//! [`write`] renders it as `report.html` (self-contained: inline CSS and SVG charts, no
//! script, nothing fetched), `report.json` (the data) and `report.md` (a short summary).

pub mod access;
pub(crate) mod growth;
mod html;
mod markdown;
pub mod svg;

pub use growth::{Fit, Growth, MonthRow, ProjectionRow, date, month_label, month_number};

use crate::cache_graph::{CacheGraph, Snapshot, Status};
use crate::cost::{self, Bill, PlanCost, Pricing};
use crate::graph::NONE;
use crate::index::Index;
use crate::plan::{CountBytes, Decision, Plan, RootStats, Summary};
use crate::policy::Policy;
use anyhow::{Context, Result};
use narward_formats::keys::Category;
use narward_formats::store_path::StorePathHash;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// How many rows the "largest" and "families" tables keep.
pub const TOP: usize = 25;

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportData {
    pub cache: String,
    pub cache_url: String,
    pub index_generation: u64,
    pub index_updated_at: i64,
    pub generated_at: i64,
    pub pricing: PricingInfo,
    /// Equal to the index's: every object counted once.
    pub totals: Totals,
    /// The monthly storage bill today, by storage class and by kind of object.
    pub bill: Bill,
    pub growth: Growth,
    pub composition: Composition,
    /// Closures of the policy's root sets (each root source: e.g. each release).
    pub root_sets: Option<RootSets>,
    /// Break-even object size and payback months per archive class (reference.md §5).
    pub break_even: BreakEven,
    pub plans: Vec<PlanReport>,
    /// Hit and miss rates per kind of object, when the state has access statistics
    /// (set by the caller: [`access::section`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<access::AccessSection>,
    /// Assumptions and caveats, for the reader.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PricingInfo {
    pub name: String,
    pub currency: String,
    pub as_of: String,
    pub payback_months: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub objects: u64,
    pub bytes: u64,
    /// Narinfo objects, and those that parse (the store paths the report can name).
    pub narinfos: u64,
    pub store_paths: u64,
    /// Bytes of the NAR objects the store paths point to (each path counted once).
    pub path_bytes: u64,
}

/// One bucket of the size histogram: sizes in `[lo, hi)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeBucket {
    pub lo: u64,
    pub hi: u64,
    pub objects: u64,
    pub bytes: u64,
    pub nar_objects: u64,
    pub nar_bytes: u64,
}

/// A store path and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRow {
    /// Base name `<hash>-<name>`.
    pub path: String,
    pub family: String,
    /// Bytes of its NAR object (0 when the NAR is missing).
    pub bytes: u64,
    pub nar_size: u64,
    pub storage_class: Option<String>,
    /// Root sets whose closure holds it (with a policy).
    pub root_sets: Vec<String>,
}

/// Bytes by name family (the name without its version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyRow {
    pub family: String,
    pub paths: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Composition {
    /// Power-of-two size buckets, from the smallest to the largest non-empty one.
    pub size_histogram: Vec<SizeBucket>,
    pub largest_paths: Vec<PathRow>,
    /// The largest families, then one row `(other families)` with the rest.
    pub families: Vec<FamilyRow>,
    pub family_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootSetRow {
    pub label: String,
    pub roots: u64,
    /// Roots with no narinfo in the cache.
    pub missing: u64,
    pub closure_paths: u64,
    pub closure_bytes: u64,
    /// In no other set's closure.
    pub unique_paths: u64,
    pub unique_bytes: u64,
    /// Also in another set's closure.
    pub shared_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootSets {
    pub sets: Vec<RootSetRow>,
    /// Paths in at least one closure.
    pub union: CountBytes,
    /// Paths in no closure (what rules other than roots would have to keep).
    pub outside: CountBytes,
    /// `overlap[i][j]`: bytes in both set i and set j (only with at most 24 sets).
    pub overlap: Option<Vec<Vec<u64>>>,
    /// Closure references to paths with no narinfo.
    pub closure_holes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakEvenRow {
    pub class: String,
    pub break_even_size: Option<u64>,
    /// Payback months at each of [`BreakEven::sizes`].
    pub payback_months: Vec<Option<f64>>,
    /// NAR objects of the cache at or above the break-even size.
    pub nars_above: CountBytes,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakEven {
    pub payback_months: f64,
    pub sizes: Vec<u64>,
    pub classes: Vec<BreakEvenRow>,
    pub nars: CountBytes,
    /// Transition targets whose storage price is not below STANDARD's (left out of
    /// `classes`: moving there never pays back in this model).
    pub not_cheaper: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanReport {
    pub name: String,
    pub checksum: String,
    pub created_at: i64,
    pub policy_file: String,
    pub index_generation: u64,
    /// The plan was computed from another generation (or cache) than the index reported on.
    pub stale: bool,
    pub archive_storage_class: String,
    pub roots: RootStats,
    pub summary: Summary,
    pub cost: PlanCost,
}

/// The family of a store path name: the name without its version (Nix's rule: the version
/// starts at the first `-` followed by a non-letter), with three groups of their own —
/// `*-debug` outputs, `ISO/disk images` and `sources` (`source`, `*-src`, `*-source`,
/// tarballs, patches).
pub fn name_family(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with("-debug") {
        return "*-debug".into();
    }
    let stripped = ["zst", "xz", "gz", "bz2"]
        .iter()
        .find_map(|c| lower.strip_suffix(&format!(".{c}")))
        .unwrap_or(&lower);
    const IMAGES: [&str; 8] = [
        ".iso", ".img", ".qcow2", ".vhd", ".vhdx", ".vmdk", ".ova", ".raw",
    ];
    if IMAGES.iter().any(|e| stripped.ends_with(e))
        || (lower.starts_with("nixos-") && (lower.contains("-image") || lower.contains("iso")))
    {
        return "ISO/disk images".into();
    }
    const SOURCES: [&str; 10] = [
        ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst", ".tgz", ".tar", ".zip", ".patch", ".diff",
        ".gem",
    ];
    if lower == "source"
        || lower == "src"
        || lower.ends_with("-src")
        || lower.ends_with("-source")
        || SOURCES.iter().any(|e| lower.ends_with(e))
    {
        return "sources".into();
    }
    let b = name.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && b.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()) {
            return name[..i].to_string();
        }
    }
    name.to_string()
}

/// One parsed store path, as the report needs it.
struct PathInfo {
    /// Its id in the [`CacheGraph`].
    id: u32,
    bytes: u64,
}

fn size_histogram(index: &Index) -> Vec<SizeBucket> {
    let bucket = |s: u64| {
        if s == 0 {
            0
        } else {
            64 - s.leading_zeros() as usize
        }
    };
    let mut b: Vec<SizeBucket> = (0..=64)
        .map(|i: usize| SizeBucket {
            lo: if i == 0 { 0 } else { 1u64 << (i - 1) },
            hi: if i == 0 {
                1
            } else if i >= 64 {
                u64::MAX
            } else {
                1u64 << i
            },
            objects: 0,
            bytes: 0,
            nar_objects: 0,
            nar_bytes: 0,
        })
        .collect();
    for o in &index.objects {
        let k = &mut b[bucket(o.size())];
        k.objects += 1;
        k.bytes += o.size();
        if o.category() == Category::Nar {
            k.nar_objects += 1;
            k.nar_bytes += o.size();
        }
    }
    let first = b.iter().position(|x| x.objects > 0);
    let last = b.iter().rposition(|x| x.objects > 0);
    match (first, last) {
        (Some(f), Some(l)) => b.drain(f..=l).collect(),
        _ => Vec::new(),
    }
}

/// Root sets: the policy's roots grouped by root source, in order.
fn root_groups(policy: &Policy) -> Vec<(String, &[StorePathHash])> {
    let hashes = policy.roots.hashes();
    let mut out: Vec<(String, &[StorePathHash])> = policy
        .roots
        .sources()
        .iter()
        .map(|s| (s.label.clone(), hashes.get(s.range()).unwrap_or_default()))
        .collect();
    // Short labels: file names when they are unique.
    let short: Vec<String> = out
        .iter()
        .map(|(l, _)| {
            Path::new(l)
                .file_name()
                .map_or(l.clone(), |f| f.to_string_lossy().to_string())
        })
        .collect();
    let unique = {
        let mut s = short.clone();
        s.sort();
        s.dedup();
        s.len() == short.len()
    };
    if unique {
        for (o, s) in out.iter_mut().zip(short) {
            o.0 = s;
        }
    }
    out
}

/// What the bill says about versions: the noncurrent versions it includes, or that it
/// counts current objects only (a lower bound) in a bucket that keeps versions.
fn versioning_note(meta: &crate::index::IndexMeta) -> Option<String> {
    let state = meta
        .versioning
        .as_ref()
        .map_or(crate::model::VersioningState::Unknown, |v| v.state);
    match meta.versioning.as_ref().and_then(|v| v.noncurrent.as_ref()) {
        Some(n) if n.total().0 > 0 => {
            let (count, bytes) = n.total();
            Some(format!(
                "Bucket versioning: {}. The bill includes {count} noncurrent versions ({}) listed by the inventory.",
                state.as_str(),
                crate::explain::human_bytes(bytes)
            ))
        }
        Some(_) => None,
        None => Some(format!(
            "Bucket versioning: {}. The listing does not list noncurrent versions, so the bill counts current objects only: a lower bound (index from an S3 Inventory of all versions to count them).",
            state.as_str()
        )),
    }
}

/// The closure of one root set in `graph`: what a plan with these roots and no keep rule
/// keeps. Unknown means keep, as in a plan: the paths kept as unknown (unparseable,
/// unfetched, doubtful narinfos) are seeds too, with everything they seem to name. Returns
/// the number of roots found and the ids reached, in id order.
pub fn root_set_closure(graph: &CacheGraph<'_>, roots: &[StorePathHash]) -> (usize, Vec<u32>) {
    let mut seeds: Vec<u32> = roots.iter().filter_map(|h| graph.id(h)).collect();
    let found = seeds.len();
    seeds.extend((0..graph.len() as u32).filter(|&i| graph.status(i) != Status::Parsed));
    let parent = graph.closure(&seeds);
    let ids = (0..graph.len() as u32)
        .filter(|&i| parent[i as usize] != NONE)
        .collect();
    (found, ids)
}

/// [`build`] for an index held in memory, narinfo texts included (tests, small caches):
/// its columns and quirks are built as `narward index` builds them.
///
/// # Errors
/// Narinfo records out of key order.
pub fn build_index(
    index: &Index,
    policy: Option<&Policy>,
    plans: &[(String, Plan)],
    pricing: &Pricing,
    now: i64,
) -> Result<ReportData> {
    crate::cache_graph::with_snapshot(index, |s| build(s, policy, plans, pricing, now))
}

/// Build the report data from a [`Snapshot`] (the listing, the [`CacheGraph`] and the
/// quirks; no narinfo text is read). Pure: everything comes from the arguments; `now` is
/// unix seconds. Each root set's closure is taken in the graph, so unknown narinfos count
/// exactly as in a plan ([`root_set_closure`]).
pub fn build(
    snap: &Snapshot<'_>,
    policy: Option<&Policy>,
    plans: &[(String, Plan)],
    pricing: &Pricing,
    now: i64,
) -> ReportData {
    let index = snap.index;
    let noncurrent = index
        .meta
        .versioning
        .as_ref()
        .and_then(|v| v.noncurrent.as_ref());
    let bill = cost::monthly_bill_with_versions(&index.objects, noncurrent, pricing);
    let totals_bytes: u64 =
        index.objects.iter().map(|o| o.size()).sum::<u64>() + noncurrent.map_or(0, |n| n.total().1);
    let usd_per_byte = if totals_bytes > 0 {
        bill.monthly_usd / totals_bytes as f64
    } else {
        0.0
    };
    let growth = growth::compute(&index.objects, now, usd_per_byte);
    let paths = store_paths(snap);
    let totals = Totals {
        objects: index.objects.len() as u64,
        bytes: totals_bytes,
        narinfos: index
            .objects
            .iter()
            .filter(|o| o.category() == Category::Narinfo)
            .count() as u64,
        store_paths: paths.len() as u64,
        path_bytes: paths.iter().map(|p| p.bytes).sum(),
    };
    let sets = policy.map(|p| root_sets(snap, p));
    let (membership, set_labels) = sets
        .as_ref()
        .map_or((Vec::new(), Vec::new()), |s| (s.1.clone(), s.2.clone()));
    let (families, family_count) = family_rows(snap, &paths);
    let notes = notes(index, pricing, &bill, &growth, &totals);
    ReportData {
        cache: index.meta.cache.clone(),
        cache_url: index.meta.cache_url.clone(),
        index_generation: index.meta.generation,
        index_updated_at: index.meta.updated_at,
        generated_at: now,
        pricing: PricingInfo {
            name: pricing.name.clone(),
            currency: pricing.currency.clone(),
            as_of: pricing.as_of.clone(),
            payback_months: pricing.model.payback_months,
        },
        totals,
        bill,
        growth,
        composition: Composition {
            size_histogram: size_histogram(index),
            largest_paths: largest_paths(snap, &paths, &membership, &set_labels),
            families,
            family_count,
        },
        root_sets: sets.map(|s| s.0),
        break_even: break_even(index, pricing),
        plans: plan_reports(index, plans, pricing, now),
        access: None,
        notes,
    }
}

/// The store paths the report can name (narinfos that parse), with their NAR objects.
fn store_paths(snap: &Snapshot<'_>) -> Vec<PathInfo> {
    let g = snap.graph;
    (0..g.len() as u32)
        .filter(|&id| g.status(id).parsed())
        .map(|id| PathInfo {
            id,
            bytes: nar(snap, id).map_or(0, |o| o.size()),
        })
        .collect()
}

/// Path `id`'s NAR object in the listing, if listed.
fn nar<'a>(snap: &Snapshot<'a>, id: u32) -> Option<crate::listing::ObjectRef<'a>> {
    snap.graph
        .nar_object(id)
        .and_then(|o| snap.index.objects.get(o as usize))
}

/// Bytes by name family: the largest [`TOP`] − 1, then one row with the rest; and how many
/// families there are.
fn family_rows(snap: &Snapshot<'_>, paths: &[PathInfo]) -> (Vec<FamilyRow>, u64) {
    let mut families: HashMap<String, (u64, u64)> = HashMap::new();
    for p in paths {
        let f = families
            .entry(name_family(snap.store_path(p.id).name))
            .or_default();
        f.0 += 1;
        f.1 += p.bytes;
    }
    let family_count = families.len() as u64;
    let mut fam: Vec<FamilyRow> = families
        .into_iter()
        .map(|(family, (paths, bytes))| FamilyRow {
            family,
            paths,
            bytes,
        })
        .collect();
    fam.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.family.cmp(&b.family)));
    if fam.len() > TOP {
        let rest = fam.split_off(TOP - 1);
        fam.push(FamilyRow {
            family: format!("({} other families)", rest.len()),
            paths: rest.iter().map(|f| f.paths).sum(),
            bytes: rest.iter().map(|f| f.bytes).sum(),
        });
    }
    (fam, family_count)
}

/// The [`TOP`] largest store paths, with the root sets (bits of `membership`, by graph
/// id) whose closure holds each.
fn largest_paths(
    snap: &Snapshot<'_>,
    paths: &[PathInfo],
    membership: &[u64],
    set_labels: &[String],
) -> Vec<PathRow> {
    // Largest first, then by position; only the first TOP are sorted.
    let by_size = |a: &u32, b: &u32| {
        let (x, y) = (&paths[*a as usize], &paths[*b as usize]);
        y.bytes.cmp(&x.bytes).then(a.cmp(b))
    };
    let mut order: Vec<u32> = (0..paths.len() as u32).collect();
    if order.len() > TOP {
        order.select_nth_unstable_by(TOP - 1, by_size);
        order.truncate(TOP);
    }
    order.sort_by(by_size);
    order
        .iter()
        .map(|&i| {
            let p = &paths[i as usize];
            let sp = snap.store_path(p.id);
            let mask = membership.get(p.id as usize).copied().unwrap_or(0);
            PathRow {
                path: sp.base_name(),
                family: name_family(sp.name),
                bytes: p.bytes,
                nar_size: snap.graph.nar_size(p.id),
                storage_class: nar(snap, p.id)
                    .and_then(|o| o.listed_storage_class())
                    .map(str::to_string),
                root_sets: set_labels
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k < 64 && mask & (1 << k) != 0)
                    .map(|(_, l)| l.clone())
                    .collect(),
            }
        })
        .collect()
}

/// Root sets: one closure per root source; a bit per set and path (up to 64 sets, by
/// graph id, returned with the sets' labels for the largest-paths table), a count per
/// path for uniqueness.
fn root_sets(snap: &Snapshot<'_>, policy: &Policy) -> (RootSets, Vec<u64>, Vec<String>) {
    let graph = snap.graph;
    let bytes_of: Vec<u64> = (0..graph.len() as u32)
        .map(|id| nar(snap, id).map_or(0, |o| o.size()))
        .collect();
    let mut count = vec![0u16; graph.len()];
    let mut membership = vec![0u64; graph.len()];
    let mut sets = Vec::new();
    let mut labels = Vec::new();
    // The closures of the sets past the 64 bits of `membership` (the others are read back
    // from it: no set's closure is held).
    let mut beyond: Vec<(usize, Vec<u32>)> = Vec::new();
    for (gi, (label, roots)) in root_groups(policy).iter().enumerate() {
        let (found, ids) = root_set_closure(graph, roots);
        for &i in &ids {
            count[i as usize] = count[i as usize].saturating_add(1);
            if gi < 64 {
                membership[i as usize] |= 1 << gi;
            }
        }
        sets.push(RootSetRow {
            label: label.clone(),
            roots: roots.len() as u64,
            missing: (roots.len() - found) as u64,
            closure_paths: ids.len() as u64,
            closure_bytes: ids.iter().map(|&i| bytes_of[i as usize]).sum(),
            unique_paths: 0,
            unique_bytes: 0,
            shared_bytes: 0,
        });
        labels.push(label.clone());
        if gi >= 64 {
            beyond.push((gi, ids));
        }
    }
    // Unique to one set or shared, per set.
    let tally = |s: &mut RootSetRow, i: usize| {
        if count[i] == 1 {
            s.unique_paths += 1;
            s.unique_bytes += bytes_of[i];
        } else {
            s.shared_bytes += bytes_of[i];
        }
    };
    for (i, &mask) in membership.iter().enumerate() {
        let mut m = mask;
        while m != 0 {
            tally(&mut sets[m.trailing_zeros() as usize], i);
            m &= m - 1;
        }
    }
    for (gi, ids) in &beyond {
        ids.iter().for_each(|&i| tally(&mut sets[*gi], i as usize));
    }
    let mut union = CountBytes::default();
    let mut outside = CountBytes::default();
    for (i, c) in count.iter().enumerate() {
        let t = if *c > 0 { &mut union } else { &mut outside };
        t.count += 1;
        t.bytes += bytes_of[i];
    }
    let overlap = overlap(sets.len(), &membership, &bytes_of);
    let rs = RootSets {
        sets,
        union,
        outside,
        overlap,
        closure_holes: graph.missing_refs(),
    };
    (rs, membership, labels)
}

/// `m[a][b]`: bytes in both set a and set b (only with at most 24 sets).
fn overlap(n: usize, membership: &[u64], bytes_of: &[u64]) -> Option<Vec<Vec<u64>>> {
    (n <= 24).then(|| {
        let mut m = vec![vec![0u64; n]; n];
        for (i, mask) in membership.iter().enumerate() {
            if *mask == 0 {
                continue;
            }
            for (a, row) in m.iter_mut().enumerate() {
                if mask & (1 << a) == 0 {
                    continue;
                }
                for (b, cell) in row.iter_mut().enumerate() {
                    if mask & (1 << b) != 0 {
                        *cell += bytes_of[i];
                    }
                }
            }
        }
        m
    })
}

/// Break-even object size and payback months per archive class.
fn break_even(index: &Index, pricing: &Pricing) -> BreakEven {
    let payback = pricing.model.payback_months;
    let sizes: Vec<u64> = vec![64 << 10, 128 << 10, 256 << 10, 1 << 20, 10 << 20, 100 << 20];
    let nar_sizes: Vec<u64> = index
        .objects
        .iter()
        .filter(|o| o.category() == Category::Nar)
        .map(|o| o.size())
        .collect();
    let nars = CountBytes {
        count: nar_sizes.len() as u64,
        bytes: nar_sizes.iter().sum(),
    };
    let mut not_cheaper = Vec::new();
    let classes = cost::STORAGE_CLASSES
        .iter()
        .filter_map(|c| pricing.class(c).map(|cp| (*c, cp)))
        .chain(
            pricing
                .classes
                .iter()
                .filter(|(k, _)| !cost::STORAGE_CLASSES.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v)),
        )
        .filter(|(_, cp)| cp.transition_in_per_1000.is_some())
        .filter(|(c, cp)| {
            let cheaper = cp.first_rate() < pricing.standard_rate();
            if !cheaper {
                not_cheaper.push(c.to_string());
            }
            cheaper
        })
        .map(|(c, _)| {
            let be = cost::break_even_size(pricing, c, payback);
            let above = be.map_or(CountBytes::default(), |b| {
                let mut cb = CountBytes::default();
                for s in nar_sizes.iter().filter(|s| **s >= b) {
                    cb.count += 1;
                    cb.bytes += s;
                }
                cb
            });
            BreakEvenRow {
                class: c.to_string(),
                break_even_size: be,
                payback_months: sizes
                    .iter()
                    .map(|s| cost::payback_months(pricing, c, *s))
                    .collect(),
                nars_above: above,
            }
        })
        .collect();
    BreakEven {
        payback_months: payback,
        sizes,
        classes,
        nars,
        not_cheaper,
    }
}

fn plan_reports(
    index: &Index,
    plans: &[(String, Plan)],
    pricing: &Pricing,
    now: i64,
) -> Vec<PlanReport> {
    plans
        .iter()
        .map(|(name, p)| {
            let h = &p.header;
            PlanReport {
                name: name.clone(),
                checksum: h.checksum.clone(),
                created_at: h.created_at,
                policy_file: h.policy_file.clone(),
                index_generation: h.index_generation,
                stale: h.index_generation != index.meta.generation || h.cache != index.meta.cache,
                archive_storage_class: h.archive_storage_class.clone(),
                roots: h.roots.clone(),
                summary: h.summary.clone(),
                cost: cost::price_plan(p, pricing, now),
            }
        })
        .collect()
}

/// Assumptions and caveats, for the reader.
fn notes(
    index: &Index,
    pricing: &Pricing,
    bill: &Bill,
    growth: &Growth,
    totals: &Totals,
) -> Vec<String> {
    let mut notes = vec![
        format!(
            "Prices: {} ({}), {}. Storage only: requests for reads, restores and egress depend on traffic the index does not see.",
            pricing.name, pricing.currency, pricing.as_of
        ),
        "GB = 2^30 bytes; sizes are shown in KiB/MiB/GiB (powers of 1024).".into(),
        "Growth comes from the last-modified dates of the objects present now: objects deleted since are not seen, an overwritten object counts in the month of its last write.".into(),
        "Intelligent-Tiering objects are billed at the Frequent Access rate (a listing does not say which tier holds them): an upper bound.".into(),
        "Name families strip the version (Nix's rule: it starts at the first '-' followed by a non-letter); *-debug outputs, ISO/disk images and sources are grouped on their own. Path bytes are the sizes of the NAR objects the narinfos point to.".into(),
    ];
    notes.extend(versioning_note(&index.meta));
    if !bill.unpriced_classes.is_empty() {
        notes.push(format!(
            "Storage classes not in the pricing table, billed as STANDARD: {}.",
            bill.unpriced_classes.join(", ")
        ));
    }
    if growth.undated.count > 0 {
        notes.push(format!(
            "{} {} no last-modified date; counted from the first month of the cumulative size.",
            growth.undated.count,
            if growth.undated.count == 1 {
                "object has"
            } else {
                "objects have"
            }
        ));
    }
    let unparsed = totals.narinfos.saturating_sub(totals.store_paths);
    if unparsed > 0 {
        notes.push(format!(
            "{unparsed} narinfos could not be read or parsed: their paths are not in the composition tables (run `narward audit`)."
        ));
    }
    notes
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Write `report.html`, `report.json` and `report.md` into `out` (created if needed;
/// existing report files are replaced).
///
/// # Errors
/// The directory cannot be created or a file cannot be written.
pub fn write(data: &ReportData, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&out.join("report.html"), html::render(data).as_bytes())?;
    write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(data)?.as_bytes(),
    )?;
    write_atomic(&out.join("report.md"), markdown::render(data).as_bytes())?;
    Ok(())
}

/// The decisions of a plan summary as (decision, objects, bytes).
pub(crate) fn decision_totals(s: &Summary) -> Vec<(Decision, CountBytes)> {
    Decision::ALL
        .iter()
        .map(|d| {
            let cb = s.objects.get(d).map_or(CountBytes::default(), |m| {
                m.values().fold(CountBytes::default(), |a, b| CountBytes {
                    count: a.count + b.count,
                    bytes: a.bytes + b.bytes,
                })
            });
            (*d, cb)
        })
        .collect()
}

#[cfg(test)]
mod tests;
