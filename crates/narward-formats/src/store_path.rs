//! Store paths: `/nix/store/<32 nix32 chars>-<name>`.
//!
//! Takes a full path or a base name and gives a [`StorePath`] that holds the
//! decoded 20-byte hash and borrows the name from the input; [`StorePathBuf`]
//! is the owned form. [`StorePathHash`] alone names a `<hash>.narinfo` key.
//!
//! Rules (reference §1.5; Nix `path.cc`, `path-regex.hh`):
//! - the hash part is 32 characters of the nix32 alphabet (no `e o u t`);
//! - the name is 1..=211 characters of `[0-9a-zA-Z+-._?=]`;
//! - since Nix 2.21 the name may not be `.` or `..` nor start with `.-` or
//!   `..-`;
//! - only the store directory [`STORE_DIR`] is supported; a trailing `/` or a
//!   path below the store path is rejected (the `/` is not a name character).
//!
//! [`StorePathHash`] orders like its nix32 text, so sorting hashes gives the
//! same order as sorting `<hash>.narinfo` keys (and as S3 `ListObjectsV2`),
//! and [`StorePath`] orders like its base name, which is how Nix sorts
//! references.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::nixbase32;

/// The only store directory narward supports.
pub const STORE_DIR: &str = "/nix/store";

/// Length of the hash part of a store path, in nix32 characters.
pub const HASH_CHARS: usize = 32;

/// Maximum length of the name part (`MaxPathLen` in Nix's `path.hh`).
pub const MAX_NAME_LEN: usize = 211;

/// What is wrong with a store path, its hash or its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorePathError {
    /// A full path that does not start with `/nix/store/`.
    #[error("store path does not start with \"/nix/store/\"")]
    NotInStore,
    /// Shorter than a hash, a dash and a one-character name.
    #[error("store path base name is {len} bytes, shorter than 34 (32-character hash, '-', name)")]
    TooShort {
        /// Length of the base name.
        len: usize,
    },
    /// The 33rd character of the base name is not `-`.
    #[error("store path has no '-' after the 32-character hash")]
    MissingDash,
    /// A store path hash that is not 32 characters long.
    #[error("store path hash is {len} bytes long, expected 32 nix32 characters")]
    HashLength {
        /// Length of the input in bytes.
        len: usize,
    },
    /// A character outside the nix32 alphabet in the hash part.
    #[error(
        "store path hash contains {ch:?} at position {pos}, which is not a nix32 character (0-9, a-z without e, o, u, t)"
    )]
    InvalidHashChar {
        /// The offending character.
        ch: char,
        /// Byte offset in the hash part.
        pos: usize,
    },
    /// The name is empty.
    #[error("store path name is empty")]
    NameEmpty,
    /// The name is longer than 211 bytes.
    #[error("store path name is {len} bytes long, the maximum is 211")]
    NameTooLong {
        /// Length of the name in bytes.
        len: usize,
    },
    /// A character outside `[0-9a-zA-Z+-._?=]` in the name.
    #[error(
        "store path name contains {ch:?} at position {pos}, allowed are 0-9 a-z A-Z + - . _ ? ="
    )]
    InvalidNameChar {
        /// The offending character.
        ch: char,
        /// Byte offset in the name.
        pos: usize,
    },
    /// The name is `.` or `..` or starts with `.-` or `..-` (Nix ≥ 2.21).
    #[error("store path name may not be \".\" or \"..\" nor start with \".-\" or \"..-\"")]
    DotName,
}

/// The 20-byte digest that names a store path (its first 32 characters).
///
/// `Display` and `FromStr` use the 32-character nix32 text; serde does too.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct StorePathHash(pub [u8; 20]);

impl StorePathHash {
    /// Parses 32 nix32 characters.
    ///
    /// # Errors
    ///
    /// Fails if `s` is not 32 bytes long or contains a character outside the
    /// nix32 alphabet.
    #[inline]
    pub fn parse(s: &str) -> Result<Self, StorePathError> {
        if s.len() != HASH_CHARS {
            return Err(StorePathError::HashLength { len: s.len() });
        }
        match nixbase32::decode_fixed::<20>(s) {
            Ok(b) => Ok(StorePathHash(b)),
            Err(e) => Err(match e.kind {
                nixbase32::Nixbase32ErrorKind::InvalidChar { ch, pos } => {
                    StorePathError::InvalidHashChar { ch, pos }
                }
                // 32 characters carry exactly 160 bits: never non-canonical,
                // and the length was checked above.
                _ => StorePathError::HashLength { len: s.len() },
            }),
        }
    }

    /// The 32-character nix32 text.
    pub fn to_nix32(&self) -> String {
        let mut buf = [0u8; HASH_CHARS];
        nixbase32::encode_to_slice(&self.0, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Writes the 32-character nix32 text into a stack buffer and passes it to
    /// `f` (no allocation).
    pub fn with_nix32<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let mut buf = [0u8; HASH_CHARS];
        nixbase32::encode_to_slice(&self.0, &mut buf);
        f(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl Ord for StorePathHash {
    /// Orders like the nix32 text: nix32 reads the bytes as a little-endian
    /// number and its alphabet is in ASCII order, so text order is numeric
    /// order, i.e. comparing the bytes from the last one down.
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

impl PartialOrd for StorePathHash {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for StorePathHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_nix32(|s| f.write_str(s))
    }
}

impl FromStr for StorePathHash {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorePathHash::parse(s)
    }
}

impl serde::Serialize for StorePathHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_nix32(|s| serializer.serialize_str(s))
    }
}

impl<'de> serde::Deserialize<'de> for StorePathHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        StorePathHash::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Bytes allowed in a store path name.
#[allow(clippy::indexing_slicing)] // const evaluation: out of bounds fails the build
const NAME_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || b == b'+'
            || b == b'-'
            || b == b'.'
            || b == b'_'
            || b == b'?'
            || b == b'=';
        c += 1;
    }
    t
};

/// True if `c` may appear in a store path name: `[0-9a-zA-Z+-._?=]`.
#[inline]
pub fn is_name_char(c: u8) -> bool {
    NAME_CHARS.get(usize::from(c)).copied().unwrap_or(false)
}

/// Length of the run of name characters at the start of `b`; 32 bytes at a
/// time with a branch-free test that the compiler vectorizes, turned into a
/// bit mask so that the end of the run is found without a branch per word.
#[inline(always)]
pub(crate) fn name_char_run(b: &[u8]) -> usize {
    let mut done = 0;
    while let Some(chunk) = b
        .get(done..done + 32)
        .and_then(|c| <&[u8; 32]>::try_from(c).ok())
    {
        let miss = !name_char_mask(chunk);
        if miss != 0 {
            return done + miss.trailing_zeros() as usize;
        }
        done += 32;
    }
    let tail = b.get(done..).unwrap_or_default();
    done + tail
        .iter()
        .position(|&c| !is_name_char(c))
        .unwrap_or(tail.len())
}

/// Bit `i` is set iff `chunk[i]` is a name character.
#[inline(always)]
fn name_char_mask(chunk: &[u8; 32]) -> u32 {
    // A local copy: the loop then provably cannot write what it reads, and
    // compiles to vector code alone (no run-time overlap check).
    let chunk = *chunk;
    let mut flags = [0u8; 32];
    for (f, &c) in flags.iter_mut().zip(&chunk) {
        // Signed byte comparisons (one SSE2 instruction each); bytes >= 0x80
        // are negative, so below every bound. `+,-./0-9` is 0x2b..=0x39.
        let x = c.cast_signed();
        let plus_to_nine = (x > 0x2a) & (x < 0x3a) & (c != b',') & (c != b'/');
        let folded = (c | 0x20).cast_signed();
        let letter = (folded > 0x60) & (folded < 0x7b);
        // `=` (0x3d) and `?` (0x3f) are the bytes that `| 2` makes 0x3f.
        let other = (c == b'_') | ((c | 2) == b'?');
        *f = u8::from(plus_to_nine | letter | other);
    }
    flags_to_mask(&flags)
}

/// Bit `i` is set iff `flags[i]` is 1 (each flag must be 0 or 1).
#[inline(always)]
fn flags_to_mask(flags: &[u8; 32]) -> u32 {
    let mut mask = 0u32;
    for (k, word) in flags.chunks_exact(8).enumerate() {
        mask |= byte_flags_to_bits(u64::from_le_bytes(
            <[u8; 8]>::try_from(word).unwrap_or_default(),
        )) << (8 * k);
    }
    mask
}

/// Gathers 8 bytes that are each 0 or 1 into 8 bits (byte `i` to bit `i`):
/// the multiplier places byte `i` at bit `56 + i` and no two partial
/// products overlap, so nothing carries.
#[inline(always)]
fn byte_flags_to_bits(w: u64) -> u32 {
    (w.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// Checks a store path name (the part after `<hash>-`).
///
/// # Errors
///
/// Fails if the name is empty, longer than 211 bytes, contains a character
/// outside `[0-9a-zA-Z+-._?=]`, or is `.`/`..`/starts with `.-`/`..-`.
pub fn validate_name(name: &str) -> Result<(), StorePathError> {
    if name_char_run(name.as_bytes()) != name.len() {
        return Err(match validate_name_rules(name) {
            Err(e @ StorePathError::NameTooLong { .. }) => e,
            _ => invalid_name_char(name),
        });
    }
    validate_name_rules(name)
}

/// The rules of [`validate_name`] other than the character set.
#[inline]
pub(crate) fn validate_name_rules(name: &str) -> Result<(), StorePathError> {
    let len = name.len();
    if len == 0 {
        return Err(StorePathError::NameEmpty);
    }
    if len > MAX_NAME_LEN {
        return Err(StorePathError::NameTooLong { len });
    }
    if !name.starts_with('.') {
        return Ok(());
    }
    // Nix ≥ 2.21 (commit f1b4663805): (?!\.\.?(-|$))
    if name == "." || name == ".." || name.starts_with(".-") || name.starts_with("..-") {
        return Err(StorePathError::DotName);
    }
    Ok(())
}

#[cold]
fn invalid_name_char(name: &str) -> StorePathError {
    for (pos, ch) in name.char_indices() {
        if !ch.is_ascii() || !is_name_char(ch as u8) {
            return StorePathError::InvalidNameChar { ch, pos };
        }
    }
    StorePathError::NameEmpty
}

/// A store path: decoded hash plus a name borrowed from the input.
///
/// Orders like its base name `<hash>-<name>` (the order of Nix's
/// `std::set<StorePath>`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct StorePath<'a> {
    /// The 20-byte hash (first 32 characters of the base name).
    pub hash: StorePathHash,
    /// The name after `<hash>-`; already validated.
    pub name: &'a str,
}

impl<'a> StorePath<'a> {
    /// Parses a base name `<hash32>-<name>`.
    ///
    /// # Errors
    ///
    /// Fails if the hash part is not 32 nix32 characters, the dash is missing,
    /// or the name breaks the rules of [`validate_name`].
    pub fn parse_base_name(s: &'a str) -> Result<Self, StorePathError> {
        let b = s.as_bytes();
        if b.len() < HASH_CHARS + 2 {
            // Name an empty name precisely: "<hash>-" is a valid hash and dash.
            if b.len() == HASH_CHARS + 1 && b.last() == Some(&b'-') {
                StorePathHash::parse(s.get(..HASH_CHARS).unwrap_or_default())?;
                return Err(StorePathError::NameEmpty);
            }
            return Err(StorePathError::TooShort { len: b.len() });
        }
        // A multi-byte character straddling position 32 cannot be sliced:
        // report it as a bad hash character.
        let (Some(hash_text), Some(rest)) = (s.get(..HASH_CHARS), s.get(HASH_CHARS..)) else {
            return Err(invalid_hash_char(s));
        };
        let hash = StorePathHash::parse(hash_text)?;
        let name = rest.strip_prefix('-').ok_or(StorePathError::MissingDash)?;
        validate_name(name)?;
        Ok(StorePath { hash, name })
    }

    /// Fast path for lists: parses a valid base name at the start of `s` that
    /// ends at a space or at the end of `s`, validating the name while
    /// looking for its end. Returns the path and the rest of `s` (starting at
    /// the space). `None` on any problem; the caller then uses
    /// [`StorePath::parse_base_name`] on the token for a precise error.
    #[inline]
    pub(crate) fn parse_base_name_prefix(s: &'a str) -> Option<(Self, &'a str)> {
        let (hash_text, rest) = s.split_at_checked(HASH_CHARS)?;
        let hash = StorePathHash::parse(hash_text).ok()?;
        let after_dash = rest.strip_prefix('-')?;
        let bytes = after_dash.as_bytes();
        let n = bytes
            .iter()
            .position(|&c| !is_name_char(c))
            .unwrap_or(bytes.len());
        let (name, tail) = after_dash.split_at_checked(n)?;
        if !(tail.is_empty() || tail.starts_with(' ')) || validate_name_rules(name).is_err() {
            return None;
        }
        Some((StorePath { hash, name }, tail))
    }

    /// Parses a full path `/nix/store/<hash32>-<name>`.
    ///
    /// # Errors
    ///
    /// Fails if `s` does not start with `/nix/store/`, or the rest is not a
    /// valid base name (a trailing `/` or a sub-path fails as a bad name
    /// character).
    pub fn parse_full(s: &'a str) -> Result<Self, StorePathError> {
        let base = s
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(StorePathError::NotInStore)?;
        Self::parse_base_name(base)
    }

    /// Parses a full path if `s` starts with `/`, a base name otherwise.
    ///
    /// # Errors
    ///
    /// As [`StorePath::parse_full`] or [`StorePath::parse_base_name`].
    pub fn parse_any(s: &'a str) -> Result<Self, StorePathError> {
        if s.starts_with('/') {
            Self::parse_full(s)
        } else {
            Self::parse_base_name(s)
        }
    }

    /// `<hash32>-<name>`.
    pub fn base_name(&self) -> String {
        let mut s = String::with_capacity(HASH_CHARS + 1 + self.name.len());
        self.push_base_name(&mut s);
        s
    }

    /// `/nix/store/<hash32>-<name>`.
    pub fn full_path(&self) -> String {
        let mut s = String::with_capacity(STORE_DIR.len() + 2 + HASH_CHARS + self.name.len());
        self.push_full_path(&mut s);
        s
    }

    /// Appends `<hash32>-<name>` to `out`.
    pub fn push_base_name(&self, out: &mut String) {
        self.hash.with_nix32(|h| out.push_str(h));
        out.push('-');
        out.push_str(self.name);
    }

    /// Appends `/nix/store/<hash32>-<name>` to `out`.
    pub fn push_full_path(&self, out: &mut String) {
        out.push_str(STORE_DIR);
        out.push('/');
        self.push_base_name(out);
    }

    /// The owned form.
    pub fn to_buf(&self) -> StorePathBuf {
        StorePathBuf {
            hash: self.hash,
            name: self.name.to_owned(),
        }
    }

    /// True if `s` is exactly this path's base name (no allocation).
    pub fn base_name_eq(&self, s: &str) -> bool {
        let Some((h, n)) = s.split_at_checked(HASH_CHARS) else {
            return false;
        };
        n.strip_prefix('-') == Some(self.name) && self.hash.with_nix32(|mine| mine == h)
    }
}

#[cold]
fn invalid_hash_char(s: &str) -> StorePathError {
    for (pos, ch) in s.char_indices() {
        if pos >= HASH_CHARS {
            break;
        }
        if !ch.is_ascii() || !nixbase32::is_nix32_char(ch as u8) {
            return StorePathError::InvalidHashChar { ch, pos };
        }
    }
    StorePathError::HashLength { len: s.len() }
}

/// The owned form of [`StorePath`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct StorePathBuf {
    /// The 20-byte hash.
    pub hash: StorePathHash,
    /// The validated name.
    pub name: String,
}

impl StorePathBuf {
    /// Parses a full path or a base name, like [`StorePath::parse_any`].
    ///
    /// # Errors
    ///
    /// As [`StorePath::parse_any`].
    pub fn parse_any(s: &str) -> Result<Self, StorePathError> {
        StorePath::parse_any(s).map(|p| p.to_buf())
    }

    /// The borrowed form.
    pub fn as_path(&self) -> StorePath<'_> {
        StorePath {
            hash: self.hash,
            name: &self.name,
        }
    }

    /// `<hash32>-<name>`.
    pub fn base_name(&self) -> String {
        self.as_path().base_name()
    }

    /// `/nix/store/<hash32>-<name>`.
    pub fn full_path(&self) -> String {
        self.as_path().full_path()
    }
}

impl fmt::Display for StorePathBuf {
    /// Prints the full path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "00bgd045z0d4icpbc2yyz4gx48ak44la";

    #[test]
    fn parses_forms() {
        let full = format!("/nix/store/{H}-hello-2.12");
        let p = StorePath::parse_full(&full).unwrap();
        assert_eq!(p.name, "hello-2.12");
        assert_eq!(p.hash.to_string(), H);
        assert_eq!(p.base_name(), format!("{H}-hello-2.12"));
        assert_eq!(p.full_path(), format!("/nix/store/{H}-hello-2.12"));
        let b = format!("{H}-hello-2.12");
        assert_eq!(StorePath::parse_base_name(&b).unwrap(), p);
        assert_eq!(StorePath::parse_any(&b).unwrap(), p);
        assert!(p.base_name_eq(&b));
        assert!(!p.base_name_eq(&format!("{H}-hello-2.13")));
        assert_eq!(p.to_buf().as_path(), p);
    }

    #[test]
    fn hash_serde_is_nix32_text() {
        let h = StorePathHash::parse(H).unwrap();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{H}\""));
        assert_eq!(serde_json::from_str::<StorePathHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<StorePathHash>("\"eeee\"").is_err());
        assert_eq!(H.parse::<StorePathHash>().unwrap(), h);
    }

    #[test]
    fn name_length_limit() {
        let ok = format!("{H}-{}", "a".repeat(211));
        assert!(StorePath::parse_base_name(&ok).is_ok());
        let bad = format!("{H}-{}", "a".repeat(212));
        assert_eq!(
            StorePath::parse_base_name(&bad).unwrap_err(),
            StorePathError::NameTooLong { len: 212 }
        );
    }

    #[test]
    fn name_rules() {
        for good in ["a", "+-._?=", "A.B", "..a", ".a", "-", "a.-", "...", "..b-"] {
            let s = format!("{H}-{good}");
            assert!(StorePath::parse_base_name(&s).is_ok(), "{good}");
        }
        for bad in [".", "..", ".-", "..-", ".-foo", "..-foo"] {
            let s = format!("{H}-{bad}");
            assert_eq!(
                StorePath::parse_base_name(&s).unwrap_err(),
                StorePathError::DotName,
                "{bad}"
            );
        }
        for (bad, ch, pos) in [
            ("a b", ' ', 1),
            ("a/b", '/', 1),
            ("é", 'é', 0),
            ("a:", ':', 1),
        ] {
            let s = format!("{H}-{bad}");
            assert_eq!(
                StorePath::parse_base_name(&s).unwrap_err(),
                StorePathError::InvalidNameChar { ch, pos },
                "{bad}"
            );
        }
        let s = format!("{H}-");
        assert_eq!(
            StorePath::parse_base_name(&s).unwrap_err(),
            StorePathError::NameEmpty
        );
    }

    #[test]
    fn hash_rules() {
        for (i, c) in ['e', 'o', 'u', 't', 'A', '_'].into_iter().enumerate() {
            let mut h = H.to_string();
            h.replace_range(i..i + 1, &c.to_string());
            let s = format!("{h}-foo");
            assert_eq!(
                StorePath::parse_base_name(&s).unwrap_err(),
                StorePathError::InvalidHashChar { ch: c, pos: i }
            );
            assert!(StorePathHash::parse(&h).is_err());
        }
        // A multi-byte character straddling the hash/dash boundary.
        let s = format!("{}é-foo", &H[..31]);
        assert!(matches!(
            StorePath::parse_base_name(&s).unwrap_err(),
            StorePathError::InvalidHashChar { ch: 'é', pos: 31 }
        ));
        let s = format!("{H}_foo");
        assert_eq!(
            StorePath::parse_base_name(&s).unwrap_err(),
            StorePathError::MissingDash
        );
        assert_eq!(
            StorePathHash::parse("abc").unwrap_err(),
            StorePathError::HashLength { len: 3 }
        );
    }

    #[test]
    fn full_path_rules() {
        for bad in [
            format!("/nix/store/{H}-foo/"),
            format!("/nix/store/{H}-foo/bin/sh"),
        ] {
            assert!(matches!(
                StorePath::parse_full(&bad).unwrap_err(),
                StorePathError::InvalidNameChar { ch: '/', .. }
            ));
        }
        for bad in [
            format!("/nix/stor/{H}-foo"),
            format!("/nix/store{H}-foo"),
            format!("nix/store/{H}-foo"),
            format!("/gnu/store/{H}-foo"),
        ] {
            assert_eq!(
                StorePath::parse_full(&bad).unwrap_err(),
                StorePathError::NotInStore
            );
        }
        assert_eq!(
            StorePath::parse_full("/nix/store/").unwrap_err(),
            StorePathError::TooShort { len: 0 }
        );
        let err = StorePath::parse_full("/nix/store/x").unwrap_err();
        assert!(err.to_string().contains("shorter than 34"), "{err}");
    }

    #[test]
    fn error_messages_are_precise() {
        let s = format!("{H}-a b");
        let msg = StorePath::parse_base_name(&s).unwrap_err().to_string();
        assert!(msg.contains("' '") && msg.contains("position 1"), "{msg}");
    }

    #[test]
    fn name_char_mask_agrees_with_the_table_for_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        for chunk in bytes.chunks_exact(32) {
            let mask = name_char_mask(chunk.try_into().unwrap());
            for (i, &c) in chunk.iter().enumerate() {
                assert_eq!(mask >> i & 1 == 1, is_name_char(c), "{c:#x}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn byte_flags_gather_to_bits(flags in proptest::array::uniform8(0u8..2)) {
            let want = flags.iter().enumerate().fold(0u32, |m, (i, &f)| m | (u32::from(f) << i));
            proptest::prop_assert_eq!(byte_flags_to_bits(u64::from_le_bytes(flags)), want);
        }

        #[test]
        fn name_char_run_matches_bytewise(s in proptest::collection::vec(proptest::num::u8::ANY, 0..100), cut in 0usize..100) {
            let s: Vec<u8> = s.iter().enumerate().map(|(i, &c)| if i < cut { b"aZ09+-._?="[c as usize % 10] } else { c }).collect();
            let want = s.iter().position(|&c| !is_name_char(c)).unwrap_or(s.len());
            proptest::prop_assert_eq!(name_char_run(&s), want);
        }

        #[test]
        fn hash_order_matches_text_order(a in proptest::array::uniform20(0u8..), b in proptest::array::uniform20(0u8..)) {
            let (ha, hb) = (StorePathHash(a), StorePathHash(b));
            proptest::prop_assert_eq!(ha.cmp(&hb), ha.to_string().cmp(&hb.to_string()));
            proptest::prop_assert_eq!(StorePathHash::parse(&ha.to_string()).unwrap(), ha);
        }

        #[test]
        fn path_order_matches_base_name_order(
            a in proptest::array::uniform20(0u8..), b in proptest::array::uniform20(0u8..),
            na in "[a-c.+-]{1,4}", nb in "[a-c.+-]{1,4}", same in proptest::bool::ANY,
        ) {
            let b = if same { a } else { b };
            let sa = format!("{}-{na}", StorePathHash(a));
            let sb = format!("{}-{nb}", StorePathHash(b));
            if let (Ok(pa), Ok(pb)) = (StorePath::parse_base_name(&sa), StorePath::parse_base_name(&sb)) {
                proptest::prop_assert_eq!(pa.cmp(&pb), sa.cmp(&sb));
            }
        }
    }
}
