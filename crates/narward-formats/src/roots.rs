//! Root lists: the files a policy names to say which store paths must stay.
//!
//! Two text forms (the caller decompresses `store-paths.xz` first):
//! - **lines**: one store path per line, full (`/nix/store/<hash>-<name>`) or a base
//!   name; blank lines and lines starting with `#` are skipped; surrounding white space
//!   is ignored. This is Hydra's `store-paths` and any hand-written list.
//! - **fallback-paths.nix**: Nix's `{ x86_64-linux = "/nix/store/…"; … }`. Every
//!   double-quoted string that starts with `/nix/store/` is a root; other strings
//!   (attribute names, comments) are ignored.
//!
//! A line that should hold a root and does not is an error naming the line: a root list
//! that does not parse must stop a plan, never shrink its root set.

use crate::store_path::{STORE_DIR, StorePath, StorePathError};

/// One root found in a root list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootLine<'a> {
    /// 1-based line number.
    pub line: usize,
    /// The store path.
    pub path: StorePath<'a>,
}

/// A line that should name a store path and does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text:?} is not a store path: {error}")]
pub struct RootListError {
    /// 1-based line number.
    pub line: usize,
    /// The offending text (at most 200 characters of it).
    pub text: String,
    /// Why it is not a store path.
    pub error: StorePathError,
}

fn error(line: usize, text: &str, error: StorePathError) -> RootListError {
    RootListError {
        line,
        text: text.chars().take(200).collect(),
        error,
    }
}

/// The roots of a list with one store path per line, in order.
pub fn lines(text: &str) -> impl Iterator<Item = Result<RootLine<'_>, RootListError>> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            return None;
        }
        Some(
            StorePath::parse_any(l)
                .map(|path| RootLine { line: i + 1, path })
                .map_err(|e| error(i + 1, l, e)),
        )
    })
}

/// The roots of a `fallback-paths.nix` file, in order.
pub fn fallback_paths(text: &str) -> impl Iterator<Item = Result<RootLine<'_>, RootListError>> {
    text.lines().enumerate().flat_map(|(i, line)| {
        line.split('"')
            .skip(1)
            .step_by(2)
            .filter(|part| {
                part.strip_prefix(STORE_DIR)
                    .is_some_and(|r| r.starts_with('/'))
            })
            .map(move |part| {
                StorePath::parse_full(part)
                    .map(|path| RootLine { line: i + 1, path })
                    .map_err(|e| error(i + 1, part, e))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0c0b1cj3a6jyd2rvdlsnfpy4jzzaxd4n";

    #[test]
    fn lines_skip_blanks_and_comments_and_name_bad_lines() {
        let text = format!("# release\n\n  /nix/store/{H}-hello-2.12  \n{H}-base\n");
        let roots: Vec<_> = lines(&text).collect::<Result<_, _>>().unwrap();
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[0].line, 3);
        assert_eq!(roots[0].path.name, "hello-2.12");
        assert_eq!(roots[1].line, 4);
        let bad = format!("/nix/store/{H}-ok\nnot a path\n");
        let e = lines(&bad).find_map(Result::err).unwrap();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: \"not a path\""), "{e}");
    }

    #[test]
    fn fallback_paths_take_quoted_store_paths_only() {
        let text = format!(
            "{{\n  x86_64-linux = \"/nix/store/{H}-nix-2.18.1\";\n  # \"comment\"\n  \
             aarch64-linux = \"/nix/store/{H}-nix-2.18.1\"; \"/nix/storex\"\n}}\n"
        );
        let roots: Vec<_> = fallback_paths(&text).collect::<Result<_, _>>().unwrap();
        assert_eq!(roots.len(), 2);
        assert_eq!((roots[0].line, roots[1].line), (2, 4));
        let bad = "{ x = \"/nix/store/short-name\"; }";
        let e = fallback_paths(bad).find_map(Result::err).unwrap();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn error_text_is_bounded() {
        let long = "x".repeat(10_000);
        let e = lines(&long).find_map(Result::err).unwrap();
        assert_eq!(e.text.chars().count(), 200);
    }
}
