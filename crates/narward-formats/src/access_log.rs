//! S3 server access log lines (reference §3.2): which object was requested, how, and when.
//!
//! A line is space-separated fields, where `[…]` and `"…"` group; extra trailing fields
//! are tolerated (AWS appends new ones). Field 3 is the time
//! (`06/Feb/2019:00:00:38 +0000`), field 7 the operation, field 8 the URL-encoded key,
//! field 10 the HTTP status.
//!
//! [`parse_request`] is the one line parser; [`Request`] the one classification, which
//! every reader of the logs uses (`keep.access_logs` in plan policies and
//! `narward access-logs ingest` alike):
//! - a *read* is `REST.GET.OBJECT` or `REST.HEAD.OBJECT` ([`Request::is_read`]);
//! - a *hit* (a successful read, what "last read" means) is a read answered 200, 206 or
//!   304 ([`Request::is_hit`]);
//! - a *miss* is a read answered 404 ([`Request::is_miss`]);
//! - other statuses (403, 5xx, `-`) make a read that is neither;
//! - a status that is neither `-` nor a number 100..=599 makes the line malformed,
//!   whatever its operation.
//!
//! Log keys are full bucket keys; [`key_in_cache`] maps them to the keys of a cache under a
//! key prefix.
//!
//! Every input gives a value or an [`AccessLogError`]; nothing panics or overflows
//! (times are range-checked: years 0000..=9999, real months, days, hours and zones).

/// Why a log line is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessLogError {
    /// Fewer fields than an access log line has.
    #[error("{0} fields, an access log line has at least 10")]
    TooFewFields(usize),
    /// The time field does not parse.
    #[error("time {0:?} is not like 06/Feb/2019:00:00:38 +0000")]
    BadTime(String),
    /// The key of a read does not URL-decode.
    #[error("key {0:?} does not URL-decode")]
    BadKey(String),
    /// The HTTP status is neither `-` nor a number 100..=599.
    #[error("HTTP status {0:?} is not a number like 404")]
    BadStatus(String),
}

/// Split one log line into fields.
pub fn fields(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(' ');
        let Some(first) = rest.chars().next() else {
            break;
        };
        let close = match first {
            '[' => Some(']'),
            '"' => Some('"'),
            _ => None,
        };
        match close {
            Some(close) => {
                let inner = rest.get(1..).unwrap_or("");
                match inner.split_once(close) {
                    Some((field, after)) => {
                        out.push(field);
                        rest = after;
                    }
                    None => {
                        out.push(inner);
                        rest = "";
                    }
                }
            }
            None => match rest.split_once(' ') {
                Some((field, after)) => {
                    out.push(field);
                    rest = after;
                }
                None => {
                    out.push(rest);
                    rest = "";
                }
            },
        }
    }
    out
}

/// A number of exactly `digits` ASCII digits (no sign, no spaces) within `range`.
fn number(s: &str, digits: usize, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    range.contains(&n).then_some(n)
}

/// Parse `06/Feb/2019:00:00:38 +0000` to unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (dt, tz) = s.split_once(' ')?;
    let (date, time) = dt.split_once(':')?;
    let mut d = date.split('/');
    let day = number(d.next()?, 2, 1..=31)?;
    let mon = d.next()?;
    let year = number(d.next()?, 4, 0..=9999)?;
    if d.next().is_some() {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == mon)? as i64 + 1;
    let mut t = time.split(':');
    let h = number(t.next()?, 2, 0..=23)?;
    let m = number(t.next()?, 2, 0..=59)?;
    let sec = number(t.next()?, 2, 0..=60)?;
    if t.next().is_some() {
        return None;
    }
    let sign = match tz.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let off_h = number(tz.get(1..3)?, 2, 0..=23)?;
    let off_m = number(tz.get(3..5)?, 2, 0..=59)?;
    if tz.len() != 5 {
        return None;
    }
    let off = sign * (off_h * 3600 + off_m * 60);
    Some(crate::date::days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - off)
}

/// One request on an object, whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The operation, e.g. `REST.GET.OBJECT`, `REST.HEAD.OBJECT`, `REST.PUT.OBJECT`.
    pub operation: String,
    /// The object key as stored in the bucket (with any cache prefix), URL-decoded.
    pub key: String,
    /// Unix seconds.
    pub time: i64,
    /// The HTTP status; `None` when the log says `-`.
    pub status: Option<u16>,
}

impl Request {
    /// A read: `REST.GET.OBJECT` or `REST.HEAD.OBJECT`.
    pub fn is_read(&self) -> bool {
        matches!(
            self.operation.as_str(),
            "REST.GET.OBJECT" | "REST.HEAD.OBJECT"
        )
    }

    /// A read that succeeded (status 200, 206 or 304): what "last read" counts.
    pub fn is_hit(&self) -> bool {
        self.is_read() && matches!(self.status, Some(200 | 206 | 304))
    }

    /// A read answered 404: the object was not there (for a `.narinfo`, a client that
    /// wanted the path and did not get it).
    pub fn is_miss(&self) -> bool {
        self.is_read() && self.status == Some(404)
    }
}

/// Parse one log line as an object request. `Ok(None)` for a blank line and for a
/// well-formed line that names no object (key `-`, e.g. a bucket listing).
///
/// # Errors
/// Too few fields, a time that does not parse, a key that does not URL-decode, or a status
/// that is neither `-` nor a three-digit number.
pub fn parse_request(line: &str) -> Result<Option<Request>, AccessLogError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let f = fields(line);
    let (Some(time), Some(op), Some(key), Some(status)) = (f.get(2), f.get(6), f.get(7), f.get(9))
    else {
        return Err(AccessLogError::TooFewFields(f.len()));
    };
    let time = parse_time(time).ok_or_else(|| AccessLogError::BadTime((*time).to_string()))?;
    if *key == "-" {
        return Ok(None);
    }
    let status = match *status {
        "-" => None,
        s => Some(
            number(s, 3, 100..=599)
                .map(|n| n as u16)
                .ok_or_else(|| AccessLogError::BadStatus(s.to_string()))?,
        ),
    };
    let key = crate::inventory::url_decode_key(key)
        .map_err(|_| AccessLogError::BadKey((*key).to_string()))?;
    Ok(Some(Request {
        operation: (*op).to_string(),
        key,
        time,
        status,
    }))
}

/// The key of a cache object that a log key names, for a cache under `prefix` (`""` or
/// `"prefix/"`): the log key without the prefix; `None` for a key outside the cache (or the
/// prefix itself).
pub fn key_in_cache<'a>(log_key: &'a str, prefix: &str) -> Option<&'a str> {
    log_key.strip_prefix(prefix).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be nix-cache [06/Feb/2019:00:00:38 +0000] 192.0.2.3 - 3E57427F3EXAMPLE REST.GET.OBJECT 0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo "GET /nix-cache/0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo HTTP/1.1" 200 - 113 113 7 - "-" "curl/7.15.1" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader cache.nixos.org TLSV1.2 - - us-east-1"#;

    #[test]
    fn parses_a_documented_line_with_an_extra_field() {
        let r = parse_request(LINE).unwrap().unwrap();
        assert_eq!(r.key, "0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo");
        assert_eq!((r.time, r.is_hit()), (1549411238, true));
        let miss = parse_request(&LINE.replace(" 200 ", " 404 "))
            .unwrap()
            .unwrap();
        assert!(!miss.is_hit());
        assert_eq!(
            parse_request("garbage"),
            Err(AccessLogError::TooFewFields(1))
        );
        assert_eq!(parse_request(""), Ok(None));
    }

    /// The status rules, one table: (operation, status) → read, hit, miss, or malformed.
    #[test]
    fn status_rules_classify_reads_hits_and_misses() {
        /// (is_read, is_hit, is_miss), or `None` for a malformed line.
        type Class = Option<(bool, bool, bool)>;
        let cases: &[(&str, &str, Class)] = &[
            ("REST.GET.OBJECT", "200", Some((true, true, false))),
            ("REST.GET.OBJECT", "206", Some((true, true, false))),
            ("REST.HEAD.OBJECT", "304", Some((true, true, false))),
            ("REST.GET.OBJECT", "404", Some((true, false, true))),
            ("REST.HEAD.OBJECT", "404", Some((true, false, true))),
            ("REST.GET.OBJECT", "403", Some((true, false, false))),
            ("REST.GET.OBJECT", "503", Some((true, false, false))),
            ("REST.GET.OBJECT", "-", Some((true, false, false))),
            ("REST.PUT.OBJECT", "200", Some((false, false, false))),
            ("REST.COPY.OBJECT", "404", Some((false, false, false))),
            ("REST.GET.OBJECT", "2x0", None),
            ("REST.GET.OBJECT", "600", None),
            ("REST.GET.OBJECT", "0200", None),
            ("REST.PUT.OBJECT", "20€", None),
        ];
        for &(op, status, want) in cases {
            let line = LINE
                .replace("REST.GET.OBJECT", op)
                .replace(" 200 ", &format!(" {status} "));
            let got = parse_request(&line)
                .ok()
                .map(|r| r.unwrap())
                .map(|r| (r.is_read(), r.is_hit(), r.is_miss()));
            assert_eq!(got, want, "{op} {status}");
        }
    }

    #[test]
    fn log_keys_of_a_prefixed_cache_lose_the_prefix_and_others_are_left_out() {
        assert_eq!(key_in_cache("cache/a.narinfo", "cache/"), Some("a.narinfo"));
        assert_eq!(key_in_cache("other/a.narinfo", "cache/"), None);
        assert_eq!(key_in_cache("cache/", "cache/"), None);
        assert_eq!(key_in_cache("cachex/a", "cache/"), None);
        assert_eq!(key_in_cache("a.narinfo", ""), Some("a.narinfo"));
    }

    #[test]
    fn time_zones_and_fields_with_multibyte_characters_do_not_panic() {
        for tz in ["+0é0", "é000", "+€0", "+00€", "€", "+0000é", "+ 000"] {
            assert_eq!(
                parse_time(&format!("06/Feb/2019:00:00:38 {tz}")),
                None,
                "{tz}"
            );
            let line = LINE.replace("+0000", tz);
            assert!(
                matches!(parse_request(&line), Err(AccessLogError::BadTime(_))),
                "{tz}"
            );
        }
        assert_eq!(fields("a [é] \"€\" ü"), ["a", "é", "€", "ü"]);
        assert_eq!(fields("[unterminated é"), ["unterminated é"]);
    }

    #[test]
    fn huge_years_days_and_hours_do_not_overflow() {
        for t in [
            "06/Feb/9223372036854775807:00:00:38 +0000",
            "06/Feb/99999:00:00:38 +0000",
            "99999999999999999999/Feb/2019:00:00:38 +0000",
            "06/Feb/2019:9223372036854775807:00:38 +0000",
            "06/Feb/2019:00:00:38 +9999",
            "06/Feb/-2019:00:00:38 +0000",
            "32/Feb/2019:00:00:38 +0000",
            "06/Feb/2019:24:00:38 +0000",
        ] {
            assert_eq!(parse_time(t), None, "{t}");
        }
        assert_eq!(
            parse_time("06/Feb/2019:00:00:38 -0130"),
            Some(1549411238 + 5400)
        );
        assert_eq!(
            parse_time("01/Jan/0000:00:00:00 +0000"),
            Some(-62_167_219_200)
        );
        assert_eq!(
            parse_time("31/Dec/9999:23:59:60 -2359"),
            Some(253_402_300_800 + 86_340)
        );
    }

    #[test]
    fn requests_carry_operation_and_status_so_misses_can_be_counted() {
        let r = parse_request(&LINE.replace(" 200 ", " 404 "))
            .unwrap()
            .unwrap();
        assert_eq!(r.operation, "REST.GET.OBJECT");
        assert_eq!(r.key, "0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo");
        assert_eq!(r.status, Some(404));
        assert_eq!(r.time, 1549411238);
        assert!(r.is_miss() && !r.is_hit());
        let ok = parse_request(LINE).unwrap().unwrap();
        assert!(ok.is_hit() && !ok.is_miss());
        let put = parse_request(&LINE.replace("REST.GET.OBJECT", "REST.PUT.OBJECT"))
            .unwrap()
            .unwrap();
        assert!(!put.is_read() && !put.is_miss());
        let dash = parse_request(&LINE.replace(" 200 ", " - "))
            .unwrap()
            .unwrap();
        assert_eq!(dash.status, None);
        assert_eq!(
            parse_request(&LINE.replace(" 200 ", " 2x0 ")),
            Err(AccessLogError::BadStatus("2x0".into()))
        );
        assert_eq!(
            parse_request(&LINE.replace(" 200 ", " 20€ ")),
            Err(AccessLogError::BadStatus("20€".into()))
        );
        let listing = LINE.replace(
            "REST.GET.OBJECT 0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo",
            "REST.GET.BUCKET -",
        );
        assert_eq!(parse_request(&listing), Ok(None));
        assert_eq!(parse_request("  "), Ok(None));
        assert_eq!(
            parse_request("garbage"),
            Err(AccessLogError::TooFewFields(1))
        );
        let encoded = LINE.replace(
            "REST.GET.OBJECT 0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo",
            "REST.GET.OBJECT log/a%20b%C3%A9.drv",
        );
        assert_eq!(
            parse_request(&encoded).unwrap().unwrap().key,
            "log/a bé.drv"
        );
        assert!(matches!(
            parse_request(&LINE.replace("+0000", "+0é0")),
            Err(AccessLogError::BadTime(_))
        ));
    }
}
