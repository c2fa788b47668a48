//! `.narinfo` files: parse, fingerprint, verify, print back byte for byte.
//!
//! Takes the text of one narinfo and gives a [`NarInfo`] that borrows every
//! string from the input (one `Vec` for references and one for signatures are
//! the only allocations in the common case).
//!
//! Syntax follows Nix's parser (`nar-info.cc`, reference §1.3):
//! - every line is `Name: value\n`, including the last (a missing final
//!   newline is an error);
//! - `StorePath` (full path), `NarHash`, `URL` (non-empty) and `NarSize` (> 0)
//!   are required, with Nix's messages `StorePath missing`, `NarHash missing`,
//!   `URL missing`, `NarSize missing or zero`;
//! - `References` is a space-separated list of base names and may be empty;
//!   `Sig` may repeat; every other known field may appear at most once (Nix
//!   silently overwrites repeated fields; we reject them, except `Sig`);
//! - unknown fields are kept for printing and otherwise ignored.
//!
//! We are stricter than Nix in two places where Nix's parser reads past the
//! end of a line: a line without `:` and a `:` not followed by a space are
//! errors here.
//!
//! Printing ([`std::fmt::Display`]) reproduces the parsed input exactly: field
//! order, unknown fields, `System:`, hex/base64 hashes, unsorted or oddly
//! spaced references and leading zeros are all remembered, because real
//! cache.nixos.org entries have such quirks (see [`Quirks`], after tvix's
//! narinfo flags). Fields changed after parsing are printed in Nix's writer
//! form; fields added after parsing go where the Nix writer puts them.

use std::fmt::{self, Write as _};

use crate::hash::{HashEncoding, Sha256};
use crate::keys;
use crate::nixbase32;
use crate::signature::{PublicKey, SecretKey};
use crate::store_path::{
    HASH_CHARS, StorePath, StorePathError, StorePathHash, name_char_run, validate_name_rules,
};

/// Largest narinfo the parser accepts (the biggest real ones are tens of KiB).
pub const MAX_NARINFO_SIZE: usize = 1 << 20;

/// A parsed narinfo, borrowing from its input.
///
/// Besides the public fields it remembers how the input was written (line
/// order, unknown fields, hash encodings, spacing), so `to_string()` gives the
/// input back. Equality compares that too: two narinfos that differ only in
/// formatting are not `==`; compare fields (or [`NarInfo::fingerprint`]) for
/// semantic equality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo<'a> {
    /// `StorePath:` (always a full path in the file).
    pub store_path: StorePath<'a>,
    /// `URL:`, relative to the cache root, e.g. `nar/<filehash>.nar.xz`.
    pub url: &'a str,
    /// `Compression:` as written; see [`NarInfo::compression_or_default`].
    pub compression: Option<&'a str>,
    /// `FileHash:`, the SHA-256 of the (compressed) file at `URL`.
    pub file_hash: Option<Sha256>,
    /// `FileSize:`.
    pub file_size: Option<u64>,
    /// `NarHash:`, the SHA-256 of the uncompressed NAR.
    pub nar_hash: Sha256,
    /// `NarSize:`, never 0.
    pub nar_size: u64,
    /// `References:` in file order (may be unsorted or repeat in old entries).
    pub references: Vec<StorePath<'a>>,
    /// `Deriver:` as written: a base name or `unknown-deriver`.
    pub deriver: Option<&'a str>,
    /// `Sig:` lines in file order.
    pub sigs: Vec<&'a str>,
    /// `CA:` as written (content address), if any.
    pub ca: Option<&'a str>,
    /// `System:` (written by Nix before 2.10).
    pub system: Option<&'a str>,
    layout: Layout<'a>,
}

/// The known fields, in the order Nix's writer emits them (`System` sat
/// between `Deriver` and `Sig` before Nix 2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    StorePath,
    Url,
    Compression,
    FileHash,
    FileSize,
    NarHash,
    NarSize,
    References,
    Deriver,
    System,
    Sig,
    Ca,
}

impl Field {
    const ALL: [Field; 12] = [
        Field::StorePath,
        Field::Url,
        Field::Compression,
        Field::FileHash,
        Field::FileSize,
        Field::NarHash,
        Field::NarSize,
        Field::References,
        Field::Deriver,
        Field::System,
        Field::Sig,
        Field::Ca,
    ];

    fn from_key(key: &str) -> Option<Field> {
        Some(match key {
            "StorePath" => Field::StorePath,
            "URL" => Field::Url,
            "Compression" => Field::Compression,
            "FileHash" => Field::FileHash,
            "FileSize" => Field::FileSize,
            "NarHash" => Field::NarHash,
            "NarSize" => Field::NarSize,
            "References" => Field::References,
            "Deriver" => Field::Deriver,
            "System" => Field::System,
            "Sig" => Field::Sig,
            "CA" => Field::Ca,
            _ => return None,
        })
    }

    /// The known field whose name followed by `:` starts `b`, told apart by
    /// the first bytes and confirmed by one comparison.
    #[inline]
    fn at_start_of(b: &[u8]) -> Option<Field> {
        // Literal prefixes, so that each comparison is a few fixed loads.
        let (f, ok) = match (*b.first()?, *b.get(1)?) {
            (b'S', b't') => (Field::StorePath, b.starts_with(b"StorePath:")),
            (b'S', b'i') => (Field::Sig, b.starts_with(b"Sig:")),
            (b'S', b'y') => (Field::System, b.starts_with(b"System:")),
            (b'U', _) => (Field::Url, b.starts_with(b"URL:")),
            (b'C', b'o') => (Field::Compression, b.starts_with(b"Compression:")),
            (b'C', b'A') => (Field::Ca, b.starts_with(b"CA:")),
            (b'F', _) => match b.get(4) {
                Some(b'H') => (Field::FileHash, b.starts_with(b"FileHash:")),
                _ => (Field::FileSize, b.starts_with(b"FileSize:")),
            },
            (b'N', _) => match b.get(3) {
                Some(b'H') => (Field::NarHash, b.starts_with(b"NarHash:")),
                _ => (Field::NarSize, b.starts_with(b"NarSize:")),
            },
            (b'R', _) => (Field::References, b.starts_with(b"References:")),
            (b'D', _) => (Field::Deriver, b.starts_with(b"Deriver:")),
            _ => return None,
        };
        ok.then_some(f)
    }

    fn key(self) -> &'static str {
        match self {
            Field::StorePath => "StorePath",
            Field::Url => "URL",
            Field::Compression => "Compression",
            Field::FileHash => "FileHash",
            Field::FileSize => "FileSize",
            Field::NarHash => "NarHash",
            Field::NarSize => "NarSize",
            Field::References => "References",
            Field::Deriver => "Deriver",
            Field::System => "System",
            Field::Sig => "Sig",
            Field::Ca => "CA",
        }
    }
}

/// One line of the original file, for inputs not in writer order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// A known field (for `Sig`, the next signature).
    Known(Field),
    /// Index into `Layout::unknown`.
    Unknown(usize),
}

/// What printing needs beyond the public fields to reproduce the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Layout<'a> {
    /// Line order; empty when the input was in writer order (the common case,
    /// which then costs no allocation).
    order: Vec<Line>,
    /// Unknown fields as `(name, value)`.
    unknown: Vec<(&'a str, &'a str)>,
    nar_hash_raw: &'a str,
    nar_hash_encoding: Option<HashEncoding>,
    file_hash_raw: &'a str,
    file_hash_encoding: Option<HashEncoding>,
    nar_size_raw: &'a str,
    file_size_raw: &'a str,
    /// The `References:` value; `None` if the line was absent.
    references_raw: Option<&'a str>,
}

/// Deviations from what a current Nix writer produces, seen in real caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// `References` not in sorted order (old cache.nixos.org entries).
    pub references_unsorted: bool,
    /// A reference listed twice.
    pub references_duplicated: bool,
    /// `References` not separated by single spaces.
    pub references_spacing: bool,
    /// `NarHash` written as 64 hex digits.
    pub nar_hash_hex: bool,
    /// `NarHash` in any encoding other than nix32 (hex, base64, SRI).
    pub nar_hash_not_nix32: bool,
    /// `FileHash` in an encoding other than nix32.
    pub file_hash_not_nix32: bool,
    /// No `Compression` line (Nix then assumes bzip2).
    pub compression_missing: bool,
    /// A `System` line (removed in Nix 2.10).
    pub has_system: bool,
    /// Fields unknown to Nix.
    pub unknown_fields: bool,
    /// Fields not in Nix's writer order.
    pub field_order: bool,
    /// A size with leading zeros.
    pub size_leading_zeros: bool,
    /// `Deriver: unknown-deriver`.
    pub deriver_unknown: bool,
}

impl Quirks {
    /// True if any quirk is set.
    pub fn any(&self) -> bool {
        *self != Quirks::default()
    }
}

/// Result of checking a narinfo's signatures against trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigStatus {
    /// A signature verifies against the trusted key with this name.
    Valid {
        /// Name of the key that verified.
        key: String,
    },
    /// Signed by a trusted key name, but no such signature verifies.
    Invalid,
    /// Signed only by keys that are not trusted.
    UnknownKey,
    /// No `Sig` line.
    Unsigned,
}

/// A narinfo that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NarInfoError {
    /// 1-based line number; 0 if about the whole input (e.g. a missing field).
    pub line: usize,
    /// Field name of the line, if known.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for NarInfoError {
    /// `line 3 (NarSize): not a number`; errors about the whole input print
    /// only the reason, e.g. `NarHash missing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return f.write_str(&self.reason);
        }
        write!(f, "line {}", self.line)?;
        if let Some(field) = &self.field {
            write!(f, " ({field})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[cold]
fn error(line: usize, field: Option<&str>, reason: impl Into<String>) -> NarInfoError {
    NarInfoError {
        line,
        field: field.map(str::to_owned),
        reason: reason.into(),
    }
}

/// Splits a line into its name, the name's field if known, and the text
/// after the first `:`; `None` if the line has no `:` before its end.
#[inline]
fn split_key(line: &str) -> Option<(&str, Option<Field>, &str)> {
    // A known name followed by `:` contains no `:` or `\n` itself, so it ends
    // where the general scan below would end it.
    if let Some(f) = Field::at_start_of(line.as_bytes()) {
        let n = f.key().len();
        if let (Some(key), Some(after)) = (line.get(..n), line.get(n + 1..)) {
            return Some((key, Some(f), after));
        }
    }
    let colon = line.bytes().position(|c| c == b':' || c == b'\n')?;
    let (key, tail) = line.split_at_checked(colon)?;
    let after = tail.strip_prefix(':')?;
    Some((key, Field::from_key(key), after))
}

/// Splits `s` at its first `\n` into the text before and after it
/// (`memchr`: vector code chosen at run time).
#[inline]
fn split_line(s: &str) -> Option<(&str, &str)> {
    let at = memchr::memchr(b'\n', s.as_bytes())?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// Parses a size: ASCII digits only, at most `u64::MAX`.
fn parse_u64(s: &str) -> Result<u64, &'static str> {
    if s.is_empty() {
        return Err("empty, expected a number");
    }
    let mut n: u64 = 0;
    for &c in s.as_bytes() {
        if !c.is_ascii_digit() {
            return Err("not a number");
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or("number too large")?;
    }
    Ok(n)
}

/// Parses a `References:` value: base names separated by spaces (Nix
/// tokenizes on spaces and skips empty tokens). On error gives the 1-based
/// position and text of the bad token.
fn parse_references(value: &str) -> Result<Vec<StorePath<'_>>, (usize, &str, StorePathError)> {
    // Each reference is at least 34 bytes plus a separator, so this capacity
    // never has to grow.
    let mut refs = Vec::with_capacity(value.len() / 35 + 1);
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(refs);
        }
        match StorePath::parse_base_name_prefix(rest) {
            Some((p, tail)) => {
                refs.push(p);
                rest = tail;
            }
            None => {
                let token = rest.split(' ').next().unwrap_or(rest);
                let e = match StorePath::parse_base_name(token) {
                    Err(e) => e,
                    // The fast path only fails on invalid tokens.
                    Ok(_) => StorePathError::NameEmpty,
                };
                return Err((refs.len() + 1, token, e));
            }
        }
    }
}

/// The store path base name starting at byte `i` of `v`, and the offset of
/// the first byte after its name (not checked: the caller decides what may
/// end it). `None` if the hash, the `-` or the name rules are wrong.
#[inline(always)]
fn scan_base_name(v: &str, i: usize) -> Option<(StorePath<'_>, usize)> {
    let b = v.as_bytes();
    let hash_chars = <&[u8; HASH_CHARS]>::try_from(b.get(i..i + HASH_CHARS)?).ok()?;
    let hash = StorePathHash(nixbase32::decode_hash_chars(hash_chars)?);
    if b.get(i + HASH_CHARS) != Some(&b'-') {
        return None;
    }
    let name_start = i + HASH_CHARS + 1;
    let end = name_start + name_char_run(b.get(name_start..)?);
    let name = v.get(name_start..end)?;
    validate_name_rules(name).ok()?;
    Some((StorePath { hash, name }, end))
}

/// Fast path of [`parse_references`] for a `References:` value followed by
/// `\n` and more text: returns the references and the offset of the `\n`.
/// `None` on anything unusual (the slow path then parses the line and names
/// the error). Not inlined: the loop gets the registers to itself.
#[inline(never)]
fn scan_references(v: &str) -> Option<(Vec<StorePath<'_>>, usize)> {
    let b = v.as_bytes();
    // References are >= 34 bytes plus a separator; cap the guess because the
    // line's length is not known yet.
    let mut refs = Vec::with_capacity((b.len() / 35 + 1).min(128));
    let mut i = 0;
    loop {
        // Spaces before the next reference (one, except in odd old entries).
        while *b.get(i)? == b' ' {
            i += 1;
        }
        if b.get(i) == Some(&b'\n') {
            return Some((refs, i));
        }
        let (path, end) = scan_base_name(v, i)?;
        refs.push(path);
        match b.get(end) {
            Some(b' ') => i = end + 1,
            Some(b'\n') => return Some((refs, end)),
            _ => return None,
        }
    }
}

/// A store path base name at byte `i` of `v` that ends its line. Not
/// inlined: one copy of [`scan_base_name`] stays in the References loop.
#[inline(never)]
fn scan_path_line(v: &str, i: usize) -> Option<(Scanned<'_>, usize)> {
    let (p, end) = scan_base_name(v, i)?;
    (v.as_bytes().get(end) == Some(&b'\n')).then_some((Scanned::Path(p), end))
}

/// A value read by a fast path together with finding its line's end.
enum Scanned<'a> {
    References(Vec<StorePath<'a>>),
    Hash(Sha256),
    Size(u64),
    /// A valid store path (`StorePath`) or base name (`Deriver`).
    Path(StorePath<'a>),
}

/// Fast paths for the values most narinfo lines hold: each reads the value
/// at the start of `v` (after `Name: `) and finds the `\n` ending its line in
/// the same pass, giving the value and the offset of that `\n`. `None` on
/// anything unusual: the general path then finds the line end and parses
/// (and names any error) as before. A value accepted here is one the
/// general path accepts, with the same result.
#[inline]
fn scan_value(field: Field, v: &str) -> Option<(Scanned<'_>, usize)> {
    let b = v.as_bytes();
    let line_ends_at = |end: usize| (b.get(end) == Some(&b'\n')).then_some(end);
    match field {
        Field::References => scan_references(v).map(|(r, n)| (Scanned::References(r), n)),
        Field::NarHash | Field::FileHash => {
            // `sha256:` and 52 nix32 characters (what Nix writes).
            let digest = b.strip_prefix(b"sha256:")?.get(..52)?;
            let digest = <&[u8; 52]>::try_from(digest).ok()?;
            let end = line_ends_at(59)?;
            let h = nixbase32::decode_digest_chars(digest)?;
            Some((Scanned::Hash(Sha256(h)), end))
        }
        Field::NarSize | Field::FileSize => {
            let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
            let end = line_ends_at(digits)?;
            let n = parse_u64(v.get(..digits)?).ok()?;
            Some((Scanned::Size(n), end))
        }
        Field::StorePath => {
            let base = v
                .strip_prefix(crate::store_path::STORE_DIR)?
                .strip_prefix('/')?;
            scan_path_line(v, v.len() - base.len())
        }
        Field::Deriver => scan_path_line(v, 0),
        _ => None,
    }
}

/// The general path of a `NarHash` or `FileHash` value (not inlined: the
/// fast path reads what Nix writes).
#[inline(never)]
fn parse_hash_line(value: &str, at: (usize, &str)) -> Result<(Sha256, HashEncoding), NarInfoError> {
    Sha256::parse(value).map_err(|e| error(at.0, Some(at.1), format!("invalid hash: {e}")))
}

/// The general path of a `NarSize` or `FileSize` value.
#[inline(never)]
fn parse_size_line(value: &str, at: (usize, &str)) -> Result<u64, NarInfoError> {
    parse_u64(value).map_err(|e| error(at.0, Some(at.1), e))
}

/// The fields seen so far while parsing.
#[derive(Default)]
struct Builder<'a> {
    store_path: Option<StorePath<'a>>,
    url: Option<&'a str>,
    compression: Option<&'a str>,
    file_hash: Option<Sha256>,
    file_size: Option<u64>,
    nar_hash: Option<Sha256>,
    nar_size: Option<u64>,
    references: Vec<StorePath<'a>>,
    deriver: Option<&'a str>,
    sigs: Vec<&'a str>,
    ca: Option<&'a str>,
    system: Option<&'a str>,
    layout: Layout<'a>,
}

impl<'a> Builder<'a> {
    fn has(&self, f: Field) -> bool {
        match f {
            Field::StorePath => self.store_path.is_some(),
            Field::Url => self.url.is_some(),
            Field::Compression => self.compression.is_some(),
            Field::FileHash => self.file_hash.is_some(),
            Field::FileSize => self.file_size.is_some(),
            Field::NarHash => self.nar_hash.is_some(),
            Field::NarSize => self.nar_size.is_some(),
            Field::References => self.layout.references_raw.is_some(),
            Field::Deriver => self.deriver.is_some(),
            Field::System => self.system.is_some(),
            Field::Sig => !self.sigs.is_empty(),
            Field::Ca => self.ca.is_some(),
        }
    }

    /// Sets `field` from its line's `value`, parsed and checked here unless
    /// a fast path already did (`scanned`). `at` is the line number and
    /// name, for errors.
    fn apply(
        &mut self,
        field: Field,
        value: &'a str,
        scanned: Option<Scanned<'a>>,
        at: (usize, &str),
    ) -> Result<(), NarInfoError> {
        let bad = |reason: String| error(at.0, Some(at.1), reason);
        let hash = |scanned: Option<Scanned<'a>>| match scanned {
            Some(Scanned::Hash(h)) => Ok((h, HashEncoding::Nix32)),
            _ => parse_hash_line(value, at),
        };
        let size = |scanned: Option<Scanned<'a>>| match scanned {
            Some(Scanned::Size(n)) => Ok(n),
            _ => parse_size_line(value, at),
        };
        let l = &mut self.layout;
        match field {
            Field::StorePath => {
                self.store_path = Some(match scanned {
                    Some(Scanned::Path(p)) => p,
                    _ => StorePath::parse_full(value)
                        .map_err(|e| bad(format!("invalid store path: {e}")))?,
                });
            }
            Field::Url => self.url = Some(value),
            Field::Compression => self.compression = Some(value),
            Field::FileHash => {
                let (h, enc) = hash(scanned)?;
                (self.file_hash, l.file_hash_raw, l.file_hash_encoding) =
                    (Some(h), value, Some(enc));
            }
            Field::FileSize => (self.file_size, l.file_size_raw) = (Some(size(scanned)?), value),
            Field::NarHash => {
                let (h, enc) = hash(scanned)?;
                (self.nar_hash, l.nar_hash_raw, l.nar_hash_encoding) = (Some(h), value, Some(enc));
            }
            Field::NarSize => (self.nar_size, l.nar_size_raw) = (Some(size(scanned)?), value),
            Field::References => {
                self.references = match scanned {
                    Some(Scanned::References(refs)) => refs,
                    _ => parse_references(value).map_err(|(i, token, e)| {
                        bad(format!("invalid reference #{i} {token:?}: {e}"))
                    })?,
                };
                l.references_raw = Some(value);
            }
            Field::Deriver => {
                let checked = matches!(scanned, Some(Scanned::Path(_)));
                if !checked && value != "unknown-deriver" {
                    StorePath::parse_base_name(value)
                        .map_err(|e| bad(format!("invalid deriver: {e}")))?;
                }
                self.deriver = Some(value);
            }
            Field::System => self.system = Some(value),
            Field::Sig => self.sigs.push(value),
            Field::Ca => {
                // Nix's ContentAddress::parseOpt: empty means none,
                // otherwise `text:…` or `fixed:…`.
                if !(value.is_empty() || value.starts_with("text:") || value.starts_with("fixed:"))
                {
                    return Err(bad(
                        "content address must start with \"text:\" or \"fixed:\"".to_owned(),
                    ));
                }
                self.ca = Some(value);
            }
        }
        Ok(())
    }

    /// The line order so far, for an input that was in writer order up to now.
    fn writer_order_so_far(&self) -> Vec<Line> {
        let mut order = Vec::with_capacity(16);
        for f in Field::ALL {
            if f == Field::Sig {
                order.extend(self.sigs.iter().map(|_| Line::Known(Field::Sig)));
            } else if self.has(f) {
                order.push(Line::Known(f));
            }
        }
        order
    }
}

impl<'a> NarInfo<'a> {
    /// Parses the text of a narinfo.
    ///
    /// # Errors
    ///
    /// Fails on input over 1 MiB, a line without `Name: `, a line without a
    /// final `\n`, an invalid value in a known field, a repeated field other
    /// than `Sig`, or a missing required field (`StorePath`, `NarHash`, `URL`,
    /// `NarSize` > 0). The error names the line and field.
    pub fn parse(input: &'a str) -> Result<NarInfo<'a>, NarInfoError> {
        if input.len() > MAX_NARINFO_SIZE {
            return Err(error(
                0,
                None,
                format!(
                    "narinfo is {} bytes, larger than the 1 MiB limit",
                    input.len()
                ),
            ));
        }
        let mut b = Builder::default();
        let mut rest = input;
        let mut line_no = 0usize;
        // Rank of the last known field while the input is in writer order.
        let mut in_order = true;
        let mut last_field = Field::StorePath;

        while !rest.is_empty() {
            line_no += 1;
            let Some((key, field, after_colon)) = split_key(rest) else {
                return Err(error(
                    line_no,
                    None,
                    "expected \"Name: value\", found no ':'",
                ));
            };
            // Fast paths (References is most of the bytes of a narinfo): read
            // the value and find the line's end in one pass.
            let mut scanned = None;
            let mut value = "";
            if let Some(f) = field
                && let Some(v) = after_colon.strip_prefix(' ')
                && let Some((fast, len)) = scan_value(f, v)
                && let Some((text, tail)) = v.split_at_checked(len)
            {
                value = text;
                rest = tail.get(1..).unwrap_or("");
                scanned = Some(fast);
            }
            if scanned.is_none() {
                let Some((line, tail)) = split_line(after_colon) else {
                    return Err(error(
                        line_no,
                        Some(key),
                        "line does not end with a newline",
                    ));
                };
                rest = tail;
                let Some(v) = line.strip_prefix(' ') else {
                    return Err(error(line_no, Some(key), "expected a space after ':'"));
                };
                value = v;
            }

            // Track whether the input is still in writer order; at the first
            // line that is not, switch to recording the order explicitly.
            if in_order {
                let still = match field {
                    Some(f) => {
                        f > last_field || (f == last_field && (f == Field::Sig || line_no == 1))
                    }
                    None => false,
                };
                if still {
                    if let Some(f) = field {
                        last_field = f;
                    }
                } else {
                    in_order = false;
                    b.layout.order = b.writer_order_so_far();
                }
            }

            let Some(field) = field else {
                if !in_order {
                    b.layout.order.push(Line::Unknown(b.layout.unknown.len()));
                }
                b.layout.unknown.push((key, value));
                continue;
            };
            if field != Field::Sig && b.has(field) {
                let reason = if field == Field::References {
                    "second References line".to_owned()
                } else {
                    format!("duplicate {} field", field.key())
                };
                // Nix allows a second References line only if the first was
                // empty, and overwrites other repeated fields; neither is
                // something a correct writer produces.
                return Err(error(line_no, Some(key), reason));
            }
            if !in_order {
                b.layout.order.push(Line::Known(field));
            }
            b.apply(field, value, scanned, (line_no, key))?;
        }

        // Same order of checks and messages as Nix.
        let Some(store_path) = b.store_path else {
            return Err(error(0, Some("StorePath"), "StorePath missing"));
        };
        let Some(nar_hash) = b.nar_hash else {
            return Err(error(0, Some("NarHash"), "NarHash missing"));
        };
        let url = match b.url {
            Some(u) if !u.is_empty() => u,
            _ => return Err(error(0, Some("URL"), "URL missing")),
        };
        let nar_size = match b.nar_size {
            Some(n) if n > 0 => n,
            _ => return Err(error(0, Some("NarSize"), "NarSize missing or zero")),
        };
        Ok(NarInfo {
            store_path,
            url,
            compression: b.compression,
            file_hash: b.file_hash,
            file_size: b.file_size,
            nar_hash,
            nar_size,
            references: b.references,
            deriver: b.deriver,
            sigs: b.sigs,
            ca: b.ca,
            system: b.system,
            layout: b.layout,
        })
    }

    /// A narinfo with only the required fields and an empty `References`
    /// line, printed in Nix's writer order.
    pub fn new(store_path: StorePath<'a>, url: &'a str, nar_hash: Sha256, nar_size: u64) -> Self {
        NarInfo {
            store_path,
            url,
            compression: None,
            file_hash: None,
            file_size: None,
            nar_hash,
            nar_size,
            references: Vec::new(),
            deriver: None,
            sigs: Vec::new(),
            ca: None,
            system: None,
            layout: Layout {
                references_raw: Some(""),
                ..Layout::default()
            },
        }
    }

    /// The quirks of the parsed input.
    pub fn quirks(&self) -> Quirks {
        let l = &self.layout;
        let mut q = Quirks {
            nar_hash_hex: l.nar_hash_encoding == Some(HashEncoding::Hex),
            nar_hash_not_nix32: matches!(l.nar_hash_encoding, Some(e) if e != HashEncoding::Nix32),
            file_hash_not_nix32: matches!(l.file_hash_encoding, Some(e) if e != HashEncoding::Nix32),
            compression_missing: self.compression.is_none(),
            has_system: self.system.is_some(),
            unknown_fields: !l.unknown.is_empty(),
            field_order: !l.order.is_empty(),
            size_leading_zeros: [l.nar_size_raw, l.file_size_raw]
                .iter()
                .any(|s| s.len() > 1 && s.starts_with('0')),
            deriver_unknown: self.deriver == Some("unknown-deriver"),
            ..Quirks::default()
        };
        for pair in self.references.windows(2) {
            if let [a, b] = pair {
                match a.cmp(b) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => q.references_duplicated = true,
                    std::cmp::Ordering::Greater => q.references_unsorted = true,
                }
            }
        }
        if q.references_unsorted && !q.references_duplicated {
            let mut sorted: Vec<_> = self.references.clone();
            sorted.sort_unstable();
            q.references_duplicated = sorted.windows(2).any(|w| w.first() == w.get(1));
        }
        if let Some(raw) = l.references_raw {
            q.references_spacing = raw.starts_with(' ') || raw.ends_with(' ') || raw.contains("  ");
        }
        q
    }

    /// The compression method, `bzip2` when the field is absent or empty (as
    /// in Nix).
    pub fn compression_or_default(&self) -> &str {
        match self.compression {
            Some(c) if !c.is_empty() => c,
            _ => "bzip2",
        }
    }

    /// The deriver as a store path; `None` if absent or `unknown-deriver`.
    pub fn deriver_path(&self) -> Option<StorePath<'a>> {
        self.deriver
            .and_then(|d| StorePath::parse_base_name(d).ok())
    }

    /// The S3 key of the NAR file: the URL without a leading `./`, or for an unusual URL
    /// the key it most likely names (see [`keys::nar_key_for_url`]).
    pub fn nar_key(&self) -> &'a str {
        keys::nar_key_for_url(self.url)
    }

    /// Unknown fields as `(name, value)`, in file order.
    pub fn unknown_fields(&self) -> &[(&'a str, &'a str)] {
        &self.layout.unknown
    }

    /// How `NarHash` was written (`None` for a narinfo built with
    /// [`NarInfo::new`]).
    pub fn nar_hash_encoding(&self) -> Option<HashEncoding> {
        self.layout.nar_hash_encoding
    }

    /// What Nix signs: `1;<path>;sha256:<nix32 NarHash>;<NarSize>;<refs>`,
    /// the references as full paths, sorted and deduplicated (they are a
    /// `std::set` in Nix; old narinfos list them unsorted), comma-joined.
    pub fn fingerprint(&self) -> String {
        let per_ref = crate::store_path::STORE_DIR.len() + 2 + 32;
        let mut s = String::with_capacity(
            160 + self.store_path.name.len()
                + self
                    .references
                    .iter()
                    .map(|r| per_ref + r.name.len())
                    .sum::<usize>(),
        );
        s.push_str("1;");
        self.store_path.push_full_path(&mut s);
        s.push_str(";sha256:");
        nixbase32::encode_into(&self.nar_hash.0, &mut s);
        let _ = write!(s, ";{};", self.nar_size);
        let sorted = self.references.windows(2).all(|w| w.first() < w.get(1));
        let mut push_all = |refs: &mut dyn Iterator<Item = &StorePath<'a>>| {
            for (i, r) in refs.enumerate() {
                if i > 0 {
                    s.push(',');
                }
                r.push_full_path(&mut s);
            }
        };
        if sorted {
            push_all(&mut self.references.iter());
        } else {
            let mut refs: Vec<&StorePath<'a>> = self.references.iter().collect();
            refs.sort_unstable();
            refs.dedup();
            push_all(&mut refs.into_iter());
        }
        s
    }

    /// Checks the signatures against `trusted` keys: valid if any `Sig`
    /// verifies against a trusted key of the same name (Nix's rule).
    pub fn verify(&self, trusted: &[PublicKey]) -> SigStatus {
        if self.sigs.is_empty() {
            return SigStatus::Unsigned;
        }
        let mut fingerprint = None;
        let mut trusted_name_seen = false;
        for sig in &self.sigs {
            let name = sig.split_once(':').map_or(*sig, |(n, _)| n);
            for key in trusted.iter().filter(|k| k.name == name) {
                trusted_name_seen = true;
                let fp = fingerprint.get_or_insert_with(|| self.fingerprint());
                if key.verify(fp, sig) {
                    return SigStatus::Valid {
                        key: key.name.clone(),
                    };
                }
            }
        }
        if trusted_name_seen {
            SigStatus::Invalid
        } else {
            SigStatus::UnknownKey
        }
    }

    /// A signature over this narinfo's fingerprint, to add as a `Sig` line.
    pub fn signature(&self, key: &SecretKey) -> String {
        key.sign(&self.fingerprint())
    }

    fn write_field(&self, f: &mut fmt::Formatter<'_>, field: Field) -> fmt::Result {
        let l = &self.layout;
        match field {
            Field::StorePath => {
                write!(f, "StorePath: {}/", crate::store_path::STORE_DIR)?;
                writeln!(f, "{}-{}", self.store_path.hash, self.store_path.name)
            }
            Field::Url => writeln!(f, "URL: {}", self.url),
            Field::Compression => opt_line(f, "Compression", self.compression),
            Field::FileHash => match self.file_hash {
                Some(h) => write_hash(f, "FileHash", &h, l.file_hash_raw),
                None => Ok(()),
            },
            Field::FileSize => match self.file_size {
                Some(n) => write_size(f, "FileSize", n, l.file_size_raw),
                None => Ok(()),
            },
            Field::NarHash => write_hash(f, "NarHash", &self.nar_hash, l.nar_hash_raw),
            Field::NarSize => write_size(f, "NarSize", self.nar_size, l.nar_size_raw),
            Field::References => {
                let Some(raw) = l.references_raw.or(if self.references.is_empty() {
                    None
                } else {
                    Some("")
                }) else {
                    return Ok(());
                };
                f.write_str("References: ")?;
                let mut tokens = raw.split(' ').filter(|t| !t.is_empty());
                let unchanged = self
                    .references
                    .iter()
                    .all(|r| tokens.next().is_some_and(|t| r.base_name_eq(t)))
                    && tokens.next().is_none();
                if unchanged {
                    f.write_str(raw)?;
                } else {
                    for (i, r) in self.references.iter().enumerate() {
                        if i > 0 {
                            f.write_str(" ")?;
                        }
                        write!(f, "{}-{}", r.hash, r.name)?;
                    }
                }
                f.write_str("\n")
            }
            Field::Deriver => opt_line(f, "Deriver", self.deriver),
            Field::System => opt_line(f, "System", self.system),
            Field::Sig => Ok(()),
            Field::Ca => opt_line(f, "CA", self.ca),
        }
    }
}

fn opt_line(f: &mut fmt::Formatter<'_>, key: &str, value: Option<&str>) -> fmt::Result {
    match value {
        Some(v) => writeln!(f, "{key}: {v}"),
        None => Ok(()),
    }
}

/// Prints the hash as it was written if it still holds the same digest,
/// otherwise in Nix's writer form `sha256:<nix32>`.
fn write_hash(f: &mut fmt::Formatter<'_>, key: &str, h: &Sha256, raw: &str) -> fmt::Result {
    match Sha256::parse(raw) {
        Ok((parsed, _)) if parsed == *h => writeln!(f, "{key}: {raw}"),
        _ => writeln!(f, "{key}: {h}"),
    }
}

/// Prints the size as it was written if it still holds the same number.
fn write_size(f: &mut fmt::Formatter<'_>, key: &str, n: u64, raw: &str) -> fmt::Result {
    if parse_u64(raw) == Ok(n) {
        writeln!(f, "{key}: {raw}")
    } else {
        writeln!(f, "{key}: {n}")
    }
}

impl fmt::Display for NarInfo<'_> {
    /// Prints the narinfo; a parsed narinfo prints exactly as its input.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = [false; Field::ALL.len()];
        let mut next_sig = 0usize;
        let write_sig = |f: &mut fmt::Formatter<'_>, next_sig: &mut usize| -> fmt::Result {
            if let Some(sig) = self.sigs.get(*next_sig) {
                *next_sig += 1;
                writeln!(f, "Sig: {sig}")?;
            }
            Ok(())
        };
        for line in &self.layout.order {
            match *line {
                Line::Known(Field::Sig) => write_sig(f, &mut next_sig)?,
                Line::Known(field) => {
                    if let Some(p) = printed.get_mut(field as usize) {
                        *p = true;
                    }
                    self.write_field(f, field)?;
                }
                Line::Unknown(i) => {
                    if let Some((k, v)) = self.layout.unknown.get(i) {
                        writeln!(f, "{k}: {v}")?;
                    }
                }
            }
        }
        // Everything not printed yet, in writer order (all of it for an input
        // in writer order, or for a narinfo built with `new`).
        for field in Field::ALL {
            if field == Field::Sig {
                while next_sig < self.sigs.len() {
                    write_sig(f, &mut next_sig)?;
                }
            } else if !printed.get(field as usize).copied().unwrap_or(true) {
                self.write_field(f, field)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASIC: &str = "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin
URL: nar/05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56.nar.xz
Compression: xz
FileHash: sha256:05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56
FileSize: 68852
NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0
NarSize: 196040
References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115 j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n
Deriver: 5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv
Sig: cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ==
Sig: test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ==
";

    fn key() -> PublicKey {
        crate::signature::parse("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
            .unwrap()
    }

    #[test]
    fn known_vector_verifies() {
        // The go-nix / tvix test vector (reference §1.6); narinfo text and
        // both signatures from go-nix pkg/narinfo/narinfo_test.go.
        let n = NarInfo::parse(BASIC).unwrap();
        assert_eq!(n.to_string(), BASIC);
        assert!(!n.quirks().any(), "{:?}", n.quirks());
        assert_eq!(
            n.fingerprint(),
            "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin;sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0;196040;/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,/nix/store/6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115,/nix/store/j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12,/nix/store/yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n"
        );
        assert_eq!(
            n.verify(&[key()]),
            SigStatus::Valid {
                key: "cache.nixos.org-1".into()
            }
        );
        let test1 =
            crate::signature::parse("test1:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE=").unwrap();
        assert_eq!(
            n.verify(&[test1]),
            SigStatus::Valid {
                key: "test1".into()
            }
        );
        assert_eq!(n.verify(&[]), SigStatus::UnknownKey);
        assert_eq!(n.compression_or_default(), "xz");
        assert_eq!(n.nar_key(), n.url);
        assert_eq!(n.deriver_path().unwrap().name, "curl-7.82.0.drv");
    }

    proptest::proptest! {
        /// The fast References scanner agrees with the simple tokenizer, and
        /// does not give up on valid input.
        #[test]
        fn fast_references_path_agrees(
            tokens in proptest::collection::vec(
                (proptest::prop_oneof![9 => "[0-9a-df-np-sv-z]{32}", 1 => "[0-9a-z]{32}"], "[-a-zA-Z0-9+._?=]{0,45}", "[ ]{1,3}|\t| ", proptest::bool::weighted(0.9)),
                0..8,
            ),
            lead in "[ ]{0,2}",
        ) {
            let mut v = lead;
            for (h, name, sep, dash) in &tokens {
                v.push_str(h);
                if *dash { v.push('-'); }
                v.push_str(name);
                v.push_str(sep);
            }
            let slow = parse_references(&v);
            let text = format!("{v}\nSig: x\n");
            match scan_references(&text) {
                Some((refs, len)) => {
                    proptest::prop_assert_eq!(len, v.len());
                    proptest::prop_assert_eq!(Ok(refs), slow.map_err(|(i, _, e)| (i, e)));
                }
                None => proptest::prop_assert!(slow.is_err(), "fast path gave up on valid {:?}", v),
            }
        }
    }

    /// What the general path makes of one line's value, in the form a fast
    /// path gives it.
    use proptest::strategy::Strategy as _;

    fn general_value(field: Field, line: &str) -> Option<String> {
        match field {
            Field::NarHash | Field::FileHash => Sha256::parse(line)
                .ok()
                .filter(|(_, e)| *e == HashEncoding::Nix32)
                .map(|(h, _)| format!("{h:?}")),
            Field::NarSize | Field::FileSize => parse_u64(line).ok().map(|n| n.to_string()),
            Field::StorePath => StorePath::parse_full(line).ok().map(|p| format!("{p:?}")),
            Field::Deriver => StorePath::parse_base_name(line)
                .ok()
                .map(|p| format!("{p:?}")),
            _ => None,
        }
    }

    proptest::proptest! {
        /// The fast paths for hashes, sizes, the store path and the deriver
        /// accept a line only if the general path does, with the same value
        /// and line end, and do not give up on the usual forms.
        #[test]
        fn fast_value_paths_agree_with_the_general_path(
            (field, value) in proptest::prop_oneof![
                ("sha256:[0-9a-df-np-sv-z]{52}|sha256:[0-9a-z]{52}|sha256:[0-3][0-9a-df-np-sv-z]{51}|sha256:[0-9a-df-np-sv-z\n:]{52,53}|sha256:[0-9a-f]{64}|[a-z0-9:-]{0,60}")
                    .prop_map(|v| (Field::NarHash, v)),
                ("[0-9]{0,22}|[0-9 a\n]{0,5}|0[0-9]{0,3}").prop_map(|v| (Field::NarSize, v)),
                ("/nix/store/[0-9a-df-np-sv-z]{32}-[-a-zA-Z0-9+._?=]{0,40}|/nix/store/[0-9a-z]{32}[-/ .]?[-a-zA-Z0-9+._?=/ \n]{0,40}|/nix/stor[e/]{0,2}[0-9a-z]{0,33}")
                    .prop_map(|v| (Field::StorePath, v)),
                ("[0-9a-df-np-sv-z]{32}-[-a-zA-Z0-9+._?=]{0,240}|[0-9a-z]{31,33}-?[-.a-z\n ]{0,5}|unknown-deriver")
                    .prop_map(|v| (Field::Deriver, v)),
            ],
        ) {
            use proptest::prop_assert_eq;
            let text = format!("{value}\nSig: x\n");
            let line = &text[..text.find('\n').unwrap()];
            let general = general_value(field, line);
            match scan_value(field, &text) {
                Some((scanned, len)) => {
                    prop_assert_eq!(len, line.len());
                    let fast = match scanned {
                        Scanned::Hash(h) => format!("{h:?}"),
                        Scanned::Size(n) => n.to_string(),
                        Scanned::Path(p) => format!("{p:?}"),
                        Scanned::References(_) => String::new(),
                    };
                    prop_assert_eq!(Some(fast), general);
                }
                None => proptest::prop_assert!(general.is_none(), "fast path gave up on {:?}", line),
            }
        }
    }

    /// Where nix32 characters sit in [`BASIC`]: `(byte offset, first char of
    /// a 52-character SHA-256 digest)`. The first character of a 52-character
    /// digest carries 4 spare bits, so only `0` and `1` are canonical there.
    fn nix32_positions() -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        let mut at = 0;
        for line in BASIC.split_inclusive('\n') {
            let hash_at = |prefix: &str| line.find(prefix).map(|i| at + i + prefix.len());
            if let Some(start) = hash_at("StorePath: /nix/store/") {
                out.extend((start..start + 32).map(|i| (i, false)));
            }
            if line.starts_with("NarHash:") || line.starts_with("FileHash:") {
                let start = hash_at("sha256:").unwrap();
                out.extend((start..start + 52).map(|i| (i, i == start)));
            }
            if let Some(refs) = line.strip_prefix("References: ") {
                let mut token_at = at + "References: ".len();
                for token in refs.trim_end_matches('\n').split(' ') {
                    out.extend((token_at..token_at + 32).map(|i| (i, false)));
                    token_at += token.len() + 1;
                }
            }
            if let Some(start) = hash_at("Deriver: ") {
                out.extend((start..start + 32).map(|i| (i, false)));
            }
            at += line.len();
        }
        out
    }

    proptest::proptest! {
        /// The parser's nix32 checks (lookup tables, vectorized digit
        /// mapping) accept a character in a hash position exactly when the
        /// alphabet written out by hand contains it: any byte or character
        /// put into a store path hash, a reference, the deriver or a digest
        /// is rejected iff it is not nix32.
        #[test]
        fn nix32_positions_accept_exactly_the_alphabet(
            pick in 0usize..1000,
            c in proptest::prop_oneof![
                4 => proptest::strategy::Strategy::prop_map(proptest::num::u8::ANY, char::from),
                1 => proptest::char::any(),
            ],
        ) {
            let positions = nix32_positions();
            let (at, digest_top) = positions[pick % positions.len()];
            let mut text = BASIC.to_owned();
            text.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
            let reference_ok = if digest_top {
                c == '0' || c == '1'
            } else {
                "0123456789abcdfghijklmnpqrsvwxyz".contains(c)
            };
            let parsed = NarInfo::parse(&text);
            proptest::prop_assert_eq!(parsed.is_ok(), reference_ok, "{:?} at {}: {:?}", c, at, parsed.err());
        }
    }

    proptest::proptest! {
        /// Recognizing known names by their first bytes splits every line
        /// where the scan for the first `:` does.
        #[test]
        fn split_key_agrees_with_the_colon_scan(
            name in "StorePath|Sig|System|St|S|URL|U|Compression|CA|C|FileHash|FileSize|File|F|NarHash|NarSize|Nar|References|R|Deriver|D|[A-Za-z]{0,12}",
            tail in "[:\n ]?[a-zA-Z: \n]{0,6}",
        ) {
            let line = format!("{name}{tail}");
            let want = line.find([':', '\n']).filter(|&i| line.as_bytes()[i] == b':').map(|i| {
                let key = &line[..i];
                (key, Field::from_key(key), &line[i + 1..])
            });
            proptest::prop_assert_eq!(split_key(&line), want);
        }
    }

    #[test]
    fn every_known_name_is_recognized_by_its_first_bytes() {
        for f in Field::ALL {
            let line = format!("{}: x\n", f.key());
            assert_eq!(Field::at_start_of(line.as_bytes()), Some(f), "{line:?}");
            assert_eq!(Field::at_start_of(&line.as_bytes()[..f.key().len()]), None);
        }
    }

    proptest::proptest! {
        /// Sizes agree with the standard library's parser, up to and past
        /// `u64::MAX`.
        #[test]
        fn parse_u64_agrees_with_std(s in "[0-9]{0,22}|[0-9]{0,5}[ a+-][0-9]{0,3}") {
            let want = match s.parse::<u64>() {
                Ok(n) if !s.starts_with('+') => Ok(n),
                _ if s.is_empty() => Err("empty, expected a number"),
                _ if s.bytes().all(|c| c.is_ascii_digit()) => Err("number too large"),
                _ => Err("not a number"),
            };
            proptest::prop_assert_eq!(parse_u64(&s), want);
        }
    }

    proptest::proptest! {
        /// The 32-bytes-at-a-time newline search splits like `split_once`.
        #[test]
        fn split_line_agrees_with_split_once(s in "[a-z \n]{0,80}", nl in 0usize..100) {
            let mut s = s;
            if nl < s.len() { s.insert(nl, '\n'); }
            proptest::prop_assert_eq!(split_line(&s), s.split_once('\n'));
        }
    }

    #[test]
    fn nix32_positions_cover_every_hash() {
        // 32 (StorePath) + 2 × 52 (hashes) + 4 × 32 (references) + 32 (Deriver).
        assert_eq!(nix32_positions().len(), 32 + 2 * 52 + 4 * 32 + 32);
    }

    #[test]
    fn error_display() {
        let e = NarInfoError {
            line: 3,
            field: Some("NarSize".into()),
            reason: "not a number".into(),
        };
        assert_eq!(e.to_string(), "line 3 (NarSize): not a number");
    }
}
