//! `rm` by retention policy through the CLI: groups, local-time periods
//! (TZ), --dry-run/--json that remove nothing, named policies, --prune, and
//! the refusals (a policy that keeps nothing, a group emptied without
//! --allow-empty). The rules themselves are unit-tested in
//! `src/ops/retention_tests.rs`.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::Path;

fn backup_at(env: &Env, src: &Path, time: &str, tags: &[&str]) -> String {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"backup", &"--json", &"--time", &time];
    for t in tags {
        args.push(&"--tag");
        args.push(t);
    }
    args.push(&src);
    let v: serde_json::Value = serde_json::from_str(&env.ok(&args)).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn snapshot_ids(env: &Env) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&[&"ls", &"--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// The ids a `--json` plan keeps and removes.
fn plan(v: &serde_json::Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut keep, mut remove) = (BTreeSet::new(), BTreeSet::new());
    for g in v["groups"].as_array().unwrap() {
        for s in g["snapshots"].as_array().unwrap() {
            let id = s["id"].as_str().unwrap().to_string();
            if s["keep"].as_bool().unwrap() {
                keep.insert(id);
            } else {
                remove.insert(id);
            }
        }
    }
    (keep, remove)
}

#[test]
fn policies_keep_per_group_and_remove_the_rest() {
    let env = Env::new();
    env.create();
    let a = env.path("a");
    let b = env.path("b");
    make_tree(&a, 0);
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("f"), b"b").unwrap();
    let a1 = backup_at(&env, &a, "2024-05-01T09:00:00Z", &[]);
    let a2 = backup_at(&env, &a, "2024-05-02T09:00:00Z", &[]);
    let a3 = backup_at(&env, &a, "2024-05-03T09:00:00Z", &["keep"]);
    let a4 = backup_at(&env, &a, "2024-05-04T09:00:00Z", &[]);
    let a5 = backup_at(&env, &a, "2024-05-04T18:00:00Z", &[]);
    let b1 = backup_at(&env, &b, "2024-01-01T00:00:00Z", &[]);
    let all = snapshot_ids(&env);
    assert_eq!(all.len(), 6);

    // A dry run decides per group (paths a / paths b) and removes nothing.
    let out = env.ok(&[&"rm", &"--keep-daily", &"2", &"--dry-run", &"--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["groups"].as_array().unwrap().len(), 2, "{v}");
    let (keep, remove) = plan(&v);
    assert_eq!(keep, BTreeSet::from([a3.clone(), a5.clone(), b1.clone()]));
    assert_eq!(remove, BTreeSet::from([a1.clone(), a2.clone(), a4.clone()]));
    assert_eq!(snapshot_ids(&env), all, "a dry run removes nothing");
    let text = env.ok(&[&"rm", &"--keep-daily", &"2", &"--keep-tag", &"keep", &"-n"]);
    assert!(text.contains("tag keep, daily snapshot"), "{text}");
    assert!(text.contains("would remove 3 snapshot(s)"), "{text}");

    // One group for everything: b's lone snapshot now competes with a's.
    let out = env.ok(&[
        &"rm",
        &"--keep-last",
        &"5",
        &"--group-by",
        &"",
        &"-n",
        &"--json",
    ]);
    let (keep, remove) = plan(&serde_json::from_str(&out).unwrap());
    assert_eq!(remove, BTreeSet::from([b1.clone()]));
    assert_eq!(keep.len(), 5);

    // A named policy, applied, then pruned; what is left restores.
    let config = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_klosetfs"))
            .env("KLOSETFS_CONFIG", env.path("config.toml"))
            .arg("config")
            .arg("policy")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    config(&["create", "two-days", "keep_daily=2"]);
    let shown = config(&["show"]);
    assert!(shown.contains("two-days: keep_daily=2"), "{shown}");
    let out = env.ok(&[
        &"rm",
        &"--policy",
        &"two-days",
        &"--keep-tag",
        &"keep",
        &"--prune",
    ]);
    assert!(out.contains("removed 3 snapshot(s)"), "{out}");
    assert!(out.contains("packs deleted"), "prune ran: {out}");
    assert_eq!(snapshot_ids(&env), BTreeSet::from([a3, a5, b1]));
    env.ok(&[&"check", &"--read-data"]);
    env.assert_latest_restores(&a, "restored");

    // Running the same policy again removes nothing more.
    let out = env.ok(&[&"rm", &"--policy", &"two-days", &"--keep-tag", &"keep"]);
    assert!(out.contains("removed 0 snapshot(s)"), "{out}");
}

#[test]
fn days_are_local_days() {
    let env = Env::new();
    env.create();
    let a = env.path("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), b"x").unwrap();
    let old = backup_at(&env, &a, "2024-04-01T12:00:00Z", &[]);
    let evening = backup_at(&env, &a, "2024-05-01T21:30:00Z", &[]);
    let late = backup_at(&env, &a, "2024-05-01T22:30:00Z", &[]); // 00:30 on 2 May in Berlin
    let run = |tz: &str| {
        let o = env
            .cmd(&[&"rm", &"--keep-daily", &"2", &"-n", &"--json"])
            .env("TZ", tz)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        plan(&serde_json::from_slice(&o.stdout).unwrap()).0
    };
    assert_eq!(run("UTC"), BTreeSet::from([old.clone(), late.clone()]));
    // Berlin as a POSIX rule, so no tz database is needed.
    assert_eq!(
        run("CET-1CEST,M3.5.0,M10.5.0/3"),
        BTreeSet::from([evening, late])
    );
}

#[test]
fn refusals_remove_nothing() {
    let env = Env::new();
    env.create();
    let a = env.path("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), b"x").unwrap();
    backup_at(&env, &a, "2024-05-01T09:00:00Z", &[]);
    backup_at(&env, &a, "2024-05-02T09:00:00Z", &[]);
    let all = snapshot_ids(&env);
    let fails = |args: &[&dyn AsRef<std::ffi::OsStr>], why: &str| {
        let o = env.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{why}: {err}");
        assert!(err.contains(why), "{err}");
        assert_eq!(snapshot_ids(&env), all);
    };
    fails(&[&"rm"], "name the snapshots to remove");
    fails(&[&"rm", &"--keep-last", &"0"], "keeps nothing");
    fails(&[&"rm", &"--keep-tag", &"nosuch"], "--allow-empty");
    fails(&[&"rm", &"--keep-daily", &"x"], "--keep-daily");
    fails(&[&"rm", &"--keep-within", &"1w"], "duration");
    fails(&[&"rm", &"--policy", &"nope"], "no policy named");
    fails(&[&"rm", &"latest", &"--keep-last", &"1"], "not both");
    // With --allow-empty (dry run) the whole group would go.
    let out = env.ok(&[&"rm", &"--keep-tag", &"nosuch", &"--allow-empty", &"-n"]);
    assert!(out.contains("would remove 2 snapshot(s)"), "{out}");
    assert_eq!(snapshot_ids(&env), all);
}

/// `--tag ''` means "snapshots without tags", for `rm` by policy and for
/// `ls`, as `--keep-tag ''` already did.
#[test]
fn an_empty_tag_selects_untagged_snapshots() {
    let env = Env::new();
    env.create();
    let a = env.path("a");
    make_tree(&a, 0);
    let plain1 = backup_at(&env, &a, "2024-05-01T09:00:00Z", &[]);
    let tagged1 = backup_at(&env, &a, "2024-05-02T09:00:00Z", &["db"]);
    let plain2 = backup_at(&env, &a, "2024-05-03T09:00:00Z", &[]);
    let tagged2 = backup_at(&env, &a, "2024-05-04T09:00:00Z", &["db", "x"]);

    let ls: serde_json::Value =
        serde_json::from_str(&env.ok(&[&"ls", &"--json", &"--tag", &""])).unwrap();
    let listed: BTreeSet<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, BTreeSet::from([plain1.clone(), plain2.clone()]));
    let ls: serde_json::Value =
        serde_json::from_str(&env.ok(&[&"ls", &"--json", &"--tag", &"db,x"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(ls[0]["id"], tagged2.as_str());

    // The policy applies to the untagged ones only: the older goes.
    let out = env.ok(&[
        &"rm",
        &"--keep-last",
        &"1",
        &"--tag",
        &"",
        &"--dry-run",
        &"--json",
    ]);
    let (keep, remove) = plan(&serde_json::from_str(&out).unwrap());
    assert_eq!(keep, BTreeSet::from([plain2.clone()]));
    assert_eq!(remove, BTreeSet::from([plain1.clone()]));
    env.ok(&[&"rm", &"--keep-last", &"1", &"--tag", &""]);
    assert_eq!(
        snapshot_ids(&env),
        BTreeSet::from([tagged1, plain2, tagged2])
    );
}
