//! `beorg-hotfolder check` as a sysadmin runs it: the real binary, on configs written into
//! temp folders, and for `--online` the emulator on a loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;

use beorg_emulator::{Emulator, EmulatorConfig, Endpoint};

use crate::helpers::Tmpfs;

const TOKEN: &str = "tok-CHECK-77e1b0";
const MACHINE_UID: &str = "machine-check-1";

/// A temp folder with `in/`, `done/` and `failed/`, and a config pointing at them.
struct Layout {
    dir: tempfile::TempDir,
    base_url: String,
    token: String,
}

impl Layout {
    fn new() -> Layout {
        Self::new_in(&std::env::temp_dir())
    }

    fn new_in(parent: &Path) -> Layout {
        let dir = tempfile::tempdir_in(parent).unwrap();
        for sub in ["in", "done", "failed"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        Layout {
            dir,
            base_url: "http://127.0.0.1:9".into(),
            token: TOKEN.into(),
        }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn config_text(&self) -> String {
        format!(
            "[api]\nbase_url = \"{}\"\nproject_id = \"U_RATE_2\"\nmachine_uid = \"{MACHINE_UID}\"\ntoken = \"{}\"\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n\n[daemon]\nstate_dir = \"{}\"\n\n[defaults]\nsettle = \"2s\"\n\n[[inbox]]\npath = \"{}\"\ntype = \"PASSPORT\"\ndone = \"{}\"\nfailed = \"{}\"\n",
            self.base_url,
            self.token,
            self.path("state").display(),
            self.path("in").display(),
            self.path("done").display(),
            self.path("failed").display(),
        )
    }

    /// Writes `text` as the config (mode 0640, as installed) and returns its path.
    fn write(&self, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        path
    }

    fn write_good(&self) -> PathBuf {
        self.write(&self.config_text())
    }
}

/// The binary's exit code and its stdout and stderr together.
struct Outcome {
    code: i32,
    text: String,
}

impl Outcome {
    fn from(out: std::process::Output) -> Outcome {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Outcome {
            code: out.status.code().unwrap_or(-1),
            text,
        }
    }

    /// Asserts the exit code, showing the output when it differs.
    fn expect(self, code: i32) -> String {
        assert_eq!(self.code, code, "exit code; output:\n{}", self.text);
        self.text
    }
}

fn command(config: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"));
    cmd.arg("check")
        .arg("--config")
        .arg(config)
        .args(extra)
        .env_remove("BEORG_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "warn");
    cmd
}

fn check(config: &Path, extra: &[&str]) -> Outcome {
    Outcome::from(command(config, extra).output().unwrap())
}

/// For tests that run the emulator in this process: the binary runs without blocking it.
async fn check_async(config: &Path, extra: &[&str]) -> Outcome {
    let out = tokio::process::Command::from(command(config, extra))
        .output()
        .await
        .unwrap();
    Outcome::from(out)
}

/// The finding line for `subject`, which must exist.
fn line<'a>(text: &'a str, subject: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&format!("{subject}:")[..]))
        .unwrap_or_else(|| panic!("no line for {subject} in:\n{text}"))
}

fn probes_left(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        if entry.file_name().is_some_and(|n| {
            n.to_string_lossy()
                .starts_with(beorg_hotfolder::store::layout::CHECK_PROBE_PREFIX)
        }) {
            found.push(entry);
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn a_good_config_passes_and_leaves_no_probe_files() {
    let layout = Layout::new();
    let text = check(&layout.write_good(), &[]).expect(0);
    for subject in ["inbox[0].path", "inbox[0].done", "inbox[0].failed"] {
        assert!(line(&text, subject).starts_with("ok "), "{text}");
    }
    // The state folder does not exist yet: the daemon creates it.
    assert!(
        line(&text, "daemon.state_dir").contains("creates it"),
        "{text}"
    );
    assert!(text.lines().last().unwrap().starts_with("OK "), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(probes_left(layout.dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_syntax_error_shows_line_and_column() {
    let layout = Layout::new();
    let text = layout.config_text().replace("settle = \"2s\"", "settle = ");
    let out = check(&layout.write(&text), &[]).expect(1);
    assert!(out.contains("line 13, column 10"), "{out}");
    assert!(out.contains("`run` would refuse this config"), "{out}");
}

#[test]
fn a_misspelt_key_gets_the_nearest_known_key_suggested() {
    let layout = Layout::new();
    let text = layout.config_text().replace("settle = ", "setle = ");
    let out = check(&layout.write(&text), &[]).expect(1);
    assert!(out.contains("did you mean `settle`?"), "{out}");
}

#[test]
fn a_missing_token_is_named() {
    let layout = Layout::new();
    let text = layout
        .config_text()
        .replace(&format!("token = \"{TOKEN}\"\n"), "");
    let out = check(&layout.write(&text), &[]).expect(1);
    assert!(
        out.contains("api.token") && out.contains("no API token"),
        "{out}"
    );
    // The hint for a token that only the service gets, as a systemd credential.
    assert!(out.contains("LoadCredential=token:"), "{out}");
}

#[test]
fn nested_folders_are_refused() {
    let layout = Layout::new();
    let done = layout.path("done").display().to_string();
    let inside = layout.path("in").join("done").display().to_string();
    let text = layout.config_text().replace(&done, &inside);
    let out = check(&layout.write(&text), &[]).expect(1);
    assert!(
        out.contains("inbox[0].done") && out.contains("inside"),
        "{out}"
    );
}

#[test]
fn a_missing_done_folder_is_named_with_the_fix() {
    let layout = Layout::new();
    std::fs::remove_dir(layout.path("done")).unwrap();
    let out = check(&layout.write_good(), &[]).expect(1);
    let done = line(&out, "inbox[0].done");
    assert!(done.starts_with("error "), "{out}");
    assert!(done.contains("does not exist"), "{out}");
    let dir = layout.path("done").display().to_string();
    assert!(
        done.contains(&format!(
            "create it: mkdir -p {dir} && chown beorg-hotfolder {dir}"
        )),
        "{out}"
    );
    assert!(line(&out, "inbox[0].failed").starts_with("ok "), "{out}");
    assert!(out.lines().last().unwrap().starts_with("FAILED "), "{out}");
}

#[test]
fn an_inbox_that_is_a_file_is_an_error() {
    let layout = Layout::new();
    std::fs::remove_dir(layout.path("in")).unwrap();
    std::fs::write(layout.path("in"), b"not a folder").unwrap();
    let out = check(&layout.write_good(), &[]).expect(1);
    assert!(
        line(&out, "inbox[0].path").contains("is not a folder"),
        "{out}"
    );
}

#[test]
fn a_read_only_done_folder_is_an_error_even_for_root() {
    let layout = Layout::new();
    let Some(_mount) = Tmpfs::read_only(&layout.path("done")) else {
        return;
    };
    let out = check(&layout.write_good(), &[]).expect(1);
    let done = line(&out, "inbox[0].done");
    assert!(
        done.starts_with("error ") && done.contains("read-only filesystem"),
        "{out}"
    );
    assert!(line(&out, "inbox[0].failed").starts_with("ok "), "{out}");
}

#[test]
fn folders_the_units_sandbox_keeps_read_only_are_errors() {
    let layout = Layout::new();
    let config = layout.write_good();
    let unit = layout.path("strict.service");
    std::fs::write(
        &unit,
        "[Service]\nExecStart=/usr/bin/beorg-hotfolder run --config /etc/x.toml\nProtectSystem=strict\nReadWritePaths=/srv/scans\n",
    )
    .unwrap();
    let out = check(&config, &["--unit", unit.to_str().unwrap()]).expect(1);
    let done = line(&out, "inbox[0].done");
    assert!(
        done.contains("ProtectSystem=strict") && done.contains("ReadWritePaths="),
        "{out}"
    );
    // Listed in ReadWritePaths: fine.
    std::fs::write(
        &unit,
        format!(
            "[Service]\nProtectSystem=strict\nReadWritePaths={}\n",
            layout.dir.path().display()
        ),
    )
    .unwrap();
    check(&config, &["--unit", unit.to_str().unwrap()]).expect(0);
}

#[test]
fn the_shipped_unit_hides_tmp_from_the_service() {
    // The case needs folders under /tmp, wherever TMPDIR points.
    let layout = Layout::new_in(Path::new("/tmp"));
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/beorg-hotfolder.service"
    );
    let out = check(&layout.write_good(), &["--unit", unit]).expect(1);
    assert!(line(&out, "inbox[0].path").contains("PrivateTmp"), "{out}");
}

async fn emulator() -> Emulator {
    let config = EmulatorConfig {
        token: TOKEN.into(),
        machine_uid: MACHINE_UID.into(),
        time_scale: 0.01,
        ..EmulatorConfig::default()
    };
    crate::helpers::start_emulator(config).await
}

#[tokio::test]
async fn online_with_the_right_token_passes_and_creates_no_document() {
    let emulator = emulator().await;
    let mut layout = Layout::new();
    layout.base_url = emulator.base_url();
    let out = check_async(&layout.write_good(), &["--online"])
        .await
        .expect(0);
    let api = line(&out, "api");
    assert!(
        api.starts_with("ok ") && api.contains("accepts the token"),
        "{out}"
    );
    // The empty request with the credentials (400), then without them (401): the server
    // judges credentials first, so the 400 means they passed.
    let statuses: Vec<u16> = emulator.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 401]);
    assert_eq!(emulator.accepted_images(), 0);
    assert!(!out.contains(TOKEN), "{out}");
}

#[tokio::test]
async fn online_with_a_wrong_token_is_rejected_without_showing_it() {
    let emulator = emulator().await;
    let mut layout = Layout::new();
    layout.base_url = emulator.base_url();
    layout.token = "tok-WRONG-3c9d".into();
    let out = check_async(&layout.write_good(), &["--online"])
        .await
        .expect(1);
    let api = line(&out, "api");
    assert!(
        api.starts_with("error ") && api.contains("token or machine_uid rejected"),
        "{out}"
    );
    assert!(
        !out.contains("tok-WRONG-3c9d") && !out.contains(TOKEN),
        "{out}"
    );
}

/// Suspected in issue 8: `check --online` took a 400 to the empty request as "credentials
/// accepted", which holds only if the server checks credentials before the body. A server
/// that checks the body first (here: one that answers every submit 400) must not make a
/// wrong token look good.
#[tokio::test]
async fn suspected_check_online_does_not_take_a_400_for_accepted_credentials() {
    let emulator = emulator().await;
    emulator.fail_next(Endpoint::Submit, 400, 2);
    let mut layout = Layout::new();
    layout.base_url = emulator.base_url();
    layout.token = "tok-WRONG-77aa".into();
    let out = check_async(&layout.write_good(), &["--online"])
        .await
        .expect(0);
    let api = line(&out, "api");
    assert!(
        api.starts_with("warning ") && api.contains("cannot confirm"),
        "{out}"
    );
    assert!(!out.contains("accepts the token"), "{out}");
    assert!(!out.contains("tok-WRONG-77aa"), "{out}");
    assert_eq!(emulator.accepted_images(), 0);
}

#[tokio::test]
async fn online_with_no_money_is_a_warning() {
    let emulator = emulator().await;
    emulator.fail_next(Endpoint::Submit, 402, 1);
    let mut layout = Layout::new();
    layout.base_url = emulator.base_url();
    let out = check_async(&layout.write_good(), &["--online"])
        .await
        .expect(0);
    assert!(
        line(&out, "api").starts_with("warning ") && out.contains("no money"),
        "{out}"
    );
}

#[tokio::test]
async fn online_with_the_api_down_says_unreachable() {
    let emulator = emulator().await;
    let mut layout = Layout::new();
    layout.base_url = emulator.base_url();
    emulator.fail_next(Endpoint::Submit, 503, 1);
    let out = check_async(&layout.write_good(), &["--online"])
        .await
        .expect(1);
    assert!(line(&out, "api").contains("API unreachable"), "{out}");
    emulator.shutdown();
    let out = check_async(&layout.write_good(), &["--online"])
        .await
        .expect(1);
    assert!(line(&out, "api").contains("API unreachable"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
}
