//! The indexed store paths in the JSON shape of `nix path-info --json` (Nix 2.x), so the
//! index can be compared with Nix's own view of a cache.

use crate::cache_graph::Snapshot;
use narward_formats::store_path::STORE_DIR;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PathInfo {
    pub path: String,
    pub nar_hash: String,
    pub nar_size: u64,
    pub references: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deriver: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    pub url: String,
    pub compression: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_size: Option<u64>,
}

/// Every parseable narinfo of the index (as every reader takes it: printed from the
/// columns, or its quirk text), sorted by path. References are full paths, sorted.
pub fn path_infos(snap: &Snapshot<'_>) -> Vec<PathInfo> {
    let mut v: Vec<PathInfo> = (0..snap.graph.len() as u32)
        .filter_map(|id| snap.narinfo(id))
        .map(|ni| {
            let mut references: Vec<String> = ni.references.iter().map(|r| r.full_path()).collect();
            references.sort();
            PathInfo {
                path: ni.store_path.full_path(),
                nar_hash: ni.nar_hash.to_nix32_prefixed(),
                nar_size: ni.nar_size,
                references,
                deriver: ni
                    .deriver
                    .filter(|d| *d != "unknown-deriver")
                    .map(|d| format!("{STORE_DIR}/{d}")),
                signatures: ni.sigs.iter().map(|s| s.to_string()).collect(),
                ca: ni.ca.map(str::to_string),
                url: ni.url.to_string(),
                compression: ni.compression_or_default().to_string(),
                download_hash: ni.file_hash.map(|h| h.to_nix32_prefixed()),
                download_size: ni.file_size,
            }
        })
        .collect();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}
