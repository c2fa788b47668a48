//! The report's access section: hit and miss rates per kind of object, from the access
//! statistics (`narward access-logs ingest`). Pure; `report` adds it when the state
//! directory has access statistics.

use crate::access::AccessStats;
use narward_formats::keys::Category;
use serde::Serialize;
use std::fmt::Write;

/// The kinds always shown (with zeros when the logs name none).
pub const KINDS: [Category; 5] = [
    Category::Narinfo,
    Category::Nar,
    Category::Listing,
    Category::Log,
    Category::DebugInfo,
];

/// Hit and miss rates of one kind of object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindRow {
    pub kind: Category,
    /// Keys of this kind the logs name.
    pub keys: u64,
    /// Reads (GET/HEAD) of any outcome.
    pub requests: u64,
    /// Reads answered 200, 206 or 304.
    pub hits: u64,
    /// Reads answered 404.
    pub misses: u64,
    /// hits / requests (0 without requests).
    pub hit_rate: f64,
    /// misses / requests (0 without requests).
    pub miss_rate: f64,
}

/// The access section of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessSection {
    /// The five kinds of [`KINDS`], then any other kind the logs name.
    pub kinds: Vec<KindRow>,
    /// Log lines read in all, and how many were malformed (not counted).
    pub lines: u64,
    pub malformed: u64,
    /// When the statistics were last updated (unix seconds).
    pub updated_at: i64,
}

/// The section for the cache under `prefix` (`""` or `"prefix/"`).
pub fn section(stats: &AccessStats, prefix: &str, updated_at: i64) -> AccessSection {
    let rates = stats.rates(prefix);
    let row = |kind: Category| {
        let r = rates.iter().find(|r| r.kind == kind);
        KindRow {
            kind,
            keys: r.map_or(0, |r| r.keys),
            requests: r.map_or(0, |r| r.requests),
            hits: r.map_or(0, |r| r.hits),
            misses: r.map_or(0, |r| r.misses),
            hit_rate: r.map_or(0.0, |r| r.hit_rate()),
            miss_rate: r.map_or(0.0, |r| r.miss_rate()),
        }
    };
    let mut kinds: Vec<KindRow> = KINDS.into_iter().map(row).collect();
    kinds.extend(
        rates
            .iter()
            .filter(|r| !KINDS.contains(&r.kind))
            .map(|r| row(r.kind)),
    );
    AccessSection {
        kinds,
        lines: stats.lines,
        malformed: stats.malformed,
        updated_at,
    }
}

fn pct(x: f64, requests: u64) -> String {
    if requests == 0 {
        "–".into()
    } else {
        format!("{:.1} %", x * 100.0)
    }
}

/// The HTML section.
pub(super) fn html(o: &mut String, a: &AccessSection) {
    o.push_str("<section id=\"access\"><h2>Hits and misses</h2>");
    let _ = write!(
        o,
        "<p class=\"lead\">From S3 server access logs ({} lines, {} malformed and not counted; statistics of {}): reads (GET/HEAD) per kind of object, answered (200/206/304) or missed (404). A missed <code>.narinfo</code> is a client that asked for a path the cache did not serve.</p>",
        a.lines,
        a.malformed,
        super::date(a.updated_at)
    );
    o.push_str("<table><thead><tr><th>kind</th><th class=\"num\">keys</th><th class=\"num\">reads</th><th class=\"num\">hits</th><th class=\"num\">misses</th><th class=\"num\">hit rate</th><th class=\"num\">miss rate</th></tr></thead><tbody>");
    for r in &a.kinds {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            r.kind,
            r.keys,
            r.requests,
            r.hits,
            r.misses,
            pct(r.hit_rate, r.requests),
            pct(r.miss_rate, r.requests)
        );
    }
    o.push_str("</tbody></table></section>");
}

/// The Markdown section.
pub(super) fn markdown(o: &mut String, a: &AccessSection) {
    let _ = writeln!(
        o,
        "\n## Hits and misses\n\nFrom S3 server access logs ({} lines, {} malformed): reads per kind of object.\n",
        a.lines, a.malformed
    );
    let _ = writeln!(o, "| kind | reads | hits | misses | hit rate | miss rate |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
    for r in &a.kinds {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            r.kind,
            r.requests,
            r.hits,
            r.misses,
            pct(r.hit_rate, r.requests),
            pct(r.miss_rate, r.requests)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use narward_formats::access_log::parse_request;

    fn get(key: &str, status: &str) -> String {
        format!(
            "o b [06/Feb/2019:00:00:38 +0000] 1 - R REST.GET.OBJECT {key} \"GET / HTTP/1.1\" {status} - 1 1 1 - \"-\" \"c\" -"
        )
    }

    #[test]
    fn hit_and_miss_rates_per_kind_of_object() {
        let mut s = AccessStats::default();
        let h = "0a3yijp35sygmy51cnrrz11vimwapz7c";
        for (k, st) in [
            (format!("c/{h}.narinfo"), "200"),
            (format!("c/{h}.narinfo"), "404"),
            (format!("c/{h}.narinfo"), "404"),
            (format!("c/{h}.narinfo"), "404"),
            (format!("c/nar/{}.nar.xz", "1".repeat(52)), "200"),
            (format!("c/{h}.ls"), "404"),
            ("c/log/abc-foo.drv".to_string(), "200"),
            ("c/nix-cache-info".to_string(), "200"),
            ("elsewhere/log/x.drv".to_string(), "404"),
        ] {
            s.add(&parse_request(&get(&k, st)).unwrap().unwrap());
        }
        let a = section(&s, "c/", 0);
        let kinds: Vec<Category> = a.kinds.iter().map(|r| r.kind).collect();
        assert_eq!(&kinds[..5], KINDS);
        assert_eq!(kinds[5], Category::CacheInfo);
        let ni = &a.kinds[0];
        assert_eq!((ni.requests, ni.hits, ni.misses), (4, 1, 3));
        assert_eq!((ni.hit_rate, ni.miss_rate), (0.25, 0.75));
        assert_eq!(a.kinds[2].misses, 1);
        assert_eq!(
            a.kinds[3].requests, 1,
            "the log outside the prefix is not counted"
        );
        assert_eq!(a.kinds[4].requests, 0);
        let mut html = String::new();
        super::html(&mut html, &a);
        assert!(html.contains("<td>narinfo</td><td class=\"num\">1</td><td class=\"num\">4</td><td class=\"num\">1</td><td class=\"num\">3</td><td class=\"num\">25.0 %</td><td class=\"num\">75.0 %</td>"), "{html}");
        let mut md = String::new();
        super::markdown(&mut md, &a);
        assert!(
            md.contains("| narinfo | 4 | 1 | 3 | 25.0 % | 75.0 % |"),
            "{md}"
        );
        assert!(md.contains("| debuginfo | 0 | 0 | 0 | – | – |"), "{md}");
    }
}
