#![cfg(feature = "s3")]
//! Every `sh` block of docs/integration.md runs as written, in order; the
//! `sh s3` blocks run too, against a real S3 server started for the test.

mod common;

#[test]
fn integration_page_examples_run_as_written() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/integration.md"))
        .unwrap();
    let mut script = String::from("set -euo pipefail\n");
    let mut inside = false;
    let mut blocks = 0;
    let mut s3_blocks = 0;
    for line in page.lines() {
        if inside {
            if line.trim_start().starts_with("```") {
                inside = false;
            } else {
                script.push_str(line);
                script.push('\n');
            }
        } else if line.trim() == "```sh" || line.trim() == "```sh s3" {
            inside = true;
            blocks += 1;
            s3_blocks += usize::from(line.trim() == "```sh s3");
        }
    }
    assert!(blocks >= 6, "the page has its runnable examples ({blocks})");
    assert!(s3_blocks >= 3, "the page has its S3 examples ({s3_blocks})");
    // A second identity that may use the export bucket only: the page's
    // named source and destination must use its keys (the `AWS_*` ones are
    // unset by then), and nothing else may.
    let server = common::s3::Weed::start_with_identities(
        r#"{"name":"export","credentials":[{"accessKey":"exportkey","secretKey":"exportsecret"}],"actions":["Read:klosetfs-export","Write:klosetfs-export","List:klosetfs-export","Tagging:klosetfs-export"]}"#,
    );
    {
        let mut o = klosetfs::storage::S3Options::parse("s3://klosetfs-export").unwrap();
        o.endpoint = Some(server.endpoint.clone());
        o.access_key = Some(common::s3::ACCESS_KEY.into());
        o.secret_access_key = Some(common::s3::SECRET_KEY.into());
        o.region = Some("us-east-1".into());
        klosetfs::storage::S3Bucket::connect(&o)
            .unwrap()
            .ensure_exists()
            .unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_klosetfs"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("timeout")
        .args(["300", "bash", "-c", &script])
        .env("PATH", path)
        .env("HOME", home.path())
        .env("KLOSETFS_CONFIG", home.path().join("config.toml"))
        // The page's S3 examples default to port 8333; this server's port differs.
        .env("S3_ENDPOINT", &server.endpoint)
        .env_remove("KLOSETFS_STORE")
        .output()
        .unwrap();
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg("/tmp/klosetfs-example/mnt")
        .output();
    assert!(
        out.status.success(),
        "the examples failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.matches("quarterly report").count() >= 4,
        "cat and the mount show the file, from the local and the S3 store and the S3 source:\n{stdout}"
    );
    assert!(
        stdout.contains("notes.txt"),
        "ls and locate show the other file:\n{stdout}"
    );
}
