//! README's tour runs as written: every `sh` block of the tour, the mount and
//! the writable-mount sections, in order, with the README's paths (`/srv`,
//! `/mnt`, `/home/me`, `/tmp/out`) moved into a temporary directory. What does
//! not run here is named below with where it is tested instead.

use std::path::Path;

/// Lines left out, each with why.
const SKIPPED: &[(&str, &str)] = &[
    // A server that runs until stopped: tests/ui.rs drives it.
    (" ui ", "serves until stopped"),
];

/// Blocks left out whole: the install block (a release build into
/// /usr/local: scripts/test.sh runs it after the tests), the two commands
/// (CI runs them itself; the demo builds a release binary) and the S3 store,
/// whose commands the integration page's `sh s3` blocks run against a real
/// server (tests/docs.rs).
fn skipped_block(block: &str) -> bool {
    block.contains("cargo install")
        || block.contains("scripts/demo.sh")
        || block.contains("scripts/test.sh")
        || block.contains("s3.example.net")
}

fn readme_script() -> (String, usize) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            Some(b) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None if line.trim() == "```sh" => cur = Some(String::new()),
            None => {}
        }
    }
    let mut script = String::new();
    let mut ran = 0;
    for b in blocks.iter().filter(|b| !skipped_block(b)) {
        ran += 1;
        for line in b.lines() {
            if SKIPPED.iter().any(|(pat, _)| line.contains(pat)) {
                continue;
            }
            let line = line
                .replace("/home/me", "$T/home/me")
                .replace("/srv/", "$T/srv/")
                .replace("/mnt/", "$T/mnt/")
                .replace("/tmp/out", "$T/out")
                .replace("s3://offsite/backups", "$T/offsite")
                .replace("pg_dump mydb", "printf 'CREATE TABLE t (a int);\\n'")
                .replace("3fa2c1", "$(first_id)");
            script.push_str(&line);
            script.push('\n');
        }
    }
    (script, ran)
}

#[test]
fn the_readme_tour_runs_as_written() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("no /dev/fuse: skipped");
        return;
    }
    let (body, blocks) = readme_script();
    assert!(
        blocks >= 3,
        "the tour, mount and writable-mount blocks ({blocks})"
    );
    let t = tempfile::tempdir().unwrap();
    let tp = t.path().display().to_string();
    let home = t.path().join("home/me");
    for d in ["Documents", "Pictures/2024"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    std::fs::write(home.join("Documents/notes.txt"), "notes of the tour\n").unwrap();
    std::fs::write(home.join("Documents/paper.pdf"), "%PDF-1.4 not really\n").unwrap();
    std::fs::write(home.join("Pictures/2024/cat.jpg"), vec![7u8; 300_000]).unwrap();
    std::fs::write(home.join(".klosetfs-pass"), "a long passphrase\n").unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_klosetfs")).parent().unwrap();
    let prelude = format!(
        "set -euo pipefail\nT='{tp}'\nmkdir -p \"$T/srv\"\n\
         first_id() {{ klosetfs at \"$T/srv/backups\" ls --json | python3 -c \
         'import json,sys; print(json.load(sys.stdin)[0][\"id\"][:6])'; }}\n"
    );
    // A second store for `sync to`, as the README's own `create` would make it.
    let prelude = prelude
        + "export KLOSETFS_OTHER_PASSPHRASE='another passphrase'\n\
           KLOSETFS_PASSPHRASE=\"$KLOSETFS_OTHER_PASSPHRASE\" klosetfs at \"$T/offsite\" create -q\n";
    let script = format!("{prelude}{body}");
    let out = std::process::Command::new("timeout")
        .args(["300", "bash", "-c", &script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", &home)
        .env("KLOSETFS_CONFIG", t.path().join("config.toml"))
        .env("KLOSETFS_CACHE_DIR", t.path().join("cache"))
        // `key add` asks for the new passphrase at a prompt, else here.
        .env("KLOSETFS_NEW_PASSPHRASE", "a second passphrase")
        .env_remove("KLOSETFS_STORE")
        .env_remove("KLOSETFS_PASSPHRASE")
        .output()
        .unwrap();
    // Whatever happened, leave no mount behind.
    for m in ["mnt/in", "mnt/home", "mnt/backups"] {
        let _ = std::process::Command::new("umount")
            .arg(t.path().join(m))
            .output();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Detached mounts print "(pid N, ...)": wait for each to finish (the
    // writable one commits on unmount).
    for pid in stdout.split("(pid ").skip(1) {
        let pid: String = pid.chars().take_while(|c| c.is_ascii_digit()).collect();
        for _ in 0..300 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert!(
        out.status.success(),
        "the README failed ({}):\nscript:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // What the tour shows: the file by `cat`, the pdf by `locate`, and the
    // copies made through the mounts.
    assert!(stdout.contains("notes of the tour"), "{stdout}");
    assert!(stdout.contains("paper.pdf"), "{stdout}");
    assert_eq!(
        std::fs::read(t.path().join("out/notes.txt")).unwrap(),
        b"notes of the tour\n"
    );
    assert_eq!(
        std::fs::read(home.join("Documents/notes.txt")).unwrap(),
        b"notes of the tour\n",
        "rsync back out of the mount kept the file"
    );
    assert!(
        stdout.contains("CREATE TABLE"),
        "the stream's file: {stdout}"
    );
    // The writable mount's last commit (on the unmount above) holds what
    // was copied in.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_klosetfs"))
            .arg("at")
            .arg(t.path().join("srv/backups"))
            .args(args)
            .env("KLOSETFS_PASSPHRASE", "a long passphrase")
            .env("KLOSETFS_CACHE_DIR", t.path().join("cache"))
            .output()
            .unwrap()
    };
    let ls: serde_json::Value = serde_json::from_slice(&run(&["ls", "--json"]).stdout).unwrap();
    let mount_snaps: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["paths"] == serde_json::json!(["/"]))
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    // `commit` made one; the unmounts after it found nothing new (the
    // `--base` mount's rsync had nothing to send).
    assert_eq!(mount_snaps.len(), 1, "{ls}");
    let cat = run(&["cat", &format!("{}:/Pictures/2024/cat.jpg", mount_snaps[0])]);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(cat.stdout, vec![7u8; 300_000]);
}
