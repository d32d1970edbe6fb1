//! Rate limits per client address, for `ui` and `serve`: wrong tokens are
//! always limited (a burst of 20, then one every 3 s: under 30,000 guesses
//! a day, against tokens of at least 16 characters), and with `--max-rate N` every request is (N a
//! second, a second's worth at once). A client over its limit gets `429`
//! with `Retry-After`; WebDAV clients such as rclone back off and retry.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use parking_lot::Mutex;

/// Addresses remembered before idle ones are forgotten.
const TRACKED: usize = 4096;

/// Token buckets, one per client address.
pub(crate) struct Limiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    pub(crate) fn new(per_sec: f64, burst: u32) -> Self {
        Self {
            per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may go on; `take` spends one of its tokens if so.
    fn admit(&self, ip: IpAddr, take: bool, now: Instant) -> bool {
        let mut all = self.buckets.lock();
        if all.len() >= TRACKED && !all.contains_key(&ip) {
            // Forget clients whose buckets have refilled (they lose nothing);
            // if a flood of addresses leaves none idle, start over.
            all.retain(|_, b| self.refilled(*b, now) < self.burst);
            if all.len() >= TRACKED {
                all.clear();
            }
        }
        let b = all.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = self.refilled(*b, now);
        b.at = now;
        if b.tokens < 1.0 {
            return false;
        }
        if take {
            b.tokens -= 1.0;
        }
        true
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let secs = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + secs * self.per_sec).min(self.burst)
    }

    /// Spends one of `ip`'s tokens; false when it has none left.
    pub(crate) fn take(&self, ip: IpAddr) -> bool {
        self.admit(ip, true, Instant::now())
    }

    /// Whether `ip` has a token left, without spending it.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.admit(ip, false, Instant::now())
    }

    /// Seconds until `ip`'s next token.
    pub(crate) fn retry_after(&self) -> u64 {
        (1.0 / self.per_sec).ceil().max(1.0) as u64
    }
}

/// The client's address, as the connection gave it (with or without TLS).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, super::tls::TlsListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, super::tls::TlsListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let l = Limiter::new(2.0, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.admit(a, true, t0));
        }
        assert!(!l.admit(a, true, t0));
        assert!(!l.admit(a, false, t0));
        // Another address has its own bucket.
        assert!(l.admit(b, true, t0));
        // Half a second later one token (2 a second) is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.admit(a, false, t1));
        assert!(l.admit(a, true, t1));
        assert!(!l.admit(a, true, t1));
        // Refilling stops at the burst.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.admit(a, true, t2));
        }
        assert!(!l.admit(a, true, t2));
        assert_eq!(l.retry_after(), 1);
    }

    #[test]
    fn many_addresses_stay_bounded() {
        let l = Limiter::new(1.0, 1);
        let t = Instant::now();
        for i in 0..3 * TRACKED as u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(l.admit(ip, true, t));
        }
        assert!(l.buckets.lock().len() <= TRACKED);
    }
}
