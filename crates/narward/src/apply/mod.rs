//! `narward apply`: carry out a plan on a store, journaled and resumable.
//!
//! - [`program`] (pure): plan + fresh index → re-check skips → ordered batches of steps.
//! - [`journal`] (edge): the append-only, checksummed record of announced and done batches.
//! - [`exec`] (edge, tokio): runs batches against any [`crate::cache::store::Store`].
//! - [`batch_delete`] (edge): DeleteObjects batches with per-key results, and which
//!   deletes may be batched.

pub mod batch_delete;
pub mod exec;
pub mod journal;
pub mod program;
pub mod recover;

use serde::{Deserialize, Serialize};

/// The phases of an apply, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Narinfos and `.ls` leave the cache area (to the archive or quarantine area).
    Hide = 0,
    /// NARs go to the archive storage class or area.
    Archive = 1,
    /// Deleted objects go to the quarantine area.
    Quarantine = 2,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Hide, Phase::Archive, Phase::Quarantine];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Hide => "hide",
            Phase::Archive => "archive",
            Phase::Quarantine => "quarantine",
        }
    }
}
