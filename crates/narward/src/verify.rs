//! `narward verify`, the pure part: given what a fresh listing and fresh reads of the live
//! cache gave (independently of any index or plan), check what a Nix client relies on:
//! - every visible narinfo parses;
//! - its NAR is listed and readable: not in GLACIER/DEEP_ARCHIVE, unless a restored copy
//!   is available (`x-amz-restore: ongoing-request="false"`);
//! - every reference of it has a visible narinfo (the closure is complete).
//!
//! A narinfo that was listed but gone when read is not visible (it raced with a change);
//! one that could not be read at all is a problem (unverified). Absolute NAR URLs point
//! outside the cache and are only warned about.

use crate::audit::Finding;
use crate::listing::Listing;
use narward_formats::keys::{self, ObjectKind, UrlQuirk};
use narward_formats::narinfo::NarInfo;
use narward_formats::store_path::StorePathHash;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What was fetched from the cache, by key.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The fresh listing.
    pub objects: Listing,
    /// Every listed narinfo: its bytes, `Ok(None)` when it was gone when read, or why it
    /// could not be read.
    pub narinfos: HashMap<String, Result<Option<Vec<u8>>, String>>,
    /// The `x-amz-restore` header of NARs in an archive class (None: no header).
    pub restores: HashMap<String, Option<String>>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub cache: String,
    pub objects: u64,
    /// Visible narinfos checked.
    pub narinfos: u64,
    pub unreadable_narinfos: Finding,
    pub unparseable_narinfos: Finding,
    pub missing_nars: Finding,
    /// NARs in GLACIER/DEEP_ARCHIVE without a restored copy behind a visible narinfo.
    pub archived_nars: Finding,
    /// URLs with white space around them: Nix asks for a key that does not exist.
    pub unusable_nar_urls: Finding,
    /// References without a visible narinfo (`path -> reference`).
    pub missing_references: Finding,
    /// Absolute or leading-`/` URLs (not checked).
    pub warnings: Finding,
    /// The number of problems (every finding above but warnings).
    pub problems: u64,
}

/// Which NARs need a HEAD (their `x-amz-restore`) before [`check`]: listed NARs in an
/// archive class.
pub fn cold_objects(objects: &Listing) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o.is_archived())
        .map(|o| o.key().to_string())
        .collect()
}

/// Whether an `x-amz-restore` header says a restored copy can be read now.
pub fn restored(header: Option<&str>) -> bool {
    header.is_some_and(|h| h.replace(' ', "").contains("ongoing-request=\"false\""))
}

/// Check the cache; `max` examples per finding (counts are exact).
pub fn check(cache: &str, f: &Fetched, max: usize) -> VerifyReport {
    let mut r = VerifyReport {
        cache: cache.to_string(),
        objects: f.objects.len() as u64,
        ..Default::default()
    };
    // In key order, as listed.
    let visible: Vec<(crate::listing::Key<'_>, StorePathHash)> = f
        .objects
        .iter()
        .filter_map(|o| {
            let k = o.key();
            match keys::classify(&k) {
                ObjectKind::Narinfo(h) => Some((k, h)),
                _ => None,
            }
        })
        .filter(|(k, _)| !matches!(f.narinfos.get(k.as_str()), Some(Ok(None))))
        .collect();
    let present: HashSet<StorePathHash> = visible.iter().map(|(_, h)| *h).collect();
    r.narinfos = visible.len() as u64;
    for (key, _) in &visible {
        let key = key.as_str();
        let text = match f.narinfos.get(key) {
            Some(Ok(Some(t))) => t,
            Some(Err(e)) => {
                r.unreadable_narinfos.add(max, || format!("{key}: {e}"));
                continue;
            }
            _ => {
                r.unreadable_narinfos
                    .add(max, || format!("{key}: not read"));
                continue;
            }
        };
        let parsed = std::str::from_utf8(text)
            .map_err(|e| e.to_string())
            .and_then(|s| NarInfo::parse(s).map_err(|e| e.to_string()));
        match parsed {
            Ok(ni) => check_one(&mut r, max, key, &ni, &present, f),
            Err(e) => r.unparseable_narinfos.add(max, || format!("{key}: {e}")),
        }
    }
    r.problems = r.unreadable_narinfos.count
        + r.unparseable_narinfos.count
        + r.missing_nars.count
        + r.archived_nars.count
        + r.unusable_nar_urls.count
        + r.missing_references.count;
    r
}

fn check_one(
    r: &mut VerifyReport,
    max: usize,
    key: &str,
    ni: &NarInfo<'_>,
    present: &HashSet<StorePathHash>,
    f: &Fetched,
) {
    let path = ni.store_path.full_path();
    for reference in &ni.references {
        if !present.contains(&reference.hash) {
            r.missing_references
                .add(max, || format!("{path} -> {}", reference.full_path()));
        }
    }
    match keys::nar_url_quirk(ni.url) {
        Some(UrlQuirk::Absolute) => {
            r.warnings.add(max, || {
                format!(
                    "{key}: NAR URL {:?} is outside this cache (not checked)",
                    ni.url
                )
            });
            return;
        }
        Some(UrlQuirk::Whitespace) => {
            r.unusable_nar_urls.add(max, || {
                format!("{key}: NAR URL {:?} has white space around it", ni.url)
            });
            return;
        }
        Some(UrlQuirk::LeadingSlash) => r.warnings.add(max, || {
            format!("{key}: NAR URL {:?} starts with '/'", ni.url)
        }),
        None => {}
    }
    let nar = keys::nar_key_for_url(ni.url);
    match f.objects.find(nar).and_then(|i| f.objects.get(i)) {
        None => r.missing_nars.add(max, || format!("{path} -> {nar}")),
        Some(o) if o.is_archived() => {
            let header = f.restores.get(nar).and_then(|h| h.as_deref());
            if !restored(header) {
                r.archived_nars.add(max, || {
                    format!("{path} -> {nar} ({}, not restored)", o.storage_class())
                });
            }
        }
        Some(_) => {}
    }
}

impl VerifyReport {
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = format!(
            "verified {}: {} objects, {} visible narinfos: {}\n",
            self.cache,
            self.objects,
            self.narinfos,
            if self.problems == 0 {
                "clean".to_string()
            } else {
                format!("{} problems", self.problems)
            }
        );
        for (name, f) in [
            ("narinfos that could not be read", &self.unreadable_narinfos),
            ("narinfos that do not parse", &self.unparseable_narinfos),
            ("narinfos whose NAR is missing", &self.missing_nars),
            (
                "narinfos whose NAR is archived and not restored",
                &self.archived_nars,
            ),
            (
                "narinfos whose NAR URL Nix cannot use",
                &self.unusable_nar_urls,
            ),
            (
                "references without a visible narinfo",
                &self.missing_references,
            ),
            ("warnings", &self.warnings),
        ] {
            if f.count == 0 {
                continue;
            }
            let _ = writeln!(s, "  {name}: {}", f.count);
            for e in &f.examples {
                let _ = writeln!(s, "    {e}");
            }
            if (f.examples.len() as u64) < f.count {
                let _ = writeln!(s, "    … and {} more", f.count - f.examples.len() as u64);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "7z9ywivx2cjmb2kiqppw4nwrjx3hasbs";
    const B: &str = "0ajivyrvgyjy1g2gm7cv1cfwb3y0w5cp";

    fn narinfo(hash: &str, name: &str, url: &str, refs: &str) -> Vec<u8> {
        format!(
            "StorePath: /nix/store/{hash}-{name}\nURL: {url}\nCompression: xz\nNarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\nNarSize: 120\nReferences: {refs}\n"
        )
        .into_bytes()
    }

    fn obj(key: &str, class: Option<&str>) -> crate::model::ObjectRecord {
        crate::model::ObjectRecord {
            link_target: None,
            key: key.into(),
            size: 10,
            etag: None,
            last_modified: None,
            storage_class: class.map(str::to_string),
        }
    }

    /// A → B, both with NARs.
    fn clean() -> Fetched {
        let mut f = Fetched {
            objects: Listing::from_records(vec![
                obj(&format!("{A}.narinfo"), None),
                obj(&format!("{B}.narinfo"), None),
                obj("nar/a.nar.xz", None),
                obj("nar/b.nar.xz", None),
            ])
            .unwrap(),
            ..Default::default()
        };
        f.narinfos.insert(
            format!("{A}.narinfo"),
            Ok(Some(narinfo(A, "a", "nar/a.nar.xz", &format!("{B}-b")))),
        );
        f.narinfos.insert(
            format!("{B}.narinfo"),
            Ok(Some(narinfo(B, "b", "nar/b.nar.xz", ""))),
        );
        f
    }

    #[test]
    fn a_complete_cache_is_clean() {
        let r = check("c", &clean(), 10);
        assert_eq!(r.problems, 0, "{r:?}");
        assert_eq!(r.narinfos, 2);
    }

    #[test]
    fn missing_nar_and_broken_closure_are_problems_named() {
        let mut f = clean();
        f.objects
            .edit(|o| o.retain(|o| o.key != "nar/b.nar.xz" && o.key != format!("{B}.narinfo")))
            .unwrap();
        let r = check("c", &f, 10);
        assert_eq!(r.missing_references.count, 1, "{r:?}");
        assert!(r.missing_references.examples[0].contains(B));
        assert_eq!(
            r.missing_nars.count, 0,
            "B's narinfo is not visible, so not checked"
        );
        let mut f = clean();
        f.objects
            .edit(|o| o.retain(|o| o.key != "nar/b.nar.xz"))
            .unwrap();
        let r = check("c", &f, 10);
        assert_eq!(r.missing_nars.count, 1);
        assert!(r.to_text().contains("nar/b.nar.xz"), "{}", r.to_text());
        assert_eq!(r.problems, 1);
    }

    #[test]
    fn archived_nar_is_a_problem_until_restored() {
        let mut f = clean();
        f.objects
            .edit(|o| o[3].storage_class = Some("DEEP_ARCHIVE".into()))
            .unwrap();
        assert_eq!(cold_objects(&f.objects), ["nar/b.nar.xz"]);
        assert_eq!(check("c", &f, 10).archived_nars.count, 1);
        f.restores.insert(
            "nar/b.nar.xz".into(),
            Some("ongoing-request=\"true\"".into()),
        );
        assert_eq!(check("c", &f, 10).archived_nars.count, 1);
        f.restores.insert(
            "nar/b.nar.xz".into(),
            Some("ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"".into()),
        );
        assert_eq!(check("c", &f, 10).problems, 0);
        // GLACIER_IR is readable.
        let mut f = clean();
        f.objects
            .edit(|o| o[3].storage_class = Some("GLACIER_IR".into()))
            .unwrap();
        assert_eq!(check("c", &f, 10).problems, 0);
    }

    #[test]
    fn unparseable_unreadable_and_vanished_narinfos() {
        let mut f = clean();
        f.narinfos
            .insert(format!("{B}.narinfo"), Ok(Some(b"garbage".to_vec())));
        let r = check("c", &f, 10);
        assert_eq!(r.unparseable_narinfos.count, 1);
        // Still visible: A's reference to B is satisfied.
        assert_eq!(r.missing_references.count, 0);
        f.narinfos
            .insert(format!("{B}.narinfo"), Err("HTTP 500".into()));
        assert_eq!(check("c", &f, 10).unreadable_narinfos.count, 1);
        // Gone when read: not visible, so A's closure is incomplete.
        f.narinfos.insert(format!("{B}.narinfo"), Ok(None));
        let r = check("c", &f, 10);
        assert_eq!(r.narinfos, 1);
        assert_eq!(r.missing_references.count, 1);
    }

    #[test]
    fn url_with_white_space_is_unusable_and_absolute_url_a_warning() {
        let mut f = clean();
        f.narinfos.insert(
            format!("{B}.narinfo"),
            Ok(Some(narinfo(B, "b", "nar/b.nar.xz\r", ""))),
        );
        assert_eq!(check("c", &f, 10).unusable_nar_urls.count, 1);
        f.narinfos.insert(
            format!("{B}.narinfo"),
            Ok(Some(narinfo(B, "b", "https://x/nar/b.nar.xz", ""))),
        );
        let r = check("c", &f, 10);
        assert_eq!((r.problems, r.warnings.count), (0, 1));
    }
}
