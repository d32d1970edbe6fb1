//! `key add|list|rm`: several passphrases for one store.

use anyhow::bail;
use clap::{Args, Subcommand};
use klosetfs::format::keyfile::KdfParams;
use klosetfs::repo::list_keys;
use klosetfs::unlock::remove_key;
use klosetfs::util::format_time;

use super::{Ctx, EXIT_OK};

/// Manage the passphrases that open the store.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  KLOSETFS_NEW_PASSPHRASE=... klosetfs at /srv/backups key add\n  klosetfs at /srv/backups key list\n  klosetfs at /srv/backups key rm 1a2b3c4d"
)]
pub struct KeyArgs {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Add a passphrase (from --new-passphrase-file, KLOSETFS_NEW_PASSPHRASE or a prompt).
    #[command(
        after_help = "Example:\n  KLOSETFS_NEW_PASSPHRASE=... klosetfs at /srv/backups key add\n  klosetfs at /srv/backups key add --new-passphrase-file /root/second.pass"
    )]
    Add {
        /// Read the new passphrase from this file (its first line).
        #[arg(long)]
        new_passphrase_file: Option<std::path::PathBuf>,
    },
    /// List keys.
    #[command(after_help = "Example:\n  klosetfs at /srv/backups key list")]
    List,
    /// Remove a key (not the one used to open the store).
    #[command(after_help = "Example:\n  klosetfs at /srv/backups key rm 1a2b3c4d")]
    Rm {
        /// The key's id, or a unique prefix of it (`key list` shows them).
        id: String,
    },
}

pub fn run(ctx: &Ctx, a: KeyArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    if !repo.config().encrypted() {
        bail!("this store is not encrypted: it has no keys");
    }
    match a.cmd {
        KeyCmd::Add {
            new_passphrase_file,
        } => {
            let pw = if let Some(f) = new_passphrase_file {
                let s = std::fs::read(&f)?;
                s.split(|b| *b == b'\n').next().unwrap_or_default().to_vec()
            } else if let Some(p) = std::env::var_os("KLOSETFS_NEW_PASSPHRASE") {
                use std::os::unix::ffi::OsStrExt;
                p.as_bytes().to_vec()
            } else {
                let a = rpassword::prompt_password("new passphrase: ")?;
                let b = rpassword::prompt_password("repeat new passphrase: ")?;
                if a != b {
                    bail!("the passphrases differ");
                }
                a.into_bytes()
            };
            if pw.is_empty() {
                bail!("refusing an empty passphrase");
            }
            let id = repo.add_key(&pw, KdfParams::default())?;
            outln!("added key {}", id.short());
        }
        KeyCmd::List => {
            let current = repo.key_id().expect("an encrypted store");
            for (id, kf) in list_keys(&**repo.storage())? {
                let mark = if id == current { "*" } else { " " };
                match kf {
                    Ok(k) => outln!(
                        "{mark} {}  {}  {}@{}",
                        id.short(),
                        format_time(k.created),
                        k.user,
                        k.host
                    ),
                    Err(e) => outln!("{mark} {}  DAMAGED: {e}", id.short()),
                }
            }
        }
        KeyCmd::Rm { id } => {
            let current = repo.key_id().expect("an encrypted store");
            let matches: Vec<_> = list_keys(&**repo.storage())?
                .into_iter()
                .filter(|(k, _)| k.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let [(kid, _)] = matches.as_slice() else {
                bail!("{id:?} matches {} keys", matches.len());
            };
            if *kid == current {
                bail!("refusing to remove the key you opened the store with");
            }
            remove_key(&**repo.storage(), kid)?;
            outln!("removed key {}", kid.short());
        }
    }
    Ok(EXIT_OK)
}
