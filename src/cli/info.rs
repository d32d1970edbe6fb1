//! `info`: what a store holds, or one snapshot's details.

use clap::Args;
use klosetfs::storage::Kind;
use klosetfs::util::{format_time, human_bytes};

use super::{Ctx, EXIT_OK};

/// Show store statistics, or a snapshot's details.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  klosetfs at /srv/backups info\n  klosetfs at /srv/backups info latest --json"
)]
pub struct InfoArgs {
    /// A snapshot (id, unique prefix, or `latest`) to describe instead of
    /// the store.
    snapshot: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: InfoArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    if let Some(spec) = &a.snapshot {
        let (id, s) = repo.resolve_snapshot(spec)?;
        let m = &s.summary;
        let v = serde_json::json!({
            "id": id.to_hex(), "time": format_time(s.time), "host": s.host, "user": s.user,
            "paths": s.paths.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
            "tags": s.tags, "parent": s.parent.map(|p| p.to_hex()), "tree": s.tree.to_hex(),
            "files": m.files, "dirs": m.dirs, "others": m.others, "bytes": m.bytes,
            "new_bytes": m.new_bytes, "stored_bytes": m.stored_bytes, "errors": m.errors,
            "duration_s": m.duration_ns as f64 / 1e9,
        });
        if a.json {
            outln!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            outln!("snapshot   {id}");
            outln!("time       {}", format_time(s.time));
            outln!("host/user  {} / {}", s.host, s.user);
            outln!("paths      {}", s.paths_display());
            outln!("tags       {}", s.tags.join(", "));
            outln!(
                "parent     {}",
                s.parent.map(|p| p.to_hex()).unwrap_or_else(|| "-".into())
            );
            outln!(
                "files      {} ({}), {} dirs, {} other",
                m.files,
                human_bytes(m.bytes),
                m.dirs,
                m.others
            );
            outln!(
                "added      {} new, {} stored",
                human_bytes(m.new_bytes),
                human_bytes(m.stored_bytes)
            );
            outln!(
                "took       {:.1}s, {} entries skipped",
                m.duration_ns as f64 / 1e9,
                m.errors
            );
        }
        return Ok(EXIT_OK);
    }
    repo.load_index()?;
    let st = repo.storage();
    let size = |k: Kind| -> anyhow::Result<(usize, u64)> {
        let l = st.list(k)?;
        Ok((l.len(), l.iter().map(|x| x.1).sum()))
    };
    let (packs, pack_bytes) = size(Kind::Pack)?;
    let (indexes, index_bytes) = size(Kind::Index)?;
    let (snaps, _) = size(Kind::Snapshot)?;
    // Each key is kept twice: count keys, not objects.
    let keys = klosetfs::unlock::key_names(&**st)?.ids.len();
    let c = repo.config();
    let blobs = repo.index().read().len();
    let index_memory = repo.index().read().mem_bytes();
    let raw: u64 = repo
        .index()
        .read()
        .blobs()
        .map(|(_, l)| l.raw_length as u64)
        .sum();
    // What a walk of every snapshot needs from a remote store (tree blobs,
    // as stored): the disk cache keeps these whole.
    let tree_bytes: u64 = repo
        .index()
        .read()
        .blobs()
        .filter(|(_, l)| l.blob_type == klosetfs::format::blob::BlobType::Tree)
        .map(|(_, l)| l.length as u64)
        .sum();
    let v = serde_json::json!({
        "location": st.location(), "id": c.id, "version": c.version, "encryption": c.encryption,
        "compression": c.compression, "chunker": c.chunker, "pack_size": c.pack_size,
        "snapshots": snaps, "keys": keys, "packs": packs, "pack_bytes": pack_bytes,
        "indexes": indexes, "index_bytes": index_bytes, "blobs": blobs, "blob_bytes": raw, "tree_bytes": tree_bytes,
        "index_memory_bytes": index_memory,
    });
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("store       {} ({})", st.location(), &c.id[..8]);
        outln!(
            "format      v{}, {}, {} level {}",
            c.version,
            c.encryption,
            c.compression,
            c.compression_level
        );
        outln!(
            "chunks      FastCDC {}/{}/{} bytes, packs of {}",
            c.chunker.min_size,
            c.chunker.avg_size,
            c.chunker.max_size,
            human_bytes(c.pack_size as u64)
        );
        outln!("snapshots   {snaps}");
        outln!("keys        {keys}");
        outln!("blobs       {blobs} ({} of unique data)", human_bytes(raw));
        outln!("trees       {} stored", human_bytes(tree_bytes));
        outln!(
            "stored      {} in {packs} packs, {} in {indexes} indexes",
            human_bytes(pack_bytes),
            human_bytes(index_bytes)
        );
        outln!(
            "index       {} in memory ({} bytes per blob) for every command that reads data, and mounts",
            human_bytes(index_memory as u64),
            index_memory / blobs.max(1)
        );
        if raw > 0 {
            outln!(
                "ratio       {:.2}x (unique data / stored)",
                raw as f64 / pack_bytes.max(1) as f64
            );
        }
    }
    Ok(EXIT_OK)
}
