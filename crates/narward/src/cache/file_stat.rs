//! The `file://` listing's stat cache, as git's index: the MD5 a listing gives a narinfo
//! or debuginfo link as ETag is taken from the previous generation instead of reading and
//! hashing the file again, but only when the file is provably the one hashed then.
//!
//! Reused only when device, inode, size, mtime and ctime (both in nanoseconds) are all
//! equal to what the previous listing saw, and both times are older than that listing's
//! start by [`RACY_MARGIN_NS`] (the "racy git" rule: a file changed within the same
//! timestamp tick as it was hashed could keep its times). Any write, `touch`, `chmod`,
//! rename over it or new hard link changes the ctime, which no program can set back, so a
//! narinfo whose content may have changed is always hashed again. Anything else (no
//! previous entry, another file under the key, a recent time) hashes again too: the
//! cache only ever saves reads.

use serde::{Deserialize, Serialize};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// A file whose mtime or ctime is not at least this much older than the start of the
/// listing that hashed it is hashed again: it covers coarse filesystem timestamps (FAT:
/// 2 s) and the coarse clock the kernel stamps files with.
pub const RACY_MARGIN_NS: i64 = 3_000_000_000;

/// What identifies a file's content without reading it, and the MD5 of that content.
/// Found by device and inode, whatever key names the file (a link's target, a hard link):
/// no key is held, so the cache costs 56 B per narinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Unix nanoseconds.
    pub mtime_ns: i64,
    /// Unix nanoseconds of the inode's last change (not settable by programs).
    pub ctime_ns: i64,
    pub md5: [u8; 16],
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl FileStat {
    /// The stat of the file `md` describes, whose content hashes to `md5`.
    pub fn of(md: &Metadata, md5: [u8; 16]) -> FileStat {
        FileStat {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            ctime_ns: ns(md.ctime(), md.ctime_nsec()),
            md5,
        }
    }

    /// Same file, same content for sure: every field equal (but the MD5, not known yet).
    fn same_file(&self, now: &FileStat) -> bool {
        (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns)
            == (now.dev, now.ino, now.size, now.mtime_ns, now.ctime_ns)
    }

    /// The order of a stat cache: by device and inode.
    fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Sort `stats` by device and inode, one entry per file (hard links and symlinks to one
/// file are listed under several keys).
pub fn sort(stats: &mut Vec<FileStat>) {
    stats.sort_by_key(FileStat::id);
    stats.dedup_by_key(|s| s.id());
}

/// What a `file://` listing gives the next one: the stat and MD5 of every small metadata
/// file it hashed or reused.
#[derive(Debug, Default)]
pub struct StatListing {
    pub stats: Vec<FileStat>,
    /// MD5s taken from the previous stat cache (files not read).
    pub md5_reused: u64,
}

/// The previous listing's stats, sorted by device and inode, and the time before which a file's times
/// must lie for its MD5 to be reused.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: Vec<FileStat>,
    /// The previous listing's start minus [`RACY_MARGIN_NS`].
    cutoff_ns: i64,
}

impl StatCache {
    /// The stats a listing that started at `listing_started_ns` (Unix nanoseconds) wrote.
    pub fn new(mut entries: Vec<FileStat>, listing_started_ns: i64) -> StatCache {
        sort(&mut entries);
        StatCache {
            entries,
            cutoff_ns: listing_started_ns.saturating_sub(RACY_MARGIN_NS),
        }
    }

    /// The MD5 recorded for the file `md` describes when it is the one hashed then and
    /// was not racy; `None` means: read and hash it.
    pub fn md5(&self, md: &Metadata) -> Option<[u8; 16]> {
        let now = FileStat::of(md, [0; 16]);
        let i = self
            .entries
            .binary_search_by_key(&now.id(), FileStat::id)
            .ok()?;
        let prev = &self.entries[i];
        let settled = prev.mtime_ns < self.cutoff_ns && prev.ctime_ns < self.cutoff_ns;
        (settled && prev.same_file(&now)).then_some(prev.md5)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Now, in Unix nanoseconds (0 before 1970).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
