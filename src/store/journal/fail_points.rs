//! Fail points at each stored transition, for the crash tests (`tests/it/crash_points.rs`):
//! compiled in only with the `fail-points` cargo feature (on in `cargo test`, never in the
//! release build), armed from `FAILPOINTS` in the environment (`main` sets them up).
//!
//! Every transition is one history line appended inside the transaction that stores it
//! ([`super::history::append`] notes its name here). Two points per transition name:
//! `before:<name>` is evaluated by the connection's commit hook, when SQLite is about to
//! commit (a crash there loses the transaction), and `after:<name>` once the journal call
//! that committed it returns (the transaction is stored; nothing else has happened yet). The
//! action the tests use is `return`, which here kills the process with SIGKILL, as a crash
//! would: `FAILPOINTS="after:submitted=return" beorg-hotfolder run -c ...`.

#[cfg(feature = "fail-points")]
mod armed {
    use std::cell::RefCell;

    use rusqlite::Connection;

    thread_local! {
        /// Names appended in the transaction now open on this thread's connection.
        static PENDING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        /// Names of the transactions committed since the journal call began.
        static COMMITTED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// `transition` was appended in the transaction now open.
    pub fn note(transition: &str) {
        PENDING.with(|p| p.borrow_mut().push(transition.to_string()));
    }

    /// Evaluates `before:<name>` at each commit, and forgets the names of a rolled-back one.
    pub fn install(conn: &Connection) {
        conn.commit_hook(Some(|| {
            let names = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            for name in &names {
                crash_at(&format!("before:{name}"));
            }
            COMMITTED.with(|c| c.borrow_mut().extend(names));
            false
        }));
        conn.rollback_hook(Some(|| PENDING.with(|p| p.borrow_mut().clear())));
    }

    /// Evaluates `after:<name>` for each transition the journal call just committed.
    pub fn committed() {
        PENDING.with(|p| p.borrow_mut().clear());
        let names = COMMITTED.with(|c| std::mem::take(&mut *c.borrow_mut()));
        for name in &names {
            crash_at(&format!("after:{name}"));
        }
    }

    /// The point `name`, armed with `return`, kills this process at once (no unwinding, no
    /// destructor, no flush: what a power cut or the OOM killer does).
    fn crash_at(name: &str) {
        fail::eval(name, |_| {
            eprintln!("fail point {name}: killing the daemon");
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        });
    }
}

#[cfg(feature = "fail-points")]
pub(super) use armed::{committed, install, note};

#[cfg(not(feature = "fail-points"))]
mod disarmed {
    pub fn note(_transition: &str) {}
    pub fn install(_conn: &rusqlite::Connection) {}
    pub fn committed() {}
}

#[cfg(not(feature = "fail-points"))]
pub(super) use disarmed::{committed, install, note};

/// Arms the points named in `FAILPOINTS` for the life of the process (a no-op without the
/// `fail-points` feature). Call once, first thing in `main`.
pub fn setup_from_env() {
    #[cfg(feature = "fail-points")]
    std::mem::forget(fail::FailScenario::setup());
}
