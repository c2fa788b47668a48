//! Ed25519 keys and signatures in Nix's `name:base64` text form.
//!
//! Takes key strings as written by `nix-store --generate-binary-cache-key`
//! (secret: `name:base64(64 bytes)` = seed ‖ public key; public:
//! `name:base64(32 bytes)`) and gives [`SecretKey`] / [`PublicKey`] that sign
//! and verify narinfo fingerprints (reference §1.6, Nix `local-keys.cc`).
//! A signature is `name:base64(64 bytes)`; strings are split at the first `:`.
//! Verification requires the key name to match and uses strict Ed25519
//! verification (rejects non-canonical and small-order encodings; signatures
//! made by libsodium always pass it).

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What is wrong with a key string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `:` between name and key material.
    #[error("key has no ':' between name and base64 key")]
    MissingColon,
    /// The part before `:` is empty.
    #[error("key name is empty")]
    EmptyName,
    /// The part after `:` is not base64.
    #[error("key material after ':' is not valid base64")]
    Base64,
    /// Decoded key material of the wrong size.
    #[error("{what} key is {got} bytes, expected {expected}")]
    WrongLength {
        /// `"public"` or `"secret"`.
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes found.
        got: usize,
    },
    /// 32 bytes that are not an Ed25519 point.
    #[error("public key is not a valid Ed25519 point")]
    InvalidPoint,
    /// The second half of a 64-byte secret key is not the public key of the
    /// first half.
    #[error("secret key's public half does not match its seed")]
    KeypairMismatch,
}

fn split_name(s: &str) -> Result<(&str, &str), SignatureError> {
    let (name, rest) = s.split_once(':').ok_or(SignatureError::MissingColon)?;
    if name.is_empty() {
        return Err(SignatureError::EmptyName);
    }
    Ok((name, rest))
}

fn decode_exact<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], SignatureError> {
    let v = B64.decode(s).map_err(|_| SignatureError::Base64)?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| SignatureError::WrongLength {
        what,
        expected: N,
        got: v.len(),
    })
}

/// A named Ed25519 public key, e.g. `cache.nixos.org-1:6NCH…jY=`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PublicKey {
    /// The key name (before the `:`), which signatures must carry.
    pub name: String,
    key: VerifyingKey,
}

/// Parses `name:base64(32 bytes)`.
///
/// # Errors
///
/// Fails if there is no `:`, the name is empty, the rest is not base64 of 32
/// bytes, or the bytes are not an Ed25519 point.
pub fn parse(s: &str) -> Result<PublicKey, SignatureError> {
    PublicKey::parse(s)
}

impl PublicKey {
    /// Parses `name:base64(32 bytes)`; same as [`parse`].
    ///
    /// # Errors
    ///
    /// As [`parse`].
    pub fn parse(s: &str) -> Result<PublicKey, SignatureError> {
        let (name, b64) = split_name(s.trim())?;
        let bytes = decode_exact::<32>(b64, "public")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::InvalidPoint)?;
        Ok(PublicKey {
            name: name.to_owned(),
            key,
        })
    }

    /// The 32 key bytes.
    pub fn key_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// `name:base64`, as in `trusted-public-keys`.
    pub fn to_string_nix(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.to_bytes()))
    }

    /// Checks a `name:base64(64 bytes)` signature over `fingerprint`.
    ///
    /// Returns false if the signature's name differs from this key's name, it
    /// is malformed, or it does not verify.
    pub fn verify(&self, fingerprint: &str, sig: &str) -> bool {
        let Some((name, b64)) = sig.split_once(':') else {
            return false;
        };
        if name != self.name {
            return false;
        }
        let mut buf = [0u8; 66];
        let Ok(64) = B64.decode_slice(b64, &mut buf) else {
            return false;
        };
        let Some(Ok(sig)) = buf.get(..64).map(ed25519_dalek::Signature::from_slice) else {
            return false;
        };
        self.key.verify_strict(fingerprint.as_bytes(), &sig).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_nix())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::parse(s)
    }
}

/// A named Ed25519 secret key. `Debug` does not print the key material.
#[derive(Clone)]
pub struct SecretKey {
    /// The key name, written into every signature.
    pub name: String,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .field("public", &B64.encode(self.key.verifying_key().to_bytes()))
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Parses `name:base64(64 bytes)` (seed followed by public key, libsodium
    /// layout).
    ///
    /// # Errors
    ///
    /// Fails if there is no `:`, the name is empty, the rest is not base64 of
    /// 64 bytes, or the public half does not belong to the seed.
    pub fn parse(s: &str) -> Result<SecretKey, SignatureError> {
        let (name, b64) = split_name(s.trim())?;
        let bytes = decode_exact::<64>(b64, "secret")?;
        let key =
            SigningKey::from_keypair_bytes(&bytes).map_err(|_| SignatureError::KeypairMismatch)?;
        Ok(SecretKey {
            name: name.to_owned(),
            key,
        })
    }

    /// A key from a 32-byte seed (deterministic; for tests and key generation
    /// by a caller that has a random source).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> SecretKey {
        SecretKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The matching public key, with the same name.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `fingerprint`, giving `name:base64(signature)`.
    pub fn sign(&self, fingerprint: &str) -> String {
        let sig = self.key.sign(fingerprint.as_bytes());
        format!("{}:{}", self.name, B64.encode(sig.to_bytes()))
    }

    /// `name:base64(64 bytes)`, as `nix-store --generate-binary-cache-key`
    /// writes it.
    pub fn to_string_nix(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.to_keypair_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CACHE_KEY: &str =
        "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

    #[test]
    fn public_key_roundtrip() {
        let k = parse(CACHE_KEY).unwrap();
        assert_eq!(k.name, "cache.nixos.org-1");
        assert_eq!(k.to_string_nix(), CACHE_KEY);
        assert_eq!(k.to_string(), CACHE_KEY);
    }

    #[test]
    fn sign_verify_roundtrip() {
        let sk = SecretKey::from_seed("test-1", [7; 32]);
        let text = sk.to_string_nix();
        let sk2 = SecretKey::parse(&text).unwrap();
        assert_eq!(sk2.to_string_nix(), text);
        let pk = sk2.public_key();
        let sig = sk.sign("1;/nix/store/x;sha256:y;1;");
        assert!(sig.starts_with("test-1:"));
        assert_eq!(sig.len(), "test-1:".len() + 88);
        assert!(pk.verify("1;/nix/store/x;sha256:y;1;", &sig));
        assert!(!pk.verify("1;/nix/store/x;sha256:y;2;", &sig));
        let renamed = sig.replacen("test-1", "test-2", 1);
        assert!(!pk.verify("1;/nix/store/x;sha256:y;1;", &renamed));
        assert!(!pk.verify("1;/nix/store/x;sha256:y;1;", "test-1:AAAA"));
        assert!(!pk.verify("1;/nix/store/x;sha256:y;1;", "nocolon"));
        let pk2 = parse(&pk.to_string_nix()).unwrap();
        assert_eq!(pk, pk2);
        assert!(!format!("{sk:?}").contains(&text[7..]));
    }

    #[test]
    fn key_errors() {
        assert_eq!(parse("nocolon").unwrap_err(), SignatureError::MissingColon);
        assert_eq!(parse(":AAAA").unwrap_err(), SignatureError::EmptyName);
        assert_eq!(parse("a:!!!").unwrap_err(), SignatureError::Base64);
        assert_eq!(
            parse("a:AAAA").unwrap_err(),
            SignatureError::WrongLength {
                what: "public",
                expected: 32,
                got: 3
            }
        );
        // A secret key given as public key.
        let sk = SecretKey::from_seed("k", [1; 32]).to_string_nix();
        assert!(parse(&sk).unwrap_err().to_string().contains("expected 32"));
        // Mismatched halves.
        let mut bytes = SecretKey::from_seed("k", [1; 32]).key.to_keypair_bytes();
        bytes[40] ^= 1;
        let bad = format!("k:{}", B64.encode(bytes));
        assert_eq!(
            SecretKey::parse(&bad).unwrap_err(),
            SignatureError::KeypairMismatch
        );
    }
}
