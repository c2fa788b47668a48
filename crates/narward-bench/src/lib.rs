//! narward-bench: synthetic Nix binary caches of realistic shape at any size, and a harness
//! that runs narward, DuckDB and Nix on the same data and writes `BENCHMARKS.md`.
//!
//! | module | job |
//! |---|---|
//! | [`corpus`] | the real narinfo corpus every distribution is drawn from |
//! | [`model`] | the DAG: core paths, packages over 50 releases, garbage |
//! | [`generate`] | writing it as a narward index, a `file://` cache, S3 Inventory, Parquet, roots + policy |
//! | [`incremental`] | the incremental `narward index` row's changed cache (hard links, 1 % new/changed) |
//! | [`measure`] | child processes: wall time, peak RSS (`wait4`), limits |
//! | [`probes`] | in-process measurements (parse rate, streamed graph, inventory ingest, plan phases) |
//! | [`contenders`] | the DuckDB scripts |
//! | [`run`] | the `run` command: every size, every contender, results |
//! | [`report`] | `BENCHMARKS.md` from the results |
//! | [`throttle`] | achieved vs allowed request rate against a throttled S3 endpoint (moto + fault proxy) |

pub mod contenders;
pub mod corpus;
pub mod generate;
pub mod incremental;
pub mod measure;
pub mod model;
pub mod probes;
pub mod report;
pub mod rng;
pub mod run;
pub mod throttle;

/// Parse `100k`, `1m`, `10M`, `2500`.
///
/// # Errors
/// Not a number with an optional k/m suffix.
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    let t = s.trim().to_ascii_lowercase().replace('_', "");
    let (num, mul) = if let Some(x) = t.strip_suffix('k') {
        (x, 1_000)
    } else if let Some(x) = t.strip_suffix('m') {
        (x, 1_000_000)
    } else {
        (t.as_str(), 1)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a size (e.g. 100k, 1m, 2500)"))?;
    Ok((v * mul as f64).round() as usize)
}
