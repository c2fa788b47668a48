//! The object listing in memory, compactly: the main per-object memory cost of every
//! command that reads the index.
//!
//! A [`Listing`] holds the same objects as a sorted `Vec<ObjectRecord>` would, in columns:
//! - the keys in one byte heap, packed where a cache's key has a fixed shape (a narinfo's
//!   or `.ls` listing's store-path hash as its 20 bytes, a NAR's file hash as its 32 and
//!   the extension as a code, a debuginfo build id as its 20 bytes; [`KeyForm`]), else as
//!   text, with u32 end offsets within blocks of 65,536 objects;
//! - sizes and mtimes as u32, the ETag as 16 bytes when it is an MD5 (32 lowercase hex
//!   digits, optionally with a multipart `-N` suffix) and the storage class as one byte
//!   ([`narward_formats::storage_class`]).
//!
//! Whatever does not fit those (a size of 4 GiB or more, an mtime before 1970 or none, an
//! ETag of another shape or none, a class not in the list, a `file://` link target, a key
//! of 64 KiB or more) goes to sparse side tables, so nothing is lost: [`ObjectRef::to_record`]
//! gives back the exact record pushed, and a packed key prints back byte for byte. About
//! 30 bytes per object plus its packed key: 50 for a narinfo, 62 for a NAR.

use crate::model::ObjectRecord;
use narward_formats::keys::{self, Category, ObjectKind};
use narward_formats::nixbase32;
use narward_formats::storage_class::StorageClass;
use narward_formats::store_path::StorePathHash;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;

/// A size or mtime column value that means: see the side table.
const IN_SIDE: u32 = u32::MAX;
/// Objects per block of key ends: each end is a u32 from its block's start.
const BLOCK_BITS: u32 = 16;
/// Keys this long or longer are kept whole in a side table, so a block's keys stay under
/// 4 GiB (S3 allows 1,024 bytes).
const LONG_KEY: usize = 1 << 16;
/// The low bits of the per-object byte: 0 no class given, 1..=7 [`StorageClass::ALL`],
/// [`CLASS_OTHER`] a name not in the list (in `class_text`).
const CLASS_MASK: u8 = 0x0f;
const CLASS_OTHER: u8 = 0x0f;
/// The ETag is the MD5 column plus a part count (in `parts`).
const F_MULTIPART: u8 = 0x10;
/// The ETag is in `etag_text` (not an MD5, or none).
const F_ETAG_TEXT: u8 = 0x20;
/// The object has a link target (in `links`).
const F_LINK: u8 = 0x40;

/// How a key is held in the key heap: its text, or packed from a fixed shape (printing
/// the packed bytes back gives exactly the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyForm {
    /// The key's bytes.
    Text,
    /// In `long_keys` (no heap bytes).
    Long,
    /// `<nix32 of 20 bytes>.narinfo`: the 20 bytes.
    Narinfo,
    /// `<nix32 of 20 bytes>.ls`: the 20 bytes.
    Ls,
    /// `debuginfo/<40 lowercase hex digits>`: the 20 bytes.
    DebugInfo,
    /// `nar/<nix32 of 32 bytes>.nar<NAR_EXTS[n]>`: the 32 bytes.
    Nar(u8),
}

/// The NAR file extensions a packed NAR key can end in (after `.nar`).
const NAR_EXTS: [&str; 7] = ["", ".xz", ".zst", ".bz2", ".lzip", ".lz4", ".br"];
/// The longest packed key printed: `nar/`, 52 digits, `.nar.lzip`.
const PRINTED_MAX: usize = 4 + 52 + 4 + 5;

impl KeyForm {
    fn code(self) -> u8 {
        match self {
            KeyForm::Text => 0,
            KeyForm::Long => 1,
            KeyForm::Narinfo => 2,
            KeyForm::Ls => 3,
            KeyForm::DebugInfo => 4,
            KeyForm::Nar(e) => 8 + e,
        }
    }

    fn of_code(c: u8) -> KeyForm {
        match c {
            1 => KeyForm::Long,
            2 => KeyForm::Narinfo,
            3 => KeyForm::Ls,
            4 => KeyForm::DebugInfo,
            8.. if usize::from(c - 8) < NAR_EXTS.len() => KeyForm::Nar(c - 8),
            _ => KeyForm::Text,
        }
    }

    /// The packed form of `key`, if it has a fixed shape: the form and its bytes.
    fn pack(key: &str) -> Option<(KeyForm, Packed)> {
        // The shapes are `keys::classify`'s (so `Key::kind` is its inverse); each packed
        // form prints back as exactly `key`.
        match keys::classify(key) {
            ObjectKind::Narinfo(h) => Some((KeyForm::Narinfo, Packed::of(&h.0))),
            ObjectKind::Listing(h) => Some((KeyForm::Ls, Packed::of(&h.0))),
            ObjectKind::Nar { file_hash, ext } => {
                let e = NAR_EXTS.iter().position(|x| *x == ext)?;
                let d = nixbase32::decode_fixed::<32>(file_hash).ok()?;
                // NAR_EXTS has 7 entries.
                Some((KeyForm::Nar(e as u8), Packed::of(&d)))
            }
            ObjectKind::DebugInfo(id) => {
                Some((KeyForm::DebugInfo, Packed::of(&parse_lower_hex::<20>(id)?)))
            }
            _ => None,
        }
    }

    /// The order of two keys' texts from their packed forms, when that needs no printing:
    /// texts, or packed keys of one shape. A nix32 text is the big-endian base-32 number
    /// of its bytes read as little-endian, and the alphabet is in ASCII order, so texts of
    /// one length order as their bytes read from the last.
    fn cmp_packed(a: (KeyForm, &[u8]), b: (KeyForm, &[u8])) -> Option<Ordering> {
        let from_last = |x: &[u8], y: &[u8]| x.iter().rev().cmp(y.iter().rev());
        Some(match (a.0, b.0) {
            (KeyForm::Text, KeyForm::Text) | (KeyForm::DebugInfo, KeyForm::DebugInfo) => {
                a.1.cmp(b.1)
            }
            (KeyForm::Narinfo, KeyForm::Narinfo) | (KeyForm::Ls, KeyForm::Ls) => {
                from_last(a.1, b.1)
            }
            (KeyForm::Nar(ea), KeyForm::Nar(eb)) => from_last(a.1, b.1)
                .then_with(|| NAR_EXTS[usize::from(ea)].cmp(NAR_EXTS[usize::from(eb)])),
            // Shapes differ (a narinfo and a NAR, say): their first 8 bytes nearly always
            // do too.
            (KeyForm::Long, _) | (_, KeyForm::Long) => return None,
            _ => match Self::prefix8(a).cmp(&Self::prefix8(b)) {
                Ordering::Equal => return None,
                order => order,
            },
        })
    }

    /// The first 8 bytes of the key's text (0 past its end), big-endian: where two texts'
    /// prefixes differ, they order as their prefixes do. Not for a long key (not in `b`:
    /// see [`Listing::prefix_of`]).
    fn prefix8((form, b): (KeyForm, &[u8])) -> u64 {
        let mut p = [0u8; 8];
        match form {
            KeyForm::Text => {
                let n = b.len().min(8);
                p[..n].copy_from_slice(&b[..n]);
            }
            KeyForm::Long => return 0,
            KeyForm::Narinfo | KeyForm::Ls => {
                for (k, c) in p.iter_mut().enumerate() {
                    *c = nixbase32::digit_from_end(b, 31 - k);
                }
            }
            KeyForm::Nar(_) => {
                p[..4].copy_from_slice(b"nar/");
                for k in 0..4 {
                    p[4 + k] = nixbase32::digit_from_end(b, 51 - k);
                }
            }
            KeyForm::DebugInfo => p.copy_from_slice(b"debuginf"),
        }
        u64::from_be_bytes(p)
    }

    /// The key of the packed bytes `b` printed into `buf`; its length.
    fn print(self, b: &[u8], buf: &mut [u8; PRINTED_MAX]) -> usize {
        let mut at = 0;
        let put = |s: &[u8], buf: &mut [u8; PRINTED_MAX], at: &mut usize| {
            buf[*at..*at + s.len()].copy_from_slice(s);
            *at += s.len();
        };
        match self {
            KeyForm::Narinfo | KeyForm::Ls => {
                nixbase32::encode_to_slice(b, &mut buf[..32]);
                at = 32;
                let ext: &[u8] = if self == KeyForm::Ls {
                    b".ls"
                } else {
                    b".narinfo"
                };
                put(ext, buf, &mut at);
            }
            KeyForm::DebugInfo => {
                put(b"debuginfo/", buf, &mut at);
                for byte in b {
                    put(&hex_pair(*byte), buf, &mut at);
                }
            }
            KeyForm::Nar(e) => {
                put(b"nar/", buf, &mut at);
                nixbase32::encode_to_slice(b, &mut buf[4..56]);
                at = 56;
                put(b".nar", buf, &mut at);
                put(NAR_EXTS[usize::from(e)].as_bytes(), buf, &mut at);
            }
            KeyForm::Text | KeyForm::Long => {}
        }
        at
    }
}

/// The packed bytes of a key (at most 32).
#[derive(Clone, Copy)]
struct Packed([u8; 32], u8);

impl Packed {
    fn of(b: &[u8]) -> Packed {
        let mut p = Packed([0; 32], b.len().min(32) as u8);
        p.0[..usize::from(p.1)].copy_from_slice(&b[..usize::from(p.1)]);
        p
    }

    fn bytes(&self) -> &[u8] {
        &self.0[..usize::from(self.1)]
    }
}

fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]
}

/// An object's key: a `&str` through [`Deref`], borrowed from the listing or printed from
/// its packed form (on the stack, no allocation).
#[derive(Clone, Copy)]
pub struct Key<'a> {
    repr: KeyRepr<'a>,
    form: KeyForm,
    /// The store-path hash of a packed narinfo or `.ls` key.
    hash: [u8; 20],
}

#[derive(Clone, Copy)]
enum KeyRepr<'a> {
    Text(&'a str),
    Printed([u8; PRINTED_MAX], u8),
}

impl<'a> Key<'a> {
    fn text(t: &'a str) -> Key<'a> {
        Key {
            repr: KeyRepr::Text(t),
            form: KeyForm::Text,
            hash: [0; 20],
        }
    }

    /// What the key names, as [`keys::classify`] of its text, without parsing a packed
    /// key again.
    pub fn kind(&self) -> ObjectKind<'_> {
        let t = self.as_str();
        match self.form {
            KeyForm::Narinfo => ObjectKind::Narinfo(StorePathHash(self.hash)),
            KeyForm::Ls => ObjectKind::Listing(StorePathHash(self.hash)),
            KeyForm::Nar(e) => ObjectKind::Nar {
                file_hash: t.get(4..56).unwrap_or(""),
                ext: NAR_EXTS[usize::from(e)],
            },
            KeyForm::DebugInfo => ObjectKind::DebugInfo(t.get(10..).unwrap_or("")),
            KeyForm::Text | KeyForm::Long => keys::classify(t),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.repr {
            KeyRepr::Text(t) => t,
            // Packed keys print as ASCII.
            KeyRepr::Printed(b, n) => std::str::from_utf8(&b[..usize::from(*n)]).unwrap_or(""),
        }
    }
}

impl Deref for Key<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Key<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key<'_> {}

impl PartialOrd for Key<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for Key<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Key<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Key<'_> {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

/// Objects sorted by key (strictly: no key twice), in columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Packed keys ([`KeyForm`]), one after another.
    keys: Vec<u8>,
    /// Per object: where its key ends, from the start of its block's keys.
    ends: Vec<u32>,
    /// Per block of 2^[`BLOCK_BITS`] objects: where its keys start.
    block_start: Vec<u64>,
    /// Per object: its [`KeyForm::code`].
    form: Vec<u8>,
    /// [`IN_SIDE`]: in `big_size`.
    size: Vec<u32>,
    /// Unix seconds; [`IN_SIDE`]: in `mtime_side`.
    mtime: Vec<u32>,
    /// Empty while let go of ([`Listing::let_md5_go`]).
    md5: Vec<[u8; 16]>,
    flags: Vec<u8>,
    long_keys: Vec<(usize, Box<str>)>,
    big_size: Vec<(usize, u64)>,
    mtime_side: Vec<(usize, Option<i64>)>,
    parts: Vec<(usize, u32)>,
    etag_text: Vec<(usize, Option<Box<str>>)>,
    class_text: Vec<(usize, Box<str>)>,
    links: Vec<(usize, Box<str>)>,
}

/// Why a record cannot be added to a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingError {
    /// The key sorts before the last key added.
    OutOfOrder { previous: String, key: String },
    /// The key is already in the listing.
    Duplicate(String),
}

impl fmt::Display for ListingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListingError::OutOfOrder { previous, key } => {
                write!(
                    f,
                    "object {key:?} listed after {previous:?}: not sorted by key"
                )
            }
            ListingError::Duplicate(k) => write!(f, "object {k:?} listed twice"),
        }
    }
}

impl std::error::Error for ListingError {}

/// An object's ETag, as stored: an MD5 (with the part count of a multipart upload) or any
/// other text. Compare it with a string with `==`; [`fmt::Display`] gives the text back.
/// An `Etag<'static>` owns its text (a plan's [`crate::plan::ObjectDecision`] holds one);
/// serialized, it is that text (as a `String` would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Etag<'a> {
    /// 32 lowercase hex digits.
    Md5([u8; 16]),
    /// 32 lowercase hex digits, `-`, the part count (decimal, no leading zero).
    Multipart([u8; 16], u32),
    /// Anything else.
    Text(Cow<'a, str>),
}

impl<'a> Etag<'a> {
    /// The stored form of `s` (the compact one whenever it gives back exactly `s`).
    pub fn parse(s: &'a str) -> Etag<'a> {
        if let Some(d) = parse_md5(s) {
            return Etag::Md5(d);
        }
        if let Some((h, n)) = s.split_once('-')
            && let (Some(d), Ok(parts)) = (parse_md5(h), n.parse::<u32>())
            && parts.to_string() == n
        {
            return Etag::Multipart(d, parts);
        }
        Etag::Text(Cow::Borrowed(s))
    }

    /// The same ETag, owning its text.
    pub fn into_owned(self) -> Etag<'static> {
        match self {
            Etag::Md5(d) => Etag::Md5(d),
            Etag::Multipart(d, n) => Etag::Multipart(d, n),
            Etag::Text(t) => Etag::Text(Cow::Owned(t.into_owned())),
        }
    }

    /// `f` of the ETag's text, formatted on the stack (no allocation).
    pub fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        // 32 hex digits, `-`, a u32 part count.
        let mut buf = [0u8; 43];
        let len = match self {
            Etag::Text(t) => return f(t),
            Etag::Md5(d) => hex32(d, &mut buf),
            Etag::Multipart(d, n) => {
                let mut at = hex32(d, &mut buf);
                buf[at] = b'-';
                at += 1;
                let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
                let mut v = *n;
                for i in (at..at + digits).rev() {
                    buf[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
                at + digits
            }
        };
        // Hex and decimal digits are ASCII.
        f(std::str::from_utf8(&buf[..len]).unwrap_or_default())
    }
}

/// Writes the 32 lowercase hex digits of `d` at the start of `buf`; returns 32.
fn hex32(d: &[u8; 16], buf: &mut [u8; 43]) -> usize {
    for (pair, b) in buf.chunks_exact_mut(2).zip(d) {
        pair.copy_from_slice(&hex_pair(*b));
    }
    32
}

impl serde::Serialize for Etag<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.with_text(|t| s.serialize_str(t))
    }
}

impl<'de> serde::Deserialize<'de> for Etag<'static> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match Etag::parse(&text) {
            Etag::Text(_) => Etag::Text(Cow::Owned(text)),
            compact => compact.into_owned(),
        })
    }
}

fn parse_md5(s: &str) -> Option<[u8; 16]> {
    parse_lower_hex(s)
}

/// `2N` lowercase hex digits as `N` bytes.
fn parse_lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut d = [0u8; N];
    // Any byte not a digit has high bits in its table value: one test at the end.
    let mut seen = 0u8;
    for (o, pair) in d.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (hex_value(pair[0]), hex_value(pair[1]));
        seen |= hi | lo;
        *o = hi << 4 | lo;
    }
    (seen & 0xf0 == 0).then_some(d)
}

/// Lowercase hex digits' values; 0xff for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    while c < 16 {
        t[b'a' as usize + c - 10] = c as u8;
        c += 1;
    }
    t
};

fn hex_value(c: u8) -> u8 {
    HEX_VALUE[usize::from(c)]
}

impl fmt::Display for Etag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|t| f.write_str(t))
    }
}

impl PartialEq<str> for Etag<'_> {
    fn eq(&self, other: &str) -> bool {
        // The stored form is canonical: equal texts have equal stored forms.
        *self == Etag::parse(other)
    }
}

impl PartialEq<&str> for Etag<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl Listing {
    pub fn new() -> Listing {
        Listing::default()
    }

    /// An empty listing with room for `objects` objects.
    pub fn with_capacity(objects: usize) -> Listing {
        Listing {
            ends: Vec::with_capacity(objects),
            form: Vec::with_capacity(objects),
            size: Vec::with_capacity(objects),
            mtime: Vec::with_capacity(objects),
            md5: Vec::with_capacity(objects),
            flags: Vec::with_capacity(objects),
            ..Listing::default()
        }
    }

    /// The listing of `records`, sorted by key first if they are not.
    ///
    /// # Errors
    /// A key listed twice.
    pub fn from_records(mut records: Vec<ObjectRecord>) -> Result<Listing, ListingError> {
        if !records.is_sorted_by(|a, b| a.key <= b.key) {
            records.sort_by(|a, b| a.key.cmp(&b.key));
        }
        let mut l = Listing::with_capacity(records.len());
        for r in records {
            l.push(r)?;
        }
        l.shrink_to_fit();
        Ok(l)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Give back spare capacity (after the last push).
    pub fn shrink_to_fit(&mut self) {
        self.keys.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.block_start.shrink_to_fit();
        self.form.shrink_to_fit();
        self.long_keys.shrink_to_fit();
        self.big_size.shrink_to_fit();
        self.mtime_side.shrink_to_fit();
        self.size.shrink_to_fit();
        self.mtime.shrink_to_fit();
        self.md5.shrink_to_fit();
        self.flags.shrink_to_fit();
        self.parts.shrink_to_fit();
        self.etag_text.shrink_to_fit();
        self.class_text.shrink_to_fit();
        self.links.shrink_to_fit();
    }

    /// Bytes held on the heap (capacity, not counting allocator overhead).
    pub fn heap_bytes(&self) -> usize {
        let side = |n: usize, each: usize| n * each;
        self.keys.capacity()
            + side(self.ends.capacity(), 4)
            + side(self.block_start.capacity(), 8)
            + self.form.capacity()
            + side(self.size.capacity(), 4)
            + side(self.mtime.capacity(), 4)
            + side(self.md5.capacity(), 16)
            + self.flags.capacity()
            + side(self.long_keys.capacity(), size_of::<(usize, Box<str>)>())
            + self.long_keys.iter().map(|(_, t)| t.len()).sum::<usize>()
            + side(self.big_size.capacity(), size_of::<(usize, u64)>())
            + side(
                self.mtime_side.capacity(),
                size_of::<(usize, Option<i64>)>(),
            )
            + side(self.parts.capacity(), size_of::<(usize, u32)>())
            + side(
                self.etag_text.capacity(),
                size_of::<(usize, Option<Box<str>>)>(),
            )
            + self
                .etag_text
                .iter()
                .map(|(_, t)| t.as_ref().map_or(0, |t| t.len()))
                .sum::<usize>()
            + side(self.class_text.capacity(), size_of::<(usize, Box<str>)>())
            + self.class_text.iter().map(|(_, t)| t.len()).sum::<usize>()
            + side(self.links.capacity(), size_of::<(usize, Box<str>)>())
            + self.links.iter().map(|(_, t)| t.len()).sum::<usize>()
    }

    /// Add `r` after the last object.
    ///
    /// # Errors
    /// A key not after the last key (out of order or a duplicate); nothing is added.
    pub fn push(&mut self, r: ObjectRecord) -> Result<(), ListingError> {
        let packed = KeyForm::pack(&r.key);
        if let Some(last) = self.len().checked_sub(1) {
            match self.cmp_to(last, packed.as_ref(), &r.key) {
                Ordering::Less => {}
                Ordering::Equal => return Err(ListingError::Duplicate(r.key)),
                Ordering::Greater => {
                    return Err(ListingError::OutOfOrder {
                        previous: self.key(last).to_string(),
                        key: r.key,
                    });
                }
            }
        }
        self.push_packed(r, packed);
        Ok(())
    }

    /// The order of object `i`'s key and the key `text` (packed as `packed`).
    fn cmp_to(&self, i: usize, packed: Option<&(KeyForm, Packed)>, text: &str) -> Ordering {
        let query = match packed {
            Some((f, p)) => (*f, p.bytes()),
            None => (KeyForm::Text, text.as_bytes()),
        };
        let at = (
            KeyForm::of_code(self.form[i]),
            &self.keys[self.key_range(i)],
        );
        KeyForm::cmp_packed(at, query).unwrap_or_else(|| self.key(i).as_str().cmp(text))
    }

    /// Add `r`, whose key packs as `packed`, after the last object, whatever its key
    /// ([`UnsortedListing`]).
    fn push_packed(&mut self, r: ObjectRecord, packed: Option<(KeyForm, Packed)>) {
        let i = self.len();
        self.push_key(i, r.key, packed);
        let size = u32::try_from(r.size).ok().filter(|&s| s != IN_SIDE);
        if size.is_none() {
            self.big_size.push((i, r.size));
        }
        self.size.push(size.unwrap_or(IN_SIDE));
        let mtime = r.last_modified.and_then(|t| u32::try_from(t).ok());
        let mtime = mtime.filter(|&t| t != IN_SIDE);
        if mtime.is_none() {
            self.mtime_side.push((i, r.last_modified));
        }
        self.mtime.push(mtime.unwrap_or(IN_SIDE));
        let mut flags = self.push_class(i, r.storage_class);
        flags |= self.push_etag(i, r.etag);
        if let Some(t) = r.link_target {
            flags |= F_LINK;
            self.links.push((i, t.into_boxed_str()));
        }
        self.flags.push(flags);
    }

    /// Appends the key of object `i`: packed, as text, or whole in `long_keys`.
    fn push_key(&mut self, i: usize, key: String, packed: Option<(KeyForm, Packed)>) {
        self.start_key(i);
        let form = match packed {
            Some((f, p)) => {
                self.keys.extend_from_slice(p.bytes());
                f
            }
            None if key.len() >= LONG_KEY => {
                self.long_keys.push((i, key.into_boxed_str()));
                KeyForm::Long
            }
            None => {
                self.keys.extend_from_slice(key.as_bytes());
                KeyForm::Text
            }
        };
        self.end_key(form.code());
    }

    /// Before the key of object `i` goes into the heap: a new block starts every 2^16.
    fn start_key(&mut self, i: usize) {
        if i & ((1 << BLOCK_BITS) - 1) == 0 {
            self.block_start.push(self.keys.len() as u64);
        }
    }

    /// After the key went into the heap, in form `code`: its end.
    fn end_key(&mut self, code: u8) {
        self.form.push(code);
        let base = self.block_start.last().copied().unwrap_or(0);
        // A block holds 2^16 keys of under 2^16 bytes each: its ends fit a u32.
        self.ends.push((self.keys.len() as u64 - base) as u32);
    }

    fn push_class(&mut self, i: usize, class: Option<String>) -> u8 {
        let Some(name) = class else { return 0 };
        match StorageClass::ALL.iter().position(|c| c.as_str() == name) {
            // ALL has 7 entries: the code fits the mask.
            Some(p) => p as u8 + 1,
            None => {
                self.class_text.push((i, name.into_boxed_str()));
                CLASS_OTHER
            }
        }
    }

    fn push_etag(&mut self, i: usize, etag: Option<String>) -> u8 {
        let parsed = etag.as_deref().map(Etag::parse);
        let (md5, flag) = match parsed {
            Some(Etag::Md5(d)) => (d, 0),
            Some(Etag::Multipart(d, n)) => {
                self.parts.push((i, n));
                (d, F_MULTIPART)
            }
            Some(Etag::Text(_)) | None => {
                self.etag_text.push((i, etag.map(String::into_boxed_str)));
                ([0; 16], F_ETAG_TEXT)
            }
        };
        self.md5.push(md5);
        flag
    }

    /// The heap bytes of object `i`'s key.
    fn key_range(&self, i: usize) -> std::ops::Range<usize> {
        let base = self.block_start[i >> BLOCK_BITS] as usize;
        let start = if i & ((1 << BLOCK_BITS) - 1) == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        };
        base + start..base + self.ends[i] as usize
    }

    fn key(&self, i: usize) -> Key<'_> {
        let b = &self.keys[self.key_range(i)];
        match KeyForm::of_code(self.form[i]) {
            // Text keys were pushed from `String`s, whole.
            KeyForm::Text => Key::text(std::str::from_utf8(b).unwrap_or("")),
            KeyForm::Long => Key::text(side(&self.long_keys, i).map_or("", |k| k)),
            form => {
                let mut buf = [0u8; PRINTED_MAX];
                let n = form.print(b, &mut buf);
                let mut hash = [0; 20];
                if let Ok(h) = <[u8; 20]>::try_from(b) {
                    hash = h;
                }
                Key {
                    repr: KeyRepr::Printed(buf, n as u8),
                    form,
                    hash,
                }
            }
        }
    }

    /// The object at `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<ObjectRef<'_>> {
        (i < self.len()).then_some(ObjectRef { l: self, i })
    }

    /// The object at `i`.
    ///
    /// # Panics
    /// `i` out of range (as slice indexing does): for indices taken from this listing.
    pub fn at(&self, i: usize) -> ObjectRef<'_> {
        assert!(i < self.len(), "object {i} of a listing of {}", self.len());
        ObjectRef { l: self, i }
    }

    /// The owned record of the object at `i`.
    pub fn to_record(&self, i: usize) -> Option<ObjectRecord> {
        self.get(i).map(|o| o.to_record())
    }

    /// The index of the object `key` (binary search).
    pub fn find(&self, key: &str) -> Option<usize> {
        let packed = KeyForm::pack(key);
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.cmp_to(mid, packed.as_ref(), key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The objects in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            l: self,
            range: 0..self.len(),
        }
    }

    /// Change the records with `f` and rebuild the listing from them (sorted again): for
    /// small listings (tests). On an error the listing is left empty.
    ///
    /// # Errors
    /// A key listed twice after `f`.
    pub fn edit(&mut self, f: impl FnOnce(&mut Vec<ObjectRecord>)) -> Result<(), ListingError> {
        let mut records = std::mem::take(self).to_records();
        f(&mut records);
        *self = Listing::from_records(records)?;
        Ok(())
    }

    /// Let go of the MD5 ETags (16 bytes per object) until [`Listing::refill_md5`]: what a
    /// command that reads them only later (`plan`, after its closure) holds meanwhile.
    /// Reading such an ETag in between is a bug, and panics.
    pub fn let_md5_go(&mut self) {
        self.md5 = Vec::new();
    }

    /// The MD5s let go of ([`Listing::let_md5_go`]), from the listing's records read again:
    /// `each` hands every record, in key order, to the function it is given.
    ///
    /// # Errors
    /// A record whose key is not the listing's at its place, or not one per object; the
    /// errors of `each`.
    pub fn refill_md5(
        &mut self,
        each: impl FnOnce(&mut dyn FnMut(EtagRecord) -> anyhow::Result<()>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut md5 = Vec::with_capacity(self.len());
        each(&mut |r: EtagRecord| {
            let i = md5.len();
            let ok = i < self.len() && {
                let form = KeyForm::of_code(self.form[i]);
                let text = || self.key(i).to_string();
                r.key.is(form, &self.keys[self.key_range(i)], text)
            };
            if !ok {
                let listed = self.get(i).map(|o| o.key().to_string());
                anyhow::bail!("object {i} read again is not the listing's ({listed:?})");
            }
            md5.push(r.md5);
            Ok(())
        })?;
        if md5.len() != self.len() {
            anyhow::bail!("{} objects read again, {} listed", md5.len(), self.len());
        }
        self.md5 = md5;
        Ok(())
    }

    /// The owned records, in key order (for small listings: tests, journals).
    pub fn to_records(&self) -> Vec<ObjectRecord> {
        self.iter().map(|o| o.to_record()).collect()
    }
}

/// Builds a [`Listing`] from records in any order (the rows of an S3 Inventory report,
/// file after file), as compactly as the listing itself: no `Vec<ObjectRecord>` of
/// everything.
#[derive(Debug, Default)]
pub struct UnsortedListing {
    l: Listing,
    out_of_order: bool,
}

impl UnsortedListing {
    pub fn new() -> UnsortedListing {
        UnsortedListing::default()
    }

    pub fn len(&self) -> usize {
        self.l.len()
    }

    pub fn is_empty(&self) -> bool {
        self.l.is_empty()
    }

    pub fn push(&mut self, r: ObjectRecord) {
        let packed = KeyForm::pack(&r.key);
        if let Some(last) = self.l.len().checked_sub(1)
            && self.l.cmp_to(last, packed.as_ref(), &r.key).is_ge()
        {
            self.out_of_order = true;
        }
        self.l.push_packed(r, packed);
    }

    /// The listing, sorted by key; of records with the same key the first pushed is kept.
    /// Sorted column by column through a permutation, so the peak is the listing plus its
    /// keys once more and 16 bytes per object, never a second whole listing.
    pub fn finish(self) -> Listing {
        let mut l = self.l;
        if self.out_of_order {
            // Each object's first 8 key bytes once, so most comparisons are of two u64s.
            let mut by_prefix: Vec<(u64, usize)> =
                (0..l.len()).map(|i| (l.prefix_of(i), i)).collect();
            // Stable: equal keys stay in push order, so the first is kept.
            by_prefix.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| l.key_cmp(a.1, b.1)));
            let mut order: Vec<usize> = by_prefix.into_iter().map(|(_, i)| i).collect();
            order.dedup_by(|a, b| l.key_cmp(*a, *b).is_eq());
            l = l.permuted(&order);
        }
        l.shrink_to_fit();
        l
    }
}

impl Listing {
    /// The objects at `order` (indices into this listing, each at most once), in that
    /// order; one column at a time, each old column dropped as its new one is made.
    fn permuted(self, order: &[usize]) -> Listing {
        let mut keyed = Listing {
            keys: Vec::with_capacity(order.iter().map(|&i| self.key_range(i).len()).sum()),
            ends: Vec::with_capacity(order.len()),
            form: Vec::with_capacity(order.len()),
            ..Listing::default()
        };
        for (new, &i) in order.iter().enumerate() {
            keyed.start_key(new);
            keyed.keys.extend_from_slice(&self.keys[self.key_range(i)]);
            keyed.end_key(self.form[i]);
        }
        let Listing {
            size,
            mtime,
            md5,
            flags,
            long_keys,
            big_size,
            mtime_side,
            parts,
            etag_text,
            class_text,
            links,
            ..
        } = self;
        // Where each old object went (usize::MAX: a dropped repeat); only the side tables
        // need it.
        let sparse = [
            long_keys.is_empty(),
            big_size.is_empty(),
            mtime_side.is_empty(),
            parts.is_empty(),
            etag_text.is_empty(),
            class_text.is_empty(),
            links.is_empty(),
        ]
        .contains(&false);
        let new_at = sparse.then(|| {
            let mut at = vec![usize::MAX; size.len()];
            for (new, &old) in order.iter().enumerate() {
                at[old] = new;
            }
            at
        });
        let at = new_at.as_deref();
        Listing {
            size: pick(size, order),
            mtime: pick(mtime, order),
            md5: pick(md5, order),
            flags: pick(flags, order),
            long_keys: remap_side(long_keys, at),
            big_size: remap_side(big_size, at),
            mtime_side: remap_side(mtime_side, at),
            parts: remap_side(parts, at),
            etag_text: remap_side(etag_text, at),
            class_text: remap_side(class_text, at),
            links: remap_side(links, at),
            ..keyed
        }
    }

    /// [`KeyForm::prefix8`] of object `i`'s key.
    fn prefix_of(&self, i: usize) -> u64 {
        let form = KeyForm::of_code(self.form[i]);
        match form {
            KeyForm::Long => {
                let k = self.key(i);
                let b = k.as_bytes();
                KeyForm::prefix8((KeyForm::Text, &b[..b.len().min(8)]))
            }
            _ => KeyForm::prefix8((form, &self.keys[self.key_range(i)])),
        }
    }

    /// The order of the keys of objects `a` and `b` (as text).
    fn key_cmp(&self, a: usize, b: usize) -> Ordering {
        let ka = (
            KeyForm::of_code(self.form[a]),
            &self.keys[self.key_range(a)],
        );
        let kb = (
            KeyForm::of_code(self.form[b]),
            &self.keys[self.key_range(b)],
        );
        KeyForm::cmp_packed(ka, kb)
            .unwrap_or_else(|| self.key(a).as_str().cmp(self.key(b).as_str()))
    }
}

/// `v[order[0]], v[order[1]], …` (then `v` is dropped).
fn pick<T: Copy>(v: Vec<T>, order: &[usize]) -> Vec<T> {
    order.iter().map(|&i| v[i]).collect()
}

/// A side table's entries moved to their objects' new places (`new_at`), sorted by them;
/// the entries of dropped objects go.
fn remap_side<T>(t: Vec<(usize, T)>, new_at: Option<&[usize]>) -> Vec<(usize, T)> {
    let Some(new_at) = new_at else { return t };
    let mut out: Vec<(usize, T)> = t
        .into_iter()
        .filter_map(|(i, v)| Some((*new_at.get(i).filter(|&&n| n != usize::MAX)?, v)))
        .collect();
    out.sort_by_key(|e| e.0);
    out
}

fn side<T>(table: &[(usize, T)], i: usize) -> Option<&T> {
    table
        .binary_search_by_key(&i, |e| e.0)
        .ok()
        .map(|at| &table[at].1)
}

impl TryFrom<Vec<ObjectRecord>> for Listing {
    type Error = ListingError;

    fn try_from(records: Vec<ObjectRecord>) -> Result<Listing, ListingError> {
        Listing::from_records(records)
    }
}

impl FromIterator<ObjectRecord> for Result<Listing, ListingError> {
    fn from_iter<I: IntoIterator<Item = ObjectRecord>>(iter: I) -> Self {
        Listing::from_records(iter.into_iter().collect())
    }
}

/// One object of a [`Listing`]: the accessors of [`ObjectRecord`], borrowed.
#[derive(Clone, Copy)]
pub struct ObjectRef<'a> {
    l: &'a Listing,
    i: usize,
}

impl fmt::Debug for ObjectRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_record().fmt(f)
    }
}

impl<'a> ObjectRef<'a> {
    /// Its position in the listing.
    pub fn index(self) -> usize {
        self.i
    }

    pub fn key(self) -> Key<'a> {
        self.l.key(self.i)
    }

    pub fn size(self) -> u64 {
        match self.l.size[self.i] {
            IN_SIDE => side(&self.l.big_size, self.i)
                .copied()
                .unwrap_or(u64::from(IN_SIDE)),
            s => u64::from(s),
        }
    }

    fn flags(self) -> u8 {
        self.l.flags[self.i]
    }

    /// As [`ObjectRecord::etag`].
    pub fn etag(self) -> Option<Etag<'a>> {
        let f = self.flags();
        if f & F_ETAG_TEXT != 0 {
            return side(&self.l.etag_text, self.i)?
                .as_deref()
                .map(|t| Etag::Text(Cow::Borrowed(t)));
        }
        let Some(&d) = self.l.md5.get(self.i) else {
            panic!(
                "internal: the ETag of object {} read while the listing's MD5s are let go",
                self.i
            );
        };
        if f & F_MULTIPART != 0 {
            side(&self.l.parts, self.i).map(|&n| Etag::Multipart(d, n))
        } else {
            Some(Etag::Md5(d))
        }
    }

    /// The ETag's text, as [`ObjectRecord::etag`] holds it.
    pub fn etag_string(self) -> Option<String> {
        self.etag().map(|e| e.to_string())
    }

    /// Whether the ETag is `etag` (both none, or the same text).
    pub fn etag_is(self, etag: Option<&str>) -> bool {
        match (self.etag(), etag) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Unix seconds.
    pub fn last_modified(self) -> Option<i64> {
        match self.l.mtime[self.i] {
            IN_SIDE => side(&self.l.mtime_side, self.i).copied().flatten(),
            t => Some(i64::from(t)),
        }
    }

    /// The class as listed (`None`: not given, S3's STANDARD), as
    /// [`ObjectRecord::storage_class`].
    pub fn listed_storage_class(self) -> Option<&'a str> {
        match self.flags() & CLASS_MASK {
            0 => None,
            CLASS_OTHER => side(&self.l.class_text, self.i).map(|s| &**s),
            c => StorageClass::ALL
                .get(usize::from(c) - 1)
                .map(|c| c.as_str()),
        }
    }

    /// The storage class, with S3's implicit default made explicit.
    pub fn storage_class(self) -> &'a str {
        self.listed_storage_class().unwrap_or("STANDARD")
    }

    /// Whether a plain GET cannot fetch this object (it is in an archive tier).
    pub fn is_archived(self) -> bool {
        crate::model::is_archive_class(self.storage_class())
    }

    pub fn category(self) -> Category {
        match KeyForm::of_code(self.l.form[self.i]) {
            KeyForm::Narinfo => Category::Narinfo,
            KeyForm::Ls => Category::Listing,
            KeyForm::Nar(_) => Category::Nar,
            KeyForm::DebugInfo => Category::DebugInfo,
            KeyForm::Text | KeyForm::Long => keys::classify(&self.key()).category(),
        }
    }

    /// Whether the key is `k`, compared packed (a key is stored packed exactly when its
    /// text has a fixed shape, so equal texts have equal stored forms).
    pub fn key_is(self, k: &str) -> bool {
        let form = KeyForm::of_code(self.l.form[self.i]);
        let stored = &self.l.keys[self.l.key_range(self.i)];
        match (KeyForm::pack(k), form) {
            (Some((f, p)), _) => form == f && stored == p.bytes(),
            (None, KeyForm::Text) => stored == k.as_bytes(),
            (None, KeyForm::Long) => self.key() == k,
            (None, _) => false,
        }
    }

    /// The store-path hash of a `<hash>.narinfo` key (as [`keys::classify`] says), read
    /// from the packed key (every key `classify` takes for a narinfo's is packed).
    pub fn narinfo_hash(self) -> Option<StorePathHash> {
        match KeyForm::of_code(self.l.form[self.i]) {
            KeyForm::Narinfo => <[u8; 20]>::try_from(&self.l.keys[self.l.key_range(self.i)])
                .ok()
                .map(StorePathHash),
            _ => None,
        }
    }

    /// As [`ObjectRecord::link_target`].
    pub fn link_target(self) -> Option<&'a str> {
        if self.flags() & F_LINK == 0 {
            return None;
        }
        side(&self.l.links, self.i).map(|s| &**s)
    }

    /// The owned record, exactly as pushed.
    pub fn to_record(self) -> ObjectRecord {
        ObjectRecord {
            key: self.key().to_string(),
            size: self.size(),
            etag: self.etag_string(),
            last_modified: self.last_modified(),
            storage_class: self.listed_storage_class().map(str::to_string),
            link_target: self.link_target().map(str::to_string),
        }
    }
}

/// The objects of a [`Listing`] in key order.
#[derive(Clone)]
pub struct Iter<'a> {
    l: &'a Listing,
    range: std::ops::Range<usize>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ObjectRef<'a>;

    fn next(&mut self) -> Option<ObjectRef<'a>> {
        self.range.next().map(|i| ObjectRef { l: self.l, i })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }

    fn nth(&mut self, n: usize) -> Option<ObjectRef<'a>> {
        self.range.nth(n).map(|i| ObjectRef { l: self.l, i })
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.range.next_back().map(|i| ObjectRef { l: self.l, i })
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Listing {
    type Item = ObjectRef<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

mod again;
pub use again::EtagRecord;

#[cfg(test)]
mod tests;
