//! Writing a synthetic cache in every form the contenders read:
//!
//! | directory | what | read by |
//! |---|---|---|
//! | `state/index/` | a narward index (listing, columns, quirks), as `narward index` writes it | narward plan / audit |
//! | `cache/` | a `file://` binary cache in Nix's layout; NARs are sparse stand-ins of the right size | nix path-info, narward index |
//! | `inventory/{csv,parquet}/` | S3 Inventory reports (manifest.json + checksum + data/) | narward, DuckDB |
//! | `parquet/` | `paths.parquet` (id, hash, name, sizes, time), `references.parquet` (referrer, reference ids) | DuckDB |
//! | `roots/release-NN.txt` + `policy.toml` | 50 releases' root lists and a policy rooting them all | narward, DuckDB, Nix |
//! | `generated.json` | parameters and counts, including the expected closure size | the harness |
//!
//! Memory stays bounded at 10 M paths: narinfo texts are produced in hash order by worker
//! threads and streamed into the index; nothing holds all texts at once.

use crate::corpus::Corpus;
use crate::model::{BASE_TIME, Dag, Shape};
use anyhow::{Context, Result, bail};
use arrow_array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use md5::{Digest, Md5};
use narward::index::{self, FileDigest, IndexMeta, UpdateStats};
use narward::model::{FetchedRecord, ObjectRecord};
use narward_formats::narinfo::NarInfo;
use narward_formats::nixbase32;
use narward_formats::signature::SecretKey;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The cache the generated index claims to be (plans are bound to it).
pub const CACHE_URL: &str = "s3://narward-bench?region=us-east-1";
pub const BUCKET: &str = "narward-bench";
/// Signing key name and seed (fixed: the data is reproducible).
pub const KEY_NAME: &str = "narward-bench-1";
pub const KEY_SEED: [u8; 32] = [7u8; 32];
/// Bumped whenever the generated data changes for the same parameters.
pub const GENERATOR_VERSION: u32 = 1;

/// Which outputs to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formats {
    pub index: bool,
    pub file: bool,
    pub inventory: bool,
    pub parquet: bool,
}

impl Formats {
    pub const ALL: Formats = Formats {
        index: true,
        file: true,
        inventory: true,
        parquet: true,
    };

    /// `index,file,inventory,parquet` (any subset; `all`).
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Formats> {
        let mut f = Formats {
            index: false,
            file: false,
            inventory: false,
            parquet: false,
        };
        for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match w {
                "index" => f.index = true,
                "file" => f.file = true,
                "inventory" => f.inventory = true,
                "parquet" => f.parquet = true,
                "all" => f = Formats::ALL,
                _ => bail!("unknown format {w:?} (index, file, inventory, parquet, all)"),
            }
        }
        Ok(f)
    }

    /// Whether everything `other` has is here too.
    pub fn covers(&self, other: &Formats) -> bool {
        (self.index || !other.index)
            && (self.file || !other.file)
            && (self.inventory || !other.inventory)
            && (self.parquet || !other.parquet)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub paths: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub formats: Formats,
    pub sign: bool,
    pub corpus: PathBuf,
}

/// `generated.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub generator_version: u32,
    /// `narward::index::FORMAT_VERSION` of the index written (data written by another
    /// format is regenerated, not reused).
    #[serde(default)]
    pub index_format_version: u32,
    pub paths: usize,
    pub seed: u64,
    pub formats: Formats,
    pub signed: bool,
    pub shape: Shape,
    pub core_paths: usize,
    pub package_paths: usize,
    pub garbage_paths: usize,
    /// References as written in narinfos (self-references included).
    pub edges: u64,
    pub self_refs: u64,
    pub objects: u64,
    pub root_lines: u64,
    pub distinct_roots: u64,
    /// Mean fraction of a release's roots shared with the previous release.
    pub release_overlap: f64,
    /// Size of the closure of all roots: what every contender must find.
    pub expected_live: u64,
    pub narinfo_bytes: u64,
    pub nar_file_bytes: u64,
    pub corpus_mean_refs: f64,
    pub corpus_mean_narinfo_bytes: f64,
    pub seconds: Vec<(String, f64)>,
    pub disk_bytes: Vec<(String, u64)>,
    /// Peak RSS of the generating process (`VmHWM`, reset when generation starts).
    #[serde(default)]
    pub peak_rss_bytes: u64,
}

impl Summary {
    pub fn read(dir: &Path) -> Option<Summary> {
        let t = std::fs::read_to_string(dir.join("generated.json")).ok()?;
        serde_json::from_str(&t).ok()
    }
}

/// Append the narinfo of `id` in Nix's writer order. With a key, a `Sig` line signs the
/// fingerprint.
pub fn narinfo_text(
    dag: &Dag,
    corpus: &Corpus,
    id: u32,
    key: Option<&SecretKey>,
    out: &mut String,
) {
    let r = &corpus.records[dag.rec[id as usize] as usize];
    let h = dag.hashes[id as usize];
    let mut fh = String::with_capacity(52);
    nixbase32::encode_into(&dag.file_hash(id), &mut fh);
    let _ = writeln!(out, "StorePath: /nix/store/{h}-{}", r.name);
    let _ = writeln!(out, "URL: nar/{fh}.nar.xz");
    out.push_str("Compression: xz\n");
    let _ = writeln!(out, "FileHash: sha256:{fh}");
    let _ = writeln!(out, "FileSize: {}", r.file_size);
    out.push_str("NarHash: sha256:");
    nixbase32::encode_into(&dag.nar_hash(id), out);
    // Nix writes `References: ` with its space even when the list is empty.
    let _ = write!(out, "\nNarSize: {}\nReferences: ", r.nar_size);
    let mut refs: Vec<u32> = dag.refs(id).to_vec();
    if r.self_ref {
        refs.push(id);
    }
    // Nix writes a std::set of store paths: sorted by base name, i.e. by hash text.
    refs.sort_unstable_by_key(|&t| dag.hashes[t as usize]);
    for (i, t) in refs.into_iter().enumerate() {
        let tr = &corpus.records[dag.rec[t as usize] as usize];
        let sep = if i == 0 { "" } else { " " };
        let _ = write!(out, "{sep}{}-{}", dag.hashes[t as usize], tr.name);
    }
    out.push('\n');
    if r.deriver {
        let _ = writeln!(out, "Deriver: {}-{}.drv", dag.deriver_hash(id), r.name);
    }
    if let Some(k) = key {
        // The text so far parses (it has every required field); the fingerprint ignores CA.
        match NarInfo::parse(out.as_str()) {
            Ok(ni) => {
                let s = ni.signature(k);
                let _ = writeln!(out, "Sig: {s}");
            }
            Err(e) => panic!("generated narinfo does not parse ({e}):\n{out}"),
        }
    }
    if r.ca {
        out.push_str("CA: fixed:r:sha256:");
        nixbase32::encode_into(&dag.ca_hash(id), out);
        out.push('\n');
    }
}

pub fn nar_key(dag: &Dag, id: u32) -> String {
    let mut k = String::with_capacity(64);
    k.push_str("nar/");
    nixbase32::encode_into(&dag.file_hash(id), &mut k);
    k.push_str(".nar.xz");
    k
}

/// zstd level of the index's stream files: what `Index::save` writes (`index::write_stream`).
const INDEX_ZSTD_LEVEL: i32 = 3;

/// Bytes per path of each part of the data when nothing has been measured yet (the 1 M
/// run at generator version 1, rounded up).
const DEFAULT_BYTES_PER_PATH: [(&str, u64); 6] = [
    ("state", 1_000),
    ("cache", 5_500),
    ("inventory/csv", 140),
    ("inventory/parquet", 180),
    ("parquet", 140),
    ("roots", 35),
];

/// Disk the data of `n` paths in `formats` needs, with room for what the contenders write
/// next to it (a second index, DuckDB's spill): per part, the bytes per path `measured`
/// (the `generated.json` of an earlier size, so the estimate follows the index format)
/// took, else [`DEFAULT_BYTES_PER_PATH`]; 10 % more, plus scratch: twice the index where
/// there is a `file://` cache (the index rows write indexes of their own), else 100 B/path
/// (a plan), and 1 GiB.
pub fn disk_estimate(n: usize, formats: &Formats, measured: Option<&Summary>) -> u64 {
    let per_path = |part: &str, default: u64| -> f64 {
        measured
            .and_then(|s| {
                let b = s.disk_bytes.iter().find(|x| x.0 == part)?.1;
                (s.paths > 0).then(|| b as f64 / s.paths as f64)
            })
            .unwrap_or(default as f64)
    };
    let mut total = 0.0;
    let mut index = 0.0;
    for (part, default) in DEFAULT_BYTES_PER_PATH {
        let wanted = match part {
            "state" => formats.index,
            "cache" => formats.file,
            "inventory/csv" | "inventory/parquet" => formats.inventory,
            "parquet" => formats.parquet,
            _ => true,
        };
        if wanted {
            let b = per_path(part, default) * n as f64;
            total += b;
            if part == "state" {
                index = b;
            }
        }
    }
    let scratch = if formats.file {
        2.0 * index
    } else {
        100.0 * n as f64
    };
    (total * 1.1 + scratch + (1u64 << 30) as f64) as u64
}

fn dir_bytes(p: &Path) -> u64 {
    // Allocated bytes (st_blocks), so sparse NAR stand-ins count for what they take.
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if let Ok(md) = e.metadata() {
                if md.is_dir() {
                    stack.push(e.path());
                } else {
                    total += md.blocks() * 512;
                }
            }
        }
    }
    total
}

/// Generate everything `opts.formats` asks for into `opts.out`.
///
/// # Errors
/// I/O errors; an unreadable corpus.
pub fn generate(opts: &Options) -> Result<Summary> {
    let corpus = Corpus::load(&opts.corpus)?;
    let out = &opts.out;
    if out.exists() {
        for sub in [
            "state",
            "cache",
            "inventory",
            "parquet",
            "roots",
            "policy.toml",
            "generated.json",
        ] {
            let p = out.join(sub);
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else if p.exists() {
                std::fs::remove_file(&p)?;
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut seconds: Vec<(String, f64)> = Vec::new();
    crate::measure::reset_peak();
    let t = Instant::now();
    let dag = Dag::generate(&corpus, opts.paths, opts.seed);
    seconds.push(("dag".into(), t.elapsed().as_secs_f64()));
    let n = dag.len();
    progress(&format!(
        "generate: DAG of {n} paths in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    let t = Instant::now();
    let live = dag.live();
    let expected_live = live.iter().filter(|&&l| l).count() as u64;
    drop(live);
    let root_lines = write_roots(&dag, &corpus, out)?;
    seconds.push(("roots".into(), t.elapsed().as_secs_f64()));

    let key = SecretKey::from_seed(KEY_NAME, KEY_SEED);
    std::fs::write(
        out.join("trusted-key.txt"),
        format!("{}\n", key.public_key()),
    )?;
    let t = Instant::now();
    let (text_len, narinfos_digest) =
        write_narinfos(&dag, &corpus, opts, opts.sign.then_some(&key))?;
    seconds.push(("narinfos".into(), t.elapsed().as_secs_f64()));
    progress(&format!(
        "generate: narinfos in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let narinfo_bytes: u64 = text_len.iter().map(|&l| l as u64).sum();

    let t = Instant::now();
    let objects = write_tables(&dag, &corpus, opts, &text_len, narinfos_digest)?;
    seconds.push((
        "objects, inventory, parquet".into(),
        t.elapsed().as_secs_f64(),
    ));
    progress(&format!(
        "generate: objects/inventory/parquet in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    let mut overlap = 0.0;
    for w in dag.releases.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let mut a = a.clone();
        a.sort_unstable();
        let shared = b.iter().filter(|x| a.binary_search(x).is_ok()).count();
        overlap += shared as f64 / b.len().max(1) as f64;
    }
    let mut disk = Vec::new();
    for sub in [
        "state",
        "cache",
        "inventory/csv",
        "inventory/parquet",
        "parquet",
        "roots",
    ] {
        let p = out.join(sub);
        if p.exists() {
            disk.push((sub.to_string(), dir_bytes(&p)));
        }
    }
    let count = |k| dag.kind.iter().filter(|&&x| x == k).count();
    let s = Summary {
        generator_version: GENERATOR_VERSION,
        index_format_version: narward::index::FORMAT_VERSION,
        paths: n,
        seed: opts.seed,
        formats: opts.formats,
        signed: opts.sign,
        shape: dag.shape,
        core_paths: count(crate::model::Kind::Core),
        package_paths: count(crate::model::Kind::Package),
        garbage_paths: count(crate::model::Kind::Garbage),
        edges: dag.edge_count(&corpus),
        self_refs: (0..n as u32).filter(|&i| dag.self_ref(&corpus, i)).count() as u64,
        objects,
        root_lines,
        distinct_roots: dag.distinct_roots() as u64,
        release_overlap: overlap / (dag.releases.len() - 1).max(1) as f64,
        expected_live,
        narinfo_bytes,
        nar_file_bytes: (0..n)
            .map(|i| corpus.records[dag.rec[i] as usize].file_size)
            .sum(),
        corpus_mean_refs: corpus.mean_refs(),
        corpus_mean_narinfo_bytes: corpus.mean_text_len(),
        seconds,
        disk_bytes: disk,
        peak_rss_bytes: crate::measure::self_rss().1,
    };
    std::fs::write(
        out.join("generated.json"),
        serde_json::to_string_pretty(&s)?,
    )?;
    Ok(s)
}

pub fn progress(msg: &str) {
    eprintln!("[narward-bench] {msg}");
}

/// `roots/release-NN.txt` (sorted full store paths, like `store-paths`) and `policy.toml`.
fn write_roots(dag: &Dag, corpus: &Corpus, out: &Path) -> Result<u64> {
    let dir = out.join("roots");
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    let mut lines = 0u64;
    for (e, roots) in dag.releases.iter().enumerate() {
        let mut paths: Vec<String> = roots
            .iter()
            .map(|&id| {
                let r = &corpus.records[dag.rec[id as usize] as usize];
                format!("/nix/store/{}-{}", dag.hashes[id as usize], r.name)
            })
            .collect();
        paths.sort_unstable();
        paths.dedup();
        lines += paths.len() as u64;
        let name = format!("release-{e:02}.txt");
        let mut w = BufWriter::new(std::fs::File::create(dir.join(&name))?);
        for p in &paths {
            writeln!(w, "{p}")?;
        }
        w.flush()?;
        files.push(format!("\"roots/{name}\""));
    }
    let policy = format!(
        "# Generated by narward-bench: every release's roots are kept with their closure;\n\
         # everything else is archived.\n\
         [roots]\nfiles = [\n  {}\n]\n\n\
         [keep]\ncontent_addressed = false\nnames = []\nmin_age_days = 0\n\n\
         [actions]\nunreachable = \"archive\"\narchive_storage_class = \"DEEP_ARCHIVE\"\n\
         archive_min_size = \"128KiB\"\norphan_nars = \"delete\"\n",
        files.join(",\n  ")
    );
    std::fs::write(out.join("policy.toml"), policy)?;
    Ok(lines)
}

/// Pass 1: every narinfo, in key order, into the index stream (and the file cache).
/// Returns each path's narinfo length and the digest of the index's narinfo stream.
fn write_narinfos(
    dag: &Dag,
    corpus: &Corpus,
    opts: &Options,
    key: Option<&SecretKey>,
) -> Result<(Vec<u32>, Option<FileDigest>)> {
    let n = dag.len();
    let order = dag.by_hash();
    let cache_dir = opts.out.join("cache");
    if opts.formats.file {
        std::fs::create_dir_all(cache_dir.join("nar"))?;
        std::fs::write(cache_dir.join("nix-cache-info"), CACHE_INFO)?;
    }
    let mut writer = if opts.formats.index {
        let d = opts.out.join("state/index");
        std::fs::create_dir_all(&d)?;
        Some(index::StreamWriter::create(
            &d.join(index::NARINFOS_FILE),
            n as u64,
            INDEX_ZSTD_LEVEL,
        )?)
    } else {
        None
    };
    const CHUNK: usize = 2048;
    let chunks = n.div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |p| p.get())
        .max(1);
    let mut text_len = vec![0u32; n];
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<Result<(usize, Vec<(u32, String)>)>>(workers * 2);
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, order, cache_dir) = (&next, &order, &cache_dir);
            s.spawn(move || {
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let ids = &order[c * CHUNK..((c + 1) * CHUNK).min(n)];
                    let mut v = Vec::with_capacity(ids.len());
                    let mut res = Ok(());
                    for &id in ids {
                        let mut t = String::with_capacity(4096);
                        narinfo_text(dag, corpus, id, key, &mut t);
                        if opts.formats.file
                            && let Err(e) = write_cache_files(dag, corpus, cache_dir, id, &t)
                        {
                            res = Err(e);
                            break;
                        }
                        v.push((id, t));
                    }
                    let msg = res.map(|()| (c, v));
                    let failed = msg.is_err();
                    if tx.send(msg).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending: std::collections::BTreeMap<usize, Vec<(u32, String)>> = Default::default();
        let mut want = 0usize;
        let mut last_report = Instant::now();
        for msg in rx {
            let (c, v) = msg?;
            pending.insert(c, v);
            while let Some(v) = pending.remove(&want) {
                for (id, t) in v {
                    text_len[id as usize] = t.len() as u32;
                    if let Some(w) = writer.as_mut() {
                        let key = format!("{}.narinfo", dag.hashes[id as usize]);
                        w.push(&FetchedRecord {
                            key,
                            etag: Some(dag.etag(id, 0)),
                            size: t.len() as u64,
                            text: t.into_bytes(),
                            fetch_error: None,
                            earlier: Vec::new(),
                        })?;
                    }
                }
                want += 1;
                if last_report.elapsed().as_secs() >= 10 {
                    progress(&format!("generate: narinfos {}/{n}", (want * CHUNK).min(n)));
                    last_report = Instant::now();
                }
            }
        }
        if want != chunks {
            bail!("narinfo workers stopped early ({want} of {chunks} chunks)");
        }
        Ok(())
    })?;
    let digest = writer.map(index::StreamWriter::finish).transpose()?;
    Ok((text_len, digest))
}

fn set_mtime(f: &std::fs::File, t: i64) -> std::io::Result<()> {
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64))
}

/// `<hash>.narinfo` and a sparse `nar/<filehash>.nar.xz` of the right size, both with the
/// path's upload time as mtime.
fn write_cache_files(dag: &Dag, corpus: &Corpus, dir: &Path, id: u32, text: &str) -> Result<()> {
    let t = dag.last_modified(id);
    let p = dir.join(format!("{}.narinfo", dag.hashes[id as usize]));
    let mut f = std::fs::File::create(&p).with_context(|| format!("writing {}", p.display()))?;
    f.write_all(text.as_bytes())?;
    set_mtime(&f, t)?;
    let np = dir.join(nar_key(dag, id));
    let f = std::fs::File::create(&np).with_context(|| format!("writing {}", np.display()))?;
    f.set_len(corpus.records[dag.rec[id as usize] as usize].file_size)?;
    set_mtime(&f, t)?;
    Ok(())
}

const CACHE_INFO: &str = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n";

/// Every object of the cache in key order: `nix-cache-info`, `<hash>.narinfo`, `nar/…`.
fn objects_in_key_order<'a>(
    dag: &'a Dag,
    corpus: &'a Corpus,
    text_len: &'a [u32],
) -> impl Iterator<Item = ObjectRecord> + 'a {
    let by_hash = dag.by_hash();
    let by_fh = dag.by_file_hash();
    let narinfo = move |id: u32| ObjectRecord {
        link_target: None,
        key: format!("{}.narinfo", dag.hashes[id as usize]),
        size: text_len[id as usize] as u64,
        etag: Some(dag.etag(id, 0)),
        last_modified: Some(dag.last_modified(id)),
        storage_class: None, // STANDARD, as narward stores it
    };
    let nar = move |id: u32| ObjectRecord {
        link_target: None,
        key: nar_key(dag, id),
        size: corpus.records[dag.rec[id as usize] as usize].file_size,
        etag: Some(dag.etag(id, 1)),
        last_modified: Some(dag.last_modified(id)),
        storage_class: None, // STANDARD, as narward stores it
    };
    let info = ObjectRecord {
        link_target: None,
        key: "nix-cache-info".into(),
        size: CACHE_INFO.len() as u64,
        etag: Some("0".repeat(32)),
        last_modified: Some(BASE_TIME),
        storage_class: None, // STANDARD, as narward stores it
    };
    let mut a = by_hash.into_iter().map(narinfo).peekable();
    let mut b = by_fh.into_iter().map(nar).peekable();
    let mut c = Some(info);
    std::iter::from_fn(move || {
        // Three sorted streams, merged by key.
        let mut best: Option<u8> = None;
        let mut best_key: Option<&str> = None;
        for (i, k) in [
            (0u8, a.peek().map(|o| o.key.as_str())),
            (1, b.peek().map(|o| o.key.as_str())),
            (2, c.as_ref().map(|o| o.key.as_str())),
        ] {
            if let Some(k) = k
                && best_key.is_none_or(|bk| k < bk)
            {
                best = Some(i);
                best_key = Some(k);
            }
        }
        match best? {
            0 => a.next(),
            1 => b.next(),
            _ => c.take(),
        }
    })
}

/// The index's object list, column files, (empty) debuginfo stream and meta, next to the
/// narinfo stream pass 1 wrote, by the functions `Index::save` uses: `index::StreamWriter`,
/// `index::columns` (the cache graph's columns, built from that narinfo stream by
/// narward's own `cache_graph::build`) and `index::write_meta`. No copy of the format
/// lives in the bench.
fn write_index_files(
    dag: &Dag,
    corpus: &Corpus,
    text_len: &[u32],
    d: &Path,
    objects: u64,
    narinfos_digest: Option<FileDigest>,
) -> Result<()> {
    let Some(narinfos_digest) = narinfos_digest else {
        bail!("{}: no narinfo stream was written", d.display());
    };
    let mut files = std::collections::BTreeMap::new();
    let mut w =
        index::StreamWriter::create(&d.join(index::OBJECTS_FILE), objects, INDEX_ZSTD_LEVEL)?;
    // No listing is held: only what the column builder needs of one (the narinfo hashes,
    // the NAR keys with their object index).
    let mut hashes = Vec::with_capacity(dag.len());
    let (mut nar_keys, mut nar_at) = (String::new(), Vec::with_capacity(dag.len()));
    for (i, o) in objects_in_key_order(dag, corpus, text_len).enumerate() {
        w.push(&o)?;
        match narward_formats::keys::classify(&o.key) {
            narward_formats::keys::ObjectKind::Narinfo(h) => hashes.push(h),
            _ if o.key.starts_with("nar/") => {
                nar_keys.push_str(&o.key);
                nar_at.push((nar_keys.len(), i));
            }
            _ => {}
        }
    }
    files.insert(index::OBJECTS_FILE.to_string(), w.finish()?);
    let mut start = 0;
    let mut nar_objects = std::collections::HashMap::with_capacity(nar_at.len());
    for (end, i) in nar_at {
        nar_objects.insert(&nar_keys[start..end], i);
        start = end;
    }
    let keys = narward::cache_graph::build::ListingKeys {
        hashes,
        nar_objects: narward::cache_graph::build::NarObjects::Map(nar_objects),
        objects: objects as usize,
    };
    // The narinfo stream is pass 1's hand-over only: `narward index` keeps no narinfo
    // stream (the columns and quirks stand in for it), so neither does the generator.
    let _ = narinfos_digest;
    let columns = index::columns::write_from_narinfo_file(d, keys)?;
    let stream = d.join(index::NARINFOS_FILE);
    std::fs::remove_file(&stream).with_context(|| format!("removing {}", stream.display()))?;
    let e = index::StreamWriter::create(&d.join(index::DEBUGINFO_FILE), 0, INDEX_ZSTD_LEVEL)?;
    files.insert(index::DEBUGINFO_FILE.to_string(), e.finish()?);
    files.extend(columns);
    let mut meta = IndexMeta {
        format_version: narward::index::FORMAT_VERSION,
        cache: "s3://narward-bench".into(),
        cache_url: CACHE_URL.into(),
        generation: 1,
        updated_at: BASE_TIME + 52 * crate::model::EPOCH_SECS,
        source: "narward-bench generate (synthetic)".into(),
        objects,
        narinfos: dag.len() as u64,
        unparseable: 0,
        last_update: UpdateStats {
            listed: objects,
            narinfo_objects: dag.len() as u64,
            fetched: dag.len() as u64,
            ..Default::default()
        },
        files,
        versioning: None,
        checksum: String::new(),
    };
    index::write_meta(d, &mut meta)
}

/// Pass 2: the index's object list and meta, the inventory reports, the Parquet tables.
/// Returns the number of objects.
fn write_tables(
    dag: &Dag,
    corpus: &Corpus,
    opts: &Options,
    text_len: &[u32],
    narinfos_digest: Option<FileDigest>,
) -> Result<u64> {
    let objects = 2 * dag.len() as u64 + 1;
    let out = &opts.out;
    std::thread::scope(|s| -> Result<()> {
        let idx = opts.formats.index.then(|| {
            s.spawn(move || -> Result<()> {
                let d = out.join("state/index");
                write_index_files(dag, corpus, text_len, &d, objects, narinfos_digest)
            })
        });
        let csv = opts.formats.inventory.then(|| {
            s.spawn(move || {
                write_inventory(
                    dag,
                    corpus,
                    text_len,
                    &out.join("inventory/csv"),
                    InvFormat::Csv,
                )
            })
        });
        let pq = opts.formats.inventory.then(|| {
            s.spawn(move || {
                write_inventory(
                    dag,
                    corpus,
                    text_len,
                    &out.join("inventory/parquet"),
                    InvFormat::Parquet,
                )
            })
        });
        if opts.formats.parquet {
            write_parquet_tables(dag, corpus, &out.join("parquet"))?;
        }
        for h in [idx, csv, pq].into_iter().flatten() {
            h.join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(objects)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InvFormat {
    Csv,
    Parquet,
}

/// Rows per inventory data file (S3 splits reports into files of similar size).
const INVENTORY_ROWS_PER_FILE: usize = 2_000_000;

fn iso8601(secs: i64) -> String {
    let (y, m, d) = narward_formats::date::ymd(secs);
    let r = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        r / 3600,
        r % 3600 / 60,
        r % 60
    )
}

/// An S3 Inventory report of every object, in creation order (S3 does not sort rows),
/// laid out as S3 writes it: `<dir>/<date>/manifest.json`, `manifest.checksum`, `<dir>/data/`.
fn write_inventory(
    dag: &Dag,
    corpus: &Corpus,
    text_len: &[u32],
    dir: &Path,
    fmt: InvFormat,
) -> Result<()> {
    let date_dir = dir.join("2026-11-24T01-00Z");
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&date_dir)?;
    std::fs::create_dir_all(&data_dir)?;
    // Rows: (key, size, etag, last_modified)
    let rows = (0..1 + 2 * dag.len()).map(|i| {
        if i == 0 {
            return (
                "nix-cache-info".to_string(),
                CACHE_INFO.len() as u64,
                "0".repeat(32),
                BASE_TIME,
            );
        }
        let id = ((i - 1) / 2) as u32;
        let t = dag.last_modified(id);
        if (i - 1) % 2 == 0 {
            (
                format!("{}.narinfo", dag.hashes[id as usize]),
                text_len[id as usize] as u64,
                dag.etag(id, 0),
                t,
            )
        } else {
            (
                nar_key(dag, id),
                corpus.records[dag.rec[id as usize] as usize].file_size,
                dag.etag(id, 1),
                t,
            )
        }
    });
    let mut files = Vec::new();
    let mut rows = rows.peekable();
    let mut part = 0usize;
    while rows.peek().is_some() {
        let chunk: Vec<(String, u64, String, i64)> =
            rows.by_ref().take(INVENTORY_ROWS_PER_FILE).collect();
        let (name, path) = match fmt {
            InvFormat::Csv => {
                let name = format!("part-{part:05}.csv.gz");
                let path = data_dir.join(&name);
                let f = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
                let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                let mut line = String::with_capacity(256);
                for (k, size, etag, t) in &chunk {
                    line.clear();
                    let _ = writeln!(
                        line,
                        "\"{BUCKET}\",\"{}\",\"{size}\",\"{}\",\"{etag}\",\"STANDARD\"",
                        narward_formats::inventory::url_encode_key(k),
                        iso8601(*t)
                    );
                    gz.write_all(line.as_bytes())?;
                }
                gz.finish()?.flush()?;
                (name, path)
            }
            InvFormat::Parquet => {
                let name = format!("part-{part:05}.parquet");
                let path = data_dir.join(&name);
                write_inventory_parquet(&path, &chunk)?;
                (name, path)
            }
        };
        let bytes = std::fs::read(&path)?;
        files.push(serde_json::json!({
            "key": format!("inventory/{BUCKET}/config/data/{name}"),
            "size": bytes.len(),
            "MD5checksum": hex::encode(Md5::digest(&bytes)),
        }));
        part += 1;
    }
    let (ff, schema) = match fmt {
        InvFormat::Csv => (
            "CSV",
            "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass",
        ),
        InvFormat::Parquet => (
            "Parquet",
            "message s3.inventory { required binary bucket (STRING); required binary key (STRING); optional int64 size; optional int64 last_modified_date (TIMESTAMP(MILLIS,true)); optional binary e_tag (STRING); optional binary storage_class (STRING); }",
        ),
    };
    let manifest = serde_json::json!({
        "sourceBucket": BUCKET,
        "destinationBucket": "arn:aws:s3:::inventory-dest",
        "version": "2016-11-30",
        "creationTimestamp": "1795914000000",
        "fileFormat": ff,
        "fileSchema": schema,
        "files": files,
    });
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(date_dir.join("manifest.json"), &text)?;
    std::fs::write(
        date_dir.join("manifest.checksum"),
        hex::encode(Md5::digest(text.as_bytes())),
    )?;
    Ok(())
}

/// Where the manifest of the inventory in format `fmt` (`csv` or `parquet`) is.
pub fn manifest_path(data: &Path, fmt: &str) -> PathBuf {
    data.join("inventory")
        .join(fmt)
        .join("2026-11-24T01-00Z/manifest.json")
}

fn parquet_writer(
    path: &Path,
    schema: Arc<Schema>,
) -> Result<parquet::arrow::ArrowWriter<std::fs::File>> {
    let f = std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    Ok(parquet::arrow::ArrowWriter::try_new(
        f,
        schema,
        Some(props),
    )?)
}

fn write_inventory_parquet(path: &Path, rows: &[(String, u64, String, i64)]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("size", DataType::Int64, true),
        Field::new(
            "last_modified_date",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new("e_tag", DataType::Utf8, true),
        Field::new("storage_class", DataType::Utf8, true),
    ]));
    let mut w = parquet_writer(path, schema.clone())?;
    for c in rows.chunks(65536) {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![BUCKET; c.len()])),
            Arc::new(StringArray::from_iter_values(
                c.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(c.iter().map(|r| r.1 as i64))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                c.iter().map(|r| r.3 * 1000),
            )),
            Arc::new(StringArray::from_iter_values(
                c.iter().map(|r| r.2.as_str()),
            )),
            Arc::new(StringArray::from(vec!["STANDARD"; c.len()])),
        ];
        w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
    }
    w.close()?;
    Ok(())
}

/// `paths.parquet` (id, hash, name, nar_size, file_size, last_modified) and
/// `references.parquet` (referrer, reference: ids; self-references included).
fn write_parquet_tables(dag: &Dag, corpus: &Corpus, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("hash", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("nar_size", DataType::Int64, false),
        Field::new("file_size", DataType::Int64, false),
        Field::new(
            "last_modified",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let mut w = parquet_writer(&dir.join("paths.parquet"), schema.clone())?;
    let n = dag.len();
    let rec = |i: usize| &corpus.records[dag.rec[i] as usize];
    for start in (0..n).step_by(1 << 20) {
        let r = start..(start + (1 << 20)).min(n);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(r.clone().map(|i| i as i32))),
            Arc::new(StringArray::from_iter_values(
                r.clone().map(|i| dag.hashes[i].to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.clone().map(|i| rec(i).name.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                r.clone().map(|i| rec(i).nar_size as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                r.clone().map(|i| rec(i).file_size as i64),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                r.clone().map(|i| dag.last_modified(i as u32) * 1000),
            )),
        ];
        w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
    }
    w.close()?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("referrer", DataType::Int32, false),
        Field::new("reference", DataType::Int32, false),
    ]));
    let mut w = parquet_writer(&dir.join("references.parquet"), schema.clone())?;
    let (mut a, mut b) = (Vec::with_capacity(1 << 20), Vec::with_capacity(1 << 20));
    for id in 0..n as u32 {
        if dag.self_ref(corpus, id) {
            a.push(id as i32);
            b.push(id as i32);
        }
        for &t in dag.refs(id) {
            a.push(id as i32);
            b.push(t as i32);
        }
        if a.len() >= 1 << 20 || id + 1 == n as u32 {
            let cols: Vec<ArrayRef> = vec![
                Arc::new(Int32Array::from(std::mem::take(&mut a))),
                Arc::new(Int32Array::from(std::mem::take(&mut b))),
            ];
            w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
            a.reserve(1 << 20);
            b.reserve(1 << 20);
        }
    }
    w.close()?;
    Ok(())
}
