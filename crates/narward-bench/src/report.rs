//! `BENCHMARKS.md` from the results: targets, data, results per comparison, growth
//! curve, extrapolation to cache.nixos.org, and where narward's plan spends its time
//! and memory. Every number in the file comes from `results.json`.

use crate::run::{Results, SizeResult, TaskResult, size_label};
use std::fmt::Write as _;
use std::path::Path;

/// cache.nixos.org: narinfos and objects.
const NIXOS_PATHS: f64 = 275e6;
const NIXOS_OBJECTS: f64 = 1e9;
const GIB: f64 = (1u64 << 30) as f64;

fn gib(b: f64) -> String {
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

fn secs(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

fn n_(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn task<'a>(s: &'a SizeResult, id: &str) -> Option<&'a TaskResult> {
    s.tasks.iter().find(|t| t.id == id)
}

fn ok_wall(t: Option<&TaskResult>) -> Option<f64> {
    t.and_then(|t| t.wall.as_ref()).map(|w| w.median)
}

fn ok_rss(t: Option<&TaskResult>) -> Option<f64> {
    t.and_then(|t| t.rss.as_ref()).map(|w| w.median)
}

/// Labels that changed after results were recorded (the report uses these, so `render`
/// fixes older results too).
pub fn label(id: &str) -> Option<&'static str> {
    Some(match id {
        "narward-graph" => {
            "narward library: the graph half of `narward plan` alone (map + verify the index's columns → `CacheGraph`, closure, keep/archive counts; no plan file)"
        }
        "nix-closure" => "nix path-info -r --store file://… <every distinct root> (closure only)",
        _ => return None,
    })
}

fn label_of(t: &TaskResult) -> &str {
    label(&t.id).unwrap_or(&t.label)
}

fn status_text(t: &TaskResult) -> String {
    if let Some(s) = &t.skipped {
        s.clone()
    } else if let Some(f) = &t.failed {
        format!("**failed**: {f}")
    } else {
        t.result.clone().unwrap_or_default()
    }
}

fn ratio_text(t: &TaskResult) -> String {
    match t.ratio_to_narward {
        Some(_) if t.baseline => "1 (baseline)".into(),
        Some(r) if r >= 1.0 => format!("{r:.1}× slower"),
        Some(r) => format!("{:.1}× faster", 1.0 / r),
        None => "–".into(),
    }
}

fn largest_with<'a>(r: &'a Results, id: &str) -> Option<(&'a SizeResult, &'a TaskResult)> {
    r.sizes
        .iter()
        .rev()
        .find_map(|s| task(s, id).filter(|t| t.wall.is_some()).map(|t| (s, t)))
}

/// The size a target is judged at: `want` paths when `ids` all finished there, else the
/// largest size where they all did.
fn judged_at<'a>(r: &'a Results, want: usize, ids: &[&str]) -> Option<&'a SizeResult> {
    let done = |s: &&SizeResult| ids.iter().all(|id| ok_wall(task(s, id)).is_some());
    r.sizes
        .iter()
        .find(|s| s.paths == want)
        .filter(done)
        .or_else(|| r.sizes.iter().rev().find(done))
}

/// "at 10 M", or "at 1 M (not at 10 M: …)" when the target's size is not the one measured.
fn at_text(s: &SizeResult, want: usize, r: &Results, id: &str) -> String {
    if s.paths == want {
        return format!("at {}", size_label(want));
    }
    let why = r
        .sizes
        .iter()
        .find(|x| x.paths == want)
        .and_then(|x| task(x, id))
        .map_or("not run".to_string(), status_text);
    format!(
        "at {} (not at {}: {})",
        size_label(s.paths),
        size_label(want),
        why.replace('|', "\\|")
    )
}

fn verdict(x: f64, need: f64) -> String {
    if x >= need {
        format!("**met** ({x:.2}×)")
    } else {
        format!("**not met** ({x:.2}× where {need}× is required)")
    }
}

/// DuckDB's load + closure phases (seconds), as it timed them itself.
fn duckdb_load_closure(t: Option<&TaskResult>) -> Option<f64> {
    let p = &t?.output["phases"];
    Some(p["load"].as_f64()? + p["closure"].as_f64()?)
}

/// Closure ≥ 10× and whole plan ≥ 3× faster than DuckDB, at 10 M.
fn speed_targets(w: &mut String, r: &Results) {
    let ten_m = 10_000_000;
    match judged_at(r, ten_m, &["narward-graph", "duckdb-closure"]) {
        Some(s) => {
            let (nw, dd) = (task(s, "narward-graph"), task(s, "duckdb-closure"));
            let (a, b) = (ok_wall(nw).unwrap_or(0.0), ok_wall(dd).unwrap_or(0.0));
            let lc = duckdb_load_closure(dd);
            let x = lc.unwrap_or(b) / a.max(1e-9);
            let _ = writeln!(
                w,
                "| Closure {}: load the graph from the index + closure of all roots ≥ 10× faster than DuckDB's recursive CTE | narward library (process: map + verify columns, closure) {} vs DuckDB's load + closure steps {} (its whole process, with per-path decisions: {}) | {} |",
                at_text(s, ten_m, r, "narward-graph"),
                secs(a),
                lc.map_or("?".into(), secs),
                secs(b),
                verdict(x, 10.0)
            );
        }
        None => {
            let _ = writeln!(
                w,
                "| Closure at 10 M ≥ 10× faster than DuckDB | narward library and DuckDB never both finished | **not measured** |"
            );
        }
    }
    match judged_at(r, ten_m, &["narward-plan", "duckdb-closure"]) {
        Some(s) => {
            let (a, b) = (
                ok_wall(task(s, "narward-plan")).unwrap_or(0.0),
                ok_wall(task(s, "duckdb-closure")).unwrap_or(0.0),
            );
            let _ = writeln!(
                w,
                "| Whole `narward plan` {} (load, closure, every decision, plan + manifests written) ≥ 3× faster than DuckDB's CTE + per-path decisions | narward plan {} vs DuckDB {} | {} |",
                at_text(s, ten_m, r, "narward-plan"),
                secs(a),
                secs(b),
                verdict(b / a.max(1e-9), 3.0)
            );
        }
        None => {
            let _ = writeln!(
                w,
                "| Whole `narward plan` at 10 M ≥ 3× faster than DuckDB | narward plan and DuckDB never both finished | **not measured** |"
            );
        }
    }
}

/// Peak RSS of each whole process ≤ 128 B/path + 4 B/edge at 10 M, and 275 M's need.
fn process_memory_targets(w: &mut String, r: &Results) {
    for (id, what) in [
        ("narward-index-file", "index"),
        ("narward-plan", "plan"),
        ("narward-report", "report"),
        ("narward-audit", "audit"),
    ] {
        let Some(s) = judged_at(r, 10_000_000, &[id]) else {
            let _ = writeln!(
                w,
                "| Peak RSS of `narward {what}` ≤ 128 B/path + 4 B/edge at 10 M | never finished (or not run) | **not measured** |"
            );
            continue;
        };
        let (paths, edges) = (s.paths as f64, s.generated.edges as f64);
        let rss = ok_rss(task(s, id)).unwrap_or(0.0);
        let budget = 128.0 * paths + 4.0 * edges;
        let x = rss / budget.max(1.0);
        let _ = writeln!(
            w,
            "| Peak RSS of `narward {what}` ≤ 128 B/path + 4 B/edge at 10 M | {}: {} = {:.0} B/path + 4 B/edge ({:.0} B/path all in, {:.1} edges/path); budget {}; at 275 M paths ≈{} | **{}** ({x:.2}× the budget) |",
            at_text(s, 10_000_000, r, id),
            gib(rss),
            (rss - 4.0 * edges) / paths.max(1.0),
            rss / paths.max(1.0),
            edges / paths.max(1.0),
            gib(budget),
            gib(rss / paths.max(1.0) * NIXOS_PATHS),
            if rss <= budget { "met" } else { "not met" }
        );
    }
}

/// Incremental `index` with 1 % new or changed narinfos ≪ a tenth of a full run.
fn incremental_target(w: &mut String, r: &Results) {
    let Some(s) = judged_at(
        r,
        10_000_000,
        &["narward-index-incremental", "narward-index-file"],
    ) else {
        let _ = writeln!(
            w,
            "| Incremental `index` (1 % new or changed) well under a tenth of a full run at 10 M | not measured (it needs a `file://` cache: --file-cache-max) | **not measured** |"
        );
        return;
    };
    let inc = task(s, "narward-index-incremental");
    let (a, b) = (
        ok_wall(inc).unwrap_or(0.0),
        ok_wall(task(s, "narward-index-file")).unwrap_or(0.0),
    );
    let o = inc.map_or(&serde_json::Value::Null, |t| &t.output);
    let f = a / b.max(1e-9);
    // The fraction at every size measured: how it goes as the cache grows.
    let trend: Vec<String> = r
        .sizes
        .iter()
        .filter_map(|x| {
            let a = ok_wall(task(x, "narward-index-incremental"))?;
            let b = ok_wall(task(x, "narward-index-file"))?;
            Some(format!("{} {:.2}", size_label(x.paths), a / b.max(1e-9)))
        })
        .collect();
    let _ = writeln!(
        w,
        "| Incremental `index` with 1 % new or changed narinfos well under a tenth of a full run at 10 M | {}: {} ({} new + {} changed narinfos) vs full `index` {} = {:.1} % of it (fraction by size: {}) | **{}** |",
        at_text(s, 10_000_000, r, "narward-index-incremental"),
        secs(a),
        n_(o["new"].as_u64().unwrap_or(0)),
        n_(o["changed"].as_u64().unwrap_or(0)),
        secs(b),
        100.0 * f,
        trend.join(", "),
        if f < 0.1 {
            "met".to_string()
        } else {
            format!("not met ({f:.2} of a full run)")
        }
    );
}

/// Least-squares exponent k of time ∝ pathsᵏ over every point.
fn fitted_k(pts: &[(f64, f64)]) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let l: Vec<(f64, f64)> = pts.iter().map(|(x, y)| (x.ln(), y.ln())).collect();
    let n = l.len() as f64;
    let mx = l.iter().map(|p| p.0).sum::<f64>() / n;
    let my = l.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = l.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = l.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The (paths, median wall) points where `id` finished.
fn points(r: &Results, id: &str) -> Vec<(f64, f64)> {
    r.sizes
        .iter()
        .filter_map(|s| Some((s.paths as f64, ok_wall(task(s, id))?)))
        .collect()
}

/// The growth curve's sizes and linearity, and every check ✓.
fn curve_and_checks(w: &mut String, r: &Results) {
    let sizes: Vec<String> = r.sizes.iter().map(|s| size_label(s.paths)).collect();
    let has = |n: usize| r.sizes.iter().any(|s| s.paths == n);
    let big = r.sizes.iter().any(|s| s.paths >= 30_000_000);
    let covered = has(100_000) && has(1_000_000) && has(10_000_000) && big;
    let ks: Vec<String> = ["narward-plan", "narward-graph", "duckdb-closure"]
        .iter()
        .filter_map(|id| {
            let p = points(r, id);
            let k = fitted_k(&p)?;
            Some(format!(
                "{id} k = {k:.2} ({} to {})",
                size_label(p.first()?.0 as usize),
                size_label(p.last()?.0 as usize)
            ))
        })
        .collect();
    let _ = writeln!(
        w,
        "| Growth curve at 100 k, 1 M, 10 M and ≥ 30 M paths, cost linear | sizes measured: {}; time ∝ pathsᵏ fitted over every size: {} | **{}** |",
        sizes.join(", "),
        if ks.is_empty() {
            "–".into()
        } else {
            ks.join("; ")
        },
        if covered {
            "sizes met; linear where k ≈ 1 (see the growth curve)"
        } else {
            "not met (a size is missing)"
        }
    );
    let mut bad = Vec::new();
    let mut good = 0;
    for s in &r.sizes {
        for t in &s.tasks {
            match t.verified {
                Some(true) => good += 1,
                Some(false) => bad.push(format!("{} at {}", t.id, size_label(s.paths))),
                None => {}
            }
        }
    }
    let _ = writeln!(
        w,
        "| Correctness: every check ✓ (kept set = the generator's closure, counts) at every size | {good} checked rows ✓{} | **{}** |",
        if bad.is_empty() {
            String::new()
        } else {
            format!("; ✗: {}", bad.join(", "))
        },
        if bad.is_empty() && good > 0 {
            "met"
        } else {
            "not met"
        }
    );
}

/// A contender's cost at 275 M paths: linear from its largest measured point with the
/// marginal time and memory per path between its two largest finished sizes (fixed start-up
/// cost drops out), or its average per path when there is one size.
struct Extrapolated {
    /// "1 M→10 M" or "10 M".
    how: String,
    per_path_s: f64,
    per_path_bytes: f64,
    time: f64,
    memory: f64,
}

fn extrapolate(r: &Results, id: &str) -> Option<Extrapolated> {
    let (s, t) = largest_with(r, id)?;
    let (wl, rs) = (ok_wall(Some(t))?, ok_rss(Some(t))?);
    let prev = r
        .sizes
        .iter()
        .filter(|x| x.paths < s.paths)
        .rev()
        .find_map(|x| Some((x.paths, ok_wall(task(x, id))?, ok_rss(task(x, id))?)));
    let (pp_t, pp_m, how) = match prev {
        Some((pn, pw, pm)) if wl > pw && rs > pm => (
            (wl - pw) / (s.paths - pn) as f64,
            (rs - pm) / (s.paths - pn) as f64,
            format!("{}→{}", size_label(pn), size_label(s.paths)),
        ),
        _ => (
            wl / s.paths as f64,
            rs / s.paths as f64,
            size_label(s.paths),
        ),
    };
    Some(Extrapolated {
        how,
        per_path_s: pp_t,
        per_path_bytes: pp_m,
        time: wl + pp_t * (NIXOS_PATHS - s.paths as f64),
        memory: rs + pp_m * (NIXOS_PATHS - s.paths as f64),
    })
}

/// The extrapolation table's rows, then the index on disk and the resource that bounds
/// `narward plan` at 275 M paths.
fn extrapolation_rows(w: &mut String, r: &Results) {
    let ram = r.machine.mem_total_bytes as f64;
    for (id, what) in [
        ("narward-plan", "narward plan (CLI)"),
        ("narward-graph", "narward graph, streamed (library)"),
        ("duckdb-closure", "DuckDB closure + plan"),
        ("narward-index-file", "narward index (file://)"),
        ("narward-index-incremental", "narward index, 1 % changed"),
        ("narward-report", "narward report"),
        ("narward-audit", "narward audit"),
        ("nix-closure", "nix path-info -r"),
    ] {
        let Some(e) = extrapolate(r, id) else {
            continue;
        };
        let bound = if e.memory > ram {
            format!(
                "**memory**: {} needed vs {} here (fits ≈{:.0} M paths); 32 GB fits ≈{:.0} M",
                gib(e.memory),
                gib(ram),
                ram / e.per_path_bytes.max(1e-9) / 1e6,
                32e9 / e.per_path_bytes.max(1e-9) / 1e6
            )
        } else {
            format!(
                "time ({} on one machine); memory {} fits",
                secs(e.time),
                gib(e.memory)
            )
        };
        let _ = writeln!(
            w,
            "| {what} | {} | {:.2} µs, {:.0} B | {}, {} | {bound} |",
            e.how,
            e.per_path_s * 1e6,
            e.per_path_bytes,
            secs(e.time),
            gib(e.memory)
        );
    }
    let Some(s) = r.sizes.iter().rev().find(|s| s.generated.formats.index) else {
        return;
    };
    let state = s
        .generated
        .disk_bytes
        .iter()
        .find(|x| x.0 == "state")
        .map_or(0.0, |x| x.1 as f64);
    let disk275 = state / s.paths as f64 * NIXOS_PATHS;
    let disk = r.machine.disk_total_bytes as f64;
    let _ = writeln!(
        w,
        "\n**Index on disk:** {} at {} = {:.0} B/path, so ≈{} at 275 M paths ({} disk here).",
        gib(state),
        size_label(s.paths),
        state / s.paths as f64,
        gib(disk275),
        if disk > 0.0 {
            gib(disk)
        } else {
            "unknown".into()
        }
    );
    if let Some(e) = extrapolate(r, "narward-plan") {
        let bound = if e.memory > ram {
            format!(
                "**memory**: its peak RSS would be ≈{} against {} of RAM here",
                gib(e.memory),
                gib(ram)
            )
        } else if disk > 0.0 && disk275 > disk {
            format!(
                "**disk**: the index would take ≈{} against a {} disk",
                gib(disk275),
                gib(disk)
            )
        } else {
            format!(
                "**time**: ≈{} (memory ≈{} and the index ≈{} fit)",
                secs(e.time),
                gib(e.memory),
                gib(disk275)
            )
        };
        let _ = writeln!(
            w,
            "\n**Bounding resource for `narward plan` at 275 M paths on this machine:** {bound}.\n"
        );
    }
}

#[allow(clippy::too_many_lines)]
pub fn markdown(r: &Results, json_path: &Path) -> String {
    let mut m = String::new();
    let w = &mut m;
    let largest = r.sizes.last();
    let _ = writeln!(w, "# narward benchmarks\n");
    let _ = writeln!(
        w,
        "<!-- Generated by narward-bench from {}; re-run the command below instead of editing. -->\n",
        json_path
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned())
    );
    let _ = writeln!(
        w,
        "**Reproduce:** `cargo run --release -p narward-bench -- run` (this table: `{}`).",
        r.command
    );
    let _ = writeln!(
        w,
        "How the data is generated and exactly what each contender runs (including the DuckDB SQL): \
         [`bench/README.md`](bench/README.md). Raw numbers, every run: [`bench/results.json`](bench/results.json).\n"
    );
    let mc = &r.machine;
    let _ = writeln!(
        w,
        "**Machine:** {} × {} cores, {} RAM, Linux {}, no swap; {}; DuckDB {} ({}); {}. \
         narward at commit {}. Run started at unix time {} and took {}.\n",
        mc.cpu,
        mc.cores,
        gib(mc.mem_total_bytes as f64),
        mc.kernel,
        mc.rustc,
        mc.duckdb,
        mc.python,
        mc.nix,
        mc.narward_commit,
        r.started_unix,
        secs(r.total_s)
    );
    let _ = writeln!(
        w,
        "Every time is wall-clock time of a child process measured by the parent; memory is the child's \
         peak RSS from `wait4`. Figures are the median of the runs with min–max; runs are round-robin \
         across contenders. narward contenders run under an address-space limit of {} so that running \
         out of memory fails that contender alone.\n",
        r.options["mem_limit_bytes"]
            .as_f64()
            .map_or("?".into(), gib)
    );

    // Targets.
    let _ = writeln!(w, "## Targets\n");
    let _ = writeln!(w, "| target | measured | verdict |\n|---|---|---|");
    speed_targets(w, r);
    // 2. memory.
    if let Some((s, t)) = largest_with(r, "narward-graph") {
        let o = &t.output;
        let paths = o["paths"].as_f64().unwrap_or(0.0);
        let edges = o["edges"].as_f64().unwrap_or(0.0);
        let mem = o["graph_memory_bytes"].as_f64().unwrap_or(0.0);
        let per_path = o["graph_bytes_per_path_excl_edges"].as_f64().unwrap_or(0.0);
        let budget = 64.0 * paths + 4.0 * edges;
        let _ = writeln!(
            w,
            "| Planning graph ≤ 64 B/path + 4 B/edge | `narward::cache_graph::CacheGraph` (hashes, reference CSR, lookup buckets; mapped) at {}: {} for {} paths + {} edges = {per_path:.0} B/path + 4 B/edge ({:.0} % of the {} budget) | **{}** |",
            size_label(s.paths),
            gib(mem),
            n_(paths as u64),
            n_(edges as u64),
            100.0 * mem / budget.max(1.0),
            gib(budget),
            if mem <= budget { "met" } else { "not met" }
        );
        let build_peak = o["phases"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == "map + verify columns"))
            .and_then(|p| p["peak"].as_f64());
        if let Some(bp) = build_peak {
            let _ = writeln!(
                w,
                "| (same, while building) | peak RSS of a process that only loads the graph as `narward plan` does (policy roots, the columns hashed and mapped): {} = {:.0} B/path incl. edges ({:.1}× the budget) | {} |",
                gib(bp),
                bp / paths.max(1.0),
                bp / budget.max(1.0),
                if bp <= budget {
                    "met"
                } else {
                    "not met (the roots come on top of the graph)"
                }
            );
        }
    }
    process_memory_targets(w, r);
    incremental_target(w, r);
    // 3. parse rate.
    if let Some(s) = largest {
        let g = s.parse_rate["generated"]["narinfos_per_sec"].as_f64();
        let c = s.parse_rate["corpus"]["narinfos_per_sec"].as_f64();
        if let (Some(g), Some(c)) = (g, c) {
            let worst = g.min(c);
            let _ = writeln!(
                w,
                "| narinfo parsing ≥ 1 M/s per core | one thread, `NarInfo::parse`: generated narinfos {:.2} M/s ({:.0} MB/s, mean {:.0} B), real corpus {:.2} M/s ({:.0} MB/s) | **{}** |",
                g / 1e6,
                s.parse_rate["generated"]["mb_per_sec"]
                    .as_f64()
                    .unwrap_or(0.0),
                s.parse_rate["generated"]["mean_bytes"]
                    .as_f64()
                    .unwrap_or(0.0),
                c / 1e6,
                s.parse_rate["corpus"]["mb_per_sec"].as_f64().unwrap_or(0.0),
                if worst >= 1e6 {
                    "met".to_string()
                } else {
                    format!("not met ({:.2}×)", worst / 1e6)
                }
            );
        }
    }
    // 4. inventory ingest.
    for (fmt, a, b) in [
        ("CSV.gz", "narward-ingest-csv", "duckdb-ingest-csv"),
        ("Parquet", "narward-ingest-parquet", "duckdb-ingest-parquet"),
    ] {
        let mut parts = Vec::new();
        let mut all_met = true;
        let mut any = false;
        for s in &r.sizes {
            if let (Some(x), Some(y)) = (ok_wall(task(s, a)), ok_wall(task(s, b))) {
                any = true;
                all_met &= x <= y;
                parts.push(format!(
                    "{}: {} vs {} ({:.2}×)",
                    size_label(s.paths),
                    secs(x),
                    secs(y),
                    y / x
                ));
            }
        }
        if any {
            let _ = writeln!(
                w,
                "| Inventory ingest ({fmt}) at least as fast as DuckDB | narward vs DuckDB (DuckDB time / narward time): {} | **{}** |",
                parts.join("; "),
                if all_met { "met" } else { "not met" }
            );
        }
    }
    curve_and_checks(w, r);
    let _ = writeln!(w);

    // Data.
    let _ = writeln!(w, "## Data\n");
    let _ = writeln!(
        w,
        "Generated by `narward-bench generate` (seed {}). Sizes, reference counts, self-references, derivers \
         and names are drawn per path from the {} real cache.nixos.org narinfos in `crates/narward-formats/tests/data` (mean {:.1} \
         references, {:.0}-byte narinfos there). See `bench/README.md` for the model.\n",
        r.options["seed"],
        489,
        largest.map_or(0.0, |s| s.generated.corpus_mean_refs),
        largest.map_or(0.0, |s| s.generated.corpus_mean_narinfo_bytes),
    );
    let _ = writeln!(
        w,
        "| paths | edges (per path) | objects | releases × roots | distinct roots | release overlap | closure of all roots (live) | narinfo text | generation | on disk |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &r.sizes {
        let g = &s.generated;
        let disk: Vec<String> = g
            .disk_bytes
            .iter()
            .map(|(k, v)| format!("{k} {}", gib(*v as f64)))
            .collect();
        let _ = writeln!(
            w,
            "| {} | {} ({:.1}) | {} | {} × {} | {} | {:.0} % | {} ({:.0} %) | {} (mean {:.0} B) | {}{} | {} |",
            n_(g.paths as u64),
            n_(g.edges),
            g.edges as f64 / g.paths as f64,
            n_(g.objects),
            g.shape.releases,
            n_(g.shape.roots_per_release as u64),
            n_(g.distinct_roots),
            100.0 * g.release_overlap,
            n_(g.expected_live),
            100.0 * g.expected_live as f64 / g.paths as f64,
            gib(g.narinfo_bytes as f64),
            g.narinfo_bytes as f64 / g.paths as f64,
            secs(s.generate_s),
            if s.generated_in_this_run {
                format!(", peak RSS {}", gib(s.generate_peak_rss_bytes as f64))
            } else {
                " (earlier run, reused)".into()
            },
            disk.join(", ")
        );
    }
    let _ = writeln!(w);
    let per_size: Vec<String> = r
        .sizes
        .iter()
        .filter(|s| s.size_s > 0.0)
        .map(|s| format!("{} {}", size_label(s.paths), secs(s.size_s)))
        .collect();
    if !per_size.is_empty() {
        let _ = writeln!(
            w,
            "Time per size in this run (generation, setup and every measurement): {}.\n",
            per_size.join(", ")
        );
    }

    // Results.
    let _ = writeln!(w, "## Results\n");
    let _ = writeln!(
        w,
        "“× narward” is the contender's median time over narward's median time in the same comparison, \
         same size, same run. A contender whose first run took more than {} s ran once at that size. The check column is the contender's own answer compared with the generator's \
         (closure size, narinfo count, object count).\n",
        r.options["single_run_after_s"].as_f64().unwrap_or(120.0)
    );
    let mut groups: Vec<&str> = Vec::new();
    for s in &r.sizes {
        for t in &s.tasks {
            if !groups.contains(&t.group.as_str()) {
                groups.push(&t.group);
            }
        }
    }
    for g in groups {
        let _ = writeln!(w, "### {g}\n");
        let _ = writeln!(
            w,
            "| paths | contender | runs | wall (median) | min – max | peak RSS (median) | × narward | check |\n|---|---|---|---|---|---|---|---|"
        );
        for s in &r.sizes {
            for t in s.tasks.iter().filter(|t| t.group == g) {
                let (wall, range) = match &t.wall {
                    Some(x) => (
                        format!("**{}**", secs(x.median)),
                        format!("{} – {}", secs(x.min), secs(x.max)),
                    ),
                    None => ("–".into(), "–".into()),
                };
                let rss = t.rss.as_ref().map_or_else(
                    || {
                        t.runs.last().map_or("–".into(), |r| {
                            format!("({} when it stopped)", gib(r.max_rss_bytes as f64))
                        })
                    },
                    |x| gib(x.median),
                );
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {wall} | {range} | {rss} | {} | {} |",
                    size_label(s.paths),
                    label_of(t),
                    t.runs.len(),
                    ratio_text(t),
                    status_text(t).replace('|', "\\|")
                );
            }
        }
        let _ = writeln!(w);
    }

    // Growth curve.
    let _ = writeln!(w, "## Growth curve\n");
    let _ = writeln!(
        w,
        "Time and peak memory per path at each size, and the exponent k of time ∝ pathsᵏ: between the two largest sizes where the contender finished, and fitted (least squares on log–log) over every size it finished (k = 1 is linear).\n"
    );
    let ids: Vec<(String, String)> = r
        .sizes
        .iter()
        .flat_map(|s| s.tasks.iter().map(|t| (t.id.clone(), t.tool.clone())))
        .fold(Vec::new(), |mut v, x| {
            if !v.contains(&x) {
                v.push(x);
            }
            v
        });
    let mut header = "| contender |".to_string();
    let mut sep = "|---|".to_string();
    for s in &r.sizes {
        let _ = write!(
            header,
            " {} µs/path | {} B/path |",
            size_label(s.paths),
            size_label(s.paths)
        );
        sep.push_str("---|---|");
    }
    header.push_str(" k (two largest) | k (fitted, all sizes) |");
    sep.push_str("---|---|");
    let _ = writeln!(w, "{header}\n{sep}");
    for (id, tool) in &ids {
        let mut row = format!("| {id} ({tool}) |");
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for s in &r.sizes {
            let t = task(s, id);
            match (ok_wall(t), ok_rss(t)) {
                (Some(wl), Some(rs)) => {
                    pts.push((s.paths as f64, wl));
                    let _ = write!(
                        row,
                        " {:.2} | {:.0} |",
                        wl / s.paths as f64 * 1e6,
                        rs / s.paths as f64
                    );
                }
                _ => row.push_str(" – | – |"),
            }
        }
        let k = if pts.len() >= 2 {
            let (a, b) = (pts[pts.len() - 2], pts[pts.len() - 1]);
            format!("{:.2}", (b.1 / a.1).ln() / (b.0 / a.0).ln())
        } else {
            "–".into()
        };
        let kf = fitted_k(&pts).map_or("–".into(), |k| format!("{k:.2}"));
        let _ = writeln!(w, "{row} {k} | {kf} |");
    }
    let _ = writeln!(w);

    // Extrapolation.
    let _ = writeln!(
        w,
        "## Extrapolation to cache.nixos.org (≈275 M narinfos, ≈1 B objects)\n"
    );
    let _ = writeln!(
        w,
        "Linear in paths: the marginal time and memory per path between the two largest sizes each contender finished \
         (a→b in the table), applied from the largest measured point (the exponents above say how far from linear each is). \
         The synthetic cache has {:.1} objects per path (narinfo + NAR); cache.nixos.org has ≈{:.1} (.ls listings, logs, debuginfo), \
         and its mean reference count is unknown here — the generator draws from the corpus ({:.1} per path), so edge-proportional \
         figures are shown per edge as well.\n",
        largest.map_or(2.0, |s| s.generated.objects as f64
            / s.generated.paths as f64),
        NIXOS_OBJECTS / NIXOS_PATHS,
        largest.map_or(0.0, |s| s.generated.edges as f64 / s.generated.paths as f64),
    );
    let _ = writeln!(
        w,
        "| what | fitted on | marginal per path | at 275 M paths | bound by |\n|---|---|---|---|---|"
    );
    extrapolation_rows(w, r);
    if let Some((_, t)) = largest_with(r, "narward-graph") {
        let o = &t.output;
        let per_path = o["graph_bytes_per_path_excl_edges"]
            .as_f64()
            .unwrap_or(28.0);
        let epp = o["edges"].as_f64().unwrap_or(0.0) / o["paths"].as_f64().unwrap_or(1.0);
        let at = |e: f64| (per_path + 4.0 * e) * NIXOS_PATHS;
        let _ = writeln!(
            w,
            "\nThe planning graph alone at 275 M paths: {per_path:.0} B/path + 4 B/edge = {} with this data's {epp:.1} references per path, \
             {} at 6 per path (1.6 B edges), {} at 13 per path; the 32 GB budget of the target holds up to ≈{:.1} references per path. \
             (`GraphBuilder`, which keeps a 20-byte hash per reference until `build()`, would need ≈{} more; `narward plan` no longer uses it.)\n",
            gib(at(epp)),
            gib(at(1.6e9 / NIXOS_PATHS)),
            gib(at(13.0)),
            (32e9 / NIXOS_PATHS - per_path) / 4.0,
            gib(16.0 * epp * NIXOS_PATHS),
        );
    }

    // Plan phases.
    let _ = writeln!(w, "## Where `narward plan` spends its time and memory\n");
    let _ = writeln!(
        w,
        "`narward plan` run once more per size with `NARWARD_LOG=debug`, which makes it log the time and its RSS at the end \
         of each step; a step's time is the gap since the previous line (the first from the process start: policy, pricing \
         and the object listing). The process's peak RSS is from `wait4`.\n"
    );
    for s in &r.sizes {
        let Some(ph) = s.plan_profile["phases"].as_array() else {
            continue;
        };
        let _ = writeln!(
            w,
            "**{} paths** — {} in all, peak RSS {}{}\n",
            size_label(s.paths),
            secs(s.plan_profile["wall_s"].as_f64().unwrap_or(0.0)),
            gib(s.plan_profile["max_rss_bytes"].as_f64().unwrap_or(0.0)),
            s.plan_profile_failed
                .as_ref()
                .map_or(String::new(), |f| format!(" — **stopped**: {f}"))
        );
        let _ = writeln!(w, "| step ends at | wall | RSS then |\n|---|---|---|");
        for p in ph {
            let _ = writeln!(
                w,
                "| {} | {} | {} |",
                p["name"].as_str().unwrap_or(""),
                secs(p["wall_s"].as_f64().unwrap_or(0.0)),
                gib(p["rss_end"].as_f64().unwrap_or(0.0))
            );
        }
        let rest = s.plan_profile["after_last_phase_s"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            w,
            "| {} | {} | – |\n",
            if s.plan_profile_failed.is_some() {
                "(until it stopped)"
            } else {
                "(exit)"
            },
            secs(rest)
        );
    }

    if let Some(t) = &r.throttle {
        throttle_section(w, t);
    }

    // Notes.
    let _ = writeln!(w, "## Notes\n");
    for n in &r.notes {
        let _ = writeln!(w, "- {n}");
    }
    let _ = writeln!(
        w,
        "- DuckDB gets the friendliest input a data engineer could export: integer path ids in `references.parquet`, \
         so its joins are on 32-bit integers, not 32-character hashes. narward's plan maps the cache graph's column \
         files its index holds (every narinfo parsed once, when the index was written; references as 32-bit ids), after \
         checking their SHA-256.\n\
         - DuckDB runs with `threads = {}` and `memory_limit = '{}'` (spilling to a temp directory); narward's plan decides on one thread and writes the plan files (compressed streams, manifests, Parquet) on a second (`PlanWriterThread`).\n\
         - Nix reads the `file://` cache; its NAR files are sparse stand-ins (right size, no content), which neither Nix \
         command reads. A fresh `XDG_CACHE_HOME` per run keeps Nix's narinfo disk cache cold.\n\
         - The narward index is written directly by the generator (no narinfo files, no `narward index` run) with narward's \
         own writers: `index::StreamWriter`, `index::columns` (the column files built from its narinfo stream by \
         `cache_graph::build`) and `index::write_meta`. The incremental `index` row needs a `file://` cache, so it is \
         measured up to `--file-cache-max` only. Narinfos above 1 M paths are \
         not signed (Ed25519 signing 10 M narinfos would dominate generation); parsing does not depend on it.",
        r.options["threads"],
        r.options["duckdb_memory_limit"].as_str().unwrap_or("?")
    );
    if let Some(s) = largest {
        for id in ["narward-ingest-csv", "narward-ingest-parquet"] {
            let Some(t) = task(s, id) else { continue };
            let (Some(ph), Some(wall)) = (t.output["phases"].as_array(), &t.wall) else {
                continue;
            };
            let parts: Vec<String> = ph
                .iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p["name"].as_str().unwrap_or(""),
                        secs(p["wall_s"].as_f64().unwrap_or(0.0))
                    )
                })
                .collect();
            let inside: f64 = ph.iter().filter_map(|p| p["wall_s"].as_f64()).sum();
            let _ = writeln!(
                w,
                "- {id} at {}: {}; the rest of its {} (start, freeing {} objects at exit) {}. \
                 `read` is narward's `inventory::read`; the grouping is the bench's own code.",
                size_label(s.paths),
                parts.join(", "),
                secs(wall.median),
                n_(s.generated.objects),
                secs((wall.median - inside).max(0.0)),
            );
        }
    }
    for s in &r.sizes {
        for t in &s.tasks {
            if let Some(sk) = &t.skipped {
                let _ = writeln!(w, "- {} at {}: {sk}", t.id, size_label(s.paths));
            }
        }
    }
    m
}

/// The throttling benchmark: achieved vs allowed request rate (target ≥ 90 %).
fn throttle_section(w: &mut String, t: &crate::throttle::ThrottleResults) {
    let _ = writeln!(w, "## Throttled endpoint: achieved request rate\n");
    let _ = writeln!(
        w,
        "**Target:** against an endpoint that allows R requests/s (and answers `503 SlowDown` above it), \
         narward achieves ≥ 90 % of R. Endpoint: {}; a token bucket of R requests/s (burst R/10). \
         Workload: apply's quarantine step on `Throttled<S3Store>` with its default settings \
         (per object: HEADs of source and destination, CopyObject, a HEAD of the copy, DeleteObject; 16 objects in flight), about {:.0} s of requests per R. \
         Achieved = requests answered by S3 / wall time. Measured separately from the tables above: \
         `{}` at narward commit {} (unix time {}).\n",
        t.endpoint, t.seconds_per_run, t.command, t.narward_commit, t.started_unix
    );
    let _ = writeln!(
        w,
        "| allowed R (req/s) | objects | answered by S3 | `SlowDown` answers | time | achieved (req/s) | achieved / R | narward's allowed rate: end, lowest (store ops/s) | failed |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ceiling = t
        .runs
        .iter()
        .find(|x| x.allowed_rps.is_none())
        .map(|x| x.achieved_rps);
    for x in &t.runs {
        let allowed = x
            .allowed_rps
            .map_or("none (ceiling)".into(), |r| format!("{r:.0}"));
        let above = x.allowed_rps.zip(ceiling).is_some_and(|(r, c)| r > c);
        let ratio = x.ratio.map_or("—".into(), |q| {
            let mark = if q >= 0.9 { "✅" } else { "❌" };
            let why = if above {
                " (R above the ceiling: measures moto, not narward)"
            } else {
                ""
            };
            format!("{:.1} % {mark}{why}", 100.0 * q)
        });
        let _ = writeln!(
            w,
            "| {allowed} | {} | {} | {} | {} | {:.1} | {ratio} | {:.0}, {:.0} | {} |",
            x.objects,
            x.forwarded,
            x.slow_down,
            secs(x.seconds),
            x.achieved_rps,
            x.rate_now,
            x.rate_lowest,
            x.failed_objects
        );
    }
    let _ = writeln!(
        w,
        "\nnarward paces *store operations* (a copy is three HEADs and a CopyObject), so its allowed rate is \
         below the HTTP request rate in the table. The ceiling row is moto and the proxy (one connection per \
         request) on this machine, without a limit.\n"
    );
    for x in &t.runs {
        let (Some(r), Some(q)) = (x.allowed_rps, x.ratio) else {
            continue;
        };
        if q >= 0.9 || ceiling.is_some_and(|c| r > c) {
            continue;
        }
        let ideal = x.forwarded as f64 / r;
        let _ = writeln!(
            w,
            "Below target at R = {r:.0}: its {} requests take {} at exactly R; the run took {}, so {} were lost. \
             Where they go (inferred from how the wrapper works, not traced per request): the start; narward starts at its maximum rate (3,000 store operations/s) and, \
             by design, at most halves it once per 0.5 s on throttling, so it needs about 3.5 s to come down to \
             what R allows; meanwhile most requests are answered `503 SlowDown` ({} in all) and wait in backoff. \
             Once there it keeps close to R (as the run at a higher R shows), so a longer run at this R should get closer to 100 %.\n",
            x.forwarded,
            secs(ideal),
            secs(x.seconds),
            secs((x.seconds - ideal).max(0.0)),
            x.slow_down
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_k_is_one_for_linear_cost_and_two_for_quadratic() {
        let lin: Vec<(f64, f64)> = [1e5, 1e6, 1e7, 3e7]
            .iter()
            .map(|&n| (n, 3e-6 * n))
            .collect();
        assert!((fitted_k(&lin).unwrap() - 1.0).abs() < 1e-9);
        let sq: Vec<(f64, f64)> = [1e5, 1e6, 1e7].iter().map(|&n| (n, n * n)).collect();
        assert!((fitted_k(&sq).unwrap() - 2.0).abs() < 1e-9);
        assert!(fitted_k(&lin[..1]).is_none());
    }
}
