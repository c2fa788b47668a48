//! `narward verify` re-reads the live cache (file:// and S3 on moto) and names every
//! narinfo whose NAR is missing or archived, every incomplete closure and every narinfo
//! that does not parse; exit 1 then, 0 when clean.

mod common;
use common::*;
use std::path::Path;
use std::process::Output;

/// The known defect of the example cache (app-one-2.9's NAR is missing on purpose, for
/// the audit demo): removed, so the copy starts clean.
const BROKEN: &str = "27xrcg1gcw6gxjhk3v3mbgw4i0fk6siv.narinfo";

fn clean_copy(dir: &Path) -> std::path::PathBuf {
    let c = dir.join("cache");
    copy_tree(&repo().join("examples/cache"), &c);
    std::fs::remove_file(c.join(BROKEN)).unwrap();
    c
}

fn verify(state: &Path, cache: &str) -> (i32, serde_json::Value) {
    let out: Output = narward(state, &["verify", "--json", "--cache", cache]);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, json(&String::from_utf8_lossy(&out.stdout)))
}

/// (narinfo file name, its URL) of some narinfo, and a narinfo another one references.
fn pick(cache: &Path) -> (String, String, String) {
    let mut any = None;
    let mut referenced = None;
    let mut texts = Vec::new();
    for e in std::fs::read_dir(cache).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".narinfo") {
            texts.push((
                name.clone(),
                std::fs::read_to_string(cache.join(&name)).unwrap(),
            ));
        }
    }
    texts.sort();
    for (name, t) in &texts {
        let url = t.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
        any.get_or_insert((name.clone(), url.to_string()));
        let refs = t
            .lines()
            .find_map(|l| l.strip_prefix("References: "))
            .unwrap_or("");
        for r in refs.split_whitespace() {
            let h = &r[..32];
            if !name.starts_with(h) && texts.iter().any(|(n, _)| n.starts_with(h)) {
                referenced.get_or_insert(format!("{h}.narinfo"));
            }
        }
    }
    let (n, u) = any.unwrap();
    (n, u, referenced.expect("some narinfo references another"))
}

#[test]
fn verify_on_file_cache_names_missing_nars_broken_closures_and_bad_narinfos() {
    let d = tempfile::tempdir().unwrap();
    let c = clean_copy(d.path());
    let st = d.path().join("st");
    let url = format!("file://{}", c.display());
    let (code, r) = verify(&st, &url);
    assert_eq!((code, r["problems"].as_u64()), (0, Some(0)), "{r}");
    assert_eq!(r["narinfos"], 12);

    let (_, nar_url, referenced) = pick(&c);
    std::fs::remove_file(c.join(&nar_url)).unwrap();
    let (code, r) = verify(&st, &url);
    assert_eq!(code, 1);
    assert_eq!(r["missing_nars"]["count"], 1, "{r}");
    assert!(
        r["missing_nars"]["examples"][0]
            .as_str()
            .unwrap()
            .ends_with(&nar_url),
        "{r}"
    );

    std::fs::remove_file(c.join(&referenced)).unwrap();
    std::fs::write(c.join(BROKEN), "not a narinfo\n").unwrap();
    let (code, r) = verify(&st, &url);
    assert_eq!(code, 1);
    assert!(
        r["missing_references"]["count"].as_u64().unwrap() >= 1,
        "{r}"
    );
    assert!(
        r["missing_references"]["examples"][0]
            .as_str()
            .unwrap()
            .contains(&referenced[..32]),
        "{r}"
    );
    assert_eq!(r["unparseable_narinfos"]["count"], 1, "{r}");
    // The text report names them too.
    let out = narward(&st, &["verify", "--cache", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains(&nar_url) && text.contains(BROKEN), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_on_s3_sees_archived_nars_until_restored() {
    let d = tempfile::tempdir().unwrap();
    let c = clean_copy(d.path());
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let b = format!("nw-verify-{}", n % 1_000_000_000);
    upload(&b, &c, None);
    let url = format!("s3://{b}?endpoint={}&region=us-east-1", s3_endpoint());
    let st = d.path().join("st");
    let st2 = st.clone();
    let u2 = url.clone();
    let run = move || {
        let (st, u) = (st2.clone(), u2.clone());
        tokio::task::spawn_blocking(move || verify(&st, &u))
    };
    let (code, r) = run().await.unwrap();
    assert_eq!(code, 0, "{r}");

    let (_, nar_url, _) = pick(&c);
    let opts = narward::cache::S3Options {
        bucket: b.clone(),
        endpoint: Some(s3_endpoint()),
        region: Some("us-east-1".into()),
        ..Default::default()
    };
    let client = narward::cache::s3_client(&opts, 3).await.unwrap();
    client
        .copy_object()
        .bucket(&b)
        .key(&nar_url)
        .copy_source(format!("{b}/{nar_url}"))
        .storage_class(aws_sdk_s3::types::StorageClass::DeepArchive)
        .send()
        .await
        .unwrap();
    let (code, r) = run().await.unwrap();
    assert_eq!(code, 1);
    assert_eq!(r["archived_nars"]["count"], 1, "{r}");
    assert!(
        r["archived_nars"]["examples"][0]
            .as_str()
            .unwrap()
            .contains(&nar_url)
    );
    // Restored (moto restores at once): readable again.
    client
        .restore_object()
        .bucket(&b)
        .key(&nar_url)
        .restore_request(aws_sdk_s3::types::RestoreRequest::builder().days(1).build())
        .send()
        .await
        .unwrap();
    let (code, r) = run().await.unwrap();
    assert_eq!(code, 0, "{r}");
    client
        .delete_object()
        .bucket(&b)
        .key(&nar_url)
        .send()
        .await
        .unwrap();
    let (code, r) = run().await.unwrap();
    assert_eq!(
        (code, r["missing_nars"]["count"].as_u64()),
        (1, Some(1)),
        "{r}"
    );
}
