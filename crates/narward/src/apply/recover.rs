//! `recover` and `apply --finalize` (edge): bring removed paths back from the quarantine
//! or archive area (NAR first, then `.ls`, then the narinfo, so a client never sees a
//! narinfo whose NAR is missing), and delete what waited out the grace window and is
//! still unreachable.

use super::exec::{ExecOptions, retry};
use super::program::quarantine_key;
use crate::cache::store::{Area, CopyOptions, Loc, Store};
use crate::cache_graph::Snapshot;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Where a removed path's objects are: an area and the key prefix in it (`<stamp>/` in
/// the quarantine area, empty in the archive area).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub area: Area,
    pub prefix: String,
}

impl Found {
    pub fn loc(&self, key: &str) -> Loc {
        Loc {
            area: self.area,
            key: format!("{}{key}", self.prefix),
        }
    }
}

/// The quarantined objects, by key in the cache → the stamps holding one.
pub type QuarantineIndex = BTreeMap<String, Vec<String>>;

/// List the quarantine area as cache key → stamps (oldest first).
///
/// # Errors
/// The listing fails.
pub async fn quarantine_index<S: Store>(store: &S, o: &ExecOptions) -> Result<QuarantineIndex> {
    let mut m: QuarantineIndex = BTreeMap::new();
    for r in retry(o, store, || store.list(Area::Quarantine, "")).await? {
        if let Some((stamp, key)) = r.key.split_once('/') {
            m.entry(key.to_string())
                .or_default()
                .push(stamp.to_string());
        }
    }
    Ok(m)
}

/// Where the narinfo `<hash>.narinfo` of a removed path is: the archive area, or the
/// newest quarantine stamp.
///
/// # Errors
/// A store error.
pub async fn find<S: Store>(
    store: &S,
    q: &QuarantineIndex,
    hash: &str,
    o: &ExecOptions,
) -> Result<Option<Found>> {
    let key = format!("{hash}.narinfo");
    if let Some(stamp) = q.get(&key).and_then(|v| v.last()) {
        return Ok(Some(Found {
            area: Area::Quarantine,
            prefix: format!("{stamp}/"),
        }));
    }
    let l = Loc::archive(key);
    if retry(o, store, || store.head(&l)).await?.is_some() {
        return Ok(Some(Found {
            area: Area::Archive,
            prefix: String::new(),
        }));
    }
    Ok(None)
}

/// The `URL:` and the reference hashes of a narinfo, read leniently.
pub fn url_and_refs(text: &[u8]) -> (Option<String>, Vec<String>) {
    let t = String::from_utf8_lossy(text);
    let mut url = None;
    let mut refs = Vec::new();
    for l in t.lines() {
        if let Some(u) = l.strip_prefix("URL:") {
            url = Some(u.trim().to_string());
        } else if let Some(r) = l.strip_prefix("References:") {
            refs.extend(
                r.split_whitespace()
                    .filter_map(|p| p.get(..32))
                    .map(str::to_string),
            );
        }
    }
    (url, refs)
}

/// Copy `from` back to the cache key `key` (if absent there) and verify it.
pub async fn bring_back<S: Store>(store: &S, from: &Loc, key: &str, o: &ExecOptions) -> Result<()> {
    let to = Loc::cache(key);
    let opts = CopyOptions {
        if_absent: true,
        ..Default::default()
    };
    let m = retry(o, store, || store.copy(from, &to, &opts)).await?;
    let src = retry(o, store, || store.head(from)).await?;
    if src.is_some_and(|s| s.size != m.size) {
        bail!("recovering {to}: the copy's size differs from {from}");
    }
    Ok(())
}

/// Move the narinfo or `.ls` at `src` back to the cache key `key`: copied if absent,
/// compared byte for byte with the original, then the original deleted (a copy that
/// differs leaves both in place). Done already (`src` gone, `key` present) is success.
///
/// # Errors
/// Store errors; `src` and `key` both absent; the copy differs.
pub async fn move_back<S: Store>(store: &S, src: &Loc, key: &str, o: &ExecOptions) -> Result<()> {
    let cache = Loc::cache(key);
    let Some(orig) = retry(o, store, || store.get(src)).await? else {
        if retry(o, store, || store.head(&cache)).await?.is_some() {
            return Ok(());
        }
        bail!("{src} vanished and {cache} is absent");
    };
    bring_back(store, src, key, o).await?;
    let now = retry(o, store, || store.get(&cache)).await?;
    if now.as_deref() != Some(orig.as_slice()) {
        bail!("{cache} is not byte-identical to {src}: left both in place");
    }
    retry(o, store, || store.delete(src, None)).await?;
    Ok(())
}

/// A NAR at its cache key in an archive class (archived in place on S3) must be readable
/// before its narinfo is published: not restored, recover refuses; restored, it is copied
/// onto itself in STANDARD, so it stays readable after the restored copy expires.
pub async fn warm_in_place<S: Store>(
    store: &S,
    nar: &Loc,
    m: &crate::cache::ObjectMeta,
    hash: &str,
    o: &ExecOptions,
) -> Result<()> {
    let class = m.storage_class.as_deref().unwrap_or("STANDARD");
    if !crate::model::is_archive_class(class) {
        return Ok(());
    }
    if !crate::verify::restored(m.restore.as_deref()) {
        bail!(
            "cannot recover {hash}: its NAR {} is in {class} and not restored; restore it first (S3 RestoreObject), then recover again",
            nar.key
        );
    }
    let opts = CopyOptions {
        storage_class: Some("STANDARD".into()),
        if_match: m.etag.clone(),
        if_absent: false,
    };
    let back = retry(o, store, || store.copy(nar, nar, &opts)).await?;
    if back.size != m.size {
        bail!("recovering {nar}: the STANDARD copy's size differs");
    }
    Ok(())
}

/// What recovering one path did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Recovered {
    pub narinfo: String,
    pub nar: Option<String>,
    pub references: Vec<String>,
}

/// Recover one removed path: NAR, then `.ls`, then narinfo back into the cache area
/// (the last two by [`move_back`], compared byte for byte); the NAR's copy in the
/// quarantine or archive area is removed after.
///
/// # Errors
/// The narinfo or its NAR cannot be found or copied.
pub async fn recover_path<S: Store>(
    store: &S,
    q: &QuarantineIndex,
    found: &Found,
    hash: &str,
    o: &ExecOptions,
) -> Result<Recovered> {
    let ni_key = format!("{hash}.narinfo");
    let ni = found.loc(&ni_key);
    let text = retry(o, store, || store.get(&ni))
        .await?
        .with_context(|| format!("{ni} vanished"))?;
    let (url, references) = url_and_refs(&text);
    let mut nar_src = None;
    if let Some(u) = &url {
        let l = Loc::cache(u.clone());
        match retry(o, store, || store.head(&l)).await? {
            None => {
                let src = nar_source(store, q, found, u, o).await?;
                bring_back(store, &src, u, o).await?;
                nar_src = Some(src);
            }
            Some(m) => warm_in_place(store, &l, &m, hash, o).await?,
        }
    }
    let ls = found.loc(&format!("{hash}.ls"));
    if retry(o, store, || store.head(&ls)).await?.is_some() {
        move_back(store, &ls, &format!("{hash}.ls"), o).await?;
    }
    move_back(store, &ni, &ni_key, o).await?;
    if let Some(l) = nar_src {
        retry(o, store, || store.delete(&l, None)).await?;
    }
    Ok(Recovered {
        narinfo: ni_key,
        nar: url,
        references,
    })
}

/// Where a removed path's NAR is: beside its narinfo, else in any quarantine stamp or the
/// archive area.
pub async fn nar_source<S: Store>(
    store: &S,
    q: &QuarantineIndex,
    found: &Found,
    url: &str,
    o: &ExecOptions,
) -> Result<Loc> {
    let mut candidates = vec![found.loc(url), Loc::archive(url)];
    for s in q.get(url).into_iter().flatten().rev() {
        candidates.push(Loc::quarantine(quarantine_key(s, url)));
    }
    for c in candidates {
        if retry(o, store, || store.head(&c)).await?.is_some() {
            return Ok(c);
        }
    }
    bail!(
        "cannot recover: the NAR {url} is neither in the cache nor in the quarantine or archive area"
    )
}

/// Recover the path `hash`, and with `closure` every removed path it references
/// (references first, so that no recovered narinfo names a path still missing).
///
/// # Errors
/// The path is in neither area (and not in the cache); a copy fails.
pub async fn recover<S: Store>(
    store: &S,
    hash: &str,
    closure: bool,
    o: &ExecOptions,
) -> Result<Vec<Recovered>> {
    let q = quarantine_index(store, o).await?;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut refs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![hash.to_string()];
    while let Some(h) = stack.pop() {
        if !seen.insert(h.clone()) {
            continue;
        }
        let Some(f) = find(store, &q, &h, o).await? else {
            let l = Loc::cache(format!("{h}.narinfo"));
            let in_cache = retry(o, store, || store.head(&l)).await?;
            if h == hash && in_cache.is_none() {
                bail!("{h}: no narinfo in the cache, the quarantine or the archive area");
            }
            continue;
        };
        let mut r = Vec::new();
        if closure {
            let l = f.loc(&format!("{h}.narinfo"));
            let t = retry(o, store, || store.get(&l)).await?;
            r = url_and_refs(&t.unwrap_or_default()).1;
            stack.extend(r.iter().cloned());
        }
        refs.insert(h.clone(), r);
        found.insert(h, f);
    }
    if !closure {
        for (h, f) in &found {
            references_hot(store, f, h, o).await?;
        }
    }
    let mut out = Vec::new();
    for h in references_first(&refs) {
        if let Some(f) = found.get(&h) {
            out.push(recover_path(store, &q, f, &h, o).await?);
        }
    }
    Ok(out)
}

/// The hashes of `refs` (hash → its reference hashes) in an order where each comes after
/// every one it references among them: restore's republishing order
/// ([`crate::restore::order::republish_order`]), a damaged reference cycle last, and
/// hashes that do not parse after all.
pub fn references_first(refs: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    use crate::restore::order::{RepublishPath, republish_order};
    use narward_formats::store_path::StorePathHash;
    let mut odd = Vec::new();
    let mut paths = Vec::new();
    for (h, r) in refs {
        match StorePathHash::parse(h) {
            Ok(hash) => paths.push(RepublishPath {
                hash,
                references: r
                    .iter()
                    .filter_map(|x| StorePathHash::parse(x).ok())
                    .collect(),
                nar: None,
                listing: None,
                narinfo: h.clone(),
            }),
            Err(_) => odd.push(h.clone()),
        }
    }
    let mut out: Vec<String> = republish_order(&paths)
        .waves
        .into_iter()
        .flatten()
        .collect();
    out.extend(odd);
    out
}

/// Refuse to recover `hash` alone when a path it references is not in the cache: its
/// narinfo would show clients a path whose closure is missing.
async fn references_hot<S: Store>(
    store: &S,
    found: &Found,
    hash: &str,
    o: &ExecOptions,
) -> Result<()> {
    let l = found.loc(&format!("{hash}.narinfo"));
    let text = retry(o, store, || store.get(&l)).await?.unwrap_or_default();
    let refs = url_and_refs(&text).1;
    let others = refs.iter().filter(|r| *r != hash);
    if let Some(r) = first_not_in_cache(store, others, &mut BTreeMap::new(), o).await? {
        bail!(
            "cannot recover {hash} alone: the path {r} it references is not in the cache (archived or deleted); recover with --closure"
        );
    }
    Ok(())
}

/// The first of `hashes` whose narinfo is not in the cache area (HEAD, remembered in
/// `seen`: hash → in the cache), if any. The one check of references that recover and
/// restore make before a narinfo becomes visible.
///
/// # Errors
/// Store errors.
pub async fn first_not_in_cache<'a, S: Store>(
    store: &S,
    hashes: impl Iterator<Item = &'a String>,
    seen: &mut BTreeMap<String, bool>,
    o: &ExecOptions,
) -> Result<Option<String>> {
    for r in hashes {
        let hot = match seen.get(r) {
            Some(h) => *h,
            None => {
                let l = Loc::cache(format!("{r}.narinfo"));
                let h = retry(o, store, || store.head(&l)).await?.is_some();
                seen.insert(r.clone(), h);
                h
            }
        };
        if !hot {
            return Ok(Some(r.clone()));
        }
    }
    Ok(None)
}

/// Add what `text` names among the quarantined keys to `needed`; newly needed narinfos
/// go to `todo` (their own references are needed too).
fn mark(text: &[u8], q: &QuarantineIndex, needed: &mut BTreeSet<String>, todo: &mut Vec<String>) {
    let (url, refs) = url_and_refs(text);
    for k in refs
        .iter()
        .map(|h| format!("{h}.narinfo"))
        .chain(url)
        .filter(|k| q.contains_key(k))
    {
        if needed.insert(k.clone()) && k.ends_with(".narinfo") {
            todo.push(k);
        }
    }
}

/// What `apply --finalize` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinalizeReport {
    /// Quarantined objects deleted for good.
    pub deleted: Vec<String>,
    /// Paths recovered because a visible narinfo references them again.
    pub recovered: Vec<Recovered>,
    /// Quarantined objects still inside the grace window.
    pub waiting: u64,
    /// Quarantined objects whose delete failed (after retries), with the error: still
    /// there (or unknown), never counted as deleted; the next `--finalize` tries again.
    pub failed: Vec<super::program::Skip>,
    /// DeleteObjects requests sent (≤ 1,000 keys each).
    pub delete_requests: u64,
}

/// Refuse to finalize while a narinfo visible in `fresh` could not be read (its fetch
/// failed, or it is listed but not indexed): what it references is unknown, and any
/// quarantined object might be it, so nothing may be deleted (and nothing is recovered
/// either: finalize changes nothing until it reads).
///
/// # Errors
/// Such a narinfo exists: the error names the first few, with why.
pub fn refuse_unread(fresh: &Snapshot<'_>) -> Result<()> {
    use crate::cache_graph::Status;
    let g = fresh.graph;
    let unread: Vec<u32> = (0..g.len() as u32)
        .filter(|&id| matches!(g.status(id), Status::FetchFailed | Status::NotIndexed))
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = unread
        .iter()
        .take(5)
        .map(|&id| format!("{}.narinfo ({})", g.hash(id), g.why(id)))
        .collect();
    bail!(
        "{} narinfo(s) in the cache could not be read, so what they reference is unknown: nothing recovered or deleted (repair or remove them, run `narward index`, then finalize again): {}",
        unread.len(),
        named.join(", ")
    )
}

/// Finalize: recover quarantined paths (references first: [`references_first`]) and NARs
/// that a narinfo visible in `fresh` references, directly or through other quarantined
/// paths, and objects a `file://`
/// symlink in `fresh` reads; delete the quarantined
/// objects whose stamp is older than `grace_secs` and that nothing needs, in DeleteObjects
/// batches of ≤ 1,000 keys, calling `announce` with each batch's keys before its request
/// (the journal).
///
/// # Errors
/// A visible narinfo could not be read ([`refuse_unread`]: nothing is changed); store
/// errors; `announce` fails.
pub async fn finalize<S: Store>(
    store: &S,
    fresh: &Snapshot<'_>,
    now: i64,
    grace_secs: i64,
    o: &ExecOptions,
    announce: &mut dyn FnMut(&[String]) -> Result<()>,
) -> Result<FinalizeReport> {
    refuse_unread(fresh)?;
    let q = quarantine_index(store, o).await?;
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    // Hash → references of each needed quarantined narinfo, for the recovery order.
    let mut refs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Each visible narinfo's text as fetched (the quirk text `index` kept, or the text
    // printed back from the columns).
    for id in 0..fresh.graph.len() as u32 {
        if let Some(text) = fresh.texts(id).first() {
            mark(text, &q, &mut needed, &mut todo);
        }
    }
    // A `file://` symlink in the cache reads its target: a quarantined one comes back.
    for t in fresh.index.objects.iter().filter_map(|o| o.link_target()) {
        if q.contains_key(t) && needed.insert(t.to_string()) && t.ends_with(".narinfo") {
            todo.push(t.to_string());
        }
    }
    while let Some(k) = todo.pop() {
        let h = k.strip_suffix(".narinfo").unwrap_or(&k).to_string();
        let mut r = Vec::new();
        if let Some(stamp) = q.get(&k).and_then(|v| v.last()) {
            let l = Loc::quarantine(format!("{stamp}/{k}"));
            let text = retry(o, store, || store.get(&l)).await?.unwrap_or_default();
            mark(&text, &q, &mut needed, &mut todo);
            r = url_and_refs(&text).1;
        }
        refs.insert(h, r);
    }
    let mut rep = FinalizeReport::default();
    // References first, as `recover` does: no recovered narinfo names a path still missing.
    for h in references_first(&refs) {
        if let Some(f) = find(store, &q, &h, o).await? {
            rep.recovered
                .push(recover_path(store, &q, &f, &h, o).await?);
        }
    }
    let mut moved = !rep.recovered.is_empty();
    for k in needed.iter().filter(|k| !k.ends_with(".narinfo")) {
        let l = Loc::cache(k.clone());
        let in_cache = retry(o, store, || store.head(&l)).await?;
        if let (None, Some(s)) = (in_cache, q.get(k).and_then(|v| v.last())) {
            let from = Loc::quarantine(quarantine_key(s, k));
            bring_back(store, &from, k, o).await?;
            retry(o, store, || store.delete(&from, None)).await?;
            moved = true;
        }
    }
    // What is left to delete: listed again only when something left the quarantine
    // above (the listing is then the truth), else the first listing still is.
    let q = if moved {
        quarantine_index(store, o).await?
    } else {
        q
    };
    let mut expired_keys = Vec::new();
    for (key, stamps) in &q {
        for s in stamps {
            let expired = s.parse::<i64>().is_ok_and(|t| t + grace_secs <= now);
            if !expired || needed.contains(key) {
                rep.waiting += 1;
                continue;
            }
            expired_keys.push(quarantine_key(s, key));
        }
    }
    let d = super::batch_delete::delete_keys(store, Area::Quarantine, &expired_keys, o, announce)
        .await?;
    rep.deleted = d.deleted;
    rep.failed = d.failed;
    rep.delete_requests = d.requests;
    Ok(rep)
}

#[cfg(test)]
mod tests;
