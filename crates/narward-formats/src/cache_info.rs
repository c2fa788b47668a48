//! `nix-cache-info`, the file at the root of a binary cache.
//!
//! Takes its text and gives a [`CacheInfo`]; `Display` writes it back in the
//! `Key: value` form. Parsing is as lenient as Nix's (reference §1.2,
//! `binary-cache-store.cc`): lines without `:` and unknown keys are ignored,
//! values are trimmed, `WantMassQuery` is true only for `1`, and a
//! `Priority` that is not an integer is dropped (Nix would fail the whole
//! store). A repeated key: the last one wins, as in Nix.

use std::fmt;

/// The fields of `nix-cache-info` narward cares about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheInfo {
    /// `StoreDir:` (Nix refuses a cache whose store dir differs from its own).
    pub store_dir: Option<String>,
    /// `WantMassQuery:` (`1` = true).
    pub want_mass_query: Option<bool>,
    /// `Priority:` (lower is preferred).
    pub priority: Option<i64>,
}

/// Parses `nix-cache-info` leniently; never fails.
pub fn parse(s: &str) -> CacheInfo {
    let mut info = CacheInfo::default();
    for line in s.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name {
            "StoreDir" => info.store_dir = Some(value.to_owned()),
            "WantMassQuery" => info.want_mass_query = Some(value == "1"),
            "Priority" => {
                if let Ok(p) = value.parse::<i64>() {
                    info.priority = Some(p);
                }
            }
            _ => {}
        }
    }
    info
}

impl fmt::Display for CacheInfo {
    /// `StoreDir`, `WantMassQuery`, `Priority`, each only if set, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.store_dir {
            writeln!(f, "StoreDir: {d}")?;
        }
        if let Some(w) = self.want_mass_query {
            writeln!(f, "WantMassQuery: {}", u8::from(w))?;
        }
        if let Some(p) = self.priority {
            writeln!(f, "Priority: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_nixos_org() {
        let text = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n";
        let info = parse(text);
        assert_eq!(
            info,
            CacheInfo {
                store_dir: Some("/nix/store".into()),
                want_mass_query: Some(true),
                priority: Some(40)
            }
        );
        assert_eq!(info.to_string(), text);
    }

    #[test]
    fn lenient() {
        let info =
            parse("garbage\nFoo: bar\nStoreDir:/nix/store  \r\nWantMassQuery: yes\nPriority: x\n");
        assert_eq!(info.store_dir.as_deref(), Some("/nix/store"));
        assert_eq!(info.want_mass_query, Some(false));
        assert_eq!(info.priority, None);
        assert_eq!(parse(""), CacheInfo::default());
        assert_eq!(parse("Priority: -3").priority, Some(-3));
    }
}
