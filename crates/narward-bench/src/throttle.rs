//! The throttling benchmark (`narward-bench run --only throttle`): the request rate
//! narward's adaptive throttling achieves against an S3 endpoint that allows `R` requests
//! per second, as a ratio to `R` (target ≥ 90 %).
//!
//! Setup: a local S3 server (moto: `NARWARD_TEST_S3_ENDPOINT` if set, else
//! `python3 -m moto.server` started on a free port and stopped at the end), and in front
//! of it the fault proxy of `narward-testkit` with a token bucket of `R` requests/s
//! (burst: a tenth of a second's worth) answering `503 SlowDown` above it. The workload
//! is apply's quarantine step on `Throttled<S3Store>` (narward's S3 store with its
//! default throttling, as `narward apply` opens it): for each of `objects` objects a
//! conditional copy to the quarantine area (HEADs + CopyObject) and a delete of the
//! source, 16 objects in flight. Achieved rate = requests the proxy forwarded (answered
//! by S3) / wall time of the workload. A run without a limit measures the ceiling of
//! moto + proxy on this machine, since a ratio is only meaningful for `R` well below it.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use narward::cache::S3Options;
use narward::cache::s3_store::{S3Layout, S3Store};
use narward::cache::store::{CopyOptions, Loc, Store};
use narward::cache::store_wrap::{ThrottleConfig, Throttled};
use narward_testkit::fault_proxy::{FaultConfig, FaultProxy};
use serde::{Deserialize, Serialize};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// HTTP requests one object takes (counted at the proxy): the copy's HEADs of source and
/// destination, CopyObject and a HEAD of the copy, then DeleteObject.
const REQUESTS_PER_OBJECT: f64 = 5.0;

/// One measurement at one allowed rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThrottleRun {
    /// The proxy's limit, requests/s (`None`: no limit, the ceiling run).
    pub allowed_rps: Option<f64>,
    pub objects: u64,
    /// Requests answered by S3 (forwarded by the proxy) during the workload.
    pub forwarded: u64,
    /// Requests answered `503 SlowDown` by the proxy's token bucket.
    pub slow_down: u64,
    pub seconds: f64,
    pub achieved_rps: f64,
    /// `achieved_rps / allowed_rps`.
    pub ratio: Option<f64>,
    /// Objects whose copy or delete failed for good (must be 0).
    pub failed_objects: u64,
    /// The throttling wrapper's view: retries, its allowed rate at the end and lowest.
    pub retries: u64,
    pub rate_now: f64,
    pub rate_lowest: f64,
}

/// All runs of the throttling benchmark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThrottleResults {
    pub started_unix: i64,
    pub command: String,
    pub narward_commit: String,
    /// What the endpoint was (moto version or the given endpoint).
    pub endpoint: String,
    pub seconds_per_run: f64,
    pub runs: Vec<ThrottleRun>,
}

/// A moto server this benchmark started (killed when dropped), or one given.
struct Moto {
    endpoint: String,
    child: Option<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// moto's fixed test credentials, for the SDK, when none are set.
fn test_credentials() {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(k).is_none() {
            // SAFETY: called from `run` before it starts any thread (runtime, proxy).
            unsafe { std::env::set_var(k, v) };
        }
    }
}

fn start_moto() -> Result<Moto> {
    if let Ok(e) = std::env::var("NARWARD_TEST_S3_ENDPOINT") {
        return Ok(Moto {
            endpoint: e,
            child: None,
        });
    }
    test_credentials();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting python3 -m moto.server (pip install 'moto[server]')")?;
    let moto = Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        child: Some(child),
    };
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("moto did not answer on port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(moto)
}

fn options(bucket: &str, endpoint: &str) -> S3Options {
    S3Options {
        bucket: bucket.to_string(),
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        ..Default::default()
    }
}

async fn store(o: &S3Options) -> Result<S3Store> {
    let layout = S3Layout::new(o, None, "narward-archive/", "narward-quarantine/");
    S3Store::open(o, layout, 1).await
}

/// A new bucket with `n` small objects `nar/<i>.nar`, written directly to moto.
async fn seed(endpoint: &str, bucket: &str, n: u64) -> Result<Vec<String>> {
    let o = options(bucket, endpoint);
    let c = narward::cache::s3_client(&o, 3).await?;
    c.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    let s = store(&o).await?;
    let keys: Vec<String> = (0..n).map(|i| format!("nar/{i:06}.nar")).collect();
    let puts = futures::stream::iter(&keys)
        .map(|k| {
            let s = &s;
            async move { s.put_if_absent(&Loc::cache(k.clone()), k.as_bytes()).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for p in puts {
        p?;
    }
    Ok(keys)
}

/// The quarantine step of one object: conditional copy, then delete of the source.
async fn move_one<S: Store>(s: &S, key: &str) -> bool {
    let from = Loc::cache(key.to_string());
    let to = Loc::quarantine(format!("1/{key}"));
    let opts = CopyOptions {
        if_absent: true,
        ..CopyOptions::default()
    };
    s.copy(&from, &to, &opts).await.is_ok() && s.delete(&from, None).await.is_ok()
}

async fn one_run(moto: &str, allowed: Option<f64>, objects: u64, tag: &str) -> Result<ThrottleRun> {
    let bucket = format!("nw-bench-throttle-{tag}-{}", narward::index::now());
    let keys = seed(moto, &bucket, objects).await?;
    let proxy = FaultProxy::try_start(
        moto,
        FaultConfig {
            rate_limit: allowed,
            burst: allowed.map(|r| (r / 10.0).max(1.0)),
            max_requests: u64::MAX,
            lifetime: Duration::from_secs(3600),
            ..FaultConfig::default()
        },
    )?;
    let o = options(&bucket, &proxy.url());
    let s = Throttled::new(store(&o).await?, ThrottleConfig::default());
    let t = Instant::now();
    let moved: Vec<bool> = futures::stream::iter(&keys)
        .map(|k| move_one(&s, k))
        .buffer_unordered(16)
        .collect()
        .await;
    let seconds = t.elapsed().as_secs_f64();
    let st = &proxy.stats;
    let forwarded = st.get(&st.forwarded);
    let achieved = forwarded as f64 / seconds.max(1e-9);
    let ts = s.stats();
    Ok(ThrottleRun {
        allowed_rps: allowed,
        objects,
        forwarded,
        slow_down: st.get(&st.rate_limited),
        seconds,
        achieved_rps: achieved,
        ratio: allowed.map(|r| achieved / r),
        failed_objects: moved.iter().filter(|m| !**m).count() as u64,
        retries: ts.retries,
        rate_now: ts.rate_now,
        rate_lowest: ts.rate_lowest,
    })
}

/// Run the benchmark at each allowed rate in `rates` (and once without a limit), each
/// for about `seconds` of requests.
///
/// # Errors
/// moto cannot be started; a bucket cannot be created or seeded.
pub fn run(rates: &[f64], seconds: f64, command: &str, commit: &str) -> Result<ThrottleResults> {
    let moto = start_moto()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    let ceiling = rt.block_on(one_run(&moto.endpoint, None, 600, "ceiling"))?;
    eprintln!(
        "narward-bench: throttle: no limit: {:.0} requests/s",
        ceiling.achieved_rps
    );
    runs.push(ceiling);
    for &r in rates {
        let objects = ((r * seconds / REQUESTS_PER_OBJECT).round() as u64).max(50);
        let run = rt.block_on(one_run(&moto.endpoint, Some(r), objects, &format!("{r}")))?;
        eprintln!(
            "narward-bench: throttle: allowed {r:.0}/s: achieved {:.1}/s ({:.1} %), {} SlowDown, {} failed",
            run.achieved_rps,
            100.0 * run.ratio.unwrap_or(0.0),
            run.slow_down,
            run.failed_objects
        );
        runs.push(run);
    }
    Ok(ThrottleResults {
        started_unix: narward::index::now(),
        command: command.to_string(),
        narward_commit: commit.to_string(),
        endpoint: format!(
            "moto at {} behind narward-testkit's fault proxy",
            moto.endpoint
        ),
        seconds_per_run: seconds,
        runs,
    })
}
