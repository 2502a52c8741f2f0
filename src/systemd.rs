//! Telling systemd what the daemon is doing (`Type=notify`): ready, status line, watchdog
//! pings, stopping, reloading.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (a terminal, the tests, the demo),
//! never panics and never blocks: the datagram goes out on a non-blocking socket, so a stuck
//! service manager cannot stall the daemon's main loop. A failed send is logged once (the
//! service manager then restarts us on the watchdog or the start timeout, and the log says
//! why) and otherwise ignored.
//!
//! `sd-notify` formats the messages and reads the watchdog settings; the send is done here
//! because `sd_notify::notify` uses a blocking socket and does not reach abstract socket
//! names (`@...`), which some service managers and containers use.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// The variable systemd sets to the notification socket's path.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// `READY=1`: config read, inboxes attached, startup scan done. Send once.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// `STATUS=...`: one line shown by `systemctl status`. Newlines are replaced by spaces (a
/// newline would start a new, unintended, assignment).
pub fn status(line: &str) {
    let line = line.replace(['\n', '\r'], " ");
    send(&[NotifyState::Status(&line)]);
}

/// `STATUS=...` and `EXTEND_TIMEOUT_USEC=` (two minutes from now): a long step of the start
/// (the journal's upgrade) is under way, so systemd does not kill the start as hung.
pub fn building(line: &str) {
    let line = line.replace(['\n', '\r'], " ");
    send(&[
        NotifyState::Status(&line),
        NotifyState::ExtendTimeoutUsec(120_000_000),
    ]);
}

/// `STOPPING=1`: shutdown has begun (SIGTERM).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `WATCHDOG=1`: the main loop is alive. Send every [`watchdog_interval`].
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// `RELOADING=1`: a reload (SIGHUP) has begun; send [`ready`] again when it is done.
///
/// systemd 253+ also wants `MONOTONIC_USEC=` with it (for `Type=notify-reload`); systemd 252
/// (Debian 12) ignores the field, so it is sent when the clock can be read.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// How often to call [`watchdog`]: half of `WatchdogSec=` (systemd's own recommendation), or
/// None when no watchdog is set for this process (or there is no socket to ping).
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os(NOTIFY_SOCKET)?;
    // Checks WATCHDOG_PID against our pid, so a child that inherited the variables stays quiet.
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Whether a send failure was already logged (one line per process is enough).
static FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState]) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    if let Err(e) = send_to(&socket, message.as_bytes())
        && !FAILURE_LOGGED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "cannot notify systemd through {}: {e} (further failures are not logged)",
            socket.to_string_lossy()
        );
    }
}

/// One datagram to the socket named by `NOTIFY_SOCKET`: a path, or `@name` for an abstract
/// socket. Non-blocking: a full queue gives `WouldBlock` instead of a wait.
fn send_to(socket: &OsStr, message: &[u8]) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    match socket.as_bytes() {
        [b'@', name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.connect_addr(&addr)?;
        }
        [b'/', ..] => sock.connect(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor an abstract name",
            ));
        }
    }
    let sent = sock.send(message)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "incomplete datagram",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    /// Environment variables are process-wide and tests run on parallel threads: every test
    /// that sets or reads NOTIFY_SOCKET / WATCHDOG_* holds this lock.
    static ENV: Mutex<()> = Mutex::new(());

    fn env_lock() -> MutexGuard<'static, ()> {
        ENV.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets (or, with None, removes) an environment variable.
    fn set_env(key: &str, value: Option<&OsStr>) {
        // SAFETY: std's own environment functions take std's environment lock, and the tests
        // of this module serialise on `ENV`; nothing else in the crate's unit tests reads these
        // variables or calls libc's getenv for them.
        unsafe {
            match value {
                Some(v) => std::env::set_var(key, v),
                None => std::env::remove_var(key),
            }
        }
    }

    /// A bound notification socket in a temp dir; NOTIFY_SOCKET points at it until dropped.
    struct Listener {
        _dir: tempfile::TempDir,
        sock: UnixDatagram,
        _guard: MutexGuard<'static, ()>,
    }

    impl Listener {
        fn new() -> Listener {
            let guard = env_lock();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify.sock");
            let sock = UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            set_env(NOTIFY_SOCKET, Some(path.as_os_str()));
            Listener {
                _dir: dir,
                sock,
                _guard: guard,
            }
        }

        fn next(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.sock.recv(&mut buf).expect("a datagram within 5 s");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            set_env(NOTIFY_SOCKET, None);
            set_env("WATCHDOG_USEC", None);
            set_env("WATCHDOG_PID", None);
        }
    }

    #[test]
    fn each_call_sends_its_datagram() {
        let l = Listener::new();
        ready();
        assert_eq!(l.next(), "READY=1\n");
        status("waiting 3, polling 2\nsecond line");
        assert_eq!(l.next(), "STATUS=waiting 3, polling 2 second line\n");
        watchdog();
        assert_eq!(l.next(), "WATCHDOG=1\n");
        reloading();
        let reload = l.next();
        assert!(reload.starts_with("RELOADING=1\n"), "{reload:?}");
        assert!(
            reload.lines().all(|line| line == "RELOADING=1"
                || line
                    .strip_prefix("MONOTONIC_USEC=")
                    .is_some_and(|n| n.parse::<u64>().is_ok())),
            "{reload:?}"
        );
        stopping();
        assert_eq!(l.next(), "STOPPING=1\n");
    }

    #[test]
    fn abstract_socket_names_are_reached() {
        let guard = env_lock();
        let name = format!("beorg-hotfolder-test-{}", std::process::id());
        let addr = {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        set_env(NOTIFY_SOCKET, Some(OsStr::new(&format!("@{name}"))));
        ready();
        set_env(NOTIFY_SOCKET, None);
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        drop(guard);
    }

    #[test]
    fn without_a_socket_everything_is_a_quiet_no_op() {
        let _guard = env_lock();
        set_env(NOTIFY_SOCKET, None);
        set_env("WATCHDOG_USEC", Some(OsStr::new("60000000")));
        ready();
        status("x");
        watchdog();
        reloading();
        stopping();
        assert_eq!(watchdog_interval(), None);
        set_env("WATCHDOG_USEC", None);
    }

    #[test]
    fn a_missing_or_full_socket_neither_panics_nor_blocks() {
        let l = Listener::new();
        // Nobody reads: the queue fills up, and further sends fail at once.
        let started = std::time::Instant::now();
        for _ in 0..2000 {
            status("filling the queue");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(l);
        let _guard = env_lock();
        set_env(NOTIFY_SOCKET, Some(OsStr::new("/nonexistent/notify.sock")));
        ready();
        set_env(NOTIFY_SOCKET, Some(OsStr::new("relative-name")));
        ready();
        set_env(NOTIFY_SOCKET, None);
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_this_process() {
        let _l = Listener::new();
        assert_eq!(watchdog_interval(), None);
        set_env("WATCHDOG_USEC", Some(OsStr::new("60000000")));
        assert_eq!(watchdog_interval(), Some(Duration::from_secs(30)));
        let pid = std::process::id().to_string();
        set_env("WATCHDOG_PID", Some(OsStr::new(&pid)));
        assert_eq!(watchdog_interval(), Some(Duration::from_secs(30)));
        // Meant for another process (we inherited it): no watchdog for us.
        set_env("WATCHDOG_PID", Some(OsStr::new("1")));
        assert_eq!(watchdog_interval(), None);
        set_env("WATCHDOG_PID", None);
        set_env("WATCHDOG_USEC", Some(OsStr::new("0")));
        assert_eq!(watchdog_interval(), None);
    }
}
