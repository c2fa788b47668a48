//! The throttled-endpoint section of BENCHMARKS.md: merged into existing results without
//! changing anything else, and rendered with its verdicts.

use narward_bench::report::markdown;
use narward_bench::run::Results;
use narward_bench::throttle::{ThrottleResults, ThrottleRun};
use std::path::Path;

fn repo_results() -> Results {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results.json");
    let mut r: Results = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    r.throttle = None;
    r
}

fn run(allowed: Option<f64>, forwarded: u64, seconds: f64) -> ThrottleRun {
    let achieved = forwarded as f64 / seconds;
    ThrottleRun {
        allowed_rps: allowed,
        objects: forwarded / 5,
        forwarded,
        slow_down: 7,
        seconds,
        achieved_rps: achieved,
        ratio: allowed.map(|r| achieved / r),
        failed_objects: 0,
        retries: 3,
        rate_now: 20.0,
        rate_lowest: 10.0,
    }
}

#[test]
fn the_throttle_section_is_added_without_changing_the_rest_of_the_report() {
    let base = repo_results();
    let json = Path::new("results.json");
    let without = markdown(&base, json);
    assert!(!without.contains("Throttled endpoint"));
    let mut with = base.clone();
    with.throttle = Some(ThrottleResults {
        started_unix: 1,
        command: "narward-bench run --only throttle".into(),
        narward_commit: "abc".into(),
        endpoint: "moto".into(),
        seconds_per_run: 20.0,
        runs: vec![
            run(None, 3000, 10.0),
            run(Some(50.0), 1000, 25.0),
            run(Some(200.0), 4000, 20.5),
            run(Some(800.0), 3000, 10.0),
        ],
    });
    let md = markdown(&with, json);
    // Everything else is as before: the section is inserted before the notes.
    let (head, tail) = without.split_once("## Notes").unwrap();
    assert!(md.starts_with(head) && md.ends_with(tail));
    assert!(md.contains("## Throttled endpoint: achieved request rate"));
    assert!(
        md.contains("| 50 | 200 | 1000 | 7 | 25.0 s | 40.0 | 80.0 % ❌ |"),
        "{md}"
    );
    assert!(
        md.contains("| 200 | 800 | 4000 | 7 | 20.5 s | 195.1 | 97.6 % ✅ |"),
        "{md}"
    );
    assert!(
        md.contains("R above the ceiling"),
        "800 > the ceiling of 300"
    );
    assert!(md.contains("Below target at R = 50: its 1000 requests take 20.0 s"));
    // And it survives the JSON round trip (a later full run keeps it).
    let back: Results = serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
    assert_eq!(markdown(&back, json), md);
}
