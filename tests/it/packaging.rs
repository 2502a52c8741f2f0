//! What the .deb ships beside the program, checked against the program itself: the man
//! pages and completions (`generate-docs`) name every command `--help` lists and every
//! config key the config loader knows, and the logrotate file rotates a ledger the daemon
//! is appending to without losing or doubling a line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"));
    cmd.env_remove("BEORG_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

/// Runs `generate-docs` into a temp folder and returns it.
fn generated_docs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .arg("generate-docs")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate-docs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The subcommands `beorg-hotfolder --help` lists (clap's own help), `help` aside.
fn subcommands_in_help() -> Vec<String> {
    let out = binary().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .expect("--help lists Commands:")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    assert!(commands.len() >= 7, "too few commands in --help: {help}");
    commands
}

/// A minimal config with `line` added at the end of the table `table` ("" for the top).
fn config_with(table: &str, line: &str) -> String {
    let tables = [
        ("", ""),
        (
            "[api]",
            "project_id = \"P\"\nmachine_uid = \"m\"\ntoken = \"t\"\n",
        ),
        ("[daemon]", ""),
        ("[metrics]", ""),
        ("[budget]", ""),
        ("[defaults]", ""),
        (
            "[review_station]",
            "listen = \"127.0.0.1:8091\"\nusers_file = \"/etc/beorg-hotfolder/reviewers\"\naudit_log = \"/var/log/beorg-hotfolder/review-audit.jsonl\"\n",
        ),
        (
            "[[inbox]]",
            "path = \"/srv/in\"\ntype = \"PASSPORT\"\ndone = \"/srv/done\"\nfailed = \"/srv/failed\"\nsets = true\n",
        ),
        (
            "[[inbox.documents]]",
            "match = \"*\"\ntype = \"PASSPORT\"\n",
        ),
    ];
    let mut text = String::new();
    for (name, body) in tables {
        if !name.is_empty() {
            text.push_str(&format!("{name}\n"));
        }
        text.push_str(body);
        if name == table {
            text.push_str(&format!("{line}\n"));
        }
    }
    text
}

/// The keys the config loader knows in `table`, as it lists them when it refuses an unknown
/// one (`check`: "unknown field `zz_not_a_key`, expected one of `a`, `b`, ...").
fn keys_the_loader_knows(dir: &Path, table: &str) -> Vec<String> {
    let path = dir.join("config.toml");
    std::fs::write(&path, config_with(table, "zz_not_a_key = 1")).unwrap();
    let (_, out) = run_bin(&["check"], &path, &[]);
    // "expected one of `a`, `b`" or, for a table of one key, "expected `a`".
    let listed = out
        .split("unknown field `zz_not_a_key`, expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("check did not list the keys of {table:?}: {out}"));
    let keys: Vec<String> = listed
        .lines()
        .next()
        .unwrap()
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "no keys listed for {table:?}: {out}");
    keys
}

/// The part of a roff page from `.SS "<title>"` to the next `.SS` or `.SH`.
fn subsection<'a>(page: &'a str, title: &str) -> &'a str {
    let start = page
        .find(&format!(".SS \"{title}\""))
        .unwrap_or_else(|| panic!("no subsection {title} in the page"));
    let rest = &page[start + 4..];
    let end = [rest.find("\n.SS "), rest.find("\n.SH ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

fn roff_escaped(text: &str) -> String {
    text.replace('-', "\\-")
}

/// Issue 22: the man pages and the completions are generated from the clap definition and
/// the config's documented keys, so a command or key added later cannot be missing from
/// them: every command `--help` lists has its own subsection in beorg-hotfolder(1) and is in
/// each completion; every key the loader accepts, table by table, is described in
/// beorg-hotfolder.toml(5) under its table.
#[test]
fn the_man_pages_and_completions_name_every_command_and_every_config_key() {
    let docs = generated_docs();
    let read = |p: &str| std::fs::read_to_string(docs.path().join(p)).unwrap();
    let command_page = read("man/beorg-hotfolder.1");
    let config_page = read("man/beorg-hotfolder.toml.5");
    let completions = [
        read("completions/beorg-hotfolder.bash"),
        read("completions/_beorg-hotfolder"),
        read("completions/beorg-hotfolder.fish"),
    ];
    for command in subcommands_in_help() {
        let heading = format!(".SS \"beorg\\-hotfolder {}", roff_escaped(&command));
        assert!(
            command_page.contains(&heading),
            "beorg-hotfolder(1) has no section for `{command}`"
        );
        for completion in &completions {
            assert!(
                completion.contains(&command),
                "a completion lacks `{command}`"
            );
        }
    }
    for completion in &completions {
        assert!(
            !completion.contains("generate-docs"),
            "a completion offers the hidden generate-docs"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let tables = keys_the_loader_knows(dir.path(), "");
    let mut missing = BTreeSet::new();
    for table in &tables {
        let headers = [format!("[{table}]"), format!("[[{table}]]")];
        let header = headers
            .iter()
            .find(|h| config_page.contains(&format!(".SS \"{h}\"")))
            .unwrap_or_else(|| panic!("beorg-hotfolder.toml(5) has no subsection for {table}"));
        let mut with_documents = vec![header.clone()];
        if table == "inbox" {
            with_documents.push("[[inbox.documents]]".into());
        }
        for header in with_documents {
            let section = subsection(&config_page, &header);
            for key in keys_the_loader_knows(dir.path(), &header) {
                if header == "[[inbox]]" && key == "documents" {
                    continue; // the [[inbox.documents]] subsection
                }
                let entry = format!("\\fB{}\\fR = ", roff_escaped(&key));
                if !section.contains(&entry) {
                    missing.insert(format!("{header} {key}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "beorg-hotfolder.toml(5) does not describe {missing:?}"
    );
}

/// The shipped logrotate file with its paths pointed at `ledgers` (and run as root, which
/// owns the test's folders).
fn logrotate_config(ledgers: &Path) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/beorg-hotfolder.logrotate"),
    )
    .unwrap();
    assert!(shipped.contains("/srv/scans/ledger/*.jsonl {"), "{shipped}");
    shipped
        .replace(
            "/srv/scans/ledger/*.jsonl",
            &format!("{}/*.jsonl", ledgers.display()),
        )
        .replace(
            "/var/log/beorg-hotfolder/review-audit.jsonl",
            &format!("{}/review-audit.jsonl", ledgers.display()),
        )
        .replace("su beorg-hotfolder beorg-hotfolder", "su root root")
}

fn logrotate(config: &Path, state: &Path) {
    let out = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(state)
        .arg(config)
        .output()
        .expect("logrotate runs");
    assert!(
        out.status.success(),
        "logrotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines of a ledger file, plain or gzipped (by `zcat`, as a reader would).
fn ledger_lines(path: &Path) -> Vec<String> {
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("zcat").arg(path).output().unwrap();
        assert!(out.status.success(), "zcat {}", path.display());
        String::from_utf8(out.stdout).unwrap()
    } else {
        std::fs::read_to_string(path).unwrap_or_default()
    };
    text.lines().map(str::to_owned).collect()
}

fn ledger_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

const ROTATION_FILES: usize = 60;
const ROTATIONS: usize = 3;

/// Issue 22: logrotate, with the file the .deb ships, rotates a ledger while outcomes are
/// being appended to it: after each rotation the daemon's next line starts a new ledger
/// (the daemon opens it by name for each line; no signal), with `file_mode`, and across the
/// current file, the rotated one and the compressed ones every outcome is there exactly once.
#[tokio::test]
async fn logrotate_rotates_a_ledger_under_load_without_losing_or_doubling_a_line() {
    let have = Command::new("logrotate").arg("--version").output().is_ok();
    if !precondition(
        have,
        "logrotate is not installed",
        "install it (apt install logrotate; .ci/run does)",
    ) {
        return;
    }
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let ledgers = env.dir.path().join("ledger");
    std::fs::create_dir(&ledgers).unwrap();
    let ledger = ledgers.join("kyc.jsonl");
    env.inboxes[0].extra = format!("ledger = \"{}\"\n", ledger.display());
    let config = env.dir.path().join("logrotate.conf");
    std::fs::write(&config, logrotate_config(&ledgers)).unwrap();
    let state = env.dir.path().join("logrotate.state");
    let daemon = env.start();
    for n in 0..ROTATION_FILES {
        env.drop_scan(0, &format!("scan-{n:03}.jpg"), 7000 + n as u64, None);
    }
    let count = |path: &Path| ledger_lines(path).len();
    for rotation in 1..=ROTATIONS {
        // Rotate while outcomes are arriving: once the current ledger has a few lines.
        wait_until(
            &format!(
                "3 lines in a new {} before rotation {rotation}",
                ledger.display()
            ),
            || count(&ledger) >= 3,
        )
        .await;
        logrotate(&config, &state);
        assert!(
            !ledger.exists() || count(&ledger) < 3,
            "rotation {rotation} renamed nothing"
        );
    }
    let all_lines = || {
        ledger_files(&ledgers)
            .iter()
            .flat_map(|f| ledger_lines(f))
            .collect::<Vec<_>>()
    };
    wait_until(
        &format!("{ROTATION_FILES} ledger lines across the rotated files"),
        || all_lines().len() >= ROTATION_FILES,
    )
    .await;
    daemon.stop().await;

    let files = ledger_files(&ledgers);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "kyc.jsonl",
            "kyc.jsonl.1",
            "kyc.jsonl.2.gz",
            "kyc.jsonl.3.gz"
        ],
        "delaycompress: the last rotated file stays plain, older ones are compressed"
    );
    for file in &files {
        assert!(
            !ledger_lines(file).is_empty(),
            "{} is empty",
            file.display()
        );
    }
    let mut ids = BTreeSet::new();
    let mut originals = BTreeSet::new();
    for line in all_lines() {
        let message: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(ids.insert(message["id"].to_string()), "doubled: {line}");
        originals.insert(message["data"]["original_path"].to_string());
    }
    assert_eq!(ids.len(), ROTATION_FILES, "one line per outcome");
    assert_eq!(originals.len(), ROTATION_FILES, "one line per file");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ledger).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o640,
        "the new ledger has file_mode: {mode:o}"
    );
}
