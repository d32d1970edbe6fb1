//! Small helpers shared by every layer: clocks, host and user names, sizes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// `1.5 GiB`-style sizes for people.
/// Joins a directory path (bytes) and a name with one `/`.
pub fn join_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Local time `YYYY-MM-DDTHH:MM:SS` (UTC) of a nanosecond timestamp.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `~/x` → the home folder's `x`; anything else unchanged.
/// Nanoseconds since the epoch from an RFC 3339 time (`2026-01-31T23:00:00Z`,
/// `2026-01-31T23:00:00.5+01:00`).
pub fn parse_time(s: &str) -> crate::Result<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            crate::Error::InvalidInput(format!(
                "{s:?} is not an RFC 3339 time like 2026-01-31T23:00:00Z: {e}"
            ))
        })?;
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| crate::Error::InvalidInput(format!("{s:?} is out of range")))
}

pub fn expand_tilde(p: &str) -> std::path::PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => dirs::home_dir().unwrap_or_default().join(rest),
        None => std::path::PathBuf::from(p),
    }
}

/// `512M`, `2G`, `1.5T`, `1048576` (binary multiples).
pub fn parse_size(s: &str) -> crate::Result<u64> {
    let bad =
        || crate::Error::InvalidInput(format!("bad size {s:?} (try 512M, 2G or a byte count)"));
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * mul as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_700_000_000_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
    }
}

/// An LRU cache bounded by the bytes its values take (as `weigh` counts
/// them) rather than by their number: one huge directory and many small ones
/// cost what they hold.
pub struct ByteLru<K: std::hash::Hash + Eq, V> {
    map: lru::LruCache<K, (V, usize)>,
    bytes: usize,
    cap: usize,
}

impl<K: std::hash::Hash + Eq, V> ByteLru<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            map: lru::LruCache::unbounded(),
            bytes: 0,
            cap,
        }
    }

    pub fn get(&mut self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }

    /// Inserts `v` weighing `size` bytes, dropping the least recently used
    /// values beyond the cap (a value larger than the cap is not kept).
    pub fn put(&mut self, k: K, v: V, size: usize) {
        if let Some((_, old)) = self.map.pop(&k) {
            self.bytes -= old;
        }
        if size > self.cap {
            return;
        }
        self.bytes += size;
        self.map.put(k, (v, size));
        while self.bytes > self.cap {
            match self.map.pop_lru() {
                Some((_, (_, s))) => self.bytes -= s,
                None => break,
            }
        }
    }

    /// Bytes held (as weighed).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod byte_lru_tests {
    use super::ByteLru;

    #[test]
    fn evicts_by_bytes_least_recently_used_first() {
        let mut c = ByteLru::new(100);
        c.put(1, "a", 40);
        c.put(2, "b", 40);
        assert!(c.get(&1).is_some());
        c.put(3, "c", 40);
        assert!(c.get(&2).is_none(), "the least recently used went");
        assert!(c.get(&1).is_some() && c.get(&3).is_some());
        assert_eq!(c.bytes(), 80);
        c.put(4, "huge", 101);
        assert!(c.get(&4).is_none(), "larger than the cap: not kept");
        c.put(1, "a2", 10);
        assert_eq!(c.get(&1), Some(&"a2"));
        assert_eq!(c.bytes(), 50);
    }
}

/// Threads for fan-outs that wait on a remote store rather than a core: 16,
/// the number of requests a remote store runs at once
/// (`resource`). With the default pool (one thread per core) a
/// 2-core machine would wait for 2 round trips at a time.
pub fn io_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(16)
            .thread_name(|i| format!("klosetfs-io-{i}"))
            .build()
            .expect("an I/O thread pool")
    })
}

/// Runs `f` on [`io_pool`] when `remote`, where waiting dominates; on the
/// caller's pool otherwise.
pub fn on_io_pool<T: Send>(remote: bool, f: impl FnOnce() -> T + Send) -> T {
    if remote {
        io_pool().install(f)
    } else {
        f()
    }
}
