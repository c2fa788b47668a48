//! Command-line definitions and the glue from flags to library calls.
//!
//! Exit codes: 0 success; 1 the command worked and found problems (audit errors, a plan
//! that refuses to apply); 2 bad input or a failure (the message names the input).

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use narward::audit;
use narward::cache::{Cache, CacheUrl, S3Timeouts};
use narward::index::{self, Index, ListingSource};
use narward::inventory::{self, CacheScope, ManifestLocation};
use narward_formats::signature::PublicKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod access_cmd;
mod apply_cmd;
mod batch_export_cmd;
mod plan_cmd;
mod report_cmd;
mod restore_cmd;
mod restore_exec;
mod verify_cmd;

/// Index, audit, plan and garbage-collect Nix binary caches in S3 (or file:// directories).
///
/// narward keeps its state (the index of a cache, plans' journals, access statistics) in one
/// directory, `./.narward` by default. Computing audits, plans and reports reads only that
/// state; `index` and `verify` read the cache; only `apply`, `recover` and `restore` change
/// it, each after `--confirm` with the cache's name, journaled and resumable.
#[derive(Parser, Debug)]
#[command(
    name = "narward",
    version,
    about,
    long_about,
    max_term_width = 100,
    after_long_help = "Typical use:
  narward index --cache 's3://nix-cache?region=us-east-1'
  narward audit --trusted-key cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=
  narward plan --policy policy.toml --out plans/today
  narward why /nix/store/<hash>-<name> --plan plans/today
  narward report --plan plans/today --out report/
  narward apply plans/today --dry-run
  narward apply plans/today --confirm nix-cache
  narward recover /nix/store/<hash>-<name>
  narward batch-export plans/today --out jobs/    # the plan as S3 Batch Operations jobs
  narward verify                                  # is what clients see whole?

Exit status: 0 success; 1 the command worked and found problems (audit errors);
2 bad input or a failure (the message names the input and the place).

Environment: NARWARD_STATE (state directory), NARWARD_LOG (log filter, e.g. debug),
NARWARD_S3_CONNECT_TIMEOUT / NARWARD_S3_READ_TIMEOUT (seconds, see index --help),
AWS_* (the standard AWS credential chain and region)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// State directory holding the index, plans and journals.
    #[arg(long, global = true, env = "NARWARD_STATE", default_value = ".narward")]
    pub state: PathBuf,
    /// Machine-readable JSON on stdout instead of text (progress bars are hidden).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List a cache (or read an S3 Inventory report) and fetch every new or changed narinfo
    /// into the index.
    ///
    /// The first run fetches every narinfo; later runs fetch only narinfos whose key is new
    /// or whose ETag or size changed, and drop the ones that are gone. Narinfos that cannot
    /// be fetched or parsed are kept as "present but unknown": nothing downstream treats
    /// them as absent.
    Index(IndexArgs),
    /// Check the indexed cache: signatures, unparseable narinfos, narinfos whose StorePath
    /// is not the path their file name names, missing or archived NARs, URLs with white
    /// space around them or pointing outside the cache, orphan NARs, closure holes, size
    /// mismatches (FileSize; NarSize of uncompressed NARs), shared NARs, dangling
    /// .ls/debuginfo, and nix-cache-info (present, readable, StoreDir /nix/store).
    /// A NAR no narinfo names is an orphan only when no narinfo's NAR is unknown (then
    /// it is reported apart: plans keep it). Reads the index's columns, as plan does.
    ///
    /// Exits with status 1 when it finds integrity errors, so it can gate a cron job.
    Audit(AuditArgs),
    /// Write the index as Parquet tables (zstd) for DuckDB, Athena, polars or pandas.
    ///
    /// objects.parquet: key, category, size, etag, last_modified (timestamp UTC), storage_class,
    /// link_target (a file:// symlink's target key).
    /// narinfos.parquet: key, hash, store_path, name, url, compression, file_hash, file_size,
    /// nar_hash, nar_size, deriver, ca, signatures (count), references (count), error (set, with
    /// the other fields empty, when the narinfo does not parse).
    /// references.parquet: referrer (hash), reference (hash), reference_path.
    /// Hashes are 32-character nix32 store-path hashes; file_hash/nar_hash are sha256:<nix32>.
    Export(ExportArgs),
    /// Print the indexed store paths (like `nix path-info --json --all`).
    Paths,
    /// Compute a plan from a policy (`plan --policy P --out DIR`), or read plans back
    /// (`plan show DIR`, `plan diff A B`).
    ///
    /// A plan gives every object of the cache one decision — keep, archive or delete — and
    /// the reason for it. It is immutable and checksummed, bound to the cache and the index
    /// generation it was computed from, and comes with manifests (S3 Batch Operations CSV
    /// for s3:// caches, and Parquet). Computing a plan changes nothing in the cache.
    ///
    /// A plan is refused (exit 2, nothing written) when the policy names no root, when none
    /// or fewer than `roots.min_found_fraction` (default 0.5) of its roots are in the cache
    /// (see --allow-few-roots), or when the cache lists no narinfo (see --allow-empty-cache).
    /// Reading a plan back checks that neither plan.json nor any other file of it was
    /// edited, added or removed.
    Plan(PlanArgs),
    /// Explain the fate of a store path (full path, base name or hash) or object key in a
    /// plan: for a kept path the chain root → … → path, for a removed one the rule that
    /// removed it and its referrers.
    Why(WhyArgs),
    /// Write a report of the indexed cache for the people who pay for it: report.html (one
    /// self-contained page with inline SVG charts, no network needed to view it), report.json
    /// (the same data) and report.md (a short summary).
    ///
    /// The report shows the monthly storage bill by storage class and by kind of object;
    /// growth per month from last-modified dates, with a 24-month projection from a stated
    /// least-squares fit (linear or exponential, with its R²); the size distribution, the
    /// largest store paths and bytes per name family; with --policy, the closure of each root
    /// source (e.g. each release) and what it shares with the others; with --plan (repeatable),
    /// each plan's monthly saving, one-time cost (transitions, early deletion) and months to
    /// break even, side by side; the break-even object size per archive class; and, when the
    /// state directory has access statistics (`narward access-logs ingest`), hit and miss
    /// rates per kind of object.
    ///
    /// Prices come from the built-in AWS S3 us-east-1 table unless --pricing names another.
    /// Totals equal the index's. Nothing in the cache is read or changed.
    Report(report_cmd::ReportArgs),
    /// Carry out a plan on its cache: hide, archive, quarantine — journaled, resumable,
    /// reversible.
    ///
    /// Before acting, apply refreshes the index and re-checks every object the plan
    /// removes: anything whose size or ETag changed, or that vanished, is skipped and
    /// reported; a removed path that a narinfo uploaded since the plan references (directly
    /// or through other removed paths) is kept with all its objects.
    ///
    /// Then, in this order: (1) hide: every removed .narinfo and .ls is copied byte for
    /// byte to the archive area (archived paths) or the quarantine area (deleted paths),
    /// verified, and deleted from the cache, so a client never sees a narinfo whose NAR is
    /// gone; (2) archive: NARs move to the archive storage class (in place on S3) or the
    /// archive directory (file://), verified before the source is deleted; (3) quarantine:
    /// deleted objects move to the quarantine area under `<unix-time>/`. A NAR moves only
    /// when every narinfo naming it is gone from the cache.
    ///
    /// Every batch of steps is journaled in the state directory
    /// (`apply/<plan-checksum>/journal`) before it runs and marked done after, so
    /// `--resume` finishes an interrupted apply with the same end result. Nothing is
    /// deleted for good until `--finalize`, after the grace window (30 days by default).
    Apply(apply_cmd::ApplyArgs),
    /// Undo the removal of a store path: bring it back from the quarantine (or file://
    /// archive) area into the cache, NAR first, then the narinfo.
    Recover(apply_cmd::RecoverArgs),
    /// Re-read the live cache and check that what clients see is whole.
    ///
    /// Independently of any index or plan: every visible narinfo parses; its NAR is listed
    /// and readable (not in GLACIER/DEEP_ARCHIVE unless a restored copy is available); every
    /// reference has a visible narinfo (closures are complete). Exits with status 1 and
    /// names every problem when one is found, 0 when the cache is clean. Run it after every
    /// apply.
    Verify(verify_cmd::VerifyArgs),
    /// Write a plan's work on an s3:// cache as S3 Batch Operations jobs, phase by phase.
    ///
    /// The phases run in the safe order: hide narinfos, then transition NARs, then
    /// quarantine deleted objects. Per job a CSV manifest and the CreateJob request
    /// (job.json); plus lifecycle.json (Batch Operations cannot delete: tagged objects are
    /// expired by a lifecycle rule) and README.txt, which says what to fill in and that each
    /// phase must finish before the next starts. Reads the plan only; changes nothing.
    BatchExport(batch_export_cmd::BatchExportArgs),
    /// S3 server access logs: `access-logs ingest LOGS...` keeps per-key reads, hits and
    /// misses in the state directory (for `restore --from-demand` and the report).
    AccessLogs(access_cmd::AccessLogsArgs),
    /// Get archived and quarantined store paths back: `restore PATH... [--closure]` (or
    /// `--roots FILE`) prints the cost and time per retrieval tier (`--dry-run` stops
    /// there), then with `--confirm NAME` requests each cold NAR once (journaled) and
    /// republishes what is readable, NARs first, then narinfos, references first;
    /// `restore status [--wait]` follows up; `--resume` continues after a crash;
    /// `restore --from-demand` proposes what the restoration policy restores on demand as
    /// a reviewable artifact, `restore show DIR` prints one, `--proposal DIR --confirm NAME`
    /// executes it.
    Restore(restore_cmd::RestoreArgs),
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PlanArgs {
    #[command(subcommand)]
    pub action: Option<PlanAction>,
    /// The policy file (TOML; see examples/policy.toml).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Directory to write the plan into (must not exist or be empty).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the plan even if the policy names no roots, none of its roots is in the cache,
    /// or fewer than `roots.min_found_fraction` (default 0.5) of them are: such a plan
    /// removes everything no keep rule protects, so it is refused without this flag.
    #[arg(long)]
    pub allow_few_roots: bool,
    /// Write the plan even if the cache lists no narinfo at all (usually a wrong cache URL
    /// or prefix, whose every NAR would look like an orphan).
    #[arg(long)]
    pub allow_empty_cache: bool,
    /// Compute as if now were this unix time (for reproducible plans and tests).
    #[arg(long, hide = true)]
    pub now: Option<i64>,
    /// A pricing table (TOML) for the cost section instead of the built-in AWS S3 us-east-1
    /// prices; see crates/narward/pricing/aws-us-east-1.toml for the format.
    #[arg(long, global = true, value_name = "FILE")]
    pub pricing: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum PlanAction {
    /// Print a plan's summary: roots, decisions per kind of object, bytes, costs.
    Show {
        /// The plan directory.
        plan: PathBuf,
    },
    /// What changes between plan A and plan B: counts and bytes per move, largest paths.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// How many of the largest moved paths to list.
        #[arg(long, default_value_t = 20)]
        top: usize,
    },
}

#[derive(Args, Debug)]
pub struct WhyArgs {
    /// /nix/store/<hash>-<name>, <hash>-<name>, <hash>, or an object key.
    pub path: String,
    /// The plan directory.
    #[arg(long)]
    pub plan: PathBuf,
}

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// The cache: file:///DIR, a directory, or s3://BUCKET[/PREFIX]?endpoint=URL&region=R&profile=P.
    /// Defaults to the cache the state directory already indexes.
    #[arg(long)]
    pub cache: Option<String>,
    /// Take the object listing from this S3 Inventory manifest.json (local path or
    /// s3://BUCKET/KEY?endpoint=…) instead of listing the bucket. The manifest must be of
    /// the cache's bucket and every data file must match its MD5checksum; a row of another
    /// bucket fails the run; rows outside the cache's prefix are ignored and counted.
    #[arg(long)]
    pub inventory: Option<String>,
    /// How many narinfos to fetch at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Attempts per S3 request (exponential backoff with jitter between them).
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
    /// Seconds to wait for a connection to the S3 endpoint (per attempt).
    #[arg(
        long,
        env = "NARWARD_S3_CONNECT_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECS"
    )]
    pub s3_connect_timeout: f64,
    /// Seconds to wait for an S3 response to start (per attempt): an endpoint that accepts
    /// the connection and never answers fails the run after this.
    #[arg(
        long,
        env = "NARWARD_S3_READ_TIMEOUT",
        default_value_t = 60.0,
        value_name = "SECS"
    )]
    pub s3_read_timeout: f64,
}

impl IndexArgs {
    /// The timeouts given, checked.
    fn timeouts(&self) -> Result<S3Timeouts> {
        let secs = |v: f64, flag: &str| {
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(std::time::Duration::from_secs_f64(v))
            } else {
                bail!("{flag} {v}: expected seconds between 0 and 86400")
            }
        };
        Ok(S3Timeouts {
            connect: secs(self.s3_connect_timeout, "--s3-connect-timeout")?,
            read: secs(self.s3_read_timeout, "--s3-read-timeout")?,
        })
    }
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// A trusted public key, NAME:BASE64 (repeatable). Without one, signatures are not judged.
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<String>,
    /// A file of trusted public keys, one per line (blank lines and # comments ignored).
    #[arg(long)]
    pub trusted_keys_file: Option<PathBuf>,
    /// How many examples to show per finding (counts are always exact).
    #[arg(long, default_value_t = 20)]
    pub max_examples: usize,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Directory to write objects.parquet, narinfos.parquet and references.parquet into.
    #[arg(long)]
    pub parquet: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    narward::progress::set_quiet(cli.global.quiet || cli.global.json);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NARWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("narward: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("narward: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Index(a) => cmd_index(g, a).await,
        Command::Audit(a) => cmd_audit(g, a),
        Command::Export(a) => {
            let (idx, view) = Index::load_view(&g.state)?;
            let graph = view.graph()?;
            let st = narward::export::export_parquet(&view.snapshot(&idx, &graph), &a.parquet)?;
            if g.json {
                print_json(&st)?;
            } else {
                println!(
                    "wrote {} objects, {} narinfos, {} references to {}",
                    st.objects,
                    st.narinfos,
                    st.references,
                    a.parquet.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(a) => plan_cmd::run(g, a),
        Command::Why(a) => plan_cmd::why(g, a),
        Command::Report(a) => report_cmd::run(g, a),
        Command::Apply(a) => apply_cmd::run(g, a).await,
        Command::Recover(a) => apply_cmd::recover_cmd(g, a).await,
        Command::Verify(a) => verify_cmd::run(g, a).await,
        Command::BatchExport(a) => batch_export_cmd::run(g, a),
        Command::AccessLogs(a) => access_cmd::run(g, a),
        Command::Restore(a) => restore_cmd::run(g, a).await,
        Command::Paths => {
            let (idx, view) = Index::load_view(&g.state)?;
            let graph = view.graph()?;
            print_json(&narward::paths::path_infos(&view.snapshot(&idx, &graph)))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The cache URL: the flag, or the one the state already indexes.
pub fn cache_url_or_state(flag: Option<&str>, state: &Path) -> Result<String> {
    if let Some(c) = flag {
        return Ok(c.to_string());
    }
    if Index::exists(state) {
        return Ok(Index::load_meta(state)?.cache_url);
    }
    bail!("no --cache given and no index in {}", state.display())
}

/// What `index --json` prints: the index's meta.json plus what deserves attention.
#[derive(serde::Serialize)]
struct IndexOutput<'a> {
    #[serde(flatten)]
    meta: &'a index::IndexMeta,
    /// Inventory rows whose key lies outside the cache's prefix (ignored); 0 for a listing.
    inventory_outside_prefix: u64,
    warnings: Vec<String>,
}

async fn cmd_index(g: &Global, a: IndexArgs) -> Result<ExitCode> {
    let url_text = cache_url_or_state(a.cache.as_deref(), &g.state)?;
    let mut url = CacheUrl::parse(&url_text)?;
    let timeouts = a.timeouts()?;
    if let CacheUrl::S3(o) = &mut url {
        o.timeouts = timeouts;
    }
    let cache = Cache::open(&url, a.max_attempts).await?;
    let mut warnings = Vec::new();
    let (source, outside_prefix) = match &a.inventory {
        None => (ListingSource::Live, 0),
        Some(loc) => inventory_source(loc, &url, &a, timeouts, &mut warnings).await?,
    };
    let (meta, st) =
        index::update(&g.state, &url_text, &url, &cache, source, a.concurrency).await?;
    warnings.extend(versioning_warning(&meta));
    if st.listed == 0 {
        warnings.push(format!(
            "the listing of {} is empty: check the bucket and prefix (a typo'd or percent-encoded prefix lists nothing)",
            meta.cache
        ));
    }
    for w in &warnings {
        eprintln!("narward: warning: {w}");
    }
    if g.json {
        print_json(&IndexOutput {
            meta: &meta,
            inventory_outside_prefix: outside_prefix,
            warnings,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "indexed {} (generation {}): {} objects, {} narinfos ({} unparseable)",
        meta.cache, meta.generation, meta.objects, meta.narinfos, meta.unparseable
    );
    println!(
        "  fetched {}, reused {}, dropped {}, fetch errors {}, changed beyond signatures {}",
        st.fetched, st.reused, st.dropped, st.fetch_errors, st.changed
    );
    if a.inventory.is_some() {
        println!("  inventory rows outside the cache's prefix (ignored): {outside_prefix}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A warning when the index does not know the bucket's versioning, or knows the bucket
/// keeps versions the listing does not show (then bills are lower bounds).
fn versioning_warning(meta: &index::IndexMeta) -> Option<String> {
    use narward::model::VersioningState as V;
    let v = meta.versioning.as_ref()?;
    match (v.state, &v.noncurrent) {
        (V::Unknown, _) => Some(format!(
            "the bucket's versioning is {}: plans treat deletes as delete markers and claim no saving from them until noncurrent versions expire",
            v.source
        )),
        (V::Enabled | V::Suspended, None) => Some(format!(
            "bucket versioning is {}: a live listing does not list noncurrent versions, so bills count current objects only (a lower bound); index from an S3 Inventory of all versions to count them",
            v.state.as_str()
        )),
        _ => None,
    }
}

/// Read the inventory at `loc` as the listing of the cache `url`; returns it and the
/// number of rows outside the cache's prefix (also added to `warnings` when not 0).
async fn inventory_source(
    loc: &str,
    url: &CacheUrl,
    a: &IndexArgs,
    timeouts: S3Timeouts,
    warnings: &mut Vec<String>,
) -> Result<(ListingSource, u64)> {
    let mut ml = ManifestLocation::parse(loc)?;
    if let ManifestLocation::S3 { options, .. } = &mut ml {
        options.timeouts = timeouts;
    }
    let l = inventory::read(&ml, &CacheScope::of(url), a.max_attempts)
        .await
        .with_context(|| format!("reading inventory {loc}"))?;
    if l.outside_prefix > 0 {
        warnings.push(format!(
            "inventory {loc}: {} rows lie outside the cache's prefix and were ignored",
            l.outside_prefix
        ));
    }
    let source = ListingSource::Inventory {
        location: loc.to_string(),
        objects: Box::new(l.objects),
        noncurrent: l.noncurrent,
    };
    Ok((source, l.outside_prefix))
}

fn read_keys(a: &AuditArgs) -> Result<Vec<PublicKey>> {
    let mut texts: Vec<(String, String)> = a
        .trusted_keys
        .iter()
        .map(|k| ("--trusted-key".to_string(), k.clone()))
        .collect();
    if let Some(f) = &a.trusted_keys_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("trusted keys file {}", f.display()))?;
        for (i, line) in t.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            texts.push((format!("{}:{}", f.display(), i + 1), l.to_string()));
        }
    }
    texts
        .into_iter()
        .flat_map(|(w, t)| {
            t.split_whitespace()
                .map(|k| PublicKey::parse(k).with_context(|| format!("{w}: bad public key {k:?}")))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn cmd_audit(g: &Global, a: AuditArgs) -> Result<ExitCode> {
    let keys = read_keys(&a)?;
    let (idx, view) = Index::load_view(&g.state)?;
    let r = audit::audit_view(&idx, &view, &keys, a.max_examples)?;
    if g.json {
        print_json(&r)?;
    } else {
        print!("{}", r.to_text());
    }
    Ok(if r.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The pricing table of `--pricing FILE`, or the built-in AWS S3 us-east-1 prices.
///
/// # Errors
/// The file's, naming it.
fn pricing(file: Option<&std::path::Path>) -> Result<narward::cost::Pricing> {
    match file {
        Some(f) => narward::cost::Pricing::load(f),
        None => Ok(narward::cost::Pricing::default_aws()),
    }
}
