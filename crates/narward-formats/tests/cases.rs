//! Hand-written cases: narinfo quirks and errors, S3 keys, S3 inventory.

mod narinfo {
    use narward_formats::hash::{HashEncoding, Sha256};
    use narward_formats::narinfo::{MAX_NARINFO_SIZE, NarInfo, SigStatus};
    use narward_formats::signature::{self, PublicKey, SecretKey};
    use narward_formats::store_path::StorePath;

    /// The go-nix test narinfo (reference §1.6), signed by cache.nixos.org-1.
    const SIGNED: &str = "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin
URL: nar/05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56.nar.xz
Compression: xz
FileHash: sha256:05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56
FileSize: 68852
NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0
NarSize: 196040
References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115 j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n
Deriver: 5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv
Sig: cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ==
";

    const FINGERPRINT: &str = "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin;sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0;196040;/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,/nix/store/6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115,/nix/store/j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12,/nix/store/yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n";

    fn key() -> PublicKey {
        signature::parse("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=").unwrap()
    }

    fn valid() -> SigStatus {
        SigStatus::Valid {
            key: "cache.nixos.org-1".into(),
        }
    }

    fn replace_line(text: &str, key: &str, new_line: &str) -> String {
        text.lines()
            .map(|l| {
                if l.starts_with(&format!("{key}:")) {
                    new_line.to_owned()
                } else {
                    l.to_owned()
                }
            })
            .filter(|l| !l.is_empty())
            .map(|l| l + "\n")
            .collect()
    }

    fn remove_line(text: &str, key: &str) -> String {
        replace_line(text, key, "")
    }

    fn err(text: &str) -> String {
        NarInfo::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unsorted_references_fingerprint_sorts() {
        let text = replace_line(
            SIGNED,
            "References",
            "References: yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115",
        );
        let n = NarInfo::parse(&text).unwrap();
        assert!(n.quirks().references_unsorted);
        assert!(!n.quirks().references_duplicated);
        assert_eq!(n.references[0].name, "openssl-1.1.1n");
        assert_eq!(n.to_string(), text, "order is kept when printing");
        assert_eq!(n.fingerprint(), FINGERPRINT);
        assert_eq!(n.verify(&[key()]), valid());
    }

    #[test]
    fn duplicated_references_are_deduplicated_in_fingerprint() {
        let text = replace_line(
            SIGNED,
            "References",
            "References:  0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115  j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 ",
        );
        let n = NarInfo::parse(&text).unwrap();
        let q = n.quirks();
        assert!(q.references_duplicated && q.references_unsorted && q.references_spacing);
        assert_eq!(n.references.len(), 5);
        assert_eq!(n.to_string(), text);
        assert_eq!(n.fingerprint(), FINGERPRINT);
        assert_eq!(n.verify(&[key()]), valid());
    }

    #[test]
    fn hex_nar_hash_fingerprint_reencodes() {
        let (h, _) =
            Sha256::parse("sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0").unwrap();
        let hex = h.format(HashEncoding::Hex);
        assert_eq!(hex.len(), 7 + 64);
        let text = replace_line(SIGNED, "NarHash", &format!("NarHash: {hex}"));
        let n = NarInfo::parse(&text).unwrap();
        assert!(n.quirks().nar_hash_hex && n.quirks().nar_hash_not_nix32);
        assert_eq!(n.nar_hash_encoding(), Some(HashEncoding::Hex));
        assert_eq!(n.nar_hash, h);
        assert_eq!(n.to_string(), text, "hex is kept when printing");
        assert_eq!(n.fingerprint(), FINGERPRINT);
        assert_eq!(n.verify(&[key()]), valid());
        // SRI and base64 as well.
        for enc in [HashEncoding::Sri, HashEncoding::Base64] {
            let text = replace_line(SIGNED, "NarHash", &format!("NarHash: {}", h.format(enc)));
            let n = NarInfo::parse(&text).unwrap();
            assert!(!n.quirks().nar_hash_hex && n.quirks().nar_hash_not_nix32);
            assert_eq!(n.to_string(), text);
            assert_eq!(n.verify(&[key()]), valid());
        }
    }

    #[test]
    fn missing_compression_means_bzip2() {
        let text = remove_line(SIGNED, "Compression");
        let n = NarInfo::parse(&text).unwrap();
        assert_eq!(n.compression, None);
        assert_eq!(n.compression_or_default(), "bzip2");
        assert!(n.quirks().compression_missing);
        assert_eq!(n.to_string(), text);
        let empty = replace_line(SIGNED, "Compression", "Compression: ");
        let n = NarInfo::parse(&empty).unwrap();
        assert_eq!(n.compression, Some(""));
        assert_eq!(n.compression_or_default(), "bzip2");
        assert_eq!(n.to_string(), empty);
    }

    #[test]
    fn system_line_is_preserved() {
        let text = replace_line(
            SIGNED,
            "Deriver",
            "Deriver: 5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv\nSystem: x86_64-linux",
        );
        let n = NarInfo::parse(&text).unwrap();
        assert_eq!(n.system, Some("x86_64-linux"));
        assert!(n.quirks().has_system);
        assert!(
            !n.quirks().field_order,
            "System between Deriver and Sig is writer order"
        );
        assert_eq!(n.to_string(), text);
        assert_eq!(n.verify(&[key()]), valid());
    }

    #[test]
    fn unknown_keys_and_odd_order_are_preserved() {
        let text = format!(
            "Foo: bar baz\n{}X-Empty: \n",
            replace_line(SIGNED, "URL", "")
        ) + "URL: nar/05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56.nar.xz\n";
        let n = NarInfo::parse(&text).unwrap();
        assert_eq!(n.unknown_fields(), &[("Foo", "bar baz"), ("X-Empty", "")]);
        assert!(n.quirks().unknown_fields && n.quirks().field_order);
        assert_eq!(n.to_string(), text);
        assert_eq!(n.verify(&[key()]), valid());
    }

    #[test]
    fn sigs_repeat_and_statuses() {
        let other = SecretKey::from_seed("other-1", [3; 32]);
        let n = NarInfo::parse(SIGNED).unwrap();
        let other_sig = n.signature(&other);
        let text = format!("{SIGNED}Sig: {other_sig}\nSig: junk\n");
        let n = NarInfo::parse(&text).unwrap();
        assert_eq!(n.sigs.len(), 3);
        assert_eq!(n.to_string(), text);
        assert_eq!(n.verify(&[key()]), valid());
        assert_eq!(
            n.verify(&[other.public_key()]),
            SigStatus::Valid {
                key: "other-1".into()
            }
        );
        assert_eq!(
            n.verify(&[
                signature::parse("nobody:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=").unwrap()
            ]),
            SigStatus::UnknownKey
        );
        // A trusted name whose signature does not verify.
        let wrong = SecretKey::from_seed("cache.nixos.org-1", [9; 32]);
        let bad = replace_line(SIGNED, "Sig", &format!("Sig: {}", n.signature(&wrong)));
        assert_eq!(
            NarInfo::parse(&bad).unwrap().verify(&[key()]),
            SigStatus::Invalid
        );
        let unsigned = remove_line(SIGNED, "Sig");
        assert_eq!(
            NarInfo::parse(&unsigned).unwrap().verify(&[key()]),
            SigStatus::Unsigned
        );
    }

    #[test]
    fn empty_references_and_unknown_deriver() {
        let text = replace_line(SIGNED, "References", "References: ");
        let text = replace_line(&text, "Deriver", "Deriver: unknown-deriver");
        let n = NarInfo::parse(&text).unwrap();
        assert!(n.references.is_empty());
        assert_eq!(n.deriver, Some("unknown-deriver"));
        assert_eq!(n.deriver_path(), None);
        assert!(n.quirks().deriver_unknown);
        assert_eq!(n.to_string(), text);
        assert!(n.fingerprint().ends_with(";196040;"));
        // No References line at all is also fine, and prints without one.
        let text = remove_line(SIGNED, "References");
        let n = NarInfo::parse(&text).unwrap();
        assert_eq!(n.to_string(), text);
    }

    #[test]
    fn ca_field() {
        let text = format!(
            "{SIGNED}CA: fixed:r:sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\n"
        );
        let n = NarInfo::parse(&text).unwrap();
        assert!(n.ca.unwrap().starts_with("fixed:r:"));
        assert_eq!(n.to_string(), text);
        let twice = format!("{text}CA: text:sha256:x\n");
        assert_eq!(err(&twice), "line 12 (CA): duplicate CA field");
        let bad = format!("{SIGNED}CA: bogus\n");
        assert!(err(&bad).starts_with("line 11 (CA): "), "{}", err(&bad));
    }

    #[test]
    fn required_fields_missing() {
        assert_eq!(err(&remove_line(SIGNED, "StorePath")), "StorePath missing");
        assert_eq!(err(&remove_line(SIGNED, "NarHash")), "NarHash missing");
        assert_eq!(err(&remove_line(SIGNED, "URL")), "URL missing");
        assert_eq!(err(&replace_line(SIGNED, "URL", "URL: ")), "URL missing");
        assert_eq!(
            err(&remove_line(SIGNED, "NarSize")),
            "NarSize missing or zero"
        );
        assert_eq!(
            err(&replace_line(SIGNED, "NarSize", "NarSize: 0")),
            "NarSize missing or zero"
        );
        assert_eq!(err(""), "StorePath missing");
        let e = NarInfo::parse(&remove_line(SIGNED, "NarHash")).unwrap_err();
        assert_eq!(e.line, 0);
        assert_eq!(e.field.as_deref(), Some("NarHash"));
    }

    #[test]
    fn duplicates_are_errors() {
        let twice = replace_line(
            SIGNED,
            "Deriver",
            "References: \nDeriver: 5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv",
        );
        assert_eq!(err(&twice), "line 9 (References): second References line");
        let twice = replace_line(SIGNED, "Deriver", "NarSize: 196040");
        assert_eq!(err(&twice), "line 9 (NarSize): duplicate NarSize field");
        let twice = format!("{SIGNED}StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-x\n");
        assert_eq!(
            err(&twice),
            "line 11 (StorePath): duplicate StorePath field"
        );
    }

    #[test]
    fn line_syntax_errors() {
        let no_newline = SIGNED.trim_end_matches('\n');
        assert_eq!(
            err(no_newline),
            "line 10 (Sig): line does not end with a newline"
        );
        assert_eq!(
            err(&format!("{SIGNED}\n")),
            "line 11: expected \"Name: value\", found no ':'"
        );
        assert_eq!(
            err(&replace_line(SIGNED, "FileSize", "FileSize:68852")),
            "line 5 (FileSize): expected a space after ':'"
        );
    }

    #[test]
    fn value_errors_name_line_and_field() {
        let cases = [
            ("NarSize", "NarSize: abc", "line 7 (NarSize): not a number"),
            ("NarSize", "NarSize: -1", "line 7 (NarSize): not a number"),
            (
                "NarSize",
                "NarSize: ",
                "line 7 (NarSize): empty, expected a number",
            ),
            (
                "NarSize",
                "NarSize: 99999999999999999999",
                "line 7 (NarSize): number too large",
            ),
            (
                "FileSize",
                "FileSize: 1.5",
                "line 5 (FileSize): not a number",
            ),
            (
                "NarHash",
                "NarHash: md5:abc",
                "line 6 (NarHash): invalid hash: hash algorithm \"md5\" is not supported, only sha256",
            ),
            (
                "FileHash",
                "FileHash: sha256:xyz",
                "line 4 (FileHash): invalid hash: sha256 digest is 3 characters, expected 52 (nix32), 64 (hex) or 44 (base64)",
            ),
            (
                "StorePath",
                "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl/bin",
                "line 1 (StorePath): invalid store path: store path name contains '/' at position 4, allowed are 0-9 a-z A-Z + - . _ ? =",
            ),
            (
                "StorePath",
                "StorePath: syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl",
                "line 1 (StorePath): invalid store path: store path does not start with \"/nix/store/\"",
            ),
            (
                "Deriver",
                "Deriver: foo.drv",
                "line 9 (Deriver): invalid deriver: store path base name is 7 bytes, shorter than 34 (32-character hash, '-', name)",
            ),
        ];
        for (key, line, want) in cases {
            assert_eq!(err(&replace_line(SIGNED, key, line)), want);
        }
        let bad_ref = replace_line(
            SIGNED,
            "References",
            "References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 eeee0rlxzra1rs38rdxl43yh6rxchgc6-x",
        );
        let e = err(&bad_ref);
        assert!(
            e.starts_with("line 8 (References): invalid reference #2 \"eeee0rlxzra1rs38rdxl43yh6rxchgc6-x\": store path hash contains 'e' at position 0"),
            "{e}"
        );
    }

    #[test]
    fn size_limit() {
        let big = format!("{SIGNED}X: {}\n", "a".repeat(MAX_NARINFO_SIZE));
        assert!(err(&big).contains("larger than the 1 MiB limit"));
    }

    #[test]
    fn leading_zeros_roundtrip() {
        let text = replace_line(SIGNED, "FileSize", "FileSize: 0068852");
        let n = NarInfo::parse(&text).unwrap();
        assert_eq!(n.file_size, Some(68852));
        assert!(n.quirks().size_leading_zeros);
        assert_eq!(n.to_string(), text);
    }

    #[test]
    fn modified_fields_print_in_writer_form() {
        let text = replace_line(
            SIGNED,
            "NarHash",
            &format!("NarHash: {}", Sha256([7; 32]).format(HashEncoding::Hex)),
        );
        let mut n = NarInfo::parse(&text).unwrap();
        n.nar_hash = Sha256([8; 32]);
        n.nar_size = 5;
        n.references.truncate(1);
        n.system = Some("aarch64-linux");
        let printed = n.to_string();
        assert!(printed.contains(&format!(
            "NarHash: {}\n",
            Sha256([8; 32]).to_nix32_prefixed()
        )));
        assert!(printed.contains("NarSize: 5\n"));
        assert!(printed.contains("References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0\n"));
        assert!(printed.contains(".drv\nSystem: aarch64-linux\nSig: "));
        let back = NarInfo::parse(&printed).unwrap();
        assert_eq!(back.nar_hash, n.nar_hash);
        assert_eq!(back.references, n.references);
    }

    #[test]
    fn new_prints_like_the_nix_writer() {
        let p =
            StorePath::parse_full("/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin")
                .unwrap();
        let r = StorePath::parse_base_name("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0").unwrap();
        let mut n = NarInfo::new(p, "nar/x.nar.xz", Sha256([1; 32]), 10);
        assert_eq!(
            n.to_string(),
            format!(
                "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin\nURL: nar/x.nar.xz\nNarHash: {}\nNarSize: 10\nReferences: \n",
                Sha256([1; 32])
            )
        );
        n.references.push(r);
        n.compression = Some("xz");
        let sk = SecretKey::from_seed("k-1", [5; 32]);
        let sig = n.signature(&sk);
        n.sigs.push(&sig);
        let text = n.to_string();
        let back = NarInfo::parse(&text).unwrap();
        assert_eq!(back, NarInfo::parse(&back.to_string()).unwrap());
        assert!(text.contains("URL: nar/x.nar.xz\nCompression: xz\n"));
        assert_eq!(
            back.verify(&[sk.public_key()]),
            SigStatus::Valid { key: "k-1".into() }
        );
    }
}

mod inventory {
    use std::borrow::Cow;

    use narward_formats::inventory::{
        CsvSchema, InventoryError, InventoryRow, Manifest, batch_manifest_row, parse_csv_row,
        split_csv_line, url_decode_key, url_encode_key,
    };

    /// The example manifest from the AWS S3 Inventory documentation.
    const MANIFEST: &str = r#"{
    "sourceBucket": "example-source-bucket",
    "destinationBucket": "arn:aws:s3:::example-inventory-destination-bucket",
    "version": "2016-11-30",
    "creationTimestamp" : "1514944800000",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm, ObjectAccessControlList, ObjectOwner",
    "files": [
        {
            "key": "Inventory/example-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz",
            "size": 2147483647,
            "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc"
        }
    ]
}"#;

    const SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";

    #[test]
    fn aws_example_manifest() {
        let m = Manifest::parse(MANIFEST).unwrap();
        assert_eq!(m.source_bucket, "example-source-bucket");
        assert_eq!(
            m.destination_bucket_name(),
            "example-inventory-destination-bucket"
        );
        assert_eq!(m.version.as_deref(), Some("2016-11-30"));
        assert_eq!(m.creation_millis(), Some(1_514_944_800_000));
        assert_eq!(m.file_format, "CSV");
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].size, Some(2_147_483_647));
        assert_eq!(
            m.files[0].md5_checksum.as_deref(),
            Some("f11166069f1990abeb9c97ace9cdfabc")
        );
        let schema = m.csv_schema().unwrap();
        assert_eq!(schema.columns(), 20);
        assert!(schema.has_versions());
        assert_eq!(schema.index_of("ObjectOwner"), Some(19));
        // A numeric creationTimestamp is accepted too.
        let numeric = MANIFEST.replace("\"1514944800000\"", "1514944800000");
        assert_eq!(
            Manifest::parse(&numeric).unwrap().creation_millis(),
            Some(1_514_944_800_000)
        );
        let parquet = MANIFEST.replace("\"CSV\"", "\"Parquet\"");
        let e = Manifest::parse(&parquet).unwrap().csv_schema().unwrap_err();
        assert_eq!(
            e.to_string(),
            "inventory fileFormat is \"Parquet\", expected \"CSV\""
        );
        let e = Manifest::parse("{\"sourceBucket\": 1}").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid inventory manifest.json: "),
            "{e}"
        );
    }

    #[test]
    fn schema_rules() {
        let s = CsvSchema::parse(SCHEMA).unwrap();
        assert_eq!(s.columns(), 9);
        assert_eq!(s.names()[8], "StorageClass");
        assert!(CsvSchema::parse("Bucket,Key").is_ok());
        assert_eq!(
            CsvSchema::parse("Bucket, Size").unwrap_err().to_string(),
            "inventory fileSchema has no Key column"
        );
        assert_eq!(
            CsvSchema::parse("bucket, key").unwrap_err().to_string(),
            "inventory fileSchema has no Bucket column"
        );
        assert!(matches!(
            CsvSchema::parse("Bucket, Key, Key").unwrap_err(),
            InventoryError::DuplicateColumn(c) if c == "Key"
        ));
        assert!(matches!(
            CsvSchema::parse("Bucket,,Key").unwrap_err(),
            InventoryError::EmptyColumnName(2)
        ));
    }

    #[test]
    fn csv_splitting() {
        assert_eq!(split_csv_line("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split_csv_line("\"a\",\"b,c\",\"d\"\"e\",\"\"\r\n").unwrap(),
            ["a", "b,c", "d\"e", ""]
        );
        assert!(matches!(
            split_csv_line("\"a\"\"b\"").unwrap()[0],
            Cow::Owned(_)
        ));
        assert!(matches!(
            split_csv_line("\"ab\"").unwrap()[0],
            Cow::Borrowed("ab")
        ));
        assert_eq!(split_csv_line("").unwrap(), [""]);
        assert_eq!(split_csv_line("a,").unwrap(), ["a", ""]);
        assert_eq!(
            split_csv_line("\"a\",\"b").unwrap_err().to_string(),
            "CSV field 2: quoted field has no closing '\"'"
        );
        assert_eq!(
            split_csv_line("\"a\"x,b").unwrap_err().to_string(),
            "CSV field 1: text after the closing '\"'"
        );
        assert_eq!(
            split_csv_line("a,b\"c").unwrap_err().to_string(),
            "CSV field 2: '\"' inside an unquoted field"
        );
    }

    #[test]
    fn rows() {
        let s = CsvSchema::parse(SCHEMA).unwrap();
        let row = parse_csv_row(
            &s,
            r#""nix-cache","log/foo%2Bbar-1.0.drv","3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY","true","false","1234","2026-11-24T01:02:03.000Z","d41d8cd98f00b204e9800998ecf8427e","STANDARD""#,
        )
        .unwrap();
        assert_eq!(
            row,
            InventoryRow {
                bucket: "nix-cache".into(),
                key: "log/foo+bar-1.0.drv".into(),
                version_id: Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY".into()),
                is_latest: Some(true),
                is_delete_marker: Some(false),
                size: Some(1234),
                last_modified: Some(1_795_482_123),
                etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
                storage_class: Some("STANDARD".into()),
            }
        );
        // A delete marker: empty size, etag, storage class.
        let dm = parse_csv_row(
            &s,
            r#""nix-cache","a+b","v2","true","true","","2026-11-24T01:02:03Z","","""#,
        )
        .unwrap();
        assert_eq!(dm.key, "a b");
        assert_eq!(dm.is_delete_marker, Some(true));
        assert_eq!((dm.size, dm.etag, dm.storage_class), (None, None, None));
        // Minimal schema, unquoted.
        let min = CsvSchema::parse("Bucket,Key,Size").unwrap();
        let r = parse_csv_row(&min, "b,nar/x.nar.xz,5").unwrap();
        assert_eq!(
            (r.key.as_str(), r.size, r.version_id),
            ("nar/x.nar.xz", Some(5), None)
        );
    }

    #[test]
    fn bad_rows() {
        let s = CsvSchema::parse(SCHEMA).unwrap();
        let ok = r#""b","k","v","true","false","1","2026-11-24T01:02:03Z","e","STANDARD""#;
        assert!(parse_csv_row(&s, ok).is_ok());
        let cases = [
            (r#""b","k""#, "CSV row has 2 fields, the schema has 9"),
            (
                &ok.replace("\"1\"", "\"-1\""),
                "CSV column Size: \"-1\" is not a number of bytes",
            ),
            (
                &ok.replace("\"true\"", "\"yes\""),
                "CSV column IsLatest: \"yes\" is not true or false",
            ),
            (
                &ok.replace("2026-11-24T01:02:03Z", "yesterday"),
                "CSV column LastModifiedDate: \"yesterday\" is not an ISO 8601 timestamp",
            ),
            (&ok.replace("\"k\"", "\"\""), "CSV column Key is empty"),
            (&ok.replace("\"b\"", "\"\""), "CSV column Bucket is empty"),
            (
                &ok.replace("\"k\"", "\"a%2\""),
                "URL-encoded key \"a%2\": invalid percent-escape at byte 1",
            ),
            (
                &ok.replace("\"k\"", "\"%FF\""),
                "URL-encoded key \"%FF\" does not decode to UTF-8",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_csv_row(&s, line).unwrap_err().to_string(),
                want,
                "{line}"
            );
        }
    }

    #[test]
    fn url_coding() {
        assert_eq!(url_decode_key("log/foo%2Bbar").unwrap(), "log/foo+bar");
        assert_eq!(url_decode_key("a+b").unwrap(), "a b");
        assert_eq!(url_decode_key("%e2%9c%93%E2%9C%93").unwrap(), "✓✓");
        assert!(url_decode_key("%").is_err());
        assert!(url_decode_key("%zz").is_err());
        assert_eq!(
            url_encode_key("log/foo+bar baz~_.-"),
            "log/foo%2Bbar%20baz~_.-"
        );
        assert_eq!(
            url_encode_key("realisations/sha256:ab!out.doi"),
            "realisations/sha256%3Aab%21out.doi"
        );
        assert_eq!(url_encode_key("✓"), "%E2%9C%93");
        assert_eq!(batch_manifest_row("bkt", "a b", None), "bkt,a%20b");
        assert_eq!(batch_manifest_row("bkt", "k,1", Some("v1")), "bkt,k%2C1,v1");
    }
}
