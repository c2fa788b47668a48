//! The narinfos whose text the columns cannot stand in for (the *quirks*): `index` keeps
//! their exact text in a side file (`quirks.bin.zst`) so audit still judges them from the
//! text. Every other narinfo's signature fingerprint is rebuilt exactly from the columns
//! ([`CacheGraph::fingerprint`]); the columns never hold a text's `FileHash` or field
//! order, so "exact" means exactly what Nix signs and checks, not the bytes.

use super::CacheGraph;
use crate::model::FetchedRecord;
use narward_formats::keys::{self, ObjectKind};

/// Whether `rec` is a quirk of `g`: its text changed since an earlier index (audit shows
/// how), or it parses but the columns do not give back its fingerprint (a reference
/// whose name differs from the referenced path's own, a StorePath naming another path,
/// references hidden in other fields or taken from earlier texts). A narinfo that does
/// not parse is no quirk: the columns hold why and what it seems to name.
pub fn is_quirk(g: &CacheGraph<'_>, rec: &FetchedRecord) -> bool {
    if rec.changed() {
        return true;
    }
    let ObjectKind::Narinfo(h) = keys::classify(&rec.key) else {
        return false;
    };
    let Some(id) = g.id(&h) else {
        return false;
    };
    match rec.parse() {
        Ok(ni) => g.fingerprint(id).as_deref() != Some(ni.fingerprint().as_str()),
        Err(_) => false,
    }
}

/// The quirks among `records`, in their order (key order when they are).
pub fn collect<'r>(
    g: &CacheGraph<'_>,
    records: impl IntoIterator<Item = &'r FetchedRecord>,
) -> Vec<FetchedRecord> {
    records
        .into_iter()
        .filter(|r| is_quirk(g, r))
        .cloned()
        .collect()
}
