//! Round-trip and signature tests over 489 real cache.nixos.org narinfos.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use narward_formats::narinfo::{NarInfo, Quirks, SigStatus};
use narward_formats::signature::{self, PublicKey, SecretKey};

const CACHE_KEY: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

fn corpus_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cache-nixos-org-narinfos.txt.gz")
}

/// The corpus records, each ending in exactly one `\n`.
fn corpus() -> Vec<String> {
    let path = corpus_path();
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("cannot open corpus {}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    text.split("\n\n")
        .map(|r| r.trim_end_matches('\n'))
        .filter(|r| !r.is_empty())
        .map(|r| format!("{r}\n"))
        .collect()
}

fn cache_key() -> PublicKey {
    signature::parse(CACHE_KEY).unwrap()
}

#[test]
fn every_record_parses_prints_back_and_verifies() {
    let records = corpus();
    assert_eq!(records.len(), 489);
    let trusted = [cache_key()];
    for (i, r) in records.iter().enumerate() {
        let n = NarInfo::parse(r).unwrap_or_else(|e| panic!("record {i}: {e}\n{r}"));
        assert_eq!(n.to_string(), *r, "record {i} does not print back");
        assert_eq!(
            n.verify(&trusted),
            SigStatus::Valid {
                key: "cache.nixos.org-1".into()
            },
            "record {i}\n{r}"
        );
        assert_eq!(n.verify(&[]), SigStatus::UnknownKey);
        assert!(n.fingerprint().starts_with("1;/nix/store/"));
    }
}

#[test]
fn quirk_counts() {
    let records = corpus();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut total = Quirks::default();
    for r in &records {
        let n = NarInfo::parse(r).unwrap();
        let q = n.quirks();
        let flags = [
            ("references_unsorted", q.references_unsorted),
            ("references_duplicated", q.references_duplicated),
            ("references_spacing", q.references_spacing),
            ("nar_hash_hex", q.nar_hash_hex),
            ("nar_hash_not_nix32", q.nar_hash_not_nix32),
            ("file_hash_not_nix32", q.file_hash_not_nix32),
            ("compression_missing", q.compression_missing),
            ("has_system", q.has_system),
            ("unknown_fields", q.unknown_fields),
            ("field_order", q.field_order),
            ("size_leading_zeros", q.size_leading_zeros),
            ("deriver_unknown", q.deriver_unknown),
        ];
        for (name, set) in flags {
            *counts.entry(name).or_default() += usize::from(set);
        }
        total.has_system |= q.has_system;
        *counts.entry("with_ca").or_default() += usize::from(n.ca.is_some());
        *counts.entry("with_deriver").or_default() += usize::from(n.deriver.is_some());
        *counts.entry("no_references").or_default() += usize::from(n.references.is_empty());
    }
    println!("quirk counts over {} records: {counts:#?}", records.len());
    // Facts about this corpus checked independently with grep.
    assert_eq!(counts["has_system"], 2);
    assert_eq!(counts["with_ca"], 5);
    assert_eq!(counts["with_deriver"], 462);
    assert_eq!(counts["no_references"], 66);
    assert_eq!(counts["compression_missing"], 0);
    assert_eq!(counts["nar_hash_hex"], 0);
    assert_eq!(counts["unknown_fields"], 0);
    assert_eq!(counts["field_order"], 0);
    assert_eq!(counts["references_spacing"], 0);
    // This sample has no out-of-order references (checked with a script);
    // tests/cases.rs covers that quirk with a hand-made narinfo.
    assert_eq!(counts["references_unsorted"], 0);
    assert!(total.has_system);
}

/// Replaces the last character of the value of the first `key: ` line
/// (or of the first token in it) with a different, still valid character.
fn mutate_last_char(record: &str, key: &str, first_token: bool, pick: fn(char) -> char) -> String {
    let prefix = format!("{key}: ");
    let mut out = String::new();
    let mut done = false;
    for line in record.split_inclusive('\n') {
        if !done && line.starts_with(&prefix) {
            let body = line.trim_end_matches('\n');
            let value = &body[prefix.len()..];
            let end = prefix.len()
                + if first_token {
                    value.find(' ').unwrap_or(value.len())
                } else {
                    value.len()
                };
            let (head, tail) = body.split_at(end);
            let mut head = head.to_string();
            let c = head.pop().unwrap();
            head.push(pick(c));
            out.push_str(&head);
            out.push_str(tail);
            out.push('\n');
            done = true;
        } else {
            out.push_str(line);
        }
    }
    assert!(done, "no {key} line");
    out
}

#[test]
fn one_byte_change_to_a_signed_field_breaks_the_signature() {
    let trusted = [cache_key()];
    let alnum = |c: char| if c == 'a' { 'b' } else { 'a' };
    let nix32 = |c: char| if c == '0' { '1' } else { '0' };
    let digit = |c: char| if c == '9' { '8' } else { (c as u8 + 1) as char };
    let mut refs_mutated = 0;
    for (i, r) in corpus().iter().enumerate() {
        let mut mutants = vec![
            ("StorePath", mutate_last_char(r, "StorePath", false, alnum)),
            ("NarHash", mutate_last_char(r, "NarHash", false, nix32)),
            ("NarSize", mutate_last_char(r, "NarSize", false, digit)),
        ];
        let n = NarInfo::parse(r).unwrap();
        if !n.references.is_empty() {
            mutants.push(("References", mutate_last_char(r, "References", true, alnum)));
            refs_mutated += 1;
        }
        for (field, m) in mutants {
            assert_ne!(&m, r);
            let mn = NarInfo::parse(&m).unwrap_or_else(|e| panic!("record {i} {field}: {e}\n{m}"));
            assert_eq!(mn.to_string(), m);
            assert_eq!(
                mn.verify(&trusted),
                SigStatus::Invalid,
                "record {i}: changing {field} kept the signature valid\n{m}"
            );
        }
    }
    assert_eq!(refs_mutated, 489 - 66);
}

#[test]
fn resigning_with_own_key_roundtrips() {
    let sk = SecretKey::from_seed("narward-test-1", [42; 32]);
    let sk = SecretKey::parse(&sk.to_string_nix()).unwrap();
    let pk = sk.public_key();
    for r in corpus().iter().take(50) {
        let n = NarInfo::parse(r).unwrap();
        let sig = n.signature(&sk);
        let mut resigned = n.clone();
        resigned.sigs = vec![&sig];
        assert_eq!(
            resigned.verify(&[cache_key(), pk.clone()]),
            SigStatus::Valid {
                key: "narward-test-1".into()
            }
        );
        assert_eq!(resigned.verify(&[cache_key()]), SigStatus::UnknownKey);
        // Printing and re-parsing keeps the new signature valid.
        let text = resigned.to_string();
        let back = NarInfo::parse(&text).unwrap();
        assert!(matches!(
            back.verify(std::slice::from_ref(&pk)),
            SigStatus::Valid { .. }
        ));
        // Both signatures together: valid against either key.
        let mut both = n.clone();
        both.sigs.push(&sig);
        assert!(matches!(
            both.verify(std::slice::from_ref(&pk)),
            SigStatus::Valid { .. }
        ));
        assert!(matches!(
            both.verify(&[cache_key()]),
            SigStatus::Valid { .. }
        ));
    }
}

mod fuzz_props {
    use super::corpus;
    use narward_formats::fuzzing;
    use proptest::prelude::*;

    fn mutate(record: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        let mut b = record.as_bytes().to_vec();
        for &(pos, op, byte) in edits {
            if b.is_empty() {
                break;
            }
            let pos = pos % b.len();
            match op % 4 {
                0 => b[pos] = byte,
                1 => {
                    b.remove(pos);
                }
                2 => b.insert(pos, byte),
                _ => {
                    // Replace with a byte that is structurally interesting.
                    let specials = b"\n: -/.0e";
                    b[pos] = specials[byte as usize % specials.len()];
                }
            }
        }
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn mutated_corpus_narinfos_never_panic(
            idx in 0usize..489,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6),
        ) {
            let records = corpus_cached();
            let r = &records[idx % records.len()];
            let m = mutate(r, &edits);
            fuzzing::narinfo(&m);
            fuzzing::store_path(&m);
            fuzzing::inventory_csv_row(&m);
            fuzzing::root_list(&m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            fuzzing::narinfo(&data);
            fuzzing::store_path(&data);
            fuzzing::nixbase32(&data);
            fuzzing::inventory_csv_row(&data);
            fuzzing::root_list(&data);
            fuzzing::access_log(&data);
        }

        #[test]
        fn root_list_shaped_text_never_panics(
            lines in proptest::collection::vec(
                ("(/nix/store/|  x = \"/nix/store/|#|)", "[0-9a-z]{30,34}", "(-[a-z0-9.+_?=-]{0,12})?", "(\";)?"),
                0..8,
            ),
        ) {
            let text: String = lines.iter().map(|(a, b, c, d)| format!("{a}{b}{c}{d}\n")).collect();
            fuzzing::root_list(text.as_bytes());
        }

        #[test]
        fn line_shaped_text_never_panics(
            lines in proptest::collection::vec(
                ("(StorePath|URL|Compression|FileHash|FileSize|NarHash|NarSize|References|Deriver|Sig|CA|System|X)",
                 "[ -~]{0,60}"),
                0..14,
            ),
        ) {
            let text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            fuzzing::narinfo(text.as_bytes());
        }

        #[test]
        fn arbitrary_strings_never_panic_the_access_log_parser(s in any::<String>()) {
            fuzzing::access_log(s.as_bytes());
        }

        #[test]
        fn log_shaped_lines_never_panic(
            t in "[0-9é€]{0,3}/(Feb|Dec|é|)/[0-9]{0,20}:[0-9€]{0,20}:[0-9]{0,3}:[0-9]{0,3} [+é€-]?[0-9é€]{0,5}",
            k in "[a-z0-9%+é.]{0,20}",
            status in "(200|304|404|é)",
        ) {
            let line = format!(
                "owner bucket [{t}] 192.0.2.3 - REQ REST.GET.OBJECT {k} \"GET /{k} HTTP/1.1\" {status} - 1 1 7"
            );
            fuzzing::access_log(line.as_bytes());
        }

        #[test]
        fn csv_shaped_text_never_panics(s in "[\"a-z0-9,%+ TZ:.-]{0,80}") {
            fuzzing::inventory_csv_row(s.as_bytes());
            fuzzing::store_path(s.as_bytes());
            fuzzing::nixbase32(s.as_bytes());
        }
    }

    fn corpus_cached() -> &'static [String] {
        static CORPUS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        CORPUS.get_or_init(corpus)
    }

    #[test]
    fn every_corpus_record_passes_the_fuzz_checks() {
        for r in corpus_cached() {
            fuzzing::narinfo(r.as_bytes());
        }
    }
}
