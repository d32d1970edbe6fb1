//! `create`: a new store, encrypted unless `--plaintext` is asked for.

use std::io::IsTerminal;

use anyhow::bail;
use clap::Args;
use klosetfs::format::keyfile::KdfParams;
use klosetfs::repo::Repo;

use super::{Ctx, EXIT_OK};

/// Create a new store (encrypted by default).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  KLOSETFS_PASSPHRASE=... klosetfs at /srv/backups create\n  klosetfs at /tmp/scratch create --plaintext"
)]
pub struct CreateArgs {
    /// Store data unencrypted (anyone with the files can read the backups).
    #[arg(long)]
    plaintext: bool,
}

pub fn run(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<u8> {
    if let Some(dir) = ctx.local_path() {
        let has_config = dir.join("config").exists();
        let non_empty = std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if non_empty && !has_config {
            bail!(
                "{} exists and is not empty; refusing to create a store there",
                dir.display()
            );
        }
    }
    let storage = ctx.storage(true)?;
    let pw = if a.plaintext {
        None
    } else {
        let interactive = ctx.global.passphrase_file.is_none()
            && ctx.global.passphrase_command.is_none()
            && std::env::var_os("KLOSETFS_PASSPHRASE").is_none()
            && std::io::stdin().is_terminal();
        let pw = ctx.passphrase()?;
        if interactive {
            let again = rpassword::prompt_password("repeat passphrase: ")?;
            if again.as_bytes() != pw.as_slice() {
                bail!("the passphrases differ");
            }
        }
        if pw.is_empty() {
            bail!("refusing an empty passphrase (use --plaintext for an unencrypted store)");
        }
        Some(pw)
    };
    let repo = Repo::create(
        storage,
        pw.as_ref().map(|p| p.as_slice()),
        KdfParams::default(),
    )?;
    if !ctx.global.quiet {
        outln!(
            "created {} store {} at {}",
            if a.plaintext {
                "plaintext"
            } else {
                "encrypted"
            },
            &repo.config().id[..8],
            repo.storage().location()
        );
    }
    Ok(EXIT_OK)
}
