//! `ui`: the web server behind its token. Every file of a hostile tree comes
//! back byte-exact over HTTP (ranges too), directories come back as archives
//! identical to `restore`, nothing answers without the token, no path leaves
//! the snapshot, new snapshots show up without a restart, and a real browser
//! (headless Chromium driven over WebDriver) walks the pages.

mod common;
use common::*;

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `klosetfs ui`, killed on drop.
struct Ui {
    child: Child,
    base: String,
    token: String,
}

impl Ui {
    fn start(env: &Env) -> Ui {
        Self::start_with(env, &[])
    }

    fn start_with(env: &Env, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Ui {
        let token = "test-token-0123456789abcdef".to_string();
        let tf = env.path("ui-token");
        std::fs::write(&tf, format!("{token}\n")).unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"ui", &"--no-open", &"--token-file", &tf];
        args.extend_from_slice(extra);
        let (child, _, line) = spawn_until_first_line(env.cmd(&args), 30);
        let url = line
            .trim()
            .strip_prefix("klosetfs ui: ")
            .expect("the URL line")
            .to_string();
        let base = url.split("/?token=").next().unwrap().to_string();
        assert!(
            base.starts_with("http://127.0.0.1:") || base.starts_with("https://"),
            "{url}"
        );
        assert_eq!(url, format!("{base}/?token={token}"));
        Ui { child, base, token }
    }

    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(60))
            .build()
    }

    /// GET with the token as a Bearer token: (status, headers we look at, body).
    fn get(&self, path: &str, extra: &[(&str, &str)]) -> (u16, ureq::Response) {
        let mut r = Self::agent()
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        for (k, v) in extra {
            r = r.set(k, v);
        }
        match r.call() {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(c, r)) => (c, r),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    fn bytes(&self, path: &str, extra: &[(&str, &str)]) -> (u16, Vec<u8>) {
        let (c, r) = self.get(path, extra);
        let mut b = Vec::new();
        r.into_reader().read_to_end(&mut b).unwrap();
        (c, b)
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (c, b) = self.bytes(path, &[]);
        assert_eq!(c, 200, "{path}: {}", String::from_utf8_lossy(&b));
        serde_json::from_slice(&b).unwrap()
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path's bytes percent-encoded for the `path=` field.
fn enc(p: &[u8]) -> String {
    p.iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn status_without_token(ui: &Ui, method: &str, path: &str, auth: Option<&str>) -> u16 {
    let mut r = Ui::agent().request(method, &format!("{}{path}", ui.base));
    if let Some(a) = auth {
        r = r.set("Authorization", a);
    }
    match r.call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, _)) => c,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// curl against a TLS server on this machine, trusting `ca`: (HTTP status or
/// 0 when no HTTP answer came, headers and body).
fn curl(args: &[&str]) -> (u16, String) {
    let o = Command::new("timeout")
        .args(["30", "curl", "-s", "-D", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let code = text
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(0);
    (code, text)
}

#[test]
fn beyond_loopback_it_needs_tls_and_serves_https_with_a_secure_cookie() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    make_tree(&src, 1);
    env.backup(&src);
    // Without TLS, a non-loopback address is refused (and names the way out).
    let o = env.run(&[&"ui", &"--no-open", &"--listen", &"0.0.0.0:0"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--tls-cert"), "{err}");
    // A certificate for 127.0.0.1, made the way a user would.
    let (cert, key) = (env.path("cert.pem"), env.path("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    // A key that is not a key: a clear error, no server.
    let o = env.run(&[
        &"ui",
        &"--no-open",
        &"--tls-cert",
        &cert,
        &"--tls-key",
        &cert,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("private key"));

    let ui = Ui::start_with(
        &env,
        &[
            &"--listen",
            &"0.0.0.0:0",
            &"--tls-cert",
            &cert,
            &"--tls-key",
            &key,
        ],
    );
    let port = ui.base.rsplit(':').next().unwrap().to_string();
    assert!(ui.base.starts_with("https://"), "{}", ui.base);
    // "Every address" is no address a browser can use: the printed URL
    // names this machine.
    let host = Command::new("hostname").output().expect("hostname runs");
    let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    assert_eq!(ui.base, format!("https://{host}:{port}"));
    let https = format!("https://127.0.0.1:{port}");
    let ca = cert.to_str().unwrap();
    let bearer = format!("Authorization: Bearer {}", ui.token);
    let (c, body) = curl(&[
        "--cacert",
        ca,
        "-H",
        &bearer,
        &format!("{https}/api/snapshots"),
    ]);
    assert_eq!(c, 200, "{body}");
    assert!(body.contains(src.to_str().unwrap()), "{body}");
    let (c, _) = curl(&["--cacert", ca, &format!("{https}/api/snapshots")]);
    assert_eq!(c, 401);
    let (c, head) = curl(&["--cacert", ca, &format!("{https}/?token={}", ui.token)]);
    assert_eq!(c, 303, "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP to the TLS port gets no HTTP answer, so no token leaks.
    let (c, _) = curl(&[
        "-H",
        &bearer,
        &format!("http://127.0.0.1:{port}/api/snapshots"),
    ]);
    assert_eq!(c, 0);
    // An untrusted certificate is refused by the client (nothing verified).
    let (c, _) = curl(&[&format!("{https}/api/snapshots")]);
    assert_eq!(c, 0);
    // The server still serves after those failed handshakes.
    let (c, _) = curl(&[
        "--cacert",
        ca,
        "-H",
        &bearer,
        &format!("{https}/api/snapshots"),
    ]);
    assert_eq!(c, 200);
}

/// A GET sent byte for byte as written (no dot resolution), answering the
/// status code and the body as text.
fn raw_get(ui: &Ui, path: &str, auth: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = ui.base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(host).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}

#[test]
fn the_api_serves_a_snapshot_exactly_and_only_with_the_token() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    make_tree(&src, 3);
    env.backup(&src);
    let ui = Ui::start(&env);
    let snaps = ui.json("/api/snapshots");
    let id = snaps[0]["id"].as_str().unwrap().to_string();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["paths"][0], src.to_str().unwrap());

    // No token, a wrong one, or a wrong cookie: 401 everywhere, even for
    // routes that do not exist.
    for p in [
        "/",
        "/api/snapshots",
        &format!("/api/ls?snap={id}"),
        &format!(
            "/api/file?snap={id}&path={}",
            enc(src.join("small.txt").as_os_str().as_bytes())
        ),
        "/api/search?glob=*",
        "/dav/",
        "/nope",
        "/?token=wrong-token-0123456789",
    ] {
        assert_eq!(status_without_token(&ui, "GET", p, None), 401, "{p}");
        assert_eq!(
            status_without_token(&ui, "GET", p, Some("Bearer not-the-token-at-all")),
            401,
            "{p}"
        );
        assert_eq!(status_without_token(&ui, "PROPFIND", p, None), 401, "{p}");
    }
    // The printed URL trades the token for an HttpOnly, SameSite cookie.
    let r = Ui::agent()
        .get(&format!("{}/?token={}", ui.base, ui.token))
        .call()
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("kt={};", ui.token))
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let page = Ui::agent()
        .get(&format!("{}/", ui.base))
        .set("Cookie", cookie.split(';').next().unwrap())
        .call()
        .unwrap();
    assert!(page
        .into_string()
        .unwrap()
        .contains("<title>klosetfs</title>"));
    // Basic auth (as WebDAV clients send it) works with any user name.
    let basic = format!(
        "Basic {}",
        base64_encode(format!("me:{}", ui.token).as_bytes())
    );
    assert_eq!(
        status_without_token(&ui, "GET", "/api/snapshots", Some(&basic)),
        200
    );
    // Nothing changes the store.
    for m in ["PUT", "POST", "DELETE"] {
        let c = status_without_token(&ui, m, &format!("/api/file?snap={id}&path=x"), Some(&basic));
        assert_eq!(c, 405, "{m}");
    }

    // Every regular file of the tree, odd names included, byte for byte.
    let mut files = 0;
    for p in walk(&src) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if !m.file_type().is_file() {
            continue;
        }
        let (c, b) = ui.bytes(
            &format!(
                "/api/file?snap={id}&path={}&download=1",
                enc(p.as_os_str().as_bytes())
            ),
            &[],
        );
        assert_eq!(c, 200, "{p:?}");
        assert!(b == std::fs::read(&p).unwrap(), "{p:?} differs");
        files += 1;
    }
    assert!(files >= 12, "{files}");
    // Ranges, as players and resuming downloads ask.
    let big = std::fs::read(src.join("big.bin")).unwrap();
    let bigp = format!(
        "/api/file?snap={id}&path={}",
        enc(src.join("big.bin").as_os_str().as_bytes())
    );
    let (c, r) = ui.get(&bigp, &[("Range", "bytes=1000000-2999999")]);
    assert_eq!(c, 206);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes 1000000-2999999/{}", big.len())
    );
    let mut b = Vec::new();
    r.into_reader().read_to_end(&mut b).unwrap();
    assert!(b == big[1_000_000..3_000_000]);
    let (c, b) = ui.bytes(&bigp, &[("Range", "bytes=-10")]);
    assert_eq!((c, &b[..]), (206, &big[big.len() - 10..]));
    assert_eq!(
        ui.get(&bigp, &[("Range", &format!("bytes={}-", big.len()))])
            .0,
        416
    );

    // A directory listing: every entry, names as raw bytes.
    let ls = ui.json(&format!(
        "/api/ls?snap={id}&path={}",
        enc(src.as_os_str().as_bytes())
    ));
    let on_disk = std::fs::read_dir(&src).unwrap().count();
    assert_eq!(ls["total"], on_disk);
    let raws: Vec<&str> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["raw"].as_str().unwrap())
        .collect();
    assert!(raws.contains(&"%FF%FE%20not%20utf8"), "{raws:?}");
    let page = ui.json(&format!(
        "/api/ls?snap={id}&path={}&offset=2&limit=3&sort=size&order=desc",
        enc(src.as_os_str().as_bytes())
    ));
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);

    // No path leaves the snapshot.
    for bad in [
        "..",
        "a/../..",
        "%2E%2E",
        "x%2F..%2F..",
        "a%00b",
        &"n".repeat(300),
    ] {
        let (c, _) = ui.bytes(&format!("/api/ls?snap={id}&path={bad}"), &[]);
        assert_eq!(c, 400, "{bad}");
        let (c, _) = ui.bytes(&format!("/api/file?snap={id}&path={bad}"), &[]);
        assert_eq!(c, 400, "{bad}");
    }
    assert_eq!(
        ui.bytes(&format!("/api/file?snap={id}&path=/etc/passwd"), &[])
            .0,
        404
    );

    // A directory as a tar: the same tree `restore` makes.
    let tar = env.path("dir.tar");
    let (c, b) = ui.bytes(
        &format!(
            "/api/archive?snap={id}&path={}&format=tar",
            enc(src.join("dir").as_os_str().as_bytes())
        ),
        &[],
    );
    assert_eq!(c, 200);
    std::fs::write(&tar, b).unwrap();
    let ext = env.path("ext");
    std::fs::create_dir_all(&ext).unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' -xpf {} -C {}",
        tar.display(),
        ext.display()
    ));
    env.ok(&[
        &"restore",
        &"-to",
        &env.path("res"),
        &format!("{id}:{}", src.join("dir").display()),
    ]);
    assert_same_tree(&env.path("res"), &ext);

    // Search across snapshots by name.
    let hits = ui.json("/api/search?glob=*.txt");
    let paths: Vec<&str> = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("/dir/sub/deep/file.txt")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.ends_with("/small.txt")), "{paths:?}");

    // A snapshot made while the server runs: listed, readable, and a second
    // version of the changed file.
    std::fs::write(src.join("dir/sub/deep/file.txt"), b"changed\n").unwrap();
    env.backup(&src);
    let snaps = ui.json("/api/snapshots");
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    let new = snaps[0]["id"].as_str().unwrap();
    let fp = enc(src.join("dir/sub/deep/file.txt").as_os_str().as_bytes());
    assert_eq!(
        ui.bytes(&format!("/api/file?snap={new}&path={fp}"), &[]).1,
        b"changed\n"
    );
    let v = ui.json(&format!("/api/versions?path={fp}"));
    assert_eq!(v["versions"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["versions"][1]["snapshots"][0]["id"], new);
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// A WebDriver session on headless Chromium (chromedriver), ended on drop.
struct Browser {
    driver: Child,
    url: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{url}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.path().display())]}}}});
        let mut b = Browser {
            driver,
            url,
            session: String::new(),
            _profile: profile,
        };
        let r = b.post("/session", caps);
        b.session = r["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        b
    }

    fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = match ureq::post(&format!("{}{path}", self.url)).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(c, r)) => panic!(
                "WebDriver {path}: {c} {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("WebDriver {path}: {e}"),
        };
        r.into_json::<serde_json::Value>().unwrap()["value"].clone()
    }

    fn go(&self, url: &str) {
        self.post(
            &format!("/session/{}/url", self.session),
            serde_json::json!({ "url": url }),
        );
    }

    /// Runs `script` (an async function body ending in `return …`) in the page.
    fn js(&self, script: &str) -> serde_json::Value {
        self.post(&format!("/session/{}/execute/async", self.session), serde_json::json!({
            "script": format!("const done = arguments[arguments.length - 1]; (async () => {{ {script} }})().then(done, e => done('ERROR ' + e));"),
            "args": []
        }))
    }

    /// Waits until `css` matches an element whose text contains `text`; returns that text.
    fn wait_text(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.js(&format!(
                "const e = document.querySelector({css:?}); return e ? e.innerText : null;"
            ));
            if let Some(s) = got.as_str() {
                if s.contains(text) {
                    return s.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {text:?}; last: {got}"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn click(&self, css: &str) {
        let r = self.js(&format!("const e = document.querySelector({css:?}); if (!e) return 'missing'; e.click(); return 'ok';"));
        assert_eq!(r, "ok", "click {css}");
    }

    fn screenshot(&self, to: &Path) {
        let r = ureq::get(&format!("{}/session/{}/screenshot", self.url, self.session))
            .call()
            .unwrap();
        let v: serde_json::Value = r.into_json().unwrap();
        let png = base64_decode(v["value"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = ureq::delete(&format!("{}/session/{}", self.url, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let b: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for c in b.chunks(4) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | (val(*x) as u32) << (18 - 6 * i));
        for i in 0..c.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn a_browser_walks_snapshots_browse_preview_search_versions_and_download() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    make_tree(&src, 0);
    std::fs::write(src.join("notes.txt"), "first line\nshared line\n").unwrap();
    env.ok(&[&"backup", &"--tag", &"daily", &src]);
    std::fs::write(src.join("notes.txt"), "second line\nshared line\n").unwrap();
    env.backup(&src);
    let ui = Ui::start(&env);
    let b = Browser::start();
    let shots = std::env::var_os("KLOSETFS_UI_SCREENSHOTS").map(std::path::PathBuf::from);
    let shot = |name: &str| {
        if let Some(d) = &shots {
            b.screenshot(&d.join(name));
        }
    };

    // The token URL → the snapshot list (and the token leaves the address bar).
    b.go(&format!("{}/?token={}", ui.base, ui.token));
    let list = b.wait_text("#snaps tbody", "daily");
    assert_eq!(list.lines().count(), 2, "{list}");
    assert_eq!(b.js("return location.search;"), "");
    shot("ui-snapshots.png");
    // A tag filter holds through the list's periodic reread.
    b.js("const e = document.getElementById('ft'); e.value = 'daily'; e.dispatchEvent(new Event('input')); return 1;");
    assert_eq!(b.wait_text("#snaps tbody", "daily").lines().count(), 1);
    b.js("await snapshots(); return 1;");
    assert_eq!(b.js("return document.getElementById('ft').value;"), "daily");
    assert_eq!(b.wait_text("#snaps tbody", "daily").lines().count(), 1);
    b.js("const e = document.getElementById('ft'); e.value = ''; e.dispatchEvent(new Event('input')); return 1;");
    assert_eq!(b.wait_text("#snaps tbody", "daily").lines().count(), 2);
    // The newer snapshot's changes: notes.txt modified (and its folder),
    // with links to both sides.
    b.click("#snaps tbody tr:first-child a.changes");
    let changes = b.wait_text("#changes", "notes.txt");
    assert!(changes.contains("M"), "{changes}");
    assert_eq!(
        changes.lines().filter(|l| l.contains("notes.txt")).count(),
        1,
        "{changes}"
    );
    b.click("#changes tr:has(a[href$=\"/notes.txt\"]) a.after");
    b.wait_text("#text", "second line");
    b.js("history.back(); return 1;");
    b.wait_text("#changes", "notes.txt");
    b.click("#changes tr:has(a[href$=\"/notes.txt\"]) a.before");
    b.wait_text("#text", "first line");
    b.go(&format!("{}/#/", ui.base));
    b.wait_text("#snaps tbody", "daily");
    // The older snapshot (tagged) → browse down to the source folder.
    b.click("#snaps tbody tr:last-child a");
    b.wait_text(".crumbs", "snapshots");
    let mut path = Vec::new();
    for comp in src.strip_prefix("/").unwrap().components() {
        let name = comp.as_os_str().to_str().unwrap().to_string();
        path.push(name.clone());
        b.wait_text("#listing", &format!("{name}/"));
        let link = format!("#listing a[href$=\"/{}\"]", path.join("/"));
        b.click(&link);
    }
    let listing = b.wait_text("#listing", "notes.txt");
    assert!(
        listing.contains("not utf8") && listing.contains("sp ace"),
        "{listing}"
    );
    shot("ui-browse.png");
    // Preview a text file: the older content.
    b.click("#listing a[href$=\"/notes.txt\"]");
    b.wait_text("#text", "first line");
    // Download it from the page (with the page's cookie) and check the bytes.
    let got = b.js("const r = await fetch(document.getElementById('dl').href); return r.status + ' ' + r.headers.get('content-disposition') + ' ' + await r.text();");
    assert_eq!(got, "200 attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt first line\nshared line\n");
    // A binary file shows as hex.
    b.go(&format!(
        "{}/#/f/{}",
        ui.base,
        b.js("return location.hash.slice(4).replace(/notes.txt$/, 'dir/multi.bin');")
            .as_str()
            .unwrap()
    ));
    b.wait_text("#hex", "00000000");
    // Its versions: two, with a line diff between them.
    b.go(&format!(
        "{}/#/v/{}",
        ui.base,
        path.join("/") + "/notes.txt"
    ));
    b.wait_text("#versions", "2");
    b.click("a.diff");
    let diff = b.wait_text("#difftext", "second line");
    assert!(
        diff.contains("- first line")
            && diff.contains("+ second line")
            && diff.contains("  shared line"),
        "{diff}"
    );
    shot("ui-versions.png");
    // Search by name across both snapshots.
    b.js("document.getElementById('q').value = 'notes*'; document.querySelector('#searchform button').click(); return 1;");
    let hits = b.wait_text("#hits", "notes.txt");
    assert_eq!(hits.matches("notes.txt").count(), 2, "{hits}");
    shot("ui-search.png");
    // Phone width: the page still lays out (no horizontal scroll on the list).
    b.post(
        &format!("/session/{}/window/rect", b.session),
        serde_json::json!({"width": 390, "height": 800}),
    );
    b.go(&format!("{}/#/", ui.base));
    b.wait_text("#snaps tbody", "MiB");
    let wide = b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;");
    assert_eq!(wide, true);
    // The same through the API, after one more backup that adds a file
    // (so its folder changes too): paged by limit, nothing between a
    // snapshot and itself.
    std::fs::write(src.join("added.txt"), "new\n").unwrap();
    env.backup(&src);
    let snaps = ui.json("/api/snapshots");
    let (new, old) = (
        snaps[0]["id"].as_str().unwrap(),
        snaps[2]["id"].as_str().unwrap(),
    );
    let all = ui.json(&format!("/api/diff?a={old}&b={new}"));
    let ops: Vec<(String, String)> = all["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let p = c["path"].as_str().unwrap();
            (
                c["op"].as_str().unwrap().to_string(),
                p.rsplit('/').next().unwrap().to_string(),
            )
        })
        .collect();
    let src_name = src.file_name().unwrap().to_str().unwrap().to_string();
    // (Then the folders above it, whose times other writers move.)
    assert_eq!(
        ops[..3],
        [
            ("+".into(), "added.txt".into()),
            ("M".into(), "notes.txt".into()),
            ("M".into(), src_name)
        ],
        "{all}"
    );
    assert_eq!(all["truncated"], false);
    let one = ui.json(&format!("/api/diff?a={old}&b={new}&limit=1"));
    assert_eq!(one["changes"].as_array().unwrap().len(), 1);
    assert_eq!(one["truncated"], true);
    // A limit of exactly the number of changes leaves nothing out.
    let n = all["changes"].as_array().unwrap().len();
    let exact = ui.json(&format!("/api/diff?a={old}&b={new}&limit={n}"));
    assert_eq!(exact["changes"].as_array().unwrap().len(), n);
    assert_eq!(exact["truncated"], false, "{exact}");
    let same = ui.json(&format!("/api/diff?a={new}&b={new}"));
    assert_eq!(same["changes"].as_array().unwrap().len(), 0);
}

#[test]
fn a_webdav_client_copies_a_snapshot_out_identical_to_restore() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    make_tree(&src, 3);
    env.ok(&[&"backup", &"--tag", &"daily", &src]);
    let ui = Ui::start(&env);
    // rclone, a real WebDAV client, with the token as its Basic password.
    let obscured = Command::new("rclone")
        .args(["obscure", &ui.token])
        .output()
        .expect("rclone (Debian package; scripts/test.sh installs it)");
    let pass = String::from_utf8(obscured.stdout)
        .unwrap()
        .trim()
        .to_string();
    let out = env.path("dav-copy");
    let rel = src.strip_prefix("/").unwrap().display().to_string();
    let rclone = |args: &[&str]| {
        let o = Command::new("timeout")
            .arg("120")
            .arg("rclone")
            .args(args)
            .args([
                "--webdav-url",
                &format!("{}/dav/", ui.base),
                "--webdav-user",
                "me",
                "--webdav-pass",
                &pass,
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "rclone {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // The mount's layout: latest is followed, tags/ lists the tag.
    let top = rclone(&["lsf", ":webdav:"]);
    for d in ["snapshots/", "ids/", "hosts/", "tags/", "latest/"] {
        assert!(top.lines().any(|l| l == d), "{d} in {top}");
    }
    assert!(rclone(&["lsf", ":webdav:tags"]).contains("daily/"));
    rclone(&[
        "copy",
        &format!(":webdav:latest/{rel}"),
        out.to_str().unwrap(),
    ]);
    // Every regular file comes out byte-exact (rclone keeps valid UTF-8 names;
    // the non-UTF-8 one it renames, so it is compared by content alone).
    let mut n = 0;
    for p in walk(&src) {
        if !std::fs::symlink_metadata(&p).unwrap().file_type().is_file() {
            continue;
        }
        let r = p.strip_prefix(&src).unwrap();
        let want = std::fs::read(&p).unwrap();
        match std::str::from_utf8(r.as_os_str().as_bytes()) {
            Ok(_) => assert!(std::fs::read(out.join(r)).unwrap() == want, "{r:?}"),
            Err(_) => assert!(
                walk(&out)
                    .iter()
                    .any(|q| q.is_file() && std::fs::read(q).unwrap() == want),
                "{r:?}"
            ),
        }
        n += 1;
    }
    assert!(n >= 12);
    // WebDAV is read-only: writes are refused and the store is unchanged.
    let before = env.ok(&[&"ls"]);
    let auth = format!(
        "Basic {}",
        base64_encode(format!("me:{}", ui.token).as_bytes())
    );
    for m in [
        "PUT",
        "DELETE",
        "MKCOL",
        "MOVE",
        "COPY",
        "PROPPATCH",
        "LOCK",
    ] {
        let c = status_without_token(&ui, m, &format!("/dav/latest/{rel}/small.txt"), Some(&auth));
        assert!(c == 405 || c == 403, "{m}: {c}");
    }
    assert_eq!(env.ok(&[&"ls"]), before);
    // The read-only half of the protocol that litmus would test (litmus
    // itself needs MKCOL and stops at its first step on a read-only server).
    let small = src.join("small.txt");
    let want = std::fs::read(&small).unwrap();
    let url = |p: &str| format!("{}/dav/latest/{rel}/{p}", ui.base);
    let o = Ui::agent()
        .request("OPTIONS", &url("small.txt"))
        .set("Authorization", &auth)
        .call()
        .unwrap();
    assert!(o.header("DAV").unwrap_or("").contains('1'), "no DAV header");
    let allow = o.header("Allow").unwrap_or("").to_string();
    assert!(
        allow.contains("PROPFIND") && !allow.contains("PUT"),
        "{allow}"
    );
    let body = Ui::agent()
        .request("PROPFIND", &url("small.txt"))
        .set("Authorization", &auth)
        .set("Depth", "0")
        .call()
        .unwrap();
    assert_eq!(body.status(), 207);
    let xml = body.into_string().unwrap();
    assert!(
        xml.contains(&format!("getcontentlength>{}<", want.len())),
        "{xml}"
    );
    let r = Ui::agent()
        .get(&url("small.txt"))
        .set("Authorization", &auth)
        .set("Range", "bytes=2-5")
        .call()
        .unwrap();
    assert_eq!(r.status(), 206);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut got).unwrap();
    assert_eq!(got, want[2..6]);
    assert_eq!(
        status_without_token(
            &ui,
            "PROPFIND",
            &format!("/dav/latest/{rel}/no-such"),
            Some(&auth)
        ),
        404
    );
    // Sent raw: an HTTP client library would resolve the dots itself.
    for bad in [
        "/dav/latest/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/dav/../../../../etc/passwd",
        "/dav/latest/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/dav/latest/a%00b",
    ] {
        let (status, body) = raw_get(&ui, bad, &auth);
        assert!(status >= 400, "{bad}: {status}");
        assert!(!body.contains("root:"), "{bad}");
    }
    // Without the token, nothing.
    assert_eq!(status_without_token(&ui, "PROPFIND", "/dav/", None), 401);
}

/// Issue 37: a backed-up page or SVG whose script would read `/api/` with
/// the viewer's cookie must not run, whichever link opens it, and WebDAV
/// clients still get its bytes unchanged; a request naming another host
/// (DNS rebinding) is refused even with the token.
#[test]
fn a_stored_page_or_svg_never_runs_on_the_servers_origin() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Each sets the title as soon as it runs, then again with what it stole.
    let steal = "document.title='RAN';fetch('/api/snapshots').then(r=>r.text())\
                 .then(t=>{document.title='STOLE '+t.length;})";
    let html = format!(
        "<html><head><title>inert</title></head><body><script>{steal}</script></body></html>"
    );
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><title>inert</title><script>{steal}</script></svg>"
    );
    let xhtml = format!("<html xmlns=\"http://www.w3.org/1999/xhtml\"><head><title>inert</title></head><body><script>{steal}</script></body></html>");
    std::fs::write(src.join("evil.html"), &html).unwrap();
    std::fs::write(src.join("evil.svg"), &svg).unwrap();
    std::fs::write(src.join("evil.xhtml"), &xhtml).unwrap();
    std::fs::write(src.join("evil.png"), &html).unwrap(); // a page posing as an image
    std::fs::write(src.join("<img src=x onerror=alert(1)>.txt"), "n").unwrap();
    let id = env.backup(&src);
    let ui = Ui::start(&env);
    let rel = src.strip_prefix("/").unwrap().to_str().unwrap().to_string();
    let mut urls = Vec::new();
    for name in ["evil.html", "evil.svg", "evil.xhtml", "evil.png"] {
        let dav = format!("/dav/latest/{rel}/{name}");
        // WebDAV clients get the bytes as stored; every answer is sandboxed
        // and not sniffable.
        let (c, r) = ui.get(&dav, &[]);
        assert_eq!(c, 200, "{dav}");
        let csp = r
            .header("content-security-policy")
            .unwrap_or("")
            .to_string();
        assert!(
            csp.starts_with("sandbox") && csp.contains("default-src 'none'"),
            "{dav}: {csp}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{dav}");
        let active = !name.ends_with(".png");
        assert_eq!(
            r.header("content-disposition")
                .is_some_and(|d| d.starts_with("attachment")),
            active,
            "{dav}"
        );
        let mut body = Vec::new();
        r.into_reader().read_to_end(&mut body).unwrap();
        assert_eq!(body, std::fs::read(src.join(name)).unwrap(), "{dav}");
        urls.push(dav);
        let p = enc(src.join(name).as_os_str().as_bytes());
        for extra in ["", "&download=1", "&as=text"] {
            let u = format!("/api/file?snap={id}&path={p}{extra}");
            let (c, r) = ui.get(&u, &[]);
            assert_eq!(c, 200, "{u}");
            assert!(
                r.header("content-security-policy")
                    .unwrap_or("")
                    .starts_with("sandbox"),
                "{u}"
            );
            urls.push(u);
        }
    }
    // The listing that links to them is sandboxed too (names are escaped,
    // and even if one were not, nothing in it could run).
    let (c, r) = ui.get(&format!("/dav/latest/{rel}/"), &[]);
    assert_eq!(c, 200);
    assert!(r
        .header("content-security-policy")
        .unwrap_or("")
        .starts_with("sandbox"));
    urls.push(format!("/dav/latest/{rel}/"));
    urls.push(format!("/api/archive?snap={id}&format=zip"));

    // In a real browser holding the cookie, none of them runs.
    let b = Browser::start();
    b.go(&format!("{}/?token={}", ui.base, ui.token));
    b.wait_text("#snaps tbody", src.to_str().unwrap());
    for u in &urls {
        b.go(&format!("{}{u}", ui.base));
        // Long enough for the script's fetch to come back had it run.
        std::thread::sleep(Duration::from_millis(700));
        let r = ureq::get(&format!("{}/session/{}/title", b.url, b.session))
            .call()
            .unwrap();
        let v: serde_json::Value = r.into_json().unwrap();
        let title = v["value"].as_str().unwrap_or("").to_string();
        assert!(
            !title.starts_with("RAN") && !title.starts_with("STOLE"),
            "{u} ran: {title}"
        );
        // Back to the UI's own page between tries, so a download that left
        // the old page in place is not mistaken for the next one's result.
        b.go(&format!("{}/", ui.base));
    }

    // Another name for this machine, as a rebinding page would send, is
    // refused with the right token; an IP address and localhost are not.
    let port = ui.base.rsplit(':').next().unwrap();
    let ask = |host: &str| {
        let (c, _) = curl(&[
            "-H",
            &format!("Host: {host}"),
            "-H",
            &format!("Authorization: Bearer {}", ui.token),
            &format!("{}/api/snapshots", ui.base),
        ]);
        c
    };
    assert_eq!(ask(&format!("attacker.example:{port}")), 421);
    assert_eq!(ask(&format!("localhost:{port}")), 200);
    assert_eq!(ask(&format!("127.0.0.1:{port}")), 200);
}
