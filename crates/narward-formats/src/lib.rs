//! Formats of a Nix binary cache, as stored in S3, with no I/O.
//!
//! This crate takes text and bytes that the caller has already read and gives
//! back typed values (and the reverse). It has no I/O, no async runtime and no
//! AWS dependency, so everything in it can be tested and fuzzed in isolation.
//!
//! | module | takes | gives |
//! |---|---|---|
//! | [`nixbase32`] | bytes / nix32 text | nix32 text / bytes (canonical only) |
//! | [`store_path`] | `/nix/store/<hash>-<name>` or `<hash>-<name>` | [`store_path::StorePath`] borrowing the name |
//! | [`hash`] | `sha256:<nix32/hex/base64>` or SRI `sha256-<base64>` | [`hash::Sha256`] and the encoding seen |
//! | [`signature`] | `name:base64` keys and signatures | Ed25519 sign / verify of narinfo fingerprints |
//! | [`narinfo`] | the text of a `.narinfo` | zero-copy [`narinfo::NarInfo`] that prints back byte for byte |
//! | [`keys`] | an S3 object key | what kind of cache object it is |
//! | [`date`] | civil dates, unix seconds | days since 1970, (year, month, day) |
//! | [`cache_info`] | the text of `nix-cache-info` | [`cache_info::CacheInfo`] |
//! | [`roots`] | root lists: one store path per line, `fallback-paths.nix` | store paths with their line numbers |
//! | [`inventory`] | S3 Inventory `manifest.json` and CSV lines | typed rows; S3 Batch Operations manifest rows |
//! | [`storage_class`] | an S3 storage class name | [`storage_class::StorageClass`], whether it needs a restore |
//! | [`access_log`] | one S3 server access log line | the request (operation, key, status, time) and whether it is a read, hit or miss |
//! | [`fuzzing`] | arbitrary bytes | nothing; panics only if a round trip is broken |
//!
//! Parsers never panic on untrusted input: the library code is compiled with
//! `clippy::indexing_slicing`, `unwrap_used`, `expect_used` and `panic` denied,
//! and every parser is fuzzed (see `fuzz/` at the workspace root).
//!
//! Where a rule comes from Nix, tvix/snix `nix-compat` or AWS, the comment next
//! to it says so; the shared reference document (§1, §3) is the source for all of
//! them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod access_log;
pub mod cache_info;
pub mod date;
pub mod fuzzing;
pub mod hash;
pub mod inventory;
pub mod keys;
pub mod narinfo;
pub mod nixbase32;
pub mod roots;
pub mod signature;
pub mod storage_class;
pub mod store_path;

pub use hash::Sha256;
pub use narinfo::{NarInfo, NarInfoError, SigStatus};
pub use store_path::{StorePath, StorePathHash};
