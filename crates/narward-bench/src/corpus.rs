//! The real narinfo corpus (489 cache.nixos.org narinfos in
//! `crates/narward-formats/tests/data`) as the source of
//! every distribution the generator draws from: one synthetic path takes the NAR size,
//! file size, reference count, self-reference, deriver and CA presence, and name of one
//! real record, so the correlations between them (big R/Python environments have many
//! references) are kept.

use anyhow::{Context, Result, bail};
use narward_formats::narinfo::NarInfo;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What the generator takes from one real narinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The store path name (after `<hash>-`).
    pub name: String,
    pub nar_size: u64,
    pub file_size: u64,
    /// Distinct references other than the path itself.
    pub refs: u32,
    /// Whether the path references itself (36 % of the corpus does).
    pub self_ref: bool,
    pub deriver: bool,
    pub ca: bool,
}

/// The corpus: parsed records and the raw texts (for the parse-rate measurement).
pub struct Corpus {
    pub path: PathBuf,
    pub records: Vec<Record>,
    pub texts: Vec<String>,
}

/// `crates/narward-formats/tests/data/cache-nixos-org-narinfos.txt.gz`, found from the workspace.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../narward-formats/tests/data/cache-nixos-org-narinfos.txt.gz")
}

impl Corpus {
    /// Read a gzip file of narinfos separated by blank lines.
    ///
    /// # Errors
    /// Unreadable file, not gzip UTF-8, a record that does not parse, an empty corpus.
    pub fn load(path: &Path) -> Result<Corpus> {
        let f = std::fs::File::open(path)
            .with_context(|| format!("narinfo corpus {}", path.display()))?;
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(f)
            .read_to_string(&mut text)
            .with_context(|| format!("{}: not gzip-compressed UTF-8", path.display()))?;
        let texts: Vec<String> = text
            .split("\n\n")
            .map(|r| r.trim_matches('\n'))
            .filter(|r| !r.is_empty())
            .map(|r| format!("{r}\n"))
            .collect();
        let mut records = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let ni = NarInfo::parse(t)
                .map_err(|e| anyhow::anyhow!("{}: record {}: {e}", path.display(), i + 1))?;
            let mut others: Vec<_> = ni
                .references
                .iter()
                .filter(|r| r.hash != ni.store_path.hash)
                .map(|r| r.hash)
                .collect();
            others.sort_unstable();
            others.dedup();
            records.push(Record {
                name: ni.store_path.name.to_string(),
                nar_size: ni.nar_size,
                file_size: ni.file_size.unwrap_or(ni.nar_size),
                refs: others.len() as u32,
                self_ref: ni.references.iter().any(|r| r.hash == ni.store_path.hash),
                deriver: ni.deriver.is_some_and(|d| d != "unknown-deriver"),
                ca: ni.ca.is_some(),
            });
        }
        if records.is_empty() {
            bail!("{}: no narinfos", path.display());
        }
        if records.len() > u16::MAX as usize {
            bail!("{}: more than 65535 records", path.display());
        }
        Ok(Corpus {
            path: path.to_path_buf(),
            records,
            texts,
        })
    }

    /// Indices of records with at most `max_refs` references (the generator's low-level
    /// "core" paths draw from these: glibc, zlib, openssl have few references).
    pub fn low_level(&self, max_refs: u32) -> Vec<u16> {
        let v: Vec<u16> = (0..self.records.len() as u16)
            .filter(|&i| self.records[i as usize].refs <= max_refs)
            .collect();
        if v.is_empty() {
            (0..self.records.len() as u16).collect()
        } else {
            v
        }
    }

    /// Mean references per record, counting a self-reference as one.
    pub fn mean_refs(&self) -> f64 {
        let s: u64 = self
            .records
            .iter()
            .map(|r| r.refs as u64 + r.self_ref as u64)
            .sum();
        s as f64 / self.records.len() as f64
    }

    pub fn mean_text_len(&self) -> f64 {
        self.texts.iter().map(String::len).sum::<usize>() as f64 / self.texts.len() as f64
    }
}
