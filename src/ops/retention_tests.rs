//! Retention tests. Each case's expected result was worked out by hand from restic's
//! documented `forget` rules (doc/060_forget.rst), not by running this
//! code: newest first; a calendar rule keeps the newest snapshot of each
//! of its last N periods holding one, and the oldest snapshot while it
//! has periods left; rules are ORed; within-rules count back from the
//! newest snapshot, not from now.
use super::*;
use crate::format::id::BlobId;
use crate::format::snapshot::Summary;

/// Berlin's rules as a POSIX TZ string (no tz database needed).
fn berlin() -> TimeZone {
    TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
}

fn ns(rfc3339: &str) -> i64 {
    rfc3339.parse::<Timestamp>().unwrap().as_nanosecond() as i64
}

fn snap(time: &str, host: &str, tags: &[&str]) -> Snapshot {
    Snapshot {
        version: 1,
        time: ns(time),
        host: host.into(),
        user: "u".into(),
        paths: vec![b"/data".to_vec()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        tree: BlobId([0; 32]),
        parent: None,
        summary: Summary::default(),
        root: None,
        original: None,
    }
}

fn policy(settings: &[(&str, &str)]) -> Policy {
    let mut p = Policy::default();
    for (k, v) in settings {
        p.set(k, v).unwrap();
    }
    p
}

/// Runs `settings` over snapshots at `times` (RFC 3339 with offsets)
/// and returns the kept times in the order given, with their reasons.
fn kept(
    tz: &TimeZone,
    settings: &[(&str, &str)],
    times: &[&str],
    now: &str,
) -> Vec<(String, Vec<String>)> {
    let list: Vec<(SnapshotId, Snapshot)> = times
        .iter()
        .enumerate()
        .map(|(i, t)| (SnapshotId([i as u8; 32]), snap(t, "h", &[])))
        .collect();
    let refs: Vec<(SnapshotId, &Snapshot)> = list.iter().map(|(i, s)| (*i, s)).collect();
    let d = apply(&policy(settings), &refs, ns(now), tz);
    assert_eq!(d.len(), times.len());
    times
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let x = d
                .iter()
                .find(|x| x.id == SnapshotId([i as u8; 32]))
                .unwrap();
            x.keep.then(|| (t.to_string(), x.reasons.clone()))
        })
        .collect()
}

fn kept_times(tz: &TimeZone, s: &[(&str, &str)], times: &[&str], now: &str) -> Vec<String> {
    kept(tz, s, times, now).into_iter().map(|k| k.0).collect()
}

const NOW: &str = "2030-01-01T00:00:00Z";

/// restic's own example: one backup every Sunday for 12 weeks,
/// `--keep-daily 4` keeps the last four.
#[test]
fn restic_sunday_example() {
    let days = [
        "01", "08", "15", "22", "29", "06", "13", "20", "27", "03", "10", "17",
    ];
    let months = [9, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11];
    let times: Vec<String> = days
        .iter()
        .zip(months)
        .map(|(d, m)| format!("2019-{m:02}-{d}T11:00:00+01:00"))
        .collect();
    let t: Vec<&str> = times.iter().map(String::as_str).collect();
    let utc = TimeZone::UTC;
    assert_eq!(kept_times(&utc, &[("keep_daily", "4")], &t, NOW), &t[8..]);
    assert_eq!(kept_times(&utc, &[("keep_last", "3")], &t, NOW), &t[9..]);
    assert_eq!(kept_times(&utc, &[("keep_last", "unlimited")], &t, NOW), t);
    // Fewer periods than asked: everything is kept.
    assert_eq!(kept_times(&utc, &[("keep_daily", "20")], &t, NOW), t);
}

/// Several snapshots a day: the newest of each day; with days to spare
/// the oldest snapshot is kept as well, marked so.
#[test]
fn newest_of_each_day_and_the_oldest_while_counts_last() {
    let t = [
        "2024-05-01T09:00:00Z",
        "2024-05-01T18:00:00Z",
        "2024-05-02T09:00:00Z",
        "2024-05-02T18:00:00Z",
        "2024-05-03T09:00:00Z",
    ];
    let utc = TimeZone::UTC;
    assert_eq!(
        kept_times(&utc, &[("keep_daily", "2")], &t, NOW),
        [t[3], t[4]]
    );
    let k = kept(&utc, &[("keep_daily", "5")], &t, NOW);
    assert_eq!(
        k,
        vec![
            (t[0].to_string(), vec!["oldest daily snapshot".to_string()]),
            (t[1].to_string(), vec!["daily snapshot".to_string()]),
            (t[3].to_string(), vec!["daily snapshot".to_string()]),
            (t[4].to_string(), vec!["daily snapshot".to_string()]),
        ]
    );
    // Rules are ORed and each names itself.
    let k = kept(&utc, &[("keep_last", "1"), ("keep_daily", "2")], &t, NOW);
    assert_eq!(k.len(), 2);
    assert_eq!(k[1].1, ["last snapshot", "daily snapshot"]);
}

/// Months end at local midnight: 00:30 on 1 February in Berlin is still
/// January in UTC.
#[test]
fn month_ends_in_local_time() {
    let t = [
        "2023-12-15T12:00:00+01:00",
        "2024-01-31T20:00:00+01:00",
        "2024-01-31T23:30:00+01:00",
        "2024-02-01T00:30:00+01:00",
    ];
    let p = [("keep_monthly", "2")];
    assert_eq!(kept_times(&berlin(), &p, &t, NOW), [t[2], t[3]]);
    assert_eq!(kept_times(&TimeZone::UTC, &p, &t, NOW), [t[0], t[3]]);
}

/// 2020 has an ISO week 53 that runs into 2021 (Mon 28 Dec to Sun 3 Jan).
#[test]
fn iso_week_53() {
    let t = [
        "2020-12-27T12:00:00Z", // Sunday, 2020-W52
        "2020-12-28T12:00:00Z", // Monday, 2020-W53
        "2021-01-01T12:00:00Z", // Friday, 2020-W53
        "2021-01-03T12:00:00Z", // Sunday, 2020-W53
        "2021-01-04T12:00:00Z", // Monday, 2021-W01
    ];
    let p = [("keep_weekly", "3")];
    assert_eq!(kept_times(&TimeZone::UTC, &p, &t, NOW), [t[0], t[3], t[4]]);
    // Years are calendar years (not ISO years); with years to spare the
    // oldest snapshot stays too.
    let y = [("keep_yearly", "5")];
    assert_eq!(kept_times(&TimeZone::UTC, &y, &t, NOW), [t[0], t[1], t[4]]);
}

/// Across a DST change hours are local hours: the repeated 02:xx of the
/// autumn change is one hour; the skipped hour in spring leaves 01:59
/// and 03:00 in different hours though they are a minute apart.
#[test]
fn dst_changes() {
    let autumn = [
        "2024-10-26T12:00:00Z",
        "2024-10-27T00:30:00Z", // 02:30 CEST
        "2024-10-27T01:30:00Z", // 02:30 CET
    ];
    let p = [("keep_hourly", "10")];
    assert_eq!(
        kept_times(&berlin(), &p, &autumn, NOW),
        [autumn[0], autumn[2]]
    );
    assert_eq!(kept_times(&TimeZone::UTC, &p, &autumn, NOW), autumn);
    let spring = [
        "2024-03-30T12:00:00Z",
        "2024-03-31T00:59:00Z", // 01:59 CET
        "2024-03-31T01:00:00Z", // 03:00 CEST
    ];
    assert_eq!(kept_times(&berlin(), &p, &spring, NOW), spring);
    // Days are local days too: 23:30 UTC on 30 March is 31 March here.
    let days = [
        "2024-03-30T22:30:00Z",
        "2024-03-30T23:30:00Z",
        "2024-03-31T09:00:00Z",
    ];
    let d = [("keep_daily", "1")];
    assert_eq!(kept_times(&berlin(), &d, &days, NOW), [days[2]]);
    assert_eq!(kept_times(&TimeZone::UTC, &d, &days, NOW), [days[2]]);
    let d2 = [("keep_daily", "2")];
    assert_eq!(kept_times(&berlin(), &d2, &days, NOW), [days[0], days[2]]);
    assert_eq!(
        kept_times(&TimeZone::UTC, &d2, &days, NOW),
        [days[1], days[2]]
    );
}

/// `keep_within` counts back from the newest snapshot, strictly; future
/// snapshots are kept and do not move the reference.
#[test]
fn within_counts_back_from_the_newest() {
    let t = [
        "2024-06-01T12:00:00Z",
        "2024-06-03T12:00:00Z", // exactly 7 days before the newest
        "2024-06-03T13:00:00Z",
        "2024-06-10T12:00:00Z",
        "2024-07-01T00:00:00Z", // after `now`
    ];
    let k = kept(
        &TimeZone::UTC,
        &[("keep_within", "7d")],
        &t,
        "2024-06-11T00:00:00Z",
    );
    assert_eq!(
        k,
        vec![
            (t[2].to_string(), vec!["within 7d".to_string()]),
            (t[3].to_string(), vec!["within 7d".to_string()]),
            (t[4].to_string(), vec!["in the future".to_string()]),
        ]
    );
    // A month back from 31 March is 29 February (leap year, clamped).
    let m = [
        "2024-02-29T09:00:00Z",
        "2024-02-29T11:00:00Z",
        "2024-03-31T10:00:00Z",
    ];
    assert_eq!(
        kept_times(&TimeZone::UTC, &[("keep_within", "1m")], &m, NOW),
        [m[1], m[2]]
    );
    // Hours and calendar units add up: 1d12h.
    let h = [
        "2024-06-08T23:00:00Z",
        "2024-06-09T01:00:00Z",
        "2024-06-10T12:00:00Z",
    ];
    assert_eq!(
        kept_times(&TimeZone::UTC, &[("keep_within", "1d12h")], &h, NOW),
        [h[1], h[2]]
    );
}

#[test]
fn within_periods() {
    let t = [
        "2024-06-06T12:00:00Z",
        "2024-06-07T19:00:00Z",
        "2024-06-08T10:00:00Z",
        "2024-06-09T10:00:00Z",
        "2024-06-09T20:00:00Z",
        "2024-06-10T08:00:00Z",
        "2024-06-10T18:00:00Z",
    ];
    let k = kept_times(&TimeZone::UTC, &[("keep_within_daily", "3d")], &t, NOW);
    assert_eq!(k, [t[1], t[2], t[4], t[6]]);
}

#[test]
fn tags() {
    let list = [
        (
            SnapshotId([1; 32]),
            snap("2024-01-01T00:00:00Z", "h", &["daily"]),
        ),
        (
            SnapshotId([2; 32]),
            snap("2024-01-02T00:00:00Z", "h", &["daily", "db"]),
        ),
        (SnapshotId([3; 32]), snap("2024-01-03T00:00:00Z", "h", &[])),
    ];
    let refs: Vec<(SnapshotId, &Snapshot)> = list.iter().map(|(i, s)| (*i, s)).collect();
    let run = |p: &Policy| -> Vec<u8> {
        let mut k: Vec<u8> = apply(p, &refs, ns(NOW), &TimeZone::UTC)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id.0[0])
            .collect();
        k.sort();
        k
    };
    assert_eq!(run(&policy(&[("keep_tag", "daily,db")])), [2]);
    assert_eq!(run(&policy(&[("keep_tag", "daily")])), [1, 2]);
    assert_eq!(run(&policy(&[("keep_tag", "")])), [3]);
    assert_eq!(
        run(&policy(&[("keep_tag", "db"), ("keep_tag", "")])),
        [2, 3]
    );
    assert_eq!(run(&policy(&[("keep_tag", "weekly")])), Vec::<u8>::new());
}

#[test]
fn groups_by_host_and_paths_by_default() {
    let mut b = snap("2024-01-02T00:00:00Z", "b", &[]);
    b.paths = vec![b"/y".to_vec(), b"/x".to_vec()];
    let mut b2 = b.clone();
    b2.paths.reverse();
    b2.tags = vec!["t".into()];
    let list = vec![
        (SnapshotId([1; 32]), snap("2024-01-01T00:00:00Z", "a", &[])),
        (SnapshotId([2; 32]), b),
        (SnapshotId([3; 32]), b2),
    ];
    let g = group(&list, GroupBy::parse("host,paths").unwrap());
    assert_eq!(g.len(), 2, "path order does not split a group");
    assert_eq!(group(&list, GroupBy::parse("host,tags").unwrap()).len(), 3);
    let all = group(&list, GroupBy::parse("").unwrap());
    assert_eq!(all.len(), 1);
    assert_eq!(all.keys().next().unwrap().to_string(), "all snapshots");
    assert!(GroupBy::parse("hosts").is_err());
}

#[test]
fn settings_parse_and_round_trip() {
    let p = policy(&[
        ("keep-daily", "7"),
        ("keep_within", "1y2m3d4h"),
        ("keep_within_weekly", "2m"),
        ("keep_last", "unlimited"),
        ("keep_tag", "a,b"),
    ]);
    let mut q = Policy::default();
    for (k, v) in p.settings() {
        q.set(&k, &v).unwrap();
    }
    assert_eq!(p, q);
    assert!(Policy::default().is_empty());
    assert!(policy(&[("keep_last", "0")]).is_empty());
    for bad in [
        ("keep_daily", "x"),
        ("keep_within", "7w"),
        ("keep_within", "7"),
        ("keep_often", "1"),
    ] {
        assert!(Policy::default().set(bad.0, bad.1).is_err(), "{bad:?}");
    }
}

#[test]
fn tag_filters() {
    use super::has_tags;
    let v = |t: &[&str]| -> Vec<String> { t.iter().map(|x| x.to_string()).collect() };
    assert!(has_tags(&v(&["a", "b"]), &v(&["a"])));
    assert!(has_tags(&v(&["a", "b"]), &v(&["b", "a"])));
    assert!(!has_tags(&v(&["a"]), &v(&["a", "b"])));
    // '' is "no tags at all".
    assert!(has_tags(&v(&[]), &v(&[""])));
    assert!(!has_tags(&v(&["a"]), &v(&[""])));
    // An empty part beside real tags is ignored ("a," is "a").
    assert!(has_tags(&v(&["a"]), &v(&["a", ""])));
}
