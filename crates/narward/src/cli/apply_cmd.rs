//! `narward apply` (with `--dry-run`, `--resume`, `--finalize`) and `narward recover`.
//!
//! Every command is written once, generic over `S: Store`; [`with_store`] opens the store
//! of a cache URL and is the one place that knows the backends (`file://`: [`FileStore`];
//! `s3://`: [`S3Store`] behind [`Throttled`]).

use super::restore_exec::RestoreJob;
use super::{Global, print_json};
use anyhow::{Context, Result, bail};
use clap::Args;
use narward::apply::batch_delete::{DeleteLog, batchable_source};
use narward::apply::exec::{self, ExecOptions, Report};
use narward::apply::journal::{self, Begin, Journal, Record, State};
use narward::apply::program::{self, Layout, Program, Skip};
use narward::apply::recover;
use narward::cache::file_store::FileStore;
use narward::cache::s3_store::{DEFAULT_QUARANTINE_PREFIX, S3Layout, S3Store};
use narward::cache::store::{Area, Store};
use narward::cache::store_wrap::{ThrottleConfig, ThrottleStats, Throttled};
use narward::cache::{Cache, CacheUrl, S3Options};
use narward::cache_graph::Snapshot;
use narward::index::{self, Index, ListingSource};
use narward::plan::{Plan, PlanHeader};
use narward::policy::DEFAULT_ARCHIVE_PREFIX;
use narward::restore::exec::RestoreStatus;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct AreaArgs {
    /// file:// caches: the directory archived objects (and their narinfos, byte for byte)
    /// move to; may be on another disk. Default: `<cache>.narward-archive` beside the
    /// cache directory (for --finalize and recover: the one the latest apply used).
    #[arg(long, value_name = "DIR")]
    pub archive_dir: Option<PathBuf>,
    /// file:// caches: the directory deleted objects wait in (under `<unix-time>/`) until
    /// `apply --finalize`. Default: `<cache>.narward-quarantine` beside the cache directory
    /// (for --finalize and recover: the one the latest apply used).
    #[arg(long, value_name = "DIR")]
    pub quarantine_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  narward apply plans/today --dry-run
  narward apply plans/today --confirm nix-cache
  narward apply --resume
  narward apply --finalize --confirm nix-cache
  narward apply --finalize --grace 7 --confirm nix-cache

Exit status: 0 done, nothing skipped; 1 done, but some objects were skipped (changed
since the plan, referenced again, failed): they are listed, and left in place;
2 refused or failed (wrong --confirm, damaged plan or journal, denied): the message says
why; after a failure or a crash, `narward apply --resume` finishes the work.

Environment: NARWARD_APPLY_ABORT_AFTER=N (tests) aborts the process after N changes, as
a crash would.")]
pub struct ApplyArgs {
    /// The plan directory (`narward plan --out DIR`). Not with --resume or --finalize.
    pub plan: Option<PathBuf>,
    /// Print every request apply would make, with counts and bytes per phase; change
    /// nothing. Needs no --confirm.
    #[arg(long)]
    pub dry_run: bool,
    /// The cache's name typed back: the bucket of an s3:// cache, the directory's name
    /// of a file:// cache. Apply and finalize refuse without it.
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
    /// Finish an apply that was interrupted (crash, kill, lost network): batches
    /// announced in the journal and not marked done are redone; every step is safe to
    /// repeat.
    #[arg(long, conflicts_with_all = ["plan", "finalize", "dry_run"])]
    pub resume: bool,
    /// Delete for good what was quarantined longer than the grace window and is still
    /// unreachable (DeleteObjects batches of ≤ 1,000 keys, each journaled in
    /// <state>/apply/finalize.journal before its request; a key that fails is listed and
    /// exit status is 1); recover what a visible narinfo references again.
    #[arg(long, conflicts_with = "plan")]
    pub finalize: bool,
    /// The grace window of --finalize, in days.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub grace: u32,
    /// --finalize without a grace window: deletes everything quarantined and unreachable
    /// now. Loud, and needs --confirm.
    #[arg(long, requires = "finalize")]
    pub unsafe_no_grace: bool,
    #[command(flatten)]
    pub areas: AreaArgs,
    /// Steps in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Steps per journaled batch (at most 1000). The sources of a batch's NARs
    /// (content-addressed) are deleted in one DeleteObjects request after its copies are
    /// verified; narinfos, .ls and other objects one by one, each after an ETag check.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Attempts per request on throttling and transient errors (backoff with jitter; on
    /// S3 by the throttling layer, per key of a DeleteObjects batch too).
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
    /// Act as if now were this unix time (tests: quarantine stamps, grace window).
    #[arg(long, hide = true)]
    pub now: Option<i64>,
}

#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  narward recover /nix/store/<hash>-hello-2.12
  narward recover <hash> --closure

The NAR goes back first, then the .ls, then the narinfo, so a client never sees a
narinfo whose NAR is missing. To get archived paths back (GLACIER/DEEP_ARCHIVE
retrievals, status, resume), use `narward restore`. Exit status: 0 recovered; 2 not
found, refused (a reference not in the cache: use --closure) or failed.")]
pub struct RecoverArgs {
    /// /nix/store/<hash>-<name>, <hash>-<name> or <hash>.
    pub path: String,
    /// Also recover every removed path it references, recursively (references first).
    /// Without it, a path that references a path not in the cache is refused.
    #[arg(long)]
    pub closure: bool,
    /// The cache (default: the one the state directory indexes).
    #[arg(long)]
    pub cache: Option<String>,
    #[command(flatten)]
    pub areas: AreaArgs,
}

/// The throttling counters of a store, for the report (`None`: not throttled).
trait ThrottleInfo {
    fn throttle_stats(&self) -> Option<ThrottleStats>;
}

impl ThrottleInfo for FileStore {
    fn throttle_stats(&self) -> Option<ThrottleStats> {
        None
    }
}

impl ThrottleInfo for Throttled<S3Store> {
    fn throttle_stats(&self) -> Option<ThrottleStats> {
        Some(self.stats())
    }
}

/// What a command does once its store is open.
enum Job {
    Apply {
        plan: Box<Plan>,
        a: ApplyArgs,
    },
    Resume {
        state: Box<State>,
        plan: Box<Plan>,
        a: ApplyArgs,
    },
    Finalize {
        url_text: String,
        a: ApplyArgs,
    },
    Recover {
        hash: String,
        closure: bool,
    },
}

/// The name `--confirm` must repeat: the bucket, or the directory's name.
fn confirm_name(url: &CacheUrl) -> String {
    match url {
        CacheUrl::S3(o) => o.bucket.clone(),
        CacheUrl::File(p) => std::fs::canonicalize(p)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    }
}

pub(super) fn check_confirm(url: &CacheUrl, given: Option<&str>) -> Result<()> {
    let name = confirm_name(url);
    match given {
        Some(g) if g == name && !name.is_empty() => Ok(()),
        Some(g) => bail!("--confirm {g:?} does not match the cache's name {name:?}: refusing"),
        None => bail!(
            "this changes the cache: repeat its name with --confirm {name} (or use --dry-run)"
        ),
    }
}

/// Open the store of `url` and run `job` on it.
async fn with_store(g: &Global, url: &CacheUrl, areas: &AreaArgs, job: Job) -> Result<ExitCode> {
    match url {
        CacheUrl::File(dir) => run_job(g, &open_file_store(dir, areas)?, url, job).await,
        CacheUrl::S3(o) => {
            let header = job_header(g, o, &job)?;
            let attempts = match &job {
                Job::Apply { a, .. } | Job::Resume { a, .. } | Job::Finalize { a, .. } => {
                    a.max_attempts
                }
                Job::Recover { .. } => ExecOptions::default().max_attempts,
            };
            let store = open_s3_store(o, header.as_ref(), attempts).await?;
            run_job(g, &store, url, job).await
        }
    }
}

/// Open the store of `url` (laid out like recover's: the latest apply's areas) and run a
/// restore job on it.
pub(super) async fn with_restore_store(
    g: &Global,
    url: &CacheUrl,
    areas: &AreaArgs,
    job: RestoreJob,
) -> Result<Option<RestoreStatus>> {
    match url {
        CacheUrl::File(dir) => {
            super::restore_exec::run_job(g, &open_file_store(dir, areas)?, url, job).await
        }
        CacheUrl::S3(o) => {
            let header = latest_header(g, o)?;
            let attempts = ExecOptions::default().max_attempts;
            let store = open_s3_store(o, header.as_ref(), attempts).await?;
            super::restore_exec::run_job(g, &store, url, job).await
        }
    }
}

/// The plan header whose archive settings lay out the S3 store of `job`.
fn job_header(g: &Global, o: &S3Options, job: &Job) -> Result<Option<PlanHeader>> {
    Ok(match job {
        Job::Apply { plan, .. } => Some(plan.header.clone()),
        Job::Resume { plan, .. } => Some(plan.header.clone()),
        Job::Finalize { .. } | Job::Recover { .. } => latest_header(g, o)?,
    })
}

/// The header of the plan of the latest apply of this cache.
fn latest_header(g: &Global, o: &S3Options) -> Result<Option<PlanHeader>> {
    let identity = CacheUrl::S3(o.clone()).identity();
    match latest_begin(&g.state, &identity)? {
        Some(b) => Ok(Some(
            Plan::read(&b.plan_dir)
                .with_context(|| format!("the plan of the latest apply ({})", b.plan))?
                .header,
        )),
        None => Ok(None),
    }
}

/// The S3 store of a cache, laid out by the archive settings of the plan being applied
/// (or, for --resume, --finalize and recover, of the plan of the latest apply of this
/// cache), wrapped in adaptive throttling: bounded concurrency, backoff with jitter on
/// `SlowDown`/5xx/timeouts (up to `max_attempts` attempts a request: the one retry
/// layer), the rate lowered on throttling and regained slowly.
async fn open_s3_store(
    o: &S3Options,
    header: Option<&PlanHeader>,
    max_attempts: u32,
) -> Result<Throttled<S3Store>> {
    let layout = match header {
        Some(h) => S3Layout::for_plan(o, h),
        None => S3Layout::new(o, None, DEFAULT_ARCHIVE_PREFIX, DEFAULT_QUARANTINE_PREFIX),
    };
    // Only the throttling wrapper retries, so that backoff and rate control see every
    // throttled attempt.
    let store = S3Store::open(o, layout, 1).await?;
    // The bucket check answers throttling and 5xx like any request: retried with backoff.
    exec::retry(&ExecOptions::default(), &store, || store.check_buckets()).await?;
    let cfg = ThrottleConfig {
        max_retries: max_attempts.max(1) - 1,
        ..ThrottleConfig::default()
    };
    Ok(Throttled::new(store, cfg))
}

/// The `begin` record of the latest apply of the cache `identity` in the state's journals.
fn latest_begin(state: &Path, identity: &str) -> Result<Option<Begin>> {
    let mut latest: Option<Begin> = None;
    let Ok(rd) = std::fs::read_dir(state.join("apply")) else {
        return Ok(None);
    };
    for e in rd.flatten() {
        let p = e.path().join("journal");
        let Ok(text) = std::fs::read(&p) else {
            continue;
        };
        let (s, _) = journal::read_records(&text, &p)?;
        let newer = latest.as_ref().is_none_or(|l| {
            s.begin.stamp.parse::<i64>().unwrap_or(0) > l.stamp.parse::<i64>().unwrap_or(0)
        });
        if s.begin.cache == identity && newer {
            latest = Some(s.begin);
        }
    }
    Ok(latest)
}

fn open_file_store(dir: &Path, areas: &AreaArgs) -> Result<FileStore> {
    let (a, q) = FileStore::default_dirs(dir)?;
    let a = areas.archive_dir.clone().unwrap_or(a);
    let q = areas.quarantine_dir.clone().unwrap_or(q);
    FileStore::open(dir, &a, &q)
}

async fn run_job<S: Store + ThrottleInfo>(
    g: &Global,
    store: &S,
    url: &CacheUrl,
    job: Job,
) -> Result<ExitCode> {
    match job {
        Job::Apply { plan, a } => apply_new(g, store, url, &plan, &a).await,
        Job::Resume { state, plan, a } => resume(g, store, url, *state, &plan, &a).await,
        Job::Finalize { url_text, a } => finalize(g, store, url, &url_text, &a).await,
        Job::Recover { hash, closure } => {
            let _lock = lock_apply(&g.state)?;
            let o = ExecOptions::default();
            let r = recover::recover(store, &hash, closure, &o).await?;
            if g.json {
                print_json(&r)?;
            } else {
                for x in &r {
                    println!(
                        "recovered {} (NAR {})",
                        x.narinfo,
                        x.nar.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `narward apply …`.
pub async fn run(g: &Global, a: ApplyArgs) -> Result<ExitCode> {
    if a.resume {
        let Some((dir, state)) = unfinished_journal(&g.state)? else {
            eprintln!(
                "narward: every apply in {} has finished: nothing to resume",
                g.state.join("apply").display()
            );
            return Ok(ExitCode::SUCCESS);
        };
        // Read (and verified) once: it lays out the S3 store and is what resume runs.
        let plan = Plan::read(&state.begin.plan_dir)
            .with_context(|| format!("the plan of journal {}", dir.display()))?;
        let url = CacheUrl::parse(&plan.header.cache_url)?;
        let areas = AreaArgs {
            archive_dir: Some(PathBuf::from(&state.begin.archive)),
            quarantine_dir: Some(PathBuf::from(&state.begin.quarantine)),
        };
        let job = Job::Resume {
            state: Box::new(state),
            plan: Box::new(plan),
            a,
        };
        return with_store(g, &url, &areas, job).await;
    }
    if a.finalize {
        let url_text = super::cache_url_or_state(None, &g.state)?;
        let url = CacheUrl::parse(&url_text)?;
        check_confirm(&url, a.confirm.as_deref())?;
        let areas = areas_or_journal(&a.areas, &g.state, &url)?;
        return with_store(g, &url, &areas, Job::Finalize { url_text, a }).await;
    }
    let Some(dir) = &a.plan else {
        bail!("`narward apply` needs a PLAN directory (or --resume, or --finalize)");
    };
    let plan = Plan::read(dir)?;
    let url = CacheUrl::parse(&plan.header.cache_url)?;
    if url.identity() != plan.header.cache {
        bail!(
            "plan {} is for {}, but its URL {} is now {}: refusing",
            dir.display(),
            plan.header.cache,
            plan.header.cache_url,
            url.identity()
        );
    }
    if !a.dry_run {
        check_confirm(&url, a.confirm.as_deref())?;
    }
    let areas = a.areas.clone();
    let job = Job::Apply {
        plan: Box::new(plan),
        a,
    };
    with_store(g, &url, &areas, job).await
}

/// `narward recover …`.
pub async fn recover_cmd(g: &Global, a: RecoverArgs) -> Result<ExitCode> {
    let url_text = super::cache_url_or_state(a.cache.as_deref(), &g.state)?;
    let url = CacheUrl::parse(&url_text)?;
    let base = a.path.trim().trim_start_matches("/nix/store/");
    let hash = base.get(..32).unwrap_or(base);
    if narward_formats::store_path::StorePathHash::parse(hash).is_err() {
        bail!("{:?} is not a store path, base name or hash", a.path);
    }
    let job = Job::Recover {
        hash: hash.to_string(),
        closure: a.closure,
    };
    let areas = areas_or_journal(&a.areas, &g.state, &url)?;
    with_store(g, &url, &areas, job).await
}

/// The area directories given by flags; a flag not given takes the directory of the
/// latest apply of this cache recorded in the state's journals (else the default).
pub(super) fn areas_or_journal(given: &AreaArgs, state: &Path, url: &CacheUrl) -> Result<AreaArgs> {
    let latest = latest_begin(state, &url.identity())?;
    Ok(AreaArgs {
        archive_dir: given
            .archive_dir
            .clone()
            .or_else(|| latest.as_ref().map(|b| PathBuf::from(&b.archive))),
        quarantine_dir: given
            .quarantine_dir
            .clone()
            .or_else(|| latest.as_ref().map(|b| PathBuf::from(&b.quarantine))),
    })
}

/// Refresh the index, read its new generation back as every command does (the listing
/// and its [`index::View`]: columns and quirks; the narinfo texts are not held), open its
/// graph, and hand the snapshot of all three to `work`: what apply, resume and finalize
/// check the cache against just before acting.
async fn with_fresh_snapshot<R>(
    g: &Global,
    url: &CacheUrl,
    url_text: &str,
    expect: &str,
    work: impl AsyncFnOnce(&Snapshot<'_>) -> Result<R>,
) -> Result<R> {
    let cache = Cache::open(url, 8).await?;
    let (meta, _) = index::update(&g.state, url_text, url, &cache, ListingSource::Live, 32)
        .await
        .context("refreshing the index before acting")?;
    if meta.cache != expect {
        bail!("the state indexes {}, not {expect}", meta.cache);
    }
    let (fresh, view) = Index::load_view(&g.state)?;
    let graph = view.graph()?;
    work(&view.snapshot(&fresh, &graph)).await
}

fn layout<S: Store>(store: &S, begin: &Begin) -> Layout {
    Layout {
        archives_in_place: store.archives_in_place(),
        quarantine_stamp: begin.stamp.clone(),
        batch_size: begin.batch_size,
    }
}

fn exec_options(a: &ApplyArgs) -> ExecOptions {
    ExecOptions {
        concurrency: a.concurrency,
        max_attempts: a.max_attempts.max(1),
        abort_after: std::env::var("NARWARD_APPLY_ABORT_AFTER")
            .ok()
            .and_then(|v| v.parse().ok()),
        ..ExecOptions::default()
    }
}

/// The lock that apply, finalize, recover and restore share: one of them at a time changes
/// a cache from this state directory.
pub(super) fn lock_apply(state: &Path) -> Result<std::fs::File> {
    let d = state.join("apply");
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    index::lock_file(&d.join("lock"), || {
        format!(
            "another narward apply, recover or restore is running from {}",
            state.display()
        )
    })
}

async fn apply_new<S: Store + ThrottleInfo>(
    g: &Global,
    store: &S,
    url: &CacheUrl,
    plan: &Plan,
    a: &ApplyArgs,
) -> Result<ExitCode> {
    let _lock = lock_apply(&g.state)?;
    let jdir = journal::dir(&g.state, &plan.header.checksum);
    if jdir.join("journal").exists() {
        bail!(
            "plan {} was applied (or started) already: see {} (`narward apply --resume` finishes an interrupted run)",
            plan.header.checksum,
            jdir.display()
        );
    }
    let recheck = async |snap: &Snapshot<'_>| Ok(program::recheck(plan, snap));
    let skips =
        with_fresh_snapshot(g, url, &plan.header.cache_url, &plan.header.cache, recheck).await?;
    let begin = Begin {
        plan: plan.header.checksum.clone(),
        plan_dir: std::fs::canonicalize(a.plan.as_deref().unwrap_or(Path::new(".")))?,
        cache: plan.header.cache.clone(),
        archive: area_dir(store, Area::Archive),
        quarantine: area_dir(store, Area::Quarantine),
        stamp: a.now.unwrap_or_else(index::now).to_string(),
        batch_size: a.batch_size.clamp(1, 1000),
    };
    let set = skip_set(&skips);
    let prog = Program::new(plan, &set, &layout(store, &begin));
    if a.dry_run {
        let cost = narward::cost::price_plan(
            plan,
            &narward::cost::Pricing::default_aws(),
            a.now.unwrap_or_else(index::now),
        );
        return dry_run(g, store, &prog, &skips, &cost);
    }
    let mut j = Journal::create(&jdir, begin)?;
    for k in &skips {
        j.append(&Record::Skip(k.clone()))?;
    }
    j.append(&Record::Checked)?;
    execute(g, store, &prog, 0, &mut j, a, skips).await
}

fn area_dir<S: Store>(store: &S, area: Area) -> String {
    let d = store.describe(area);
    d.strip_prefix("file://").map(str::to_string).unwrap_or(d)
}

fn skip_set(skips: &[Skip]) -> BTreeSet<String> {
    skips.iter().map(|k| k.key.clone()).collect()
}

async fn execute<S: Store + ThrottleInfo>(
    g: &Global,
    store: &S,
    prog: &Program<'_>,
    next_seq: u64,
    j: &mut Journal,
    a: &ApplyArgs,
    skips: Vec<Skip>,
) -> Result<ExitCode> {
    let mut report = Report {
        skipped: skips,
        ..Report::default()
    };
    let o = exec_options(a);
    exec::run(
        store,
        prog.batches(),
        prog.counts(),
        next_seq,
        j,
        &o,
        &mut report,
    )
    .await?;
    report.throttle = store.throttle_stats().map(|stats| exec::ThrottleReport {
        operations_per_second: stats.succeeded as f64 / report.seconds.max(1e-9),
        stats,
    });
    // Unknown (refused) versioning says nothing rather than fail a finished run.
    report.versioning_note = match store.versioning(Area::Cache).await {
        Ok(v) => exec::versioning_note(v),
        Err(_) => None,
    };
    j.append(&Record::Finished)?;
    report.skipped.sort();
    report.skipped.dedup();
    print_report(g, store, &report)?;
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report<S: Store + ThrottleInfo>(g: &Global, store: &S, r: &Report) -> Result<()> {
    if g.json {
        return print_json(r);
    }
    println!("applied to {}", store.describe(Area::Cache));
    for (p, c) in &r.phases {
        println!(
            "  {:<10} {} objects moved ({} bytes), {} skipped",
            p.as_str(),
            c.moved,
            c.bytes,
            c.skipped
        );
    }
    println!(
        "  {:.1} objects/s over {:.1}s",
        r.objects_per_second, r.seconds
    );
    if let Some(t) = &r.throttle {
        println!(
            "  {} store operations at {:.1}/s achieved; {} retries ({} throttled, {} transient), {} failed; allowed rate now {:.0}/s (lowest {:.0}/s)",
            t.stats.succeeded,
            t.operations_per_second,
            t.stats.retries,
            t.stats.throttled,
            t.stats.transient,
            t.stats.failed,
            t.stats.rate_now,
            t.stats.rate_lowest
        );
    }
    if let Some(n) = &r.versioning_note {
        eprintln!("narward: note: {n}");
    }
    if !r.skipped.is_empty() {
        println!("skipped (left in place): {}", r.skipped.len());
        for k in r.skipped.iter().take(50) {
            println!("  {}: {}", k.key, k.reason);
        }
    }
    println!(
        "quarantined objects wait in {}; `narward apply --finalize` deletes them after the grace window",
        store.describe(Area::Quarantine)
    );
    Ok(())
}

fn dry_run<S: Store>(
    g: &Global,
    store: &S,
    prog: &Program<'_>,
    skips: &[Skip],
    cost: &narward::cost::PlanCost,
) -> Result<ExitCode> {
    let mut requests = Vec::new();
    let mut phases = std::collections::BTreeMap::new();
    for b in prog.batches() {
        let e: &mut (u64, u64, u64) = phases.entry(b.phase.as_str()).or_default();
        let mut batched = Vec::new();
        for op in &b.ops {
            e.0 += 1;
            e.1 += op.size;
            let class = op
                .storage_class
                .as_deref()
                .map(|c| format!(" class {c}"))
                .unwrap_or_default();
            let cond = op
                .etag
                .as_deref()
                .map(|t| format!(" if-match {t}"))
                .unwrap_or_default();
            requests.push(format!("COPY cache:{} -> {}{class}{cond}", op.key, op.to));
            e.2 += 1;
            if op.delete_source && batchable_source(&op.key) {
                batched.push(op.key.as_str());
            } else if op.delete_source {
                requests.push(format!("DELETE cache:{}", op.key));
                e.2 += 1;
            }
        }
        // Content-addressed NAR sources: one DeleteObjects request per batch (≤ 1,000).
        if !batched.is_empty() {
            let n = batched.len();
            requests.push(format!(
                "DELETE-OBJECTS cache: {n} keys: {}",
                batched.join(" ")
            ));
            e.2 += 1;
        }
    }
    if g.json {
        print_json(&serde_json::json!({
            "cache": store.describe(Area::Cache),
            "requests": requests,
            "phases": phases.iter().map(|(p, (n, b, r))| (p.to_string(), serde_json::json!({"objects": n, "bytes": b, "requests": r}))).collect::<std::collections::BTreeMap<_, _>>(),
            "skipped": skips,
            "cost": cost,
        }))?;
    } else {
        println!(
            "dry run on {}: nothing is changed",
            store.describe(Area::Cache)
        );
        for r in &requests {
            println!("{r}");
        }
        for (p, (n, b, r)) in &phases {
            println!("{p:<10} {n} objects, {b} bytes, {r} requests");
        }
        for k in skips {
            println!("skip {}: {}", k.key, k.reason);
        }
        print!("{}", narward::cost::plan_cost_text(cost));
    }
    Ok(ExitCode::SUCCESS)
}

/// The one unfinished journal of the state directory (`None`: there are journals and
/// all have finished).
fn unfinished_journal(state: &Path) -> Result<Option<(PathBuf, State)>> {
    let root = state.join("apply");
    let mut found = Vec::new();
    let mut any = false;
    let rd = std::fs::read_dir(&root)
        .with_context(|| format!("no apply to resume in {}", root.display()))?;
    for e in rd {
        let d = e
            .with_context(|| format!("listing {}", root.display()))?
            .path();
        if !d.join("journal").is_file() {
            continue;
        }
        any = true;
        let text = std::fs::read(d.join("journal"))
            .with_context(|| format!("journal in {}", d.display()))?;
        let (s, _) = journal::read_records(&text, &d.join("journal"))?;
        if !s.finished {
            found.push((d, s));
        }
    }
    match found.len() {
        1 => Ok(Some(found.remove(0))),
        0 if any => Ok(None),
        0 => bail!("no apply to resume in {}", root.display()),
        _ => bail!(
            "several interrupted applies in {}: {}",
            root.display(),
            found
                .iter()
                .map(|(d, _)| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn resume<S: Store + ThrottleInfo>(
    g: &Global,
    store: &S,
    url: &CacheUrl,
    state: State,
    plan: &Plan,
    a: &ApplyArgs,
) -> Result<ExitCode> {
    let _lock = lock_apply(&g.state)?;
    let jdir = journal::dir(&g.state, &state.begin.plan);
    // Read again under the lock (the first read only found the journal): this state is
    // the one to continue from.
    let (mut j, state) = Journal::open(&jdir)?;
    if plan.header.checksum != state.begin.plan {
        bail!(
            "plan {} has checksum {}, the journal {} was started for {}: refusing",
            state.begin.plan_dir.display(),
            plan.header.checksum,
            j.path().display(),
            state.begin.plan
        );
    }
    let mut skips = state.skips.clone();
    if !state.checked {
        let recheck = async |snap: &Snapshot<'_>| Ok(program::recheck(plan, snap));
        skips = with_fresh_snapshot(g, url, &plan.header.cache_url, &plan.header.cache, recheck)
            .await?;
        for k in &skips {
            j.append(&Record::Skip(k.clone()))?;
        }
        j.append(&Record::Checked)?;
    }
    let set = skip_set(&skips);
    let prog = Program::new(plan, &set, &layout(store, &state.begin));
    skips.extend(state.runtime_skips.iter().cloned());
    execute(g, store, &prog, state.next_seq, &mut j, a, skips).await
}

async fn finalize<S: Store>(
    g: &Global,
    store: &S,
    url: &CacheUrl,
    url_text: &str,
    a: &ApplyArgs,
) -> Result<ExitCode> {
    if a.grace == 0 && !a.unsafe_no_grace {
        bail!("--grace 0 deletes without a grace window: say so with --unsafe-no-grace");
    }
    let _lock = lock_apply(&g.state)?;
    let grace_secs = if a.unsafe_no_grace {
        eprintln!(
            "narward: WARNING: --unsafe-no-grace: deleting every quarantined, unreachable object NOW, with no grace window; this cannot be undone"
        );
        0
    } else {
        i64::from(a.grace) * 86_400
    };
    let now = a.now.unwrap_or_else(index::now);
    let mut log = DeleteLog::open(&g.state)?;
    let o = exec_options(a);
    let mut announce = |keys: &[String]| log.announce(Area::Quarantine, keys);
    let sweep = async |snap: &Snapshot<'_>| {
        recover::finalize(store, snap, now, grace_secs, &o, &mut announce).await
    };
    let r = with_fresh_snapshot(g, url, url_text, &url.identity(), sweep).await?;
    log.done(&r.deleted, &r.failed)?;
    if g.json {
        print_json(&r)?;
    } else {
        println!(
            "finalized {}: {} quarantined objects deleted ({} DeleteObjects requests), {} not deleted, {} paths recovered (referenced again), {} objects still in the grace window",
            store.describe(Area::Quarantine),
            r.deleted.len(),
            r.delete_requests,
            r.failed.len(),
            r.recovered.len(),
            r.waiting
        );
        for x in &r.recovered {
            println!("  recovered {}", x.narinfo);
        }
        for k in r.failed.iter().take(50) {
            println!("  not deleted {}: {}", k.key, k.reason);
        }
    }
    Ok(if r.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
