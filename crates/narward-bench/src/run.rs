//! `narward-bench run`: generate the data at every size, run every contender on it in the
//! same run, and write `BENCHMARKS.md` and `bench/results.json`.

use crate::contenders::{DUCKDB_CLOSURE_PY, DUCKDB_INVENTORY_PY};
use crate::generate::{self, Formats, Summary, progress};
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
    narward: &Path,
    me: &Path,
    report_cmd: bool,
    has_file_cache: Option<String>,
) -> Vec<Task> {
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
    if let Some(only) = &o.only {
        v.retain(|t| only.iter().any(|x| t.id.starts_with(x.as_str())));
    }
    v
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
        format!("killed after {:.0} s (time limit)", s.wall_s)
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
    size: usize,
    tasks: &[Task],
    scratch: &Path,
    previous: &HashMap<String, (usize, f64)>,
    max_minutes: f64,
    single_run_after: f64,
) -> Vec<TaskResult> {
    let mut results: Vec<TaskResult> = tasks
        .iter()
        .map(|t| {
            // narward itself is never skipped by estimate (its time limit still applies):
            // how it fares at the largest size is the point of the benchmark.
            let estimable = !t.tool.starts_with("narward");
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

/// Everything `run` does.
///
/// # Errors
/// Generation fails; the results cannot be written.
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
    ensure_duckdb()?;
    let narward = narward_bin(&o.narward)?;
    let me = std::env::current_exe()?;
    let report_cmd = has_report_command(&narward);
    let mach = machine(&o.data_dir);
    let mut notes = Vec::new();
    if !report_cmd {
        notes.push("narward has no `report` command at this commit: the report row runs `narward audit` instead (signatures not judged).".to_string());
    }
    let mut sizes = Vec::new();
    let mut previous: HashMap<String, (usize, f64)> = HashMap::new();
    for &n in &o.sizes {
        let data = o.data_dir.join(format!("p{n}"));
        let scratch = o.data_dir.join("scratch");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        // A file:// cache takes two inodes per path (narinfo + NAR stand-in).
        let inodes = free_inodes(&o.data_dir);
        let file_skip = if n > o.file_cache_max {
            Some(format!(
                "skipped: no file:// cache at this size (--file-cache-max {}); it would need {} files",
                size_label(o.file_cache_max),
                fmt_n(2 * n as u64)
            ))
        } else {
            None
        };
        let want = Formats {
            index: true,
            file: file_skip.is_none(),
            inventory: true,
            parquet: true,
        };
        let sign = n <= o.sign_max;
        let existing = Summary::read(&data).filter(|s| {
            s.generator_version == generate::GENERATOR_VERSION
                && s.paths == n
                && s.seed == o.seed
                && s.signed == sign
                && s.formats.covers(&want)
        });
        let (g, fresh, gen_s) = match existing {
            Some(s) if !o.regenerate => {
                progress(&format!(
                    "{}: reusing data in {}",
                    size_label(n),
                    data.display()
                ));
                let t = s.seconds.iter().map(|x| x.1).sum();
                (s, false, t)
            }
            _ => {
                if want.file && inodes < 2 * n as u64 + 100_000 {
                    bail!(
                        "{} free inodes in {}: a file:// cache of {} paths needs {}",
                        inodes,
                        o.data_dir.display(),
                        n,
                        2 * n
                    );
                }
                progress(&format!(
                    "{}: generating into {}",
                    size_label(n),
                    data.display()
                ));
                let t = Instant::now();
                let s = generate::generate(&generate::Options {
                    paths: n,
                    seed: o.seed,
                    out: data.clone(),
                    formats: want,
                    sign,
                    corpus: o.corpus.clone(),
                })?;
                (s, true, t.elapsed().as_secs_f64())
            }
        };
        let file_reason = if g.formats.file {
            None
        } else {
            file_skip.clone()
        };
        let ts = tasks(o, &data, &g, &narward, &me, report_cmd, file_reason);
        // Probes run once per size.
        progress(&format!("{}: parse rate", size_label(n)));
        let mut pc = Command::new(&me);
        pc.args(["probe", "parse-rate", "--state"])
            .arg(data.join("state"))
            .arg("--corpus")
            .arg(&o.corpus);
        let pr = measure::run(pc, Limits::default(), &scratch.join("parse-rate"))?;
        let parse_rate = first_json(&pr.stdout);
        let load_before = loadavg();
        let results = run_tasks(
            n,
            &ts,
            &scratch,
            &previous,
            o.max_minutes,
            o.single_run_after,
        );
        for r in &results {
            if let Some(w) = &r.wall {
                previous.insert(r.id.clone(), (n, w.median));
            }
        }
        progress(&format!("{}: plan profile", size_label(n)));
        let (plan_profile, plan_profile_failed) = plan_profile(o, &narward, &data, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        sizes.push(SizeResult {
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
        });
        // Write partial results after every size, so a long run is never lost.
        let res = Results {
            command: o.command_line.clone(),
            started_unix,
            total_s: started.elapsed().as_secs_f64(),
            machine: mach.clone(),
            options: options_json(o),
            sizes: sizes.clone(),
            notes: notes.clone(),
            throttle: carried.clone(),
        };
        write_results(o, &res)?;
    }
    let res = Results {
        command: o.command_line.clone(),
        started_unix,
        total_s: started.elapsed().as_secs_f64(),
        machine: mach,
        options: options_json(o),
        sizes,
        notes,
        throttle: carried,
    };
    write_results(o, &res)?;
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
