use super::*;

struct Fx {
    _d: tempfile::TempDir,
    cache: PathBuf,
    store: FileStore,
}

const NI: &str = "0a3yijp35sygmy51cnrrz11vimwapz7c.narinfo";
const NAR: &str = "nar/0a3yijp35sygmy51cnrrz11vimwapz7c.nar.xz";

fn fx() -> Fx {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    std::fs::create_dir_all(cache.join("nar")).unwrap();
    std::fs::write(cache.join(NI), b"StorePath: /nix/store/x\n").unwrap();
    std::fs::write(cache.join(NAR), vec![7u8; 5000]).unwrap();
    let (a, q) = FileStore::default_dirs(&cache).unwrap();
    let store = FileStore::open(&cache, &a, &q).unwrap();
    Fx {
        _d: d,
        cache,
        store,
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn default_dirs_are_beside_the_cache_and_overlap_is_refused() {
    let f = fx();
    let (a, q) = FileStore::default_dirs(&f.cache).unwrap();
    assert!(a.ends_with("cache.narward-archive"), "{a:?}");
    assert!(q.ends_with("cache.narward-quarantine"), "{q:?}");
    let inside = f.cache.join("arch");
    let e = FileStore::open(&f.cache, &inside, &q)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("overlap"), "{e}");
}

#[test]
fn copy_keeps_bytes_and_etag_so_plan_etags_match() {
    let f = fx();
    block(async {
        for key in [NI, NAR] {
            let src = f.store.head(&Loc::cache(key)).await.unwrap().unwrap();
            let opts = CopyOptions {
                if_match: src.etag.clone(),
                if_absent: true,
                ..Default::default()
            };
            let got = f
                .store
                .copy(&Loc::cache(key), &Loc::archive(key), &opts)
                .await
                .unwrap();
            assert_eq!((got.size, &got.etag), (src.size, &src.etag), "{key}");
            let a = f.store.get(&Loc::archive(key)).await.unwrap().unwrap();
            assert_eq!(a, std::fs::read(f.cache.join(key)).unwrap());
            // Repeating the copy (a resumed apply) succeeds and changes nothing.
            f.store
                .copy(&Loc::cache(key), &Loc::archive(key), &opts)
                .await
                .unwrap();
        }
        let l = f.store.list(Area::Archive, "").await.unwrap();
        let keys: Vec<_> = l.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, [NI, NAR], "no temporary file is left or listed");
    });
}

#[test]
fn copy_of_a_changed_source_is_a_precondition_failure() {
    let f = fx();
    block(async {
        let opts = CopyOptions {
            if_match: Some("not-the-etag".into()),
            if_absent: true,
            ..Default::default()
        };
        let e = f
            .store
            .copy(&Loc::cache(NI), &Loc::quarantine(NI), &opts)
            .await
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::PreconditionFailed);
        assert!(e.to_string().contains(NI), "{e}");
        assert!(f.store.head(&Loc::quarantine(NI)).await.unwrap().is_none());
        // A destination holding other bytes is never overwritten by an if_absent copy.
        std::fs::write(f.store.quarantine.root().join(NI), b"other").unwrap();
        let opts = CopyOptions {
            if_absent: true,
            ..Default::default()
        };
        let e = f
            .store
            .copy(&Loc::cache(NI), &Loc::quarantine(NI), &opts)
            .await
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::PreconditionFailed);
    });
}

#[test]
fn put_if_absent_never_replaces() {
    let f = fx();
    block(async {
        let l = Loc::archive("x/y");
        assert!(matches!(
            f.store.put_if_absent(&l, b"one").await.unwrap(),
            PutOutcome::Created { .. }
        ));
        assert!(matches!(
            f.store.put_if_absent(&l, b"two").await.unwrap(),
            PutOutcome::Exists(m) if m.size == 3
        ));
        assert_eq!(f.store.get(&l).await.unwrap().unwrap(), b"one");
    });
}

#[test]
fn delete_is_idempotent_and_batch_reports_per_key() {
    let f = fx();
    block(async {
        f.store.delete(&Loc::cache(NI), None).await.unwrap();
        f.store.delete(&Loc::cache(NI), None).await.unwrap();
        assert!(!f.cache.join(NI).exists());
        let r = f
            .store
            .delete_batch(
                Area::Cache,
                &[(NAR.to_string(), None), ("../escape".to_string(), None)],
            )
            .await
            .unwrap();
        assert!(r[0].result.is_ok());
        assert!(r[1].result.is_err());
        assert!(!f.cache.join(NAR).exists());
    });
}

#[test]
fn writes_never_follow_a_symlink_out_of_the_root() {
    let f = fx();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), f.store.archive.root().join("nar")).unwrap();
    block(async {
        let e = f
            .store
            .copy(
                &Loc::cache(NAR),
                &Loc::archive(NAR),
                &CopyOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Denied, "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    });
}

#[test]
fn restore_is_not_archived_and_versioning_is_off() {
    let f = fx();
    block(async {
        assert_eq!(
            f.store
                .restore(&Loc::cache(NAR), 1, Tier::Bulk)
                .await
                .unwrap(),
            RestoreOutcome::NotArchived
        );
        assert_eq!(
            f.store.versioning(Area::Cache).await.unwrap(),
            Versioning::Unversioned
        );
        assert!(!f.store.archives_in_place());
        assert!(
            f.store
                .describe(Area::Archive)
                .ends_with("cache.narward-archive")
        );
    });
}

#[test]
fn a_stamped_narinfo_in_quarantine_keeps_its_content_etag() {
    let f = fx();
    block(async {
        let src = f.store.head(&Loc::cache(NI)).await.unwrap().unwrap();
        let to = Loc::quarantine(format!("1700000000/{NI}"));
        let opts = CopyOptions {
            if_match: src.etag.clone(),
            if_absent: true,
            ..Default::default()
        };
        let got = f.store.copy(&Loc::cache(NI), &to, &opts).await.unwrap();
        assert_eq!(got.etag, src.etag);
    });
}

#[test]
fn a_temporary_file_left_by_a_crash_is_replaced_by_the_repeated_copy() {
    let f = fx();
    let stale = f
        .store
        .archive
        .root()
        .join("nar")
        .join(format!("{TMP_PREFIX}{}", &NAR[4..]));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"half a NAR").unwrap();
    block(async {
        let opts = CopyOptions {
            if_absent: true,
            ..Default::default()
        };
        f.store
            .copy(&Loc::cache(NAR), &Loc::archive(NAR), &opts)
            .await
            .unwrap();
    });
    assert!(!stale.exists());
    let names: Vec<_> = std::fs::read_dir(f.store.archive.root().join("nar"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
