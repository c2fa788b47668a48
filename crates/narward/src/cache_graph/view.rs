//! [`CacheGraph`]: the checked view over the columns.

use super::{Csr, Parts, Status, check, flag, key_order};
use anyhow::Result;
use narward_formats::narinfo::{SigStatus, verify_sigs};
use narward_formats::nixbase32;
use narward_formats::signature::PublicKey;
use narward_formats::store_path::{STORE_DIR, StorePathHash};

/// One compact, parsed view of a cache: per path its hash, narinfo fields, status, NAR
/// object, references and referrers (CSR over path ids), and the extra NARs an unknown or
/// changed narinfo names. Borrowed from a memory map of the index columns (or from columns
/// built in memory); ids are positions in key order.
#[derive(Debug, Clone)]
pub struct CacheGraph<'a> {
    p: Parts<'a>,
    /// `buckets[b]..buckets[b + 1]`: the ids whose hash's last two bytes (the top of key
    /// order) are `b`.
    buckets: Vec<u32>,
}

impl<'a> CacheGraph<'a> {
    /// Check `p` (every length, offset, id, status and string) and index its hashes.
    ///
    /// # Errors
    /// Inconsistent columns, naming the file.
    pub fn new(p: Parts<'a>) -> Result<CacheGraph<'a>> {
        check(&p)?;
        let mut buckets = vec![0u32; (1 << 16) + 1];
        for h in p.hash {
            buckets[bucket(h) + 1] += 1;
        }
        for i in 0..1 << 16 {
            buckets[i + 1] += buckets[i];
        }
        Ok(CacheGraph { p, buckets })
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
        let b = bucket(&h.0);
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

    /// `/nix/store/<hash>-<name>` of a parsed path (the name may be empty when unknown).
    pub fn full_path(&self, id: u32) -> String {
        format!("{STORE_DIR}/{}-{}", self.hash(id), self.name(id))
    }

    /// What Nix signs ([`NarInfo::fingerprint`]) rebuilt from the columns: its path, NAR
    /// hash and size, and its references (the referenced paths' names and the holes),
    /// sorted and deduplicated. `None` for a path whose narinfo did not parse. It equals
    /// the text's fingerprint unless the narinfo is a quirk (`index` keeps the text of
    /// those: [`super::quirks`]).
    ///
    /// [`NarInfo::fingerprint`]: narward_formats::narinfo::NarInfo::fingerprint
    pub fn fingerprint(&self, id: u32) -> Option<String> {
        if !self.status(id).parsed() {
            return None;
        }
        let mut refs: Vec<String> = self
            .refs(id)
            .iter()
            .map(|&r| self.full_path(r))
            .chain(self.holes(id).map(|b| format!("{STORE_DIR}/{b}")))
            .collect();
        refs.sort_unstable();
        refs.dedup();
        let mut s = format!("1;{};sha256:", self.full_path(id));
        nixbase32::encode_into(&self.nar_hash(id), &mut s);
        s.push_str(&format!(";{};", self.nar_size(id)));
        s.push_str(&refs.join(","));
        Some(s)
    }

    /// Nix's signature verdict ([`verify_sigs`]) from the columns. `None` when unparsed.
    pub fn sig_status(&self, id: u32, trusted: &[PublicKey]) -> Option<SigStatus> {
        if !self.status(id).parsed() {
            return None;
        }
        let fp = || self.fingerprint(id).unwrap_or_default();
        Some(verify_sigs(self.sigs(id), fp, trusted))
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

fn bucket(h: &[u8; 20]) -> usize {
    (usize::from(h[19]) << 8) | usize::from(h[18])
}
