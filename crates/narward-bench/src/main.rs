//! `narward-bench generate|run|probe`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use narward_bench::{corpus, generate, parse_size, probes, run};
use std::path::PathBuf;
use std::process::ExitCode;

/// Synthetic Nix binary caches, and narward benchmarked side by side with DuckDB and Nix.
///
/// The one command that reproduces BENCHMARKS.md:
///
///   cargo run --release -p narward-bench -- run
#[derive(Parser, Debug)]
#[command(name = "narward-bench", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write a synthetic cache of N paths (index, file:// cache, S3 Inventory, Parquet,
    /// release roots and a policy).
    Generate {
        /// Number of store paths (100k, 1m, 10m…; at least 1000).
        #[arg(long, value_parser = parse_size)]
        paths: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Any of index, file, inventory, parquet (or all).
        #[arg(long, default_value = "all")]
        formats: String,
        /// Sign narinfos: always, never, or auto (up to 1 M paths).
        #[arg(long, default_value = "auto")]
        sign: String,
        /// The real narinfo corpus the distributions come from.
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
    /// Generate the data at every size, run every contender, write BENCHMARKS.md and
    /// bench/results.json.
    Run {
        /// Sizes in paths.
        #[arg(long, default_value = "100k,1m,10m", value_delimiter = ',', value_parser = parse_size)]
        sizes: Vec<usize>,
        /// Runs per contender (median, min, max are reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Runs per contender at 5 M paths and more.
        #[arg(long, default_value_t = 2)]
        runs_large: usize,
        /// The markdown report.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The JSON results.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where generated data lives (reused across runs when parameters match).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Address-space limit (RLIMIT_AS) for narward processes and probes, GiB: a step
        /// that needs more fails alone, with the size it reached.
        #[arg(long, default_value_t = 18)]
        mem_limit_gib: u64,
        /// DuckDB memory_limit.
        #[arg(long, default_value = "16GB")]
        duckdb_memory: String,
        /// DuckDB threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Skip a contender whose time, extrapolated from the previous size, exceeds this.
        #[arg(long, default_value_t = 10.0)]
        max_minutes: f64,
        /// Largest size that gets a file:// cache (two files per path).
        #[arg(long, default_value = "1m", value_parser = parse_size)]
        file_cache_max: usize,
        /// A contender whose first run at a size takes longer than this many seconds runs
        /// only once there.
        #[arg(long, default_value_t = 120.0)]
        single_run_after: f64,
        /// Largest size whose narinfos are signed.
        #[arg(long, default_value = "1m", value_parser = parse_size)]
        sign_max: usize,
        /// Regenerate data even when a matching one exists.
        #[arg(long)]
        regenerate: bool,
        /// The narward binary (default: built with cargo, next to this binary).
        #[arg(long)]
        narward: Option<PathBuf>,
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Only contenders whose id starts with one of these (comma-separated).
        /// `--only throttle` alone runs the throttling benchmark (moto + fault proxy; no
        /// generated data) and merges it into the existing results.
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// Allowed request rates (requests/s) of the throttling benchmark.
        #[arg(long, default_value = "50,200,800", value_delimiter = ',')]
        throttle_rates: Vec<f64>,
        /// Seconds of requests per allowed rate in the throttling benchmark.
        #[arg(long, default_value_t = 20.0)]
        throttle_seconds: f64,
        /// Contenders at one size, replacing --only there: SIZE=ID,ID… (id prefixes;
        /// repeatable), e.g. `--contenders-at 30m=narward-plan,narward-graph,duckdb-closure`.
        #[arg(long, value_parser = run::parse_contenders_at)]
        contenders_at: Vec<(usize, Vec<String>)>,
        /// A contender's time limit in minutes: ID=MINUTES (id prefix; repeatable), e.g.
        /// `--timeout duckdb-closure=20`. Default: twice --max-minutes. A contender given
        /// one is never skipped by estimate; past it, it is killed and reported as timed out.
        #[arg(long = "timeout", value_parser = run::parse_timeout)]
        timeouts: Vec<(String, f64)>,
        /// Remove each size's generated data once it has been measured (when the disk
        /// cannot hold every size at once; the disk check then counts the largest size).
        #[arg(long)]
        discard_data: bool,
        /// Percent of narinfos new or changed in the incremental index row.
        #[arg(long, default_value_t = 1.0)]
        incremental_percent: f64,
    },
    /// Write BENCHMARKS.md again from a results.json (after changing the report layout).
    Render {
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// In-process measurements the harness runs as child processes.
    #[command(hide = true)]
    Probe {
        #[command(subcommand)]
        probe: Probe,
    },
}

#[derive(Subcommand, Debug)]
enum Probe {
    ParseRate {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long, default_value_t = 200_000)]
        sample: usize,
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    Closure {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        policy: PathBuf,
    },
    Ingest {
        #[arg(long)]
        manifest: PathBuf,
    },
}

fn workspace_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&p).unwrap_or(p)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("narward-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Generate {
            paths,
            out,
            seed,
            formats,
            sign,
            corpus: c,
        } => {
            let sign = match sign.as_str() {
                "always" => true,
                "never" => false,
                "auto" => paths <= 1_000_000,
                s => anyhow::bail!("--sign {s:?}: always, never or auto"),
            };
            let s = generate::generate(&generate::Options {
                paths,
                seed,
                out,
                formats: generate::Formats::parse(&formats)?,
                sign,
                corpus: c.unwrap_or_else(corpus::default_path),
            })?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Cmd::Run {
            sizes,
            runs,
            runs_large,
            out,
            json,
            data_dir,
            seed,
            mem_limit_gib,
            duckdb_memory,
            threads,
            max_minutes,
            file_cache_max,
            single_run_after,
            sign_max,
            regenerate,
            narward,
            corpus: c,
            only,
            throttle_rates,
            throttle_seconds,
            contenders_at,
            timeouts,
            discard_data,
            incremental_percent,
        } => {
            let root = workspace_root();
            let o = run::RunOptions {
                sizes,
                runs: runs.max(1),
                runs_large: runs_large.max(1),
                out: out.unwrap_or_else(|| root.join("BENCHMARKS.md")),
                json: json.unwrap_or_else(|| root.join("bench/results.json")),
                data_dir: data_dir.unwrap_or_else(|| root.join("target/narward-bench")),
                seed,
                mem_limit: mem_limit_gib << 30,
                duckdb_mem: duckdb_memory,
                threads: threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |p| p.get())),
                max_minutes,
                file_cache_max,
                single_run_after,
                sign_max,
                regenerate,
                narward,
                corpus: c.unwrap_or_else(corpus::default_path),
                only,
                throttle_rates,
                throttle_seconds,
                contenders_at,
                timeouts,
                discard_data,
                incremental_percent,
                command_line: {
                    let a: Vec<String> = std::env::args().skip(1).collect();
                    format!("narward-bench {}", a.join(" "))
                },
            };
            run::run(&o)?;
        }
        Cmd::Render { json, out } => {
            let root = workspace_root();
            let json = json.unwrap_or_else(|| root.join("bench/results.json"));
            let out = out.unwrap_or_else(|| root.join("BENCHMARKS.md"));
            let r: run::Results = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
            std::fs::write(&out, narward_bench::report::markdown(&r, &json))?;
        }
        Cmd::Probe { probe } => {
            let v = match probe {
                Probe::ParseRate {
                    state,
                    corpus: c,
                    sample,
                    seconds,
                } => probes::parse_rate(
                    &state,
                    &c.unwrap_or_else(corpus::default_path),
                    sample,
                    seconds,
                )?,
                Probe::Closure { state, policy } => probes::closure(&state, &policy)?,
                Probe::Ingest { manifest } => probes::ingest(&manifest)?,
            };
            println!("{}", serde_json::to_string(&v)?);
        }
    }
    Ok(())
}
