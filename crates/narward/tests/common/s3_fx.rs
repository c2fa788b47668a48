//! An s3:// copy of examples/cache on the local S3 server (moto), indexed and planned,
//! with direct S3 access for assertions (used by apply_s3 and restore_exec).

use super::*;
use narward::cache::S3Options;
use narward::plan::{Decision, ObjectDecision, Plan};
use narward_formats::keys::Category;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const T0: i64 = 1_800_000_000;
pub const DAY: i64 = 86_400;
pub const ARCHIVE: &str = "narward-archive/";
pub const QUARANTINE: &str = "narward-quarantine/";

pub fn bucket_name(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("nw-ap-{tag}-{}", n % 1_000_000_000)
}

pub fn s3_url(bucket: &str, prefix: &str, endpoint: &str) -> String {
    let p = if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    };
    format!("s3://{bucket}{p}?endpoint={endpoint}&region=us-east-1")
}

/// One object of a bucket listing: what the kill-and-resume comparison looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obj {
    pub size: i64,
    pub etag: String,
    pub class: String,
}

/// Direct S3 access for the tests (the SDK on its own runtime).
pub struct S3 {
    pub rt: tokio::runtime::Runtime,
    pub c: aws_sdk_s3::Client,
}

impl S3 {
    pub fn new() -> S3 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let o = S3Options {
            bucket: "any".into(),
            endpoint: Some(s3_endpoint()),
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let c = rt.block_on(narward::cache::s3_client(&o, 3)).unwrap();
        S3 { rt, c }
    }

    /// Every key of the bucket (all areas) → size, ETag, storage class.
    pub fn listing(&self, bucket: &str) -> BTreeMap<String, Obj> {
        self.rt.block_on(async {
            let mut m = BTreeMap::new();
            let mut pages = self
                .c
                .list_objects_v2()
                .bucket(bucket)
                .into_paginator()
                .send();
            while let Some(p) = pages.next().await {
                for o in p.unwrap().contents() {
                    m.insert(
                        o.key().unwrap().to_string(),
                        Obj {
                            size: o.size().unwrap_or(-1),
                            etag: o.e_tag().unwrap_or("").to_string(),
                            class: o
                                .storage_class()
                                .map_or("STANDARD", |c| c.as_str())
                                .to_string(),
                        },
                    );
                }
            }
            m
        })
    }

    /// GET: the bytes, or the service's error code.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        self.rt.block_on(async {
            match self.c.get_object().bucket(bucket).key(key).send().await {
                Ok(o) => Ok(o.body.collect().await.unwrap().into_bytes().to_vec()),
                Err(e) => Err(e.code().unwrap_or("?").to_string()),
            }
        })
    }

    /// A HEAD of `key`, which must exist.
    pub fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.rt.block_on(async {
            self.c
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"))
        })
    }

    /// The storage class a HEAD reports (`STANDARD` when it reports none).
    pub fn head_class(&self, bucket: &str, key: &str) -> String {
        self.head(bucket, key)
            .storage_class()
            .map_or("STANDARD", |c| c.as_str())
            .to_string()
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.rt.block_on(async {
            self.c
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(bytes.to_vec().into())
                .send()
                .await
                .unwrap();
        });
    }

    /// The bytes of every object of the bucket.
    pub fn snapshot(&self, bucket: &str) -> BTreeMap<String, Vec<u8>> {
        self.listing(bucket)
            .keys()
            .map(|k| (k.clone(), self.get(bucket, k).unwrap()))
            .collect()
    }

    /// Make the bucket hold exactly `snap` again (STANDARD, same bytes, so same ETags).
    pub fn reset(&self, bucket: &str, snap: &BTreeMap<String, Vec<u8>>) {
        let keys: Vec<String> = self.listing(bucket).into_keys().collect();
        self.rt.block_on(async {
            for k in keys {
                self.c
                    .delete_object()
                    .bucket(bucket)
                    .key(k)
                    .send()
                    .await
                    .unwrap();
            }
        });
        for (k, v) in snap {
            self.put(bucket, k, v);
        }
    }
}

/// An s3:// copy of examples/cache (under `prefix`), indexed and planned.
pub struct Fx {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub bucket: String,
    /// The cache's key prefix with its `/` (empty without one).
    pub kp: String,
    pub http: String,
    pub s3: S3,
}

impl Fx {
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn plan(&self) -> String {
        self.dir.join("plan").display().to_string()
    }
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        narward(&self.state(), args)
    }
    pub fn ok(&self, args: &[&str]) -> String {
        narward_ok(&self.state(), args)
    }
    pub fn listing(&self) -> BTreeMap<String, Obj> {
        self.s3.listing(&self.bucket)
    }
    pub fn full(&self, key: &str) -> String {
        format!("{}{key}", self.kp)
    }
    pub fn plan_value(&self) -> Plan {
        Plan::read(Path::new(&self.plan())).unwrap()
    }
    pub fn apply(&self, extra: &[&str]) -> serde_json::Value {
        let plan = self.plan();
        let mut args = vec!["apply", &plan, "--confirm", &self.bucket, "--json"];
        args.extend_from_slice(extra);
        json(&self.ok(&args))
    }
    pub fn verify(&self) -> (Option<i32>, serde_json::Value) {
        let out = self.run(&["verify", "--json"]);
        (
            out.status.code(),
            json(&String::from_utf8_lossy(&out.stdout)),
        )
    }
}

/// The example policy with `unreachable`, every archived NAR moved (no minimum size) and
/// roots by absolute path.
pub fn policy(dir: &Path, unreachable: &str) -> PathBuf {
    let ex = repo().join("examples");
    let t = std::fs::read_to_string(ex.join("policy.toml"))
        .unwrap()
        .replace("\"roots/", &format!("\"{}/roots/", ex.display()))
        .replace(
            "unreachable = \"archive\"",
            &format!("unreachable = \"{unreachable}\""),
        )
        .replace("archive_min_size = \"128KiB\"", "archive_min_size = \"1B\"");
    let p = dir.join("policy.toml");
    std::fs::write(&p, t).unwrap();
    p
}

impl Fx {
    /// The example cache uploaded to `bucket` (under `prefix`) with `s3`, in a new
    /// temporary directory; not indexed yet.
    pub fn uploaded(s3: S3, bucket: String, prefix: &str) -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let http = upload(
            &bucket,
            &repo().join("examples/cache"),
            (!prefix.is_empty()).then_some(prefix),
        );
        let kp = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Fx {
            _tmp: tmp,
            dir,
            bucket,
            kp,
            http,
            s3,
        }
    }

    /// `narward index` of the bucket (under `prefix`) through `endpoint`.
    pub fn index_at(&self, prefix: &str, endpoint: &str) {
        self.ok(&["index", "--cache", &s3_url(&self.bucket, prefix, endpoint)]);
    }

    /// `narward plan` with the policy file `pol`, written to [`Fx::plan`].
    pub fn plan_with(&self, pol: &Path) {
        self.ok(&[
            "plan",
            "--policy",
            pol.to_str().unwrap(),
            "--out",
            &self.plan(),
        ]);
    }
}

/// [`policy`] with `unreachable`, archiving to the separate bucket `abucket`.
pub fn archive_bucket_policy(dir: &Path, unreachable: &str, abucket: &str) -> PathBuf {
    let pol = policy(dir, unreachable);
    let t = std::fs::read_to_string(&pol).unwrap().replace(
        "archive_prefix = \"narward-archive/\"",
        &format!("archive_prefix = \"narward-archive/\"\narchive_bucket = \"{abucket}\""),
    );
    assert!(
        t.contains(abucket),
        "the example policy names archive_prefix"
    );
    std::fs::write(&pol, t).unwrap();
    pol
}

/// Upload the example cache to a new bucket (under `prefix`), index it through
/// `endpoint` (moto, or a proxy in front of it) and plan with `unreachable`.
pub fn fixture_at(tag: &str, prefix: &str, unreachable: &str, endpoint: &str) -> Fx {
    let fx = Fx::uploaded(S3::new(), bucket_name(tag), prefix);
    fx.index_at(prefix, endpoint);
    fx.plan_with(&policy(&fx.dir, unreachable));
    fx
}

pub fn fixture(tag: &str, prefix: &str, unreachable: &str) -> Fx {
    fixture_at(tag, prefix, unreachable, &s3_endpoint())
}

pub fn removed(p: &Plan) -> Vec<&ObjectDecision> {
    p.objects
        .iter()
        .filter(|o| o.decision != Decision::Keep)
        .collect()
}

pub fn hidden_kind(o: &ObjectDecision) -> bool {
    matches!(o.category, Category::Narinfo | Category::Listing)
}

/// The listing an apply of `p` at `T0` must leave, from the listing before: hidden
/// narinfos to the archive or quarantine prefix, archived NARs to DEEP_ARCHIVE in place,
/// deleted objects to the quarantine prefix; nothing else changes.
pub fn expected_after(fx: &Fx, p: &Plan, before: &BTreeMap<String, Obj>) -> BTreeMap<String, Obj> {
    let mut want = before.clone();
    for o in removed(p) {
        let full = fx.full(&o.key);
        let Some(mut obj) = want.get(&full).cloned() else {
            continue;
        };
        if hidden_kind(o) || o.decision == Decision::Delete {
            want.remove(&full);
            let to = if o.decision == Decision::Archive {
                fx.full(&format!("{ARCHIVE}{}", o.key))
            } else {
                fx.full(&format!("{QUARANTINE}{T0}/{}", o.key))
            };
            want.insert(to, obj);
        } else if let Some(class) = &o.transition_to {
            obj.class = class.clone();
            want.insert(full, obj);
        }
    }
    want
}

impl S3 {
    pub fn enable_versioning(&self, bucket: &str) {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.rt.block_on(async {
            self.c.create_bucket().bucket(bucket).send().await.unwrap();
            self.c
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        });
    }

    /// key → (ETags of the noncurrent versions, whether the latest is a delete marker).
    pub fn versions(&self, bucket: &str) -> BTreeMap<String, (Vec<String>, bool)> {
        self.rt.block_on(async {
            let r = self
                .c
                .list_object_versions()
                .bucket(bucket)
                .send()
                .await
                .unwrap();
            assert_ne!(r.is_truncated(), Some(true), "small bucket");
            let mut m: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
            for v in r.versions() {
                if v.is_latest() != Some(true) {
                    let e = m.entry(v.key().unwrap().to_string()).or_default();
                    e.0.push(v.e_tag().unwrap_or("").to_string());
                }
            }
            for d in r.delete_markers() {
                if d.is_latest() == Some(true) {
                    m.entry(d.key().unwrap().to_string()).or_default().1 = true;
                }
            }
            m
        })
    }
}

/// `<hash>.narinfo` and the NAR key of the plan's path whose name contains `name`.
pub fn path_keys(p: &Plan, name: &str) -> (String, String, String) {
    let x = p.paths.iter().find(|x| x.path.contains(name)).unwrap();
    (
        format!("/nix/store/{}", x.path),
        format!("{}.narinfo", &x.path[..32]),
        x.nar_key.clone().unwrap(),
    )
}

/// `scripts/nix-substitute-check.sh` against the bucket over http (signatures required).
pub fn nix_substitute(fx: &Fx, paths: &[String]) -> std::process::Output {
    let key = std::fs::read_to_string(repo().join("examples/trusted-key.txt")).unwrap();
    Command::new("bash")
        .arg(repo().join("scripts/nix-substitute-check.sh"))
        .arg(&fx.http)
        .arg(key.trim())
        .args(paths)
        .output()
        .unwrap()
}
