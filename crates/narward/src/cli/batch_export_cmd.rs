//! `narward batch-export PLAN --out DIR`: the plan's work as S3 Batch Operations jobs
//! (manifests, CreateJob request bodies, a lifecycle configuration and a README), written
//! from the plan read through `Plan::read`; the jobs themselves come from
//! [`narward::batch_export`].

use super::{Global, print_json};
use anyhow::{Context, Result, bail};
use clap::Args;
use md5::{Digest, Md5};
use narward::batch_export::{self, ExportOptions, JobSpec, Places};
use narward::plan::Plan;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  narward batch-export plans/today --out jobs/
  narward batch-export plans/today --out jobs/ --account-id 123456789012 \\
    --role-arn arn:aws:iam::123456789012:role/narward-batch \\
    --manifest-location ops-bucket/narward-jobs --report-bucket ops-bucket
  aws s3 cp --recursive jobs/ s3://ops-bucket/narward-jobs/
  aws s3control create-job --cli-input-json file://jobs/01-hide-copy-to-archive/job.json

Run the jobs in the order of their numbers, each phase only after the one before has
finished (jobs/README.txt says how to tell).")]
pub struct BatchExportArgs {
    /// The plan directory (of an s3:// cache).
    pub plan: PathBuf,
    /// Directory to write the jobs into (must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// The AWS account id to put into the CreateJob requests (else a placeholder).
    #[arg(long, default_value = "REPLACE_WITH_ACCOUNT_ID")]
    pub account_id: String,
    /// The IAM role S3 Batch Operations runs the jobs as (else a placeholder).
    #[arg(
        long,
        default_value = "arn:aws:iam::REPLACE_WITH_ACCOUNT_ID:role/REPLACE_WITH_BATCH_OPERATIONS_ROLE"
    )]
    pub role_arn: String,
    /// BUCKET/PREFIX the output directory will be uploaded to (the manifests' location in
    /// the requests).
    #[arg(long, default_value = "REPLACE_WITH_MANIFEST_BUCKET/narward-jobs")]
    pub manifest_location: String,
    /// The bucket for the jobs' completion reports.
    #[arg(long, default_value = "REPLACE_WITH_REPORT_BUCKET")]
    pub report_bucket: String,
    /// Days quarantined objects are kept before the lifecycle rule expires them.
    #[arg(long, default_value_t = 30)]
    pub grace: u32,
    /// Prefix (under the cache prefix) of the quarantine; the plan's creation time is
    /// appended.
    #[arg(long, default_value = "narward-quarantine/")]
    pub quarantine_prefix: String,
}

#[derive(serde::Serialize)]
struct JobSummary {
    name: String,
    phase: u32,
    description: String,
    objects: u64,
    bytes: u64,
}

pub fn run(g: &Global, a: BatchExportArgs) -> Result<ExitCode> {
    let plan = Plan::read(&a.plan)?;
    let Some(places) = batch_export::places(&plan, &a.quarantine_prefix) else {
        bail!(
            "plan {}: its cache {} is not s3://; S3 Batch Operations needs an S3 cache (use `narward apply` for file:// caches)",
            a.plan.display(),
            plan.header.cache
        );
    };
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .with_context(|| format!("reading {}", a.out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "--out {}: not empty; batch jobs are never overwritten",
            a.out.display()
        );
    }
    let opts = ExportOptions {
        account_id: a.account_id.clone(),
        role_arn: a.role_arn.clone(),
        manifest_location: a.manifest_location.clone(),
        report_bucket: a.report_bucket.clone(),
        quarantine_prefix: a.quarantine_prefix.clone(),
    };
    let jobs = batch_export::jobs(&plan, &places);
    let mut summary = Vec::new();
    for job in &jobs {
        summary.push(write_job(&plan, &places, job, &opts, &a.out)?);
    }
    write_file(
        &a.out.join("lifecycle.json"),
        &serde_json::to_vec_pretty(&batch_export::lifecycle(&plan, &places, a.grace))?,
    )?;
    write_file(
        &a.out.join("jobs.json"),
        &serde_json::to_vec_pretty(&summary)?,
    )?;
    write_file(
        &a.out.join("README.txt"),
        readme(&plan, &places, &summary, a.grace).as_bytes(),
    )?;
    if g.json {
        print_json(&summary)?;
    } else {
        for s in &summary {
            println!(
                "phase {}: {} ({} objects, {} bytes)",
                s.phase, s.name, s.objects, s.bytes
            );
        }
        println!(
            "wrote {} jobs to {}; read README.txt there before running any",
            summary.len(),
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(p: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))
}

/// `NN-name/manifest.csv` and `NN-name/job.json` (whose ETag is the manifest's MD5: the
/// ETag S3 gives it when uploaded in one PUT).
fn write_job(
    plan: &Plan,
    places: &Places,
    job: &JobSpec,
    opts: &ExportOptions,
    out: &Path,
) -> Result<JobSummary> {
    let dir = out.join(&job.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("manifest.csv");
    let f = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let mut md5 = Md5::new();
    let (mut objects, mut bytes) = (0u64, 0u64);
    for o in plan.objects.iter().filter(|o| job.selector.matches(o)) {
        let row = narward_formats::inventory::batch_manifest_row(
            &places.bucket,
            &format!("{}{}", places.prefix, o.key),
            None,
        );
        md5.update(row.as_bytes());
        md5.update(b"\n");
        writeln!(w, "{row}").with_context(|| format!("writing {}", path.display()))?;
        objects += 1;
        bytes += o.size;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    let etag = hex::encode(md5.finalize());
    let req = batch_export::create_job_request(plan, job, opts, &etag);
    write_file(&dir.join("job.json"), &serde_json::to_vec_pretty(&req)?)?;
    Ok(JobSummary {
        name: job.name.clone(),
        phase: job.phase,
        description: job.description.clone(),
        objects,
        bytes,
    })
}

fn readme(plan: &Plan, p: &Places, jobs: &[JobSummary], grace: u32) -> String {
    let mut s = format!(
        "S3 Batch Operations jobs for narward plan {} of {}\n\
         (archive: s3://{}/{}; quarantine: s3://{}/{})\n\n\
         RUN THE JOBS IN THIS ORDER. EACH PHASE MUST HAVE FINISHED COMPLETELY BEFORE THE NEXT\n\
         STARTS: a client must never see a narinfo whose NAR is unavailable, so narinfos are\n\
         hidden (phase 1) before any NAR changes class (phase 2) or is removed (phase 3).\n\n",
        batch_export::plan_id(plan),
        plan.header.cache,
        p.archive_bucket,
        p.archive_prefix,
        p.bucket,
        p.quarantine_prefix
    );
    for j in jobs {
        s.push_str(&format!(
            "  phase {}  {}  ({} objects, {} bytes)\n      {}\n",
            j.phase, j.name, j.objects, j.bytes, j.description
        ));
    }
    s.push_str(&format!(
        "\nS3 Batch Operations cannot delete objects. The *-expire jobs tag objects with\n\
         {tag}={id} (this REPLACES any other tags on them), and the lifecycle rule in\n\
         lifecycle.json expires tagged objects after 1 day and the quarantine prefix after {grace}\n\
         days. Merge those rules into the bucket's lifecycle configuration before phase 1\n\
         (aws s3api put-bucket-lifecycle-configuration replaces the whole configuration).\n\
         Expiration is asynchronous: a phase with an expire job has finished only when a\n\
         listing shows every object of its manifest gone; then run `narward verify`.\n\
         An expire job runs only after the copy job before it succeeded for every object\n\
         (its completion report shows no failed task).\n\n\
         Copies keep the object's full key under TargetKeyPrefix. In a versioned bucket\n\
         expiration leaves a delete marker; the noncurrent version expires after {grace} days.\n\n\
         Before creating a job: upload this directory to the --manifest-location given to\n\
         batch-export, with one PUT per manifest (then its ETag is the MD5 in job.json;\n\
         otherwise put the uploaded object's ETag there), and replace every REPLACE_WITH_*\n\
         value. Then: aws s3control create-job --cli-input-json file://NN-name/job.json\n\
         The jobs require confirmation (ConfirmationRequired) before they run.\n",
        tag = batch_export::EXPIRE_TAG,
        id = batch_export::plan_id(plan),
    ));
    s
}
