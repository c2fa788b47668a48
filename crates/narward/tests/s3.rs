//! The S3 backend against a real S3 API (moto on 127.0.0.1, started by scripts/test.sh),
//! through the same client code the product uses: listing (ranges, pagination, prefixes),
//! narinfo fetching, and S3 Inventory reports stored in a bucket.

mod common;
use common::*;
use narward::cache::{self, S3Options};
use narward::model::ObjectRecord;
use std::path::Path;

fn bucket_name(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("nw-{tag}-{}", n % 1_000_000_000)
}

fn s3_url(bucket: &str, prefix: &str) -> String {
    let p = if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    };
    format!(
        "s3://{bucket}{p}?endpoint={}&region=us-east-1",
        s3_endpoint()
    )
}

fn paths_of(state: &Path) -> serde_json::Value {
    json(&narward_ok(state, &["paths"]))
}

#[test]
fn s3_index_is_identical_to_the_file_index() {
    let ex = repo().join("examples/cache");
    let d = tempfile::tempdir().unwrap();
    let fs_state = d.path().join("fs");
    narward_ok(
        &fs_state,
        &["index", "--cache", &format!("file://{}", ex.display())],
    );
    for prefix in ["", "some/prefix"] {
        let b = bucket_name("idx");
        upload(&b, &ex, (!prefix.is_empty()).then_some(prefix));
        let st = d.path().join(format!("s3-{}", prefix.replace('/', "_")));
        let m = json(&narward_ok(
            &st,
            &["index", "--json", "--cache", &s3_url(&b, prefix)],
        ));
        assert_eq!(m["objects"], 27, "{m}");
        assert_eq!(m["narinfos"], 13);
        assert_eq!(paths_of(&st), paths_of(&fs_state), "prefix {prefix:?}");
        // The audit sees the same cache.
        let a_fs = json(&String::from_utf8_lossy(
            &narward(&fs_state, &["audit", "--json"]).stdout,
        ));
        let a_s3 = json(&String::from_utf8_lossy(
            &narward(&st, &["audit", "--json"]).stdout,
        ));
        for k in [
            "missing_nar",
            "orphan_nars",
            "closure_holes",
            "objects_by_category",
        ] {
            assert_eq!(a_fs[k], a_s3[k], "{k}");
        }
        // A plan of an s3:// cache carries S3 Batch Operations manifests: bucket,key with
        // URL-encoded keys that include the cache's prefix.
        let plan = st.join("plan");
        let policy = repo().join("examples/policy.toml");
        narward_ok(
            &st,
            &[
                "plan",
                "--policy",
                policy.to_str().unwrap(),
                "--out",
                plan.to_str().unwrap(),
            ],
        );
        let hide = std::fs::read_to_string(plan.join("manifests/hide.csv")).unwrap();
        let full_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        assert_eq!(hide.lines().count(), 3, "{hide}");
        for l in hide.lines() {
            let (bk, key) = l.split_once(',').unwrap();
            assert_eq!(bk, b);
            assert!(
                key.starts_with(&full_prefix) && key.ends_with(".narinfo"),
                "{l}"
            );
        }
        let del = std::fs::read_to_string(plan.join("manifests/delete.csv")).unwrap();
        assert!(
            del.contains("nar/00zzzmcl1iajlvzzgz6g3s5vhhsp3mn8fga8ps77wpwqm448q7hl.nar.xz"),
            "{del}"
        );
        // Incremental against S3 too (ETags).
        let m = json(&narward_ok(&st, &["index", "--json"]));
        assert_eq!(m["last_update"]["fetched"], 0);
        assert_eq!(m["last_update"]["reused"], 13);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_covers_every_key_across_ranges_and_pages() {
    let b = bucket_name("list");
    let opts = S3Options {
        bucket: b.clone(),
        endpoint: Some(s3_endpoint()),
        region: Some("us-east-1".into()),
        ..Default::default()
    };
    let client = cache::s3_client(&opts, 3).await.unwrap();
    client.create_bucket().bucket(&b).send().await.unwrap();
    // Keys in every listing range, more than one page (1000) in some, and odd characters.
    let alphabet = "0123456789abcdfghijklmnpqrsvwxyz";
    let mut keys: Vec<String> = Vec::new();
    for (i, c) in alphabet.chars().enumerate() {
        keys.push(format!("{c}{i:031}.narinfo"));
        keys.push(format!("nar/{c}{i:051}.nar.xz"));
    }
    for i in 0..1100 {
        keys.push(format!("nar/1{i:051}.nar.xz"));
    }
    keys.extend(
        [
            "nix-cache-info",
            "log/a+b c.drv",
            "debuginfo/00ff",
            "realisations/x!out.doi",
            "~odd",
            "Zeta",
            "nar/",
            "narx",
        ]
        .map(String::from),
    );
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for k in keys.clone() {
        let c = client.clone();
        let b = b.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            c.put_object()
                .bucket(b)
                .key(k)
                .body(bytes::Bytes::from_static(b"x").into())
                .send()
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = narward::cache::Cache::open(&narward::cache::CacheUrl::S3(opts), 3)
        .await
        .unwrap();
    let listed: Vec<String> = c
        .list(&|_| {})
        .await
        .unwrap()
        .into_iter()
        .map(|o: ObjectRecord| o.key)
        .collect();
    keys.sort();
    keys.dedup();
    let missing: Vec<&String> = keys.iter().filter(|k| !listed.contains(k)).collect();
    let extra: Vec<&String> = listed.iter().filter(|k| !keys.contains(k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(listed.len(), keys.len(), "duplicates in the listing");
    assert!(c.get("nope").await.unwrap().is_none());
    assert!(c.head("nope").await.unwrap().is_none());
    assert_eq!(c.get("log/a+b c.drv").await.unwrap().unwrap(), b"x");
}

#[test]
fn index_from_an_inventory_report_stored_in_s3() {
    let ex = repo().join("examples/cache");
    let d = tempfile::tempdir().unwrap();
    let b = bucket_name("inv");
    upload(&b, &ex, None);
    // The listing an inventory would hold, written as S3 writes reports, in both formats.
    let live = d.path().join("live");
    narward_ok(&live, &["index", "--cache", &s3_url(&b, "")]);
    let idx = narward::index::Index::load(&live).unwrap();
    for (fmt, tag) in [
        (narward::inventory::WriteFormat::CsvGz, "csv"),
        (narward::inventory::WriteFormat::Parquet, "pq"),
    ] {
        let rep = d.path().join(format!("report-{tag}"));
        narward::inventory::write_report(&rep, &b, &idx.objects, fmt, 10).unwrap();
        // The report's data keys are inventory/<bucket>/config/data/…; the manifest sits in
        // inventory/<bucket>/config/<date>/ — the destination bucket is "inventory-dest".
        upload(
            "inventory-dest",
            &rep,
            Some(&format!("inventory/{b}/config/{tag}")),
        );
        let manifest = format!(
            "s3://inventory-dest/inventory/{b}/config/{tag}/2026-11-24T01-00Z/manifest.json?endpoint={}&region=us-east-1",
            s3_endpoint()
        );
        // Point the data keys at where we uploaded them.
        let st = d.path().join(format!("inv-{tag}"));
        let mtext = std::fs::read_to_string(rep.join("2026-11-24T01-00Z/manifest.json")).unwrap();
        let fixed = mtext.replace(
            &format!("inventory/{b}/config/data/"),
            &format!("inventory/{b}/config/{tag}/data/"),
        );
        let mdir = d.path().join(format!("m-{tag}"));
        std::fs::create_dir_all(mdir.join("2026-11-24T01-00Z")).unwrap();
        std::fs::write(mdir.join("2026-11-24T01-00Z/manifest.json"), &fixed).unwrap();
        use md5::Digest;
        std::fs::write(
            mdir.join("2026-11-24T01-00Z/manifest.checksum"),
            hex::encode(md5::Md5::digest(fixed.as_bytes())),
        )
        .unwrap();
        upload(
            "inventory-dest",
            &mdir,
            Some(&format!("inventory/{b}/config/{tag}")),
        );
        let m = json(&narward_ok(
            &st,
            &[
                "index",
                "--json",
                "--cache",
                &s3_url(&b, ""),
                "--inventory",
                &manifest,
            ],
        ));
        assert_eq!(m["objects"], 27, "{tag}: {m}");
        assert!(m["source"].as_str().unwrap().starts_with("inventory"));
        assert_eq!(paths_of(&st), paths_of(&live), "{tag}");
    }
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let out = narward(
        d.path(),
        &[
            "index",
            "--cache",
            &s3_url("no-such-bucket-here", ""),
            "--max-attempts",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("no-such-bucket-here") && e.contains("NoSuchBucket"),
        "{e}"
    );
    assert!(
        !narward::index::Index::exists(d.path()),
        "no index may be written"
    );
}
