//! `narward access-logs ingest LOGS...`.

use super::{Global, print_json};
use anyhow::Result;
use clap::{Args, Subcommand};
use narward::access::store;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct AccessLogsArgs {
    #[command(subcommand)]
    pub action: AccessLogsAction,
}

#[derive(Subcommand, Debug)]
pub enum AccessLogsAction {
    /// Read S3 server access log files (or every file under directories) into the access
    /// statistics of the state directory (`<state>/access/`): per key the last successful
    /// read, the number of reads (GET/HEAD), hits (200/206/304) and misses (404), and the
    /// misses per day.
    ///
    /// Incremental: a file already read is skipped when its size and mtime are unchanged;
    /// when it only grew, its new lines are read; any other change is reported and the
    /// file is not read again (its lines were counted). Malformed lines are counted and the
    /// first few shown with file:line; they never fail the run. Logs must be local files
    /// (download them first, e.g. `aws s3 sync s3://LOG-BUCKET/PREFIX logs/`): reading
    /// them from s3:// directly is not implemented yet.
    Ingest {
        /// Log files or directories.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Record as if now were this unix time (tests).
        #[arg(long, hide = true)]
        now: Option<i64>,
    },
}

pub fn run(g: &Global, a: AccessLogsArgs) -> Result<ExitCode> {
    let AccessLogsAction::Ingest { logs, now } = a.action;
    for l in &logs {
        if l.to_str().is_some_and(|s| s.starts_with("s3://")) {
            anyhow::bail!(
                "{}: reading access logs from s3:// is not implemented yet; download them first (aws s3 sync) and pass the directory",
                l.display()
            );
        }
    }
    let now = now.unwrap_or_else(narward::index::now);
    let (stats, rep) = store::ingest(&g.state, &logs, now)?;
    for w in rep.warnings() {
        eprintln!("narward: warning: {w}");
    }
    if g.json {
        print_json(&serde_json::json!({
            "ingest": rep,
            "keys": stats.keys.len(),
            "lines_total": stats.lines,
            "malformed_total": stats.malformed,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "access logs: {} files read, {} appended, {} unchanged, {} changed (not re-read)",
        rep.files_read,
        rep.files_appended,
        rep.files_unchanged,
        rep.files_changed.len()
    );
    println!(
        "  {} lines: {} reads ({} hits, {} misses), {} malformed",
        rep.lines, rep.reads, rep.hits, rep.misses, rep.malformed
    );
    println!(
        "  stored in {}: {} keys, {} lines in all",
        store::access_dir(&g.state).display(),
        stats.keys.len(),
        stats.lines
    );
    Ok(ExitCode::SUCCESS)
}
