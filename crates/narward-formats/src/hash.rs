//! SHA-256 hashes as they appear in narinfo `NarHash:` / `FileHash:` lines.
//!
//! Takes `sha256:<nix32 52>`, `sha256:<hex 64>`, `sha256:<base64 44>` or SRI
//! `sha256-<base64 44>` and gives a [`Sha256`] plus the [`HashEncoding`] that
//! was used, so a printer can reproduce the input. This is Nix's
//! `Hash::parseAnyPrefixed` restricted to SHA-256 (reference §1.3): the
//! encoding is chosen by the length of the digest text. Nix writers always
//! emit `sha256:<nix32>`; hex `NarHash` lines are a quirk of old
//! cache.nixos.org entries.

use std::fmt;

use base64::Engine as _;
use sha2::Digest as _;

use crate::nixbase32;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct Sha256(pub [u8; 32]);

/// How a hash was written.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum HashEncoding {
    /// `sha256:` + 52 nix32 characters (what Nix writes).
    Nix32,
    /// `sha256:` + 64 hex digits.
    Hex,
    /// `sha256:` + 44 base64 characters.
    Base64,
    /// `sha256-` + 44 base64 characters (Subresource Integrity form).
    Sri,
}

/// What is wrong with a hash string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Neither `<algo>:` nor `<algo>-` prefix.
    #[error("hash has no \"sha256:\" or \"sha256-\" prefix")]
    MissingPrefix,
    /// A prefix naming an algorithm other than SHA-256.
    #[error("hash algorithm {0:?} is not supported, only sha256")]
    UnsupportedAlgorithm(String),
    /// The digest text has a length no SHA-256 encoding has.
    #[error(
        "sha256 digest is {len} characters, expected 52 (nix32), 64 (hex) or 44 (base64){}",
        if *sri { " (SRI form takes base64 only)" } else { "" }
    )]
    BadLength {
        /// Length of the digest text after the prefix.
        len: usize,
        /// Whether the SRI (`sha256-`) form was used.
        sri: bool,
    },
    /// Invalid nix32 digest.
    #[error("sha256 digest is not valid nix32: {0}")]
    Nix32(#[from] nixbase32::Nixbase32Error),
    /// Invalid hex digest.
    #[error("sha256 digest is not valid hex: {ch:?} at position {pos}")]
    Hex {
        /// The offending character.
        ch: char,
        /// Byte offset in the digest text.
        pos: usize,
    },
    /// Invalid base64 digest.
    #[error("sha256 digest is not valid base64 of 32 bytes")]
    Base64,
}

const NIX32_LEN: usize = nixbase32::encoded_len(32);
const HEX_LEN: usize = 64;
const BASE64_LEN: usize = 44;

impl Sha256 {
    /// Parses a prefixed SHA-256 hash in any of Nix's encodings.
    ///
    /// # Errors
    ///
    /// Fails on a missing or non-`sha256` prefix, a digest length that fits no
    /// encoding, or an invalid digest in the chosen encoding.
    pub fn parse(s: &str) -> Result<(Sha256, HashEncoding), HashError> {
        let (digest, sri) = if let Some(rest) = s.strip_prefix("sha256:") {
            (rest, false)
        } else if let Some(rest) = s.strip_prefix("sha256-") {
            (rest, true)
        } else {
            return Err(match s.find([':', '-']) {
                Some(i) => HashError::UnsupportedAlgorithm(s.get(..i).unwrap_or_default().into()),
                None => HashError::MissingPrefix,
            });
        };
        match (digest.len(), sri) {
            (NIX32_LEN, false) => Ok((
                Sha256(nixbase32::decode_fixed::<32>(digest)?),
                HashEncoding::Nix32,
            )),
            (HEX_LEN, false) => Ok((parse_hex(digest)?, HashEncoding::Hex)),
            (BASE64_LEN, _) => Ok((
                parse_base64(digest)?,
                if sri {
                    HashEncoding::Sri
                } else {
                    HashEncoding::Base64
                },
            )),
            (len, sri) => Err(HashError::BadLength { len, sri }),
        }
    }

    /// `sha256:<nix32>`, the form Nix writes and signs.
    pub fn to_nix32_prefixed(&self) -> String {
        let mut s = String::with_capacity(7 + NIX32_LEN);
        s.push_str("sha256:");
        nixbase32::encode_into(&self.0, &mut s);
        s
    }

    /// The bare 52-character nix32 text (as used in `nar/<hash>.nar*` keys).
    pub fn to_nix32(&self) -> String {
        nixbase32::encode(&self.0)
    }

    /// Lower-case hex, without prefix.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(HEX_LEN);
        for b in self.0 {
            for nibble in [b >> 4, b & 0xf] {
                s.push(char::from(
                    HEX_DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        s
    }

    /// The hash in the given encoding, with its prefix (`sha256:` or, for
    /// SRI, `sha256-`).
    pub fn format(&self, enc: HashEncoding) -> String {
        let b64 = || base64::engine::general_purpose::STANDARD.encode(self.0);
        match enc {
            HashEncoding::Nix32 => self.to_nix32_prefixed(),
            HashEncoding::Hex => format!("sha256:{}", self.to_hex()),
            HashEncoding::Base64 => format!("sha256:{}", b64()),
            HashEncoding::Sri => format!("sha256-{}", b64()),
        }
    }

    /// The SHA-256 of `data`.
    pub fn digest(data: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(data).into())
    }
}

impl fmt::Display for Sha256 {
    /// Prints `sha256:<nix32>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix32_prefixed())
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        // Nix's base16 parser accepts upper case too.
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn parse_hex(s: &str) -> Result<Sha256, HashError> {
    let mut out = [0u8; 32];
    let bytes = s.as_bytes();
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (hex_val(*hi), hex_val(*lo)),
            _ => (None, None),
        };
        match (hi, lo) {
            (Some(hi), Some(lo)) => *o = (hi << 4) | lo,
            _ => return Err(first_bad_hex(s)),
        }
    }
    Ok(Sha256(out))
}

#[cold]
fn first_bad_hex(s: &str) -> HashError {
    for (pos, ch) in s.char_indices() {
        if !ch.is_ascii() || hex_val(ch as u8).is_none() {
            return HashError::Hex { ch, pos };
        }
    }
    HashError::Hex { ch: '?', pos: 0 }
}

fn parse_base64(s: &str) -> Result<Sha256, HashError> {
    let mut buf = [0u8; 36];
    match base64::engine::general_purpose::STANDARD.decode_slice(s, &mut buf) {
        Ok(32) => {
            let mut out = [0u8; 32];
            out.copy_from_slice(buf.get(..32).ok_or(HashError::Base64)?);
            Ok(Sha256(out))
        }
        _ => Err(HashError::Base64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIX32: &str = "sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0";

    #[test]
    fn all_encodings_roundtrip() {
        let (h, enc) = Sha256::parse(NIX32).unwrap();
        assert_eq!(enc, HashEncoding::Nix32);
        assert_eq!(h.to_nix32_prefixed(), NIX32);
        assert_eq!(h.to_string(), NIX32);
        assert_eq!(h.to_nix32(), &NIX32[7..]);
        for enc in [
            HashEncoding::Nix32,
            HashEncoding::Hex,
            HashEncoding::Base64,
            HashEncoding::Sri,
        ] {
            let s = h.format(enc);
            assert_eq!(Sha256::parse(&s).unwrap(), (h, enc), "{s}");
        }
        let upper = format!("sha256:{}", h.to_hex().to_uppercase());
        assert_eq!(Sha256::parse(&upper).unwrap(), (h, HashEncoding::Hex));
    }

    #[test]
    fn digest_known() {
        // sha256("") in hex.
        assert_eq!(
            Sha256::digest(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            Sha256::parse("md5:abc").unwrap_err(),
            HashError::UnsupportedAlgorithm("md5".into())
        );
        assert_eq!(Sha256::parse("abc").unwrap_err(), HashError::MissingPrefix);
        assert_eq!(
            Sha256::parse("sha256:abc").unwrap_err(),
            HashError::BadLength { len: 3, sri: false }
        );
        let bad_hex = format!("sha256:{}g", "0".repeat(63));
        assert_eq!(
            Sha256::parse(&bad_hex).unwrap_err(),
            HashError::Hex { ch: 'g', pos: 63 }
        );
        let bad_b64 = format!("sha256-{}", "!".repeat(44));
        assert_eq!(Sha256::parse(&bad_b64).unwrap_err(), HashError::Base64);
        let e = Sha256::parse(&format!("sha256:{}", "e".repeat(52))).unwrap_err();
        assert!(e.to_string().contains("nix32"), "{e}");
        assert!(
            Sha256::parse(&format!("sha256-{}", "0".repeat(52)))
                .unwrap_err()
                .to_string()
                .contains("SRI")
        );
    }
}
