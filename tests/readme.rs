//! README's tour runs as written: every `sh` block of the tour, the mount and
//! the writable-mount sections, in order, with the README's paths (`/srv`,
//! `/mnt`, `/home/me`, `/tmp/out`) moved into a temporary directory, and the
//! S3 block against a real S3 server. What does not run here is named below
//! with where it is tested instead.

use std::path::Path;

#[cfg(feature = "s3")]
mod common;

/// The tour's `ui` line serves until stopped: here it runs in the background
/// (without opening a browser), its printed URL is fetched, and it is stopped
/// (also when the script fails).
/// tests/ui.rs drives the pages in a real browser.
fn ui_line(line: &str) -> String {
    let cmd = line.split('#').next().unwrap().trim_end();
    format!(
        "{cmd} --no-open > \"$T/ui.log\" & ui_pid=$!\n\
         trap 'kill $ui_pid 2>/dev/null || true' EXIT\n\
         for _ in $(seq 200); do grep -q '^klosetfs ui: http' \"$T/ui.log\" && break; sleep 0.05; done\n\
         curl -fsSL -c \"$T/ui.cookies\" \"$(sed -n 's/^klosetfs ui: //p' \"$T/ui.log\")\" > \"$T/ui.html\"\n\
         kill $ui_pid; wait $ui_pid || true\n"
    )
}

/// The tour's `serve --writable` line serves until stopped too: here it
/// answers a `PROPFIND` of its root with the token, and SIGTERM stops it
/// (nothing was copied in, so no snapshot: the tour's `latest` stays).
/// tests/webdav.rs copies files in with real clients.
fn serve_line(line: &str) -> String {
    let cmd = line.split('#').next().unwrap().trim_end();
    format!(
        "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > \"$T/dav.token\"\n\
         {cmd} --token-file \"$T/dav.token\" > \"$T/dav.log\" & dav_pid=$!\n\
         trap 'kill $dav_pid 2>/dev/null || true' EXIT\n\
         for _ in $(seq 200); do grep -q '^http' \"$T/dav.log\" && break; sleep 0.05; done\n\
         curl -fsS -u \"me:$(cat \"$T/dav.token\")\" -X PROPFIND -H 'Depth: 1' \"$(head -n 1 \"$T/dav.log\")\" > \"$T/dav.xml\"\n\
         kill -TERM $dav_pid; wait $dav_pid\n"
    )
}

/// Blocks left out whole: the install block (a release build into
/// /usr/local: scripts/test.sh runs it after the tests), the two commands
/// (CI runs them itself; the demo builds a release binary) and the S3 block,
/// which the test below runs against a real S3 server.
fn skipped_block(block: &str) -> bool {
    block.contains("cargo install")
        || block.contains("scripts/demo.sh")
        || block.contains("scripts/test.sh")
        || block.contains("s3.example.net")
}

/// README's ```sh blocks, in order.
fn readme_blocks() -> Vec<String> {
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
    blocks
}

fn readme_script() -> (String, usize) {
    let blocks = readme_blocks();
    let mut script = String::new();
    let mut ran = 0;
    for b in blocks.iter().filter(|b| !skipped_block(b)) {
        ran += 1;
        for line in b.lines() {
            let ui;
            let line = if line.contains(" ui ") {
                ui = ui_line(line);
                &ui
            } else if line.contains(" serve --writable") {
                ui = serve_line(line);
                &ui
            } else {
                line
            };
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

/// `bash -c SCRIPT` (bounded at 300 s) in `dir`, with this build's klosetfs
/// first on PATH, `home` as HOME and the config and caches inside `dir`.
/// Relative outputs (`archive -o docs.tar.zst`) land in `dir`, not the repo.
fn shell(script: &str, dir: &Path, home: &Path) -> std::process::Command {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_klosetfs")).parent().unwrap();
    let mut c = std::process::Command::new("timeout");
    c.args(["300", "bash", "-c", script])
        .current_dir(dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", home)
        .env("KLOSETFS_CONFIG", dir.join("config.toml"))
        .env("KLOSETFS_CACHE_DIR", dir.join("cache"))
        .env_remove("KLOSETFS_STORE");
    c
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
    let out = shell(&script, t.path(), &home)
        // `key add` asks for the new passphrase at a prompt, else here.
        .env("KLOSETFS_NEW_PASSPHRASE", "a second passphrase")
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
    // The web UI's first page, fetched with the token URL it printed.
    let page = std::fs::read_to_string(t.path().join("ui.html")).unwrap();
    assert!(page.contains("<title>klosetfs"), "{page}");
    // The WebDAV drive's root, listed over PROPFIND with its token.
    let dav = std::fs::read_to_string(t.path().join("dav.xml")).unwrap();
    assert!(dav.contains("<D:multistatus"), "{dav}");
    // The archive, in the directory the commands ran in.
    let zst = std::fs::read(t.path().join("docs.tar.zst")).unwrap();
    assert_eq!(&zst[..4], b"\x28\xb5\x2f\xfd", "a zstd frame");
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

/// README's S3 block, as written but for its placeholder endpoint and keys,
/// against a real S3 server: the store in a bucket, a restore into one and a
/// backup of the objects under a prefix.
#[cfg(feature = "s3")]
#[test]
fn the_readme_s3_block_runs_against_a_real_server() {
    use common::s3::{Weed, ACCESS_KEY, SECRET_KEY};
    use klosetfs::storage::{S3Bucket, S3Options};
    let blocks = readme_blocks();
    let block = blocks
        .iter()
        .find(|b| b.contains("s3.example.net"))
        .expect("README has its S3 block");
    let server = Weed::start();
    let bucket = |loc: &str| {
        let mut o = S3Options::parse(loc).unwrap();
        o.endpoint = Some(server.endpoint.clone());
        o.access_key = Some(ACCESS_KEY.into());
        o.secret_access_key = Some(SECRET_KEY.into());
        o.region = Some("us-east-1".into());
        S3Bucket::connect(&o).unwrap()
    };
    // What `backup s3://photos/2024` finds there.
    let photos = bucket("s3://photos");
    photos.ensure_exists().unwrap();
    let cat = vec![9u8; 70_000];
    photos
        .put("2024/cat.jpg", &cat, false, Some("image/jpeg"), "test put")
        .unwrap();
    photos
        .put("2024/06/note.txt", b"june\n", false, None, "test put")
        .unwrap();
    photos
        .put("2023/old.txt", b"not this year\n", false, None, "test put")
        .unwrap();

    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home/me");
    std::fs::create_dir_all(home.join("Documents")).unwrap();
    std::fs::write(home.join("Documents/notes.txt"), "notes in S3\n").unwrap();
    let body = block
        .replace("https://s3.example.net", &server.endpoint)
        .replace(
            "secret_access_key=...",
            &format!("secret_access_key={SECRET_KEY}"),
        )
        .replace("access_key=...", &format!("access_key={ACCESS_KEY}"))
        .replace(
            "AWS_SECRET_ACCESS_KEY=...",
            &format!("AWS_SECRET_ACCESS_KEY={SECRET_KEY}"),
        )
        .replace(
            "AWS_ACCESS_KEY_ID=...",
            &format!("AWS_ACCESS_KEY_ID={ACCESS_KEY}"),
        )
        .replace("/home/me", "$T/home/me");
    assert!(!body.contains("..."), "a placeholder left: {body}");
    // After the block: the snapshot of the prefix holds its objects, as files.
    let check = "echo snapshots=$(klosetfs at @offsite ls --json | \
                 python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')\n\
                 klosetfs at @offsite cat latest:/06/note.txt\n\
                 klosetfs at @offsite cat latest:/cat.jpg | cmp - \"$T/cat.jpg\"\n";
    std::fs::write(t.path().join("cat.jpg"), &cat).unwrap();
    let script = format!(
        "set -euo pipefail\nT='{}'\n{body}{check}",
        t.path().display()
    );
    let out = shell(&script, t.path(), &home)
        .env("KLOSETFS_PASSPHRASE", "a long passphrase")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the README's S3 block failed ({}):\nscript:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Two snapshots: the home folder and the prefix (whose root is the prefix).
    assert!(stdout.contains("snapshots=2\n"), "{stdout}");
    assert!(stdout.contains("june"), "{stdout}");
    assert!(!stdout.contains("not this year"), "{stdout}");
    // The restore wrote the documents as objects under `docs/`.
    let restored = bucket("s3://restored");
    let listed: Vec<String> = restored
        .list("docs/", "test list")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let note = listed
        .iter()
        .find(|k| k.ends_with("/notes.txt"))
        .unwrap_or_else(|| panic!("notes.txt restored into s3://restored/docs: {listed:?}"));
    assert_eq!(
        restored.get(note, None, "test get").unwrap().0,
        b"notes in S3\n"
    );
}
