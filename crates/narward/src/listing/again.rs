//! What [`super::Listing::refill_md5`] reads of a listing record read again: the record's
//! key and ETag, deserialized from an [`ObjectRecord`]'s bytes without allocating a string
//! per field (issue 9: `plan` reads every record twice).

use super::{Etag, KeyForm, Packed};
use crate::model::ObjectRecord;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use std::fmt;

/// A listing record's key (packed, or for a key of no fixed shape its length and a hash)
/// and the MD5 its ETag carries (zero for none).
pub struct EtagRecord {
    pub(super) key: KeyProbe,
    pub(super) md5: [u8; 16],
}

/// A key as [`EtagRecord`] holds it.
pub(super) enum KeyProbe {
    Packed(KeyForm, Packed),
    Text { len: usize, hash: u64 },
}

impl KeyProbe {
    fn of(key: &str) -> KeyProbe {
        match KeyForm::pack(key) {
            Some((f, p)) => KeyProbe::Packed(f, p),
            None => KeyProbe::Text {
                len: key.len(),
                hash: fnv1a(key.as_bytes()),
            },
        }
    }

    /// Whether this is the key of the stored `form` and `bytes` (`text` for a long key).
    pub(super) fn is(&self, form: KeyForm, bytes: &[u8], text: impl FnOnce() -> String) -> bool {
        match (self, form) {
            (KeyProbe::Packed(f, p), _) => *f == form && p.bytes() == bytes,
            (KeyProbe::Text { len, hash }, KeyForm::Text) => {
                bytes.len() == *len && fnv1a(bytes) == *hash
            }
            (KeyProbe::Text { len, hash }, KeyForm::Long) => {
                let t = text();
                t.len() == *len && fnv1a(t.as_bytes()) == *hash
            }
            (KeyProbe::Text { .. }, _) => false,
        }
    }
}

/// FNV-1a, 64 bits: a check that a key read again is the one listed (the file was
/// verified by its SHA-256 both times; this guards the order).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn md5_of(etag: &str) -> [u8; 16] {
    match Etag::parse(etag) {
        Etag::Md5(d) | Etag::Multipart(d, _) => d,
        Etag::Text(_) => [0; 16],
    }
}

impl EtagRecord {
    /// The record's key and ETag (a source that has the records in memory).
    pub fn of(r: &ObjectRecord) -> EtagRecord {
        EtagRecord {
            key: KeyProbe::of(&r.key),
            md5: r.etag.as_deref().map_or([0; 16], md5_of),
        }
    }
}

/// A string field read and let go of.
struct Skip;
/// The key field.
struct KeyField(KeyProbe);
/// The ETag field's MD5.
struct Md5Field([u8; 16]);

/// Visits a string with `f`, borrowing it where the format allows (no allocation).
struct StrWith<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for StrWith<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        Ok((self.0)(s))
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_str(StrWith(|_: &str| Skip))
    }
}

impl<'de> Deserialize<'de> for KeyField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyField, D::Error> {
        d.deserialize_str(StrWith(|s: &str| KeyField(KeyProbe::of(s))))
    }
}

impl<'de> Deserialize<'de> for Md5Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Md5Field, D::Error> {
        d.deserialize_str(StrWith(|s: &str| Md5Field(md5_of(s))))
    }
}

/// [`ObjectRecord`]'s fields, in order.
const FIELDS: [&str; 6] = [
    "key",
    "size",
    "etag",
    "last_modified",
    "storage_class",
    "link_target",
];

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = EtagRecord;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object record")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<EtagRecord, A::Error> {
        let missing = |i| de::Error::invalid_length(i, &"an object record of 6 fields");
        let key: KeyField = s.next_element()?.ok_or_else(|| missing(0))?;
        let _size: u64 = s.next_element()?.ok_or_else(|| missing(1))?;
        let etag: Option<Md5Field> = s.next_element()?.ok_or_else(|| missing(2))?;
        let _mtime: Option<i64> = s.next_element()?.ok_or_else(|| missing(3))?;
        let _class: Option<Skip> = s.next_element()?.ok_or_else(|| missing(4))?;
        let _link: Option<Skip> = s.next_element()?.ok_or_else(|| missing(5))?;
        Ok(EtagRecord {
            key: key.0,
            md5: etag.map_or([0; 16], |e| e.0),
        })
    }
}

impl<'de> Deserialize<'de> for EtagRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EtagRecord, D::Error> {
        d.deserialize_struct("ObjectRecord", &FIELDS, RecordVisitor)
    }
}
