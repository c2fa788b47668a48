//! Unit tests of the report: name families, reconciliation with the index, and a synthetic
//! cache of a few thousand paths over 24 months rendered end to end.
//!
//! Set `NARWARD_REPORT_SAMPLE=DIR` to keep the synthetic report in DIR (to look at it).

use super::*;
use crate::index::{IndexMeta, UpdateStats};
use crate::model::{FetchedRecord, ObjectRecord};
use crate::plan;
use narward_formats::hash::Sha256;
use narward_formats::store_path::StorePathHash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

#[test]
fn name_families() {
    let cases = [
        ("linux-6.1.55", "linux"),
        ("linux-6.1.55-modules", "linux"),
        ("firefox-unwrapped-118.0-debug", "*-debug"),
        (
            "nixos-minimal-23.05.123.abc-x86_64-linux.iso",
            "ISO/disk images",
        ),
        (
            "nixos-sd-image-23.05-aarch64-linux.img.zst",
            "ISO/disk images",
        ),
        ("nixos-amazon-image-23.05.1-x86_64-linux", "ISO/disk images"),
        ("source", "sources"),
        ("hello-2.12.1.tar.gz", "sources"),
        ("openssl-3.0.9-src", "sources"),
        ("fix-build.patch", "sources"),
        ("python3.11-requests-2.31.0", "python3.11-requests"),
        ("glibc-2.38-27-dev", "glibc"),
        ("0ad-0.0.26", "0ad"),
        ("hello", "hello"),
        ("app-two.conf", "app-two.conf"),
        ("libbar-0.5-dev", "libbar"),
        ("nixos-system-host-23.05.20230801.abc", "nixos-system-host"),
    ];
    for (name, want) in cases {
        assert_eq!(name_family(name), want, "{name}");
    }
}

const DAY: i64 = 86_400;
/// 2026-08-15.
const NOW: i64 = 1_786_752_000;

fn store_hash(i: usize) -> StorePathHash {
    let d = Sha256::digest(format!("path {i}").as_bytes());
    let mut b = [0u8; 20];
    b.copy_from_slice(&d.0[..20]);
    StorePathHash(b)
}

fn file_hash(i: usize) -> String {
    Sha256::digest(format!("file {i}").as_bytes()).to_nix32()
}

const NAMES: [&str; 14] = [
    "linux-6.1.{v}",
    "linux-6.1.{v}-modules",
    "firefox-unwrapped-118.{v}-debug",
    "firefox-118.{v}",
    "nixos-minimal-23.05.{v}.abc-x86_64-linux.iso",
    "source",
    "python3.11-requests-2.31.{v}",
    "glibc-2.38-{v}",
    "gcc-12.3.{v}",
    "hello-2.{v}",
    "openssl-3.0.{v}",
    "rustc-1.7{v}.0",
    "texlive-combined-full-2023.{v}",
    "nixos-system-host-23.05.{v}",
];

struct Synthetic {
    index: Index,
    policy_dir: tempfile::TempDir,
}

/// `n` store paths uploaded over 24 months at an exponentially growing rate, with
/// log-normal NAR sizes, references to earlier paths, `.ls`, logs and a few archived NARs.
fn synthetic(n: usize) -> Synthetic {
    let mut rng = StdRng::seed_from_u64(7);
    let sizes = LogNormal::new(11.5, 1.8).unwrap();
    // Month weights e^(0.08 m), m = 0..24 (the last month is the current, partial one).
    let w: Vec<f64> = (0..24).map(|m| (0.08 * m as f64).exp()).collect();
    let wsum: f64 = w.iter().sum();
    let start = NOW - 23 * 30 * DAY - 14 * DAY;
    let mut objects = Vec::new();
    let mut narinfos = Vec::new();
    let mut released: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..n {
        let h = store_hash(i);
        let tmpl = NAMES[i % NAMES.len()];
        let name = tmpl.replace("{v}", &(i / NAMES.len()).to_string());
        // Upload month by weight.
        let mut x = rng.r#gen::<f64>() * wsum;
        let mut m = 0;
        while m < 23 && x > w[m] {
            x -= w[m];
            m += 1;
        }
        let t = (start + m as i64 * 30 * DAY + rng.gen_range(0..30 * DAY)).min(NOW - DAY);
        let mut size = (sizes.sample(&mut rng) as u64).clamp(200, 8 << 30);
        if name.ends_with(".iso") && (i / NAMES.len()).is_multiple_of(8) {
            size = size.max(700 << 20);
        }
        let refs: Vec<String> = (0..3)
            .filter(|_| i > 10)
            .map(|_| rng.gen_range(0..i))
            .map(|r| {
                let rn = NAMES[r % NAMES.len()].replace("{v}", &(r / NAMES.len()).to_string());
                format!("{}-{rn}", store_hash(r))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let nar = format!("nar/{}.nar.xz", file_hash(i));
        let text = format!(
            "StorePath: /nix/store/{h}-{name}\nURL: {nar}\nCompression: xz\nFileHash: sha256:{}\nFileSize: {size}\nNarHash: sha256:{}\nNarSize: {}\nReferences: {}\n",
            file_hash(i),
            file_hash(i + 1_000_000),
            size * 3,
            refs.join(" ")
        );
        let class = match i % 40 {
            0 => Some("DEEP_ARCHIVE".to_string()),
            1 => Some("STANDARD_IA".to_string()),
            2 => Some("INTELLIGENT_TIERING".to_string()),
            _ => None,
        };
        objects.push(ObjectRecord {
            link_target: None,
            key: format!("{h}.narinfo"),
            size: text.len() as u64,
            etag: None,
            last_modified: Some(t),
            storage_class: None,
        });
        objects.push(ObjectRecord {
            link_target: None,
            key: nar,
            size,
            etag: None,
            last_modified: Some(t),
            storage_class: class,
        });
        if i.is_multiple_of(3) {
            objects.push(ObjectRecord {
                link_target: None,
                key: format!("{h}.ls"),
                size: 200 + size / 5000,
                etag: None,
                last_modified: Some(t),
                storage_class: None,
            });
        }
        if i.is_multiple_of(5) {
            objects.push(ObjectRecord {
                link_target: None,
                key: format!("log/{}-{name}.drv", store_hash(i + 9_000_000)),
                size: 5_000 + size / 1000,
                etag: None,
                last_modified: Some(t + 60),
                storage_class: None,
            });
        }
        if i.is_multiple_of(11) {
            objects.push(ObjectRecord {
                link_target: None,
                key: format!("debuginfo/{:040x}", i),
                size: 120,
                etag: None,
                last_modified: Some(t),
                storage_class: None,
            });
        }
        // Three "releases" of recent system closures, overlapping.
        if name.starts_with("nixos-system") {
            let age_months = 23 - m;
            if age_months < 12 {
                released[0].push(format!("/nix/store/{h}-{name}"));
            }
            if (6..18).contains(&age_months) {
                released[1].push(format!("/nix/store/{h}-{name}"));
            }
            if age_months < 3 {
                released[2].push(format!("/nix/store/{h}-{name}"));
            }
        }
        narinfos.push(FetchedRecord {
            key: format!("{h}.narinfo"),
            etag: None,
            size: text.len() as u64,
            text: text.into_bytes(),
            fetch_error: None,
            earlier: Vec::new(),
        });
    }
    objects.push(ObjectRecord {
        link_target: None,
        key: "nix-cache-info".into(),
        size: 21,
        etag: None,
        last_modified: None,
        storage_class: None,
    });
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    narinfos.sort_by(|a, b| a.key.cmp(&b.key));
    let dir = tempfile::tempdir().unwrap();
    for (k, r) in released.iter().enumerate() {
        std::fs::write(
            dir.path()
                .join(format!("release-{}.txt", ["24.05", "23.11", "24.11"][k])),
            r.join("\n"),
        )
        .unwrap();
    }
    let objects = crate::listing::Listing::from_records(objects).unwrap();
    let mut index = Index::for_tests(objects, narinfos);
    index.meta.format_version = 1;
    index.meta.cache = "s3://synthetic-cache".into();
    index.meta.cache_url = "s3://synthetic-cache?region=us-east-1".into();
    index.meta.generation = 3;
    index.meta.updated_at = NOW - 3600;
    Synthetic {
        index,
        policy_dir: dir,
    }
}

fn policy(dir: &Path, unreachable: &str, min_size: &str) -> Policy {
    let text = format!(
        "[roots]\nfiles = [\"release-23.11.txt\", \"release-24.05.txt\", \"release-24.11.txt\"]\n[keep]\nmin_age_days = 14\nnames = [\"source\"]\n[actions]\nunreachable = \"{unreachable}\"\narchive_min_size = \"{min_size}\"\n"
    );
    Policy::from_str(&text, dir, "policy.toml").unwrap()
}

fn assert_reconciles(index: &Index, d: &ReportData) {
    let objects = index.objects.len() as u64;
    let bytes: u64 = index.objects.iter().map(|o| o.size()).sum();
    assert_eq!(d.totals.objects, objects);
    assert_eq!(d.totals.bytes, bytes);
    assert_eq!(d.bill.objects, objects);
    assert_eq!(d.bill.bytes, bytes);
    let by_class: (u64, u64) = d
        .bill
        .by_class
        .iter()
        .fold((0, 0), |a, c| (a.0 + c.objects, a.1 + c.bytes));
    assert_eq!(by_class, (objects, bytes));
    let by_cat: (u64, u64) = d
        .bill
        .by_category
        .iter()
        .fold((0, 0), |a, c| (a.0 + c.objects, a.1 + c.bytes));
    assert_eq!(by_cat, (objects, bytes));
    let usd: f64 = d.bill.by_category.iter().map(|c| c.monthly_usd).sum();
    assert!((usd - d.bill.monthly_usd).abs() < 1e-9 * d.bill.monthly_usd.max(1.0));
    let g = &d.growth;
    let months: (u64, u64) = g
        .months
        .iter()
        .fold((0, 0), |a, m| (a.0 + m.objects, a.1 + m.bytes));
    assert_eq!(
        (months.0 + g.undated.count, months.1 + g.undated.bytes),
        (objects, bytes)
    );
    if let Some(last) = g.months.last() {
        assert_eq!(
            (last.cumulative_objects, last.cumulative_bytes),
            (objects, bytes)
        );
    }
    let hist: (u64, u64) = d
        .composition
        .size_histogram
        .iter()
        .fold((0, 0), |a, b| (a.0 + b.objects, a.1 + b.bytes));
    assert_eq!(hist, (objects, bytes));
    let fam: (u64, u64) = d
        .composition
        .families
        .iter()
        .fold((0, 0), |a, f| (a.0 + f.paths, a.1 + f.bytes));
    assert_eq!(fam, (d.totals.store_paths, d.totals.path_bytes));
    if let Some(r) = &d.root_sets {
        assert_eq!(r.union.count + r.outside.count, d.totals.store_paths);
        assert_eq!(r.union.bytes + r.outside.bytes, d.totals.path_bytes);
        for s in &r.sets {
            assert_eq!(s.unique_bytes + s.shared_bytes, s.closure_bytes);
        }
    }
    for p in &d.plans {
        assert!((p.cost.before.monthly_usd - d.bill.monthly_usd).abs() < 1e-9);
        assert_eq!(p.cost.before.bytes, bytes);
    }
}

#[test]
fn synthetic_cache_report_reconciles_and_renders() {
    let s = synthetic(3000);
    let pricing = Pricing::default_aws();
    let archive = policy(s.policy_dir.path(), "archive", "64KiB");
    let delete = policy(s.policy_dir.path(), "delete", "256KiB");
    let p1 = plan::compute(&s.index, &archive, "archive.toml", NOW).unwrap();
    let p2 = plan::compute(&s.index, &delete, "delete.toml", NOW).unwrap();
    let plans = vec![("archive".to_string(), p1), ("delete".to_string(), p2)];
    let d = build_index(&s.index, Some(&archive), &plans, &pricing, NOW).unwrap();
    assert_reconciles(&s.index, &d);

    // 24 months of history, the last one partial; the fit sees the exponential growth.
    assert_eq!(d.growth.months.len(), 24);
    assert!(d.growth.months.last().unwrap().partial);
    let fit = d.growth.fit.as_ref().expect("a fit");
    assert_eq!(d.growth.projection.len(), 24);
    assert!(fit.b > 0.0 && fit.r2 > 0.0 && fit.r2 <= 1.0, "{fit:?}");
    assert!(d.growth.method.contains("R²"));
    let last = d.growth.months.last().unwrap().cumulative_bytes;
    assert!(d.growth.projection[23].cumulative_bytes > last);

    // Composition.
    let fams: Vec<&str> = d
        .composition
        .families
        .iter()
        .map(|f| f.family.as_str())
        .collect();
    assert!(fams.contains(&"ISO/disk images"), "{fams:?}");
    assert!(fams.contains(&"*-debug"), "{fams:?}");
    assert!(fams.contains(&"linux"), "{fams:?}");
    assert_eq!(d.composition.largest_paths.len(), TOP);
    assert!(d.composition.largest_paths[0].bytes >= d.composition.largest_paths[1].bytes);

    // Root sets: three releases that overlap.
    let r = d.root_sets.as_ref().unwrap();
    assert_eq!(r.sets.len(), 3);
    assert_eq!(r.sets[0].label, "release-23.11.txt");
    assert!(r.sets.iter().any(|s| s.shared_bytes > 0));
    let m = r.overlap.as_ref().unwrap();
    assert_eq!(m[0][0], r.sets[0].closure_bytes);
    assert_eq!(m[0][1], m[1][0]);

    // Plans: both save; the archive plan with a 64 KiB minimum archives NARs below the
    // break-even size, and says so.
    assert!(d.plans.iter().all(|p| p.cost.monthly_saving_usd > 0.0));
    let a = &d.plans[0].cost;
    assert!(a.targets[0].not_worth_archiving.count > 0);
    assert!(d.plans[1].cost.targets.is_empty());
    let gda = d
        .break_even
        .classes
        .iter()
        .find(|c| c.class == "DEEP_ARCHIVE")
        .unwrap();
    assert!((gda.break_even_size.unwrap() as f64 / 1024.0 - 208.0).abs() <= 1.0);

    // Rendered.
    let keep = std::env::var_os("NARWARD_REPORT_SAMPLE").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let out = keep.clone().unwrap_or_else(|| tmp.path().join("report"));
    write(&d, &out).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for id in [
        "chart-growth-bytes",
        "chart-cumulative",
        "chart-size-bytes",
        "chart-families",
        "chart-root-sets",
        "chart-plans",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    // Self-contained: nothing fetched, no script.
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(
        !html.contains("NaN") && !html.contains("inf\""),
        "bad numbers in the SVG"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["totals"]["objects"], d.totals.objects);
    assert_eq!(json["totals"]["bytes"], d.totals.bytes);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Plans") && md.contains("`archive`"), "{md}");
}

#[test]
fn a_report_without_policy_plans_or_history_still_renders() {
    let s = synthetic(40);
    // Everything in one month: no projection, and it says why.
    let mut index = s.index.clone();
    index
        .objects
        .edit(|objects| {
            for o in objects {
                o.last_modified = Some(NOW - DAY);
            }
        })
        .unwrap();
    let d = build_index(&index, None, &[], &Pricing::default_aws(), NOW).unwrap();
    assert_reconciles(&index, &d);
    assert!(d.growth.fit.is_none());
    assert!(
        d.growth.method.contains("at least 3"),
        "{}",
        d.growth.method
    );
    assert!(d.root_sets.is_none());
    let tmp = tempfile::tempdir().unwrap();
    write(&d, tmp.path()).unwrap();
    let html = std::fs::read_to_string(tmp.path().join("report.html")).unwrap();
    assert!(!html.contains("id=\"roots\""));
    assert!(!html.contains("NaN"));
}

#[test]
fn an_empty_index_renders() {
    let index = Index {
        meta: IndexMeta {
            format_version: 1,
            cache: "file:///empty".into(),
            cache_url: "file:///empty".into(),
            generation: 1,
            updated_at: NOW,
            source: "test".into(),
            objects: 0,
            narinfos: 0,
            unparseable: 0,
            last_update: UpdateStats::default(),
            files: Default::default(),
            versioning: None,
            checksum: String::new(),
        },
        objects: crate::listing::Listing::new(),
        narinfos: Vec::new(),
        debuginfo: Vec::new(),
    };
    let d = build_index(&index, None, &[], &Pricing::default_aws(), NOW).unwrap();
    assert_eq!(d.totals, Totals::default());
    let tmp = tempfile::tempdir().unwrap();
    write(&d, tmp.path()).unwrap();
    assert!(
        !std::fs::read_to_string(tmp.path().join("report.html"))
            .unwrap()
            .contains("NaN")
    );
}

#[test]
fn the_report_bill_counts_noncurrent_versions_or_says_it_is_a_lower_bound() {
    use crate::model::{BucketVersioning, NoncurrentVersions, VersioningState};
    let s = synthetic(40);
    let mut index = s.index.clone();
    let p = Pricing::default_aws();
    let plain = build_index(&index, None, &[], &p, NOW).unwrap();
    let mut n = NoncurrentVersions::default();
    n.add(&format!("nar/{}.nar.xz", "0".repeat(52)), 1 << 30, None);
    n.add(&format!("nar/{}.nar.xz", "1".repeat(52)), 1 << 20, None);
    index.meta.versioning = Some(BucketVersioning {
        state: VersioningState::Enabled,
        source: "test".into(),
        noncurrent: Some(n),
    });
    let d = build_index(&index, None, &[], &p, NOW).unwrap();
    assert_eq!(d.bill.objects, plain.bill.objects + 2);
    assert!(d.bill.monthly_usd > plain.bill.monthly_usd + 0.02);
    let notes = d.notes.join("\n");
    assert!(notes.contains("includes 2 noncurrent versions"), "{notes}");
    // Versions not listed: said to be a lower bound.
    index.meta.versioning.as_mut().unwrap().noncurrent = None;
    let notes = build_index(&index, None, &[], &p, NOW)
        .unwrap()
        .notes
        .join("\n");
    assert!(notes.contains("lower bound"), "{notes}");
    // A bucket never versioned: nothing to say.
    index.meta.versioning = Some(BucketVersioning {
        state: VersioningState::Unversioned,
        source: "test".into(),
        noncurrent: Some(NoncurrentVersions::default()),
    });
    let notes = build_index(&index, None, &[], &p, NOW)
        .unwrap()
        .notes
        .join("\n");
    assert!(!notes.contains("versioning"), "{notes}");
}

/// Per set, (unique paths, unique bytes, shared bytes) counted the long way: every set's
/// closure held, and a path unique when no other set's closure holds it.
fn sets_the_long_way(snap: &Snapshot<'_>, policy: &Policy) -> Vec<(u64, u64, u64)> {
    let g = snap.graph;
    let bytes = |i: u32| nar(snap, i).map_or(0, |o| o.size());
    let closures: Vec<Vec<u32>> = root_groups(policy)
        .iter()
        .map(|(_, roots)| root_set_closure(g, roots).1)
        .collect();
    let in_sets = |i: u32| closures.iter().filter(|c| c.contains(&i)).count();
    closures
        .iter()
        .map(|c| {
            let (mut up, mut ub, mut sb) = (0, 0, 0);
            for &i in c {
                if in_sets(i) == 1 {
                    up += 1;
                    ub += bytes(i);
                } else {
                    sb += bytes(i);
                }
            }
            (up, ub, sb)
        })
        .collect()
}

#[test]
fn root_sets_past_the_64_bits_count_unique_and_shared_bytes_as_their_closures_say() {
    let s = synthetic(400);
    let paths: Vec<String> = s
        .index
        .narinfos
        .iter()
        .filter_map(|r| {
            let t = std::str::from_utf8(&r.text).ok()?;
            Some(t.lines().next()?.strip_prefix("StorePath: ")?.to_string())
        })
        .collect();
    // 70 root files: set k roots paths k and k + 150 (overlapping closures).
    let mut files = Vec::new();
    for k in 0..70 {
        let f = format!("set-{k:02}.txt");
        let text = format!("{}\n{}\n", paths[k * 5], paths[(k * 5 + 150) % paths.len()]);
        std::fs::write(s.policy_dir.path().join(&f), text).unwrap();
        files.push(format!("\"{f}\""));
    }
    let text = format!("[roots]\nfiles = [{}]\n", files.join(", "));
    let policy = Policy::from_str(&text, s.policy_dir.path(), "policy.toml").unwrap();
    crate::cache_graph::with_snapshot(&s.index, |snap| {
        let (rs, _, labels) = root_sets(snap, &policy);
        assert_eq!(labels.len(), 70);
        let got: Vec<(u64, u64, u64)> = rs
            .sets
            .iter()
            .map(|r| (r.unique_paths, r.unique_bytes, r.shared_bytes))
            .collect();
        assert_eq!(got, sets_the_long_way(snap, &policy));
        assert!(got.iter().any(|g| g.0 > 0) && got.iter().any(|g| g.2 > 0));
        assert!(got[64..].iter().any(|g| g.1 + g.2 > 0));
    })
    .unwrap();
}
