//! `rm`: forget snapshots named on the command line, or those a retention
//! policy (`--keep-*`, `--policy`) does not keep; `unlock` (break stale locks).

use anyhow::bail;
use clap::Args;
use jiff::tz::TimeZone;
use klosetfs::format::id::SnapshotId;
use klosetfs::format::snapshot::Snapshot;
use klosetfs::ops::remove::{remove_ids, remove_snapshots};
use klosetfs::ops::retention::{apply, group, has_tags, Decision, GroupBy, GroupKey, Policy};

use super::{Ctx, EXIT_OK};

/// Remove snapshots by id, or by a retention policy (their data is freed by
/// `prune`, or `--prune`).
#[derive(Args)]
#[command(after_help = "Examples:
  klosetfs at /srv/backups rm 3fa2c1 9bd01e && klosetfs at /srv/backups prune
  klosetfs at /srv/backups rm --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
  klosetfs at @home rm --policy nightly --prune

A policy applies to each group of snapshots (same host and paths, see
--group-by) on its own. Calendar rules keep the newest snapshot of each of the
last N hours/days/weeks/months/years that have one, counting back from the
group's newest snapshot, in local time (TZ), weeks being ISO weeks (Monday to
Sunday); while a rule has periods left, the group's oldest snapshot is kept
too. A snapshot any rule keeps is kept. Snapshots dated in the future are
kept. The rules are restic's `forget` rules.")]
pub struct RmArgs {
    /// Snapshots to remove: ids, unique id prefixes, or `latest`. Leave out
    /// to remove by policy.
    snapshots: Vec<String>,
    /// Keep the N newest snapshots (`unlimited`: all).
    #[arg(long, value_name = "N")]
    keep_last: Option<String>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<String>,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    keep_daily: Option<String>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<String>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<String>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<String>,
    /// Keep every snapshot within DURATION of the group's newest (`7d`,
    /// `1y6m`, `36h`: years, months, days, hours).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep the newest snapshot of each hour within DURATION of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_hourly: Option<String>,
    /// Keep the newest snapshot of each day within DURATION of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_daily: Option<String>,
    /// Keep the newest snapshot of each week within DURATION of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_weekly: Option<String>,
    /// Keep the newest snapshot of each month within DURATION of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_monthly: Option<String>,
    /// Keep the newest snapshot of each year within DURATION of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_yearly: Option<String>,
    /// Keep snapshots with all of these tags (repeatable; '' keeps untagged ones).
    #[arg(long, value_name = "TAG[,TAG]")]
    keep_tag: Vec<String>,
    /// Start from a policy of the user config (`config policy create`);
    /// --keep-* options add to it.
    #[arg(long, value_name = "NAME")]
    policy: Option<String>,
    /// What makes a group: host, paths and/or tags, comma-separated; '' for
    /// one group of all snapshots.
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    group_by: String,
    /// Apply the policy only to snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// Apply the policy only to snapshots with all of these tags (repeatable;
    /// '' means snapshots without tags).
    #[arg(long, value_name = "TAG[,TAG]")]
    tag: Vec<String>,
    /// Print what would be kept and removed, and why; remove nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print the decisions as JSON.
    #[arg(long)]
    json: bool,
    /// Run `prune` afterwards when snapshots were removed.
    #[arg(long)]
    prune: bool,
    /// Let a policy remove every snapshot of a group (refused otherwise).
    #[arg(long)]
    allow_empty: bool,
}

impl RmArgs {
    fn policy(&self) -> anyhow::Result<Option<Policy>> {
        let mut p = match &self.policy {
            Some(name) => {
                klosetfs::userconfig::policy(&klosetfs::userconfig::UserConfig::load()?, name)?
            }
            None => Policy::default(),
        };
        let flags = [
            ("keep_last", &self.keep_last),
            ("keep_hourly", &self.keep_hourly),
            ("keep_daily", &self.keep_daily),
            ("keep_weekly", &self.keep_weekly),
            ("keep_monthly", &self.keep_monthly),
            ("keep_yearly", &self.keep_yearly),
            ("keep_within", &self.keep_within),
            ("keep_within_hourly", &self.keep_within_hourly),
            ("keep_within_daily", &self.keep_within_daily),
            ("keep_within_weekly", &self.keep_within_weekly),
            ("keep_within_monthly", &self.keep_within_monthly),
            ("keep_within_yearly", &self.keep_within_yearly),
        ];
        let mut any = self.policy.is_some() || !self.keep_tag.is_empty();
        for (k, v) in flags {
            if let Some(v) = v {
                p.set(k, v)
                    .map_err(|e| anyhow::anyhow!("--{}: {e}", k.replace('_', "-")))?;
                any = true;
            }
        }
        for t in &self.keep_tag {
            p.set("keep_tag", t)?;
        }
        Ok(any.then_some(p))
    }
}

pub fn run(ctx: &Ctx, a: RmArgs) -> anyhow::Result<u8> {
    let policy = a.policy()?;
    let repo = ctx.open()?;
    let Some(policy) = policy else {
        if a.snapshots.is_empty() {
            bail!("name the snapshots to remove, or give a retention policy (--keep-*, --policy)");
        }
        if a.dry_run || a.json || a.host.is_some() || !a.tag.is_empty() {
            bail!("--dry-run, --json, --host and --tag go with a retention policy (--keep-*, --policy)");
        }
        let ids = remove_snapshots(&repo, &a.snapshots)?;
        for id in &ids {
            if !ctx.global.quiet {
                outln!("removed snapshot {}", id.short());
            }
        }
        if a.prune && !ids.is_empty() {
            let r = super::prune::execute(ctx, &repo, false)?;
            if !ctx.global.quiet {
                outln!("{}", super::prune::line(&r, false));
            }
        }
        return Ok(EXIT_OK);
    };
    if !a.snapshots.is_empty() {
        bail!("give snapshot ids or a retention policy, not both");
    }
    if policy.is_empty() {
        bail!("the policy keeps nothing (every --keep-* is 0); refusing to remove every snapshot");
    }
    let by = GroupBy::parse(&a.group_by)?;
    let all = repo.snapshots()?;
    super::warn_damaged_snapshots(&repo);
    let tags: Vec<Vec<String>> = a
        .tag
        .iter()
        .map(|t| t.split(',').map(str::to_string).collect())
        .collect();
    let chosen: Vec<(SnapshotId, Snapshot)> = all
        .into_iter()
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.host == h))
        .filter(|(_, s)| tags.iter().all(|t| has_tags(&s.tags, t)))
        .collect();
    let tz = TimeZone::system();
    let now = klosetfs::util::now_ns();
    let plan: Vec<(GroupKey, Vec<Decision>)> = group(&chosen, by)
        .into_iter()
        .map(|(k, list)| {
            let d = apply(&policy, &list, now, &tz);
            (k, d)
        })
        .collect();
    let emptied: Vec<&GroupKey> = plan
        .iter()
        .filter(|(_, d)| !d.is_empty() && d.iter().all(|x| !x.keep))
        .map(|(k, _)| k)
        .collect();
    let remove: Vec<SnapshotId> = plan
        .iter()
        .flat_map(|(_, d)| d.iter().filter(|x| !x.keep).map(|x| x.id))
        .collect();
    let mut json = a.json.then(|| {
        let groups: Vec<serde_json::Value> = plan
            .iter()
            .map(|(k, d)| {
                let paths = k.paths.as_ref().map(|p| {
                    p.iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect::<Vec<_>>()
                });
                serde_json::json!({"host": k.host, "paths": paths, "tags": k.tags, "snapshots": d})
            })
            .collect();
        serde_json::json!({
            "dry_run": a.dry_run,
            "policy": policy.to_string(),
            "groups": groups,
            "remove": remove.len(),
        })
    });
    if !a.json && !ctx.global.quiet {
        outln!("policy: {policy}");
        for (k, d) in &plan {
            let kept = d.iter().filter(|x| x.keep).count();
            outln!("{k}: keep {kept}, remove {}", d.len() - kept);
            for x in d {
                let line = format!(
                    "  {:<6}  {}  {}  {}",
                    if x.keep { "keep" } else { "remove" },
                    x.id.short(),
                    local_time(x.time, &tz),
                    x.reasons.join(", ")
                );
                outln!("{}", line.trim_end());
            }
        }
    }
    if !emptied.is_empty() && !a.allow_empty {
        let names: Vec<String> = emptied.iter().map(|k| k.to_string()).collect();
        bail!(
            "the policy keeps no snapshot of {}; nothing removed (add --allow-empty to remove them all)",
            names.join("; ")
        );
    }
    if a.dry_run {
        if let Some(v) = json {
            outln!("{}", serde_json::to_string_pretty(&v)?);
        } else if !ctx.global.quiet {
            outln!("dry run: would remove {} snapshot(s)", remove.len());
        }
        return Ok(EXIT_OK);
    }
    remove_ids(&repo, &remove)?;
    if !a.json && !ctx.global.quiet {
        outln!("removed {} snapshot(s)", remove.len());
    }
    if a.prune && !remove.is_empty() {
        let r = super::prune::execute(ctx, &repo, false)?;
        match &mut json {
            Some(v) => v["prune"] = super::prune::json(&r, false),
            None if !ctx.global.quiet => outln!("{}", super::prune::line(&r, false)),
            None => {}
        }
    }
    if let Some(v) = json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(EXIT_OK)
}

/// A snapshot's time in the zone the policy's periods use.
fn local_time(ns: i64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_else(|_| klosetfs::util::format_time(ns))
}

/// Remove stale locks (from killed processes), or all with --all.
#[derive(Args)]
#[command(after_help = "Example:\n  klosetfs at /srv/backups unlock")]
pub struct UnlockArgs {
    /// Remove every lock, even live ones.
    #[arg(long)]
    all: bool,
}

pub fn unlock(ctx: &Ctx, a: UnlockArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let n = klosetfs::format::lock::break_locks(&**repo.storage(), repo.keys(), a.all)?;
    if !ctx.global.quiet {
        outln!("removed {n} lock(s)");
    }
    Ok(EXIT_OK)
}
