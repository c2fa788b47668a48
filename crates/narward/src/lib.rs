//! narward: index, audit, plan and garbage-collect Nix binary caches stored in S3
//! (or S3-compatible stores, or `file://` directories).
//!
//! The pure logic (formats, audit, liveness, plans, costs) lives in modules that take
//! values and return values; the I/O lives at the edges: [`cache`] (object stores),
//! [`inventory`] (S3 Inventory reports) and [`index`] (the on-disk state).

pub mod access;
pub mod apply;
pub mod audit;
pub mod batch_export;
pub mod cache;
pub mod cache_graph;
pub mod cost;
pub mod explain;
pub mod export;
pub mod graph;
pub mod index;
pub mod inventory;
pub mod listing;
pub mod model;
pub mod paths;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod report;
pub mod restore;
pub mod verify;
