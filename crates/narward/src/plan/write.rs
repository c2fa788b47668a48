//! The plan directory, written as the decisions are made ([`PlanWriter`]): the decision
//! streams, the S3 Batch Operations manifests, `decisions.parquet`, and `plan.json` last,
//! whose checksum covers every other file. The plan is written under a temporary name
//! beside its directory and renamed into place once complete, so a plan directory is
//! either absent (or empty) or whole.

use super::{
    Decision, ObjectDecision, PathDecision, PlanHeader, RestoreItem, header_checksum,
    plan_files_known, s3_location,
};
use crate::index::{self, StreamWriter};
use anyhow::{Context, Result, bail};
use arrow_array::ArrayRef;
use arrow_array::builder::{Int64Builder, StringBuilder};
use narward_formats::inventory::batch_manifest_row;
use narward_formats::keys::Category;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows of `decisions.parquet` per batch: bounded memory, whatever the plan's size.
const BATCH_ROWS: usize = 1 << 16;

/// Writes one plan directory, decision by decision.
pub struct PlanWriter {
    /// The plan directory, once complete.
    dir: PathBuf,
    /// Where it is written until then.
    tmp: PathBuf,
    /// The decision streams (taken when finished).
    paths: Option<StreamWriter>,
    objects: Option<StreamWriter>,
    /// The last path and key written: decisions must come sorted (readers binary-search).
    last_path: String,
    last_key: String,
    manifests: Option<Manifests>,
    decisions: DecisionColumns,
    parquet: Option<crate::export::ParquetWriter>,
    /// Set once the plan was moved into place.
    done: bool,
}

impl Drop for PlanWriter {
    /// A plan abandoned before [`PlanWriter::finish`] (an error, a refusal) leaves
    /// nothing behind (best effort: a crash leaves `.NAME.partial`, never a plan).
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The S3 Batch Operations manifests of an `s3://` cache.
struct Manifests {
    bucket: String,
    prefix: String,
    files: BTreeMap<&'static str, BufWriter<File>>,
}

impl PlanWriter {
    /// Start writing a plan of `paths` paths and `objects` objects for `cache` into
    /// `dir`, which must not exist or be empty: plans are immutable.
    ///
    /// # Errors
    /// `dir` is not empty or not a directory; I/O errors.
    pub fn create(dir: &Path, cache: &str, paths: u64, objects: u64) -> Result<PlanWriter> {
        check_new(dir)?;
        PlanWriter::start(dir, cache, paths, objects)
            .with_context(|| format!("cannot write the plan directory {}", dir.display()))
    }

    fn start(dir: &Path, cache: &str, paths: u64, objects: u64) -> Result<PlanWriter> {
        let tmp = partial_dir(dir)?;
        if tmp.exists() {
            // An earlier run's partial plan: never a plan (it has no plan.json).
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        std::fs::create_dir_all(tmp.join("manifests"))
            .with_context(|| format!("creating {}", tmp.display()))?;
        Ok(PlanWriter {
            paths: Some(StreamWriter::create(&tmp.join("paths.bin.zst"), paths, 1)?),
            objects: Some(StreamWriter::create(
                &tmp.join("objects.bin.zst"),
                objects,
                1,
            )?),
            last_path: String::new(),
            last_key: String::new(),
            manifests: s3_location(cache).map(|(bucket, prefix)| Manifests {
                bucket,
                prefix,
                files: BTreeMap::new(),
            }),
            decisions: DecisionColumns::default(),
            parquet: None,
            done: false,
            dir: dir.to_path_buf(),
            tmp,
        })
    }

    /// Write one path's decision (paths come sorted by base name).
    ///
    /// # Errors
    /// A path out of order; I/O errors.
    pub fn path(&mut self, p: &PathDecision) -> Result<()> {
        in_order(&mut self.last_path, &p.path, "paths")?;
        match &mut self.paths {
            Some(w) => w.push(p),
            None => bail!("plan paths written after the plan was finished"),
        }
    }

    /// Write one object's decision (objects come sorted by key).
    ///
    /// # Errors
    /// An object out of order; I/O errors.
    pub fn object(&mut self, o: &ObjectDecision) -> Result<()> {
        in_order(&mut self.last_key, &o.key, "objects")?;
        match &mut self.objects {
            Some(w) => w.push(o)?,
            None => bail!("plan objects written after the plan was finished"),
        }
        if let Some(m) = &mut self.manifests {
            m.row(&self.tmp.join("manifests"), o)?;
        }
        self.decisions.push(o);
        if self.decisions.len() >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        let columns = self.decisions.take();
        let p = self.tmp.join("manifests").join("decisions.parquet");
        if self.parquet.is_none() {
            self.parquet = Some(crate::export::ParquetWriter::create(&p, &columns)?);
        }
        if let Some(w) = &mut self.parquet {
            w.write(columns)?;
        }
        Ok(())
    }

    /// Write the restore set and `plan.json` (its checksum covering every file), then move
    /// the plan into place. Returns the header as written.
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish(mut self, mut header: PlanHeader, restore: &[RestoreItem]) -> Result<PlanHeader> {
        if self.decisions.len() > 0 {
            self.flush_batch()?;
        }
        if let Some(w) = self.parquet.take() {
            w.close()?;
        }
        // The streams are hashed as they are written: not read again.
        let mut known = BTreeMap::new();
        for (name, w) in [
            ("paths.bin.zst", self.paths.take()),
            ("objects.bin.zst", self.objects.take()),
        ] {
            if let Some(w) = w {
                known.insert(name.to_string(), w.finish()?.sha256);
            }
        }
        if let Some(m) = self.manifests.take() {
            m.finish(&self.tmp.join("manifests"), restore)?;
        }
        let r = index::write_stream_level(&self.tmp.join("restore.bin.zst"), restore, 1)?;
        known.insert("restore.bin.zst".to_string(), r.sha256);
        // plan.json last: its checksum covers every other file.
        header.files = plan_files_known(&self.tmp, &known)?;
        header.checksum = header_checksum(&header)?;
        let hp = self.tmp.join("plan.json");
        std::fs::write(&hp, serde_json::to_string_pretty(&header)?)
            .with_context(|| format!("writing {}", hp.display()))?;
        // An empty directory given as --out is replaced by the complete plan.
        std::fs::rename(&self.tmp, &self.dir).with_context(|| {
            format!(
                "moving the plan from {} to {}",
                self.tmp.display(),
                self.dir.display()
            )
        })?;
        self.done = true;
        Ok(header)
    }
}

/// Decisions come sorted (readers binary-search): `next` must follow `last`, which it
/// then becomes.
fn in_order(last: &mut String, next: &str, what: &str) -> Result<()> {
    if !last.is_empty() && next <= last.as_str() {
        bail!("plan {what} out of order ({next} after {last}): nothing was written");
    }
    next.clone_into(last);
    Ok(())
}

/// `dir` must not exist, or be an empty directory.
fn check_new(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!(
            "plan directory {} exists and is not a directory: give --out a new directory",
            dir.display()
        );
    }
    let not_empty = dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some();
    if not_empty {
        bail!(
            "plan directory {} is not empty: plans are immutable, write a new one elsewhere",
            dir.display()
        );
    }
    Ok(())
}

/// Where the plan for `dir` is written until it is complete: `.NAME.partial` beside it.
fn partial_dir(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .with_context(|| format!("plan directory {}: no directory name", dir.display()))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(parent.join(format!(".{}.partial", name.to_string_lossy())))
}

impl Manifests {
    /// The manifest row of one object, if the plan acts on it.
    fn row(&mut self, dir: &Path, o: &ObjectDecision) -> Result<()> {
        let name = match (o.decision, o.category, &o.transition_to) {
            (Decision::Keep, _, _) => return Ok(()),
            (Decision::Delete, _, _) => "delete.csv",
            (Decision::Archive, Category::Nar, Some(_)) => "transition.csv",
            (Decision::Archive, Category::Nar, None) => return Ok(()),
            (Decision::Archive, _, _) => "hide.csv",
        };
        let w = match self.files.entry(name) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let p = dir.join(name);
                let f = File::create(&p).with_context(|| format!("writing {}", p.display()))?;
                e.insert(BufWriter::with_capacity(1 << 20, f))
            }
        };
        let full = format!("{}{}", self.prefix, o.key);
        writeln!(w, "{}", batch_manifest_row(&self.bucket, &full, None))
            .with_context(|| format!("writing {}", dir.join(name).display()))
    }

    /// Flush the manifests, and write `restore.csv`: the NARs of the restore set, ready
    /// for a RestoreObject job (when the set is not empty).
    fn finish(self, dir: &Path, restore: &[RestoreItem]) -> Result<()> {
        for (name, mut w) in self.files {
            w.flush()
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
        }
        if restore.is_empty() {
            return Ok(());
        }
        let p = dir.join("restore.csv");
        let mut w =
            BufWriter::new(File::create(&p).with_context(|| format!("writing {}", p.display()))?);
        for r in restore {
            let full = format!("{}{}", self.prefix, r.nar_key);
            writeln!(w, "{}", batch_manifest_row(&self.bucket, &full, None))?;
        }
        w.flush()
            .with_context(|| format!("writing {}", p.display()))
    }
}

/// The columns of `decisions.parquet` for one batch of objects.
#[derive(Default)]
struct DecisionColumns {
    key: StringBuilder,
    category: StringBuilder,
    size: Int64Builder,
    storage_class: StringBuilder,
    decision: StringBuilder,
    transition_to: StringBuilder,
    reason: StringBuilder,
    rows: usize,
}

impl DecisionColumns {
    fn len(&self) -> usize {
        self.rows
    }

    fn push(&mut self, o: &ObjectDecision) {
        use std::fmt::Write as _;
        self.key.append_value(&o.key);
        self.category.append_value(o.category.as_str());
        self.size.append_value(o.size as i64);
        self.storage_class.append_option(o.storage_class.as_deref());
        self.decision.append_value(o.decision.as_str());
        self.transition_to.append_option(o.transition_to.as_deref());
        // Formatted straight into the column.
        let _ = write!(self.reason, "{}", o.reason);
        self.reason.append_value("");
        self.rows += 1;
    }

    /// The batch so far, as named columns; the builders start over.
    fn take(&mut self) -> Vec<(&'static str, ArrayRef)> {
        self.rows = 0;
        vec![
            ("key", Arc::new(self.key.finish()) as ArrayRef),
            ("category", Arc::new(self.category.finish())),
            ("size", Arc::new(self.size.finish())),
            ("storage_class", Arc::new(self.storage_class.finish())),
            ("decision", Arc::new(self.decision.finish())),
            ("transition_to", Arc::new(self.transition_to.finish())),
            ("reason", Arc::new(self.reason.finish())),
        ]
    }
}

/// A decision on its way to the writer thread.
enum Decided {
    Path(PathDecision),
    Object(ObjectDecision),
}

/// Decisions per message to the writer thread.
const SEND_BATCH: usize = 4096;

/// A [`PlanWriter`] on its own thread: the decisions are encoded, compressed and written
/// while the next ones are made. At most a few batches are in flight (bounded memory).
pub struct PlanWriterThread {
    batch: Vec<Decided>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<Decided>>>,
    handle: Option<std::thread::JoinHandle<Result<PlanWriter>>>,
}

impl PlanWriterThread {
    /// Move `w` to a thread of its own.
    pub fn spawn(mut w: PlanWriter) -> PlanWriterThread {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decided>>(4);
        let handle = std::thread::spawn(move || -> Result<PlanWriter> {
            for batch in rx {
                for d in batch {
                    match d {
                        Decided::Path(p) => w.path(&p)?,
                        Decided::Object(o) => w.object(&o)?,
                    }
                }
            }
            Ok(w)
        });
        PlanWriterThread {
            batch: Vec::with_capacity(SEND_BATCH),
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// As [`PlanWriter::path`].
    ///
    /// # Errors
    /// The writer's errors (of this or an earlier decision).
    pub fn path(&mut self, p: PathDecision) -> Result<()> {
        self.push(Decided::Path(p))
    }

    /// As [`PlanWriter::object`].
    ///
    /// # Errors
    /// The writer's errors (of this or an earlier decision).
    pub fn object(&mut self, o: ObjectDecision) -> Result<()> {
        self.push(Decided::Object(o))
    }

    fn push(&mut self, d: Decided) -> Result<()> {
        self.batch.push(d);
        if self.batch.len() >= SEND_BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let b = std::mem::replace(&mut self.batch, Vec::with_capacity(SEND_BATCH));
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(b).is_ok());
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => bail!("the plan writer stopped early"),
        }
    }

    fn join(&mut self) -> Result<PlanWriter> {
        self.tx = None;
        match self.handle.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the plan writer thread panicked"),
            None => bail!("the plan writer already stopped"),
        }
    }

    /// As [`PlanWriter::finish`], once every decision is written.
    ///
    /// # Errors
    /// The writer's errors.
    pub fn finish(mut self, header: PlanHeader, restore: &[RestoreItem]) -> Result<PlanHeader> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        self.join()?.finish(header, restore)
    }
}

impl Drop for PlanWriterThread {
    /// Abandoned: the thread ends and its writer removes the partial plan.
    fn drop(&mut self) {
        let _ = self.join();
    }
}
