//! S3 object keys of a Nix binary cache.
//!
//! Takes an object key (relative to the cache root) and gives the
//! [`ObjectKind`] of object it names, with the identifying part borrowed from
//! the key; [`Category`] is the coarse, serializable grouping used in reports.
//! Layout from reference §1.1 (Nix `binary-cache-store.cc`):
//!
//! | key | kind |
//! |---|---|
//! | `nix-cache-info` | [`ObjectKind::CacheInfo`] |
//! | `<hash32>.narinfo` | [`ObjectKind::Narinfo`] |
//! | `nar/<filehash nix32 52>.nar[.<ext>]` | [`ObjectKind::Nar`] |
//! | `<hash32>.ls` | [`ObjectKind::Listing`] |
//! | `log/<drv base name>` | [`ObjectKind::Log`] |
//! | `debuginfo/<build-id hex>` | [`ObjectKind::DebugInfo`] |
//! | `realisations/<drvhash>!<out>.doi` (Nix ≤ 2.34) | [`ObjectKind::Realisation`] |
//! | `build-trace-v2/<drv base name>/<out>.doi` (Nix ≥ 2.35) | [`ObjectKind::BuildTrace`] |
//!
//! Anything else, including a near miss such as `foo.narinfo` with a bad
//! hash, is [`ObjectKind::Other`]: a GC must not guess what it is.

use std::fmt;

use crate::store_path::{HASH_CHARS, StorePathHash};

/// What an S3 key in a binary cache names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind<'a> {
    /// `nix-cache-info`.
    CacheInfo,
    /// `<hash32>.narinfo`.
    Narinfo(StorePathHash),
    /// `nar/<file_hash>.nar<ext>`.
    Nar {
        /// The 52-character nix32 text of the file's SHA-256.
        file_hash: &'a str,
        /// `""` for an uncompressed NAR, else e.g. `".xz"`, `".zst"`.
        ext: &'a str,
    },
    /// `<hash32>.ls`, a NAR listing.
    Listing(StorePathHash),
    /// `log/<name>`; the name (a derivation base name).
    Log(&'a str),
    /// `debuginfo/<build-id>`; the build id.
    DebugInfo(&'a str),
    /// `realisations/<id>.doi`; the id, e.g. `sha256:<hex>!out`.
    Realisation(&'a str),
    /// `build-trace-v2/<drv>/<out>.doi`; the part between prefix and
    /// `.doi`, i.e. `<drv base name>/<out>`.
    BuildTrace(&'a str),
    /// Anything else.
    Other,
}

/// Coarse grouping of [`ObjectKind`]s for reports and plans.
///
/// Serialized as [`Category::as_str`] (`"cache-info"` also deserializes from
/// `"cacheinfo"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// `.narinfo` files.
    Narinfo,
    /// NAR files under `nar/`.
    Nar,
    /// `.ls` listings.
    Listing,
    /// Build logs under `log/`.
    Log,
    /// Debug info links under `debuginfo/`.
    DebugInfo,
    /// Realisations (`realisations/` and `build-trace-v2/`).
    Realisation,
    /// `nix-cache-info`.
    #[serde(rename = "cache-info", alias = "cacheinfo")]
    CacheInfo,
    /// Anything else.
    Other,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 8] = [
        Category::Narinfo,
        Category::Nar,
        Category::Listing,
        Category::Log,
        Category::DebugInfo,
        Category::Realisation,
        Category::CacheInfo,
        Category::Other,
    ];

    /// `"narinfo"`, `"nar"`, `"listing"`, `"log"`, `"debuginfo"`,
    /// `"realisation"`, `"cache-info"`, `"other"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Narinfo => "narinfo",
            Category::Nar => "nar",
            Category::Listing => "listing",
            Category::Log => "log",
            Category::DebugInfo => "debuginfo",
            Category::Realisation => "realisation",
            Category::CacheInfo => "cache-info",
            Category::Other => "other",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown category name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown object category {0:?}, expected one of narinfo, nar, listing, log, debuginfo, realisation, cache-info, other"
)]
pub struct UnknownCategory(pub String);

impl std::str::FromStr for Category {
    type Err = UnknownCategory;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

impl ObjectKind<'_> {
    /// The coarse category; `Realisation` and `BuildTrace` are both
    /// [`Category::Realisation`].
    pub fn category(&self) -> Category {
        match self {
            ObjectKind::CacheInfo => Category::CacheInfo,
            ObjectKind::Narinfo(_) => Category::Narinfo,
            ObjectKind::Nar { .. } => Category::Nar,
            ObjectKind::Listing(_) => Category::Listing,
            ObjectKind::Log(_) => Category::Log,
            ObjectKind::DebugInfo(_) => Category::DebugInfo,
            ObjectKind::Realisation(_) | ObjectKind::BuildTrace(_) => Category::Realisation,
            ObjectKind::Other => Category::Other,
        }
    }
}

/// Length of the nix32 text of a SHA-256.
const FILE_HASH_CHARS: usize = 52;

/// `<hash32><suffix>` → the hash, if the hash part is valid.
fn hash_with_suffix(key: &str, suffix: &str) -> Option<StorePathHash> {
    let stem = key.strip_suffix(suffix)?;
    if stem.len() != HASH_CHARS {
        return None;
    }
    StorePathHash::parse(stem).ok()
}

/// A single path segment: non-empty and without `/`.
fn segment(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains('/')).then_some(s)
}

/// Classifies an S3 key of a binary cache.
pub fn classify(key: &str) -> ObjectKind<'_> {
    if key == "nix-cache-info" {
        return ObjectKind::CacheInfo;
    }
    if let Some(h) = hash_with_suffix(key, ".narinfo") {
        return ObjectKind::Narinfo(h);
    }
    if let Some(h) = hash_with_suffix(key, ".ls") {
        return ObjectKind::Listing(h);
    }
    if let Some(rest) = key.strip_prefix("nar/") {
        return classify_nar(rest).unwrap_or(ObjectKind::Other);
    }
    if let Some(name) = key.strip_prefix("log/").and_then(segment) {
        return ObjectKind::Log(name);
    }
    if let Some(id) = key.strip_prefix("debuginfo/").and_then(segment)
        && id.bytes().all(|c| c.is_ascii_hexdigit())
    {
        return ObjectKind::DebugInfo(id);
    }
    if let Some(id) = key
        .strip_prefix("realisations/")
        .and_then(|r| r.strip_suffix(".doi"))
        .and_then(segment)
    {
        return ObjectKind::Realisation(id);
    }
    if let Some(id) = key
        .strip_prefix("build-trace-v2/")
        .and_then(|r| r.strip_suffix(".doi"))
        && let Some((drv, out)) = id.split_once('/')
        && segment(drv).is_some()
        && segment(out).is_some()
    {
        return ObjectKind::BuildTrace(id);
    }
    ObjectKind::Other
}

/// `<52 nix32>.nar` followed by nothing or one `.<alnum>` extension.
fn classify_nar(rest: &str) -> Option<ObjectKind<'_>> {
    let (file_hash, after) = rest.split_at_checked(FILE_HASH_CHARS)?;
    crate::nixbase32::decode_fixed::<32>(file_hash).ok()?;
    let ext = after.strip_prefix(".nar")?;
    let valid_ext = ext.is_empty()
        || ext
            .strip_prefix('.')
            .is_some_and(|e| !e.is_empty() && e.bytes().all(|c| c.is_ascii_alphanumeric()));
    valid_ext.then_some(ObjectKind::Nar { file_hash, ext })
}

/// The S3 key of the file a narinfo's `URL` names, or the key it most likely
/// means. URLs are relative to the cache root (`nar/….nar.xz`); a leading `./`
/// is stripped. For an unusual URL (see [`nar_url_quirk`]) the key is a best
/// guess, never proof: white space around the URL (a `\r` of a CRLF file) and
/// leading `/` are trimmed, and an absolute URL (`https://host/…/nar/x.nar.xz`)
/// gives its last `nar/…` part (without query or fragment), or the whole URL
/// if it has none.
pub fn nar_key_for_url(url: &str) -> &str {
    let u = url.trim();
    if let Some(rest) = absolute_url_rest(u) {
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        let path = rest.split_once('/').map_or("", |(_host, p)| p);
        if path.starts_with("nar/") {
            return path;
        }
        return match path.rfind("/nar/") {
            Some(i) => path.get(i + 1..).unwrap_or(u),
            None => u,
        };
    }
    u.strip_prefix("./").unwrap_or(u).trim_start_matches('/')
}

/// What `scheme://` is followed by, if `url` is absolute (`http://`, `https://`,
/// `s3://`, `file://`, …).
fn absolute_url_rest(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let ok = scheme
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    ok.then_some(rest)
}

/// Why a narinfo's `URL` is not simply a key of this cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlQuirk {
    /// White space around it (e.g. the `\r` of a CRLF line). Nix keeps it and
    /// asks for a key that does not exist, so clients cannot fetch the NAR.
    Whitespace,
    /// An absolute URL: Nix fetches it from wherever it points, outside this
    /// cache, where nothing can be checked.
    Absolute,
    /// A leading `/`: whether Nix finds the NAR depends on the server (an HTTP
    /// server may fold `//`, S3 does not).
    LeadingSlash,
}

/// Whether a narinfo's `URL` is unusual (see [`UrlQuirk`]); `None` for a plain
/// relative key.
pub fn nar_url_quirk(url: &str) -> Option<UrlQuirk> {
    if absolute_url_rest(url.trim()).is_some() {
        Some(UrlQuirk::Absolute)
    } else if url.trim() != url {
        Some(UrlQuirk::Whitespace)
    } else if url.starts_with('/') || url.starts_with(".//") {
        Some(UrlQuirk::LeadingSlash)
    } else {
        None
    }
}

/// `<hash32>.narinfo`.
pub fn narinfo_key(hash: &StorePathHash) -> String {
    format!("{hash}.narinfo")
}

/// `<hash32>.ls`.
pub fn listing_key(hash: &StorePathHash) -> String {
    format!("{hash}.ls")
}

/// The NAR file extension Nix uses for a `Compression` value: xz→`.xz`,
/// bzip2→`.bz2`, zstd→`.zst`, lzip→`.lzip`, lz4→`.lz4`, br→`.br`; anything
/// else (including `none` and `gzip`) gets none (reference §1.1).
pub fn nar_extension(compression: &str) -> &'static str {
    match compression {
        "xz" => ".xz",
        "bzip2" => ".bz2",
        "zstd" => ".zst",
        "lzip" => ".lzip",
        "lz4" => ".lz4",
        "br" => ".br",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H32: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c";
    const H52: &str = "0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c";

    #[test]
    fn classify_all_kinds() {
        let h = StorePathHash::parse(H32).unwrap();
        let cases: Vec<(String, ObjectKind<'static>)> = vec![
            ("nix-cache-info".into(), ObjectKind::CacheInfo),
            (format!("{H32}.narinfo"), ObjectKind::Narinfo(h)),
            (format!("{H32}.ls"), ObjectKind::Listing(h)),
            (
                format!("nar/{H52}.nar"),
                ObjectKind::Nar {
                    file_hash: H52,
                    ext: "",
                },
            ),
            (
                format!("nar/{H52}.nar.xz"),
                ObjectKind::Nar {
                    file_hash: H52,
                    ext: ".xz",
                },
            ),
            (
                format!("nar/{H52}.nar.zst"),
                ObjectKind::Nar {
                    file_hash: H52,
                    ext: ".zst",
                },
            ),
            ("log/abc-foo.drv".into(), ObjectKind::Log("abc-foo.drv")),
            (
                "debuginfo/0123456789abcdef0123456789abcdef01234567".into(),
                ObjectKind::DebugInfo("0123456789abcdef0123456789abcdef01234567"),
            ),
            (
                "realisations/sha256:0a1b!out.doi".into(),
                ObjectKind::Realisation("sha256:0a1b!out"),
            ),
            (
                "build-trace-v2/abc-foo.drv/out.doi".into(),
                ObjectKind::BuildTrace("abc-foo.drv/out"),
            ),
            // Near misses.
            ("foo.narinfo".into(), ObjectKind::Other),
            (format!("{}e.narinfo", &H32[..31]), ObjectKind::Other),
            (format!("{H32}x.narinfo"), ObjectKind::Other),
            (format!("x/{H32}.narinfo"), ObjectKind::Other),
            (format!("nar/{H52}.nar.xz.tmp"), ObjectKind::Other),
            (format!("nar/{H52}.narx"), ObjectKind::Other),
            (format!("nar/{H52}.nar."), ObjectKind::Other),
            (format!("nar/{}.nar", &H52[..51]), ObjectKind::Other),
            (format!("nar/{H52}"), ObjectKind::Other),
            ("nar/".into(), ObjectKind::Other),
            ("log/".into(), ObjectKind::Other),
            ("log/a/b".into(), ObjectKind::Other),
            ("debuginfo/xyz".into(), ObjectKind::Other),
            ("realisations/x.json".into(), ObjectKind::Other),
            ("build-trace-v2/abc.doi".into(), ObjectKind::Other),
            ("build-trace-v2/a/b/c.doi".into(), ObjectKind::Other),
            ("nix-cache-info.bak".into(), ObjectKind::Other),
            ("".into(), ObjectKind::Other),
            ("nar/é".into(), ObjectKind::Other),
        ];
        for (key, want) in &cases {
            assert_eq!(classify(key), *want, "{key}");
        }
    }

    #[test]
    fn unusual_urls_resolve_to_the_nar_key_they_name() {
        for (url, key, quirk) in [
            ("nar/x.nar.xz\r", "nar/x.nar.xz", Some(UrlQuirk::Whitespace)),
            (" nar/x.nar.xz ", "nar/x.nar.xz", Some(UrlQuirk::Whitespace)),
            (
                "https://cache.example.org/nar/x.nar.xz",
                "nar/x.nar.xz",
                Some(UrlQuirk::Absolute),
            ),
            (
                "http://h/some/prefix/nar/x.nar.xz?sig=1#f",
                "nar/x.nar.xz",
                Some(UrlQuirk::Absolute),
            ),
            (
                "https://h/nar/x.nar.xz\r",
                "nar/x.nar.xz",
                Some(UrlQuirk::Absolute),
            ),
            (
                "https://nar/x.nar.xz",
                "https://nar/x.nar.xz",
                Some(UrlQuirk::Absolute),
            ),
            ("https://h", "https://h", Some(UrlQuirk::Absolute)),
            ("s3://b/nar/y.nar", "nar/y.nar", Some(UrlQuirk::Absolute)),
            ("nar/://x", "nar/://x", None),
            (
                "/nar/x.nar.xz",
                "nar/x.nar.xz",
                Some(UrlQuirk::LeadingSlash),
            ),
            (
                ".//nar/x.nar.xz",
                "nar/x.nar.xz",
                Some(UrlQuirk::LeadingSlash),
            ),
        ] {
            assert_eq!(nar_key_for_url(url), key, "{url:?}");
            assert_eq!(nar_url_quirk(url), quirk, "{url:?}");
        }
    }

    #[test]
    fn categories() {
        assert_eq!(
            classify("build-trace-v2/a/b.doi").category(),
            Category::Realisation
        );
        assert_eq!(
            classify("realisations/a!b.doi").category(),
            Category::Realisation
        );
        assert_eq!(classify("nix-cache-info").category(), Category::CacheInfo);
        let names: Vec<_> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "narinfo",
                "nar",
                "listing",
                "log",
                "debuginfo",
                "realisation",
                "cache-info",
                "other"
            ]
        );
        for c in Category::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Category>(&json).unwrap(), c);
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
        }
        assert_eq!(
            serde_json::from_str::<Category>("\"cacheinfo\"").unwrap(),
            Category::CacheInfo
        );
    }

    #[test]
    fn urls_and_keys() {
        assert_eq!(nar_key_for_url("./nar/x.nar.xz"), "nar/x.nar.xz");
        assert_eq!(nar_key_for_url("nar/x.nar.xz"), "nar/x.nar.xz");
        assert_eq!(nar_url_quirk("nar/x.nar.xz"), None);
        assert_eq!(nar_url_quirk("./nar/x.nar.xz"), None);
        let h = StorePathHash::parse(H32).unwrap();
        assert_eq!(classify(&narinfo_key(&h)), ObjectKind::Narinfo(h));
        assert_eq!(classify(&listing_key(&h)), ObjectKind::Listing(h));
        assert_eq!(nar_extension("zstd"), ".zst");
        assert_eq!(nar_extension("none"), "");
    }
}
