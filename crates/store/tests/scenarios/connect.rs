//! `connect`: URL forms, file creation, schema migration on reopen, and error messages.

use rampart_store::{Backend, StoreError, connect};

#[tokio::test]
async fn sqlite_urls_create_the_file_and_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/rampart.db");
    for url in [
        format!("sqlite://{}", nested.display()),
        format!("sqlite:{}", nested.display()),
        nested.display().to_string(),
    ] {
        let store = connect(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        store.close().await;
    }
    assert!(nested.exists());
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let url = path.display().to_string();
    let store = connect(&url).await.unwrap();
    store
        .create_integration(&crate::support::new_integration("kept"))
        .await
        .unwrap();
    store.close().await;
    drop(store);
    let store = connect(&url).await.unwrap();
    assert_eq!(
        store
            .list_integrations(&rampart_store::Visibility::All)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let err = connect("mysql://root@localhost/x").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }));
    assert!(
        err.to_string()
            .contains("'mysql' databases are not supported"),
        "{err}"
    );

    let err = connect("sqlite::memory:").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");

    // A file where a directory should be.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let target = file.join("rampart.db");
    let err = connect(&target.display().to_string()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(msg.starts_with("cannot open the database file"), "{msg}");
    assert!(msg.contains(&target.display().to_string()), "{msg}");

    // A directory where the file should be.
    let err = connect(&dir.path().display().to_string())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");

    // Not SQLite at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let err = connect(&junk.display().to_string()).await.unwrap_err();
    assert!(err.to_string().contains("junk.db"), "{err}");

    // The password never appears in a PostgreSQL error.
    let err = connect("postgres://rampart:hunter2@127.0.0.1:1/nowhere")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("127.0.0.1:1/nowhere"), "{msg}");
}

#[test]
fn the_default_url_is_a_sqlite_file_in_rampart_data() {
    assert_eq!(
        rampart_store::default_url(),
        "sqlite://./rampart-data/rampart.db"
    );
}
