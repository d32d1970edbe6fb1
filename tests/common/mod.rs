//! Helpers shared by the end-to-end tests: run the real binary against real
//! directories, build awkward source trees, and compare trees with rsync.
#![allow(dead_code)]

pub mod s3;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASS: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    /// A folder, or an `s3://` location.
    pub store: PathBuf,
    /// Extra environment for every command (S3 endpoint and credentials).
    pub envs: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kfs-test")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        Env {
            dir,
            store,
            envs: Vec::new(),
        }
    }

    /// A store in a fresh bucket of `server`.
    pub fn s3(server: &s3::Weed, tag: &str) -> Self {
        let mut e = Self::new();
        e.store = PathBuf::from(format!("s3://{}/store", s3::unique_bucket(tag)));
        e.envs = server.env();
        e
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `klosetfs at <store> args...` with the test passphrase.
    pub fn cmd(&self, args: &[&dyn AsRef<OsStr>]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_klosetfs"));
        c.env("KLOSETFS_PASSPHRASE", PASS)
            .env("KLOSETFS_CONFIG", self.path("config.toml"))
            .env_remove("KLOSETFS_STORE")
            .env("KLOSETFS_CACHE_DIR", self.path("cache"))
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .arg("at")
            .arg(&self.store);
        for a in args {
            c.arg(a.as_ref());
        }
        c
    }

    pub fn run(&self, args: &[&dyn AsRef<OsStr>]) -> Output {
        self.cmd(args).output().expect("klosetfs runs")
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&dyn AsRef<OsStr>]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "klosetfs {:?} failed ({}):\n{}\n{}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn create(&self) {
        self.ok(&[&"create"]);
    }

    /// Backs up `src`; returns the new snapshot's full id.
    pub fn backup(&self, src: &Path) -> String {
        let out = self.ok(&[&"backup", &"--json", &src]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    pub fn backup_json(&self, src: &Path) -> serde_json::Value {
        let out = self.ok(&[&"backup", &"--json", &src]);
        serde_json::from_str(&out).unwrap()
    }

    /// Restores `latest:SRC` into the folder `out` of this env and asserts it
    /// equals `src`.
    pub fn assert_latest_restores(&self, src: &Path, out: &str) {
        let out = self.path(out);
        let spec = format!("latest:{}", src.display());
        self.ok(&[&"restore", &"-to", &out, &spec]);
        assert_same_tree(src, &out);
    }

    /// Moves this env's store onto a fresh tmpfs of `size` (for full-disk
    /// tests; needs root). The store is unmounted when the guard drops.
    pub fn store_on_tmpfs(&mut self, size: &str) -> Unmount {
        let dir = self.path("small");
        let guard = small_tmpfs(&dir, size);
        self.store = dir.join("store");
        guard
    }

    /// Every file of a local store with its bytes (locks left out), for
    /// "nothing in the store changed" checks.
    pub fn store_files(&self) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
        walk(&self.store)
            .into_iter()
            .filter(|p| p.is_file() && !p.starts_with(self.store.join("locks")))
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
    }

    /// Total bytes of the store's packs.
    pub fn store_bytes(&self) -> u64 {
        dir_bytes(&self.store.join("packs"))
    }
}

pub fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    for e in walk(p) {
        if e.is_file() {
            n += std::fs::metadata(&e).unwrap().len();
        }
    }
    n
}

pub fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap().path();
            if std::fs::symlink_metadata(&e).unwrap().is_dir() {
                stack.push(e.clone());
            }
            out.push(e);
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for hundreds of MiB.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sh(script: &str) {
    let o = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        o.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A tree with every kind of entry the store must keep: empty, small,
/// multi-chunk and (optionally) big files, symlinks, hard links, a fifo, a device
/// node, xattrs, odd names and odd modes.
pub fn make_tree(root: &Path, big_mib: usize) {
    use std::os::unix::fs::PermissionsExt;
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    std::fs::create_dir_all(root).unwrap();
    w("empty", b"");
    w("small.txt", b"hello, world\n");
    w("dir/sub/deep/file.txt", b"deep\n");
    w("dir/multi.bin", &noise(1, 5 * 1024 * 1024 + 123));
    w(
        "dir/text.log",
        "line of fairly compressible text\n"
            .repeat(50_000)
            .as_bytes(),
    );
    if big_mib > 0 {
        w("big.bin", &noise(2, big_mib * 1024 * 1024));
    }
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("dir/up")).unwrap();
    std::fs::hard_link(root.join("small.txt"), root.join("dir/hardlink")).unwrap();
    std::fs::hard_link(root.join("small.txt"), root.join("hard2")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::sys::stat::mknod(
            &root.join("null-dev"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        std::os::unix::fs::lchown(root.join("dir/text.log"), Some(1234), Some(5678)).unwrap();
    }
    let odd: Vec<&[u8]> = vec![
        b"new\nline",
        b"\xff\xfe not utf8",
        b"sp ace",
        b"-dash",
        b"star*?[x]",
    ];
    for n in odd {
        std::fs::write(root.join(OsStr::from_bytes(n)), n).unwrap();
    }
    let long = vec![b'L'; 255];
    std::fs::write(root.join(OsStr::from_bytes(&long)), b"long name").unwrap();
    xattr::set(root.join("small.txt"), "user.color", b"blue").unwrap();
    xattr::set(root.join("dir"), "user.dirattr", b"\x00\x01binary").unwrap();
    let modes = [
        ("dir/text.log", 0o600),
        ("dir/sub", 0o750),
        ("small.txt", 0o4755),
    ];
    for (p, m) in modes {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    }
    // Old, nanosecond-precise times.
    filetime::set_file_mtime(
        root.join("empty"),
        filetime::FileTime::from_unix_time(1_000_000_000, 123_456_789),
    )
    .unwrap();
    filetime::set_symlink_file_times(
        root.join("link"),
        filetime::FileTime::from_unix_time(1_100_000_000, 1),
        filetime::FileTime::from_unix_time(1_200_000_000, 2),
    )
    .unwrap();
}

/// Asserts `rsync -aHAXn --checksum --itemize-changes a/ b/` prints nothing:
/// same content, modes, owners, times, links, xattrs.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let o = Command::new("rsync")
        .args(["-aHAXn", "--checksum", "--itemize-changes", "--delete"])
        .arg(format!("{}/", a.display()))
        .arg(format!("{}/", b.display()))
        .output()
        .expect("rsync is installed");
    assert!(
        o.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let diff = String::from_utf8_lossy(&o.stdout);
    assert!(diff.trim().is_empty(), "trees differ:\n{diff}");
}

/// A live `klosetfs mount` child process. Dropping it sends SIGTERM and waits
/// for the unmount; a watchdog kills it and detaches the mount if the test
/// takes longer than its deadline, so a hung mount fails one test, not CI.
pub struct Mounted {
    pub mnt: PathBuf,
    pub child: Option<std::process::Child>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

pub fn is_mounted(mnt: &Path) -> bool {
    mountinfo_line(mnt).is_some()
}

/// The `/proc/self/mountinfo` line of the mount on `mnt`, options included.
pub fn mountinfo_line(mnt: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mnt.to_string_lossy().to_string();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(&*want))
        .map(str::to_owned)
}

/// `program` run as `nobody` (group `nogroup`, no supplementary groups);
/// the caller must be root.
pub fn as_nobody(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(program);
    c
}

/// `klosetfs at STORE` run as `nobody`, set up for an unprivileged mount:
/// `/dev/fuse` open to all (Debian's udev rule makes it 0666; some container
/// images ship it root-only), the test's folder searchable, and the store
/// and `owned` (mountpoints, spools) given to `nobody`. The caller must be root.
pub fn klosetfs_as_nobody(env: &Env, owned: &[&Path]) -> Command {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o006 != 0o006 {
        sh("chmod 0666 /dev/fuse");
    }
    let mut script = format!(
        "chmod 755 {} && chown -R nobody {}",
        env.dir.path().display(),
        env.store.display()
    );
    for p in owned {
        script += &format!(" {}", p.display());
    }
    sh(&script);
    let mut c = as_nobody(env!("CARGO_BIN_EXE_klosetfs"));
    c.env("KLOSETFS_PASSPHRASE", PASS)
        .env("HOME", env.dir.path())
        .arg("at")
        .arg(&env.store);
    c
}

impl Mounted {
    /// Mounts with `args` (e.g. `["mount", "/mnt"]` or with a snapshot spec) as
    /// given to `klosetfs at <store>`.
    pub fn start(env: &Env, mnt: &Path, args: &[&dyn AsRef<OsStr>], deadline_secs: u64) -> Self {
        Self::start_cmd(env.cmd(args), mnt, deadline_secs)
    }

    pub fn start_cmd(mut cmd: Command, mnt: &Path, deadline_secs: u64) -> Self {
        std::fs::create_dir_all(mnt).ok();
        let mnt = std::fs::canonicalize(mnt).unwrap();
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let start = std::time::Instant::now();
        // Mounted and answering: a mount a killed daemon left behind is in
        // the table too, but fails every request with ENOTCONN. (Another
        // user's mount may refuse us with EACCES: that one answers.)
        let answers = |m: &Path| match std::fs::metadata(m) {
            Err(e) => e.raw_os_error() != Some(nix::errno::Errno::ENOTCONN as i32),
            Ok(_) => true,
        };
        while !(is_mounted(&mnt) && answers(&mnt)) {
            if let Some(st) = child.try_wait().unwrap() {
                panic!("mount exited early: {st}");
            }
            if start.elapsed().as_secs() >= 20 {
                let _ = child.kill();
                let _ = child.wait();
                let _ = Command::new("umount").arg("-l").arg(&mnt).status();
                panic!("mount did not come up");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let (pid, d, m) = (child.id(), done.clone(), mnt.clone());
        std::thread::spawn(move || {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(deadline_secs);
            while std::time::Instant::now() < end {
                if d.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            eprintln!(
                "watchdog: mount on {} outlived its deadline; killing it",
                m.display()
            );
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        });
        Mounted {
            mnt,
            child: Some(child),
            done,
        }
    }

    /// The mount process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGTERM, then wait (bounded) for the process to exit and the mount to go.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            // Generous: an unmount commits, and may first have to finish
            // storing a large file on a machine busy with other builds.
            if start.elapsed().as_secs() > 60 {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        status
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Detaches a mount (FUSE or tmpfs) when dropped, even if the test panicked.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Mounts a tmpfs of `size` (e.g. "4m") at `dir`; unmounted when the guard drops.
pub fn small_tmpfs(dir: &Path, size: &str) -> Unmount {
    std::fs::create_dir_all(dir).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size={size} tmpfs {}",
        dir.display()
    ));
    Unmount(dir.to_path_buf())
}

/// Spawns a server (`cmd`, its stdout piped) and waits up to `secs` for the
/// first line it prints (its URL): the child, the rest of its stdout, and
/// that line. A server that prints nothing in time is killed and the test
/// fails.
pub fn spawn_until_first_line(
    mut cmd: Command,
    secs: u64,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send((line, out));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok((line, out)) => (child, out, line),
        Err(_) => {
            let _ = child.kill();
            panic!("{cmd:?} printed nothing within {secs} s");
        }
    }
}
