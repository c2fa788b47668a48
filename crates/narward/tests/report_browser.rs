//! `narward report` on the bundled example cache, checked in a real headless browser:
//! the page renders without console messages, the screenshot shows the charts, and the
//! numbers reconcile with the cache itself.
//!
//! Needs Debian's chromium at /usr/bin/chromium (scripts/install-test-deps.sh installs it;
//! CI runs that script). Without it the test fails: a report nobody has looked at in a
//! browser is not tested.

mod common;
use common::*;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium() -> &'static str {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is not installed: run `bash scripts/install-test-deps.sh` (CI installs it); \
         the HTML report must be checked in a real browser"
    );
    CHROMIUM
}

/// Screenshot `page` with headless chromium; returns chromium's stderr (its log).
fn screenshot(page: &Path, png: &Path, profile: &Path) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait for chromium") {
            let log = reader.join().expect("stderr reader");
            assert!(st.success(), "chromium failed ({st}):\n{log}");
            return log;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Console messages in chromium's log (`…:INFO:CONSOLE:1] "msg", source: …` in current
/// versions, `CONSOLE(1)` in older ones). The report has no script, so any is a failure.
fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Uncaught")
                || l.contains("ERR_FILE_NOT_FOUND")
                || l.contains("net::ERR_")
        })
        .collect()
}

struct Pixels {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn decode(png: &Path) -> Pixels {
    let f = std::fs::File::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    let mut d = png::Decoder::new(BufReader::new(f));
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = d.read_info().expect("a PNG");
    let mut buf = vec![0u8; r.output_buffer_size().expect("buffer size")];
    let info = r.next_frame(&mut buf).expect("a frame");
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Grayscale => 1,
        png::ColorType::Indexed => unreachable!("EXPAND turns palettes into RGB"),
    };
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(step)
        .map(|p| {
            if step >= 3 {
                [p[0], p[1], p[2]]
            } else {
                [p[0], p[0], p[0]]
            }
        })
        .collect();
    Pixels {
        width: info.width,
        height: info.height,
        rgb,
    }
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

fn dir_bytes(d: &Path) -> (u64, u64) {
    let mut n = 0;
    let mut b = 0;
    for e in std::fs::read_dir(d).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let (n2, b2) = dir_bytes(&e.path());
            n += n2;
            b += b2;
        } else {
            n += 1;
            b += e.metadata().unwrap().len();
        }
    }
    (n, b)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn report_renders_in_chromium_and_reconciles_with_the_cache() {
    chromium();
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let examples = repo().join("examples");
    let cache = examples.join("cache");
    let meta = json(&narward_ok(
        &state,
        &[
            "index",
            "--json",
            "--cache",
            &format!("file://{}", cache.display()),
        ],
    ));
    let plan = d.path().join("plan-archive");
    let plan_delete = d.path().join("plan-delete");
    for (policy, out) in [("policy.toml", &plan), ("policy-delete.toml", &plan_delete)] {
        narward_ok(
            &state,
            &[
                "plan",
                "--policy",
                s(&examples.join(policy)),
                "--out",
                s(out),
            ],
        );
    }
    let out = d.path().join("report");
    let text = narward_ok(
        &state,
        &[
            "report",
            "--policy",
            s(&examples.join("policy.toml")),
            "--plan",
            s(&plan),
            "--plan",
            s(&plan_delete),
            "--out",
            s(&out),
        ],
    );
    assert!(text.contains("report.html"), "{text}");
    for f in ["report.html", "report.json", "report.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    // Reconciliation: the report's totals are the index's, and the cache's own files.
    let r = json(&std::fs::read_to_string(out.join("report.json")).unwrap());
    let (files, bytes) = dir_bytes(&cache);
    assert_eq!(r["totals"]["objects"], meta["objects"]);
    assert_eq!(r["totals"]["objects"].as_u64(), Some(files));
    assert_eq!(r["totals"]["bytes"].as_u64(), Some(bytes));
    assert_eq!(r["bill"]["objects"].as_u64(), Some(files));
    assert_eq!(r["bill"]["bytes"].as_u64(), Some(bytes));
    let sum = |v: &serde_json::Value, k: &str| -> u64 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum(&r["bill"]["by_class"], "bytes"), bytes);
    assert_eq!(sum(&r["bill"]["by_category"], "bytes"), bytes);
    assert_eq!(
        sum(&r["growth"]["months"], "bytes") + r["growth"]["undated"]["bytes"].as_u64().unwrap(),
        bytes
    );
    assert_eq!(sum(&r["composition"]["size_histogram"], "objects"), files);
    // The example's releases (examples/README.md): closures of 5 and 9 paths, 10 in the
    // union, 3 garbage paths outside.
    let sets = &r["root_sets"]["sets"];
    assert_eq!(sets[0]["label"], "release-a.txt");
    assert_eq!(sets[0]["closure_paths"], 5);
    assert_eq!(sets[1]["closure_paths"], 9);
    assert_eq!(r["root_sets"]["union"]["count"], 10);
    assert_eq!(r["root_sets"]["outside"]["count"], 3);
    assert_eq!(r["plans"].as_array().unwrap().len(), 2);
    assert_eq!(r["plans"][0]["name"], "plan-archive");
    // Deleting saves something; the archive plan's NARs are below its minimum size, so
    // it only hides them.
    assert!(
        r["plans"][1]["cost"]["monthly_saving_usd"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(r["plans"][0]["cost"]["one_time"]["transitions"]["count"], 0);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("plan-delete") && md.contains("## Plans"),
        "{md}"
    );

    // Self-contained: no script, nothing fetched from elsewhere.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<script"), "the report must need no script");
    for bad in ["src=\"http", "href=\"http", "url(http", "@import", "<link "] {
        assert!(
            !html.contains(bad),
            "the report references something outside: {bad}"
        );
    }

    // The browser: no console message, and a screenshot that shows the charts.
    let png = d.path().join("shot.png");
    let log = screenshot(&out.join("report.html"), &png, &d.path().join("profile"));
    let console = console_lines(&log);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let px = decode(&png);
    assert_eq!((px.width, px.height), (1280, 2000));
    let white = px
        .rgb
        .iter()
        .filter(|p| p.iter().all(|c| *c >= 245))
        .count();
    let colours: std::collections::HashSet<[u8; 3]> = px.rgb.iter().copied().collect();
    assert!(
        white < px.rgb.len() * 9 / 10,
        "the screenshot is nearly blank ({white} of {} pixels white)",
        px.rgb.len()
    );
    assert!(
        colours.len() > 200,
        "only {} distinct colours",
        colours.len()
    );
    // Bars in the NAR colour (#2563eb) and the header's navy (#0f172a) are on screen.
    let nar_blue = px
        .rgb
        .iter()
        .filter(|p| near(**p, [0x25, 0x63, 0xeb]))
        .count();
    assert!(
        nar_blue > 2000,
        "no chart bars in the screenshot ({nar_blue} NAR-blue pixels)"
    );
    let navy = px
        .rgb
        .iter()
        .filter(|p| near(**p, [0x0f, 0x17, 0x2a]))
        .count();
    assert!(
        navy > 1000,
        "no header in the screenshot ({navy} navy pixels)"
    );
    if let Some(keep) = std::env::var_os("NARWARD_KEEP_SCREENSHOT") {
        std::fs::copy(&png, PathBuf::from(keep)).unwrap();
    }
}

/// The console check above must be able to fail: a page with a script error is caught.
#[test]
fn the_console_check_catches_a_script_error() {
    chromium();
    let d = tempfile::tempdir().unwrap();
    let page = d.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>bad</p><script>console.error('boom'); notDefined();</script></body></html>",
    )
    .unwrap();
    let log = screenshot(&page, &d.path().join("bad.png"), &d.path().join("profile"));
    let console = console_lines(&log);
    assert!(
        console.iter().any(|l| l.contains("notDefined")),
        "chromium's log format changed: the console check would miss errors. Log:\n{log}"
    );
}
