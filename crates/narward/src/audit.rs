//! Audit: what is wrong with a cache, computed from its index alone (no I/O).
//!
//! Integrity errors (a client can be hurt): invalid signatures, narinfos that do not parse,
//! narinfos whose NAR object is missing or archived (not fetchable), references to store
//! paths with no narinfo (closure holes), FileSize different from the NAR object's size,
//! narinfos whose text changed since an earlier index in more than `Sig:` lines (narinfos
//! are immutable in practice: clients may hold the old one), and — when trusted keys are
//! given — input-addressed paths with no valid signature.
//! Warnings (waste or oddities): NAR objects no narinfo points to, NARs shared by several
//! narinfos, `.ls` listings and `debuginfo/` links that point at nothing, a missing or odd
//! `nix-cache-info`.

use crate::index::Index;
use narward_formats::keys::{self, ObjectKind};
use narward_formats::narinfo::SigStatus;
use narward_formats::signature::PublicKey;
use narward_formats::store_path::{STORE_DIR, StorePathHash};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One finding class: exact count, and up to `max_examples` examples.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Finding {
    fn add(&mut self, max: usize, example: impl FnOnce() -> String) {
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
    pub orphan_nars: Finding,
    pub orphan_nar_bytes: u64,
    pub shared_nars: Finding,
    pub dangling_listings: Finding,
    pub dangling_debuginfo: Finding,
    pub cache_info: Vec<String>,
    /// Integrity errors in total: non-zero means the audit fails.
    pub errors: u64,
    /// Warnings in total.
    pub warnings: u64,
}

/// Audit an index. `trusted` may be empty (signatures are then not judged).
pub fn audit(index: &Index, trusted: &[PublicKey], max_examples: usize) -> AuditReport {
    let mx = max_examples;
    let mut r = AuditReport {
        cache: index.meta.cache.clone(),
        generation: index.meta.generation,
        objects: index.objects.len() as u64,
        narinfos: index.narinfos.len() as u64,
        ..Default::default()
    };
    r.signatures.checked = !trusted.is_empty();
    for o in &index.objects {
        *r.objects_by_category
            .entry(o.category().as_str().to_string())
            .or_default() += 1;
    }
    // Every store-path hash that has a narinfo object, parseable or not: an unparseable
    // narinfo still proves the path is there (present but unknown), so it is no hole.
    let present: HashSet<StorePathHash> = index
        .narinfos
        .iter()
        .filter_map(|n| match keys::classify(&n.key) {
            ObjectKind::Narinfo(h) => Some(h),
            _ => None,
        })
        .collect();
    let mut nar_users: HashMap<&str, Vec<&str>> = HashMap::new();
    for rec in &index.narinfos {
        if rec.changed() {
            r.narinfo_changed
                .add(mx, || describe_change(&rec.key, &rec.earlier, &rec.text));
        }
        let ni = match rec.parse() {
            Ok(ni) => ni,
            Err(u) => {
                r.unparseable_narinfos
                    .add(mx, || format!("{}: {}", u.key, u.reason));
                continue;
            }
        };
        let path = ni.store_path.full_path();
        if r.signatures.checked {
            let ca = ni.ca.is_some();
            match ni.verify(trusted) {
                SigStatus::Valid { .. } => r.signatures.valid += 1,
                SigStatus::Invalid => r.signatures.invalid.add(mx, || path.clone()),
                SigStatus::Unsigned if ca => r.signatures.content_addressed_unsigned += 1,
                SigStatus::UnknownKey if ca => r.signatures.content_addressed_unsigned += 1,
                SigStatus::Unsigned => r.signatures.unsigned.add(mx, || path.clone()),
                SigStatus::UnknownKey => r.signatures.unknown_key.add(mx, || path.clone()),
            }
        }
        let nar_key = keys::nar_key_for_url(ni.url);
        nar_users.entry(nar_key).or_default().push(rec.key.as_str());
        match index.object(nar_key) {
            None => r.missing_nar.add(mx, || format!("{path} -> {nar_key}")),
            Some(o) => {
                if o.is_archived() {
                    r.archived_nar_with_visible_narinfo.add(mx, || {
                        format!("{path} -> {nar_key} ({})", o.storage_class())
                    });
                }
                if let Some(fs) = ni.file_size
                    && fs != o.size
                {
                    r.file_size_mismatch.add(mx, || {
                        format!(
                            "{path}: FileSize {fs}, object {nar_key} has {} bytes",
                            o.size
                        )
                    });
                }
            }
        }
        for rf in &ni.references {
            if !present.contains(&rf.hash) {
                r.closure_holes.add(mx, || {
                    format!("{path} references {STORE_DIR}/{}", rf.base_name())
                });
            }
        }
    }
    let listed: HashSet<&str> = index.objects.iter().map(|o| o.key.as_str()).collect();
    for o in &index.objects {
        match keys::classify(&o.key) {
            ObjectKind::Nar { .. } => match nar_users.get(o.key.as_str()) {
                None => {
                    r.orphan_nar_bytes += o.size;
                    r.orphan_nars
                        .add(mx, || format!("{} ({} bytes)", o.key, o.size));
                }
                Some(users) if users.len() > 1 => {
                    r.shared_nars
                        .add(mx, || format!("{} used by {}", o.key, users.join(", ")));
                }
                Some(_) => {}
            },
            ObjectKind::Listing(h) if !present.contains(&h) => {
                r.dangling_listings.add(mx, || o.key.clone());
            }
            _ => {}
        }
    }
    for d in &index.debuginfo {
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
                if !listed.contains(nar) {
                    r.dangling_debuginfo
                        .add(mx, || format!("{} -> {nar} (missing)", d.key));
                }
            }
        }
    }
    if index.object("nix-cache-info").is_none() {
        r.cache_info
            .push("nix-cache-info is missing: Nix clients will refuse the cache".into());
    }
    r.errors = r.signatures.invalid.count
        + r.unparseable_narinfos.count
        + r.narinfo_changed.count
        + r.missing_nar.count
        + r.archived_nar_with_visible_narinfo.count
        + r.closure_holes.count
        + r.file_size_mismatch.count
        + if r.signatures.checked {
            r.signatures.unsigned.count + r.signatures.unknown_key.count
        } else {
            0
        }
        + r.cache_info.len() as u64;
    r.warnings = r.orphan_nars.count
        + r.shared_nars.count
        + r.dangling_listings.count
        + r.dangling_debuginfo.count;
    r
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
        let sections: [(&str, &Finding, bool); 13] = [
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
                "ERROR narinfos whose NAR is archived (not fetchable)",
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
                "warning orphan NARs (no narinfo points to them)",
                &self.orphan_nars,
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
