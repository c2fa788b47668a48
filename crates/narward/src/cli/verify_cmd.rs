//! `narward verify`: re-read the live cache, independently of any index or plan, and check
//! that what clients see is whole (the check is [`narward::verify::check`]).

use super::{Global, cache_url_or_state, print_json};
use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use narward::cache::{Cache, CacheUrl};
use narward::verify::{self, Fetched};
use narward_formats::keys::{self, ObjectKind};
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  narward verify --cache file:///srv/nix-cache
  narward verify --json --cache 's3://nix-cache?region=us-east-1' > verify.json

Exit status: 0 clean; 1 problems found (each named); 2 the cache could not be read.")]
pub struct VerifyArgs {
    /// The cache: file:///DIR, a directory, or s3://BUCKET[/PREFIX]?endpoint=URL&region=R.
    /// Defaults to the cache the state directory indexes.
    #[arg(long)]
    pub cache: Option<String>,
    /// How many objects to read at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Attempts per S3 request.
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
    /// How many examples to show per finding (counts are always exact).
    #[arg(long, default_value_t = 20)]
    pub max_examples: usize,
}

pub async fn run(g: &Global, a: VerifyArgs) -> Result<ExitCode> {
    let url_text = cache_url_or_state(a.cache.as_deref(), &g.state)?;
    let url = CacheUrl::parse(&url_text)?;
    let cache = Cache::open(&url, a.max_attempts).await?;
    let fetched = fetch(&cache, a.concurrency.max(1)).await?;
    let r = verify::check(&url.identity(), &fetched, a.max_examples);
    if g.json {
        print_json(&r)?;
    } else {
        print!("{}", r.to_text());
    }
    Ok(if r.problems > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// List the cache, read every narinfo, and HEAD every NAR in an archive class.
async fn fetch(cache: &Cache, concurrency: usize) -> Result<Fetched> {
    let objects = cache.list(&|_| {}).await.context("the cache listing")?;
    let narinfo_keys: Vec<String> = objects
        .iter()
        .filter(|o| matches!(keys::classify(&o.key()), ObjectKind::Narinfo(_)))
        .map(|o| o.key().to_string())
        .collect();
    let narinfos = futures::stream::iter(narinfo_keys)
        .map(|k| async move {
            let r = cache.get(&k).await.map_err(|e| format!("{e:#}"));
            (k, r)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let restores = futures::stream::iter(verify::cold_objects(&objects))
        .map(|k| async move {
            let h = cache.head(&k).await?;
            Ok::<_, anyhow::Error>((k, h.and_then(|m| m.restore)))
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    Ok(Fetched {
        objects,
        narinfos,
        restores,
    })
}
