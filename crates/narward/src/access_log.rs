//! S3 server access logs (reference §3.2): the last time each object was read.
//!
//! Only successful reads count (`REST.GET.OBJECT`/`REST.HEAD.OBJECT` with status 200, 206 or
//! 304). Fields are space-separated, `[…]` and `"…"` group; extra trailing fields are
//! tolerated (AWS appends new ones). A line that does not parse is skipped and counted.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Split one log line into fields.
pub fn fields(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let (open, close) = match b[i] {
            b'[' => (true, b']'),
            b'"' => (true, b'"'),
            _ => (false, b' '),
        };
        let start = if open { i + 1 } else { i };
        let mut j = start;
        while j < b.len() && b[j] != close {
            j += 1;
        }
        out.push(&line[start..j.min(line.len())]);
        i = if open { j + 1 } else { j };
    }
    out
}

/// Parse `06/Feb/2019:00:00:38 +0000` to unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let (dt, tz) = s.split_once(' ')?;
    let mut p = dt.splitn(4, [':', '/']);
    let day: i64 = p.next()?.parse().ok()?;
    let mon = p.next()?;
    let year: i64 = p.next()?.parse().ok()?;
    let hms: Vec<i64> = p
        .next()?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| *x == mon)? as i64 + 1;
    if hms.len() != 3 || tz.len() != 5 {
        return None;
    }
    let sign = if tz.starts_with('-') { -1 } else { 1 };
    let off = sign * (tz[1..3].parse::<i64>().ok()? * 3600 + tz[3..5].parse::<i64>().ok()? * 60);
    // days from civil (H. Hinnant)
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - off)
}

/// The object key and time of a successful read, if the line is one.
pub fn read_event(line: &str) -> Option<(String, i64)> {
    let f = fields(line);
    if f.len() < 10 {
        return None;
    }
    if !matches!(f[6], "REST.GET.OBJECT" | "REST.HEAD.OBJECT")
        || !matches!(f[9], "200" | "206" | "304")
    {
        return None;
    }
    let key = narward_formats::inventory::url_decode_key(f[7]).ok()?;
    Some((key, parse_time(f[2])?))
}

/// Read a log file or every file under a directory into `last` (key → latest read).
///
/// # Errors
/// Unreadable files.
pub fn read_into(path: &Path, last: &mut HashMap<String, i64>) -> Result<u64> {
    let mut skipped = 0;
    if path.is_dir() {
        for e in
            std::fs::read_dir(path).with_context(|| format!("access logs {}", path.display()))?
        {
            skipped += read_into(&e?.path(), last)?;
        }
        return Ok(skipped);
    }
    let f = std::fs::File::open(path).with_context(|| format!("access log {}", path.display()))?;
    for line in BufReader::new(f).lines() {
        let line = line.with_context(|| format!("access log {}", path.display()))?;
        match read_event(&line) {
            Some((k, t)) => {
                let e = last.entry(k).or_insert(t);
                *e = (*e).max(t);
            }
            None => skipped += 1,
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be nix-cache [06/Feb/2019:00:00:38 +0000] 192.0.2.3 - 3E57427F3EXAMPLE REST.GET.OBJECT 0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo "GET /nix-cache/0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo HTTP/1.1" 200 - 113 113 7 - "-" "curl/7.15.1" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader cache.nixos.org TLSV1.2 - - us-east-1"#;

    #[test]
    fn parses_a_documented_line_with_an_extra_field() {
        let (k, t) = read_event(LINE).unwrap();
        assert_eq!(k, "0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo");
        assert_eq!(t, 1549411238);
        assert!(read_event(&LINE.replace(" 200 ", " 404 ")).is_none());
        assert!(read_event("garbage").is_none());
    }
}
