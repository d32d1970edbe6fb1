//! A remote store's opening, overlapped. Opening a store and loading what
//! nearly every command needs is a chain of dependent requests: config, key
//! listing, key file, index listing, index objects, snapshot listing,
//! snapshot objects. At 40 ms a round trip that is ~0.3 s of waiting before
//! the first tree. None of the names, and none of the bytes, depend on the
//! passphrase, so when a store is opened the disk cache ([`super::CacheStorage`])
//! starts the listings of keys, index and snapshot objects and the fetches of
//! the objects it lacks at once, on threads of its own, while the config is
//! read and the key derivation runs. The chain's later steps then take their
//! listing from here (once, while it is fresh and nothing of its kind was
//! written since) and wait for an object in flight instead of asking again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Kind, StorageResult};

/// A listing fetched ahead is handed out only this long after it arrived:
/// a command takes it within moments of opening the store; a server that
/// lists on its first request minutes later lists again.
const FRESH: Duration = Duration::from_secs(30);

/// Fetch threads per kind of object (the remote's connection limit bounds
/// them all together).
const FETCHERS: usize = 8;

/// A listing: object names and sizes.
pub type Listing = Vec<(String, u64)>;

/// What was fetched ahead for one kind of object.
#[derive(Default)]
struct KindState {
    /// `None` while the listing is on its way.
    listing: Option<(Instant, StorageResult<Listing>)>,
    listed: bool,
    /// The listing was handed out, or made stale by a write of this kind.
    spent: bool,
    /// Objects being fetched.
    fetching: HashSet<String>,
    /// Fetched objects the caller keeps in memory (not on disk), or errors.
    held: HashMap<String, StorageResult<Vec<u8>>>,
    /// Objects written or deleted meanwhile: what their fetch brings is dropped.
    dropped: HashSet<String>,
}

/// The look-ahead state of one storage: see the module documentation.
#[derive(Default)]
pub struct Ahead {
    kinds: Mutex<HashMap<Kind, KindState>>,
    changed: Condvar,
}

/// How the look-ahead of one kind fetches: `list` the objects, `wanted`
/// says which listed names to fetch, `fetch` gets one and answers what to
/// hold in memory for the caller (`None`: it is in the disk cache).
pub struct Fetcher {
    pub list: Box<dyn Fn() -> StorageResult<Listing> + Send + Sync>,
    pub wanted: Box<dyn Fn(&str) -> bool + Send + Sync>,
    #[allow(clippy::type_complexity)]
    pub fetch: Box<dyn Fn(&str) -> Option<StorageResult<Vec<u8>>> + Send + Sync>,
}

impl Ahead {
    /// Starts listing and fetching `kind` on threads of its own, unless a
    /// look-ahead of it is still unspent.
    pub fn start(self: &Arc<Self>, kind: Kind, f: Fetcher) {
        {
            let mut k = self.kinds.lock();
            if let Some(s) = k.get(&kind) {
                if !s.spent || !s.fetching.is_empty() {
                    return;
                }
            }
            k.insert(kind, KindState::default());
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("klosetfs-ahead".into())
            .spawn(move || me.run(kind, f));
        if spawned.is_err() {
            // No thread: the callers ask the remote themselves.
            self.kinds.lock().remove(&kind);
        }
    }

    fn run(&self, kind: Kind, f: Fetcher) {
        let listing = (f.list)();
        let names: Vec<String> = match &listing {
            Ok(l) => l
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| (f.wanted)(n))
                .collect(),
            Err(_) => Vec::new(),
        };
        {
            let mut k = self.kinds.lock();
            let s = k.entry(kind).or_default();
            s.listing = Some((Instant::now(), listing));
            s.listed = true;
            s.fetching = names.iter().cloned().collect();
        }
        self.changed.notify_all();
        let queue = Mutex::new(names);
        std::thread::scope(|sc| {
            for _ in 0..FETCHERS {
                sc.spawn(|| loop {
                    let Some(name) = queue.lock().pop() else {
                        return;
                    };
                    let held = (f.fetch)(&name);
                    {
                        let mut k = self.kinds.lock();
                        let s = k.entry(kind).or_default();
                        s.fetching.remove(&name);
                        if let Some(h) = held.filter(|_| !s.dropped.contains(&name)) {
                            s.held.insert(name, h);
                        }
                    }
                    self.changed.notify_all();
                });
            }
        });
    }

    /// The listing of `kind` fetched ahead, waiting for it if it is on its
    /// way; `None` if there is none to hand out (never started, already
    /// handed out, stale, or made stale by a write).
    pub fn take_listing(&self, kind: Kind) -> Option<StorageResult<Listing>> {
        let mut k = self.kinds.lock();
        loop {
            let s = k.get_mut(&kind)?;
            if s.spent {
                return None;
            }
            if s.listed {
                s.spent = true;
                let (at, l) = s.listing.take()?;
                return (at.elapsed() < FRESH).then_some(l);
            }
            self.changed.wait(&mut k);
        }
    }

    /// Waits while `name` of `kind` is being fetched ahead (or its listing
    /// is on its way); then hands over what the fetch held for the caller.
    pub fn wait_for(&self, kind: Kind, name: &str) -> Option<StorageResult<Vec<u8>>> {
        let mut k = self.kinds.lock();
        loop {
            let s = k.get_mut(&kind)?;
            if s.listed && !s.fetching.contains(name) {
                return s.held.remove(name);
            }
            self.changed.wait(&mut k);
        }
    }

    /// An object of `kind` was written or deleted: a listing not yet handed
    /// out no longer tells the truth, and a held copy of `name` is dropped.
    pub fn invalidate(&self, kind: Kind, name: &str) {
        if let Some(s) = self.kinds.lock().get_mut(&kind) {
            s.spent = true;
            s.held.remove(name);
            s.dropped.insert(name.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fetcher(calls: Arc<AtomicUsize>, gate: Arc<Mutex<()>>) -> Fetcher {
        let c2 = calls.clone();
        Fetcher {
            list: Box::new(move || {
                let _g = gate.lock();
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(vec![("a".into(), 1), ("b".into(), 1), ("skip".into(), 1)])
            }),
            wanted: Box::new(|n| n != "skip"),
            fetch: Box::new(move |n| {
                c2.fetch_add(1, Ordering::SeqCst);
                Some(Ok(n.as_bytes().to_vec()))
            }),
        }
    }

    #[test]
    fn hands_out_the_listing_once_and_the_fetched_objects() {
        let a = Arc::new(Ahead::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock();
        a.start(Kind::Key, fetcher(calls.clone(), gate.clone()));
        // The listing is on its way: takers wait for it, not past it.
        let a2 = a.clone();
        let taker = std::thread::spawn(move || a2.take_listing(Kind::Key));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!taker.is_finished());
        drop(held);
        let l = taker.join().unwrap().unwrap().unwrap();
        assert_eq!(l.len(), 3);
        assert!(a.take_listing(Kind::Key).is_none(), "handed out once");
        assert_eq!(a.wait_for(Kind::Key, "a").unwrap().unwrap(), b"a");
        assert_eq!(a.wait_for(Kind::Key, "b").unwrap().unwrap(), b"b");
        assert!(a.wait_for(Kind::Key, "skip").is_none(), "not fetched");
        assert!(a.wait_for(Kind::Key, "a").is_none(), "held once");
        assert!(
            a.wait_for(Kind::Index, "a").is_none(),
            "other kinds: nothing"
        );
        // One listing and two fetches: the look-ahead asked nothing twice.
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_write_makes_the_listing_stale() {
        let a = Arc::new(Ahead::default());
        let calls = Arc::new(AtomicUsize::new(0));
        a.start(Kind::Snapshot, fetcher(calls, Arc::default()));
        a.invalidate(Kind::Snapshot, "a");
        assert!(a.take_listing(Kind::Snapshot).is_none());
        assert!(
            a.wait_for(Kind::Snapshot, "a").is_none(),
            "its copy dropped"
        );
        assert_eq!(a.wait_for(Kind::Snapshot, "b").unwrap().unwrap(), b"b");
    }
}
