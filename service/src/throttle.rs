//! What keeps one client from costing the daemon without bound: a token
//! bucket per uid ([`Limiter`]), refusals and reads recorded one entry per
//! burst with counts ([`Bursts`]), and a bounded queue of hook events that
//! counts what it had to drop ([`HookQueue`]).

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Requests a uid may make: `burst` at once, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            burst: 20,
            per_second: 2.0,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per uid.
pub struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<u32, Bucket>>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit: RateLimit {
                burst: limit.burst.max(1),
                per_second: if limit.per_second > 0.0 {
                    limit.per_second
                } else {
                    f64::MIN_POSITIVE
                },
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `uid`'s bucket; Err: none left, and how long until
    /// there is one.
    pub fn take(&self, uid: u32, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = f64::from(self.limit.burst);
        let b = buckets.entry(uid).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.limit.per_second).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.limit.per_second;
            Err(Duration::from_secs_f64(wait.min(86_400.0)).max(Duration::from_millis(1)))
        }
    }

    /// Forgets buckets that are full again (so the map holds only the
    /// uids that were busy lately).
    pub fn prune(&self, now: Instant) {
        let burst = f64::from(self.limit.burst);
        let per_second = self.limit.per_second;
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
            });
    }
}

/// Refusals (and reads) of one uid close together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    pub started: Instant,
    pub last: Instant,
    /// Unix seconds of the first and the last.
    pub from: i64,
    pub to: i64,
    /// How many came after the first (which was recorded in full).
    pub count: u64,
    /// Of those, by what they were (`refused:not_in_access_list`,
    /// `rate_limited`, `read:queue`, …).
    pub by: BTreeMap<String, u64>,
}

/// Bursts by uid. The first event of a burst is recorded in full; the
/// others only counted, until the uid has been quiet for `quiet` or the
/// burst has lasted `longest`: then one entry says how many there were.
/// So a uid costs at most about two audit entries per `longest`, however
/// fast it sends.
pub struct Bursts {
    quiet: Duration,
    longest: Duration,
    open: Mutex<OpenBursts>,
}

/// Open bursts, and ended ones not yet collected.
type OpenBursts = (HashMap<u32, Burst>, Vec<(u32, Burst)>);

impl Bursts {
    pub fn new(quiet: Duration, longest: Duration) -> Bursts {
        Bursts {
            quiet,
            longest,
            open: Mutex::new((HashMap::new(), Vec::new())),
        }
    }

    /// Notes an event of `uid`. True: it is the first of a burst, to be
    /// recorded in full; false: it was counted.
    pub fn note(&self, uid: u32, what: &str, now: Instant, unix: i64) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (bursts, done) = &mut *open;
        if let Some(b) = bursts.get_mut(&uid) {
            if !self.is_over(b, now) {
                b.count += 1;
                b.last = now;
                b.to = unix;
                *b.by.entry(what.to_string()).or_default() += 1;
                return false;
            }
            if let Some(b) = bursts.remove(&uid) {
                if b.count > 0 {
                    done.push((uid, b));
                }
            }
        }
        bursts.insert(
            uid,
            Burst {
                started: now,
                last: now,
                from: unix,
                to: unix,
                count: 0,
                by: BTreeMap::new(),
            },
        );
        true
    }

    fn is_over(&self, b: &Burst, now: Instant) -> bool {
        now.saturating_duration_since(b.last) >= self.quiet
            || now.saturating_duration_since(b.started) >= self.longest
    }

    /// Removes the bursts that are over; returns those with events beyond
    /// the first, to record.
    pub fn ended(&self, now: Instant) -> Vec<(u32, Burst)> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (bursts, done) = &mut *open;
        let over: Vec<u32> = bursts
            .iter()
            .filter(|(_, b)| self.is_over(b, now))
            .map(|(uid, _)| *uid)
            .collect();
        for uid in over {
            if let Some(b) = bursts.remove(&uid) {
                if b.count > 0 {
                    done.push((uid, b));
                }
            }
        }
        let mut out = std::mem::take(done);
        out.sort_by_key(|(uid, b)| (*uid, b.started));
        out
    }
}

/// Hook events waiting for the hook thread: at most `capacity`. When it is
/// full, new events are dropped and counted; the next event taken carries
/// the count.
pub struct HookQueue {
    capacity: usize,
    inner: Mutex<(VecDeque<(String, Value)>, u64)>,
    ready: Condvar,
}

impl HookQueue {
    pub fn new(capacity: usize) -> HookQueue {
        HookQueue {
            capacity: capacity.max(1),
            inner: Mutex::new((VecDeque::new(), 0)),
            ready: Condvar::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues an event; false when the queue was full and it was dropped.
    pub fn push(&self, event: String, payload: Value) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0.len() >= self.capacity {
            inner.1 += 1;
            return false;
        }
        inner.0.push_back((event, payload));
        self.ready.notify_one();
        true
    }

    /// The next event and how many were dropped since the last one was
    /// taken; waits for one.
    pub fn pop(&self) -> (String, Value, u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((event, payload)) = inner.0.pop_front() {
                let dropped = std::mem::take(&mut inner.1);
                return (event, payload, dropped);
            }
            inner = self.ready.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next event, if one comes within `wait`.
    pub fn pop_timeout(&self, wait: Duration) -> Option<(String, Value, u64)> {
        let deadline = Instant::now() + wait;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((event, payload)) = inner.0.pop_front() {
                let dropped = std::mem::take(&mut inner.1);
                return Some((event, payload, dropped));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            inner = self
                .ready
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = Limiter::new(RateLimit {
            burst: 3,
            per_second: 2.0,
        });
        let t = Instant::now();
        for _ in 0..3 {
            l.take(7, t).unwrap();
        }
        let wait = l.take(7, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another uid has its own bucket.
        l.take(8, t).unwrap();
        // Half a second later, one more.
        l.take(7, t + Duration::from_millis(500)).unwrap();
        assert!(l.take(7, t + Duration::from_millis(500)).is_err());
        // Hundreds at once: only the burst gets through.
        let l = Limiter::new(RateLimit {
            burst: 20,
            per_second: 2.0,
        });
        let ok = (0..300).filter(|_| l.take(1, t).is_ok()).count();
        assert_eq!(ok, 20);
        l.prune(t);
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
        l.prune(t + Duration::from_secs(11));
        assert!(l.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn a_burst_is_one_full_record_and_one_count() {
        let b = Bursts::new(Duration::from_secs(5), Duration::from_secs(60));
        let t = Instant::now();
        assert!(b.note(1, "refused:not_in_access_list", t, 100));
        for i in 1..300 {
            let what = if i % 2 == 0 {
                "rate_limited"
            } else {
                "refused:not_in_access_list"
            };
            assert!(!b.note(1, what, t + Duration::from_millis(i), 100));
        }
        // Another uid's burst is its own.
        assert!(b.note(2, "read:queue", t, 100));
        assert!(b.ended(t + Duration::from_secs(1)).is_empty());
        let ended = b.ended(t + Duration::from_secs(6));
        assert_eq!(ended.len(), 1, "{ended:?}");
        let (uid, burst) = &ended[0];
        assert_eq!(*uid, 1);
        assert_eq!(burst.count, 299);
        assert_eq!(burst.by["rate_limited"], 149);
        assert_eq!(burst.by["refused:not_in_access_list"], 150);
        // Then the next one is the first of a new burst.
        assert!(b.note(1, "rate_limited", t + Duration::from_secs(7), 107));
        // A burst that never goes quiet still ends after `longest`.
        let mut now = t + Duration::from_secs(7);
        let mut full = 1;
        let mut reported = 0;
        for _ in 0..2400 {
            now += Duration::from_millis(100);
            if b.note(1, "rate_limited", now, 0) {
                full += 1;
            }
            reported += b.ended(now).len();
        }
        // 240 s of constant noise: about two entries a minute.
        assert!(full <= 5 && reported <= 5, "{full} {reported}");
        assert!(full >= 4 && reported >= 3, "{full} {reported}");
    }

    #[test]
    fn a_full_hook_queue_drops_and_says_how_many() {
        let q = HookQueue::new(3);
        for i in 0..10 {
            let kept = q.push("queued".into(), json!({ "n": i }));
            assert_eq!(kept, i < 3);
        }
        assert_eq!(q.pop(), ("queued".to_string(), json!({"n": 0}), 7));
        assert_eq!(q.pop().2, 0);
        assert!(q.push("started".into(), json!({})));
        assert_eq!(q.pop().2, 0);
        assert_eq!(q.pop().0, "started");
        assert!(q.pop_timeout(Duration::from_millis(10)).is_none());
    }
}
