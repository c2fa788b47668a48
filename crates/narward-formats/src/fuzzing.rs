//! Fuzz entry points, shared by `fuzz/` (cargo-fuzz) and the proptests.
//!
//! Each function takes arbitrary bytes, runs a parser on them, and — where
//! parsing succeeds — checks a round trip. They return nothing; a panic
//! means a bug (a parser panicked, or a round trip broke).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use crate::inventory;
use crate::narinfo::{NarInfo, SigStatus};
use crate::nixbase32;
use crate::store_path::{StorePath, StorePathHash};
use crate::{cache_info, keys};

/// Narinfo: parse; if it parses, printing gives the input back, printing is
/// stable under re-parsing, and fingerprint/quirks/verify do not panic.
pub fn narinfo(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = NarInfo::parse(s) else {
        return;
    };
    let printed = n.to_string();
    assert_eq!(printed, s, "printed narinfo differs from input");
    let again = NarInfo::parse(&printed).expect("printed narinfo does not parse");
    assert_eq!(again, n, "re-parsed narinfo differs");
    let fp = n.fingerprint();
    assert!(fp.starts_with("1;/nix/store/"));
    let _ = n.quirks();
    let _ = n.compression_or_default();
    let _ = n.deriver_path();
    let status = n.verify(&[]);
    assert!(matches!(
        status,
        SigStatus::Unsigned | SigStatus::UnknownKey
    ));
    // A narinfo changed after parsing still prints as something that parses
    // to the changed values.
    let mut changed = n.clone();
    changed.nar_size = changed.nar_size.saturating_add(1);
    changed.references.reverse();
    changed.file_hash = None;
    let text = changed.to_string();
    let back = NarInfo::parse(&text).expect("printed modified narinfo does not parse");
    assert_eq!(back.nar_size, changed.nar_size);
    assert_eq!(back.references, changed.references);
    assert_eq!(back.file_hash, None);
}

/// Store paths and hashes: parse; if it parses, printing and re-parsing give
/// the same value and the same text.
pub fn store_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = StorePath::parse_any(s) {
        let text = if s.starts_with('/') {
            p.full_path()
        } else {
            p.base_name()
        };
        assert_eq!(text, s, "store path does not print back");
        assert_eq!(StorePath::parse_full(&p.full_path()).unwrap(), p);
        assert_eq!(StorePath::parse_base_name(&p.base_name()).unwrap(), p);
        assert!(p.base_name_eq(&p.base_name()));
    }
    if let Ok(h) = StorePathHash::parse(s) {
        assert_eq!(h.to_string(), s);
        assert_eq!(h.to_nix32(), s);
    }
    if let Ok((h, enc)) = crate::hash::Sha256::parse(s) {
        assert_eq!(
            crate::hash::Sha256::parse(&h.format(enc)).unwrap(),
            (h, enc)
        );
    }
    let kind = keys::classify(s);
    let _ = kind.category();
}

/// nix32: `decode(encode(x)) == x` for the bytes, and for the bytes as text,
/// `encode(decode(s)) == s` whenever `decode` accepts (canonical only).
pub fn nixbase32(data: &[u8]) {
    let enc = nixbase32::encode(data);
    assert_eq!(enc.len(), nixbase32::encoded_len(data.len()));
    assert_eq!(nixbase32::decode(&enc).unwrap(), data);
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = nixbase32::decode(s) {
        assert_eq!(nixbase32::encode(&bytes), s, "non-canonical nix32 accepted");
    }
    if let Ok(b) = nixbase32::decode_fixed::<20>(s) {
        assert_eq!(nixbase32::encode(&b), s);
    }
    if let Ok(b) = nixbase32::decode_fixed::<32>(s) {
        assert_eq!(nixbase32::encode(&b), s);
    }
}

/// Inventory CSV rows, key URL-coding, timestamps and `nix-cache-info`.
pub fn inventory_csv_row(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let schema = inventory::CsvSchema::parse(
        "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
    )
    .unwrap();
    if let Ok(fields) = inventory::split_csv_line(s) {
        assert!(!fields.is_empty());
        // Quoting every field and splitting again gives the same fields.
        let quoted: Vec<String> = fields
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        let joined = quoted.join(",");
        let again = inventory::split_csv_line(&joined).unwrap();
        assert_eq!(again, fields);
    }
    if let Ok(row) = inventory::parse_csv_row(&schema, s) {
        let _ = keys::classify(&row.key);
        let _ = inventory::batch_manifest_row(&row.bucket, &row.key, row.version_id.as_deref());
    }
    if let Ok(key) = inventory::url_decode_key(s) {
        let encoded = inventory::url_encode_key(&key);
        assert_eq!(inventory::url_decode_key(&encoded).unwrap(), key);
    }
    let encoded = inventory::url_encode_key(s);
    assert_eq!(inventory::url_decode_key(&encoded).unwrap(), s);
    if let Some(t) = inventory::parse_timestamp(s) {
        // Any accepted timestamp lies within years 0000..=9999 (± 1 day).
        assert!((-62_168_000_000..=253_403_000_000).contains(&t));
    }
    let info = cache_info::parse(s);
    assert_eq!(cache_info::parse(&info.to_string()), info);
}

/// Root lists (one path per line, and `fallback-paths.nix`): no panic; every root found
/// prints back as a store path that parses to the same value, lies on a line of the
/// input, and a list made of the roots found parses back to the same roots.
pub fn root_list(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let n_lines = s.lines().count();
    for roots in [
        crate::roots::lines(s).collect::<Vec<_>>(),
        crate::roots::fallback_paths(s).collect::<Vec<_>>(),
    ] {
        let ok: Vec<_> = roots.into_iter().filter_map(Result::ok).collect();
        for r in &ok {
            assert!(
                (1..=n_lines).contains(&r.line),
                "line {} of {n_lines}",
                r.line
            );
            assert_eq!(StorePath::parse_full(&r.path.full_path()).unwrap(), r.path);
        }
        let list: String = ok.iter().map(|r| r.path.full_path() + "\n").collect();
        let again: Vec<_> = crate::roots::lines(&list)
            .map(|r| r.unwrap().path)
            .collect();
        assert_eq!(again, ok.iter().map(|r| r.path).collect::<Vec<_>>());
    }
}

/// S3 server access log lines: parsing never panics or overflows, a request's time is within
/// years 0000..=9999 (± the largest zone offset), and splitting into fields is stable (a
/// field never holds the separator that ended it).
pub fn access_log(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for line in s.lines().chain(std::iter::once(s)) {
        let fields = crate::access_log::fields(line);
        assert!(fields.len() <= line.len());
        if let Ok(Some(r)) = crate::access_log::parse_request(line) {
            assert!(
                (-62_168_000_000..=253_403_000_000).contains(&r.time),
                "{}",
                r.time
            );
            assert!(r.status.is_none_or(|s| (100..=599).contains(&s)));
            // One classification: hits and misses are reads, never both.
            assert!(!(r.is_hit() && r.is_miss()));
            assert!(r.is_read() || !(r.is_hit() || r.is_miss()));
            let _ = keys::classify(&r.key);
        }
        if let Some(t) = crate::access_log::parse_time(line) {
            assert!((-62_168_000_000..=253_403_000_000).contains(&t), "{t}");
        }
    }
}
