//! `serve --writable`: WebDAV clients back up by copying in. litmus (the
//! WebDAV compliance suite) passes every class 1 and 2 group; rclone copies
//! a tree in and the committed snapshot restores to it (bytes and mtimes);
//! an upload cut off leaves nothing, and every completed one survives a
//! `kill -9` of the server; cadaver's scripted mkcol/put/move/delete lands
//! in the snapshot as done, and so does a `cp -r` into a davfs2 mount.

mod common;
use common::*;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "dav-token-0123456789abcdef";

/// A running `klosetfs serve --writable`, killed on drop.
struct Server {
    child: Child,
    out: BufReader<ChildStdout>,
    base: String,
    addr: String,
}

impl Server {
    fn start(env: &Env, extra: &[&str]) -> Server {
        let tf = env.path("dav-token");
        std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"serve",
            &"--writable",
            &"--listen",
            &"127.0.0.1:0",
            &"--token-file",
            &tf,
        ];
        for e in extra {
            args.push(e);
        }
        let (child, out, line) = spawn_until_first_line(env.cmd(&args), 60);
        let base = line.trim().trim_end_matches('/').to_string();
        let addr = base
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("a URL: {line:?}"))
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        Server {
            child,
            out,
            base,
            addr,
        }
    }

    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build()
    }

    fn auth() -> String {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("me:{TOKEN}"));
        format!("Basic {b}")
    }

    fn put(&self, path: &str, body: &[u8]) -> u16 {
        match Self::agent()
            .put(&format!("{}{path}", self.base))
            .set("Authorization", &Self::auth())
            .send_bytes(body)
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("PUT {path}: {e}"),
        }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        match Self::agent()
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &Self::auth())
            .call()
        {
            Ok(r) => {
                let mut b = Vec::new();
                r.into_reader().read_to_end(&mut b).unwrap();
                (200, b)
            }
            Err(ureq::Error::Status(s, _)) => (s, Vec::new()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// Commits through the commit URL; the new snapshot's id.
    fn commit(&self) -> String {
        let r = Self::agent()
            .post(&format!("{}/.klosetfs-commit", self.base))
            .set("Authorization", &Self::auth())
            .call()
            .expect("commit");
        let id = r.into_string().unwrap().trim().to_string();
        assert_eq!(id.len(), 64, "{id}");
        id
    }

    /// A PUT whose body stops after `sent` of the `announced` bytes: the
    /// connection is closed as a client killed mid-upload closes it.
    fn put_cut_off(&self, path: &str, announced: usize, sent: usize) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {announced}\r\n\r\n",
            self.addr,
            Self::auth()
        )
        .unwrap();
        s.write_all(&noise(7, sent)).unwrap();
        s.flush().unwrap();
        // Let the server take the bytes before the cut.
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
    }

    /// SIGTERM, then the snapshot id the server printed as it stopped.
    fn stop(mut self) -> Option<String> {
        sh(&format!("kill -TERM {}", self.child.id()));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "serve exited with {st}");
                break;
            }
            assert!(Instant::now() < deadline, "serve did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        rest.lines()
            .rev()
            .find_map(|l| l.strip_prefix("snapshot "))
            .map(str::to_string)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cmd` under `timeout`, insisting on success; its stdout.
fn run(secs: u32, cmd: &str, args: &[&str]) -> String {
    let o = Command::new("timeout")
        .arg(secs.to_string())
        .arg(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} (scripts/test.sh installs it): {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn litmus_passes_every_class_2_group() {
    let env = Env::new();
    env.create();
    let server = Server::start(&env, &[]);
    let o = Command::new("timeout")
        .args(["300", "litmus", &format!("{}/", server.base), "me", TOKEN])
        .env("TESTS", "basic copymove props locks http")
        .env("HOME", env.path("."))
        .current_dir(env.path("."))
        .output()
        .expect("litmus (Debian package; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&o.stdout);
    let summaries: Vec<&str> = text.lines().filter(|l| l.contains("summary for")).collect();
    assert_eq!(summaries.len(), 5, "five groups ran:\n{text}");
    for s in &summaries {
        assert!(s.contains(", 0 failed."), "{s}\n{text}");
    }
    assert!(o.status.success(), "litmus:\n{text}");
    // What litmus made and removed leaves a snapshot that `check` accepts.
    assert!(server.stop().is_some());
    env.ok(&[&"check"]);
}

/// Files only (WebDAV has no links, devices or modes), with names that need
/// escaping, sizes from empty to staged on disk (> 4 MiB), and old mtimes.
fn dav_tree(root: &Path) {
    let files: &[(&str, usize)] = &[
        ("empty", 0),
        ("small.txt", 100),
        ("a b/with space & amp.bin", 70_000),
        ("a b/ünï cödé/% percent #hash?.dat", 3_000),
        ("deep/1/2/3/4/leaf", 1),
        ("big/five-mib", 5 << 20),
        ("big/chunky", 1_300_000),
    ];
    for (i, (p, len)) in files.iter().enumerate() {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, noise(i as u64, *len)).unwrap();
    }
    for n in 0..200 {
        std::fs::write(
            root.join(format!("deep/many-{n:03}")),
            noise(n, n as usize * 37),
        )
        .unwrap();
    }
    sh(&format!(
        "find '{}' -type f -exec touch -d '2011-11-11 11:11:11' {{}} +",
        root.display()
    ));
    sh(&format!(
        "touch -d '1999-01-02 03:04:05' '{}/small.txt'",
        root.display()
    ));
}

/// Files' content and mtimes equal (modes and owners are the server's
/// defaults; rclone sets no folder times).
fn assert_same_files(a: &Path, b: &Path) {
    let o = Command::new("rsync")
        .args(["-rtOn", "--checksum", "--itemize-changes", "--delete"])
        .arg(format!("{}/", a.display()))
        .arg(format!("{}/", b.display()))
        .output()
        .unwrap();
    assert!(o.status.success());
    let diff = String::from_utf8_lossy(&o.stdout);
    assert!(diff.trim().is_empty(), "trees differ:\n{diff}");
}

#[test]
fn rclone_copies_a_tree_in_and_the_snapshot_restores_it() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    dav_tree(&src);
    let server = Server::start(&env, &[]);
    let pass = run(30, "rclone", &["obscure", TOKEN]).trim().to_string();
    let url = server.base.clone();
    let rclone = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--webdav-url",
            &url,
            "--webdav-vendor",
            "owncloud",
            "--webdav-user",
            "me",
            "--webdav-pass",
            &pass,
        ]);
        run(300, "rclone", &all)
    };
    let s = src.to_str().unwrap();
    rclone(&["copy", s, ":webdav:in"]);
    let first = server.commit();
    let out = env.path("out1");
    env.ok(&[&"restore", &format!("{first}:/in"), &"--to", &out]);
    assert_same_files(&src, &out);

    // A sync after changes: one file rewritten, one gone, one new.
    std::fs::write(src.join("small.txt"), b"rewritten").unwrap();
    std::fs::remove_file(src.join("big/chunky")).unwrap();
    std::fs::write(src.join("deep/new"), noise(99, 12_345)).unwrap();
    rclone(&["sync", s, ":webdav:in"]);
    let last = server.stop().expect("the stop commits");
    assert_ne!(last, first);
    let out2 = env.path("out2");
    env.ok(&[&"restore", &format!("{last}:/in"), &"--to", &out2]);
    assert_same_files(&src, &out2);
    // With --base, the next session starts from that tree and stores
    // unchanged files as references to it.
    let server = Server::start(&env, &["--base", "latest"]);
    assert_eq!(server.get("/in/deep/new"), (200, noise(99, 12_345)));
    assert_eq!(server.stop(), None, "nothing changed, nothing committed");
}

#[test]
fn a_cut_off_upload_leaves_nothing_and_completed_ones_survive_kill_9() {
    let env = Env::new();
    env.create();
    let server = Server::start(&env, &["--spool-size", "8M"]);
    assert_eq!(server.put("/kept.txt", b"first version"), 201);
    assert_eq!(server.put("/big-kept", &noise(3, 6 << 20)), 201);
    // Cut off: a new file (in memory, then past the 4 MiB staged in memory)
    // and a rewrite of a kept one.
    server.put_cut_off("/cut-small", 100_000, 50_000);
    server.put_cut_off("/cut-big", 9 << 20, 6 << 20);
    server.put_cut_off("/kept.txt", 1_000, 10);
    assert_eq!(server.get("/cut-small").0, 404);
    assert_eq!(server.get("/cut-big").0, 404);
    assert_eq!(server.get("/kept.txt"), (200, b"first version".to_vec()));
    // Larger than the spool may hold: refused (507) before it fills the disk.
    let huge = env.path("huge");
    std::fs::write(&huge, noise(5, 9 << 20)).unwrap();
    let code = run(
        60,
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            &format!("me:{TOKEN}"),
            "-T",
            huge.to_str().unwrap(),
            &format!("{}/huge", server.base),
        ],
    );
    assert_eq!(code, "507");
    assert_eq!(server.get("/huge").0, 404);
    // No token, no answer; a page's bytes are a download, not a page.
    let anon = Server::agent()
        .get(&format!("{}/kept.txt", server.base))
        .call();
    assert!(matches!(anon, Err(ureq::Error::Status(401, _))), "{anon:?}");
    assert_eq!(server.put("/page.html", b"<script>alert(1)</script>"), 201);
    let r = Server::agent()
        .get(&format!("{}/page.html", server.base))
        .set("Authorization", &Server::auth())
        .call()
        .unwrap();
    assert_eq!(r.header("content-disposition"), Some("attachment"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("sandbox"));

    // The live session's spool is its own: `recover` leaves it alone and a
    // second session on it is refused, so neither can commit or delete
    // what this one is still writing.
    let o = env.run(&[&"recover"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("running writable session"),
        "{o:?}"
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("snapshot"),
        "{o:?}"
    );
    let second = env.run(&[
        &"serve",
        &"--writable",
        &"--listen",
        &"127.0.0.1:0",
        &"--token-file",
        &env.path("dav-token"),
    ]);
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use by another writable session"),
        "{second:?}"
    );
    assert_eq!(server.get("/kept.txt"), (200, b"first version".to_vec()));

    // kill -9: nothing committed yet; the journal has every completed PUT.
    let pid = server.child.id();
    sh(&format!("kill -KILL {pid}"));
    drop(server);
    let o = env.ok(&[&"recover"]);
    assert!(o.contains("snapshot"), "{o}");
    let ls = env.ok(&[&"ls", &"latest"]);
    for f in ["kept.txt", "big-kept", "page.html"] {
        assert!(ls.contains(f), "{f} in {ls}");
    }
    for f in ["cut-small", "cut-big", "huge"] {
        assert!(!ls.contains(f), "{f} in {ls}");
    }
    assert_eq!(env.ok(&[&"cat", &"latest:/kept.txt"]), "first version");
    let big = env.run(&[&"cat", &"latest:/big-kept"]);
    assert!(big.status.success());
    assert!(big.stdout == noise(3, 6 << 20), "big-kept comes back whole");
}

#[test]
fn cadaver_scripted_mkcol_put_move_delete_lands_in_the_snapshot() {
    let env = Env::new();
    env.create();
    let server = Server::start(&env, &["--tag", "cadaver"]);
    // cadaver reads its credentials from ~/.netrc and commands from stdin.
    let home = env.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let netrc = home.join(".netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1\nlogin me\npassword {TOKEN}\n"),
    )
    .unwrap();
    sh(&format!("chmod 600 '{}'", netrc.display()));
    let file = env.path("up.txt");
    std::fs::write(&file, b"through cadaver\n").unwrap();
    let f = file.display();
    let script = format!(
        "mkcol d\nput {f} d/a.txt\nmove d/a.txt d/b.txt\nput {f} gone.txt\ndelete gone.txt\nquit\n"
    );
    let mut child = Command::new("timeout")
        .args(["60", "cadaver", &format!("{}/", server.base)])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cadaver (Debian package; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert_eq!(text.matches("succeeded").count(), 5, "{text}");
    let id = server.stop().expect("the stop commits");
    assert_eq!(
        env.ok(&[&"cat", &format!("{id}:/d/b.txt")]),
        "through cadaver\n"
    );
    let ls = env.ok(&[&"ls", &"-R", &format!("{id}:/")]);
    assert!(ls.contains("b.txt"), "{ls}");
    assert!(!ls.contains("a.txt") && !ls.contains("gone.txt"), "{ls}");
    assert!(env.ok(&[&"ls", &"--tag", &"cadaver"]).contains(&id[..8]));
}

#[test]
fn davfs2_mount_cp_r_lands_in_the_snapshot() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    for d in 0..20 {
        let dir = src.join(format!("dir {d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let n = d * 100 + f;
            std::fs::write(
                dir.join(format!("f{f:03}.bin")),
                noise(n, (n as usize * 7919) % 30_000),
            )
            .unwrap();
        }
    }
    std::fs::write(src.join("big"), noise(5, 6 << 20)).unwrap();
    let server = Server::start(&env, &[]);
    // davfs2 reads its credentials from a root-only secrets file. Kernels
    // from 6.16 on need `buf_size` ≥ 64 (KiB) or every readdir fails with
    // EINVAL (davfs2 issue #22); `delay_upload 0` uploads at close.
    let secrets = env.path("davfs2.secrets");
    std::fs::write(&secrets, format!("{}/ me {TOKEN}\n", server.base)).unwrap();
    sh(&format!("chmod 600 '{}'", secrets.display()));
    let conf = env.path("davfs2.conf");
    std::fs::write(
        &conf,
        format!(
            "secrets {}\nbuf_size 64\ndelay_upload 0\nuse_locks 1\n",
            secrets.display()
        ),
    )
    .unwrap();
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _detach = Unmount(mnt.clone());
    let (m, c) = (mnt.to_str().unwrap(), conf.to_str().unwrap());
    run(
        60,
        "mount",
        &[
            "-t",
            "davfs",
            &format!("{}/", server.base),
            m,
            "-o",
            &format!("conf={c}"),
        ],
    );
    run(
        600,
        "cp",
        &["-r", src.to_str().unwrap(), &format!("{m}/in")],
    );
    // A rename and a removal through the mount, as a user tidying up.
    std::fs::rename(
        mnt.join("in/dir 00/f000.bin"),
        mnt.join("in/dir 00/renamed.bin"),
    )
    .unwrap();
    std::fs::remove_file(mnt.join("in/dir 01/f001.bin")).unwrap();
    std::fs::rename(src.join("dir 00/f000.bin"), src.join("dir 00/renamed.bin")).unwrap();
    std::fs::remove_file(src.join("dir 01/f001.bin")).unwrap();
    // umount.davfs waits until every cached file is uploaded.
    run(600, "umount", &[m]);
    assert!(!is_mounted(&mnt));
    let id = server.stop().expect("the stop commits");
    let out = env.path("out");
    env.ok(&[&"restore", &format!("{id}:/in"), &"--to", &out]);
    let o = Command::new("rsync")
        .args(["-rcn", "--itemize-changes", "--delete"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", out.display()))
        .output()
        .unwrap();
    let diff = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && diff.trim().is_empty(),
        "trees differ:\n{diff}"
    );
    assert_eq!(walk(&out).iter().filter(|p| p.is_file()).count(), 2000);
    // davfs2's local lost+found is not the server's.
    let ls = env.ok(&[&"ls", &format!("{id}:/")]);
    assert!(!ls.contains("lost+found"), "{ls}");
}

#[test]
fn times_set_by_windows_and_by_proppatch_getlastmodified_are_kept() {
    let env = Env::new();
    env.create();
    let server = Server::start(&env, &[]);
    let call = |method: &str, path: &str, body: &str| -> (u16, String) {
        match Server::agent()
            .request(method, &format!("{}{path}", server.base))
            .set("Authorization", &Server::auth())
            .set("Content-Type", "text/xml")
            .send_string(body)
        {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    };
    assert_eq!(server.put("/win.txt", b"from Explorer"), 201);
    assert_eq!(server.put("/locked.txt", b"locked"), 201);
    assert_eq!(call("MKCOL", "/folder", "").0, 201);
    // What the Windows WebDAV redirector sends after a PUT.
    let win = r#"<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop><Z:Win32CreationTime>Mon, 02 Jan 2006 15:04:05 GMT</Z:Win32CreationTime><Z:Win32LastAccessTime>Mon, 02 Jan 2006 15:04:05 GMT</Z:Win32LastAccessTime><Z:Win32LastModifiedTime>Mon, 02 Jan 2006 15:04:05 GMT</Z:Win32LastModifiedTime><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>"#;
    let (s, answer) = call("PROPPATCH", "/win.txt", win);
    assert_eq!(s, 207, "{answer}");
    assert!(!answer.contains("HTTP/1.1 4"), "{answer}");
    // RFC 4918's live property, with a dead one beside it: both are set,
    // and the answer gives each its status.
    let rfc = r#"<propertyupdate xmlns="DAV:"><set><prop><getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</getlastmodified><x:color xmlns:x="urn:x">red</x:color></prop></set></propertyupdate>"#;
    let (s, answer) = call("PROPPATCH", "/folder/", rfc);
    assert_eq!(s, 207, "{answer}");
    assert!(
        answer.contains("<D:getlastmodified/></D:prop><D:status>HTTP/1.1 200 OK"),
        "{answer}"
    );
    assert!(!answer.contains("HTTP/1.1 4"), "{answer}");
    // A locked file's times stay as they are for a client without its lock.
    let lock = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>other</D:owner></D:lockinfo>"#;
    assert_eq!(call("LOCK", "/locked.txt", lock).0, 200);
    assert_eq!(call("PROPPATCH", "/locked.txt", rfc).0, 423);
    // A date that does not parse sets nothing.
    let bad = rfc.replace("Sun, 06 Nov 1994 08:49:37 GMT", "last Tuesday");
    let (s, answer) = call("PROPPATCH", "/win.txt", &bad);
    assert!(s == 207 && answer.contains("HTTP/1.1 403"), "{answer}");

    let id = server.stop().expect("the stop commits");
    let out = env.path("out");
    env.ok(&[&"restore", &id, &"--to", &out]);
    let mtime = |p: &str| {
        std::fs::metadata(out.join(p))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    assert_eq!(mtime("win.txt"), 1_136_214_245);
    assert_eq!(mtime("folder"), 784_111_777);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now - mtime("locked.txt") < 3600,
        "the locked file kept its time"
    );
    assert_eq!(
        std::fs::read(out.join("win.txt")).unwrap(),
        b"from Explorer"
    );
}

#[test]
fn client_litter_is_usable_in_the_session_and_left_out_with_exclude_litter() {
    let env = Env::new();
    env.create();
    let server = Server::start(&env, &["--exclude-litter", "--exclude", "*.partial"]);
    for (path, body) in [
        ("/photo.jpg", &b"jpeg"[..]),
        ("/._photo.jpg", b"AppleDouble"),
        ("/.DS_Store", b"Finder"),
        ("/Thumbs.db", b"thumbs"),
        ("/big.iso.partial", b"half"),
    ] {
        assert_eq!(server.put(path, body), 201, "{path}");
    }
    // Finder reads its AppleDouble file back in the same session.
    assert_eq!(server.get("/._photo.jpg"), (200, b"AppleDouble".to_vec()));
    let id = server.stop().expect("the stop commits");
    let ls = env.ok(&[&"ls", &format!("{id}:/")]);
    assert!(ls.contains("photo.jpg"), "{ls}");
    for litter in ["._photo", ".DS_Store", "Thumbs.db", ".partial"] {
        assert!(!ls.contains(litter), "{litter} in {ls}");
    }
}

#[test]
fn ranged_put_and_sabredav_patch_change_a_file_in_place() {
    let env = Env::new();
    env.create();
    let server = Server::start(&env, &[]);
    let send = |method: &str, headers: &[(&str, &str)], body: &[u8]| -> u16 {
        let mut r = Server::agent()
            .request(method, &format!("{}/r.txt", server.base))
            .set("Authorization", &Server::auth());
        for (k, v) in headers {
            r = r.set(k, v);
        }
        match r.send_bytes(body) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{method}: {e}"),
        }
    };
    assert_eq!(server.put("/r.txt", b"0123456789abcdefghij"), 201);
    // Apache-style Content-Range on a PUT.
    assert_eq!(
        send("PUT", &[("Content-Range", "bytes 5-9/*")], b"HELLO"),
        204
    );
    assert_eq!(server.get("/r.txt").1, b"01234HELLOabcdefghij");
    // SabreDAV's partial update: an append and a range.
    let sabre = ("Content-Type", "application/x-sabredav-partialupdate");
    assert_eq!(
        send("PATCH", &[sabre, ("X-Update-Range", "append")], b"XY"),
        204
    );
    assert_eq!(
        send("PATCH", &[sabre, ("X-Update-Range", "bytes=0-1")], b"ab"),
        204
    );
    // Past the end: the gap reads as zeros.
    assert_eq!(
        send("PUT", &[("Content-Range", "bytes 26-28/*")], b"END"),
        204
    );
    // A range that does not match its body changes nothing.
    assert_ne!(
        send("PUT", &[("Content-Range", "bytes 0-9/*")], b"short"),
        204
    );
    let want = b"ab234HELLOabcdefghijXY\0\0\0\0END";
    assert_eq!(server.get("/r.txt").1, want);
    let id = server.stop().expect("the stop commits");
    let out = env.path("out");
    env.ok(&[&"restore", &format!("{id}:/r.txt"), &"--to", &out]);
    assert_eq!(std::fs::read(out.join("r.txt")).unwrap(), want);
}

#[test]
fn request_rate_and_wrong_tokens_are_limited_per_address() {
    let env = Env::new();
    env.create();
    let status = |base: &str, token: &str| -> (u16, Option<String>) {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("me:{token}"));
        match Server::agent()
            .request("PROPFIND", &format!("{base}/"))
            .set("Authorization", &format!("Basic {b}"))
            .set("Depth", "0")
            .call()
        {
            Ok(r) => (r.status(), None),
            Err(ureq::Error::Status(s, r)) => (s, r.header("retry-after").map(String::from)),
            Err(e) => panic!("{e}"),
        }
    };
    // --max-rate 2: two at once, then two a second.
    let server = Server::start(&env, &["--max-rate", "2"]);
    let answers: Vec<_> = (0..30).map(|_| status(&server.base, TOKEN)).collect();
    assert_eq!(answers[0].0, 207);
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(!refused.is_empty(), "{answers:?}");
    assert!(
        refused.iter().all(|a| a.1.as_deref() == Some("1")),
        "{answers:?}"
    );
    drop(server);

    // Wrong tokens: twenty are answered 401, then the address is refused
    // (the right token too) until its bucket refills.
    let server = Server::start(&env, &[]);
    assert_eq!(status(&server.base, TOKEN).0, 207);
    for _ in 0..20 {
        assert_eq!(status(&server.base, "wrong-token-0123456789").0, 401);
    }
    let (s, retry) = status(&server.base, TOKEN);
    assert_eq!((s, retry.as_deref()), (429, Some("3")));
    // No credentials at all (how clients start) does not count.
    let server2 = Server::start(&env, &["--spool", env.path("spool2").to_str().unwrap()]);
    for _ in 0..20 {
        let r = Server::agent().get(&format!("{}/", server2.base)).call();
        assert!(matches!(r, Err(ureq::Error::Status(401, _))));
    }
    assert_eq!(status(&server2.base, TOKEN).0, 207);
}
