//! `versions PATH`: every distinct version of a path across snapshots.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use anyhow::bail;
use clap::Args;
use klosetfs::ops::versions::versions;
use klosetfs::util::{format_time, human_bytes};

use super::{Ctx, EXIT_OK, EXIT_PARTIAL};

/// List every version of a path across snapshots (same content = one version).
#[derive(Args)]
#[command(after_help = "Examples:
  klosetfs at /srv/backups versions /home/me/notes.txt
  klosetfs at /srv/backups versions --json /etc/nginx/nginx.conf

Each version shows when it was first and last seen, in how many snapshots, its
size and mtime, and the snapshot to take it from:
  klosetfs at /srv/backups cat 3fa2c1d0:/home/me/notes.txt
A file that changed and changed back is one version seen in both periods.
Exit status: 0 done, 3 some snapshots could not be read at the path (listed).")]
pub struct VersionsArgs {
    /// The absolute path, as in `SNAP:PATH`.
    path: OsString,
    /// Only snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// Print the versions as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: VersionsArgs) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.host == h))
        .collect();
    super::warn_damaged_snapshots(&repo);
    let path = a.path.as_bytes();
    let v = versions(&repo, &snaps, path);
    for (id, e) in &v.unreadable {
        eprintln!("klosetfs: snapshot {}: {e}", id.short());
    }
    if v.versions.is_empty() && v.unreadable.is_empty() {
        bail!(
            "{} is in none of the {} snapshot(s)",
            String::from_utf8_lossy(path),
            snaps.len()
        );
    }
    if a.json {
        let list: Vec<serde_json::Value> = v
            .versions
            .iter()
            .map(|x| {
                serde_json::json!({
                    "kind": format!("{:?}", x.kind).to_lowercase(), "size": x.size,
                    "mtime": format_time(x.mtime), "content": x.content,
                    "snapshots": x.snapshots.iter().map(|(id, t)| serde_json::json!({
                        "id": id.to_hex(), "time": format_time(*t)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        outln!(
            "{:<3} {:<20}  {:<20}  {:>5}  {:>10}  {:<20}  {:<8}  SNAPSHOT",
            "#",
            "FIRST SEEN",
            "LAST SEEN",
            "SNAPS",
            "SIZE",
            "MTIME",
            "CONTENT"
        );
        for (i, x) in v.versions.iter().enumerate() {
            let first = x.snapshots.first().expect("a version has a snapshot");
            let last = x.snapshots.last().expect("a version has a snapshot");
            outln!(
                "{:<3} {:<20}  {:<20}  {:>5}  {:>10}  {:<20}  {:<8}  {}",
                i + 1,
                format_time(first.1),
                format_time(last.1),
                x.snapshots.len(),
                human_bytes(x.size),
                format_time(x.mtime),
                &x.content[..8],
                last.0.short()
            );
        }
    }
    Ok(if v.unreadable.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}
