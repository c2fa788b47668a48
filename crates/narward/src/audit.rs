//! Audit: what is wrong with a cache, computed from its index alone (no I/O): from the
//! [`Snapshot`] every command reads (listing, [`CacheGraph`] columns, quirk texts), never
//! from the narinfo texts. Signatures are verified from each narinfo as the columns print
//! it back (byte for byte the text fetched) or from its quirk text, as Nix verifies them
//! from the parsed values; NAR owners (orphans, shared NARs) are the plan's, read from the
//! same columns with the same unknown-means-keep rules.
//!
//! Integrity errors (a client can be hurt): invalid signatures, narinfos that do not parse,
//! narinfos whose NAR object is missing or archived (not fetchable), references to store
//! paths with no narinfo (closure holes), FileSize different from the NAR object's size
//! (NarSize too for `Compression: none`), narinfos whose file name and StorePath name
//! different paths, URLs with white space around them or a leading `/` (Nix asks for a
//! key that does not exist, or that only some servers fold), a missing or unreadable
//! `nix-cache-info` or one for another store directory, narinfos whose text changed since
//! an earlier index in more than `Sig:` lines (narinfos are immutable in practice: clients
//! may hold the old one), and — when trusted keys are given — input-addressed paths with
//! no valid signature.
//! Warnings (waste or oddities): NAR objects no narinfo points to (reported apart while
//! some narinfo's NAR is unknown: it might be one of them), NARs shared by several
//! narinfos, `.ls` listings and `debuginfo/` links that point at nothing, and narinfos
//! whose URL is absolute (Nix fetches the NAR from outside this cache, where narward can
//! check nothing; plans keep such paths as unknown).

use crate::cache_graph::{CacheGraph, Snapshot, compression_code, quirks};
use crate::graph::NONE;
use crate::index::Index;
use crate::model::FetchedRecord;
use narward_formats::keys::{self, Category, ObjectKind};
use narward_formats::narinfo::SigStatus;
use narward_formats::signature::PublicKey;
use narward_formats::store_path::STORE_DIR;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One finding class: exact count, and up to `max_examples` examples.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Finding {
    pub(crate) fn add(&mut self, max: usize, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < max {
            self.examples.push(example());
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SignatureSummary {
    /// Whether trusted keys were given (otherwise only parse-level checks were made).
    pub checked: bool,
    pub valid: u64,
    pub invalid: Finding,
    pub unsigned: Finding,
    pub unknown_key: Finding,
    /// Unsigned or unknown-key paths that are content-addressed and need no signature.
    pub content_addressed_unsigned: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AuditReport {
    pub cache: String,
    pub generation: u64,
    pub objects: u64,
    pub objects_by_category: BTreeMap<String, u64>,
    pub narinfos: u64,
    pub signatures: SignatureSummary,
    pub unparseable_narinfos: Finding,
    /// Narinfos whose text changed since an earlier index in more than `Sig:` lines.
    pub narinfo_changed: Finding,
    pub missing_nar: Finding,
    pub archived_nar_with_visible_narinfo: Finding,
    pub closure_holes: Finding,
    pub file_size_mismatch: Finding,
    /// `Compression: none` narinfos whose NarSize differs from the NAR object's size.
    pub nar_size_mismatch: Finding,
    /// Narinfos whose StorePath hash differs from the hash in their file name.
    pub store_path_mismatch: Finding,
    /// Narinfos whose URL has white space around it (e.g. a `\r`) or a leading `/`: Nix
    /// asks for a key that does not exist (S3), or one only some servers fold.
    pub unusual_nar_urls: Finding,
    /// Narinfos whose URL is absolute (warning: the NAR is outside this cache).
    pub foreign_nar_urls: Finding,
    pub orphan_nars: Finding,
    pub orphan_nar_bytes: u64,
    /// NARs no narinfo names while some narinfo's NAR is unknown: it might be one of
    /// these (plans keep them), so they are not called orphans.
    pub nars_maybe_of_unknown: Finding,
    pub shared_nars: Finding,
    pub dangling_listings: Finding,
    pub dangling_debuginfo: Finding,
    pub cache_info: Vec<String>,
    /// Integrity errors in total: non-zero means the audit fails.
    pub errors: u64,
    /// Warnings in total.
    pub warnings: u64,
}

/// Audit an index (loaded without narinfo texts) from its [`crate::index::View`].
///
/// # Errors
/// Inconsistent columns (named).
pub fn audit_view(
    index: &Index,
    view: &crate::index::View,
    trusted: &[PublicKey],
    max_examples: usize,
) -> anyhow::Result<AuditReport> {
    let graph = view.graph()?;
    Ok(audit(&view.snapshot(index, &graph), trusted, max_examples))
}

/// Audit an index held in memory, narinfo texts included (tests, small caches): its
/// columns and quirks are built as `narward index` builds them, then [`audit`].
///
/// # Errors
/// Narinfo records out of key order.
pub fn audit_index(
    index: &Index,
    trusted: &[PublicKey],
    max_examples: usize,
) -> anyhow::Result<AuditReport> {
    crate::cache_graph::with_snapshot(index, |s| audit(s, trusted, max_examples))
}

/// Audit a cache from its [`CacheGraph`]: every path's row, with the unknown-means-keep
/// rules the columns hold (the same the plan reads), and the quirk texts where the
/// columns cannot stand in for the text. `trusted` may be empty (signatures are then not
/// judged).
pub fn audit(input: &Snapshot<'_>, trusted: &[PublicKey], max_examples: usize) -> AuditReport {
    let (index, g) = (input.index, input.graph);
    let mx = max_examples;
    let mut r = AuditReport {
        cache: index.meta.cache.clone(),
        generation: index.meta.generation,
        objects: index.objects.len() as u64,
        narinfos: g.len() as u64,
        ..Default::default()
    };
    r.signatures.checked = !trusted.is_empty();
    for o in &index.objects {
        *r.objects_by_category
            .entry(o.category().as_str().to_string())
            .or_default() += 1;
    }
    for id in 0..g.len() as u32 {
        let quirk = quirks::of(g, input.quirks, id);
        audit_path(&mut r, input, id, quirk, trusted, mx);
        input.pages.scanned(id);
    }
    input.pages.let_go();
    audit_objects(&mut r, input, mx);
    audit_debuginfo(&mut r, index, mx);
    r.cache_info = check_cache_info(index);
    r.errors = r.signatures.invalid.count
        + r.unparseable_narinfos.count
        + r.narinfo_changed.count
        + r.missing_nar.count
        + r.archived_nar_with_visible_narinfo.count
        + r.closure_holes.count
        + r.file_size_mismatch.count
        + r.nar_size_mismatch.count
        + r.store_path_mismatch.count
        + r.unusual_nar_urls.count
        + if r.signatures.checked {
            r.signatures.unsigned.count + r.signatures.unknown_key.count
        } else {
            0
        }
        + r.cache_info.len() as u64;
    r.warnings = r.foreign_nar_urls.count
        + r.orphan_nars.count
        + r.nars_maybe_of_unknown.count
        + r.shared_nars.count
        + r.dangling_listings.count
        + r.dangling_debuginfo.count;
    r
}

fn narinfo_key(g: &CacheGraph<'_>, id: u32) -> String {
    format!("{}.narinfo", g.hash(id))
}

/// Nix's signature verdict for path `id`, from its narinfo as every reader takes it
/// ([`quirks::narinfo`]: the quirk text `index` kept, else printed from the columns).
/// `None` when its narinfo did not parse.
pub fn sig_verdict(
    g: &CacheGraph<'_>,
    quirks: &[FetchedRecord],
    id: u32,
    trusted: &[PublicKey],
) -> Option<SigStatus> {
    quirks::narinfo(g, quirks, id).map(|ni| ni.verify(trusted))
}

/// The checks of one path's row (and its quirk text).
fn audit_path(
    r: &mut AuditReport,
    input: &Snapshot<'_>,
    id: u32,
    quirk: Option<&FetchedRecord>,
    trusted: &[PublicKey],
    mx: usize,
) {
    let g = input.graph;
    if let Some(q) = quirk.filter(|q| q.changed()) {
        r.narinfo_changed
            .add(mx, || describe_change(&q.key, &q.earlier, &q.text));
    }
    if !g.status(id).parsed() {
        r.unparseable_narinfos
            .add(mx, || format!("{}: {}", narinfo_key(g, id), g.why(id)));
        return;
    }
    let Some(ni) = input.narinfo(id) else {
        return;
    };
    let path = ni.store_path.full_path();
    if r.signatures.checked {
        count_signature(
            &mut r.signatures,
            ni.verify(trusted),
            ni.ca.is_some(),
            &path,
            mx,
        );
    }
    if ni.store_path.hash != g.hash(id) {
        r.store_path_mismatch.add(mx, || {
            format!(
                "{}: StorePath {path} is not the path its file name names",
                narinfo_key(g, id)
            )
        });
    }
    let url = g.url(id);
    let nar_key = keys::nar_key_for_url(url);
    match keys::nar_url_quirk(url) {
        // The NAR Nix fetches is elsewhere: nothing of this cache to check.
        Some(keys::UrlQuirk::Absolute) => r.foreign_nar_urls.add(mx, || format!("{path} -> {url}")),
        quirk => {
            if quirk.is_some() {
                r.unusual_nar_urls.add(mx, || {
                    format!("{path}: URL {url:?} (Nix asks for that key; plans keep {nar_key})")
                });
            }
            let obj = g
                .nar_object(id)
                .and_then(|o| input.index.objects.get(o as usize));
            check_nar_object(r, mx, &path, g, id, nar_key, obj);
        }
    }
    for b in g.holes(id) {
        r.closure_holes
            .add(mx, || format!("{path} references {STORE_DIR}/{b}"));
    }
}

fn count_signature(s: &mut SignatureSummary, v: SigStatus, ca: bool, path: &str, mx: usize) {
    match v {
        SigStatus::Valid { .. } => s.valid += 1,
        SigStatus::Invalid => s.invalid.add(mx, || path.to_string()),
        SigStatus::Unsigned | SigStatus::UnknownKey if ca => s.content_addressed_unsigned += 1,
        SigStatus::Unsigned => s.unsigned.add(mx, || path.to_string()),
        SigStatus::UnknownKey => s.unknown_key.add(mx, || path.to_string()),
    }
}

/// NARs (orphans, shared) and `.ls` listings. A NAR is used by a path when it is the
/// path's NAR object or one of its extra NARs: the plan's rule, read from the same columns,
/// so audit calls "orphan" exactly the NARs no narinfo may use. While some narinfo's NAR
/// is unknown, a NAR nothing names might be its: such NARs are reported apart (the plan
/// keeps them).
fn audit_objects(r: &mut AuditReport, input: &Snapshot<'_>, mx: usize) {
    let (index, g) = (input.index, input.graph);
    let mut users = NarUsers::new(index.objects.len());
    let mut nar_unknown = false;
    for id in 0..g.len() as u32 {
        nar_unknown |= g.nar_unknown(id);
        for o in g
            .nar_object(id)
            .into_iter()
            .chain(g.extra_nars(id).iter().copied())
        {
            users.add(o, id);
        }
        input.pages.scanned(id);
    }
    input.pages.let_go();
    link_users(&index.objects, &mut users);
    for (oi, o) in index.objects.iter().enumerate() {
        if !matches!(o.category(), Category::Nar | Category::Listing) {
            continue;
        }
        match o.key().kind() {
            ObjectKind::Nar { .. } => match users.of(oi as u32) {
                None if nar_unknown => r
                    .nars_maybe_of_unknown
                    .add(mx, || format!("{} ({} bytes)", o.key(), o.size())),
                None => {
                    r.orphan_nar_bytes += o.size();
                    r.orphan_nars
                        .add(mx, || format!("{} ({} bytes)", o.key(), o.size()));
                }
                Some((_, [])) => {}
                Some((first, more)) => {
                    let names: Vec<String> = std::iter::once(&first)
                        .chain(more)
                        .map(|&id| narinfo_key(g, id))
                        .collect();
                    r.shared_nars
                        .add(mx, || format!("{} used by {}", o.key(), names.join(", ")));
                }
            },
            ObjectKind::Listing(h) if g.id(&h).is_none() => {
                r.dangling_listings.add(mx, || o.key().to_string());
            }
            _ => {}
        }
    }
}

/// The paths using each object as a NAR, in the order they were added: the first per
/// object in one `u32` (4 bytes an object), the others only for the few objects used by
/// more than one path.
struct NarUsers {
    first: Vec<u32>,
    more: HashMap<u32, Vec<u32>>,
}

impl NarUsers {
    fn new(objects: usize) -> NarUsers {
        NarUsers {
            first: vec![NONE; objects],
            more: HashMap::new(),
        }
    }

    /// Path `id` uses object `o` (an object out of range names nothing listed: ignored).
    fn add(&mut self, o: u32, id: u32) {
        let Some(f) = self.first.get_mut(o as usize) else {
            return;
        };
        if *f == NONE {
            *f = id;
        } else if *f != id {
            let m = self.more.entry(o).or_default();
            if !m.contains(&id) {
                m.push(id);
            }
        }
    }

    /// The first path using object `o`, and the others (none: no path uses it). Nothing
    /// is allocated: this runs once per NAR object.
    fn of(&self, o: u32) -> Option<(u32, &[u32])> {
        let f = *self.first.get(o as usize).filter(|&&f| f != NONE)?;
        Some((f, self.more.get(&o).map_or(&[][..], Vec::as_slice)))
    }
}

/// What a used `file://` symlink reads ([`crate::model::ObjectRecord::link_target`],
/// through chains of links) is used by the link's users: the plan keeps what a kept link
/// reads, so audit calls no such NAR an orphan.
fn link_users(objs: &crate::listing::Listing, users: &mut NarUsers) {
    let links = objs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.link_target().is_some());
    for (oi, o) in links {
        let Some((first, more)) = users.of(oi as u32) else {
            continue;
        };
        // Owned: `users` grows below (links are few).
        let u: Vec<u32> = std::iter::once(first).chain(more.iter().copied()).collect();
        let mut seen = std::collections::HashSet::from([oi]);
        let mut at = o;
        while let Some(t) = at.link_target() {
            let Some(ti) = objs.find(t) else {
                break;
            };
            if !seen.insert(ti) {
                break;
            }
            for &id in &u {
                users.add(ti as u32, id);
            }
            at = objs.at(ti);
        }
    }
}

fn audit_debuginfo(r: &mut AuditReport, index: &Index, mx: usize) {
    for d in index.debuginfo.iter().filter(|d| d.key != "nix-cache-info") {
        let target = std::str::from_utf8(&d.text)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| {
                v.get("archive")
                    .and_then(|a| a.as_str())
                    .map(str::to_string)
            });
        match target {
            None => r
                .dangling_debuginfo
                .add(mx, || format!("{}: not a debuginfo link", d.key)),
            Some(a) => {
                let nar = a.trim_start_matches("../");
                if index.object(nar).is_none() {
                    r.dangling_debuginfo
                        .add(mx, || format!("{} -> {nar} (missing)", d.key));
                }
            }
        }
    }
}

/// The checks of a path's NAR object: missing, archived, FileSize, and NarSize when the
/// NAR is not compressed.
fn check_nar_object(
    r: &mut AuditReport,
    mx: usize,
    path: &str,
    g: &CacheGraph<'_>,
    id: u32,
    nar_key: &str,
    obj: Option<crate::listing::ObjectRef<'_>>,
) {
    let Some(o) = obj else {
        r.missing_nar.add(mx, || format!("{path} -> {nar_key}"));
        return;
    };
    if o.is_archived() {
        r.archived_nar_with_visible_narinfo.add(mx, || {
            format!("{path} -> {nar_key} ({})", o.storage_class())
        });
    }
    if let Some(fs) = g.file_size(id)
        && fs != o.size()
    {
        r.file_size_mismatch.add(mx, || {
            format!(
                "{path}: FileSize {fs}, object {nar_key} has {} bytes",
                o.size()
            )
        });
    }
    let nar_size = g.nar_size(id);
    if g.compression(id) == compression_code(Some("none")) && nar_size != o.size() {
        r.nar_size_mismatch.add(mx, || {
            format!(
                "{path}: Compression none, NarSize {nar_size}, object {nar_key} has {} bytes",
                o.size()
            )
        });
    }
}

/// What is wrong with `nix-cache-info`: missing, unreadable, no `StoreDir`, or a store
/// directory other than /nix/store (Nix clients refuse such a cache).
fn check_cache_info(index: &Index) -> Vec<String> {
    if index.object("nix-cache-info").is_none() {
        return vec!["nix-cache-info is missing: Nix clients will refuse the cache".into()];
    }
    // `narward index` keeps its content with the debuginfo records; an index made before
    // it did has none, and nothing can be said about it.
    let Some(rec) = index.debuginfo.iter().find(|d| d.key == "nix-cache-info") else {
        return Vec::new();
    };
    if let Some(e) = &rec.fetch_error {
        return vec![format!("nix-cache-info could not be read: {e}")];
    }
    let Ok(text) = std::str::from_utf8(&rec.text) else {
        return vec!["nix-cache-info is not UTF-8 text: not a nix-cache-info file".into()];
    };
    match narward_formats::cache_info::parse(text).store_dir {
        None => vec![
            "nix-cache-info has no StoreDir line: not a nix-cache-info file (Nix writes StoreDir: /nix/store)".into(),
        ],
        Some(d) if d != STORE_DIR => vec![format!(
            "nix-cache-info says StoreDir: {d}: Nix clients with {STORE_DIR} will refuse the cache"
        )],
        Some(_) => Vec::new(),
    }
}

/// `key: Field, Field changed (N earlier versions)`: the fields whose lines differ between
/// the latest earlier text and the current one, `Sig` excluded.
fn describe_change(key: &str, earlier: &[serde_bytes::ByteBuf], now: &[u8]) -> String {
    let fields = |t: &[u8]| -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in String::from_utf8_lossy(t).lines() {
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            if k != "Sig" && !l.is_empty() {
                m.entry(k.to_string())
                    .or_default()
                    .push(v.trim().to_string());
            }
        }
        m
    };
    let before = earlier.last().map(|b| fields(b)).unwrap_or_default();
    let after = fields(now);
    let changed: Vec<&str> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    format!(
        "{key}: {} changed ({} earlier version(s))",
        changed.join(", "),
        earlier.len()
    )
}

impl AuditReport {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "audit of {} (index generation {})",
            self.cache, self.generation
        );
        let cats: Vec<String> = self
            .objects_by_category
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "  objects: {} ({})", self.objects, cats.join(", "));
        let _ = writeln!(s, "  narinfos: {}", self.narinfos);
        if self.signatures.checked {
            let _ = writeln!(
                s,
                "  signatures: {} valid, {} invalid, {} unsigned, {} unknown key, {} content-addressed without signature",
                self.signatures.valid,
                self.signatures.invalid.count,
                self.signatures.unsigned.count,
                self.signatures.unknown_key.count,
                self.signatures.content_addressed_unsigned
            );
        } else {
            let _ = writeln!(
                s,
                "  signatures: not checked (pass --trusted-key NAME:BASE64)"
            );
        }
        let sections: [(&str, &Finding, bool); 18] = [
            ("ERROR invalid signatures", &self.signatures.invalid, true),
            (
                "ERROR unsigned (input-addressed)",
                &self.signatures.unsigned,
                self.signatures.checked,
            ),
            (
                "ERROR signed by an untrusted key only",
                &self.signatures.unknown_key,
                self.signatures.checked,
            ),
            (
                "ERROR unparseable narinfos",
                &self.unparseable_narinfos,
                true,
            ),
            (
                "ERROR narinfo changed since last index (beyond signatures; plans keep what every version names)",
                &self.narinfo_changed,
                true,
            ),
            (
                "ERROR narinfos whose NAR is missing",
                &self.missing_nar,
                true,
            ),
            (
                "ERROR narinfos whose NAR is archived (not fetchable; a plan lists the kept ones as its restore set)",
                &self.archived_nar_with_visible_narinfo,
                true,
            ),
            (
                "ERROR closure holes (reference without narinfo)",
                &self.closure_holes,
                true,
            ),
            (
                "ERROR FileSize differs from the NAR object",
                &self.file_size_mismatch,
                true,
            ),
            (
                "ERROR NarSize differs from the uncompressed NAR object",
                &self.nar_size_mismatch,
                true,
            ),
            (
                "ERROR narinfos whose StorePath is not the path their file name names",
                &self.store_path_mismatch,
                true,
            ),
            (
                "ERROR narinfo URLs with white space or a leading / (Nix may not fetch the NAR)",
                &self.unusual_nar_urls,
                true,
            ),
            (
                "warning narinfo URLs pointing outside this cache (not checked; plans keep these paths)",
                &self.foreign_nar_urls,
                true,
            ),
            (
                "warning orphan NARs (no narinfo points to them)",
                &self.orphan_nars,
                true,
            ),
            (
                "warning NARs no narinfo names, which an unknown narinfo might use (plans keep them)",
                &self.nars_maybe_of_unknown,
                true,
            ),
            (
                "warning NARs shared by several narinfos",
                &self.shared_nars,
                true,
            ),
            (
                "warning .ls listings without narinfo",
                &self.dangling_listings,
                true,
            ),
            (
                "warning debuginfo links to nothing",
                &self.dangling_debuginfo,
                true,
            ),
        ];
        for (title, f, show) in sections {
            if !show || f.count == 0 {
                continue;
            }
            let _ = writeln!(s, "{title}: {}", f.count);
            for e in &f.examples {
                let _ = writeln!(s, "    {e}");
            }
            if f.count as usize > f.examples.len() {
                let _ = writeln!(s, "    … and {} more", f.count as usize - f.examples.len());
            }
        }
        if self.orphan_nars.count > 0 {
            let _ = writeln!(s, "  orphan NAR bytes: {}", self.orphan_nar_bytes);
        }
        for c in &self.cache_info {
            let _ = writeln!(s, "ERROR {c}");
        }
        let _ = writeln!(
            s,
            "result: {} integrity error(s), {} warning(s)",
            self.errors, self.warnings
        );
        s
    }
}

#[cfg(test)]
mod tests;
