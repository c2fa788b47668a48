//! Executing a restore (edge, tokio, any [`Store`]): find what is archived or
//! quarantined, request RestoreObject once per cold NAR, and republish what is readable
//! in the safe order of [`super::order`], journaled in [`super::journal`].
//!
//! It reuses apply's machinery: [`crate::apply::recover`] finds removed paths (archive
//! area, quarantine stamps), checks references ([`recover::first_not_in_cache`]) and
//! moves objects back (copy if absent, verify, delete the source: [`recover::move_back`];
//! a NAR archived in place is copied onto itself in STANDARD once restored), and
//! [`crate::apply::exec::retry`] retries throttled and transient errors.
//!
//! - Quarantined paths (not finalized) need no RestoreObject: their objects are readable.
//! - A RestoreObject is journaled (`requesting`) before it is sent and its answer
//!   (`requested`) after; a key with an answer is never requested again, and one
//!   announced without an answer is first looked at (HEAD): a restore under way or done is
//!   recorded, not requested twice.
//! - Republishing: wave 0 every NAR and `.ls` (each only once readable), then narinfos in
//!   waves, each only after its NAR and the narinfos of its in-set references are
//!   published, and once all its references are seen in the cache again (HEAD just
//!   before, once per pass: an apply may have removed one since discovery or since this
//!   restore published it). Narinfos are copied byte for byte and compared.

use super::journal::{At, NarEntry, PathEntry, Record, State};
use super::order::{RepublishPath, republish_order};
use crate::apply::exec::{ExecOptions, checkpoint, retry};
use crate::apply::journal::Journal;
use crate::apply::recover::{self, Found, QuarantineIndex};
use crate::cache::store::{Area, Loc, RestoreOutcome, Store, StoreErrorKind, Tier};
use crate::model::is_archive_class;
use anyhow::{Context, Result, bail};
use narward_formats::store_path::StorePathHash;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What is not hot among the paths asked for (and their closures).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Discovery {
    pub paths: Vec<PathEntry>,
    /// Paths met that are hot already (narinfo in the cache).
    pub hot: u64,
    /// Paths asked for that are nowhere (neither cache, archive nor quarantine).
    pub missing: Vec<String>,
}

impl Discovery {
    pub fn archived(&self) -> impl Iterator<Item = &PathEntry> {
        self.paths.iter().filter(|p| p.from != "quarantine")
    }
    /// Paths that cannot be brought back (their NAR is nowhere).
    pub fn broken(&self) -> impl Iterator<Item = &PathEntry> {
        self.paths.iter().filter(|p| p.broken.is_some())
    }
    pub fn quarantined(&self) -> impl Iterator<Item = &PathEntry> {
        self.paths.iter().filter(|p| p.from == "quarantine")
    }
    /// Cold NARs (GLACIER, DEEP_ARCHIVE): those needing RestoreObject.
    pub fn cold_nars(&self) -> impl Iterator<Item = &NarEntry> {
        self.paths
            .iter()
            .filter_map(|p| p.nar.as_ref())
            .filter(|n| is_archive_class(&n.class))
    }
}

fn store_path_line(text: &[u8]) -> Option<String> {
    String::from_utf8_lossy(text)
        .lines()
        .find_map(|l| l.strip_prefix("StorePath:").map(|s| s.trim().to_string()))
}

/// Walk from `roots` (hashes): every path whose narinfo is in the archive area or a
/// quarantine stamp, and with `closure` the removed paths they reference.
///
/// # Errors
/// Store errors.
pub async fn discover<S: Store>(
    store: &S,
    roots: &[String],
    closure: bool,
    o: &ExecOptions,
) -> Result<Discovery> {
    let q = recover::quarantine_index(store, o).await?;
    let mut d = Discovery::default();
    let asked: BTreeSet<&String> = roots.iter().collect();
    // Hash → whether its narinfo is in the cache, as the walk saw it (read once: the
    // reference check below asks again only about hashes the walk did not meet).
    let mut in_cache: BTreeMap<String, bool> = BTreeMap::new();
    let mut stack: Vec<String> = roots.iter().rev().cloned().collect();
    while let Some(h) = stack.pop() {
        if in_cache.contains_key(&h) {
            continue;
        }
        let found = recover::find(store, &q, &h, o).await?.unwrap_or(Found {
            area: Area::Cache,
            prefix: String::new(),
        });
        in_cache.insert(h.clone(), found.area == Area::Cache);
        let ni = found.loc(&format!("{h}.narinfo"));
        let Some(text) = retry(o, store, || store.get(&ni)).await? else {
            if found.area != Area::Cache {
                bail!("{ni} vanished");
            }
            in_cache.insert(h.clone(), false);
            if asked.contains(&h) {
                d.missing.push(h);
            }
            continue;
        };
        let e = entry(store, &q, &h, &found, &text, o).await?;
        if found.area == Area::Cache && e.nar.is_none() {
            // Hot: its narinfo is visible and its NAR readable (its references are kept
            // with it, but may have cold NARs: walked with --closure).
            d.hot += 1;
            if closure {
                stack.extend(e.references.iter().filter(|r| **r != h).cloned());
            }
            continue;
        }
        if closure {
            stack.extend(e.references.iter().filter(|r| **r != h).cloned());
        }
        d.paths.push(e);
    }
    check_references(store, &mut d, in_cache, o).await?;
    Ok(d)
}

/// A path with a reference that is neither brought back with it nor hot in the cache is
/// broken: publishing its narinfo would show a client a path whose closure is missing.
/// `hot` (hash → narinfo in the cache) holds what the walk saw already.
async fn check_references<S: Store>(
    store: &S,
    d: &mut Discovery,
    mut hot: BTreeMap<String, bool>,
    o: &ExecOptions,
) -> Result<()> {
    let inset: BTreeSet<String> = d.paths.iter().map(|p| p.hash.clone()).collect();
    // A visible narinfo whose NAR is cold: its references are as they are.
    for p in d
        .paths
        .iter_mut()
        .filter(|p| p.broken.is_none() && p.from != "cache")
    {
        let outside = p
            .references
            .iter()
            .filter(|r| **r != p.hash && !inset.contains(*r));
        if let Some(r) = recover::first_not_in_cache(store, outside, &mut hot, o).await? {
            p.broken = Some(format!(
                "its reference {r} is not in the cache: restore with --closure"
            ));
        }
    }
    Ok(())
}

/// The journal entry of `h`, whose narinfo (`text`) was read at `found`.
async fn entry<S: Store>(
    store: &S,
    q: &QuarantineIndex,
    h: &str,
    found: &Found,
    text: &[u8],
    o: &ExecOptions,
) -> Result<PathEntry> {
    let ni = found.loc(&format!("{h}.narinfo"));
    let (url, references) = recover::url_and_refs(text);
    let ls = found.loc(&format!("{h}.ls"));
    let listing = retry(o, store, || store.head(&ls))
        .await?
        .map(|_| At::of(&ls));
    let (nar, broken) = match &url {
        Some(u) => match locate_nar(store, q, found, u, o).await {
            Ok(n) => (n, None),
            Err(e) if is_denied(&e) => return Err(e),
            Err(e) => (None, Some(format!("{e:#}"))),
        },
        None => (None, Some(format!("{ni} has no URL: line"))),
    };
    Ok(PathEntry {
        hash: h.to_string(),
        store_path: store_path_line(text).unwrap_or_else(|| h.to_string()),
        from: found.area.as_str().to_string(),
        narinfo: At::of(&ni),
        listing,
        nar,
        references,
        broken,
    })
}

/// Where the NAR `url` is: in the cache (archived in place: a cold class; `None` when it
/// is hot there), else beside the narinfo, in the archive area or a quarantine stamp.
async fn locate_nar<S: Store>(
    store: &S,
    q: &QuarantineIndex,
    found: &Found,
    url: &str,
    o: &ExecOptions,
) -> Result<Option<NarEntry>> {
    let in_cache = Loc::cache(url);
    let (at, m) = match retry(o, store, || store.head(&in_cache)).await? {
        Some(m) if is_archive_class(m.storage_class.as_deref().unwrap_or("")) => (in_cache, m),
        Some(_) => return Ok(None),
        None => {
            let src = recover::nar_source(store, q, found, url, o).await?;
            let m = retry(o, store, || store.head(&src))
                .await?
                .with_context(|| format!("{src} vanished"))?;
            (src, m)
        }
    };
    Ok(Some(NarEntry {
        key: url.to_string(),
        at: At::of(&at),
        class: m.storage_class.unwrap_or_else(|| "STANDARD".into()),
        size: m.size,
        etag: m.etag,
    }))
}

fn store_tier(t: super::Tier) -> Tier {
    match t {
        super::Tier::Bulk => Tier::Bulk,
        super::Tier::Standard => Tier::Standard,
        super::Tier::Expedited => Tier::Expedited,
    }
}

fn outcome_str(r: RestoreOutcome) -> &'static str {
    match r {
        RestoreOutcome::Started => "started",
        RestoreOutcome::AlreadyRestored => "already-restored",
        RestoreOutcome::InProgress => "in-progress",
        RestoreOutcome::NotArchived => "not-archived",
    }
}

/// Append `r` to the journal and fold it into `s`.
fn record(s: &mut State, j: &mut Journal, r: Record) -> Result<()> {
    j.append(&r)?;
    super::journal::fold_into(s, r);
    Ok(())
}

/// Request RestoreObject for every cold NAR not requested yet (see the module doc).
///
/// # Errors
/// The journal cannot be written; access denied.
pub async fn request<S: Store>(
    store: &S,
    s: &mut State,
    j: &mut Journal,
    o: &ExecOptions,
) -> Result<()> {
    let tier = super::Tier::parse(&s.begin.tier).map_err(|e| anyhow::anyhow!("{e}"))?;
    // One entry per NAR key: paths that share a NAR must not pay for it twice.
    let nars: BTreeMap<String, NarEntry> = s
        .paths
        .values()
        .filter_map(|p| p.nar.clone())
        .filter(|n| is_archive_class(&n.class))
        .map(|n| (n.key.clone(), n))
        .collect();
    let nars = nars.into_values();
    for n in nars {
        if s.requested.contains_key(&n.key) || s.is_published(&n.key) {
            continue;
        }
        let l = n.at.loc();
        let m = match retry(o, store, || store.head(&l)).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                let reason = format!("{l}: vanished before its restore was requested");
                record(s, j, Record::Failed { key: n.key, reason })?;
                continue;
            }
            Err(e) if e.kind == StoreErrorKind::Denied => bail!("{e}"),
            Err(e) => {
                let reason = e.to_string();
                record(s, j, Record::Failed { key: n.key, reason })?;
                continue;
            }
        };
        let cold = is_archive_class(m.storage_class.as_deref().unwrap_or(""));
        if !cold || m.restore.is_some() {
            // Hot again, or a restore under way or done (ours, announced before a crash,
            // or someone else's): recorded, never requested twice.
            let outcome = if cold { "found-requested" } else { "found-hot" };
            let r = Record::Requested {
                key: n.key,
                outcome: outcome.into(),
            };
            record(s, j, r)?;
            continue;
        }
        send(store, s, j, &n.key, &l, tier, o).await?;
    }
    Ok(())
}

async fn send<S: Store>(
    store: &S,
    s: &mut State,
    j: &mut Journal,
    key: &str,
    l: &Loc,
    tier: super::Tier,
    o: &ExecOptions,
) -> Result<()> {
    let key = key.to_string();
    record(s, j, Record::Requesting { key: key.clone() })?;
    let days = s.begin.days;
    match retry(o, store, || store.restore(l, days, store_tier(tier))).await {
        Ok(r) => {
            checkpoint(o);
            let outcome = outcome_str(r).to_string();
            record(s, j, Record::Requested { key, outcome })
        }
        Err(e) if e.kind == StoreErrorKind::Denied => bail!("{e}"),
        Err(e) => record(
            s,
            j,
            Record::Failed {
                key,
                reason: e.to_string(),
            },
        ),
    }
}

/// Whether a NAR's object `m` can be read (not cold, or restored).
fn readable(m: &crate::cache::ObjectMeta) -> bool {
    !is_archive_class(m.storage_class.as_deref().unwrap_or(""))
        || crate::verify::restored(m.restore.as_deref())
}

/// Make a NAR hot: `Ok(false)` while it is still cold.
async fn publish_nar<S: Store>(store: &S, n: &NarEntry, o: &ExecOptions) -> Result<bool> {
    let cache = Loc::cache(n.key.clone());
    let src = n.at.loc();
    if src.area == Area::Cache {
        let m = retry(o, store, || store.head(&cache))
            .await?
            .with_context(|| format!("{cache} vanished"))?;
        if !readable(&m) {
            return Ok(false);
        }
        recover::warm_in_place(store, &cache, &m, &n.key, o).await?;
        return Ok(true);
    }
    let sm = retry(o, store, || store.head(&src)).await?;
    match sm {
        None if retry(o, store, || store.head(&cache)).await?.is_some() => Ok(true),
        None => bail!("{src} vanished and {cache} is absent"),
        Some(m) if !readable(&m) => Ok(false),
        Some(_) => {
            recover::bring_back(store, &src, &n.key, o).await?;
            retry(o, store, || store.delete(&src, None)).await?;
            Ok(true)
        }
    }
}

enum Obj<'a> {
    Nar(&'a NarEntry),
    Listing(&'a PathEntry),
    Narinfo(&'a PathEntry),
}

/// The republishing order of a restore: waves of keys, each key's object, and the paths
/// whose narinfo no order can publish (on a reference cycle within the set, or depending
/// on one).
struct Order<'a> {
    waves: Vec<Vec<String>>,
    by_key: BTreeMap<String, Obj<'a>>,
    cyclic: Vec<StorePathHash>,
}

fn order_of(s: &State) -> Order<'_> {
    let mut by_key = BTreeMap::new();
    let mut rp = Vec::new();
    let mut extra_wave = Vec::new();
    // A broken path's objects stay where they are (nothing would point to its NAR).
    for p in s.paths.values().filter(|p| p.broken.is_none()) {
        let Ok(hash) = StorePathHash::parse(&p.hash) else {
            continue;
        };
        if let Some(n) = &p.nar {
            by_key.entry(n.key.clone()).or_insert(Obj::Nar(n));
        }
        if p.listing.is_some() {
            by_key.insert(p.listing_key(), Obj::Listing(p));
        }
        if p.from == "cache" {
            // Only its NAR is made hot again; its narinfo is visible already.
            if let Some(n) = &p.nar {
                extra_wave.push(n.key.clone());
            }
            continue;
        }
        by_key.insert(p.narinfo_key(), Obj::Narinfo(p));
        rp.push(RepublishPath {
            hash,
            references: p
                .references
                .iter()
                .filter_map(|r| StorePathHash::parse(r).ok())
                .collect(),
            nar: p.nar.as_ref().map(|n| n.key.clone()),
            listing: p.listing.as_ref().map(|_| p.listing_key()),
            narinfo: p.narinfo_key(),
        });
    }
    let order = republish_order(&rp);
    let mut waves = order.waves;
    if !extra_wave.is_empty() {
        waves.insert(0, extra_wave);
    }
    Order {
        waves,
        by_key,
        cyclic: order.cyclic,
    }
}

/// Paths whose narinfo is never published, by hash, with the reason: broken ones (their
/// NAR or a reference is missing), those on a reference cycle within the set, and every
/// path of the set waiting on one of them through in-set references. Paths whose narinfo
/// is visible already wait on nothing and pass nothing on.
fn never_published(s: &State) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for p in s.paths.values() {
        if let Some(b) = &p.broken {
            out.insert(p.hash.clone(), b.clone());
        } else if p.from != "cache" && StorePathHash::parse(&p.hash).is_err() {
            let why = format!("{:?} is not a store path hash: not republished", p.hash);
            out.insert(p.hash.clone(), why);
        }
    }
    for h in order_of(s).cyclic {
        out.entry(h.to_string()).or_insert_with(|| {
            "on a reference cycle within the restore, or depending on one (damaged narinfos?): no order publishes it".into()
        });
    }
    let mut referrers: BTreeMap<&str, Vec<&PathEntry>> = BTreeMap::new();
    for p in s.paths.values().filter(|p| p.from != "cache") {
        for r in p.references.iter().filter(|r| **r != p.hash) {
            referrers.entry(r.as_str()).or_default().push(p);
        }
    }
    let mut todo: Vec<String> = out.keys().cloned().collect();
    while let Some(h) = todo.pop() {
        let Some(q) = s.paths.get(&h) else { continue };
        for p in referrers.get(h.as_str()).into_iter().flatten() {
            if !out.contains_key(&p.hash) && !narinfo_visible(s, p) {
                let why = format!("waits on {}, which is never published", q.store_path);
                out.insert(p.hash.clone(), why);
                todo.push(p.hash.clone());
            }
        }
    }
    out
}

/// Whether a path's narinfo is visible: published by this restore, or never hidden (a
/// kept path whose NAR alone is cold).
fn narinfo_visible(s: &State, p: &PathEntry) -> bool {
    p.from == "cache" || s.is_published(&p.narinfo_key())
}

/// Whether a path's narinfo may be published: its NAR, `.ls` and the narinfos of its
/// in-set references are.
fn ready(s: &State, p: &PathEntry) -> bool {
    p.broken.is_none()
        && p.nar.as_ref().is_none_or(|n| s.is_published(&n.key))
        && (p.listing.is_none() || s.is_published(&p.listing_key()))
        && p.references
            .iter()
            .filter(|r| **r != p.hash)
            .all(|r| s.paths.get(r).is_none_or(|q| narinfo_visible(s, q)))
}

/// Republish what is readable, in order (see the module doc).
///
/// # Errors
/// The journal cannot be written; access denied.
pub async fn publish<S: Store>(
    store: &S,
    s: &mut State,
    j: &mut Journal,
    o: &ExecOptions,
) -> Result<()> {
    let snapshot = s.clone();
    let Order { waves, by_key, .. } = order_of(&snapshot);
    let mut hot = BTreeMap::new();
    for key in waves.iter().flatten() {
        if s.is_published(key) {
            continue;
        }
        let done = match by_key.get(key) {
            Some(Obj::Nar(n)) => publish_nar(store, n, o).await,
            Some(Obj::Listing(p)) => match &p.listing {
                Some(at) => recover::move_back(store, &at.loc(), key, o)
                    .await
                    .map(|()| true),
                None => Ok(true),
            },
            Some(Obj::Narinfo(p)) if ready(s, p) => {
                publish_narinfo(store, p, &mut hot, o).await.map(|()| true)
            }
            Some(Obj::Narinfo(_)) | None => Ok(false),
        };
        match done {
            Ok(true) => {
                checkpoint(o);
                record(s, j, Record::Published { key: key.clone() })?;
            }
            Ok(false) => {}
            Err(e) if is_denied(&e) => return Err(e),
            Err(e) => {
                let reason = format!("{e:#}");
                if s.failed.get(key) != Some(&reason) {
                    let key = key.clone();
                    record(s, j, Record::Failed { key, reason })?;
                }
            }
        }
    }
    Ok(())
}

/// Publish the narinfo of `p` (ready: its NAR, `.ls` and in-set references are published
/// or visible), after looking again at every reference in the cache: one outside the set
/// was found hot at discovery, one inside was published by this restore, and an apply
/// may have archived or deleted either since. Refused (a failure, tried again on the next
/// status or resume) while one is not in the cache. `hot` remembers the answers of this
/// pass (hash → narinfo in the cache).
async fn publish_narinfo<S: Store>(
    store: &S,
    p: &PathEntry,
    hot: &mut BTreeMap<String, bool>,
    o: &ExecOptions,
) -> Result<()> {
    let others = p.references.iter().filter(|r| **r != p.hash);
    if let Some(r) = recover::first_not_in_cache(store, others, hot, o).await? {
        bail!(
            "not published: its reference {r} is no longer in the cache (removed since the restore began?); bring it back (`narward restore` or `recover`), then `narward restore --resume`"
        );
    }
    recover::move_back(store, &p.narinfo.loc(), &p.narinfo_key(), o).await
}

fn is_denied(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::cache::store::StoreError>()
        .is_some_and(|s| s.kind == StoreErrorKind::Denied)
}

/// Request what is not requested, republish what is readable, and mark the journal
/// finished once every narinfo is published.
///
/// # Errors
/// As [`request`] and [`publish`].
pub async fn advance<S: Store>(
    store: &S,
    s: &mut State,
    j: &mut Journal,
    o: &ExecOptions,
) -> Result<()> {
    if s.finished {
        return Ok(());
    }
    request(store, s, j, o).await?;
    publish(store, s, j, o).await?;
    let all = s
        .paths
        .values()
        .all(|p| narinfo_visible(s, p) && p.nar.as_ref().is_none_or(|n| s.is_published(&n.key)));
    if all {
        record(s, j, Record::Finished)?;
    }
    Ok(())
}

/// The status of one path of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStatus {
    pub path: String,
    /// `waiting`, `readable`, `republished` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The status of one restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreStatus {
    pub id: String,
    pub cache: String,
    pub tier: String,
    pub finished: bool,
    pub counts: BTreeMap<&'static str, u64>,
    /// RestoreObject requests sent (answered), by outcome.
    pub requests: BTreeMap<String, u64>,
    pub paths: Vec<PathStatus>,
}

fn path_failure(s: &State, p: &PathEntry, never: &BTreeMap<String, String>) -> Option<String> {
    if let Some(b) = never.get(&p.hash) {
        return Some(b.clone());
    }
    let keys = [
        p.nar.as_ref().map(|n| n.key.clone()),
        p.listing.as_ref().map(|_| p.listing_key()),
        Some(p.narinfo_key()),
    ];
    keys.into_iter()
        .flatten()
        .find_map(|k| s.failed.get(&k).map(|r| format!("{k}: {r}")))
}

async fn path_status<S: Store>(
    store: &S,
    s: &State,
    p: &PathEntry,
    never: &BTreeMap<String, String>,
    o: &ExecOptions,
) -> Result<(&'static str, Option<String>)> {
    let nar_done = p.nar.as_ref().is_none_or(|n| s.is_published(&n.key));
    if narinfo_visible(s, p) && nar_done {
        return Ok(("republished", None));
    }
    if let Some(f) = path_failure(s, p, never) {
        return Ok(("failed", Some(f)));
    }
    let Some(n) = p.nar.as_ref().filter(|n| !s.is_published(&n.key)) else {
        return Ok(("readable", Some("waiting for its references".into())));
    };
    let l = n.at.loc();
    let m = retry(o, store, || store.head(&l)).await?;
    Ok(match m {
        Some(m) if !readable(&m) && m.restore.is_some() => (
            "waiting",
            Some(format!("{} {}", n.key, m.restore.unwrap_or_default())),
        ),
        Some(m) if !readable(&m) && s.requested.contains_key(&n.key) => (
            "failed",
            Some(format!(
                "{}: still cold and no restore under way (the restored copy expired before republishing?): request it again with `narward restore`",
                n.key
            )),
        ),
        Some(m) if !readable(&m) => ("waiting", Some(format!("{}: not requested yet", n.key))),
        _ => ("readable", None),
    })
}

/// The status of a restore: HEADs of the NARs not yet republished. A path whose narinfo
/// no order can publish (`never_published`) is `failed` with the reason, so `status
/// --wait` ends (exit 1) instead of waiting for it.
///
/// # Errors
/// Store errors.
pub async fn status<S: Store>(store: &S, s: &State, o: &ExecOptions) -> Result<RestoreStatus> {
    let mut paths = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let never = never_published(s);
    for p in s.paths.values() {
        let (st, detail) = path_status(store, s, p, &never, o).await?;
        *counts.entry(st).or_default() += 1;
        paths.push(PathStatus {
            path: p.store_path.clone(),
            status: st,
            detail,
        });
    }
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for v in s.requested.values() {
        *requests.entry(v.clone()).or_default() += 1;
    }
    Ok(RestoreStatus {
        id: s.begin.id.clone(),
        cache: s.begin.cache.clone(),
        tier: s.begin.tier.clone(),
        finished: s.finished,
        counts,
        requests,
        paths,
    })
}

#[cfg(test)]
mod tests;
