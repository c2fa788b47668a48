//! S3 server access logs (reference §3.2): the last time each object was read.
//!
//! The parsing of a line is [`narward_formats::access_log`]; this module reads the files
//! and builds the map. Only successful reads count (`REST.GET.OBJECT`/`REST.HEAD.OBJECT`
//! with status 200, 206 or 304). A malformed line is counted and the first few are kept
//! with file and line number ([`AccessLogs::malformed_examples`]) to be shown.
//!
//! Log keys are full bucket keys: for a cache under a key prefix, [`for_cache`] strips the
//! prefix (and leaves out keys outside it) so the map is keyed like the cache's objects.

use anyhow::{Context, Result};
use narward_formats::access_log::{LogLine, parse_line};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// How many malformed lines are kept as examples.
pub const MAX_EXAMPLES: usize = 5;

/// What the logs read so far say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogs {
    /// Full bucket key → last successful read (unix seconds).
    pub last_access: HashMap<String, i64>,
    /// Lines that do not parse as access log lines.
    pub malformed: u64,
    /// The first [`MAX_EXAMPLES`] of them: `file:line: reason`.
    pub malformed_examples: Vec<String>,
}

impl AccessLogs {
    /// Read a log file, or every file under a directory.
    ///
    /// # Errors
    /// Unreadable files.
    pub fn read(&mut self, path: &Path) -> Result<()> {
        if path.is_dir() {
            let mut entries = Vec::new();
            for e in std::fs::read_dir(path)
                .with_context(|| format!("access logs {}", path.display()))?
            {
                entries.push(
                    e.with_context(|| format!("access logs {}", path.display()))?
                        .path(),
                );
            }
            entries.sort();
            for p in entries {
                self.read(&p)?;
            }
            return Ok(());
        }
        let f =
            std::fs::File::open(path).with_context(|| format!("access log {}", path.display()))?;
        let mut rd = BufReader::new(f);
        let mut buf = Vec::new();
        for n in 1u64.. {
            buf.clear();
            if rd
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("access log {}:{n}", path.display()))?
                == 0
            {
                break;
            }
            let place = format!("{}:{n}", path.display());
            match std::str::from_utf8(&buf) {
                Ok(line) => self.add_line(line.trim_end_matches(['\n', '\r']), &place),
                Err(_) => self.add_malformed(&place, "not UTF-8"),
            }
        }
        Ok(())
    }

    /// Take one line; `place` (`file:line`) labels it if it is malformed.
    pub fn add_line(&mut self, line: &str, place: &str) {
        match parse_line(line) {
            Ok(LogLine::Read { key, time }) => {
                let e = self.last_access.entry(key).or_insert(time);
                *e = (*e).max(time);
            }
            Ok(LogLine::Other) => {}
            Err(e) => self.add_malformed(place, &e.to_string()),
        }
    }

    fn add_malformed(&mut self, place: &str, why: &str) {
        self.malformed += 1;
        if self.malformed_examples.len() < MAX_EXAMPLES {
            self.malformed_examples.push(format!("{place}: {why}"));
        }
    }

    /// One warning per example, and one with the count when there are more.
    pub fn warnings(&self) -> Vec<String> {
        if self.malformed == 0 {
            return Vec::new();
        }
        let mut w = vec![format!(
            "access logs: {} malformed lines ignored (reads they record do not count)",
            self.malformed
        )];
        w.extend(
            self.malformed_examples
                .iter()
                .map(|e| format!("access logs: malformed line {e}")),
        );
        w
    }
}

/// The last-access map keyed like the objects of a cache under `prefix` (`""` or
/// `"prefix/"`): log keys under the prefix lose it, keys outside it are left out. Borrows
/// the map unchanged when there is no prefix.
pub fn for_cache<'a>(
    last: &'a HashMap<String, i64>,
    prefix: &str,
) -> Cow<'a, HashMap<String, i64>> {
    if prefix.is_empty() {
        return Cow::Borrowed(last);
    }
    Cow::Owned(
        last.iter()
            .filter_map(|(k, &t)| {
                k.strip_prefix(prefix)
                    .filter(|k| !k.is_empty())
                    .map(|k| (k.to_string(), t))
            })
            .collect(),
    )
}

/// The key prefix (`""` or `"prefix/"`) of the cache a URL names: log keys carry it.
pub fn cache_prefix(cache_url: &str) -> String {
    match crate::cache::CacheUrl::parse(cache_url) {
        Ok(crate::cache::CacheUrl::S3(o)) if !o.prefix.is_empty() => format!("{}/", o.prefix),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, day: u32) -> String {
        format!(
            "owner nix-cache [{day:02}/Feb/2019:00:00:38 +0000] 192.0.2.3 - REQ REST.GET.OBJECT {key} \"GET /{key} HTTP/1.1\" 200 - 113 113 7 - \"-\" \"curl\" -"
        )
    }

    #[test]
    fn malformed_lines_are_counted_and_shown_with_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("log1");
        let text = format!(
            "{}\ngarbage\n{}\n\n{}\r\n",
            line("a.narinfo", 6),
            line("b.narinfo", 6).replace("+0000", "+0é0"),
            line("a.narinfo", 7)
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe not UTF-8\n");
        std::fs::write(&f, bytes).unwrap();
        let mut logs = AccessLogs::default();
        logs.read(d.path()).unwrap();
        assert_eq!(logs.malformed, 3);
        assert_eq!(logs.last_access.len(), 1);
        assert_eq!(logs.last_access["a.narinfo"], 1549411238 + 86400);
        let w = logs.warnings().join("\n");
        assert!(w.contains("3 malformed lines"), "{w}");
        assert!(w.contains(&format!("{}:6: not UTF-8", f.display())), "{w}");
        assert!(w.contains(&format!("{}:2:", f.display())), "{w}");
        assert!(
            w.contains(&format!("{}:3:", f.display())) && w.contains("+0é0"),
            "{w}"
        );
    }

    #[test]
    fn access_logs_of_a_prefixed_cache_match_its_keys() {
        let mut logs = AccessLogs::default();
        logs.add_line(&line("cache/a.narinfo", 6), "x:1");
        logs.add_line(&line("other/b.narinfo", 6), "x:2");
        logs.add_line(&line("c.narinfo", 6), "x:3");
        let prefix = cache_prefix("s3://bucket/cache?endpoint=http://x");
        assert_eq!(prefix, "cache/");
        let m = for_cache(&logs.last_access, &prefix);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a.narinfo"]);
        assert_eq!(for_cache(&logs.last_access, "").len(), 3);
        assert_eq!(cache_prefix("file:///tmp/x"), "");
    }
}
