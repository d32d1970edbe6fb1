//! Retention: which snapshots a `--keep-*` policy keeps. The rules are
//! restic's (`forget`), so a policy moved from restic keeps the same
//! snapshots: newest first, each calendar rule keeps the newest snapshot of
//! each of its last N periods that hold one (local time, ISO weeks), the
//! oldest snapshot is kept too while a rule has periods left, and a snapshot
//! is kept when any rule keeps it. Pure: snapshots and a clock in,
//! decisions out; `rm` deletes.

use std::collections::BTreeMap;
use std::fmt;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;

/// How many periods a calendar rule keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    N(u32),
    Unlimited,
}

impl Count {
    pub fn parse(s: &str) -> Result<Self> {
        if s == "unlimited" || s == "-1" {
            return Ok(Count::Unlimited);
        }
        s.parse().map(Count::N).map_err(|_| {
            Error::InvalidInput(format!(
                "expected a number of snapshots or `unlimited`, got {s:?}"
            ))
        })
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A calendar duration such as `2y5m7d3h` (years, months, days, hours).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CalDuration {
    pub years: i64,
    pub months: i64,
    pub days: i64,
    pub hours: i64,
}

impl CalDuration {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "expected a duration such as 7d, 2y5m or 36h (y, m, d, h), got {s:?}"
            ))
        };
        let mut d = CalDuration::default();
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num.parse().map_err(|_| bad())?;
            if n > 100_000 {
                return Err(bad());
            }
            num.clear();
            match c {
                'y' => d.years += n,
                'm' => d.months += n,
                'd' => d.days += n,
                'h' => d.hours += n,
                _ => return Err(bad()),
            }
        }
        if !num.is_empty() || s.is_empty() {
            return Err(bad());
        }
        Ok(d)
    }

    /// The instant this long before `t` (calendar units first, in `t`'s
    /// time zone; a month back from 31 March is the last day of February).
    fn before(&self, t: &Zoned) -> Option<Timestamp> {
        let span = Span::new()
            .try_years(-self.years)
            .and_then(|s| s.try_months(-self.months))
            .and_then(|s| s.try_days(-self.days))
            .and_then(|s| s.try_hours(-self.hours))
            .ok()?;
        t.checked_add(span).ok().map(|z| z.timestamp())
    }
}

impl fmt::Display for CalDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{u}")?;
            }
        }
        if *self == CalDuration::default() {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

/// Calendar periods, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

const PERIODS: [Period; 5] = [
    Period::Hourly,
    Period::Daily,
    Period::Weekly,
    Period::Monthly,
    Period::Yearly,
];

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// Which period `t` falls in (local time; weeks are ISO weeks, Monday
    /// to Sunday, numbered within their ISO year).
    fn bucket(self, t: &Zoned) -> i64 {
        let (y, m, d, h) = (
            t.year() as i64,
            t.month() as i64,
            t.day() as i64,
            t.hour() as i64,
        );
        match self {
            Period::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Period::Daily => (y * 100 + m) * 100 + d,
            Period::Weekly => {
                let w = t.date().iso_week_date();
                w.year() as i64 * 100 + w.week() as i64
            }
            Period::Monthly => y * 100 + m,
            Period::Yearly => y,
        }
    }
}

/// What to keep. A snapshot any rule keeps is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<Count>,
    /// `--keep-hourly` … `--keep-yearly`, in [`PERIODS`] order.
    pub periods: [Option<Count>; 5],
    pub within: Option<CalDuration>,
    /// `--keep-within-hourly` … `--keep-within-yearly`.
    pub within_periods: [Option<CalDuration>; 5],
    /// Each entry keeps snapshots carrying all of its tags; `[""]` keeps
    /// untagged snapshots.
    pub tags: Vec<Vec<String>>,
}

/// The setting names of a policy, as in `config policy create NAME
/// keep_daily=7` (the flags are the same with dashes).
pub const POLICY_KEYS: &[&str] = &[
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_within_hourly",
    "keep_within_daily",
    "keep_within_weekly",
    "keep_within_monthly",
    "keep_within_yearly",
    "keep_tag",
];

impl Policy {
    /// True when no rule is set (such a policy would keep nothing).
    pub fn is_empty(&self) -> bool {
        let zero = |c: &Option<Count>| matches!(c, None | Some(Count::N(0)));
        zero(&self.last)
            && self.periods.iter().all(zero)
            && self.within.is_none()
            && self.within_periods.iter().all(Option::is_none)
            && self.tags.is_empty()
    }

    /// Sets one rule by its setting name (`keep_daily`, `keep-daily`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = key.replace('-', "_");
        let period = |name: &str| PERIODS.iter().position(|p| p.name() == name);
        match key.strip_prefix("keep_") {
            Some("last") => self.last = Some(Count::parse(value)?),
            Some("within") => self.within = Some(CalDuration::parse(value)?),
            Some("tag") => self
                .tags
                .push(value.split(',').map(str::to_string).collect()),
            Some(k) if period(k).is_some() => {
                self.periods[period(k).expect("checked")] = Some(Count::parse(value)?)
            }
            Some(k) if k.strip_prefix("within_").and_then(period).is_some() => {
                let i = k.strip_prefix("within_").and_then(period).expect("checked");
                self.within_periods[i] = Some(CalDuration::parse(value)?)
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unknown policy setting {key:?}; known: {}",
                    POLICY_KEYS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// The policy as `key=value` settings (what `set` reads back).
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(c) = self.last {
            out.push(("keep_last".into(), c.to_string()));
        }
        for (p, c) in PERIODS.iter().zip(&self.periods) {
            if let Some(c) = c {
                out.push((format!("keep_{}", p.name()), c.to_string()));
            }
        }
        if let Some(d) = self.within {
            out.push(("keep_within".into(), d.to_string()));
        }
        for (p, d) in PERIODS.iter().zip(&self.within_periods) {
            if let Some(d) = d {
                out.push((format!("keep_within_{}", p.name()), d.to_string()));
            }
        }
        for t in &self.tags {
            out.push(("keep_tag".into(), t.join(",")));
        }
        out
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self
            .settings()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&s.join(" "))
    }
}

/// What the policy does with one snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    #[serde(serialize_with = "hex_id")]
    pub id: SnapshotId,
    pub time: i64,
    pub keep: bool,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
}

fn hex_id<S: serde::Serializer>(id: &SnapshotId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}

fn zoned(ns: i64, tz: &TimeZone) -> Zoned {
    Timestamp::from_nanosecond(ns as i128)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
}

/// Whether a snapshot with `tags` has every tag of `wanted` (a `TAG,TAG`
/// filter); `''` (an empty filter) asks for snapshots without tags, as in
/// restic.
pub fn has_tags(tags: &[String], wanted: &[String]) -> bool {
    if wanted.iter().all(String::is_empty) {
        tags.is_empty()
    } else {
        wanted
            .iter()
            .filter(|w| !w.is_empty())
            .all(|w| tags.contains(w))
    }
}

/// Applies `policy` to one group of snapshots; returns a decision for each,
/// newest first. Snapshots dated after `now_ns` are kept and count for no
/// rule (a wrong clock must not push real backups out).
pub fn apply(
    policy: &Policy,
    list: &[(SnapshotId, &Snapshot)],
    now_ns: i64,
    tz: &TimeZone,
) -> Vec<Decision> {
    let mut list = list.to_vec();
    list.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
    let mut out: Vec<Decision> = list
        .iter()
        .map(|(id, s)| Decision {
            id: *id,
            time: s.time,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    let keep = |d: &mut Decision, why: String| {
        d.keep = true;
        d.reasons.push(why);
    };
    let past: Vec<usize> = (0..list.len())
        .filter(|&i| list[i].1.time <= now_ns)
        .collect();
    for (d, (_, s)) in out.iter_mut().zip(&list) {
        if s.time > now_ns {
            keep(d, "in the future".into());
        }
        for t in &policy.tags {
            if has_tags(&s.tags, t) {
                let untagged = t.iter().all(String::is_empty);
                let name = if untagged { "''".into() } else { t.join(",") };
                keep(d, format!("tag {name}"));
            }
        }
    }
    let Some(&newest) = past.first() else {
        return out;
    };
    let latest = zoned(list[newest].1.time, tz);
    let within = |d: &CalDuration| d.before(&latest).map(|t| t.as_nanosecond() as i64);

    // Calendar rules: `last` is a rule whose every snapshot is its own period.
    let mut rules: Vec<(Option<Period>, Count)> = Vec::new();
    if let Some(c) = policy.last {
        rules.push((None, c));
    }
    for (p, c) in PERIODS.iter().zip(&policy.periods) {
        if let Some(c) = c {
            rules.push((Some(*p), *c));
        }
    }
    let within_all = policy.within.as_ref().and_then(within);
    let within_rules: Vec<(Period, CalDuration, Option<i64>)> = PERIODS
        .iter()
        .zip(&policy.within_periods)
        .filter_map(|(p, d)| d.map(|d| (*p, d, within(&d))))
        .collect();
    let mut left: Vec<Count> = rules.iter().map(|r| r.1).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; rules.len()];
    let mut last_within: Vec<Option<i64>> = vec![None; within_rules.len()];
    for (nr, &i) in past.iter().enumerate() {
        let t = list[i].1.time;
        let z = zoned(t, tz);
        let oldest = nr == past.len() - 1;
        let d = &mut out[i];
        if let (Some(from), Some(w)) = (within_all, policy.within) {
            if t > from {
                keep(d, format!("within {w}"));
            }
        }
        for (r, (period, _)) in rules.iter().enumerate() {
            if left[r] == Count::N(0) {
                continue;
            }
            let b = period.map_or(nr as i64, |p| p.bucket(&z));
            if last_bucket[r] != Some(b) || oldest {
                let name = period.map_or("last", |p| p.name());
                let why = if last_bucket[r] == Some(b) {
                    format!("oldest {name} snapshot")
                } else {
                    format!("{name} snapshot")
                };
                last_bucket[r] = Some(b);
                if let Count::N(n) = &mut left[r] {
                    *n -= 1;
                }
                keep(d, why);
            }
        }
        for (r, (p, dur, from)) in within_rules.iter().enumerate() {
            if from.is_some_and(|from| t > from) {
                let b = p.bucket(&z);
                if last_within[r] != Some(b) {
                    last_within[r] = Some(b);
                    keep(d, format!("{} within {dur}", p.name()));
                }
            }
        }
    }
    out
}

/// What snapshots are grouped by before a policy applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    /// `host,paths` (the default), any subset of host/paths/tags, or `''`
    /// for one group of everything.
    pub fn parse(s: &str) -> Result<Self> {
        let mut g = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                _ => {
                    return Err(Error::InvalidInput(format!(
                    "--group-by takes host, paths and tags, comma-separated (or ''), got {part:?}"
                )))
                }
            }
        }
        Ok(g)
    }

    pub fn key(&self, s: &Snapshot) -> GroupKey {
        let mut paths = s.paths.clone();
        paths.sort();
        let mut tags = s.tags.clone();
        tags.sort();
        GroupKey {
            host: self.host.then(|| s.host.clone()),
            paths: self.paths.then_some(paths),
            tags: self.tags.then_some(tags),
        }
    }
}

/// One group's shared values (`None` where not grouped by it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub host: Option<String>,
    pub paths: Option<Vec<Vec<u8>>>,
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            let p: Vec<String> = p
                .iter()
                .map(|p| String::from_utf8_lossy(p).into())
                .collect();
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if parts.is_empty() {
            parts.push("all snapshots".into());
        }
        f.write_str(&parts.join(", "))
    }
}

/// Splits snapshots into groups, in key order.
pub fn group(
    list: &[(SnapshotId, Snapshot)],
    by: GroupBy,
) -> BTreeMap<GroupKey, Vec<(SnapshotId, &Snapshot)>> {
    let mut out: BTreeMap<GroupKey, Vec<(SnapshotId, &Snapshot)>> = BTreeMap::new();
    for (id, s) in list {
        out.entry(by.key(s)).or_default().push((*id, s));
    }
    out
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
