//! `ls`: the snapshot list, or a directory listing inside a snapshot.

use std::ffi::OsString;
use std::io::Write;

use clap::Args;
use klosetfs::format::tree::{Node, NodeKind};
use klosetfs::repo::Repo;
use klosetfs::util::{format_time, human_bytes};

use super::spec::{join, resolve};
use super::{Ctx, EXIT_OK};

/// List snapshots, or the contents of SNAP[:PATH].
#[derive(Args)]
#[command(
    after_help = "Examples:\n  klosetfs at /srv/backups ls\n  klosetfs at /srv/backups ls -l latest:/home/me\n  klosetfs at /srv/backups ls -R --json 3fa2c1:/etc"
)]
pub struct LsArgs {
    /// A snapshot (id prefix or `latest`) with an optional :PATH.
    target: Option<OsString>,
    /// Long format: mode, owner, size, time.
    #[arg(short = 'l')]
    long: bool,
    /// Recurse into directories.
    #[arg(short = 'R')]
    recursive: bool,
    /// Only snapshots with this tag (TAG,TAG: all of them; '': snapshots
    /// without tags).
    #[arg(long, value_name = "TAG[,TAG]")]
    tag: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: LsArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    match &a.target {
        None => list_snapshots(&repo, &a),
        Some(t) => {
            repo.load_index()?;
            let target = resolve(&repo, t)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if target.node.is_dir() {
                list_dir(&repo, &target.node, &target.path, &a, &mut out)?;
            } else {
                print_node(&target.node, &target.path, &a, &mut out)?;
            }
            out.flush()?;
            Ok(EXIT_OK)
        }
    }
}

fn list_snapshots(repo: &Repo, a: &LsArgs) -> anyhow::Result<u8> {
    let snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| {
            a.tag.as_ref().is_none_or(|t| {
                let wanted: Vec<String> = t.split(',').map(str::to_string).collect();
                klosetfs::ops::retention::has_tags(&s.tags, &wanted)
            })
        })
        .collect();
    super::warn_damaged_snapshots(repo);
    if a.json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(), "time": format_time(s.time), "host": s.host, "user": s.user,
                    "paths": s.paths.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                    "tags": s.tags, "files": s.summary.files, "bytes": s.summary.bytes,
                    "original": s.original.map(|o| o.to_hex()),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(EXIT_OK);
    }
    for (id, s) in &snaps {
        outln!(
            "{}  {}  {:<12} {:>10}  {}{}",
            id.short(),
            format_time(s.time),
            s.host,
            human_bytes(s.summary.bytes),
            s.paths_display(),
            if s.tags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", s.tags.join(","))
            }
        );
    }
    Ok(EXIT_OK)
}

fn list_dir(
    repo: &Repo,
    dir: &Node,
    path: &[u8],
    a: &LsArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let Some(sub) = dir.subtree else {
        return Ok(());
    };
    let tree = repo.load_tree(&sub)?;
    for n in &tree.nodes {
        let p = join(path, &n.name);
        print_node(n, &p, a, out)?;
        if a.recursive && n.is_dir() {
            list_dir(repo, n, &p, a, out)?;
        }
    }
    Ok(())
}

fn print_node(n: &Node, path: &[u8], a: &LsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let shown: &[u8] = if a.recursive { path } else { &n.name };
    if a.json {
        let mut v = serde_json::json!({
            "path": String::from_utf8_lossy(path), "type": format!("{:?}", n.kind).to_lowercase(),
            "mode": format!("{:o}", n.mode), "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
            "size": n.size, "mtime": format_time(n.mtime), "mtime_ns": n.mtime,
        });
        if std::str::from_utf8(path).is_err() {
            v["path_hex"] = hex::encode(path).into();
        }
        if n.kind == NodeKind::Symlink {
            v["target"] = String::from_utf8_lossy(&n.target).into();
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if a.long {
        let owner = if n.user.is_empty() {
            n.uid.to_string()
        } else {
            n.user.clone()
        };
        let group = if n.group.is_empty() {
            n.gid.to_string()
        } else {
            n.group.clone()
        };
        write!(
            out,
            "{} {:<8} {:<8} {:>12} {} ",
            mode_string(n.st_mode()),
            owner,
            group,
            n.size,
            format_time(n.mtime)
        )?;
    }
    out.write_all(shown)?;
    if a.long && n.kind == NodeKind::Symlink {
        out.write_all(b" -> ")?;
        out.write_all(&n.target)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// `drwxr-xr-x`-style rendering of a full `st_mode`.
pub fn mode_string(m: u32) -> String {
    let t = match m & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFIFO => 'p',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (b, c)) in bits.iter().enumerate() {
        let mut ch = if m & b != 0 { *c } else { '-' };
        let special = match i {
            2 => m & 0o4000 != 0,
            5 => m & 0o2000 != 0,
            8 => m & 0o1000 != 0,
            _ => false,
        };
        if special {
            let sc = if i == 8 { 't' } else { 's' };
            ch = if ch == 'x' {
                sc
            } else {
                sc.to_ascii_uppercase()
            };
        }
        s.push(ch);
    }
    s
}
