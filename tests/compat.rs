//! Format stability: a store written by format version 1 (committed under
//! `tests/fixtures/v1-store`) must stay readable by every later build.
//! Regenerate it (only on a deliberate format change) with
//! `KLOSETFS_WRITE_FIXTURE=1 cargo test --test compat`.

mod common;
use common::*;
use std::path::Path;

const FIXTURE_PASS: &str = "fixture passphrase";

fn fixture_source(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(root.join("hello.txt"), "hello fixture\n").unwrap();
    std::fs::write(root.join("data.bin"), noise(42, 3 * 1024 * 1024 + 7)).unwrap();
    std::fs::write(root.join("dir/text"), "text ".repeat(10_000)).unwrap();
    std::os::unix::fs::symlink("../hello.txt", root.join("dir/link")).unwrap();
    std::fs::set_permissions(
        root.join("hello.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    sh(&format!("cp -a {}/. {}/", from.display(), to.display()));
}

#[test]
fn version_1_store_stays_readable() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store");
    let env = Env::new();
    let src = env.path("src");
    fixture_source(&src);
    if std::env::var_os("KLOSETFS_WRITE_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(&fixture);
        std::fs::create_dir_all(&fixture).unwrap();
        let run = |args: &[&str]| {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_klosetfs"))
                .env("KLOSETFS_PASSPHRASE", FIXTURE_PASS)
                .arg("at")
                .arg(&fixture)
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        run(&["create"]);
        let cwd_src = src.clone();
        run(&[
            "backup",
            "--host",
            "fixture",
            "--tag",
            "v1",
            cwd_src.to_str().unwrap(),
        ]);
        std::fs::write(fixture.join("SOURCE_PATH"), src.display().to_string()).unwrap();
        let _ = std::fs::remove_dir_all(fixture.join("tmp"));
        let _ = std::fs::remove_dir_all(fixture.join("locks"));
    }
    let original = std::fs::read_to_string(fixture.join("SOURCE_PATH")).expect("fixture exists");
    std::fs::create_dir_all(&env.store).unwrap();
    copy_dir(&fixture, &env.store);
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        env.cmd(args)
            .env("KLOSETFS_PASSPHRASE", FIXTURE_PASS)
            .output()
            .unwrap()
    };
    let o = run(&[&"check", &"--read-data"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let ls = run(&[&"ls", &"--json"]);
    let v: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(v[0]["host"], "fixture");
    assert_eq!(v[0]["tags"][0], "v1");
    let out = env.path("out");
    let o = run(&[&"restore", &"-to", &out, &format!("latest:{original}")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["hello.txt", "data.bin", "dir/text"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read_link(out.join("dir/link")).unwrap(),
        Path::new("../hello.txt")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.join("hello.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    // Writing to an old store still works.
    let o = run(&[&"backup", &src]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
