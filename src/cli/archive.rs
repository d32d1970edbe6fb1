//! `archive`: SNAP[:PATH] as a tar, tar.gz, tar.zst or zip file or stream.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use klosetfs::ops::archive::{write_tar, write_zip, ZIP_LOSSES};
use klosetfs::util::human_bytes;

use super::output::{cut_short, is_broken_pipe, OutputFile};
use super::spec::resolve;
use super::{Ctx, EXIT_OK};

/// Write a snapshot (or a path in it) as a tar archive.
#[derive(Args)]
#[command(after_help = "Examples:
  klosetfs at /srv/backups archive -o docs.tar.gz latest:/home/me/Documents
  klosetfs at /srv/backups archive --format tar.zst 3fa2c1 | ssh host 'zstd -d | tar -xpf - -C /restore'

The archive is POSIX pax: modes, numeric owners and names, nanosecond times,
symlinks, hard links (as links), devices, fifos, xattrs (SCHILY.xattr, read by
GNU tar --xattrs and bsdtar) and sparse files (GNU sparse 1.0). A directory's
contents are under ./ (as `restore` puts them in its target). Sockets are left
out (and listed). zip keeps names, contents, rwx permissions, mtimes (2 s)
and symlinks, and says what it drops. A file written with -o is readable by
its owner only: it holds the snapshot's data in clear. It is written beside
its name and renamed into place when complete, so a failure leaves whatever
was there; a device, fifo or symlink given to -o is written through and never
removed. An archive whose reader goes away (`| head`) exits 1 and says so.")]
pub struct ArchiveArgs {
    /// SNAP[:PATH]: a snapshot, and a directory or file in it.
    target: OsString,
    /// tar, tar.gz, tar.zst or zip (default: from -o's name, else tar).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Write to FILE (`-`: standard output, the default).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Tar,
    TarGz,
    TarZst,
    Zip,
}

fn format_of(a: &ArchiveArgs) -> anyhow::Result<Format> {
    let name = match (&a.format, &a.output) {
        (Some(f), _) => f.clone(),
        (None, Some(p)) => {
            let p = p.to_string_lossy();
            if p.ends_with(".tar.gz") || p.ends_with(".tgz") {
                "tar.gz".into()
            } else if p.ends_with(".tar.zst") || p.ends_with(".tzst") {
                "tar.zst".into()
            } else if p.ends_with(".zip") {
                "zip".into()
            } else {
                "tar".into()
            }
        }
        (None, None) => "tar".into(),
    };
    Ok(match name.as_str() {
        "tar" => Format::Tar,
        "tar.gz" | "tgz" | "tarball" => Format::TarGz,
        "tar.zst" | "tzst" => Format::TarZst,
        "zip" => Format::Zip,
        other => bail!("unknown archive format {other:?}: use tar, tar.gz, tar.zst or zip"),
    })
}

pub fn run(ctx: &Ctx, a: ArchiveArgs) -> anyhow::Result<u8> {
    let format = format_of(&a)?;
    let to_file = a.output.as_ref().filter(|p| p.as_os_str() != "-").cloned();
    if to_file.is_none() && std::io::stdout().is_terminal() {
        bail!("standard output is a terminal: give -o FILE or redirect it");
    }
    let repo = ctx.open_indexed()?;
    let t = resolve(&repo, &a.target)?;
    let mut file = match &to_file {
        Some(p) => Some(OutputFile::create(p, 0o600)?),
        None => None,
    };
    let out: Box<dyn Write + '_> = match &mut file {
        Some(f) => Box::new(std::io::BufWriter::with_capacity(1 << 20, f)),
        None => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        )),
    };
    // On failure `file` is dropped unfinished: a temporary file goes, the
    // old file at that path (or the device or fifo) stays.
    let report = match write(&repo, &t.node, out, format) {
        Ok(r) => r,
        Err(e) if is_broken_pipe(&e) => return Err(cut_short("the archive")),
        Err(e) => return Err(e),
    };
    if let Some(f) = file {
        f.finish()?;
    }
    let what = if format == Format::Zip {
        "zip cannot hold devices, fifos or sockets"
    } else {
        "tar cannot hold a socket"
    };
    for d in &report.dropped {
        eprintln!("klosetfs: left out {d:?} ({what})");
    }
    for r in &report.renamed {
        eprintln!("klosetfs: {r:?} is not UTF-8; stored under its lossy UTF-8 form");
    }
    if format == Format::Zip && !ctx.global.quiet {
        eprintln!("klosetfs: {ZIP_LOSSES}");
    }
    if !ctx.global.quiet && to_file.is_some() {
        outln!(
            "archived {} files ({} hard links), {} dirs, {} other ({}) to {}",
            report.files,
            report.hardlinks,
            report.dirs,
            report.others,
            human_bytes(report.bytes),
            a.output.as_ref().expect("a file").display()
        );
    }
    Ok(EXIT_OK)
}

fn write(
    repo: &klosetfs::repo::Repo,
    node: &klosetfs::format::tree::Node,
    out: Box<dyn Write + '_>,
    format: Format,
) -> anyhow::Result<klosetfs::ops::archive::ArchiveReport> {
    let report = match format {
        Format::Tar => {
            let (mut w, r) = write_tar(repo, node, out)?;
            w.flush()?;
            r
        }
        Format::TarGz => {
            let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            let (gz, r) = write_tar(repo, node, gz)?;
            gz.finish()?.flush()?;
            r
        }
        Format::Zip => {
            let (mut w, r) = write_zip(repo, node, out)?;
            w.flush()?;
            r
        }
        Format::TarZst => {
            let z = zstd::Encoder::new(out, 3)?;
            let (z, r) = write_tar(repo, node, z)?;
            z.finish()?.flush()?;
            r
        }
    };
    Ok(report)
}
