//! `narward-bench run`: generate the data at every size, run every contender on it in the
//! same run, and write `BENCHMARKS.md` and `bench/results.json`.

use crate::contenders::{DUCKDB_CLOSURE_PY, DUCKDB_INVENTORY_PY};
use crate::generate::{self, Formats, Summary, progress};
use crate::incremental::{self, Prepared};
use crate::measure::{self, Limits, Sample};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub sizes: Vec<usize>,
    pub runs: usize,
    /// Runs at sizes of 5 M paths and more.
    pub runs_large: usize,
    pub out: PathBuf,
    pub json: PathBuf,
    pub data_dir: PathBuf,
    pub seed: u64,
    /// Address-space limit for narward children and probes (bytes).
    pub mem_limit: u64,
    pub duckdb_mem: String,
    pub threads: usize,
    /// Skip a contender whose estimated time (linear in paths from the previous size)
    /// exceeds this.
    pub max_minutes: f64,
    pub file_cache_max: usize,
    /// A contender whose first run takes longer than this (seconds) runs only once.
    pub single_run_after: f64,
    pub sign_max: usize,
    pub regenerate: bool,
    pub narward: Option<PathBuf>,
    pub corpus: PathBuf,
    pub only: Option<Vec<String>>,
    pub command_line: String,
    /// Allowed request rates of the throttling benchmark (`--only throttle`).
    pub throttle_rates: Vec<f64>,
    /// Seconds of requests per allowed rate.
    pub throttle_seconds: f64,
    /// Contenders (id prefixes) at one size, replacing `only` there:
    /// `--contenders-at 30m=narward,duckdb-closure`.
    pub contenders_at: Vec<(usize, Vec<String>)>,
    /// Time limits (minutes) by contender id prefix, replacing the default of twice
    /// `max_minutes`; such a contender is never skipped by estimate (it runs until the
    /// limit and is then reported as timed out).
    pub timeouts: Vec<(String, f64)>,
    /// Remove each size's generated data once it has been measured (for a disk that cannot
    /// hold every size at once).
    pub discard_data: bool,
    /// Percent of narinfos new or changed for the incremental index row.
    pub incremental_percent: f64,
}

/// Every contender id, in table order.
pub const CONTENDERS: &[&str] = &[
    "narward-plan",
    "narward-graph",
    "duckdb-closure",
    "nix-closure",
    "narward-index-file",
    "narward-index-incremental",
    "narward-index-inventory",
    "nix-all",
    "narward-ingest-csv",
    "duckdb-ingest-csv",
    "narward-ingest-parquet",
    "duckdb-ingest-parquet",
    "narward-report",
    "narward-audit",
];

impl RunOptions {
    /// Whether contender `id` runs at `size`: `--contenders-at` for that size, else
    /// `--only`, else every contender.
    pub fn selected(&self, size: usize, id: &str) -> bool {
        let list = self
            .contenders_at
            .iter()
            .find(|(n, _)| *n == size)
            .map(|(_, v)| v)
            .or(self.only.as_ref());
        list.is_none_or(|l| l.iter().any(|p| id.starts_with(p.as_str())))
    }

    /// The data `size` needs for its selected contenders (the index and roots always).
    pub fn formats_at(&self, size: usize) -> Formats {
        let any = |ids: &[&str]| ids.iter().any(|id| self.selected(size, id));
        Formats {
            index: true,
            file: size <= self.file_cache_max
                && any(&[
                    "nix-closure",
                    "narward-index-file",
                    "narward-index-incremental",
                    "narward-index-inventory",
                    "nix-all",
                ]),
            inventory: any(&[
                "narward-index-inventory",
                "narward-ingest-csv",
                "duckdb-ingest-csv",
                "narward-ingest-parquet",
                "duckdb-ingest-parquet",
            ]),
            parquet: any(&["duckdb-closure"]),
        }
    }

    /// The time limit of contender `id` and whether it was given explicitly.
    pub fn timeout_of(&self, id: &str) -> (Duration, bool) {
        match self
            .timeouts
            .iter()
            .find(|(p, _)| id.starts_with(p.as_str()))
        {
            Some((_, m)) => (Duration::from_secs_f64(m * 60.0), true),
            None => (
                Duration::from_secs_f64(self.max_minutes * 60.0 * 2.0),
                false,
            ),
        }
    }
}

/// `30m=narward,duckdb-closure` (for `--contenders-at`).
///
/// # Errors
/// No `=`, a bad size, an empty list or an id prefix that matches no contender.
pub fn parse_contenders_at(s: &str) -> Result<(usize, Vec<String>)> {
    let Some((size, list)) = s.split_once('=') else {
        bail!("{s:?}: expected SIZE=ID,ID… (e.g. 30m=narward,duckdb-closure)");
    };
    let ids: Vec<String> = list
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    if ids.is_empty() {
        bail!("{s:?}: no contender after '='");
    }
    for p in &ids {
        if !CONTENDERS.iter().any(|c| c.starts_with(p.as_str())) {
            bail!(
                "{s:?}: {p:?} is the start of no contender id ({})",
                CONTENDERS.join(", ")
            );
        }
    }
    Ok((crate::parse_size(size)?, ids))
}

/// `duckdb=20` (minutes, for `--timeout`).
///
/// # Errors
/// No `=`, a bad number, or a prefix that matches no contender.
pub fn parse_timeout(s: &str) -> Result<(String, f64)> {
    let Some((p, m)) = s.split_once('=') else {
        bail!("{s:?}: expected ID=MINUTES (e.g. duckdb-closure=20)");
    };
    let m: f64 = m
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?}: {m:?} is not a number of minutes"))?;
    if m.is_nan() || m <= 0.0 {
        bail!("{s:?}: the time limit must be positive");
    }
    let p = p.trim().to_string();
    if !CONTENDERS.iter().any(|c| c.starts_with(p.as_str())) {
        bail!("{s:?}: {p:?} is the start of no contender id");
    }
    Ok((p, m))
}

/// One measured run (the output itself is not kept).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub wall_s: f64,
    pub max_rss_bytes: u64,
    pub user_s: f64,
    pub sys_s: f64,
    pub status: i32,
    pub timed_out: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn stat(v: &[f64]) -> Option<Stat> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    Some(Stat {
        median: m,
        min: s[0],
        max: s[s.len() - 1],
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub id: String,
    pub group: String,
    pub tool: String,
    pub label: String,
    pub command: String,
    pub baseline: bool,
    pub runs: Vec<RunRecord>,
    pub wall: Option<Stat>,
    pub rss: Option<Stat>,
    /// Median wall time of this contender / of narward's baseline in its group.
    pub ratio_to_narward: Option<f64>,
    pub skipped: Option<String>,
    pub failed: Option<String>,
    pub result: Option<String>,
    pub verified: Option<bool>,
    /// The JSON the contender printed (last successful run), for phases.
    pub output: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeResult {
    pub paths: usize,
    pub data_dir: String,
    pub generated: Summary,
    pub generated_in_this_run: bool,
    pub generate_s: f64,
    pub tasks: Vec<TaskResult>,
    pub parse_rate: Value,
    pub plan_profile: Value,
    pub plan_profile_failed: Option<String>,
    /// `/proc/loadavg` (1-minute) before and after this size's measurements: other work
    /// on the machine shows here.
    pub load_before: f64,
    pub load_after: f64,
    /// Seconds this size took in the run, generation and setup included (to budget runs).
    #[serde(default)]
    pub size_s: f64,
    /// Peak RSS of the harness while it generated this size's data (0 when reused).
    #[serde(default)]
    pub generate_peak_rss_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_total_bytes: u64,
    pub kernel: String,
    pub rustc: String,
    pub duckdb: String,
    pub nix: String,
    pub python: String,
    pub narward_commit: String,
    pub free_inodes: u64,
    /// Size of the file system holding the data.
    #[serde(default)]
    pub disk_total_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub command: String,
    pub started_unix: i64,
    pub total_s: f64,
    pub machine: Machine,
    pub options: Value,
    pub sizes: Vec<SizeResult>,
    pub notes: Vec<String>,
    /// The throttling benchmark (`--only throttle`), measured on its own and kept across
    /// other runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<crate::throttle::ThrottleResults>,
}

fn out_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let s = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&s).trim().to_string()
        })
        .unwrap_or_else(|| "not found".into())
}

fn free_inodes(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: statvfs on a valid C string with a zeroed out-struct.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) == 0 {
            s.f_favail as u64
        } else {
            0
        }
    }
}

fn machine(data_dir: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |x| x.1.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let dirty = !out_of("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |p| p.get()),
        mem_total_bytes: mem,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        rustc: out_of("rustc", &["--version"]),
        duckdb: out_of(
            "python3",
            &["-c", "import duckdb; print(duckdb.__version__)"],
        ),
        nix: out_of("nix", &["--version"]),
        python: out_of("python3", &["--version"]),
        narward_commit: format!(
            "{}{}",
            out_of("git", &["rev-parse", "--short", "HEAD"]),
            if dirty {
                " (with uncommitted changes)"
            } else {
                ""
            }
        ),
        free_inodes: free_inodes(data_dir),
        disk_total_bytes: disk_total(data_dir),
    }
}

/// Install the DuckDB Python package if `import duckdb` fails.
fn ensure_duckdb() -> Result<()> {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        progress("installing duckdb with pip");
        let st = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "duckdb"])
            .status()
            .context("running pip")?;
        if !st.success() {
            bail!("pip install duckdb failed");
        }
    }
    Ok(())
}

/// The narward binary: `--narward`, else built with cargo next to this binary.
fn narward_bin(opt: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = opt {
        return Ok(p.clone());
    }
    progress("building narward (cargo build --release -p narward)");
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "narward", "--bin", "narward"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    if !st.is_ok_and(|s| s.success()) {
        progress("cargo build of narward failed; using the existing binary if any");
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("narward");
    if !p.exists() {
        bail!("no narward binary at {} (pass --narward PATH)", p.display());
    }
    Ok(p)
}

fn has_report_command(narward: &Path) -> bool {
    Command::new(narward)
        .args(["report", "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Check {
    result: String,
    ok: bool,
    output: Value,
}

type Maker = Box<dyn Fn(&Path) -> Command>;
type Checker = Box<dyn Fn(&Sample) -> Check>;
type Preparer = Box<dyn Fn(&Path) -> Result<()>>;

struct Task {
    id: &'static str,
    group: &'static str,
    tool: &'static str,
    label: String,
    baseline: bool,
    runs: usize,
    limits: Limits,
    ok_codes: Vec<i32>,
    needle: Option<&'static str>,
    skip: Option<String>,
    /// Untimed setup before each run (in the run's scratch directory).
    prepare: Option<Preparer>,
    make: Maker,
    check: Checker,
}

fn first_json(s: &str) -> Value {
    let t = s.trim();
    serde_json::from_str(t).unwrap_or_else(|_| {
        // A progress bar (carriage returns, no newline) may precede the JSON on its line.
        t.lines()
            .rev()
            .find_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok()))
            .unwrap_or(Value::Null)
    })
}

fn fmt_n(n: u64) -> String {
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

fn expect_count(what: &str, got: Option<u64>, want: u64) -> (String, bool) {
    match got {
        Some(g) if g == want => (format!("{} {what} ✓", fmt_n(g)), true),
        Some(g) => (
            format!("{} {what} ✗ (expected {})", fmt_n(g), fmt_n(want)),
            false,
        ),
        None => (format!("no {what} count in the output"), false),
    }
}

pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{} M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{} k", n / 1000)
    } else {
        n.to_string()
    }
}

fn nix_env(cmd: &mut Command, scratch: &Path) {
    let xdg = scratch.join("xdg-cache");
    let _ = std::fs::remove_dir_all(&xdg);
    cmd.env("NIX_REMOTE", "local")
        .env(
            "NIX_CONFIG",
            "build-users-group =\nsandbox = false\nsubstituters =\nextra-experimental-features = nix-command",
        )
        .env("XDG_CACHE_HOME", &xdg);
}

#[allow(clippy::too_many_lines)]
fn tasks(
    o: &RunOptions,
    data: &Path,
    g: &Summary,
    ctx: &Ctx,
    has_file_cache: Option<String>,
    inc: Option<Result<Prepared, String>>,
) -> Vec<Task> {
    let (narward, me, report_cmd) = (ctx.narward.as_path(), ctx.me.as_path(), ctx.report_cmd);
    let n = g.paths;
    let live = g.expected_live;
    let objects = g.objects;
    let runs = if n >= 5_000_000 { o.runs_large } else { o.runs };
    let state = data.join("state");
    let policy = data.join("policy.toml");
    let cache_url = format!("file://{}", data.join("cache").display());
    let inv_csv = generate::manifest_path(data, "csv");
    let inv_pq = generate::manifest_path(data, "parquet");
    let mem = Limits {
        address_space: Some(o.mem_limit),
        stack: None,
        timeout: Some(Duration::from_secs_f64(o.max_minutes * 60.0 * 2.0)),
    };
    let plain = Limits {
        address_space: None,
        stack: None,
        timeout: Some(Duration::from_secs_f64(o.max_minutes * 60.0 * 2.0)),
    };
    let threads = o.threads.to_string();
    let mut v: Vec<Task> = Vec::new();

    // Closure + plan.
    {
        let (nw, st, pol) = (narward.to_path_buf(), state.clone(), policy.clone());
        v.push(Task {
            id: "narward-plan",
            group: "closure + plan",
            tool: "narward",
            label: "narward plan (CLI: load index, closure, decisions, write plan + manifests)"
                .into(),
            baseline: true,
            runs,
            limits: mem,
            ok_codes: vec![0],
            needle: None,
            skip: None,
            prepare: None,
            make: Box::new(move |scratch| {
                let out = scratch.join("plan");
                let _ = std::fs::remove_dir_all(&out);
                let mut c = Command::new(&nw);
                c.arg("--state")
                    .arg(&st)
                    .args(["-q", "--json", "plan", "--policy"])
                    .arg(&pol)
                    .arg("--out")
                    .arg(out);
                c
            }),
            check: Box::new(move |s| {
                let j = first_json(&s.stdout);
                // `plan --json` printed the plan header; newer versions wrap it as {"plan": …, "cost": …}.
                let got = j
                    .pointer("/plan/summary/paths/keep/count")
                    .or_else(|| j.pointer("/summary/paths/keep/count"))
                    .and_then(Value::as_u64);
                let (result, ok) = expect_count("paths kept", got, live);
                Check {
                    result,
                    ok,
                    output: Value::Null,
                }
            }),
        });
    }
    {
        let (me2, st, pol) = (me.to_path_buf(), state.clone(), policy.clone());
        v.push(Task {
            id: "narward-graph",
            group: "closure + plan",
            tool: "narward (library)",
            label: crate::report::label("narward-graph")
                .unwrap_or_default()
                .into(),
            baseline: false,
            runs,
            limits: mem,
            ok_codes: vec![0],
            needle: None,
            skip: None,
            prepare: None,
            make: Box::new(move |_| {
                let mut c = Command::new(&me2);
                c.args(["probe", "closure", "--state"])
                    .arg(&st)
                    .arg("--policy")
                    .arg(&pol);
                c
            }),
            check: Box::new(move |s| {
                let j = first_json(&s.stdout);
                let (result, ok) = expect_count("paths kept", j["keep"].as_u64(), live);
                Check {
                    result,
                    ok,
                    output: j,
                }
            }),
        });
    }
    {
        let (d, threads, dm) = (data.to_path_buf(), threads.clone(), o.duckdb_mem.clone());
        v.push(Task {
            id: "duckdb-closure",
            group: "closure + plan",
            tool: "DuckDB",
            label: "DuckDB: recursive CTE over references.parquet + per-path decisions to Parquet"
                .into(),
            baseline: false,
            runs,
            limits: plain,
            ok_codes: vec![0],
            needle: None,
            skip: None,
            prepare: None,
            make: Box::new(move |scratch| {
                let tmp = scratch.join("duckdb-tmp");
                let out = scratch.join("duckdb-out");
                let _ = std::fs::remove_dir_all(&tmp);
                let _ = std::fs::remove_dir_all(&out);
                let _ = std::fs::create_dir_all(&out);
                let mut c = Command::new("python3");
                c.arg("-c")
                    .arg(DUCKDB_CLOSURE_PY)
                    .arg(&d)
                    .arg(&threads)
                    .arg(&dm)
                    .arg(tmp)
                    .arg(out);
                c
            }),
            check: Box::new(move |s| {
                let j = first_json(&s.stdout);
                let (result, ok) = expect_count("paths kept", j["keep"].as_u64(), live);
                Check {
                    result,
                    ok,
                    output: j,
                }
            }),
        });
    }
    let roots: Vec<String> = {
        let mut r = Vec::new();
        // Only Nix needs them in memory, and only when there is a file:// cache.
        let rd = if has_file_cache.is_none() {
            std::fs::read_dir(data.join("roots")).ok()
        } else {
            None
        };
        if let Some(rd) = rd {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    r.extend(t.lines().map(str::to_string));
                }
            }
        }
        r.sort_unstable();
        r.dedup();
        r
    };
    {
        let cu = cache_url.clone();
        v.push(Task {
            id: "nix-closure",
            group: "closure + plan",
            tool: "Nix",
            label: crate::report::label("nix-closure")
                .unwrap_or_default()
                .into(),
            baseline: false,
            runs: 1,
            limits: Limits {
                address_space: None,
                stack: Some(1 << 30),
                timeout: plain.timeout,
            },
            ok_codes: vec![0],
            needle: None,
            skip: has_file_cache.clone(),
            prepare: None,
            make: Box::new(move |scratch| {
                let mut c = Command::new("nix");
                c.args(["path-info", "-r", "--store", &cu]).args(&roots);
                nix_env(&mut c, scratch);
                c
            }),
            check: Box::new(move |s| {
                let (result, ok) = expect_count("paths in the closure", Some(s.stdout_lines), live);
                Check {
                    result,
                    ok,
                    output: Value::Null,
                }
            }),
        });
    }

    // Reading the cache.
    {
        let (nw, cu) = (narward.to_path_buf(), cache_url.clone());
        v.push(Task {
            id: "narward-index-file",
            group: "read the cache",
            tool: "narward",
            label: "narward index --cache file://… (list + read every narinfo + write index)"
                .into(),
            baseline: true,
            runs,
            limits: mem,
            ok_codes: vec![0],
            needle: None,
            skip: has_file_cache.clone(),
            prepare: None,
            make: Box::new(move |scratch| {
                let st = scratch.join("state-file");
                let _ = std::fs::remove_dir_all(&st);
                let mut c = Command::new(&nw);
                c.arg("--state")
                    .arg(st)
                    .args(["-q", "--json", "index", "--cache", &cu]);
                c
            }),
            check: Box::new(move |s| {
                let j = first_json(&s.stdout);
                let (result, ok) = expect_count("narinfos", j["narinfos"].as_u64(), n as u64);
                Check {
                    result,
                    ok,
                    output: Value::Null,
                }
            }),
        });
    }
    {
        let (nw, cu, m) = (narward.to_path_buf(), cache_url.clone(), inv_csv.clone());
        v.push(Task {
            id: "narward-index-inventory",
            group: "read the cache",
            tool: "narward",
            label: "narward index --inventory manifest.json (CSV.gz listing + read every narinfo)"
                .into(),
            baseline: false,
            runs,
            limits: mem,
            ok_codes: vec![0],
            needle: None,
            skip: has_file_cache.clone(),
            prepare: None,
            make: Box::new(move |scratch| {
                let st = scratch.join("state-inv");
                let _ = std::fs::remove_dir_all(&st);
                let mut c = Command::new(&nw);
                c.arg("--state")
                    .arg(st)
                    .args(["-q", "--json", "index", "--cache", &cu, "--inventory"])
                    .arg(&m);
                c
            }),
            check: Box::new(move |s| {
                let j = first_json(&s.stdout);
                let (result, ok) = expect_count("narinfos", j["narinfos"].as_u64(), n as u64);
                Check {
                    result,
                    ok,
                    output: Value::Null,
                }
            }),
        });
    }
    {
        let cu = cache_url.clone();
        v.push(Task {
            id: "nix-all",
            group: "read the cache",
            tool: "Nix",
            label: "nix path-info --all --json --store file://…".into(),
            baseline: false,
            runs: 1,
            limits: plain,
            ok_codes: vec![0],
            needle: Some("\"path\":"),
            skip: has_file_cache.clone(),
            prepare: None,
            make: Box::new(move |scratch| {
                let mut c = Command::new("nix");
                c.args(["path-info", "--all", "--json", "--store", &cu]);
                nix_env(&mut c, scratch);
                c
            }),
            check: Box::new(move |s| {
                let got = s.stdout_lines; // replaced by the needle count in `measure_task`
                let (result, ok) = expect_count("paths", Some(got), n as u64);
                Check {
                    result,
                    ok,
                    output: Value::Null,
                }
            }),
        });
    }

    // Inventory ingest.
    for (fmt, manifest) in [("csv", inv_csv.clone()), ("parquet", inv_pq.clone())] {
        let group = if fmt == "csv" {
            "inventory ingest (CSV.gz)"
        } else {
            "inventory ingest (Parquet)"
        };
        let me2 = me.to_path_buf();
        v.push(Task {
            id: if fmt == "csv" { "narward-ingest-csv" } else { "narward-ingest-parquet" },
            group,
            tool: "narward",
            label: "narward inventory::read (as `index --inventory`) + objects/bytes per month and category".into(),
            baseline: true,
            runs,
            limits: mem,
            ok_codes: vec![0],
            needle: None,
            skip: None,
            prepare: None,
            make: Box::new(move |_| {
                let mut c = Command::new(&me2);
                c.args(["probe", "ingest", "--manifest"]).arg(&manifest);
                c
            }),
            check: Box::new(move |s| {
                let j = first_json(&s.stdout);
                let (result, ok) = expect_count("objects", j["total_objects"].as_u64(), objects);
                Check { result, ok, output: j }
            }),
        });
        let inv_dir = data.join("inventory").join(fmt);
        let (threads, dm) = (threads.clone(), o.duckdb_mem.clone());
        v.push(Task {
            id: if fmt == "csv" {
                "duckdb-ingest-csv"
            } else {
                "duckdb-ingest-parquet"
            },
            group,
            tool: "DuckDB",
            label: format!("DuckDB read_{fmt} + GROUP BY month, category"),
            baseline: false,
            runs,
            limits: plain,
            ok_codes: vec![0],
            needle: None,
            skip: None,
            prepare: None,
            make: Box::new(move |_| {
                let mut c = Command::new("python3");
                c.arg("-c")
                    .arg(DUCKDB_INVENTORY_PY)
                    .arg(&inv_dir)
                    .arg(fmt)
                    .arg(&threads)
                    .arg(&dm);
                c
            }),
            check: Box::new(move |s| {
                let j = first_json(&s.stdout);
                let (result, ok) = expect_count("objects", j["total_objects"].as_u64(), objects);
                Check {
                    result,
                    ok,
                    output: j,
                }
            }),
        });
    }

    // Report.
    {
        let (nw, st) = (narward.to_path_buf(), state.clone());
        let sub = if report_cmd { "report" } else { "audit" };
        v.push(Task {
            id: "narward-report",
            group: "report",
            tool: "narward",
            label: if report_cmd {
                "narward report (index → HTML/JSON/Markdown: bill, growth per month, sizes)".into()
            } else {
                "narward audit (there is no `narward report` command yet; signatures not judged)"
                    .into()
            },
            baseline: true,
            runs,
            limits: mem,
            ok_codes: vec![0, 1],
            needle: None,
            skip: None,
            prepare: None,
            make: Box::new(move |scratch| {
                let mut c = Command::new(&nw);
                c.arg("--state").arg(&st).args(["-q", sub]);
                if report_cmd {
                    let out = scratch.join("report");
                    let _ = std::fs::remove_dir_all(&out);
                    c.arg("--out").arg(out);
                }
                c
            }),
            check: Box::new(move |_| Check {
                result: "ran".into(),
                ok: true,
                output: Value::Null,
            }),
        });
    }
    v.push(audit_task(narward, &state, runs, mem));
    if let Some(inc) = inc {
        v.push(incremental_task(
            narward,
            o.incremental_percent,
            n as u64,
            runs,
            mem,
            inc,
        ));
    }
    v.retain(|t| o.selected(n, t.id));
    for t in &mut v {
        t.limits.timeout = Some(o.timeout_of(t.id).0);
    }
    v
}

/// `narward audit` (no trusted key: signatures are not judged; exit 1 means findings).
fn audit_task(narward: &Path, state: &Path, runs: usize, mem: Limits) -> Task {
    let (nw, st) = (narward.to_path_buf(), state.to_path_buf());
    Task {
        id: "narward-audit",
        group: "audit",
        tool: "narward",
        label: "narward audit (every narinfo checked against the listing; no trusted key, so signatures not judged)"
            .into(),
        baseline: true,
        runs,
        limits: mem,
        ok_codes: vec![0, 1],
        needle: None,
        skip: None,
        prepare: None,
        make: Box::new(move |_| {
            let mut c = Command::new(&nw);
            c.arg("--state").arg(&st).args(["-q", "--json", "audit"]);
            c
        }),
        check: Box::new(|_| Check {
            result: "ran".into(),
            ok: true,
            output: Value::Null,
        }),
    }
}

/// `narward index` again after `percent` % of the narinfos became new or changed (see
/// [`crate::incremental`]); each run starts from a copy of the state indexed before.
fn incremental_task(
    narward: &Path,
    percent: f64,
    n: u64,
    runs: usize,
    mem: Limits,
    inc: Result<Prepared, String>,
) -> Task {
    let nw = narward.to_path_buf();
    let (skip, p) = match inc {
        Ok(p) => (None, Some(p)),
        Err(e) => (Some(format!("**setup failed**: {e}")), None),
    };
    let p2 = p.clone();
    let base = p.as_ref().map(|p| p.base_state.clone());
    Task {
        id: "narward-index-incremental",
        group: "read the cache",
        tool: "narward",
        label: format!(
            "narward index again after {percent} % of the narinfos are new or changed (file://; list + read the new/changed + write index)"
        ),
        baseline: false,
        runs,
        limits: mem,
        ok_codes: vec![0],
        needle: None,
        skip,
        prepare: Some(Box::new(move |scratch| {
            let Some(base) = &base else {
                bail!("no setup");
            };
            std::fs::create_dir_all(scratch)?;
            incremental::copy_state(base, &scratch.join("state-incremental"))
        })),
        make: Box::new(move |scratch| {
            let Some(p) = &p else {
                return Command::new("false");
            };
            incremental::index_command(&nw, &scratch.join("state-incremental"), &p.cache)
        }),
        check: Box::new(move |s| {
            let j = first_json(&s.stdout);
            let Some(p) = &p2 else {
                return Check {
                    result: "no setup".into(),
                    ok: false,
                    output: Value::Null,
                };
            };
            let (mut result, mut ok) = expect_count("narinfos", j["narinfos"].as_u64(), n + p.new);
            let want = p.new + p.changed;
            let fetched = j.pointer("/last_update/fetched").and_then(Value::as_u64);
            // nix-cache-info is fetched with the narinfos.
            let f_ok = fetched.is_some_and(|f| f >= want && f <= want + 1);
            ok &= f_ok;
            result.push_str(&format!(
                "; {} fetched {} ({} new + {} changed; the full index before: {:.1} s)",
                fetched.map_or("?".into(), fmt_n),
                if f_ok { "✓" } else { "✗" },
                fmt_n(p.new),
                fmt_n(p.changed),
                p.full_index_s
            ));
            Check {
                result,
                ok,
                output: serde_json::json!({
                    "new": p.new, "changed": p.changed, "fetched": fetched,
                    "full_index_s": p.full_index_s,
                }),
            }
        }),
    }
}

fn count_needle(p: &Path, needle: &str) -> u64 {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(p) else {
        return 0;
    };
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let nb = needle.as_bytes();
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while let Ok(k) = r.read(&mut buf) {
        if k == 0 {
            break;
        }
        carry.extend_from_slice(&buf[..k]);
        n += carry.windows(nb.len()).filter(|w| *w == nb).count() as u64;
        let keep = carry.len().min(nb.len() - 1);
        carry.drain(..carry.len() - keep);
    }
    n
}

fn failure_text(s: &Sample, limits: &Limits) -> String {
    let err = format!("{}\n{}", s.stderr_head, s.stderr_tail);
    let cause = err
        .lines()
        .find(|l| {
            l.contains("memory allocation of") || l.contains("error:") || l.contains("panicked")
        })
        .map(str::trim);
    let tail: String = s
        .stderr_tail
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("PHASE"))
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" / ");
    let oom = err.contains("memory allocation of")
        || err.contains("Cannot allocate memory")
        || err.contains("Out of Memory")
        || err.contains("OutOfMemory");
    let mut m = if s.timed_out {
        format!(
            "timed out after {:.0} s (its time limit is {:.0} min)",
            s.wall_s,
            limits.timeout.map_or(0.0, |t| t.as_secs_f64() / 60.0)
        )
    } else if oom {
        format!(
            "out of memory at the {} address-space limit after {:.0} s (exit {})",
            limits.address_space.map_or("system".into(), |b| format!(
                "{:.0} GiB",
                b as f64 / (1u64 << 30) as f64
            )),
            s.wall_s,
            s.status
        )
    } else {
        format!("exit status {} after {:.0} s", s.status, s.wall_s)
    };
    let said = cause.map_or(tail, str::to_string);
    if !said.is_empty() {
        let t: String = said.chars().take(300).collect();
        m.push_str(&format!(": {t}"));
    }
    m
}

fn run_tasks(
    o: &RunOptions,
    size: usize,
    tasks: &[Task],
    scratch: &Path,
    previous: &HashMap<String, (usize, f64)>,
) -> Vec<TaskResult> {
    let (max_minutes, single_run_after) = (o.max_minutes, o.single_run_after);
    let mut results: Vec<TaskResult> = tasks
        .iter()
        .map(|t| {
            // narward itself is never skipped by estimate (its time limit still applies):
            // how it fares at the largest size is the point of the benchmark.
            // Nor is a contender with its own time limit: it runs until the limit.
            let estimable = !t.tool.starts_with("narward") && !o.timeout_of(t.id).1;
            let est_skip = previous.get(t.id).filter(|_| estimable).and_then(|&(pn, pw)| {
                let est = pw * size as f64 / pn as f64;
                (est > max_minutes * 60.0).then(|| {
                    format!(
                        "skipped: est. {:.0} min at the rate measured at {} paths (limit {max_minutes:.0} min)",
                        est / 60.0,
                        size_label(pn)
                    )
                })
            });
            TaskResult {
                id: t.id.into(),
                group: t.group.into(),
                tool: t.tool.into(),
                label: t.label.clone(),
                command: format!("{:?}", (t.make)(&scratch.join("probe-cmd"))).chars().take(600).collect(),
                baseline: t.baseline,
                runs: Vec::new(),
                wall: None,
                rss: None,
                ratio_to_narward: None,
                skipped: t.skip.clone().or(est_skip),
                failed: None,
                result: None,
                verified: None,
                output: Value::Null,
            }
        })
        .collect();
    let max_runs = tasks.iter().map(|t| t.runs).max().unwrap_or(0);
    // Round-robin: run 1 of every contender, then run 2, … (drift hits all alike).
    for r in 0..max_runs {
        for (t, res) in tasks.iter().zip(results.iter_mut()) {
            if r >= t.runs || res.skipped.is_some() || res.failed.is_some() {
                continue;
            }
            // A contender whose first run took longer than `single_run_after` runs once.
            if r > 0
                && res
                    .runs
                    .first()
                    .is_some_and(|x| x.wall_s > single_run_after)
            {
                continue;
            }
            let dir = scratch.join(t.id);
            progress(&format!(
                "{}: {} run {}/{}",
                size_label(size),
                t.id,
                r + 1,
                t.runs
            ));
            if let Some(prep) = &t.prepare
                && let Err(e) = prep(&dir)
            {
                res.failed = Some(format!("setup before the run failed: {e:#}"));
                continue;
            }
            let cmd = (t.make)(&dir);
            let s = match measure::run(cmd, t.limits, &dir) {
                Ok(s) => s,
                Err(e) => {
                    res.failed = Some(format!("{e:#}"));
                    continue;
                }
            };
            res.runs.push(RunRecord {
                wall_s: s.wall_s,
                max_rss_bytes: s.max_rss_bytes,
                user_s: s.user_s,
                sys_s: s.sys_s,
                status: s.status,
                timed_out: s.timed_out,
            });
            if s.timed_out || !t.ok_codes.contains(&s.status) {
                res.failed = Some(failure_text(&s, &t.limits));
                progress(&format!(
                    "  failed: {}",
                    res.failed.as_deref().unwrap_or("")
                ));
                continue;
            }
            let mut s2 = s.clone();
            if let Some(nd) = t.needle {
                s2.stdout_lines = count_needle(&dir.join("stdout"), nd);
            }
            let c = (t.check)(&s2);
            if let (Some(p), Some(last)) = (c.output["peak_rss"].as_u64(), res.runs.last_mut()) {
                last.max_rss_bytes = last.max_rss_bytes.max(p);
            }
            let rss = res.runs.last().map_or(0, |r| r.max_rss_bytes);
            progress(&format!(
                "  {:.2} s, {:.0} MiB: {}",
                s.wall_s,
                rss as f64 / 1048576.0,
                c.result
            ));
            res.verified = Some(res.verified.unwrap_or(true) && c.ok);
            res.result = Some(c.result);
            if !c.output.is_null() {
                res.output = c.output;
            }
        }
    }
    for res in &mut results {
        let ok: Vec<&RunRecord> = res
            .runs
            .iter()
            .filter(|r| {
                !r.timed_out && (r.status == 0 || (res.id == "narward-report" && r.status == 1))
            })
            .collect();
        if res.failed.is_none() {
            res.wall = stat(&ok.iter().map(|r| r.wall_s).collect::<Vec<_>>());
            res.rss = stat(
                &ok.iter()
                    .map(|r| r.max_rss_bytes as f64)
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(d) = scratch.join(&res.id).to_str() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let base: HashMap<String, f64> = results
        .iter()
        .filter(|r| r.baseline)
        .filter_map(|r| r.wall.as_ref().map(|w| (r.group.clone(), w.median)))
        .collect();
    for r in &mut results {
        if let (Some(w), Some(b)) = (&r.wall, base.get(&r.group)) {
            r.ratio_to_narward = Some(w.median / b);
        }
    }
    results
}

/// Unix seconds of an RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SS.fffZ`.
fn rfc3339(t: &str) -> Option<f64> {
    let (date, time) = t.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let mut h = time.split(':');
    let (hh, mm) = (
        h.next()?.parse::<f64>().ok()?,
        h.next()?.parse::<f64>().ok()?,
    );
    let ss = h.next()?.parse::<f64>().ok()?;
    let days = narward_formats::date::days_from_civil(y, m, dd);
    Some(days as f64 * 86400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `narward plan` itself with `NARWARD_LOG=debug`: it logs a line with the time and RSS at
/// the end of each of its steps; the steps' durations are the gaps between them (the first
/// one from the moment the process was started).
fn plan_profile(
    o: &RunOptions,
    narward: &Path,
    data: &Path,
    scratch: &Path,
) -> (Value, Option<String>) {
    let out = scratch.join("plan-profile");
    let _ = std::fs::remove_dir_all(&out);
    let mut c = Command::new(narward);
    c.arg("--state")
        .arg(data.join("state"))
        .args(["-q", "plan", "--policy"])
        .arg(data.join("policy.toml"))
        .arg("--out")
        .arg(&out)
        .env("NARWARD_LOG", "debug")
        .env("NO_COLOR", "1");
    let lim = Limits {
        address_space: Some(o.mem_limit),
        stack: None,
        timeout: Some(Duration::from_secs_f64(o.max_minutes * 60.0 * 3.0)),
    };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let dir = scratch.join("plan-profile-run");
    let s = match measure::run(c, lim, &dir) {
        Ok(s) => s,
        Err(e) => return (Value::Null, Some(format!("{e:#}"))),
    };
    // The whole stderr: debug logging is a few lines per step.
    let err = strip_ansi(&std::fs::read_to_string(dir.join("stderr")).unwrap_or_default());
    let mut prev = t0;
    let mut phases = Vec::new();
    for l in err.lines() {
        let Some(i) = l.find("phase: ") else { continue };
        let rest = &l[i + 7..];
        let (name, rss) = match rest.rsplit_once(" rss_mib=") {
            Some((n, r)) => (n.trim(), r.trim().parse::<f64>().unwrap_or(0.0) * 1048576.0),
            None => (rest.trim(), 0.0),
        };
        let Some(ts) = l.split_whitespace().next().and_then(rfc3339) else {
            continue;
        };
        phases.push(serde_json::json!({
            "name": name, "wall_s": (ts - prev).max(0.0), "rss_end": rss,
        }));
        prev = ts;
    }
    let _ = std::fs::remove_dir_all(&out);
    let j = serde_json::json!({
        "phases": phases,
        "max_rss_bytes": s.max_rss_bytes,
        "wall_s": s.wall_s,
        "after_last_phase_s": (t0 + s.wall_s - prev).max(0.0),
    });
    let failed = (!s.ok()).then(|| failure_text(&s, &lim));
    (j, failed)
}

/// Whether `--only` asks for the throttling benchmark alone.
fn throttle_only(o: &RunOptions) -> bool {
    o.only
        .as_ref()
        .is_some_and(|v| !v.is_empty() && v.iter().all(|x| x == "throttle"))
}

/// The results already in `path` (`None` when there are none).
fn previous_results(path: &Path) -> Result<Option<Results>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| {
            format!("{}: not a narward-bench results file", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `--only throttle`: measure the throttling benchmark and merge it into the existing
/// results (every other row kept as it was), then render BENCHMARKS.md again.
fn run_throttle_only(o: &RunOptions) -> Result<Results> {
    let Some(mut res) = previous_results(&o.json)? else {
        bail!(
            "{} does not exist: `--only throttle` adds its section to existing results (run the benchmarks first)",
            o.json.display()
        );
    };
    let commit = out_of("git", &["rev-parse", "--short", "HEAD"]);
    progress("throttle: allowed request rate vs achieved, through the fault proxy");
    res.throttle = Some(crate::throttle::run(
        &o.throttle_rates,
        o.throttle_seconds,
        &o.command_line,
        &commit,
    )?);
    write_results(o, &res)?;
    Ok(res)
}

/// Context shared by every size of one run.
struct Ctx {
    narward: PathBuf,
    me: PathBuf,
    report_cmd: bool,
}

/// Why a size has no `file://` cache, when it has none.
fn file_skip_reason(o: &RunOptions, n: usize) -> Option<String> {
    (n > o.file_cache_max).then(|| {
        format!(
            "skipped: no file:// cache at this size (--file-cache-max {}); it would need {} files",
            size_label(o.file_cache_max),
            fmt_n(2 * n as u64)
        )
    })
}

/// The data already generated for size `n` that this run can use, if any.
fn reusable(o: &RunOptions, n: usize) -> Option<Summary> {
    let want = o.formats_at(n);
    let sign = n <= o.sign_max;
    Summary::read(&o.data_dir.join(format!("p{n}"))).filter(|s| {
        !o.regenerate
            && s.generator_version == generate::GENERATOR_VERSION
            && s.index_format_version == narward::index::FORMAT_VERSION
            && s.paths == n
            && s.seed == o.seed
            && s.signed == sign
            && s.formats.covers(&want)
    })
}

/// Size of the file system holding `p`.
fn disk_total(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: statvfs on a valid C string with a zeroed out-struct.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) == 0 {
            s.f_blocks as u64 * s.f_frsize as u64
        } else {
            0
        }
    }
}

/// Free bytes for an unprivileged writer in the file system holding `p`.
fn free_bytes(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: statvfs on a valid C string with a zeroed out-struct.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) == 0 {
            s.f_bavail as u64 * s.f_frsize as u64
        } else {
            0
        }
    }
}

/// Bytes per path of each part of the data, from the largest size already generated in
/// the data directory (so the estimate follows the index format), if any.
fn measured_rates(o: &RunOptions) -> Option<Summary> {
    let mut best: Option<Summary> = None;
    for e in std::fs::read_dir(&o.data_dir).ok()?.flatten() {
        let kept = std::fs::read_to_string(e.path().join(RATES_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<Summary>(&t).ok());
        if let Some(s) = Summary::read(&e.path()).or(kept)
            && s.generator_version == generate::GENERATOR_VERSION
            && s.index_format_version == narward::index::FORMAT_VERSION
            && best.as_ref().is_none_or(|b| s.paths > b.paths)
        {
            best = Some(s);
        }
    }
    best
}

/// What `--discard-data` keeps of a size: its `generated.json` under another name (so it
/// is not taken for data to reuse), whose bytes per path later disk checks use.
const RATES_FILE: &str = "discarded-generated.json";

/// Remove the data of one size but its [`RATES_FILE`].
fn discard(data: &Path) {
    let _ = std::fs::rename(data.join("generated.json"), data.join(RATES_FILE));
    if let Ok(rd) = std::fs::read_dir(data) {
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|f| f == RATES_FILE) {
                continue;
            }
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// Refuse, before anything is measured, a run whose data cannot fit on the disk: every
/// size to generate (or, with `--discard-data`, the largest one) plus its scratch space.
/// Without bytes per path measured at this index format (a `generated.json` in the data
/// directory), the built-in estimate only warns: the check before each size, which uses
/// the sizes generated by then, refuses.
fn check_disk(o: &RunOptions) -> Result<()> {
    let rates = measured_rates(o);
    let mut need = Vec::new();
    // Data that will be regenerated frees what it takes now.
    let mut replaced = 0u64;
    for &n in &o.sizes {
        if reusable(o, n).is_none() {
            need.push((
                n,
                generate::disk_estimate(n, &o.formats_at(n), rates.as_ref()),
            ));
            replaced += Summary::read(&o.data_dir.join(format!("p{n}")))
                .map_or(0, |s| s.disk_bytes.iter().map(|x| x.1).sum());
        }
    }
    let total = if o.discard_data {
        need.iter().map(|x| x.1).max().unwrap_or(0)
    } else {
        need.iter().map(|x| x.1).sum()
    };
    let free = free_bytes(&o.data_dir) + replaced;
    if total > free && rates.is_none() {
        progress(&format!(
            "warning: with built-in bytes per path, the data to generate would need ≈{:.1} GB and {:.1} GB are free; \
             nothing measured at this index format yet, so each size is checked before it is generated",
            total as f64 / 1e9,
            free as f64 / 1e9
        ));
        return Ok(());
    }
    if total > free {
        let parts: Vec<String> = need
            .iter()
            .map(|(n, b)| format!("{} ≈{:.1} GB", size_label(*n), *b as f64 / 1e9))
            .collect();
        bail!(
            "not enough disk in {}: the data to generate needs ≈{:.1} GB ({}{}), {:.1} GB are free. \
             Free space, pass --discard-data (each size's data is removed once measured), \
             select fewer contenders at the large sizes (--contenders-at), or use smaller --sizes",
            o.data_dir.display(),
            total as f64 / 1e9,
            parts.join(", "),
            if o.discard_data {
                "; the largest counts, --discard-data"
            } else {
                ""
            },
            free as f64 / 1e9
        );
    }
    Ok(())
}

/// Refuse to generate `n` paths when the generator's memory, scaled linearly from the
/// peak it reached at a size generated earlier (`rates`), exceeds the memory available:
/// the generator runs in this process without an address-space limit, and on a shared
/// machine running out would wake the kernel's OOM killer.
///
/// # Errors
/// The estimate exceeds `available` bytes.
fn check_generator_memory(n: usize, rates: Option<&Summary>, available: u64) -> Result<()> {
    let Some(r) = rates.filter(|r| r.peak_rss_bytes > 0 && r.paths > 0) else {
        return Ok(());
    };
    let est = r.peak_rss_bytes as f64 / r.paths as f64 * n as f64;
    if est > available as f64 {
        bail!(
            "generating {} paths would need ≈{:.1} GiB of memory ({:.0} B/path, as measured generating {}), \
             {:.1} GiB are available: the generator holds the object listing it hands to narward's \
             `cache_graph::build`; use a smaller size or a machine with more memory",
            size_label(n),
            est / (1u64 << 30) as f64,
            r.peak_rss_bytes as f64 / r.paths as f64,
            size_label(r.paths),
            available as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

/// The data of size `n`: reused or generated. Returns it, whether it was generated now,
/// and the seconds generation took (then or when it was generated).
fn data_for(o: &RunOptions, n: usize, data: &Path) -> Result<(Summary, bool, f64)> {
    if let Some(s) = reusable(o, n) {
        progress(&format!(
            "{}: reusing data in {}",
            size_label(n),
            data.display()
        ));
        let t = s.seconds.iter().map(|x| x.1).sum();
        return Ok((s, false, t));
    }
    let want = o.formats_at(n);
    // A file:// cache takes two inodes per path (narinfo + NAR stand-in).
    let inodes = free_inodes(&o.data_dir);
    if want.file && inodes < 2 * n as u64 + 100_000 {
        bail!(
            "{} free inodes in {}: a file:// cache of {} paths needs {}",
            inodes,
            o.data_dir.display(),
            n,
            2 * n
        );
    }
    let est = generate::disk_estimate(n, &want, measured_rates(o).as_ref());
    let free = free_bytes(&o.data_dir)
        + Summary::read(data).map_or(0, |s| s.disk_bytes.iter().map(|x| x.1).sum());
    if est > free {
        bail!(
            "not enough disk in {} for {} paths: ≈{:.1} GB needed, {:.1} GB free",
            o.data_dir.display(),
            size_label(n),
            est as f64 / 1e9,
            free as f64 / 1e9
        );
    }
    check_generator_memory(n, measured_rates(o).as_ref(), measure::mem_available())?;
    progress(&format!(
        "{}: generating into {}",
        size_label(n),
        data.display()
    ));
    let t = Instant::now();
    let s = generate::generate(&generate::Options {
        paths: n,
        seed: o.seed,
        out: data.to_path_buf(),
        formats: want,
        sign: n <= o.sign_max,
        corpus: o.corpus.clone(),
    })?;
    Ok((s, true, t.elapsed().as_secs_f64()))
}

/// The incremental row's setup, when that row runs at this size and there is a cache.
fn incremental_setup(
    o: &RunOptions,
    ctx: &Ctx,
    n: usize,
    data: &Path,
    g: &Summary,
    scratch: &Path,
) -> Option<Result<Prepared, String>> {
    if !g.formats.file || !o.selected(n, "narward-index-incremental") {
        return None;
    }
    progress(&format!(
        "{}: incremental index setup (hard-linked cache, full index, {} % changed)",
        size_label(n),
        o.incremental_percent
    ));
    let lim = Limits {
        address_space: Some(o.mem_limit),
        stack: None,
        timeout: Some(o.timeout_of("narward-index-incremental").0),
    };
    Some(
        incremental::prepare(
            &ctx.narward,
            &data.join("cache"),
            &scratch.join("incremental-setup"),
            o.incremental_percent,
            lim,
        )
        .map_err(|e| format!("{e:#}")),
    )
}

/// Generate (or reuse) the data of size `n` and measure every selected contender on it.
fn measure_size(
    o: &RunOptions,
    ctx: &Ctx,
    n: usize,
    previous: &mut HashMap<String, (usize, f64)>,
) -> Result<SizeResult> {
    let data = o.data_dir.join(format!("p{n}"));
    let scratch = o.data_dir.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let (g, fresh, gen_s) = data_for(o, n, &data)?;
    let generate_peak_rss_bytes = if fresh { g.peak_rss_bytes } else { 0 };
    if fresh {
        progress(&format!(
            "{}: generated in {:.1} min, peak RSS {:.1} GiB",
            size_label(n),
            gen_s / 60.0,
            generate_peak_rss_bytes as f64 / (1u64 << 30) as f64
        ));
    }
    let file_reason = if g.formats.file {
        None
    } else {
        file_skip_reason(o, n).or_else(|| Some("skipped: no file:// cache generated".into()))
    };
    let inc = incremental_setup(o, ctx, n, &data, &g, &scratch);
    let ts = tasks(o, &data, &g, ctx, file_reason, inc);
    // Probes run once per size.
    progress(&format!("{}: parse rate", size_label(n)));
    let mut pc = Command::new(&ctx.me);
    pc.args(["probe", "parse-rate", "--state"])
        .arg(data.join("state"))
        .arg("--corpus")
        .arg(&o.corpus);
    let pr = measure::run(pc, Limits::default(), &scratch.join("parse-rate"))?;
    let parse_rate = first_json(&pr.stdout);
    let load_before = loadavg();
    let results = run_tasks(o, n, &ts, &scratch, previous);
    for r in &results {
        if let Some(w) = &r.wall {
            previous.insert(r.id.clone(), (n, w.median));
        }
    }
    let (plan_profile, plan_profile_failed) = if o.selected(n, "narward-plan") {
        progress(&format!("{}: plan profile", size_label(n)));
        plan_profile(o, &ctx.narward, &data, &scratch)
    } else {
        (Value::Null, None)
    };
    let _ = std::fs::remove_dir_all(&scratch);
    if o.discard_data {
        progress(&format!(
            "{}: removing {} (--discard-data)",
            size_label(n),
            data.display()
        ));
        discard(&data);
    }
    Ok(SizeResult {
        paths: n,
        data_dir: data.display().to_string(),
        generated: g,
        generated_in_this_run: fresh,
        generate_s: gen_s,
        tasks: results,
        parse_rate,
        plan_profile,
        plan_profile_failed,
        load_before,
        load_after: loadavg(),
        size_s: 0.0,
        generate_peak_rss_bytes,
    })
}

/// Everything `run` does.
///
/// # Errors
/// Not enough disk; generation fails; the results cannot be written.
pub fn run(o: &RunOptions) -> Result<Results> {
    if throttle_only(o) {
        return run_throttle_only(o);
    }
    let carried = previous_results(&o.json)
        .ok()
        .flatten()
        .and_then(|r| r.throttle);
    let started = Instant::now();
    let started_unix = narward::index::now();
    std::fs::create_dir_all(&o.data_dir)?;
    check_disk(o)?;
    ensure_duckdb()?;
    let narward = narward_bin(&o.narward)?;
    let ctx = Ctx {
        report_cmd: has_report_command(&narward),
        narward,
        me: std::env::current_exe()?,
    };
    let mach = machine(&o.data_dir);
    let mut notes = Vec::new();
    if !ctx.report_cmd {
        notes.push("narward has no `report` command at this commit: the report row runs `narward audit` instead (signatures not judged).".to_string());
    }
    let mut sizes = Vec::new();
    let mut previous: HashMap<String, (usize, f64)> = HashMap::new();
    let mut res = Results {
        command: o.command_line.clone(),
        started_unix,
        total_s: 0.0,
        machine: mach,
        options: options_json(o),
        sizes: Vec::new(),
        notes,
        throttle: carried,
    };
    for &n in &o.sizes {
        let t = Instant::now();
        let mut sr = measure_size(o, &ctx, n, &mut previous)?;
        sr.size_s = t.elapsed().as_secs_f64();
        sizes.push(sr);
        progress(&format!(
            "{}: done in {:.1} min",
            size_label(n),
            t.elapsed().as_secs_f64() / 60.0
        ));
        // Write partial results after every size, so a long run is never lost.
        res.sizes = sizes.clone();
        res.total_s = started.elapsed().as_secs_f64();
        write_results(o, &res)?;
    }
    Ok(res)
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

fn options_json(o: &RunOptions) -> Value {
    serde_json::json!({
        "sizes": o.sizes, "runs": o.runs, "runs_large": o.runs_large, "seed": o.seed,
        "mem_limit_bytes": o.mem_limit, "duckdb_memory_limit": o.duckdb_mem, "threads": o.threads,
        "max_minutes": o.max_minutes, "file_cache_max": o.file_cache_max, "sign_max": o.sign_max,
        "single_run_after_s": o.single_run_after,
        "contenders_at": o.contenders_at, "timeouts_minutes": o.timeouts,
        "discard_data": o.discard_data, "incremental_percent": o.incremental_percent,
    })
}

pub fn write_results(o: &RunOptions, r: &Results) -> Result<()> {
    if let Some(d) = o.json.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&o.json, serde_json::to_string_pretty(r)?)?;
    std::fs::write(&o.out, crate::report::markdown(r, &o.json))?;
    progress(&format!(
        "wrote {} and {}",
        o.out.display(),
        o.json.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RunOptions {
        RunOptions {
            sizes: vec![100_000, 30_000_000],
            runs: 3,
            runs_large: 2,
            out: PathBuf::from("B.md"),
            json: PathBuf::from("r.json"),
            data_dir: PathBuf::from("/nonexistent"),
            seed: 1,
            mem_limit: 18 << 30,
            duckdb_mem: "16GB".into(),
            threads: 2,
            max_minutes: 10.0,
            file_cache_max: 1_000_000,
            single_run_after: 120.0,
            sign_max: 1_000_000,
            regenerate: false,
            narward: None,
            corpus: PathBuf::from("c"),
            only: None,
            command_line: String::new(),
            throttle_rates: vec![],
            throttle_seconds: 1.0,
            contenders_at: vec![
                parse_contenders_at(
                    "30m=narward-plan,narward-graph,narward-report,narward-audit,duckdb-closure",
                )
                .unwrap(),
            ],
            timeouts: vec![parse_timeout("duckdb-closure=20").unwrap()],
            discard_data: false,
            incremental_percent: 1.0,
        }
    }

    #[test]
    fn contenders_at_a_size_replace_the_selection_there_and_decide_its_data() {
        let o = opts();
        assert!(CONTENDERS.iter().all(|id| o.selected(100_000, id)));
        let at30: Vec<&str> = CONTENDERS
            .iter()
            .copied()
            .filter(|id| o.selected(30_000_000, id))
            .collect();
        assert!(at30.contains(&"narward-plan") && at30.contains(&"narward-audit"));
        assert!(at30.contains(&"duckdb-closure"));
        assert!(!at30.contains(&"duckdb-ingest-csv") && !at30.contains(&"nix-closure"));
        // 30 M needs the index and DuckDB's tables, no inventory and no file:// cache.
        let f = o.formats_at(30_000_000);
        assert!(f.index && f.parquet && !f.inventory && !f.file);
        let f = o.formats_at(100_000);
        assert!(f.index && f.parquet && f.inventory && f.file);
    }

    #[test]
    fn a_contender_time_limit_is_its_own_and_unknown_ids_are_refused() {
        let o = opts();
        assert_eq!(
            o.timeout_of("duckdb-closure"),
            (Duration::from_secs(1200), true)
        );
        assert_eq!(
            o.timeout_of("narward-plan"),
            (Duration::from_secs(1200), false)
        );
        assert!(parse_timeout("duckdb=x").is_err());
        assert!(parse_timeout("nonsense=5").is_err());
        assert!(parse_contenders_at("30m=nonsense").is_err());
        assert!(parse_contenders_at("30m").is_err());
    }

    #[test]
    fn a_timed_out_run_says_timed_out_and_its_limit() {
        let s = Sample {
            wall_s: 1201.0,
            timed_out: true,
            status: 137,
            ..Default::default()
        };
        let l = Limits {
            timeout: Some(Duration::from_secs(1200)),
            ..Default::default()
        };
        let t = failure_text(&s, &l);
        assert!(
            t.starts_with("timed out after 1201 s (its time limit is 20 min)"),
            "{t}"
        );
    }

    #[test]
    fn the_generator_refuses_a_size_whose_memory_would_exceed_what_is_available() {
        let d = tempfile::tempdir().unwrap();
        let s = generate::generate(&generate::Options {
            paths: 1000,
            seed: 1,
            out: d.path().to_path_buf(),
            formats: Formats::parse("index").unwrap(),
            sign: false,
            corpus: crate::corpus::default_path(),
        })
        .unwrap();
        assert!(s.peak_rss_bytes > 0, "the generator records its peak RSS");
        let per_path = s.peak_rss_bytes / 1000;
        assert!(check_generator_memory(1000, Some(&s), 1 << 40).is_ok());
        let e = check_generator_memory(30_000_000, Some(&s), per_path * 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("generating 30 M paths would need"), "{e}");
        // Nothing measured yet: nothing to judge by.
        assert!(check_generator_memory(30_000_000, None, 1).is_ok());
    }

    #[test]
    fn the_disk_check_refuses_a_run_that_cannot_fit() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts();
        o.data_dir = d.path().to_path_buf();
        o.sizes = vec![1_000_000_000_000];
        // Nothing measured yet: the built-in estimate only warns.
        assert!(check_disk(&o).is_ok());
        // Measured bytes per path (a size generated, then discarded) make it refuse.
        let data = d.path().join("p1000");
        generate::generate(&generate::Options {
            paths: 1000,
            seed: 1,
            out: data.clone(),
            formats: Formats::parse("index").unwrap(),
            sign: false,
            corpus: crate::corpus::default_path(),
        })
        .unwrap();
        discard(&data);
        let left: Vec<_> = std::fs::read_dir(&data).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the rates file is kept");
        assert!(
            Summary::read(&data).is_none(),
            "discarded data is not reused"
        );
        assert!(measured_rates(&o).is_some());
        let e = check_disk(&o).unwrap_err().to_string();
        assert!(
            e.contains("not enough disk") && e.contains("--discard-data"),
            "{e}"
        );
        o.sizes = vec![100_000];
        assert!(check_disk(&o).is_ok());
    }
}
