//! S3 Inventory reports and S3 Batch Operations manifests (reference §3.1,
//! §3.3).
//!
//! Takes the text of an inventory `manifest.json` and the lines of its
//! (already decompressed) CSV data files, and gives a [`Manifest`], a
//! [`CsvSchema`] (column positions from `fileSchema`) and one
//! [`InventoryRow`] per line, with the object key URL-decoded. Going the other
//! way, [`batch_manifest_row`] writes one line of an S3 Batch Operations CSV
//! manifest with the key URL-encoded.
//!
//! Facts from the AWS documentation that shape this module:
//! - column order is given by `fileSchema`; `VersionId`, `IsLatest` and
//!   `IsDeleteMarker` exist only in all-versions reports;
//! - AWS quotes every CSV field, and Athena reads inventories with
//!   `OpenCSVSerde`, so RFC 4180 quoting with `""` escapes is expected;
//! - the CSV `Key` is form-URL-encoded (`%XX`, and `+` for a space);
//! - a delete marker has empty `Size`, `ETag` and `StorageClass`; an empty
//!   field is `None`.

use std::borrow::Cow;

/// An error in an inventory manifest, schema or row.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// `manifest.json` is not the JSON AWS writes.
    #[error("invalid inventory manifest.json: {0}")]
    Manifest(serde_json::Error),
    /// A manifest for ORC or Parquet data passed where CSV is needed.
    #[error("inventory fileFormat is {0:?}, expected \"CSV\"")]
    NotCsv(String),
    /// `fileSchema` lacks a required column.
    #[error("inventory fileSchema has no {0} column")]
    MissingColumn(&'static str),
    /// `fileSchema` names a column twice.
    #[error("inventory fileSchema lists column {0:?} twice")]
    DuplicateColumn(String),
    /// `fileSchema` has an empty name (e.g. `Bucket,,Key`).
    #[error("inventory fileSchema has an empty column name at position {0}")]
    EmptyColumnName(usize),
    /// A row with a different number of fields than the schema.
    #[error("CSV row has {got} fields, the schema has {expected}")]
    ColumnCount {
        /// Columns in the schema.
        expected: usize,
        /// Fields in the row.
        got: usize,
    },
    /// A quoted field without its closing quote.
    #[error("CSV field {field}: quoted field has no closing '\"'")]
    UnterminatedQuote {
        /// 1-based field number.
        field: usize,
    },
    /// A `"` inside a field that does not start with one.
    #[error("CSV field {field}: '\"' inside an unquoted field")]
    StrayQuote {
        /// 1-based field number.
        field: usize,
    },
    /// Characters between a closing quote and the next `,`.
    #[error("CSV field {field}: text after the closing '\"'")]
    TextAfterQuote {
        /// 1-based field number.
        field: usize,
    },
    /// A required field (`Bucket`, `Key`) is empty.
    #[error("CSV column {0} is empty")]
    EmptyField(&'static str),
    /// A field that does not parse as its type.
    #[error("CSV column {column}: {value:?} is not {expected}")]
    InvalidValue {
        /// Column name.
        column: &'static str,
        /// The field text.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// `%` not followed by two hex digits.
    #[error("URL-encoded key {key:?}: invalid percent-escape at byte {pos}")]
    BadPercentEscape {
        /// The encoded key.
        key: String,
        /// Byte offset of the `%`.
        pos: usize,
    },
    /// The decoded bytes are not UTF-8.
    #[error("URL-encoded key {0:?} does not decode to UTF-8")]
    KeyNotUtf8(String),
}

/// Accepts a JSON string or number and gives its text (AWS writes
/// `creationTimestamp` as a string of epoch milliseconds).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Sn {
        S(String),
        N(serde_json::Number),
    }
    Ok(match <Option<Sn> as serde::Deserialize>::deserialize(d)? {
        Some(Sn::S(s)) => Some(s),
        Some(Sn::N(n)) => Some(n.to_string()),
        None => None,
    })
}

/// `manifest.json` of one inventory report.
#[derive(serde::Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The inventoried bucket.
    pub source_bucket: String,
    /// ARN of the bucket holding the report, `arn:aws:s3:::name`.
    pub destination_bucket: String,
    /// Format version, `2016-11-30`.
    pub version: Option<String>,
    /// Epoch milliseconds, as text.
    #[serde(default, deserialize_with = "string_or_number")]
    pub creation_timestamp: Option<String>,
    /// `CSV`, `ORC` or `Parquet`.
    pub file_format: String,
    /// Column list (CSV), `struct<…>` (ORC) or `message …` (Parquet).
    pub file_schema: String,
    /// The data files.
    pub files: Vec<ManifestFile>,
}

/// One data file of a report.
#[derive(serde::Deserialize, Debug, Clone)]
pub struct ManifestFile {
    /// Key in the destination bucket.
    pub key: String,
    /// Compressed size in bytes.
    pub size: Option<u64>,
    /// MD5 of the file, hex.
    #[serde(rename = "MD5checksum")]
    pub md5_checksum: Option<String>,
}

impl Manifest {
    /// Parses `manifest.json`.
    ///
    /// # Errors
    ///
    /// Fails if the text is not JSON or lacks `sourceBucket`,
    /// `destinationBucket`, `fileFormat`, `fileSchema` or `files`.
    pub fn parse(json: &str) -> Result<Manifest, InventoryError> {
        serde_json::from_str(json).map_err(InventoryError::Manifest)
    }

    /// `creationTimestamp` as epoch milliseconds.
    pub fn creation_millis(&self) -> Option<i64> {
        self.creation_timestamp.as_deref()?.trim().parse().ok()
    }

    /// The bucket name from `destinationBucket` (`arn:aws:s3:::name` → `name`).
    pub fn destination_bucket_name(&self) -> &str {
        self.destination_bucket
            .strip_prefix("arn:aws:s3:::")
            .unwrap_or(&self.destination_bucket)
    }

    /// The CSV schema of a CSV report.
    ///
    /// # Errors
    ///
    /// Fails if `fileFormat` is not `CSV` or `fileSchema` is not a valid CSV
    /// schema (see [`CsvSchema::parse`]).
    pub fn csv_schema(&self) -> Result<CsvSchema, InventoryError> {
        if !self.file_format.eq_ignore_ascii_case("CSV") {
            return Err(InventoryError::NotCsv(self.file_format.clone()));
        }
        CsvSchema::parse(&self.file_schema)
    }
}

/// Positions of the columns narward reads, from a CSV `fileSchema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSchema {
    names: Vec<String>,
    bucket: usize,
    key: usize,
    version_id: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
    size: Option<usize>,
    last_modified: Option<usize>,
    etag: Option<usize>,
    storage_class: Option<usize>,
}

impl CsvSchema {
    /// Parses a comma-separated `fileSchema` such as `Bucket, Key, Size`.
    /// Names are trimmed and matched case-sensitively, as AWS writes them;
    /// unknown columns are allowed and ignored.
    ///
    /// # Errors
    ///
    /// Fails if `Bucket` or `Key` is missing, a name is empty, or a name
    /// repeats.
    pub fn parse(file_schema: &str) -> Result<CsvSchema, InventoryError> {
        let names: Vec<String> = file_schema
            .split(',')
            .map(|n| n.trim().to_owned())
            .collect();
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(InventoryError::EmptyColumnName(i + 1));
            }
            if names.iter().take(i).any(|m| m == n) {
                return Err(InventoryError::DuplicateColumn(n.clone()));
            }
        }
        let find = |name: &str| names.iter().position(|n| n == name);
        Ok(CsvSchema {
            bucket: find("Bucket").ok_or(InventoryError::MissingColumn("Bucket"))?,
            key: find("Key").ok_or(InventoryError::MissingColumn("Key"))?,
            version_id: find("VersionId"),
            is_latest: find("IsLatest"),
            is_delete_marker: find("IsDeleteMarker"),
            size: find("Size"),
            last_modified: find("LastModifiedDate"),
            etag: find("ETag"),
            storage_class: find("StorageClass"),
            names,
        })
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.names.len()
    }

    /// Column names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Position of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// True if the report lists all versions (has a `VersionId` column).
    pub fn has_versions(&self) -> bool {
        self.version_id.is_some()
    }
}

/// One object (or version, or delete marker) from an inventory report.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRow {
    /// Bucket name.
    pub bucket: String,
    /// Object key, URL-decoded.
    pub key: String,
    /// Version id (all-versions reports only).
    pub version_id: Option<String>,
    /// Whether this is the current version.
    pub is_latest: Option<bool>,
    /// Whether this is a delete marker.
    pub is_delete_marker: Option<bool>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Last modification, Unix seconds.
    pub last_modified: Option<i64>,
    /// ETag, as written (without quotes).
    pub etag: Option<String>,
    /// Storage class, e.g. `STANDARD`, `GLACIER`, `DEEP_ARCHIVE`.
    pub storage_class: Option<String>,
}

/// Splits one RFC 4180 CSV line into fields. A field that starts with `"`
/// is quoted, `""` inside it is a literal `"`; fields without escapes are
/// borrowed. A trailing `\n` or `\r\n` is ignored.
///
/// # Errors
///
/// Fails on a quoted field without closing quote, text after a closing
/// quote, or a `"` inside an unquoted field.
pub fn split_csv_line(line: &str) -> Result<Vec<Cow<'_, str>>, InventoryError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::with_capacity(16);
    let mut rest = line;
    loop {
        let field_no = fields.len() + 1;
        if let Some(quoted) = rest.strip_prefix('"') {
            // Find the closing quote, skipping "" escapes.
            let mut owned: Option<String> = None;
            let mut seg = quoted;
            let value: Cow<'_, str>;
            loop {
                let Some(q) = seg.find('"') else {
                    return Err(InventoryError::UnterminatedQuote { field: field_no });
                };
                let (before, after) = seg.split_at(q);
                let after = after.get(1..).unwrap_or_default();
                if let Some(after_escape) = after.strip_prefix('"') {
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(before);
                    o.push('"');
                    seg = after_escape;
                    continue;
                }
                value = match owned.take() {
                    Some(mut o) => {
                        o.push_str(before);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(before),
                };
                rest = after;
                break;
            }
            fields.push(value);
            if rest.is_empty() {
                break;
            }
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None => return Err(InventoryError::TextAfterQuote { field: field_no }),
            }
        } else {
            let (field, next) = match rest.split_once(',') {
                Some((f, n)) => (f, Some(n)),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err(InventoryError::StrayQuote { field: field_no });
            }
            fields.push(Cow::Borrowed(field));
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
    }
    Ok(fields)
}

fn parse_bool(column: &'static str, v: &str) -> Result<bool, InventoryError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(InventoryError::InvalidValue {
            column,
            value: v.to_owned(),
            expected: "true or false",
        }),
    }
}

/// Parses one CSV data line of an inventory report.
///
/// # Errors
///
/// Fails if the line is not valid CSV, has a different number of fields
/// than `schema`, has an empty `Bucket` or `Key`, a key that does not
/// URL-decode, or a `Size`, `IsLatest`, `IsDeleteMarker` or
/// `LastModifiedDate` that does not parse.
pub fn parse_csv_row(schema: &CsvSchema, line: &str) -> Result<InventoryRow, InventoryError> {
    parse_csv_row_ref(schema, line).map(InventoryRowRef::into_owned)
}

/// One row as [`parse_csv_row_ref`] gives it: the strings borrow from the line where
/// the CSV has no escapes (and the key no percent escapes), so a reader that keeps only
/// some fields allocates only for those.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRowRef<'a> {
    /// Bucket name.
    pub bucket: Cow<'a, str>,
    /// Object key, URL-decoded.
    pub key: Cow<'a, str>,
    /// Version id (all-versions reports only).
    pub version_id: Option<Cow<'a, str>>,
    /// Whether this is the current version.
    pub is_latest: Option<bool>,
    /// Whether this is a delete marker.
    pub is_delete_marker: Option<bool>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Last modification, Unix seconds.
    pub last_modified: Option<i64>,
    /// ETag, as written (without quotes).
    pub etag: Option<Cow<'a, str>>,
    /// Storage class, e.g. `STANDARD`, `GLACIER`, `DEEP_ARCHIVE`.
    pub storage_class: Option<Cow<'a, str>>,
}

impl InventoryRowRef<'_> {
    /// The row with owned strings.
    pub fn into_owned(self) -> InventoryRow {
        InventoryRow {
            bucket: self.bucket.into_owned(),
            key: self.key.into_owned(),
            version_id: self.version_id.map(Cow::into_owned),
            is_latest: self.is_latest,
            is_delete_marker: self.is_delete_marker,
            size: self.size,
            last_modified: self.last_modified,
            etag: self.etag.map(Cow::into_owned),
            storage_class: self.storage_class.map(Cow::into_owned),
        }
    }
}

/// [`parse_csv_row`] without copying the fields that need no unescaping.
///
/// # Errors
///
/// As [`parse_csv_row`].
pub fn parse_csv_row_ref<'a>(
    schema: &CsvSchema,
    line: &'a str,
) -> Result<InventoryRowRef<'a>, InventoryError> {
    let mut fields = split_csv_line(line)?;
    if fields.len() != schema.columns() {
        return Err(InventoryError::ColumnCount {
            expected: schema.columns(),
            got: fields.len(),
        });
    }
    let mut take = |idx: Option<usize>| -> Option<Cow<'a, str>> {
        let f = std::mem::take(fields.get_mut(idx?)?);
        (!f.is_empty()).then_some(f)
    };
    let bucket = take(Some(schema.bucket)).ok_or(InventoryError::EmptyField("Bucket"))?;
    let raw_key = take(Some(schema.key)).ok_or(InventoryError::EmptyField("Key"))?;
    let size = match take(schema.size) {
        Some(v) => Some(v.parse::<u64>().map_err(|_| InventoryError::InvalidValue {
            column: "Size",
            value: v.into_owned(),
            expected: "a number of bytes",
        })?),
        None => None,
    };
    let last_modified = match take(schema.last_modified) {
        Some(v) => Some(
            parse_timestamp(&v).ok_or_else(|| InventoryError::InvalidValue {
                column: "LastModifiedDate",
                value: v.into_owned(),
                expected: "an ISO 8601 timestamp",
            })?,
        ),
        None => None,
    };
    let key = match raw_key {
        Cow::Borrowed(k) => url_decode_key_cow(k)?,
        Cow::Owned(k) => Cow::Owned(url_decode_key(&k)?),
    };
    Ok(InventoryRowRef {
        bucket,
        key,
        version_id: take(schema.version_id),
        is_latest: take(schema.is_latest)
            .map(|v| parse_bool("IsLatest", &v))
            .transpose()?,
        is_delete_marker: take(schema.is_delete_marker)
            .map(|v| parse_bool("IsDeleteMarker", &v))
            .transpose()?,
        size,
        last_modified,
        etag: take(schema.etag),
        storage_class: take(schema.storage_class),
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Reads exactly `n` ASCII digits at the start of `s`.
fn digits(s: &str, n: usize) -> Option<(i64, &str)> {
    let (d, rest) = s.split_at_checked(n)?;
    if !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((d.parse().ok()?, rest))
}

/// Parses an ISO 8601 / RFC 3339 UTC timestamp as S3 writes it —
/// `2026-11-24T01:02:03.000Z`, `…03Z`, `…03+00:00` or any `±HH:MM` / `±HHMM`
/// offset — into Unix seconds (fractions are dropped). `None` if it is not
/// such a timestamp.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let (year, r) = digits(s, 4)?;
    let (month, r) = digits(r.strip_prefix('-')?, 2)?;
    let (day, r) = digits(r.strip_prefix('-')?, 2)?;
    let r = r.strip_prefix(['T', 't', ' '])?;
    let (hour, r) = digits(r, 2)?;
    let (min, r) = digits(r.strip_prefix(':')?, 2)?;
    let (sec, mut r) = digits(r.strip_prefix(':')?, 2)?;
    if let Some(frac) = r.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        r = frac.get(n..)?;
    }
    let offset = match r {
        "Z" | "z" => 0,
        _ => {
            let sign = match r.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let r = r.get(1..)?;
            let (oh, r) = digits(r, 2)?;
            let r = r.strip_prefix(':').unwrap_or(r);
            let (om, r) = digits(r, 2)?;
            if !r.is_empty() || oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    Some(
        crate::date::days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec
            - offset,
    )
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes a form-URL-encoded inventory key: `%XX` → byte, `+` → space.
///
/// # Errors
///
/// Fails if a `%` is not followed by two hex digits or the result is not
/// UTF-8.
pub fn url_decode_key(s: &str) -> Result<String, InventoryError> {
    url_decode_key_cow(s).map(Cow::into_owned)
}

/// [`url_decode_key`], borrowing `s` when it has nothing to decode.
///
/// # Errors
///
/// As [`url_decode_key`].
pub fn url_decode_key_cow(s: &str) -> Result<Cow<'_, str>, InventoryError> {
    if !s.bytes().any(|c| c == b'%' || c == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes().enumerate();
    while let Some((pos, c)) = bytes.next() {
        match c {
            b'%' => {
                let hi = bytes.next().and_then(|(_, c)| hex_val(c));
                let lo = bytes.next().and_then(|(_, c)| hex_val(c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => {
                        return Err(InventoryError::BadPercentEscape {
                            key: s.to_owned(),
                            pos,
                        });
                    }
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| InventoryError::KeyNotUtf8(s.to_owned()))
}

/// Percent-encodes a key for an S3 Batch Operations CSV manifest: every byte
/// except `A-Z a-z 0-9 - _ . ~` and `/` becomes `%XX` (upper-case hex).
pub fn url_encode_key(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(c));
        } else {
            out.push('%');
            for nibble in [c >> 4, c & 0xf] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    out
}

/// One row of an S3 Batch Operations CSV manifest
/// (`S3BatchOperations_CSV_20180820`): `bucket,urlencodedkey[,versionid]`,
/// without a newline. AWS requires version ids on all rows or on none.
pub fn batch_manifest_row(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut row = String::with_capacity(bucket.len() + key.len() + 40);
    row.push_str(bucket);
    row.push(',');
    row.push_str(&url_encode_key(key));
    if let Some(v) = version_id {
        row.push(',');
        row.push_str(v);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp("2026-11-24T01:02:03.000Z"),
            Some(1_795_482_123)
        );
        assert_eq!(parse_timestamp("2026-11-24T01:02:03Z"), Some(1_795_482_123));
        assert_eq!(
            parse_timestamp("2026-11-24T01:02:03+00:00"),
            Some(1_795_482_123)
        );
        assert_eq!(
            parse_timestamp("2026-11-24T03:02:03.5+02:00"),
            Some(1_795_482_123)
        );
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2026-11-24",
            "2026-11-24T01:02:03",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T01:02:03.Z",
            "2026-11-24T01:02:03Zjunk",
            "2026-11-24T01:02:03+0",
            "２０２６-11-24T01:02:03Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
