//! The fuzz corpus (`fuzz/corpus/<target>/`) replayed through the same decoder
//! entry points as the `cargo fuzz` targets, on stable, in every test run:
//! no input may panic, and every seed (a real object written by klosetfs,
//! named `seed-*`) must still decode, which also guards the format.
//!
//! Regenerate the seeds (on a deliberate format change) with
//! `KLOSETFS_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus`.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use klosetfs::format::blob::BlobType;
use klosetfs::format::id::BlobId;
use klosetfs::repo::Repo;
use klosetfs::storage::LocalStorage;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

#[test]
fn corpus_replays_without_panics_and_seeds_decode() {
    if std::env::var_os("KLOSETFS_WRITE_FUZZ_SEEDS").is_some() {
        write_seeds(&corpus_dir());
    }
    for (target, decode) in klosetfs::fuzzing::TARGETS {
        let dir = corpus_dir().join(target);
        let mut seeds = 0;
        let mut inputs = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            let ok = decode(&data);
            inputs += 1;
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                assert!(
                    ok,
                    "{target}: the real object {} no longer decodes",
                    p.display()
                );
                seeds += 1;
            }
        }
        assert!(seeds > 0, "{target}: no seeds in {}", dir.display());
        eprintln!("{target}: {inputs} inputs, {seeds} seeds");
    }
}

/// Real objects of a small plaintext store (so the fuzzer sees the parsers
/// behind the cipher) plus the key files of an encrypted one.
fn write_seeds(corpus: &Path) {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(src.join("dir/text"), "some words ".repeat(3000)).unwrap();
    std::fs::write(src.join("dir/sub/noise"), noise(1, 5000)).unwrap();
    std::fs::write(src.join("empty"), "").unwrap();
    std::fs::hard_link(src.join("hello.txt"), src.join("dir/hardlink")).unwrap();
    std::os::unix::fs::symlink("../hello.txt", src.join("dir/link")).unwrap();
    std::fs::write(src.join("odd\nname \u{e9}"), "odd").unwrap();
    let _ = xattr::set(src.join("hello.txt"), "user.seed", b"value");
    env.ok(&[&"create", &"--plaintext"]);
    env.backup(&src);
    std::fs::write(src.join("hello.txt"), "hello again\n").unwrap();
    env.backup(&src);

    let mut n = 0;
    let mut put = |target: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        n += 1;
        std::fs::write(dir.join(format!("seed-{n:03}")), bytes).unwrap();
    };
    let files = |sub: &str| -> Vec<PathBuf> {
        walk(&env.store.join(sub))
            .into_iter()
            .filter(|p| p.is_file())
            .collect()
    };
    put("config", &std::fs::read(env.store.join("config")).unwrap());
    for p in files("packs") {
        put("pack_header", &std::fs::read(p).unwrap());
    }
    for p in files("index") {
        put("index", &std::fs::read(p).unwrap());
    }
    for p in files("snapshots") {
        put("snapshot", &std::fs::read(p).unwrap());
    }

    // Tree blobs and stored blobs, through the library.
    let storage = Arc::new(LocalStorage::open(&env.store).unwrap());
    let repo = Repo::open(storage, &|| Ok(Vec::new())).unwrap();
    repo.load_index().unwrap();
    let mut todo: Vec<BlobId> = repo
        .snapshots()
        .unwrap()
        .iter()
        .map(|(_, s)| s.tree)
        .collect();
    while let Some(id) = todo.pop() {
        put("tree", &repo.read_blob(BlobType::Tree, &id).unwrap());
        for node in &repo.load_tree(&id).unwrap().nodes {
            todo.extend(node.subtree);
        }
    }
    for p in files("packs") {
        let bytes = std::fs::read(&p).unwrap();
        let id = klosetfs::format::id::PackId(klosetfs::format::id::content_hash(&bytes));
        let entries =
            klosetfs::format::pack::decode_header(repo.keys(), &id, &bytes, bytes.len() as u64)
                .unwrap();
        for e in entries {
            let mut b = e.raw_length.to_le_bytes().to_vec();
            b.extend_from_slice(&bytes[e.offset as usize..(e.offset + e.length) as usize]);
            put("blob", &b);
        }
    }

    // Key files: the default parameters (decoded only) and cheap ones (unwrapped).
    let enc = Env::new();
    enc.create();
    for p in walk(&enc.store.join("keys"))
        .into_iter()
        .filter(|p| p.is_file())
    {
        put("keyfile", &std::fs::read(p).unwrap());
    }
    let master = klosetfs::format::crypto::MasterKey::random().unwrap();
    let cheap = klosetfs::format::keyfile::KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    let k = klosetfs::format::keyfile::KeyFile::new(
        &master,
        b"passphrase",
        cheap,
        Some(&"ab".repeat(32)),
    )
    .unwrap();
    put("keyfile", &k.encode().1);

    // A journal as a writable mount writes it.
    use klosetfs::writable::journal::{Journal, NewMeta, Record};
    let jpath = env.path("journal");
    let mut j = Journal::create(
        &jpath,
        &[
            Record::Header {
                store_id: "seed".into(),
                base: None,
                host: "host".into(),
                tags: vec!["t".into()],
            },
            Record::Excludes {
                patterns: vec!["._*".into()],
            },
        ],
        &[],
        true,
    )
    .unwrap();
    let meta = NewMeta {
        kind: klosetfs::format::tree::NodeKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        time: 1,
        rdev: 0,
        target: Vec::new(),
    };
    for r in [
        Record::Create {
            path: b"a/b".to_vec(),
            meta,
        },
        Record::Content {
            path: b"a/b".to_vec(),
            size: 5,
            mtime: 2,
            chunks: Vec::new(),
            spool: None,
            inline: Some(std::sync::Arc::new(b"hello".to_vec())),
        },
        Record::Rename {
            from: b"a/b".to_vec(),
            to: b"a/c".to_vec(),
        },
        Record::Unlink {
            path: b"a/c".to_vec(),
        },
    ] {
        j.append(&r).unwrap();
    }
    j.sync().unwrap();
    drop(j);
    // Without the zero-filled space past the last record (it reads the same).
    let bytes = std::fs::read(&jpath).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    put("journal", &bytes[..end]);
}
