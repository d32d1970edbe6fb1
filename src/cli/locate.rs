//! `locate`: find entries whose name matches a glob, in every snapshot.

use std::io::Write;

use clap::Args;
use klosetfs::format::id::BlobId;
use klosetfs::repo::Repo;

use super::spec::join;
use super::{Ctx, EXIT_OK};

/// Find files by name (glob) across snapshots; prints SNAP:PATH.
#[derive(Args)]
#[command(after_help = "Example:\n  klosetfs at /srv/backups locate '*.pdf'")]
pub struct LocateArgs {
    /// A glob matched against file names (not whole paths): `*.pdf`,
    /// `report-202?-*`; quote it so the shell leaves it alone.
    pattern: String,
    /// Only search this snapshot.
    #[arg(long)]
    snapshot: Option<String>,
}

pub fn run(ctx: &Ctx, a: LocateArgs) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let glob = globset::Glob::new(&a.pattern)?.compile_matcher();
    let snaps = match &a.snapshot {
        Some(s) => vec![repo.resolve_snapshot(s)?],
        None => {
            // Every snapshot's trees: fetched in parallel, not met one by one.
            repo.warm_all_trees();
            repo.snapshots()?
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (id, s) in snaps {
        walk(&repo, &s.tree, b"", &glob, &id.short(), &mut out)?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn walk(
    repo: &Repo,
    tree: &BlobId,
    path: &[u8],
    glob: &globset::GlobMatcher,
    snap: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let t = repo.load_tree(tree)?;
    for n in &t.nodes {
        let p = join(path, &n.name);
        if glob.is_match(String::from_utf8_lossy(&n.name).as_ref()) {
            out.write_all(snap.as_bytes())?;
            out.write_all(b":")?;
            out.write_all(&p)?;
            out.write_all(b"\n")?;
        }
        if let Some(sub) = n.subtree.filter(|_| n.is_dir()) {
            walk(repo, &sub, &p, glob, snap, out)?;
        }
    }
    Ok(())
}
