//! Logged-in reviewers and the login limit, in memory (a restart logs everyone out).
//!
//! A session is a random 128-bit id in a cookie, with its user, its CSRF token and when it
//! was last used; it expires after `session_timeout` idle. Each login makes a new id. The
//! limits, checked before any password is hashed: five failed logins for one name within a
//! minute shut that name out for a minute (429), and so do twenty from one address (a flood
//! of guesses at many names), and at most [`HASHING_AT_ONCE`] passwords are checked at once
//! (each costs 19 MiB and tens of milliseconds).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins for one name that close it ...
pub const MAX_FAILURES: usize = 5;
/// Failed logins from one address that close it.
pub const MAX_FAILURES_FROM_ADDRESS: usize = 20;
/// Password checks running at once.
pub const HASHING_AT_ONCE: usize = 2;
/// ... within this window, for this long.
pub const LOCKOUT: Duration = Duration::from_secs(60);

/// Hex of `bytes` random bytes from the operating system.
pub fn random_hex(bytes: usize) -> String {
    use password_hash::rand_core::{OsRng, RngCore};
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A logged-in reviewer.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    /// The token every form of this session carries (hidden field `csrf`).
    pub csrf: String,
    last_used: Instant,
}

/// Every live session, by id.
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    timeout: Duration,
}

impl Sessions {
    pub fn new(timeout: Duration) -> Sessions {
        Sessions {
            by_id: Mutex::default(),
            timeout,
        }
    }

    /// A new session for `user`: its id (for the cookie).
    pub fn open(&self, user: &str) -> String {
        let id = random_hex(16);
        let session = Session {
            user: user.to_string(),
            csrf: random_hex(32),
            last_used: Instant::now(),
        };
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let timeout = self.timeout;
        map.retain(|_, s| s.last_used.elapsed() < timeout);
        map.insert(id.clone(), session);
        id
    }

    /// The session `id` names, if it is live; using it keeps it alive.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get_mut(id)?;
        if session.last_used.elapsed() >= self.timeout {
            map.remove(id);
            return None;
        }
        session.last_used = Instant::now();
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Failed logins by name (or by address).
pub struct LoginLimit {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// How many failures within [`LOCKOUT`] shut a key out.
    max: usize,
}

impl LoginLimit {
    pub fn new(max: usize) -> LoginLimit {
        LoginLimit {
            failures: Mutex::default(),
            max,
        }
    }

    /// Whether `user` is shut out now: `max` failures within [`LOCKOUT`] of each other
    /// (older ones are dropped at each failure), the last less than [`LOCKOUT`] ago.
    pub fn shut_out(&self, user: &str) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(user).is_some_and(|times| {
            times.len() >= self.max && times.back().is_some_and(|last| last.elapsed() < LOCKOUT)
        })
    }

    pub fn failed(&self, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, times| times.back().is_some_and(|t| t.elapsed() < LOCKOUT));
        let times = map.entry(user.to_string()).or_default();
        while times.front().is_some_and(|t| t.elapsed() >= LOCKOUT) {
            times.pop_front();
        }
        times.push_back(Instant::now());
        while times.len() > self.max {
            times.pop_front();
        }
    }

    pub fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}
