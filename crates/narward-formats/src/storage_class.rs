//! S3 storage classes: the one list narward knows, in one place.
//!
//! An object's class comes from a listing or an inventory as S3 spells it; a missing
//! class means `STANDARD` (S3's default). Only [`StorageClass::Glacier`] and
//! [`StorageClass::DeepArchive`] need a restore before a GET works; `GLACIER_IR` and
//! `INTELLIGENT_TIERING` (in its automatic tiers) are readable directly.

use std::fmt;

/// An S3 storage class narward knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StorageClass {
    /// `STANDARD`, S3's default.
    Standard,
    /// `INTELLIGENT_TIERING`.
    IntelligentTiering,
    /// `STANDARD_IA`.
    StandardIa,
    /// `ONEZONE_IA`.
    OnezoneIa,
    /// `GLACIER_IR` (Glacier Instant Retrieval: readable without a restore).
    GlacierIr,
    /// `GLACIER` (Glacier Flexible Retrieval: restore first).
    Glacier,
    /// `DEEP_ARCHIVE` (restore first).
    DeepArchive,
}

impl StorageClass {
    /// Every class, cheapest access first (the order reports list them in).
    pub const ALL: [StorageClass; 7] = [
        StorageClass::Standard,
        StorageClass::IntelligentTiering,
        StorageClass::StandardIa,
        StorageClass::OnezoneIa,
        StorageClass::GlacierIr,
        StorageClass::Glacier,
        StorageClass::DeepArchive,
    ];

    /// The name S3 gives the class.
    pub const fn as_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::IntelligentTiering => "INTELLIGENT_TIERING",
            StorageClass::StandardIa => "STANDARD_IA",
            StorageClass::OnezoneIa => "ONEZONE_IA",
            StorageClass::GlacierIr => "GLACIER_IR",
            StorageClass::Glacier => "GLACIER",
            StorageClass::DeepArchive => "DEEP_ARCHIVE",
        }
    }

    /// The class S3 calls `name` (exact spelling); `None` for a class not in the list.
    pub fn parse(name: &str) -> Option<StorageClass> {
        StorageClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether a plain GET cannot fetch an object of this class without a restore.
    pub const fn is_archive(self) -> bool {
        matches!(self, StorageClass::Glacier | StorageClass::DeepArchive)
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The names of [`StorageClass::ALL`], in the same order.
pub const NAMES: [&str; 7] = {
    let mut names = [""; 7];
    let mut i = 0;
    while i < names.len() {
        #[allow(clippy::indexing_slicing)] // const evaluation: out of bounds fails the build
        {
            names[i] = StorageClass::ALL[i].as_str();
        }
        i += 1;
    }
    names
};

/// Whether an object of the class named `name` needs a restore before a GET (`GLACIER`,
/// `DEEP_ARCHIVE`). Unknown names are readable as far as narward knows.
pub fn is_archive_name(name: &str) -> bool {
    StorageClass::parse(name).is_some_and(StorageClass::is_archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_glacier_and_deep_archive_need_a_restore() {
        for c in StorageClass::ALL {
            assert_eq!(StorageClass::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(NAMES.len(), StorageClass::ALL.len());
        assert_eq!(NAMES[0], "STANDARD");
        let archived: Vec<&str> = NAMES.into_iter().filter(|n| is_archive_name(n)).collect();
        assert_eq!(archived, ["GLACIER", "DEEP_ARCHIVE"]);
        assert!(!is_archive_name("glacier"));
        assert!(!is_archive_name("REDUCED_REDUNDANCY"));
        assert_eq!(StorageClass::parse(""), None);
    }
}
