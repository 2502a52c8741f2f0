//! Delivering a message by running a command: no shell, `{sidecar}` `{file}` `{status}`
//! `{inbox}` replaced in each argument in one pass (a value is never read as a template),
//! the same values in `BEORG_SIDECAR`, `BEORG_FILE`, `BEORG_STATUS`, `BEORG_INBOX` (and the
//! message's `webhook-id` in `BEORG_MESSAGE_ID`). The command's environment is built from an
//! allow-list ([`command_env`]): it never inherits the daemon's secrets. Exit 0 is
//! delivered; another exit, a failure to start, or a run past the timeout (the command's
//! whole process group is killed) is tried again. Its output is logged, cut.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::Tried;
use crate::store::journal::Delivery;

/// How much of the command's stdout and of its stderr is kept for the log.
const OUTPUT_KEPT: usize = 300;

/// After the command ended, how long its output may take to close (a child it left running
/// may hold it open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// One run of `argv` for delivery `d`, killed after `timeout`.
pub async fn run(argv: &[String], timeout: Duration, d: &Delivery) -> Tried {
    let values = placeholders(d);
    let args: Vec<String> = argv.iter().map(|a| replace_all(a, &values)).collect();
    let Some((program, rest)) = args.split_first() else {
        return Tried::Failed("exec is empty".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .env_clear()
        .envs(command_env(std::env::vars_os(), d, &values));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Tried::Failed(format!("cannot start {program}: {e}")),
    };
    let stdout = tokio::spawn(kept_output(child.stdout.take()));
    let stderr = tokio::spawn(kept_output(child.stderr.take()));
    let exit = tokio::time::timeout(timeout, child.wait()).await;
    if exit.is_err() {
        kill_group(&child);
        let _ = child.wait().await;
    }
    let output = collect(stdout, stderr).await;
    match exit {
        Ok(Ok(status)) if status.success() => Tried::Delivered(with_output("exit 0", &output)),
        Ok(Ok(status)) => Tried::Failed(with_output(
            &format!("{program} ended with {status}"),
            &output,
        )),
        Ok(Err(e)) => Tried::Failed(format!("cannot wait for {program}: {e}")),
        Err(_) => Tried::Failed(with_output(
            &format!(
                "{program} was killed after {}",
                humantime::format_duration(timeout)
            ),
            &output,
        )),
    }
}

/// The environment variable of each placeholder, in [`placeholders`] order.
const ENV_NAMES: [&str; 4] = ["BEORG_SIDECAR", "BEORG_FILE", "BEORG_STATUS", "BEORG_INBOX"];

fn placeholders(d: &Delivery) -> [(&'static str, String); 4] {
    [
        ("{sidecar}", d.sidecar.to_string_lossy().into_owned()),
        ("{file}", d.original.to_string_lossy().into_owned()),
        ("{status}", d.status.clone()),
        ("{inbox}", d.inbox.to_string_lossy().into_owned()),
    ]
}

/// `arg` with each placeholder replaced by its value, in one pass from left to right: a
/// value is copied as it is, never searched for placeholders itself (a file named
/// `a {file}.png` stays that name).
fn replace_all(arg: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match values
            .iter()
            .find(|(placeholder, _)| rest.starts_with(placeholder))
        {
            Some((placeholder, value)) => {
                out.push_str(value);
                rest = &rest[placeholder.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The variables a command inherits from the daemon, when they are set: where programs
/// are, the home and temp folders, the time zone and the locale (and every `LC_*`, see
/// [`INHERITED_PREFIX`]). Nothing else: the daemon's environment may hold the API token
/// (`BEORG_TOKEN`), the path to its credentials (`CREDENTIALS_DIRECTORY`), systemd's
/// sockets (`NOTIFY_SOCKET`, `WATCHDOG_*`) or a proxy with a password, and none of it is the
/// command's business. An allow-list, so a variable added to the daemon's environment later
/// is not handed on by default.
const INHERITED: [&str; 6] = ["PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE"];

/// Locale variables (`LC_ALL`, `LC_CTYPE`, ...) are inherited too.
const INHERITED_PREFIX: &str = "LC_";

/// `PATH` for a command when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The whole environment of a command for delivery `d`, from the daemon's environment
/// `daemon_env`: the [`INHERITED`] variables it has, `PATH` (default [`DEFAULT_PATH`]), and
/// the `BEORG_*` values of this delivery.
fn command_env(
    daemon_env: impl Iterator<Item = (OsString, OsString)>,
    d: &Delivery,
    values: &[(&'static str, String); 4],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = daemon_env
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(|name| INHERITED.contains(&name) || name.starts_with(INHERITED_PREFIX))
        })
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    for (name, (_, value)) in ENV_NAMES.iter().zip(values.iter()) {
        env.push((name.into(), value.into()));
    }
    env.push(("BEORG_MESSAGE_ID".into(), d.message_id.clone().into()));
    env
}

/// SIGKILL to the command's process group (it leads its own group): a script's children
/// go with it.
fn kill_group(child: &tokio::process::Child) {
    let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Reads a pipe to its end, keeping the first [`OUTPUT_KEPT`] bytes (the rest is drained, so
/// the command never blocks on a full pipe).
async fn kept_output(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = OUTPUT_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// Stdout and stderr as one short text (each cut to [`OUTPUT_KEPT`] bytes).
async fn collect(
    stdout: tokio::task::JoinHandle<Vec<u8>>,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
) -> String {
    let mut parts = Vec::new();
    for (name, handle) in [("stdout", stdout), ("stderr", stderr)] {
        let abort = handle.abort_handle();
        let bytes = match tokio::time::timeout(OUTPUT_GRACE, handle).await {
            Ok(Ok(bytes)) => bytes,
            _ => {
                abort.abort();
                Vec::new()
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if !text.is_empty() {
            parts.push(format!("{name}: {text}"));
        }
    }
    parts.join("; ")
}

fn with_output(what: &str, output: &str) -> String {
    if output.is_empty() {
        what.to_string()
    } else {
        format!("{what} ({output})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_anywhere_in_an_argument() {
        let values = [
            ("{sidecar}", "/d/a.jpg.json".to_string()),
            ("{status}", "done".to_string()),
        ];
        assert_eq!(
            replace_all("--in={sidecar}:{status}:{other}", &values),
            "--in=/d/a.jpg.json:done:{other}"
        );
    }

    #[test]
    fn a_value_holding_a_placeholder_is_not_expanded_again() {
        let values = [
            ("{sidecar}", "/d/sp ace {file}.png.json".to_string()),
            ("{file}", "/d/sp ace {file}.png".to_string()),
            ("{status}", "done".to_string()),
        ];
        assert_eq!(
            replace_all("{sidecar}|{file}|{{status}}|{", &values),
            "/d/sp ace {file}.png.json|/d/sp ace {file}.png|{done}|{"
        );
    }

    #[test]
    fn a_command_gets_only_the_allowed_variables_and_its_beorg_values() {
        let d = Delivery {
            id: 1,
            file_id: 1,
            kind: crate::store::journal::DeliveryKind::Exec,
            message_id: "msg_1".into(),
            inbox: "/in".into(),
            status: "done".into(),
            original: "/done/a.png".into(),
            sidecar: "/done/a.png.json".into(),
            body: "{}".into(),
            attempts: 0,
            next_at: std::time::SystemTime::now(),
        };
        let daemon = [
            ("BEORG_TOKEN", "tok"),
            ("CREDENTIALS_DIRECTORY", "/run/credentials/x"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("WATCHDOG_USEC", "1"),
            ("HOME", "/var/lib/b"),
            ("LC_ALL", "C.UTF-8"),
            ("TZ", "Europe/Moscow"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = command_env(daemon.into_iter(), &d, &placeholders(&d));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "HOME",
                "LC_ALL",
                "TZ",
                "PATH",
                "BEORG_SIDECAR",
                "BEORG_FILE",
                "BEORG_STATUS",
                "BEORG_INBOX",
                "BEORG_MESSAGE_ID"
            ]
        );
        assert_eq!(env[3].1, DEFAULT_PATH);
    }
}
