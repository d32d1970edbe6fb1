//! `diff`: what changed between two snapshot paths (the walk is
//! [`klosetfs::ops::diff`]), one line per entry.

use std::ffi::OsString;
use std::io::Write;

use clap::Args;
use klosetfs::ops::diff::diff_nodes;

use super::spec::resolve;
use super::{Ctx, EXIT_OK};

/// Show entries added (+), removed (-) and modified (M) between two snapshots.
#[derive(Args)]
#[command(
    after_help = "Example:\n  klosetfs at /srv/backups diff 3fa2c1 latest\n  klosetfs at /srv/backups diff 3fa2c1:/etc latest:/etc"
)]
pub struct DiffArgs {
    /// The older side: SNAP or SNAP:PATH (an id, a unique prefix, or `latest`).
    a: OsString,
    /// The newer side, in the same form.
    b: OsString,
}

pub fn run(ctx: &Ctx, a: DiffArgs) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let x = resolve(&repo, &a.a)?;
    let y = resolve(&repo, &a.b)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = None;
    diff_nodes(&repo, &x.node, &y.node, b"", &mut |c, path, _, _| {
        let r = (|| {
            out.write_all(c.mark().as_bytes())?;
            out.write_all(b" ")?;
            out.write_all(path)?;
            out.write_all(b"\n")
        })();
        failed = r.err();
        failed.is_none()
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    Ok(EXIT_OK)
}
