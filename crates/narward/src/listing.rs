//! The object listing in memory, compactly: the main per-object memory cost of every
//! command that reads the index.
//!
//! A [`Listing`] holds the same objects as a sorted `Vec<ObjectRecord>` would, in columns:
//! the keys in one byte heap with end offsets, sizes, mtimes, the ETag as 16 bytes when it
//! is an MD5 (32 lowercase hex digits, optionally with a multipart `-N` suffix) and the
//! storage class as one byte ([`narward_formats::storage_class`]). Whatever does not fit
//! those (an ETag of another shape or none, a class not in the list, a `file://` link
//! target, an mtime equal to the sentinel) goes to sparse side tables, so nothing is lost:
//! [`ObjectRef::to_record`] gives back the exact record pushed. About key length + 41 bytes
//! per object.

use crate::model::ObjectRecord;
use narward_formats::keys::{self, Category};
use narward_formats::storage_class::StorageClass;
use std::borrow::Cow;
use std::fmt;

/// `mtime` of an object without a last-modified time (an object whose time is this value
/// has [`F_MTIME_MIN`] set).
const NO_MTIME: i64 = i64::MIN;
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
/// The last-modified time is `Some(i64::MIN)`, not `None`.
const F_MTIME_MIN: u8 = 0x80;

/// Objects sorted by key (strictly: no key twice), in columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    keys: String,
    ends: Vec<u64>,
    size: Vec<u64>,
    mtime: Vec<i64>,
    md5: Vec<[u8; 16]>,
    flags: Vec<u8>,
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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in d.iter().enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
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
    let b = s.as_bytes();
    if b.len() != 32 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut d = [0u8; 16];
    hex::decode_to_slice(b, &mut d).ok()?;
    Some(d)
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

    /// Bytes of the keys, all together.
    pub fn key_bytes(&self) -> usize {
        self.keys.len()
    }

    /// Give back spare capacity (after the last push).
    pub fn shrink_to_fit(&mut self) {
        self.keys.shrink_to_fit();
        self.ends.shrink_to_fit();
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
            + side(self.ends.capacity(), 8)
            + side(self.size.capacity(), 8)
            + side(self.mtime.capacity(), 8)
            + side(self.md5.capacity(), 16)
            + self.flags.capacity()
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
        if let Some(last) = self.last_key() {
            match last.cmp(r.key.as_str()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Err(ListingError::Duplicate(r.key)),
                std::cmp::Ordering::Greater => {
                    return Err(ListingError::OutOfOrder {
                        previous: last.to_string(),
                        key: r.key,
                    });
                }
            }
        }
        self.push_unchecked(r);
        Ok(())
    }

    /// Add `r` after the last object, whatever its key ([`UnsortedListing`]).
    fn push_unchecked(&mut self, r: ObjectRecord) {
        let i = self.len();
        self.keys.push_str(&r.key);
        self.ends.push(self.keys.len() as u64);
        self.size.push(r.size);
        let mut flags = self.push_class(i, r.storage_class);
        flags |= self.push_etag(i, r.etag);
        if r.last_modified == Some(NO_MTIME) {
            flags |= F_MTIME_MIN;
        }
        self.mtime.push(r.last_modified.unwrap_or(NO_MTIME));
        if let Some(t) = r.link_target {
            flags |= F_LINK;
            self.links.push((i, t.into_boxed_str()));
        }
        self.flags.push(flags);
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

    fn last_key(&self) -> Option<&str> {
        self.len().checked_sub(1).map(|i| self.key(i))
    }

    fn key(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.keys[start..self.ends[i] as usize]
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
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
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
        if self.l.last_key().is_some_and(|k| k >= r.key.as_str()) {
            self.out_of_order = true;
        }
        self.l.push_unchecked(r);
    }

    /// The listing, sorted by key; of records with the same key the first pushed is kept.
    /// Sorted column by column through a permutation, so the peak is the listing plus its
    /// keys once more and 8 to 16 bytes per object, never a second whole listing.
    pub fn finish(self) -> Listing {
        let mut l = self.l;
        if self.out_of_order {
            let mut order: Vec<usize> = (0..l.len()).collect();
            // Stable: equal keys stay in push order, so the first is kept.
            order.sort_by(|&a, &b| l.key(a).cmp(l.key(b)));
            order.dedup_by(|a, b| l.key(*a) == l.key(*b));
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
        let mut keys = String::with_capacity(order.iter().map(|&i| self.key(i).len()).sum());
        let mut ends = Vec::with_capacity(order.len());
        for &i in order {
            keys.push_str(self.key(i));
            ends.push(keys.len() as u64);
        }
        let Listing {
            keys: old_keys,
            ends: old_ends,
            size,
            mtime,
            md5,
            flags,
            parts,
            etag_text,
            class_text,
            links,
        } = self;
        drop((old_keys, old_ends));
        // Where each old object went (u32::MAX: a dropped repeat); only the side tables
        // need it.
        let sparse = !parts.is_empty()
            || !etag_text.is_empty()
            || !class_text.is_empty()
            || !links.is_empty();
        let new_at = sparse.then(|| {
            let mut at = vec![usize::MAX; size.len()];
            for (new, &old) in order.iter().enumerate() {
                at[old] = new;
            }
            at
        });
        Listing {
            keys,
            ends,
            size: pick(size, order),
            mtime: pick(mtime, order),
            md5: pick(md5, order),
            flags: pick(flags, order),
            parts: remap_side(parts, new_at.as_deref()),
            etag_text: remap_side(etag_text, new_at.as_deref()),
            class_text: remap_side(class_text, new_at.as_deref()),
            links: remap_side(links, new_at.as_deref()),
        }
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

    pub fn key(self) -> &'a str {
        self.l.key(self.i)
    }

    pub fn size(self) -> u64 {
        self.l.size[self.i]
    }

    fn flags(self) -> u8 {
        self.l.flags[self.i]
    }

    /// As [`ObjectRecord::etag`].
    pub fn etag(self) -> Option<Etag<'a>> {
        let f = self.flags();
        let d = self.l.md5[self.i];
        if f & F_ETAG_TEXT != 0 {
            side(&self.l.etag_text, self.i)?
                .as_deref()
                .map(|t| Etag::Text(Cow::Borrowed(t)))
        } else if f & F_MULTIPART != 0 {
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
        let t = self.l.mtime[self.i];
        (t != NO_MTIME || self.flags() & F_MTIME_MIN != 0).then_some(t)
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
        keys::classify(self.key()).category()
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

#[cfg(test)]
mod tests;
