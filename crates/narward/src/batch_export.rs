//! `narward batch-export`, the pure part: a plan's work on an `s3://` cache as S3 Batch
//! Operations jobs, phase by phase in the order that never shows a client a narinfo whose
//! NAR is unavailable (hide → transition → quarantine).
//!
//! S3 Batch Operations can copy objects (`S3PutObjectCopy`) but cannot delete them: its
//! operations are copy, compute checksums, replace or delete all tags, invoke Lambda,
//! replace ACLs, restore, update encryption, replicate, and Object Lock settings. So the
//! "delete" half of each step is done the way AWS documents for bulk deletion: a job
//! tags the objects (`S3PutObjectTagging`, tag `narward-expire=<plan id>`; it replaces any
//! other tags of those objects) and a lifecycle rule expires objects with that tag after
//! one day. The lifecycle configuration is written beside the jobs. Expiration is
//! asynchronous, so a phase is finished only when a listing shows every tagged object gone.
//!
//! Copies keep the object's full key under the target prefix (S3 Batch Operations
//! appends the source key to `TargetKeyPrefix`).

use crate::plan::{Decision, ObjectDecision, Plan};
use narward_formats::keys::Category;
use serde_json::{Value, json};

/// The tag the expire jobs set and the lifecycle rule matches.
pub const EXPIRE_TAG: &str = "narward-expire";

/// Which objects of the plan a job acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The public face of archived paths (narinfos, `.ls`, other non-NAR objects).
    HideArchived,
    /// Narinfos and `.ls` of deleted paths.
    HideDeleted,
    /// Both of the above (to tag them for expiry).
    HideAll,
    /// Archived NARs moving to this storage class.
    Transition(String),
    /// Archived NARs moving class, every class (their sources, when copied to another
    /// bucket).
    TransitionAll,
    /// Deleted objects other than narinfos and `.ls`.
    Quarantine,
}

impl Selector {
    pub fn matches(&self, o: &ObjectDecision) -> bool {
        let face = matches!(o.category, Category::Narinfo | Category::Listing);
        match self {
            Selector::HideArchived => {
                o.decision == Decision::Archive && o.category != Category::Nar
            }
            Selector::HideDeleted => o.decision == Decision::Delete && face,
            Selector::HideAll => {
                Selector::HideArchived.matches(o) || Selector::HideDeleted.matches(o)
            }
            Selector::Transition(c) => {
                o.decision == Decision::Archive
                    && o.category == Category::Nar
                    && o.transition_to.as_deref() == Some(c.as_str())
            }
            Selector::TransitionAll => {
                o.decision == Decision::Archive
                    && o.category == Category::Nar
                    && o.transition_to.is_some()
            }
            Selector::Quarantine => o.decision == Decision::Delete && !face,
        }
    }
}

/// One job: its name (`NN-what`, in the order to run), the phase it belongs to, what it
/// does, which objects, and the `Operation` of its CreateJob request.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub phase: u32,
    pub description: String,
    pub selector: Selector,
    pub operation: Value,
}

/// Where things go and what to fill into the CreateJob requests.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub account_id: String,
    pub role_arn: String,
    /// `bucket/prefix/` where the manifests will be uploaded.
    pub manifest_location: String,
    pub report_bucket: String,
    pub quarantine_prefix: String,
}

/// The cache's bucket and prefix, the archive's, and the quarantine prefix for this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    pub bucket: String,
    pub prefix: String,
    pub archive_bucket: String,
    pub archive_prefix: String,
    pub quarantine_prefix: String,
}

/// The places of a plan of an `s3://` cache; `None` for a `file://` plan.
pub fn places(plan: &Plan, quarantine_prefix: &str) -> Option<Places> {
    let (bucket, prefix) = crate::plan::s3_location(&plan.header.cache)?;
    let h = &plan.header;
    let dir = |p: &str| {
        let p = p.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    };
    let (archive_bucket, archive_prefix) = match &h.archive_bucket {
        Some(b) if *b != bucket => (b.clone(), dir(&h.archive_prefix)),
        _ => (
            bucket.clone(),
            format!("{prefix}{}", dir(&h.archive_prefix)),
        ),
    };
    Some(Places {
        quarantine_prefix: format!("{prefix}{}{}/", dir(quarantine_prefix), h.created_at),
        bucket,
        prefix,
        archive_bucket,
        archive_prefix,
    })
}

fn arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

fn copy_op(bucket: &str, prefix: &str, class: Option<&str>) -> Value {
    let mut op = json!({
        "TargetResource": arn(bucket),
        "MetadataDirective": "COPY",
    });
    if !prefix.is_empty() {
        op["TargetKeyPrefix"] = json!(prefix);
    }
    if let Some(c) = class {
        op["StorageClass"] = json!(c);
    }
    json!({ "S3PutObjectCopy": op })
}

/// A short id of the plan for tags and tokens.
pub fn plan_id(plan: &Plan) -> String {
    plan.header.checksum.chars().take(16).collect()
}

fn expire_op(plan: &Plan) -> Value {
    json!({ "S3PutObjectTagging": { "TagSet": [ { "Key": EXPIRE_TAG, "Value": plan_id(plan) } ] } })
}

/// The jobs of a plan, in order; jobs that would select no object are left out.
pub fn jobs(plan: &Plan, p: &Places) -> Vec<JobSpec> {
    let mut v: Vec<(u32, &str, String, Selector, Value)> = vec![
        (
            1,
            "hide-copy-to-archive",
            "Copy the narinfos (and .ls and other non-NAR objects) of archived paths byte for byte to the archive, so a restore can republish them with their signatures".into(),
            Selector::HideArchived,
            copy_op(&p.archive_bucket, &p.archive_prefix, None),
        ),
        (
            1,
            "hide-copy-to-quarantine",
            "Copy the narinfos and .ls of deleted paths to the quarantine prefix".into(),
            Selector::HideDeleted,
            copy_op(&p.bucket, &p.quarantine_prefix, None),
        ),
        (
            1,
            "hide-expire",
            format!("Tag the copied narinfos and .ls with {EXPIRE_TAG} so the lifecycle rule removes them from the cache (after both copy jobs succeeded)"),
            Selector::HideAll,
            expire_op(plan),
        ),
    ];
    let mut classes: Vec<String> = plan
        .objects
        .iter()
        .filter(|o| Selector::TransitionAll.matches(o))
        .filter_map(|o| o.transition_to.clone())
        .collect();
    classes.sort();
    classes.dedup();
    let in_place = p.archive_bucket == p.bucket;
    for c in classes {
        let (bucket, prefix) = if in_place {
            (p.bucket.as_str(), "")
        } else {
            (p.archive_bucket.as_str(), p.archive_prefix.as_str())
        };
        v.push((
            2,
            "transition",
            format!(
                "Copy archived NARs {} with storage class {c}",
                if in_place {
                    "onto themselves"
                } else {
                    "to the archive bucket"
                }
            ),
            Selector::Transition(c.clone()),
            copy_op(bucket, prefix, Some(&c)),
        ));
    }
    if !in_place {
        v.push((
            2,
            "transition-expire-sources",
            format!("Tag the archived NARs' sources in the cache with {EXPIRE_TAG} (after the copies are verified)"),
            Selector::TransitionAll,
            expire_op(plan),
        ));
    }
    v.push((
        3,
        "quarantine-copy",
        "Copy deleted NARs and other deleted objects to the quarantine prefix".into(),
        Selector::Quarantine,
        copy_op(&p.bucket, &p.quarantine_prefix, None),
    ));
    v.push((
        3,
        "quarantine-expire",
        format!("Tag the quarantined objects' originals with {EXPIRE_TAG} (after the copy job succeeded)"),
        Selector::Quarantine,
        expire_op(plan),
    ));
    v.into_iter()
        .filter(|(_, _, _, sel, _)| plan.objects.iter().any(|o| sel.matches(o)))
        .enumerate()
        .map(|(i, (phase, what, description, selector, operation))| {
            let name = match &selector {
                Selector::Transition(c) => format!("{:02}-{what}-{}", i + 1, c.to_lowercase()),
                _ => format!("{:02}-{what}", i + 1),
            };
            JobSpec {
                name,
                phase,
                description,
                selector,
                operation,
            }
        })
        .collect()
}

/// The CreateJob request body of a job whose manifest has this ETag (or a placeholder).
pub fn create_job_request(plan: &Plan, job: &JobSpec, o: &ExportOptions, etag: &str) -> Value {
    let loc = o.manifest_location.trim_end_matches('/');
    json!({
        "AccountId": o.account_id,
        "ConfirmationRequired": true,
        "Operation": job.operation,
        "Manifest": {
            "Spec": { "Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"] },
            "Location": {
                "ObjectArn": format!("arn:aws:s3:::{loc}/{}/manifest.csv", job.name),
                "ETag": etag,
            }
        },
        "Report": {
            "Bucket": arn(&o.report_bucket),
            "Prefix": format!("narward-batch-reports/{}/{}", plan_id(plan), job.name),
            "Format": "Report_CSV_20180820",
            "Enabled": true,
            "ReportScope": "AllTasks"
        },
        "Priority": 10,
        "RoleArn": o.role_arn,
        "ClientRequestToken": format!("narward-{}-{}", plan_id(plan), job.name),
        "Description": format!("narward plan {}: {}", plan_id(plan), job.name),
    })
}

/// The lifecycle rules the expire jobs rely on: tagged objects expire after a day; the
/// quarantine prefix after the grace window; noncurrent versions (versioned buckets) after
/// the grace window too.
pub fn lifecycle(plan: &Plan, p: &Places, grace_days: u32) -> Value {
    json!({
        "Rules": [
            {
                "ID": format!("narward-expire-{}", plan_id(plan)),
                "Status": "Enabled",
                "Filter": { "Tag": { "Key": EXPIRE_TAG, "Value": plan_id(plan) } },
                "Expiration": { "Days": 1 },
                "NoncurrentVersionExpiration": { "NoncurrentDays": grace_days }
            },
            {
                "ID": format!("narward-quarantine-{}", plan_id(plan)),
                "Status": "Enabled",
                "Filter": { "Prefix": p.quarantine_prefix },
                "Expiration": { "Days": grace_days },
                "NoncurrentVersionExpiration": { "NoncurrentDays": 1 }
            }
        ]
    })
}
