//! Issue 12, item 6a: the master key file is private, and never silently replaced once client
//! secrets sealed with it are stored.

use std::os::unix::fs::PermissionsExt;

use rampart_sim::SimConfig;

use crate::{DEMO_SECRET, Env};

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn the_key_file_must_be_private_and_is_not_recreated_over_stored_secrets() {
    let env = Env::new(SimConfig::default());
    let added = env.add("contoso", DEMO_SECRET, &[]);
    assert_eq!(added.code, 0, "{added:?}");
    let key = env.db().parent().unwrap().join("master.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let db_mode = std::fs::metadata(env.db()).unwrap().permissions().mode() & 0o777;
    assert_eq!(db_mode, 0o600);

    // Readable by others: refused, with the command that fixes it.
    chmod(&key, 0o644);
    let run = env.run(&["integration", "test", "contoso"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!("chmod 600 {}", key.display())),
        "{run:?}"
    );
    chmod(&key, 0o600);

    // Missing while a secret is stored: an error saying how to restore it, and no new key.
    let backup = key.with_extension("key.bak");
    std::fs::rename(&key, &backup).unwrap();
    let run = env.run(&["integration", "test", "contoso"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("does not exist"), "{run:?}");
    assert!(run.stderr.contains("RAMPART_MASTER_KEY"), "{run:?}");
    assert!(
        !key.exists(),
        "a new key file was created over stored secrets"
    );

    // Restored: the stored secret opens again.
    std::fs::rename(&backup, &key).unwrap();
    let run = env.run(&["integration", "test", "contoso"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.all().contains(DEMO_SECRET));
}
