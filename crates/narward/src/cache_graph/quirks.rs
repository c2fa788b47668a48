//! The narinfos whose text the columns cannot give back (the *quirks*): `index` keeps
//! their exact text in a side file (`quirks.bin.zst`, checksummed like the other index
//! files). Every other narinfo that parses prints back byte for byte from the columns
//! ([`CacheGraph::narinfo`]), so its signature is verified from the columns as Nix
//! verifies it from the parsed values, and the readers that scan a narinfo's text
//! leniently (apply's re-check, finalize) read the same bytes ([`Snapshot::text`]).
//!
//! [`Snapshot::text`]: super::Snapshot::text

use super::CacheGraph;
use crate::model::FetchedRecord;
use narward_formats::keys::{self, ObjectKind};
use narward_formats::narinfo::NarInfo;

/// Whether `rec` is a quirk of `g`: it carries earlier texts (it changed since an earlier
/// index: audit shows how, plans keep what every version names), or it parses but the columns do not print it back byte for byte (fields out of
/// Nix's order, unsorted references, old `System:` lines, a reference whose name differs
/// from the referenced path's own, a StorePath naming another path, references hidden in
/// other fields or taken from earlier texts, an unusual `Compression:`), or it does not
/// parse but has a text (the columns hold only what it names in this cache; apply's
/// re-check and finalize scan the text for names outside it). A narinfo that could not be
/// fetched has no text.
pub fn is_quirk(g: &CacheGraph<'_>, rec: &FetchedRecord) -> bool {
    // Earlier texts (even of a narinfo that could not be fetched this time) are kept.
    if !rec.earlier.is_empty() {
        return true;
    }
    let ObjectKind::Narinfo(h) = keys::classify(&rec.key) else {
        return false;
    };
    let Some(id) = g.id(&h) else {
        return false;
    };
    match rec.parse() {
        Ok(_) => g.narinfo(id).map(|n| n.to_string().into_bytes()) != Some(rec.text.clone()),
        Err(_) => !rec.text.is_empty(),
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

/// The quirk of the narinfo with this key in `quirks` (sorted by key).
pub fn find<'q>(quirks: &'q [FetchedRecord], key: &str) -> Option<&'q FetchedRecord> {
    quirks
        .binary_search_by(|r| r.key.as_str().cmp(key))
        .ok()
        .map(|i| &quirks[i])
}

/// The quirk of path `id`'s narinfo in `quirks` (sorted by key), found without building
/// its key (`<hash>.narinfo`): what every per-path lookup uses.
pub fn of<'q>(
    g: &CacheGraph<'_>,
    quirks: &'q [FetchedRecord],
    id: u32,
) -> Option<&'q FetchedRecord> {
    if quirks.is_empty() {
        return None;
    }
    g.hash(id).with_nix32(|h| {
        let key = h.bytes().chain(*b".narinfo");
        quirks
            .binary_search_by(|r| r.key.bytes().cmp(key.clone()))
            .ok()
            .map(|i| &quirks[i])
    })
}

/// Path `id`'s narinfo as every reader takes it: its quirk text when `index` kept one
/// that parses, else printed from the columns. `None` when its narinfo did not parse.
pub fn narinfo<'a>(
    g: &CacheGraph<'a>,
    quirks: &'a [FetchedRecord],
    id: u32,
) -> Option<NarInfo<'a>> {
    if !g.status(id).parsed() {
        return None;
    }
    match of(g, quirks, id).map(FetchedRecord::parse) {
        Some(Ok(ni)) => Some(ni),
        _ => g.narinfo(id),
    }
}
