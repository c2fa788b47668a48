use super::stats::{AccessStats, DAY};
use super::store;
use narward_formats::keys::Category;
use std::path::Path;

const H1: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c";
const H2: &str = "00bgd045z0d4icpbc2yyz4gx48ak44la";
/// 06/Feb/2019:00:00:38 +0000.
const T0: i64 = 1_549_411_238;

/// A log line for `op` on `key` on day 6 + `day` of Feb 2019 with `status`.
pub fn line(op: &str, key: &str, day: u32, status: &str) -> String {
    format!(
        "owner nix-cache [{:02}/Feb/2019:00:00:38 +0000] 192.0.2.3 - REQ {op} {key} \"GET /{key} HTTP/1.1\" {status} - 113 113 7 - \"-\" \"curl\" - extra trailing fields",
        6 + day
    )
}

fn get(key: &str, day: u32, status: &str) -> String {
    line("REST.GET.OBJECT", key, day, status)
}

#[test]
fn hits_misses_and_last_access_are_counted_per_key() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log1");
    let text = [
        get(&format!("{H1}.narinfo"), 0, "404"),
        get(&format!("{H1}.narinfo"), 1, "404"),
        get(&format!("{H1}.narinfo"), 2, "200"),
        line("REST.HEAD.OBJECT", &format!("{H1}.narinfo"), 1, "304"),
        get("nar/abc.nar.xz", 0, "403"),
        line("REST.PUT.OBJECT", "nar/abc.nar.xz", 0, "200"),
        get("-", 0, "200"),
    ]
    .join("\n");
    std::fs::write(&log, text).unwrap();
    let (s, rep) = store::ingest(&d.path().join("state"), &[log], 0).unwrap();
    let k = &s.keys[&format!("{H1}.narinfo")];
    assert_eq!((k.requests, k.hits, k.misses), (4, 2, 2));
    assert_eq!(k.last_access, Some(T0 + 2 * DAY));
    assert_eq!(k.miss_days.len(), 2);
    let nar = &s.keys["nar/abc.nar.xz"];
    assert_eq!((nar.requests, nar.hits, nar.misses), (1, 0, 0));
    assert_eq!(s.other_requests, 1);
    assert_eq!(
        (rep.reads, rep.hits, rep.misses, rep.malformed),
        (5, 2, 2, 0)
    );
    assert_eq!(rep.lines, 7);
}

#[test]
fn malformed_multibyte_and_garbage_lines_are_counted_and_shown_never_fatal() {
    let d = tempfile::tempdir().unwrap();
    let logs = d.path().join("logs");
    std::fs::create_dir_all(logs.join("sub")).unwrap();
    let f = logs.join("sub/2019-02-06");
    let mut bytes = [
        get(&format!("{H1}.narinfo"), 0, "404"),
        "garbage".into(),
        get(&format!("{H1}.narinfo"), 0, "404").replace("+0000", "+0é0"),
        get(&format!("{H1}.narinfo"), 0, "4€4"),
        String::new(),
        "[unterminated é".into(),
        get("bad%zzkey", 0, "200"),
    ]
    .join("\n")
    .into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe not UTF-8\r\n");
    bytes.extend_from_slice(get(&format!("{H2}.narinfo"), 0, "404").as_bytes());
    std::fs::write(&f, bytes).unwrap();
    let (s, rep) = store::ingest(&d.path().join("state"), &[logs], 0).unwrap();
    assert_eq!(rep.malformed, 6, "{:?}", rep.malformed_examples);
    assert_eq!(s.malformed, 6);
    assert_eq!(rep.malformed_examples.len(), super::logs::MAX_EXAMPLES);
    let ex = rep.malformed_examples.join("\n");
    let name = std::fs::canonicalize(&f).unwrap().display().to_string();
    assert!(ex.contains(&format!("{name}:2:")), "{ex}");
    assert!(
        ex.contains(&format!("{name}:3:")) && ex.contains("+0é0"),
        "{ex}"
    );
    assert!(
        ex.contains(&format!("{name}:4:")) && ex.contains("4€4"),
        "{ex}"
    );
    assert_eq!(s.keys[&format!("{H1}.narinfo")].misses, 1);
    assert_eq!(s.keys[&format!("{H2}.narinfo")].misses, 1);
}

#[test]
fn ingest_is_incremental_unchanged_files_are_skipped_and_appended_lines_read_once() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let log = d.path().join("log");
    let miss = get(&format!("{H1}.narinfo"), 0, "404");
    std::fs::write(&log, format!("{miss}\n")).unwrap();
    store::ingest(&state, std::slice::from_ref(&log), 0).unwrap();
    let (s, rep) = store::ingest(&state, std::slice::from_ref(&log), 0).unwrap();
    assert_eq!((rep.files_unchanged, rep.lines), (1, 0));
    assert_eq!(s.keys[&format!("{H1}.narinfo")].misses, 1);
    // Appended: only the new line is read, with its true line number.
    std::fs::write(&log, format!("{miss}\n{miss}\ngarbage\n")).unwrap();
    let (s, rep) = store::ingest(&state, std::slice::from_ref(&log), 0).unwrap();
    assert_eq!((rep.files_appended, rep.lines, rep.malformed), (1, 2, 1));
    assert!(
        rep.malformed_examples[0].contains(":3:"),
        "{:?}",
        rep.malformed_examples
    );
    assert_eq!(s.keys[&format!("{H1}.narinfo")].misses, 2);
    // Rewritten: reported, not counted twice.
    std::fs::write(
        &log,
        format!("{}\n", get(&format!("{H2}.narinfo"), 0, "404")),
    )
    .unwrap();
    let (s, rep) = store::ingest(&state, std::slice::from_ref(&log), 0).unwrap();
    assert_eq!(rep.files_changed.len(), 1);
    assert!(!s.keys.contains_key(&format!("{H2}.narinfo")));
    assert_eq!(s.keys[&format!("{H1}.narinfo")].misses, 2);
    let (_, reloaded) = store::load(&state).unwrap();
    assert_eq!(reloaded, s);
}

fn damage(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x20;
    std::fs::write(p, b).unwrap();
}

#[test]
fn damaged_access_state_is_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let log = d.path().join("log");
    std::fs::write(&log, get(&format!("{H1}.narinfo"), 0, "404")).unwrap();
    store::ingest(&state, &[log], 0).unwrap();
    for f in [store::STATS_FILE, "meta.json"] {
        let p = store::access_dir(&state).join(f);
        let keep = std::fs::read(&p).unwrap();
        damage(&p);
        let e = format!("{:#}", store::load(&state).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "{e}");
        std::fs::write(&p, keep).unwrap();
    }
    store::load(&state).unwrap();
}

#[test]
fn demand_counts_narinfo_misses_within_the_window_and_rates_per_kind() {
    let mut s = AccessStats::default();
    let add = |s: &mut AccessStats, l: String| {
        s.add(
            &narward_formats::access_log::parse_request(&l)
                .unwrap()
                .unwrap(),
        );
    };
    for day in [0, 10, 11, 12] {
        add(&mut s, get(&format!("cache/{H1}.narinfo"), day, "404"));
    }
    add(&mut s, get(&format!("cache/{H2}.narinfo"), 12, "404"));
    add(&mut s, get(&format!("other/{H2}.narinfo"), 12, "404"));
    add(
        &mut s,
        get(&format!("cache/nar/{}.nar.xz", "1".repeat(52)), 12, "200"),
    );
    add(&mut s, get(&format!("cache/{H2}.ls"), 12, "404"));
    let now = T0 + 12 * DAY;
    let d = s.narinfo_demand("cache/", now, 5, 2);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].key.as_str(), d[0].misses),
        (&*format!("{H1}.narinfo"), 3)
    );
    let d = s.narinfo_demand("cache/", now, 30, 1);
    assert_eq!(d.iter().map(|d| d.misses).collect::<Vec<_>>(), [4, 1]);
    let r = s.rates("cache/");
    let ni = r.iter().find(|r| r.kind == Category::Narinfo).unwrap();
    assert_eq!((ni.keys, ni.requests, ni.misses), (2, 5, 5));
    assert_eq!(ni.miss_rate(), 1.0);
    let nar = r.iter().find(|r| r.kind == Category::Nar).unwrap();
    assert_eq!(nar.hit_rate(), 1.0);
    assert!(
        r.iter()
            .any(|r| r.kind == Category::Listing && r.misses == 1)
    );
    assert_eq!(s.last_access("cache/").len(), 1);
}

#[test]
fn an_overlong_line_is_malformed_a_touched_file_unchanged_a_shrunk_one_changed() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let log = d.path().join("log");
    let miss = get(&format!("{H1}.narinfo"), 0, "404");
    let long = "x".repeat(super::logs::MAX_LINE + 10);
    std::fs::write(&log, format!("{miss}\n{long}\n{miss}\n")).unwrap();
    let (s, rep) = store::ingest(&state, std::slice::from_ref(&log), 0).unwrap();
    assert_eq!((rep.lines, rep.malformed, rep.misses), (3, 1, 2));
    assert!(
        rep.malformed_examples[0].contains(":2: longer than"),
        "{:?}",
        rep.malformed_examples
    );
    assert_eq!(s.keys[&format!("{H1}.narinfo")].misses, 2);
    // Same bytes, new mtime: nothing new is counted.
    let f = std::fs::File::options().write(true).open(&log).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    let (s, rep) = store::ingest(&state, std::slice::from_ref(&log), 0).unwrap();
    assert_eq!(
        (rep.files_unchanged, rep.files_changed.len(), rep.lines),
        (1, 0, 0)
    );
    assert_eq!(s.keys[&format!("{H1}.narinfo")].misses, 2);
    // Shrunk: reported as changed, not read again.
    std::fs::write(&log, format!("{miss}\n")).unwrap();
    let (s, rep) = store::ingest(&state, std::slice::from_ref(&log), 0).unwrap();
    assert_eq!(rep.files_changed.len(), 1);
    assert_eq!(s.keys[&format!("{H1}.narinfo")].misses, 2);
}

/// What `keep.access_logs` makes of the logs under `dir` (given relative to the policy).
fn policy_last_access(base: &Path, logs: &str) -> std::collections::HashMap<String, i64> {
    let text = format!("[keep]\naccessed_within_days = 9\naccess_logs = [\"{logs}\"]\n");
    crate::policy::Policy::from_str(&text, base, "p")
        .unwrap()
        .last_access
}

#[test]
fn keep_access_logs_and_ingested_statistics_count_the_same_reads() {
    let d = tempfile::tempdir().unwrap();
    let logs = d.path().join("logs");
    std::fs::create_dir_all(logs.join("sub")).unwrap();
    let a = [
        get(&format!("cache/{H1}.narinfo"), 0, "200"),
        get(&format!("cache/{H1}.narinfo"), 3, "404"),
        line("REST.HEAD.OBJECT", &format!("cache/{H1}.narinfo"), 2, "304"),
        get("cache/nar/a.nar.xz", 1, "206"),
        get("cache/nar/b.nar.xz", 4, "403"),
        get("cache/nar/c.nar.xz", 4, "2x0"),
        line("REST.PUT.OBJECT", "cache/nar/d.nar.xz", 5, "200"),
        get("-", 5, "200"),
        "garbage".into(),
        "x".repeat(super::logs::MAX_LINE + 1),
    ]
    .join("\n");
    std::fs::write(logs.join("a"), a).unwrap();
    let mut b = get(&format!("other/{H2}.narinfo"), 6, "200").into_bytes();
    b.extend_from_slice(b"\n\xff not UTF-8\n");
    b.extend_from_slice(get(&format!("{H2}.narinfo"), 7, "206").as_bytes());
    std::fs::write(logs.join("sub/b"), b).unwrap();

    let from_policy = policy_last_access(d.path(), "logs/");
    let (ingested, rep) =
        store::ingest(&d.path().join("state"), std::slice::from_ref(&logs), 0).unwrap();
    assert_eq!(from_policy, ingested.last_access(""));
    // The policy's reader is the ingest's: the same per-key reads, hits and misses.
    let mut read = AccessStats::default();
    super::logs::read(&[logs], &mut Default::default(), &mut read).unwrap();
    assert_eq!(read, ingested);
    // What they agree on is the one classification.
    let mut keys: Vec<_> = from_policy.keys().cloned().collect();
    keys.sort();
    let want = [
        format!("{H2}.narinfo"),
        format!("cache/{H1}.narinfo"),
        "cache/nar/a.nar.xz".into(),
        format!("other/{H2}.narinfo"),
    ];
    assert_eq!(keys, want);
    assert_eq!(from_policy[&format!("cache/{H1}.narinfo")], T0 + 2 * DAY);
    let h1 = &ingested.keys[&format!("cache/{H1}.narinfo")];
    assert_eq!((h1.requests, h1.hits, h1.misses), (3, 2, 1));
    assert_eq!(ingested.keys["cache/nar/b.nar.xz"].requests, 1);
    assert_eq!((rep.malformed, ingested.other_requests), (4, 1));
    // Prefixed keys map the same way on both paths.
    let for_cache = super::last_access_for_cache(&from_policy, "cache/");
    assert_eq!(*for_cache, ingested.last_access("cache/"));
    assert_eq!(for_cache.len(), 2);
}

#[test]
fn status_rules_apply_identically_to_keep_access_logs_and_ingest() {
    // (operation, key, status, counts as a read for keep.accessed_within_days)
    let cases = [
        ("REST.GET.OBJECT", "k.narinfo", "200", true),
        ("REST.GET.OBJECT", "k.narinfo", "206", true),
        ("REST.HEAD.OBJECT", "k.narinfo", "304", true),
        ("REST.GET.OBJECT", "k.narinfo", "404", false),
        ("REST.GET.OBJECT", "k.narinfo", "403", false),
        ("REST.GET.OBJECT", "k.narinfo", "500", false),
        ("REST.GET.OBJECT", "k.narinfo", "-", false),
        ("REST.GET.OBJECT", "k.narinfo", "2x0", false),
        ("REST.PUT.OBJECT", "k.narinfo", "200", false),
        // A line naming no object is not a read of a key `-`.
        ("REST.GET.OBJECT", "-", "200", false),
    ];
    for (op, key, status, read) in cases {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("log"), line(op, key, 0, status)).unwrap();
        let from_policy = policy_last_access(d.path(), "log");
        let (s, _) = store::ingest(&d.path().join("state"), &[d.path().join("log")], 0).unwrap();
        let hits = s.keys.get(key).map_or(0, |k| k.hits);
        assert_eq!(from_policy.contains_key(key), read, "{op} {key} {status}");
        assert_eq!(hits > 0, read, "{op} {key} {status}");
        assert_eq!(from_policy, s.last_access(""), "{op} {key} {status}");
    }
}

#[test]
fn keep_access_logs_count_and_show_malformed_lines_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("log1");
    let mut bytes = [
        get("a.narinfo", 0, "200"),
        "garbage".into(),
        get("b.narinfo", 0, "200").replace("+0000", "+0é0"),
        String::new(),
        get("a.narinfo", 1, "200"),
    ]
    .join("\n")
    .into_bytes();
    bytes.extend_from_slice(b"\r\n\xff\xfe not UTF-8\n");
    std::fs::write(&f, bytes).unwrap();
    let mut s = AccessStats::default();
    let rep = super::logs::read(std::slice::from_ref(&f), &mut Default::default(), &mut s).unwrap();
    assert_eq!((rep.malformed, s.last_access("").len()), (3, 1));
    assert_eq!(s.last_access("")["a.narinfo"], T0 + DAY);
    let w = rep.warnings().join("\n");
    let name = std::fs::canonicalize(&f).unwrap().display().to_string();
    assert!(w.contains("3 malformed lines"), "{w}");
    assert!(w.contains(&format!("{name}:6: not UTF-8")), "{w}");
    assert!(w.contains(&format!("{name}:2:")), "{w}");
    assert!(
        w.contains(&format!("{name}:3:")) && w.contains("+0é0"),
        "{w}"
    );
}

#[test]
fn access_logs_of_a_prefixed_cache_match_its_keys() {
    let last: std::collections::HashMap<String, i64> = [
        ("cache/a.narinfo".to_string(), 1),
        ("other/b.narinfo".to_string(), 2),
        ("c.narinfo".to_string(), 3),
    ]
    .into();
    let prefix = super::cache_prefix("s3://bucket/cache?endpoint=http://x");
    assert_eq!(prefix, "cache/");
    let m = super::last_access_for_cache(&last, &prefix);
    assert_eq!(m.keys().collect::<Vec<_>>(), ["a.narinfo"]);
    assert_eq!(super::last_access_for_cache(&last, "").len(), 3);
    assert_eq!(super::cache_prefix("file:///tmp/x"), "");
}
