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
        .iter()
        .map(|o| o.key().to_string())
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
        narward::inventory::write_report(&rep, &b, &idx.objects.to_records(), fmt, 10).unwrap();
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

/// Run narward with the moto credentials and extra environment; any exit code.
fn narward_env(state: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_narward"));
    c.args(args).arg("--state").arg(state).arg("--quiet");
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn an_endpoint_that_never_answers_fails_in_bounded_time() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let d = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let url = format!("s3://b?endpoint={endpoint}&region=us-east-1");
    let t0 = std::time::Instant::now();
    let out = narward_env(
        d.path(),
        &["index", "--cache", &url, "--max-attempts", "1"],
        &[
            ("NARWARD_S3_READ_TIMEOUT", "1"),
            ("NARWARD_S3_CONNECT_TIMEOUT", "1"),
        ],
    );
    let took = t0.elapsed();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    assert!(e.contains(&endpoint) && e.contains("timed out"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!e.contains("DispatchFailure {"), "an SDK Debug dump: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_with_control_characters_are_listed() {
    let b = bucket_name("ctl");
    let opts = S3Options {
        bucket: b.clone(),
        endpoint: Some(s3_endpoint()),
        region: Some("us-east-1".into()),
        ..Default::default()
    };
    let client = cache::s3_client(&opts, 3).await.unwrap();
    client.create_bucket().bucket(&b).send().await.unwrap();
    let keys = ["log/bad\u{1}key.drv", "log/a+b c%41.drv", "nix-cache-info"];
    for k in keys {
        client
            .put_object()
            .bucket(&b)
            .key(k)
            .body(bytes::Bytes::from_static(b"x").into())
            .send()
            .await
            .unwrap();
    }
    let c = narward::cache::Cache::open(&narward::cache::CacheUrl::S3(opts), 3)
        .await
        .unwrap();
    let mut listed: Vec<String> = c
        .list(&|_| {})
        .await
        .unwrap()
        .iter()
        .map(|o| o.key().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    let d = tempfile::tempdir().unwrap();
    let m = json(&narward_ok(
        d.path(),
        &["index", "--json", "--cache", &s3_url(&b, "")],
    ));
    assert_eq!(m["objects"], 3, "{m}");
}

#[test]
fn s3_errors_are_one_line_without_sdk_dumps() {
    let d = tempfile::tempdir().unwrap();
    let out = narward(
        d.path(),
        &[
            "index",
            "--cache",
            &s3_url("no-such-bucket-either", "p"),
            "--max-attempts",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("s3://no-such-bucket-either/p/")
            && e.contains(&s3_endpoint())
            && e.contains("NoSuchBucket: "),
        "{e}"
    );
    assert!(
        !e.contains("ErrorMetadata") && !e.contains("Error {"),
        "{e}"
    );
}

#[test]
fn an_empty_listing_of_a_typod_prefix_warns() {
    let ex = repo().join("examples/cache");
    let b = bucket_name("typo");
    upload(&b, &ex, Some("nix-cache"));
    let d = tempfile::tempdir().unwrap();
    for prefix in ["nix-cahce", "nix%2Dcache"] {
        let st = d.path().join(prefix);
        let out = narward(&st, &["index", "--json", "--cache", &s3_url(&b, prefix)]);
        assert_eq!(out.status.code(), Some(0));
        let m = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(m["objects"], 0, "{m}");
        let w = m["warnings"].to_string();
        assert!(w.contains("empty") && w.contains(prefix), "{m}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("warning") && e.contains("empty"), "{e}");
    }
}

/// Write an inventory report of `objects` (rows for bucket `row_bucket`, manifest
/// `sourceBucket` `source`) into the bucket "inventory-dest" under `tag`, after `tweak` may
/// change the local copy (data files in `<dir>/data/`, manifest path given). Returns the
/// manifest's s3:// URL.
fn put_report(
    d: &Path,
    tag: &str,
    source: &str,
    objects: &[ObjectRecord],
    tweak: impl FnOnce(&Path, &Path),
) -> String {
    let rep = d.join(format!("report-{tag}"));
    let m = narward::inventory::write_report(
        &rep,
        source,
        objects,
        narward::inventory::WriteFormat::CsvGz,
        10,
    )
    .unwrap();
    let mtext = std::fs::read_to_string(&m).unwrap();
    let fixed = mtext.replace(
        &format!("inventory/{source}/config/data/"),
        &format!("inv/{tag}/data/"),
    );
    write_manifest(&m, &fixed);
    tweak(&rep, &m);
    upload("inventory-dest", &rep, Some(&format!("inv/{tag}")));
    format!(
        "s3://inventory-dest/inv/{tag}/2026-11-24T01-00Z/manifest.json?endpoint={}&region=us-east-1",
        s3_endpoint()
    )
}

fn write_manifest(m: &Path, text: &str) {
    use md5::Digest;
    std::fs::write(m, text).unwrap();
    std::fs::write(
        m.with_file_name("manifest.checksum"),
        hex::encode(md5::Md5::digest(text.as_bytes())),
    )
    .unwrap();
}

/// Index `bucket[/prefix]` from the inventory at `manifest`; any exit code.
fn index_inventory(st: &Path, bucket: &str, prefix: &str, manifest: &str) -> std::process::Output {
    narward(
        st,
        &[
            "index",
            "--json",
            "--cache",
            &s3_url(bucket, prefix),
            "--inventory",
            manifest,
            "--max-attempts",
            "1",
        ],
    )
}

/// The example cache uploaded under `prefix`, and its live index in `<d>/live`.
fn prefixed_example(d: &Path, tag: &str, prefix: &str) -> (String, narward::index::Index) {
    let b = bucket_name(tag);
    upload(&b, &repo().join("examples/cache"), Some(prefix));
    let live = d.join("live");
    narward_ok(&live, &["index", "--cache", &s3_url(&b, prefix)]);
    (b, narward::index::Index::load(&live).unwrap())
}

/// The rows an inventory of the whole bucket holds: the cache's objects with their prefix,
/// and `extra` other objects elsewhere in the bucket.
fn bucket_rows(idx: &narward::index::Index, prefix: &str, extra: usize) -> Vec<ObjectRecord> {
    let mut rows: Vec<ObjectRecord> = idx
        .objects
        .to_records()
        .iter()
        .map(|o| ObjectRecord {
            key: format!("{prefix}/{}", o.key),
            ..o.clone()
        })
        .collect();
    for i in 0..extra {
        rows.push(ObjectRecord {
            key: format!("other-data/{i}.bin"),
            ..idx.objects.to_record(0).unwrap()
        });
    }
    rows
}

#[test]
fn inventory_of_a_prefixed_cache_strips_the_prefix_and_counts_keys_outside_it() {
    let d = tempfile::tempdir().unwrap();
    let (b, live) = prefixed_example(d.path(), "invp", "nix");
    let manifest = put_report(d.path(), &b, &b, &bucket_rows(&live, "nix", 4), |_, _| {});
    let st = d.path().join("st");
    let out = index_inventory(&st, &b, "nix", &manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(m["objects"], 27, "{m}");
    assert_eq!(m["narinfos"], 13, "{m}");
    assert_eq!(m["inventory_outside_prefix"], 4, "{m}");
    assert_eq!(paths_of(&st), paths_of(&d.path().join("live")));
}

#[test]
fn inventory_data_file_with_wrong_md5_fails_the_run_in_s3() {
    let d = tempfile::tempdir().unwrap();
    let (b, live) = prefixed_example(d.path(), "invm", "nix");
    let manifest = put_report(d.path(), &b, &b, &bucket_rows(&live, "nix", 0), |rep, _| {
        // One data file loses its rows after the manifest was written.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"").unwrap();
        std::fs::write(rep.join("data/part-00001.csv.gz"), gz.finish().unwrap()).unwrap();
    });
    let st = d.path().join("st");
    let out = index_inventory(&st, &b, "nix", &manifest);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("part-00001.csv.gz") && e.contains("MD5"), "{e}");
    assert!(!narward::index::Index::exists(&st));
}

#[test]
fn inventory_row_for_another_bucket_fails_the_run_in_s3() {
    let d = tempfile::tempdir().unwrap();
    let (b, live) = prefixed_example(d.path(), "invb", "nix");
    let rows = bucket_rows(&live, "nix", 0);
    let manifest = put_report(d.path(), &b, &b, &rows, |rep, m| {
        // The second data file holds rows of another bucket (its MD5 in the manifest is
        // right: the file is as written, its rows are not the cache's).
        let other = rep.join("other");
        let om = narward::inventory::write_report(
            &other,
            "another-bucket",
            &rows[..10],
            narward::inventory::WriteFormat::CsvGz,
            10,
        )
        .unwrap();
        let _ = om;
        let bytes = std::fs::read(other.join("data/part-00000.csv.gz")).unwrap();
        std::fs::write(rep.join("data/part-00001.csv.gz"), &bytes).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
        let mut j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
        use md5::Digest;
        j["files"][1]["MD5checksum"] = hex::encode(md5::Md5::digest(&bytes)).into();
        write_manifest(m, &serde_json::to_string_pretty(&j).unwrap());
    });
    let st = d.path().join("st");
    let out = index_inventory(&st, &b, "nix", &manifest);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("part-00001.csv.gz") && e.contains("line 1") && e.contains("another-bucket"),
        "{e}"
    );
}

#[test]
fn inventory_manifest_of_another_bucket_is_refused_in_s3() {
    let d = tempfile::tempdir().unwrap();
    let (b, live) = prefixed_example(d.path(), "invs", "nix");
    let manifest = put_report(
        d.path(),
        &b,
        "some-other-bucket",
        &bucket_rows(&live, "nix", 0),
        |_, _| {},
    );
    let st = d.path().join("st");
    let out = index_inventory(&st, &b, "nix", &manifest);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("some-other-bucket") && e.contains(&b), "{e}");
}

/// `dd/Mon/yyyy:HH:MM:SS +0000` of unix seconds, as access logs write it.
fn log_time(t: i64) -> String {
    let out = std::process::Command::new("date")
        .env("LC_ALL", "C")
        .args(["-u", "-d", &format!("@{t}"), "+%d/%b/%Y:%H:%M:%S +0000"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn access_logs_of_a_prefixed_cache_keep_paths_read_recently() {
    let d = tempfile::tempdir().unwrap();
    let (b, _) = prefixed_example(d.path(), "logs", "nix");
    // libfoo-1.1 is garbage, but its narinfo was read an hour ago (the log key carries
    // the cache's prefix, as S3 writes it).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let logs = d.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let key = "nix/k36ahwak8pqilvk9a22a9c6m9piays98.narinfo";
    std::fs::write(
        logs.join("2026-11-30-00-00-00-X"),
        format!(
            "owner {b} [{}] 192.0.2.3 - REQ REST.GET.OBJECT {key} \"GET /{b}/{key} HTTP/1.1\" 200 - 113 113 7 - \"-\" \"curl\" -\n",
            log_time(now - 3600)
        ),
    )
    .unwrap();
    let base = std::fs::read_to_string(repo().join("examples/policy.toml")).unwrap();
    let policy_text = base
        .replace(
            "roots/release-",
            &format!("{}/release-", repo().join("examples/roots").display()),
        )
        .replace("# accessed_within_days = 180", "accessed_within_days = 30")
        .replace(
            "# access_logs = [\"logs/\"]",
            &format!("access_logs = [\"{}\"]", logs.display()),
        );
    let policy = d.path().join("policy.toml");
    std::fs::write(&policy, policy_text).unwrap();
    let live = d.path().join("live");
    let plan = d.path().join("plan");
    narward_ok(
        &live,
        &[
            "plan",
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    );
    let w = json(&narward_ok(
        &live,
        &[
            "why",
            "--json",
            "--plan",
            plan.to_str().unwrap(),
            "/nix/store/k36ahwak8pqilvk9a22a9c6m9piays98-libfoo-1.1",
        ],
    ));
    assert_eq!(w["decision"], "keep", "{w}");
}

/// Turn versioning on for `bucket` on the local S3 server.
fn enable_versioning(bucket: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let o = S3Options {
            bucket: bucket.into(),
            endpoint: Some(s3_endpoint()),
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let c = cache::s3_client(&o, 1).await.unwrap();
        c.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
}

/// Index the example cache in `bucket`, plan it with the example policy (which archives
/// unreachable paths and deletes an orphan NAR); the index's and the plan's JSON and the
/// text of `plan show`.
fn index_and_plan(st: &Path, bucket: &str) -> (serde_json::Value, serde_json::Value, String) {
    let idx = json(&narward_ok(
        st,
        &["index", "--json", "--cache", &s3_url(bucket, "")],
    ));
    let plan = st.join("plan");
    let policy = repo().join("examples/policy.toml");
    let p = json(&narward_ok(
        st,
        &[
            "plan",
            "--json",
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    ));
    let show = narward_ok(st, &["plan", "show", plan.to_str().unwrap()]);
    (idx, p, show)
}

#[test]
fn a_versioned_bucket_is_recorded_and_its_savings_are_conditional_on_noncurrent_expiry() {
    let d = tempfile::tempdir().unwrap();
    let b = bucket_name("ver");
    upload(&b, &repo().join("examples/cache"), None);
    enable_versioning(&b);
    let (idx, p, show) = index_and_plan(&d.path().join("v"), &b);
    let v = &idx["versioning"];
    assert_eq!(v["state"], "enabled", "{idx}");
    assert_eq!(v["source"], "GetBucketVersioning");
    // A live listing does not list versions: the bill is a lower bound, and said so.
    assert!(v["noncurrent"].is_null(), "{v}");
    let warns = idx["warnings"].to_string();
    assert!(warns.contains("lower bound"), "{warns}");
    assert_eq!(p["plan"]["versioning"]["state"], "enabled");
    let c = &p["cost"]["versioning"];
    assert_eq!(c["saving_conditional"], true, "{c}");
    assert_eq!(
        c["delete_mode"],
        "delete marker + noncurrent-version expiry"
    );
    assert_eq!(c["bill_is_lower_bound"], true);
    assert!(
        c["condition"]
            .as_str()
            .unwrap()
            .contains("NoncurrentVersionExpiration")
    );
    assert!(
        show.contains("a delete is: delete marker + noncurrent-version expiry"),
        "{show}"
    );
    assert!(show.contains("CONDITIONAL saving"), "{show}");
    assert!(show.contains("lower bound"), "{show}");
}

#[test]
fn an_unversioned_bucket_plans_plain_deletes_with_their_saving() {
    let d = tempfile::tempdir().unwrap();
    let b = bucket_name("nover");
    upload(&b, &repo().join("examples/cache"), None);
    let (idx, p, show) = index_and_plan(&d.path().join("u"), &b);
    let v = &idx["versioning"];
    assert_eq!(v["state"], "unversioned", "{idx}");
    // A bucket never versioned has no noncurrent versions: the bill is complete.
    assert_eq!(v["noncurrent"]["cells"], serde_json::json!([]), "{v}");
    let c = &p["cost"]["versioning"];
    assert_eq!(c["saving_conditional"], false, "{c}");
    assert_eq!(c["bill_is_lower_bound"], false);
    assert!(show.contains("a delete is: delete\n"), "{show}");
    assert!(!show.contains("CONDITIONAL"), "{show}");
}

/// One CSV row of an inventory of all versions.
fn version_row(
    bucket: &str,
    o: &ObjectRecord,
    version: &str,
    latest: bool,
    marker: bool,
) -> String {
    let key = narward_formats::inventory::url_encode_key(&o.key);
    format!(
        "\"{bucket}\",\"{key}\",\"{version}\",\"{latest}\",\"{marker}\",\"{}\",\"2026-01-01T00:00:00.000Z\",\"{}\",\"{}\"\n",
        if marker {
            String::new()
        } else {
            o.size.to_string()
        },
        o.etag.as_deref().unwrap_or(""),
        o.storage_class()
    )
}

#[test]
fn the_bill_of_a_versioned_bucket_counts_the_noncurrent_versions_its_inventory_lists() {
    use md5::Digest;
    let d = tempfile::tempdir().unwrap();
    let b = bucket_name("vinv");
    upload(&b, &repo().join("examples/cache"), None);
    enable_versioning(&b);
    let live = d.path().join("live");
    narward_ok(&live, &["index", "--cache", &s3_url(&b, "")]);
    let idx = narward::index::Index::load(&live).unwrap();
    let objects = idx.objects.to_records();
    let nar = objects.iter().find(|o| o.key.starts_with("nar/")).unwrap();
    let old = ObjectRecord {
        size: 3 << 20,
        storage_class: Some("DEEP_ARCHIVE".into()),
        ..nar.clone()
    };
    let manifest = put_report(d.path(), &b, &b, &objects, |rep, m| {
        let mut rows: String = objects
            .iter()
            .map(|o| version_row(&b, o, "v2", true, false))
            .collect();
        rows.push_str(&version_row(&b, &old, "v1", false, false));
        rows.push_str(&version_row(&b, nar, "v0", false, true));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, rows.as_bytes()).unwrap();
        let data = gz.finish().unwrap();
        for e in std::fs::read_dir(rep.join("data")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        std::fs::write(rep.join("data/part-00000.csv.gz"), &data).unwrap();
        let mut j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
        let key = j["files"][0]["key"]
            .as_str()
            .unwrap()
            .rsplit_once('/')
            .unwrap()
            .0
            .to_string();
        j["files"] = serde_json::json!([{
            "key": format!("{key}/part-00000.csv.gz"),
            "size": data.len(),
            "MD5checksum": hex::encode(md5::Md5::digest(&data)),
        }]);
        j["fileSchema"] = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass".into();
        write_manifest(m, &serde_json::to_string_pretty(&j).unwrap());
    });
    let st = d.path().join("st");
    let out = index_inventory(&st, &b, "", &manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(m["objects"], 27, "{m}");
    assert_eq!(m["versioning"]["state"], "enabled", "{m}");
    assert_eq!(m["versioning"]["noncurrent"]["delete_markers"], 1, "{m}");
    let plan = st.join("plan");
    let policy = repo().join("examples/policy.toml");
    let p = json(&narward_ok(
        &st,
        &[
            "plan",
            "--json",
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ],
    ));
    let c = &p["cost"];
    assert_eq!(c["versioning"]["noncurrent"]["count"], 1, "{c}");
    assert_eq!(c["versioning"]["noncurrent"]["bytes"], 3 << 20);
    assert_eq!(c["versioning"]["bill_is_lower_bound"], false);
    assert_eq!(
        c["before"]["objects"], 28,
        "the noncurrent version is billed"
    );
    let show = narward_ok(&st, &["plan", "show", plan.to_str().unwrap()]);
    assert!(show.contains("noncurrent versions: 1 (3.0 MiB)"), "{show}");
}

/// Move `key` of `bucket` to storage class `class` (a copy onto itself, as S3 allows).
fn set_class(bucket: &str, key: &str, class: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let o = S3Options {
            bucket: bucket.into(),
            endpoint: Some(s3_endpoint()),
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let c = cache::s3_client(&o, 1).await.unwrap();
        c.copy_object()
            .bucket(bucket)
            .key(key)
            .copy_source(format!("{bucket}/{key}"))
            .storage_class(class.into())
            .send()
            .await
            .unwrap();
    });
}

/// The example policy archiving to `class` with no minimum size, roots by absolute path.
fn policy_archiving_to(d: &Path, class: &str) -> std::path::PathBuf {
    let ex = repo().join("examples");
    let t = std::fs::read_to_string(ex.join("policy.toml"))
        .unwrap()
        .replace("\"roots/", &format!("\"{}/roots/", ex.display()))
        .replace(
            "archive_storage_class = \"DEEP_ARCHIVE\"",
            &format!("archive_storage_class = \"{class}\""),
        )
        .replace("archive_min_size = \"128KiB\"", "archive_min_size = \"0\"");
    let p = d.join(format!("policy-{class}.toml"));
    std::fs::write(&p, t).unwrap();
    p
}

#[test]
fn cold_nars_on_s3_are_hidden_not_copied_and_kept_cold_nars_are_the_restore_set() {
    let d = tempfile::tempdir().unwrap();
    let b = bucket_name("cold");
    upload(&b, &repo().join("examples/cache"), None);
    let st = d.path().join("st");
    let policy = policy_archiving_to(d.path(), "GLACIER");
    let plan_of = |name: &str| {
        let out = st.join(name);
        narward_ok(&st, &["index", "--cache", &s3_url(&b, "")]);
        let text = narward_ok(
            &st,
            &[
                "plan",
                "--policy",
                policy.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        (out.clone(), narward::plan::Plan::read(&out).unwrap(), text)
    };
    let (_, before, _) = plan_of("p1");
    let archived: Vec<&String> = before
        .paths
        .iter()
        .filter(|p| p.decision == narward::plan::Decision::Archive)
        .filter_map(|p| p.nar_key.as_ref())
        .filter(|k| before.object(k).is_some())
        .collect();
    assert_eq!(archived.len(), 2, "{archived:?}");
    let kept = before
        .paths
        .iter()
        .find(|p| {
            p.decision == narward::plan::Decision::Keep
                && p.nar_key
                    .as_ref()
                    .is_some_and(|k| before.object(k).is_some())
        })
        .unwrap();
    let kept_nar = kept.nar_key.clone().unwrap();
    // One removed NAR already in DEEP_ARCHIVE (the policy says GLACIER), one readable in
    // GLACIER_IR; one kept path's NAR in DEEP_ARCHIVE.
    set_class(&b, archived[0], "DEEP_ARCHIVE");
    set_class(&b, archived[1], "GLACIER_IR");
    set_class(&b, &kept_nar, "DEEP_ARCHIVE");
    let (dir, plan, text) = plan_of("p2");
    let cold = plan.object(archived[0]).unwrap();
    assert_eq!(cold.storage_class.as_deref(), Some("DEEP_ARCHIVE"));
    assert_eq!(cold.transition_to, None);
    let transition = std::fs::read_to_string(dir.join("manifests/transition.csv")).unwrap();
    assert!(!transition.contains(archived[0].as_str()), "{transition}");
    assert!(transition.contains(archived[1].as_str()), "{transition}");
    let hide = std::fs::read_to_string(dir.join("manifests/hide.csv")).unwrap();
    assert_eq!(hide.lines().count(), 3, "{hide}");
    // The kept path whose NAR is archived: the restore set, warned about, explained.
    assert_eq!(plan.restore.len(), 1, "{:?}", plan.restore);
    assert_eq!(plan.restore[0].nar_key, kept_nar);
    let restore = std::fs::read_to_string(dir.join("manifests/restore.csv")).unwrap();
    assert_eq!(restore.trim(), format!("{b},{kept_nar}"));
    assert!(text.contains("warning: 1 kept paths"), "{text}");
    let why = narward_ok(&st, &["why", "--plan", dir.to_str().unwrap(), &kept.path]);
    assert!(why.contains("must be restored"), "{why}");
}
