//! [`CacheGraph`]: the checked view over the columns.

use super::{Csr, Parts, Status, check, flag, key_order};
use anyhow::Result;
use narward_formats::hash::Sha256;
use narward_formats::narinfo::NarInfo;
use narward_formats::store_path::{STORE_DIR, StorePath, StorePathHash};

/// One compact, parsed view of a cache: per path its hash, narinfo fields, status, NAR
/// object, references and referrers (CSR over path ids), and the extra NARs an unknown or
/// changed narinfo names. Borrowed from a memory map of the index columns (or from columns
/// built in memory); ids are positions in key order.
#[derive(Debug, Clone)]
pub struct CacheGraph<'a> {
    p: Parts<'a>,
    /// `buckets[b]..buckets[b + 1]`: the ids whose hash's top `bits` bits of key order
    /// are `b` (about four paths a bucket: a lookup reads one or two cache lines of
    /// hashes instead of searching a few hundred).
    buckets: Vec<u32>,
    bits: u32,
}

impl<'a> CacheGraph<'a> {
    /// Check `p` (every length, offset, id, status and string) and index its hashes.
    ///
    /// # Errors
    /// Inconsistent columns, naming the file.
    pub fn new(p: Parts<'a>) -> Result<CacheGraph<'a>> {
        Self::new_releasing(p, &mut |_: &str| {})
    }

    /// [`CacheGraph::new`], telling `at` which stretches of which column files the checks
    /// are done with as they read them ([`super::Checked`]):
    /// [`crate::index::columns::Mapped::graph`] lets those pages go then, so the checks
    /// hold a few stretches of one file at a time, never a whole column.
    ///
    /// # Errors
    /// As [`CacheGraph::new`].
    pub fn new_releasing(p: Parts<'a>, at: &mut dyn super::Checked) -> Result<CacheGraph<'a>> {
        check(&p, at)?;
        let bits = bucket_bits(p.hash.len());
        let mut buckets = vec![0u32; (1 << bits) + 1];
        for h in p.hash {
            buckets[bucket(h, bits) + 1] += 1;
        }
        for i in 0..1 << bits {
            buckets[i + 1] += buckets[i];
        }
        Ok(CacheGraph { p, buckets, bits })
    }

    pub fn len(&self) -> usize {
        self.p.hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.p.hash.is_empty()
    }

    pub fn edge_count(&self) -> usize {
        self.p.refs.ids.len()
    }

    /// Objects in the listing the NAR object ids index.
    pub fn objects(&self) -> u64 {
        self.p.header.objects
    }

    /// References to hashes that are no path of the cache.
    pub fn missing_refs(&self) -> u64 {
        self.p.header.missing_refs
    }

    /// Narinfos that do not parse or could not be fetched.
    pub fn unparseable(&self) -> u64 {
        self.p.header.unparseable
    }

    /// The id of the path with this hash.
    pub fn id(&self, h: &StorePathHash) -> Option<u32> {
        let b = bucket(&h.0, self.bits);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let slice = self.p.hash.get(lo..hi)?;
        slice
            .binary_search_by(|x| key_order(x, &h.0))
            .ok()
            .map(|i| (lo + i) as u32)
    }

    pub fn hash(&self, id: u32) -> StorePathHash {
        StorePathHash(self.p.hash[id as usize])
    }

    pub fn status(&self, id: u32) -> Status {
        Status::from_u8(self.p.status[id as usize]).unwrap_or(Status::NotIndexed)
    }

    fn flag(&self, id: u32, f: u8) -> bool {
        self.p.flags[id as usize] & f != 0
    }

    /// Whether the path's NAR is unknown: any orphan NAR might be it.
    pub fn nar_unknown(&self, id: u32) -> bool {
        self.flag(id, flag::NAR_UNKNOWN)
    }

    pub fn ca(&self, id: u32) -> bool {
        self.flag(id, flag::CA)
    }

    /// The name after `<hash>-` (empty when unknown or when StorePath names another path).
    pub fn name(&self, id: u32) -> &'a str {
        self.p.name.get(id)
    }

    /// The `URL:` field as written (empty when unknown).
    pub fn url(&self, id: u32) -> &'a str {
        self.p.url.get(id)
    }

    pub fn deriver(&self, id: u32) -> Option<&'a str> {
        self.flag(id, flag::DERIVER).then(|| self.p.deriver.get(id))
    }

    /// The `Sig:` values, in order.
    pub fn sigs(&self, id: u32) -> impl Iterator<Item = &'a str> {
        self.p.sigs.get(id).split('\n').filter(|s| !s.is_empty())
    }

    /// Why the path is unknown or doubtful (empty for a parsed one).
    pub fn why(&self, id: u32) -> &'a str {
        self.p.why.get(id)
    }

    /// Base names (`<hash>-<name>`) of its references that name no path of the cache
    /// (closure holes), as its narinfo wrote them.
    pub fn holes(&self, id: u32) -> impl Iterator<Item = &'a str> {
        self.p.holes.get(id).split('\n').filter(|s| !s.is_empty())
    }

    /// [`CacheGraph::holes`] as the column holds them: newline-separated.
    pub fn holes_text(&self, id: u32) -> &'a str {
        self.p.holes.get(id)
    }

    /// `/nix/store/<hash>-<name>` of a parsed path (the name may be empty when unknown).
    pub fn full_path(&self, id: u32) -> String {
        format!("{STORE_DIR}/{}-{}", self.hash(id), self.name(id))
    }

    /// The narinfo of a parsed path printed back from the columns, in Nix's writer order:
    /// its fields, and its references (the referenced paths' names, then the holes, sorted
    /// and deduplicated as Nix writes them). `None` for a path whose narinfo did not parse
    /// or whose `Compression:` value has no code. Its text equals the narinfo's unless the
    /// narinfo is a quirk, whose text `index` keeps ([`super::quirks`]); so its
    /// [`NarInfo::fingerprint`] and [`NarInfo::verify`] are Nix's for every other path.
    pub fn narinfo(&self, id: u32) -> Option<NarInfo<'a>> {
        let mut ni = self.narinfo_fields(id)?;
        let mut refs: Vec<StorePath<'a>> = self
            .refs(id)
            .iter()
            .map(|&r| StorePath {
                hash: self.hash(r),
                name: self.name(r),
            })
            .chain(
                self.holes(id)
                    .filter_map(|b| StorePath::parse_base_name(b).ok()),
            )
            .collect();
        refs.sort_unstable();
        refs.dedup();
        ni.references = refs;
        Some(ni)
    }

    /// [`CacheGraph::narinfo`] without its references (`refs` and `holes` hold them).
    pub fn narinfo_fields(&self, id: u32) -> Option<NarInfo<'a>> {
        if !self.status(id).parsed() {
            return None;
        }
        let compression = super::compression_name(self.compression(id))?;
        let me = StorePath {
            hash: self.hash(id),
            name: self.name(id),
        };
        let mut ni = NarInfo::new(
            me,
            self.url(id),
            Sha256(self.nar_hash(id)),
            self.nar_size(id),
        );
        ni.compression = compression;
        ni.file_hash = self.file_hash(id).map(Sha256);
        ni.file_size = self.file_size(id);
        ni.deriver = self.deriver(id);
        ni.sigs = self.sigs(id).collect();
        ni.ca = self.ca(id).then(|| self.p.ca.get(id));
        Some(ni)
    }

    /// The `FileHash:` value, if the narinfo has one.
    pub fn file_hash(&self, id: u32) -> Option<[u8; 32]> {
        self.flag(id, flag::FILE_HASH)
            .then(|| self.p.file_hash[id as usize])
    }

    pub fn nar_hash(&self, id: u32) -> [u8; 32] {
        self.p.nar_hash[id as usize]
    }

    pub fn nar_size(&self, id: u32) -> u64 {
        self.p.nar_size[id as usize]
    }

    pub fn file_size(&self, id: u32) -> Option<u64> {
        self.flag(id, flag::FILE_SIZE)
            .then(|| self.p.file_size[id as usize])
    }

    /// The `Compression:` code ([`super::compression_code`]).
    pub fn compression(&self, id: u32) -> u8 {
        self.p.compression[id as usize]
    }

    /// Index of its NAR object in the listing, if listed.
    pub fn nar_object(&self, id: u32) -> Option<u32> {
        let o = self.p.nar_object[id as usize];
        (o != crate::graph::NONE).then_some(o)
    }

    /// Ids of the paths it references (sorted, no duplicates; for an unknown path, what its
    /// text seems to name; plus what earlier texts named).
    pub fn refs(&self, id: u32) -> &'a [u32] {
        self.p.refs.row(id)
    }

    /// Ids of the paths that reference it.
    pub fn referrers(&self, id: u32) -> &'a [u32] {
        self.p.referrers.row(id)
    }

    /// Listed NAR objects it uses beyond [`CacheGraph::nar_object`] (named by an unknown or
    /// earlier text).
    pub fn extra_nars(&self, id: u32) -> &'a [u32] {
        self.p.extra_nars.row(id)
    }

    /// The reference CSR.
    pub fn refs_csr(&self) -> Csr<'a> {
        self.p.refs
    }

    /// Closure of `seeds` under references (see [`crate::graph::closure_of`]).
    pub fn closure(&self, seeds: &[u32]) -> Vec<u32> {
        crate::graph::closure_of(self.len(), |i| self.refs(i), seeds)
    }

    /// Bytes of the columns the planning graph reads (hashes, refs CSR, bucket table).
    pub fn graph_bytes(&self) -> usize {
        self.p.hash.len() * 20
            + self.p.refs.off.len() * 8
            + self.p.refs.ids.len() * 4
            + self.buckets.len() * 4
    }
}

/// Bits of key order the bucket table indexes for `n` paths: about a bucket per four
/// paths, at least 2^12 buckets and at most 2^26 (256 MiB at 275 M paths: under 1 B/path).
pub(super) fn bucket_bits(n: usize) -> u32 {
    (usize::BITS - (n / 4).leading_zeros()).clamp(12, 26)
}

/// The bucket of `h`: the top `bits` bits of key order, which is the order of the bytes
/// read as one little-endian number ([`super::key_order`]), so the top bits are those of
/// its last four bytes.
pub(super) fn bucket(h: &[u8; 20], bits: u32) -> usize {
    let top = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    (top >> (32 - bits)) as usize
}
