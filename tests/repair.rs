//! Repair and cleanup never turn damage into loss. One byte of every object
//! kind is damaged in turn; then `check`, `check --repair`, `prune`, `backup`
//! and `check --read-data` run as a user following the tool's advice would, and
//! after each step every file that restored before must still restore byte-exact.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use klosetfs::format::blob::BlobType;
use klosetfs::format::config::{ChunkerParams, StoreConfig};
use klosetfs::format::keyfile::KdfParams;
use klosetfs::repo::Repo;
use klosetfs::storage::{Kind, LocalStorage};

/// A store with small packs and chunks (many packs from a few MiB) and a fast
/// KDF, made through the library; every command then runs through the CLI.
fn small_store(env: &Env) {
    let storage = Arc::new(LocalStorage::create(&env.store).unwrap());
    let mut cfg = StoreConfig::new(true).unwrap();
    cfg.pack_size = 256 * 1024;
    cfg.chunker = ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 256 * 1024,
    };
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    Repo::create_with(storage, Some(PASS.as_bytes()), kdf, cfg).unwrap();
}

fn open(env: &Env) -> Repo {
    let storage = Arc::new(LocalStorage::open(&env.store).unwrap());
    let repo = Repo::open(storage, &|| Ok(PASS.as_bytes().to_vec())).unwrap();
    repo.load_index().unwrap();
    repo
}

/// Version `v` of the source: 24 files in 3 folders; v2 changes a third.
fn write_src(dir: &Path, v: u64) {
    for i in 0..24u64 {
        let d = dir.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        let seed = if v > 1 && i % 3 == 0 { 1000 * v + i } else { i };
        std::fs::write(
            d.join(format!("f{i}")),
            noise(seed, 50_000 + i as usize * 7_000),
        )
        .unwrap();
    }
}

struct Fixture {
    env: Env,
    src: PathBuf,
    /// (snapshot id, the source tree it was taken of)
    snaps: Vec<(String, PathBuf)>,
}

fn fixture() -> Fixture {
    let env = Env::new();
    small_store(&env);
    let src = env.path("src");
    let mut snaps = Vec::new();
    for v in 1..=2 {
        write_src(&src, v);
        let copy = env.path(&format!("v{v}"));
        std::fs::create_dir_all(&copy).unwrap();
        sh(&format!("cp -a {}/. {}/", src.display(), copy.display()));
        snaps.push((env.backup(&src), copy));
    }
    Fixture { env, src, snaps }
}

/// Every (snapshot, file) that restores byte-exact right now.
fn restorable(f: &Fixture) -> BTreeSet<(String, PathBuf)> {
    let mut ok = BTreeSet::new();
    for (id, copy) in &f.snaps {
        let out = f.env.path("restored");
        let _ = std::fs::remove_dir_all(&out);
        let o = f.env.run(&[
            &"restore",
            &"-to",
            &out,
            &format!("{}:{}", &id[..12], f.src.display()),
        ]);
        assert!(
            matches!(o.status.code(), Some(0 | 1 | 3)),
            "restore must not crash: {o:?}"
        );
        for p in walk(copy).into_iter().filter(|p| p.is_file()) {
            let rel = p.strip_prefix(copy).unwrap().to_path_buf();
            if std::fs::read(out.join(&rel)).ok() == Some(std::fs::read(&p).unwrap()) {
                ok.insert((id.clone(), rel));
            }
        }
    }
    ok
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn pack_path(env: &Env, name: &str) -> PathBuf {
    env.store.join("packs").join(&name[..2]).join(name)
}

/// The biggest pack that holds blobs of type `t`, with its size.
fn pack_of(env: &Env, t: BlobType) -> (String, u64, u32) {
    let repo = open(env);
    let sizes: std::collections::HashMap<String, u64> = repo
        .storage()
        .list(Kind::Pack)
        .unwrap()
        .into_iter()
        .collect();
    let by_pack = repo.index().read().by_pack();
    let (id, entries) = by_pack
        .iter()
        .filter(|(_, e)| e.iter().all(|e| e.blob_type == t))
        .max_by_key(|(id, _)| sizes[&id.to_hex()])
        .expect("a pack of that type");
    let name = id.to_hex();
    let first = entries
        .iter()
        .map(|e| e.offset + e.length / 2)
        .min()
        .unwrap();
    (name.clone(), sizes[&name], first)
}

/// Flips one byte in the middle of a pack's sealed header; returns the pack's name.
fn damage_header(env: &Env) -> String {
    let (name, size, _) = pack_of(env, BlobType::Data);
    let path = pack_path(env, &name);
    let b = std::fs::read(&path).unwrap();
    let hlen = u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap()) as u64;
    flip(&path, (size - 4 - hlen / 2) as usize);
    name
}

fn first_file(dir: &Path) -> PathBuf {
    walk(dir).into_iter().find(|p| p.is_file()).unwrap()
}

fn code(o: &std::process::Output) -> i32 {
    let c = o.status.code().expect("exited, not killed");
    assert!(
        matches!(c, 0 | 1 | 3),
        "exit {c} (a panic?): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    c
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The reported case: a flipped byte in a pack header harms nothing, and the
/// advised `check --repair` + `prune` must keep it that way (before the fix they
/// dropped the pack from the index and then deleted it: ~all files lost).
#[test]
fn damaged_pack_header_is_rewritten_by_repair_and_prune_loses_nothing() {
    let f = fixture();
    let env = &f.env;
    let all = restorable(&f);
    let victim = damage_header(env);
    assert_eq!(
        restorable(&f),
        all,
        "a header flip makes nothing unreadable"
    );

    let o = env.run(&[&"check"]);
    assert_eq!(code(&o), 3);
    assert!(text(&o).contains(&victim), "{}", text(&o));
    // prune refuses while the header is damaged, naming the pack.
    let o = env.run(&[&"prune"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains(&victim) && text(&o).contains("refusing"),
        "{}",
        text(&o)
    );
    assert!(pack_path(env, &victim).exists());

    let o = env.run(&[&"check", &"--repair"]);
    assert_eq!(code(&o), 0, "repair heals a header: {}", text(&o));
    assert!(
        text(&o).contains("1 damaged headers rewritten"),
        "{}",
        text(&o)
    );
    assert!(
        !pack_path(env, &victim).exists(),
        "the damaged pack is replaced"
    );
    env.ok(&[&"check", &"--read-data"]);
    env.ok(&[&"prune"]);
    env.ok(&[&"check", &"--read-data"]);
    assert_eq!(restorable(&f), all);
}

/// The state the old repair left: an index without one data pack whose blobs
/// snapshots need. That pack looks unreferenced; prune must refuse rather than
/// delete it, check must not advise prune, and repair must index it again.
#[test]
fn prune_refuses_while_snapshots_reference_unindexed_blobs() {
    let f = fixture();
    let env = &f.env;
    let all = restorable(&f);
    let (dropped, _, _) = pack_of(env, BlobType::Data);
    {
        let repo = open(env);
        let old = repo.index_ids().unwrap();
        let keep: Vec<_> = repo
            .index()
            .read()
            .by_pack()
            .into_iter()
            .filter(|(id, _)| id.to_hex() != dropped)
            .map(|(id, entries)| klosetfs::format::index::IndexPack { id, entries })
            .collect();
        repo.write_full_index(keep, old.clone()).unwrap();
        for id in old {
            repo.storage().delete(Kind::Index, &id.to_hex()).unwrap();
        }
    }
    let o = env.run(&[&"prune"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("no index holds"), "{}", text(&o));
    assert!(pack_path(env, &dropped).exists());
    // check explains, without advising prune.
    let o = env.run(&[&"check"]);
    assert_eq!(code(&o), 3);
    let t = text(&o);
    assert!(
        t.contains(&dropped) && t.contains("snapshots need") && t.contains("do not `prune`"),
        "{t}"
    );
    assert!(!t.contains("`prune` removes it"), "{t}");
    assert!(
        t.lines()
            .filter(|l| l.contains("are in no index (first"))
            .count()
            <= f.snaps.len(),
        "missing chunks are summarised per snapshot: {t}"
    );
    let v = env.run(&[&"check", &"-v"]);
    assert!(
        text(&v).lines().count() > t.lines().count(),
        "-v lists each missing chunk"
    );
    // With no index at all, prune refuses too (the trees are unreadable).
    let saved = env.path("index-saved");
    sh(&format!(
        "mv {} {}",
        env.store.join("index").display(),
        saved.display()
    ));
    std::fs::create_dir(env.store.join("index")).unwrap();
    let packs = walk(&env.store.join("packs")).len();
    let o = env.run(&[&"prune"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("refusing"), "{}", text(&o));
    assert_eq!(walk(&env.store.join("packs")).len(), packs);
    std::fs::remove_dir(env.store.join("index")).unwrap();
    sh(&format!(
        "mv {} {}",
        saved.display(),
        env.store.join("index").display()
    ));

    env.ok(&[&"check", &"--repair"]);
    env.ok(&[&"prune"]);
    env.ok(&[&"check", &"--read-data"]);
    assert_eq!(restorable(&f), all);
}

/// The sweep: one byte of each object kind, then every command a user would
/// run; nothing that restored before stops restoring.
#[test]
fn one_damaged_byte_of_any_kind_never_becomes_loss() {
    type Damage = fn(&Env);
    let kinds: [(&str, Damage); 7] = [
        ("config", |e| flip(&e.store.join("config"), 20)),
        ("key", |e| {
            let k = first_file(&e.store.join("keys"));
            let n = std::fs::metadata(&k).unwrap().len() as usize;
            flip(&k, n / 2)
        }),
        ("index", |e| {
            let i = first_file(&e.store.join("index"));
            let n = std::fs::metadata(&i).unwrap().len() as usize;
            flip(&i, n / 2)
        }),
        ("snapshot", |e| {
            let s = first_file(&e.store.join("snapshots"));
            flip(&s, 40)
        }),
        ("tree pack", |e| {
            let (name, _, at) = pack_of(e, BlobType::Tree);
            flip(&pack_path(e, &name), at as usize)
        }),
        ("data pack data", |e| {
            let (name, _, at) = pack_of(e, BlobType::Data);
            flip(&pack_path(e, &name), at as usize)
        }),
        ("pack header", |e| {
            damage_header(e);
        }),
    ];
    for (kind, damage) in kinds {
        let f = fixture();
        let env = &f.env;
        let whole = restorable(&f);
        damage(env);
        let before = restorable(&f);
        // One damaged copy of the config or of a key: the store opens (and
        // never says "wrong passphrase").
        if kind == "config" || kind == "key" {
            let o = env.run(&[&"ls"]);
            assert_eq!(code(&o), 0, "{kind}: {}", text(&o));
            assert!(
                !text(&o).contains("wrong passphrase"),
                "{kind}: {}",
                text(&o)
            );
        }
        let steps: [&[&dyn AsRef<std::ffi::OsStr>]; 5] = [
            &[&"check"],
            &[&"check", &"--repair"],
            &[&"prune"],
            &[&"backup", &f.src],
            &[&"check", &"--read-data"],
        ];
        for step in steps {
            let o = env.run(step);
            code(&o);
            let now = restorable(&f);
            let lost: Vec<_> = before.difference(&now).collect();
            assert!(
                lost.is_empty(),
                "{kind}: after {:?} these no longer restore: {lost:?}\n{}",
                step.iter()
                    .map(|a| a.as_ref().to_string_lossy().into_owned())
                    .collect::<Vec<_>>(),
                text(&o)
            );
        }
        let after = restorable(&f);
        // Damage only the index or a header hides, or one copy of the config
        // or of a key: repair makes it whole (the copy from its twin).
        if ["index", "pack header", "config", "key"].contains(&kind) {
            assert_eq!(after, whole, "{kind}: repair restores everything");
        }
        if kind == "config" || kind == "key" {
            let o = env.run(&[&"check"]);
            assert_eq!(code(&o), 0, "{kind}: healed: {}", text(&o));
        }
        eprintln!(
            "{kind}: {} of {} files restorable after the damage, {} after the commands",
            before.len(),
            whole.len(),
            after.len()
        );
    }
}

/// The config's and the keys' copies (what `check --repair` may rewrite
/// besides the index).
fn root_files_of(
    all: &std::collections::BTreeMap<PathBuf, Vec<u8>>,
) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    all.iter()
        .filter(|(p, _)| {
            let s = p.to_string_lossy();
            s.ends_with("/config") || s.ends_with("/config-copy") || s.contains("/keys/")
        })
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

fn root_files(env: &Env) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    root_files_of(&env.store_files())
}

/// Issue 37: one damaged byte in `config` (first byte, middle) or in the
/// only key file, or a deleted config, leaves every snapshot readable (the
/// twin is read), `check` names the object in one line without changing
/// anything, and `check --repair` rewrites it from the good copy. Both
/// copies damaged is refused, nothing written.
#[test]
fn one_damaged_copy_of_config_or_key_is_never_fatal() {
    type Damage = fn(&Env) -> String;
    let cases: [(&str, Damage); 5] = [
        ("config, first byte", |e| {
            flip(&e.store.join("config"), 0);
            "config".into()
        }),
        ("config, a digit in the middle", |e| {
            let p = e.store.join("config");
            let t = std::fs::read_to_string(&p).unwrap();
            let t2 = t.replace("\"compression_level\": 3", "\"compression_level\": 9");
            assert_ne!(t, t2);
            std::fs::write(&p, t2).unwrap();
            "config".into()
        }),
        ("config, gone", |e| {
            std::fs::remove_file(e.store.join("config")).unwrap();
            "config".into()
        }),
        ("the only key file", |e| {
            let k = walk(&e.store.join("keys"))
                .into_iter()
                .find(|p| p.is_file() && !p.to_string_lossy().ends_with("-copy"))
                .unwrap();
            let n = std::fs::metadata(&k).unwrap().len() as usize;
            flip(&k, n / 2);
            k.file_name().unwrap().to_string_lossy().into_owned()
        }),
        ("the key file's copy", |e| {
            let k = walk(&e.store.join("keys"))
                .into_iter()
                .find(|p| p.to_string_lossy().ends_with("-copy"))
                .unwrap();
            flip(&k, 7);
            k.file_name().unwrap().to_string_lossy().into_owned()
        }),
    ];
    for (what, damage) in cases {
        let f = fixture();
        let env = &f.env;
        let whole = restorable(&f);
        let pristine = env.store_files();
        let name = damage(env);
        assert_eq!(restorable(&f), whole, "{what}: every file still restores");
        let ls = env.run(&[&"ls"]);
        assert_eq!(code(&ls), 0, "{what}: {}", text(&ls));
        let damaged = env.store_files();
        let o = env.run(&[&"check"]);
        assert_eq!(code(&o), 3, "{what}: {}", text(&o));
        let lines: Vec<String> = text(&o)
            .lines()
            .filter(|l| l.contains(&name) && (l.contains("damaged") || l.contains("missing")))
            .map(str::to_string)
            .collect();
        assert!(
            !lines.is_empty(),
            "{what}: check names {name}: {}",
            text(&o)
        );
        assert!(
            env.store_files() == damaged,
            "{what}: check changes nothing"
        );
        let o = env.run(&[&"check", &"--repair"]);
        assert_eq!(code(&o), 0, "{what}: {}", text(&o));
        assert!(
            text(&o).contains("repair: ") && text(&o).contains("wr"),
            "{what}: {}",
            text(&o)
        );
        assert!(
            root_files(env) == root_files_of(&pristine),
            "{what}: repair restores the copy byte for byte"
        );
        let o = env.run(&[&"check"]);
        assert_eq!(code(&o), 0, "{what}: {}", text(&o));
    }

    // Both copies of the config damaged, or of the only key: refused with a
    // clear line, and nothing in the store changes — whatever is run.
    for both in ["config", "key"] {
        let f = fixture();
        let env = &f.env;
        if both == "config" {
            flip(&env.store.join("config"), 0);
            flip(&env.store.join("config-copy"), 0);
        } else {
            for k in walk(&env.store.join("keys"))
                .into_iter()
                .filter(|p| p.is_file())
            {
                let n = std::fs::metadata(&k).unwrap().len() as usize;
                flip(&k, n / 2);
            }
        }
        let before = env.store_files();
        for step in [
            &[&"ls" as &dyn AsRef<std::ffi::OsStr>][..],
            &[&"check", &"--repair"],
            &[&"backup", &f.src],
        ] {
            let o = env.run(step);
            assert_eq!(code(&o), 1, "{both}: {}", text(&o));
            let t = text(&o);
            assert!(
                t.contains("damaged") && !t.contains("wrong passphrase"),
                "{both}: {t}"
            );
        }
        assert!(env.store_files() == before, "{both}: nothing changed");
    }
}

/// Issue 37: a format-1 store (written without copies) opens as before,
/// `check` says it has no copies, `check --repair` adds them (same bytes,
/// still format 1), and then one damaged byte of its config or its key is
/// no longer fatal.
#[test]
fn an_old_store_gets_its_copies_from_repair() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store");
    let env = Env::new();
    std::fs::create_dir_all(&env.store).unwrap();
    sh(&format!(
        "cp -a {}/. {}/",
        fixture.display(),
        env.store.display()
    ));
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        env.cmd(args)
            .env("KLOSETFS_PASSPHRASE", "fixture passphrase")
            .output()
            .unwrap()
    };
    let o = run(&[&"check"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("has no copy"), "{}", text(&o));
    let o = run(&[&"check", &"--repair"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(env.store.join("config-copy").is_file());
    assert_eq!(
        std::fs::read(env.store.join("config-copy")).unwrap(),
        std::fs::read(env.store.join("config")).unwrap()
    );
    assert_eq!(
        walk(&env.store.join("keys"))
            .iter()
            .filter(|p| p.is_file())
            .count(),
        2
    );
    // Still format 1: the copies are the same bytes, the version unchanged.
    assert!(std::fs::read_to_string(env.store.join("config"))
        .unwrap()
        .contains("\"version\": 1"));
    flip(&env.store.join("config"), 0);
    let k = walk(&env.store.join("keys"))
        .into_iter()
        .find(|p| p.is_file() && !p.to_string_lossy().ends_with("-copy"))
        .unwrap();
    flip(&k, 30);
    let o = run(&[&"ls", &"--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = run(&[&"check", &"--repair"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = run(&[&"check", &"--read-data"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}
