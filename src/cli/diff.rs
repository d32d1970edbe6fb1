//! `diff`: what changed between two snapshot paths. Equal subtrees (same tree
//! id) are skipped without being read, so diffs of large stores stay fast.

use std::ffi::OsString;
use std::io::Write;

use clap::Args;
use klosetfs::format::tree::{Node, Tree};
use klosetfs::repo::Repo;

use super::spec::{join, resolve};
use super::{Ctx, EXIT_OK};

/// Show entries added (+), removed (-) and modified (M) between two snapshots.
#[derive(Args)]
#[command(
    after_help = "Example:\n  klosetfs at /srv/backups diff 3fa2c1 latest\n  klosetfs at /srv/backups diff 3fa2c1:/etc latest:/etc"
)]
pub struct DiffArgs {
    a: OsString,
    b: OsString,
}

pub fn run(ctx: &Ctx, a: DiffArgs) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let x = resolve(&repo, &a.a)?;
    let y = resolve(&repo, &a.b)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    diff_nodes(&repo, &x.node, &y.node, b"", &mut out)?;
    out.flush()?;
    Ok(EXIT_OK)
}

fn line(out: &mut impl Write, tag: &str, path: &[u8]) -> std::io::Result<()> {
    out.write_all(tag.as_bytes())?;
    out.write_all(path)?;
    out.write_all(b"\n")
}

fn changed(a: &Node, b: &Node) -> bool {
    a.kind != b.kind
        || a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.size != b.size
        || a.mtime != b.mtime
        || a.content != b.content
        || a.target != b.target
        || a.xattrs != b.xattrs
        || a.rdev != b.rdev
}

fn diff_nodes(
    repo: &Repo,
    a: &Node,
    b: &Node,
    path: &[u8],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if a.is_dir() && b.is_dir() {
        if a.subtree == b.subtree {
            return Ok(());
        }
        let load = |n: &Node| -> anyhow::Result<std::sync::Arc<Tree>> {
            Ok(match n.subtree {
                Some(id) => repo.load_tree(&id)?,
                None => Default::default(),
            })
        };
        let (ta, tb) = (load(a)?, load(b)?);
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let ord = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    line(out, "- ", &join(path, &ta.nodes[i].name))?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    line(out, "+ ", &join(path, &tb.nodes[j].name))?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let p = join(path, &ta.nodes[i].name);
                    diff_nodes(repo, &ta.nodes[i], &tb.nodes[j], &p, out)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        if changed(a, b) && !path.is_empty() {
            line(out, "M ", path)?;
        }
    } else if changed(a, b) {
        line(out, "M ", if path.is_empty() { &a.name } else { path })?;
    }
    Ok(())
}
