//! Backup then restore gives back the same tree, to the last xattr, and a second
//! backup of unchanged or slightly changed data adds next to nothing.

mod common;
use common::*;

#[test]
fn round_trip_keeps_content_and_metadata() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 256);
    env.create();
    let id = env.backup(&src);
    let out = env.path("out");
    let spec = format!("{}:{}", &id[..10], src.display());
    env.ok(&[&"restore", &"-to", &out, &spec]);
    assert_same_tree(&src, &out);
    // The hard links are still one inode.
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(out.join("small.txt")).unwrap();
    let b = std::fs::metadata(out.join("dir/hardlink")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 3));
    // Restoring into a fresh place the whole snapshot nests the absolute path.
    let whole = env.path("whole");
    let r: serde_json::Value =
        serde_json::from_str(&env.ok(&[&"restore", &"--json", &"--to", &whole, &"latest"]))
            .unwrap();
    assert!(r["bytes"].as_u64().unwrap() >= 256 << 20, "{r}");
    assert_eq!(r["damaged"].as_array().unwrap().len(), 0);
    assert_same_tree(&src, &whole.join(src.strip_prefix("/").unwrap()));
    env.ok(&[&"check", &"--read-data"]);
}

#[test]
fn cat_ls_diff_and_locate_see_the_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 0);
    env.create();
    let first = env.backup(&src);
    let spec = |p: &str| format!("latest:{}/{p}", src.display());
    assert_eq!(env.ok(&[&"cat", &spec("small.txt")]), "hello, world\n");
    let multi = env.cmd(&[&"cat", &spec("dir/multi.bin")]).output().unwrap();
    assert_eq!(
        multi.stdout,
        std::fs::read(src.join("dir/multi.bin")).unwrap()
    );
    let ls = env.ok(&[&"ls", &spec("dir")]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        vec!["hardlink", "multi.bin", "sub", "text.log", "up"]
    );
    let lsl = env.ok(&[&"ls", &"-l", &spec("")]);
    assert!(
        lsl.contains("-rwsr-xr-x") && lsl.contains("link -> small.txt"),
        "{lsl}"
    );
    let rec = env.ok(&[&"ls", &"-R", &spec("dir")]);
    assert!(
        rec.contains(&format!("{}/dir/sub/deep/file.txt", src.display())),
        "{rec}"
    );

    std::fs::write(src.join("small.txt"), "changed\n").unwrap();
    std::fs::remove_file(src.join("empty")).unwrap();
    std::fs::write(src.join("added"), "new").unwrap();
    env.backup(&src);
    let d = env.ok(&[&"diff", &first[..12].to_string(), &"latest"]);
    let s = src.display();
    assert!(
        d.contains(&format!(
            "- /{}/empty",
            s.to_string().trim_start_matches('/')
        )),
        "{d}"
    );
    assert!(d.contains(&format!("+ {s}/added")), "{d}");
    assert!(d.contains(&format!("M {s}/small.txt")), "{d}");
    let loc = env.ok(&[&"locate", &"*.log"]);
    assert_eq!(loc.lines().count(), 2, "{loc}");
    assert!(loc.lines().all(|l| l.ends_with("/dir/text.log")));
    let info: serde_json::Value = serde_json::from_str(&env.ok(&[&"info", &"--json"])).unwrap();
    assert_eq!(info["snapshots"], 2);
    assert_eq!(info["encryption"], "xchacha20poly1305");
}

#[test]
fn unchanged_backup_adds_under_one_percent_and_small_change_adds_about_that() {
    let env = Env::new();
    let src = env.path("src");
    // 100 files of 1 MiB each, incompressible.
    for i in 0..100 {
        let d = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), noise(i as u64 + 10, 1 << 20)).unwrap();
    }
    env.create();
    env.backup(&src);
    let base = env.store_bytes();
    assert!(base >= 100 << 20, "first backup stored {base}");
    let again = env.backup_json(&src);
    let grown = env.store_bytes() - base;
    assert!(grown * 100 < base, "no-change backup added {grown} bytes");
    assert!(again["new_bytes"].as_u64().unwrap() * 100 < base);

    // Modify 1% of the files: one file rewritten.
    std::fs::write(src.join("d3/f3"), noise(999, 1 << 20)).unwrap();
    let before = env.store_bytes();
    env.backup(&src);
    let added = env.store_bytes() - before;
    assert!(added >= 1 << 20, "the changed MiB is stored ({added})");
    assert!(
        added < 2 * (1 << 20),
        "only about the change is stored ({added})"
    );

    // Without a parent, content is re-read but still deduplicated.
    let forced = env.ok(&[&"backup", &"--force", &"--json", &src]);
    let v: serde_json::Value = serde_json::from_str(&forced).unwrap();
    assert!(v["new_bytes"].as_u64().unwrap() < 1 << 20, "{v}");
}

#[test]
fn excludes_tags_and_unlock() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 0);
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::write(src.join("cache/junk"), "x").unwrap();
    std::fs::write(env.path("excl"), "# comment\n*.bin\n").unwrap();
    env.create();
    env.ok(&[
        &"backup",
        &"--tag",
        &"daily",
        &"--exclude",
        &"cache",
        &"--exclude-file",
        &env.path("excl"),
        &src,
    ]);
    let ls = env.ok(&[&"ls", &"-R", &format!("latest:{}", src.display())]);
    assert!(!ls.contains("cache") && !ls.contains(".bin"), "{ls}");
    assert!(ls.contains("text.log"));
    assert_eq!(env.ok(&[&"ls", &"--tag", &"daily"]).lines().count(), 1);
    assert_eq!(env.ok(&[&"ls", &"--tag", &"weekly"]).lines().count(), 0);
    env.ok(&[&"unlock"]);
}

#[test]
fn the_tree_comparison_catches_differences() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), "same").unwrap();
        filetime::set_file_mtime(d.join("f"), filetime::FileTime::from_unix_time(5, 0)).unwrap();
    }
    assert_same_tree(&a, &b);
    xattr::set(b.join("f"), "user.x", b"1").unwrap();
    let caught = std::panic::catch_unwind(|| assert_same_tree(&a, &b));
    assert!(caught.is_err(), "an xattr difference must be reported");
}
