//! Every `sh` block of docs/integration.md runs as written, in order.

#[test]
fn integration_page_examples_run_as_written() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/integration.md"))
        .unwrap();
    let mut script = String::from("set -euo pipefail\n");
    let mut inside = false;
    let mut blocks = 0;
    for line in page.lines() {
        if inside {
            if line.trim_start().starts_with("```") {
                inside = false;
            } else {
                script.push_str(line);
                script.push('\n');
            }
        } else if line.trim() == "```sh" {
            inside = true;
            blocks += 1;
        }
    }
    assert!(blocks >= 6, "the page has its runnable examples ({blocks})");
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
        stdout.contains("quarterly report"),
        "cat and the mount show the file:\n{stdout}"
    );
    assert!(
        stdout.contains("notes.txt"),
        "ls and locate show the other file:\n{stdout}"
    );
}
