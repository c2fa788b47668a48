//! Executing restores: `narward restore PATH...|--roots FILE|--proposal DIR --confirm
//! NAME`, `restore --resume` and `restore status [--wait]`. Generic over the store; the
//! store is opened by [`super::apply_cmd`]'s `with_store` (the same as apply's and
//! recover's: `file://` archive/quarantine directories, S3 areas of the latest apply).

use super::apply_cmd::{AreaArgs, check_confirm, lock_apply, with_restore_store};
use super::{Global, print_json};
use anyhow::{Result, bail};
use narward::apply::exec::ExecOptions;
use narward::cache::CacheUrl;
use narward::cache::store::{Area, Store};
use narward::cost::Pricing;
use narward::restore::exec::{self as rexec, RestoreStatus};
use narward::restore::journal::{self as rjournal, Begin, Record};
use narward::restore::{Tier, request, text};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A new restore, once the store is open.
#[derive(Debug)]
pub struct NewRestore {
    pub url_text: String,
    pub roots: Vec<String>,
    pub closure: bool,
    pub tier: Tier,
    pub days: u32,
    pub dry_run: bool,
    pub confirm: Option<String>,
    pub pricing: Pricing,
    pub areas: AreaArgs,
    pub now: i64,
}

/// What a restore command does once the store is open.
#[derive(Debug)]
pub enum RestoreJob {
    New(Box<NewRestore>),
    /// Continue the restore of this journal directory and give its status.
    Advance(PathBuf),
}

fn exec_options() -> ExecOptions {
    ExecOptions {
        abort_after: std::env::var("NARWARD_APPLY_ABORT_AFTER")
            .ok()
            .and_then(|v| v.parse().ok()),
        ..ExecOptions::default()
    }
}

/// Run a restore job on an open store; gives the status (none for a dry run).
pub async fn run_job<S: Store>(
    g: &Global,
    store: &S,
    url: &CacheUrl,
    job: RestoreJob,
) -> Result<Option<RestoreStatus>> {
    match job {
        RestoreJob::New(n) => new_restore(g, store, url, &n).await,
        RestoreJob::Advance(dir) => {
            let _lock = lock_apply(&g.state)?;
            let o = exec_options();
            let (mut j, mut s) = rjournal::open(&dir)?;
            if !s.checked {
                // Crashed before the set was fixed: nothing was requested yet.
                let d = rexec::discover(store, &s.begin.roots, s.begin.closure, &o).await?;
                fix_set(&mut j, &d)?;
                s = rjournal::open(&dir)?.1;
            }
            rexec::advance(store, &mut s, &mut j, &o).await?;
            Ok(Some(rexec::status(store, &s, &o).await?))
        }
    }
}

fn fix_set(j: &mut narward::apply::journal::Journal, d: &rexec::Discovery) -> Result<()> {
    for p in &d.paths {
        j.append(&Record::Path(p.clone()))?;
    }
    j.append(&Record::Checked)
}

async fn new_restore<S: Store>(
    g: &Global,
    store: &S,
    url: &CacheUrl,
    n: &NewRestore,
) -> Result<Option<RestoreStatus>> {
    let o = exec_options();
    let d = rexec::discover(store, &n.roots, n.closure, &o).await?;
    let e = request::estimate_discovery(&d, n.roots.len() as u64, &n.pricing, n.days);
    if g.json && n.dry_run {
        let broken: Vec<_> = d.broken().map(|p| (&p.store_path, &p.broken)).collect();
        print_json(
            &serde_json::json!({ "estimate": e, "tier": n.tier, "broken": broken, "executed": false }),
        )?;
    } else if !g.json {
        print!("{}", text::discovery_text(&d, &e, n.closure, n.tier));
    }
    if n.dry_run {
        eprintln!("narward: note: dry run: nothing was requested or moved");
        return Ok(None);
    }
    check_confirm(url, n.confirm.as_deref())?;
    let _lock = lock_apply(&g.state)?;
    let begin = Begin {
        id: format!("{}-{}", n.now, std::process::id()),
        cache_url: n.url_text.clone(),
        cache: url.identity(),
        archive_dir: area_dir(url, store, Area::Archive),
        quarantine_dir: area_dir(url, store, Area::Quarantine),
        tier: n.tier.as_str().into(),
        days: n.days,
        roots: n.roots.clone(),
        closure: n.closure,
        created_at: n.now,
    };
    let mut j = rjournal::create(&g.state, begin)?;
    fix_set(&mut j, &d)?;
    let dir = j.path().parent().map(Path::to_path_buf).unwrap_or_default();
    let (mut j, mut s) = rjournal::open(&dir)?;
    rexec::advance(store, &mut s, &mut j, &o).await?;
    Ok(Some(rexec::status(store, &s, &o).await?))
}

/// The directory of a `file://` store's area (`None` on S3).
fn area_dir<S: Store>(url: &CacheUrl, store: &S, area: Area) -> Option<PathBuf> {
    let d = store.describe(area);
    matches!(url, CacheUrl::File(_)).then(|| PathBuf::from(d.strip_prefix("file://").unwrap_or(&d)))
}

/// Open the store of a restore journal and continue it.
async fn advance_dir(g: &Global, dir: &Path) -> Result<Option<RestoreStatus>> {
    let (_, s) = rjournal::open(dir)?;
    let url = CacheUrl::parse(&s.begin.cache_url)?;
    let areas = AreaArgs {
        archive_dir: s.begin.archive_dir.clone(),
        quarantine_dir: s.begin.quarantine_dir.clone(),
    };
    with_restore_store(g, &url, &areas, RestoreJob::Advance(dir.to_path_buf())).await
}

/// Continue every restore of the state (the unfinished ones; `all`: the finished too)
/// and give their statuses.
async fn advance_all(g: &Global, all: bool) -> Result<Vec<RestoreStatus>> {
    let mut out = Vec::new();
    for (dir, s) in rjournal::all(&g.state)? {
        if s.finished && !all {
            continue;
        }
        if let Some(st) = advance_dir(g, &dir).await? {
            out.push(st);
        }
    }
    Ok(out)
}

/// Print statuses; exit 1 when any path failed.
pub fn print_statuses(g: &Global, v: &[RestoreStatus]) -> Result<ExitCode> {
    if g.json {
        print_json(&v)?;
    } else if v.is_empty() {
        println!("no restores in {}", g.state.display());
    } else {
        for s in v {
            print!("{}", text::status_text(s));
        }
    }
    let failed = v
        .iter()
        .any(|s| s.counts.get("failed").is_some_and(|n| *n > 0));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `restore status [--wait --timeout S --interval S]` and `restore --resume`.
pub async fn status_cmd(
    g: &Global,
    wait: bool,
    timeout: Duration,
    interval: Duration,
) -> Result<ExitCode> {
    let start = Instant::now();
    loop {
        let v = advance_all(g, true).await?;
        let done = v.iter().all(|s| s.finished);
        let failed = v
            .iter()
            .any(|s| s.counts.get("failed").is_some_and(|n| *n > 0));
        if !wait || done || failed || start.elapsed() + interval > timeout {
            let code = print_statuses(g, &v)?;
            if wait && !done && code == ExitCode::SUCCESS {
                eprintln!(
                    "narward: --timeout {}s passed before every restore was republished",
                    timeout.as_secs()
                );
                return Ok(ExitCode::from(1));
            }
            return Ok(code);
        }
        if !g.quiet {
            eprintln!(
                "narward: waiting for restores ({}s of {}s)",
                start.elapsed().as_secs(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(interval).await;
    }
}

/// `restore PATH...|--roots|--proposal … [--dry-run] --confirm NAME`.
pub async fn new_cmd(g: &Global, n: NewRestore) -> Result<ExitCode> {
    let url = CacheUrl::parse(&n.url_text)?;
    if n.roots.is_empty() {
        bail!("nothing to restore: no store paths given");
    }
    let areas = n.areas.clone();
    match with_restore_store(g, &url, &areas, RestoreJob::New(Box::new(n))).await? {
        None => Ok(ExitCode::SUCCESS),
        Some(st) => print_statuses(g, &[st]),
    }
}
