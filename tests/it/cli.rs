//! The commands beside the daemon, on what the config model and intake say: `status` counts
//! as waiting exactly the files intake will take, and works without a token; `check` says
//! where the token comes from as the loader found it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use beorg_hotfolder::sidecar::Status;

use crate::helpers::*;

/// Issue 9: `status` counted every regular file in an inbox as waiting, also the ones its
/// `ignore` patterns exclude and hard-linked ones, which intake never takes. It now asks
/// intake's own rule: the count is what the daemon then takes, and the rest stays in place.
#[tokio::test]
async fn the_status_waiting_count_is_what_intake_takes() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "recursive = true\nignore = [\"*.bak\", \"drafts/*\"]".into();
    // A snapshot to read: one daemon run, stopped, with an empty inbox.
    let daemon = env.start();
    let status_file = env.state_dir.join("status.json");
    wait_until("first snapshot", || status_file.exists()).await;
    daemon.stop().await;

    // Written while no daemon runs: no need for atomic drops.
    let inbox = env.inboxes[0].path.clone();
    for dir in ["2026/12", "drafts"] {
        std::fs::create_dir_all(inbox.join(dir)).unwrap();
    }
    let put = |name: &str, seed| {
        let path = inbox.join(name);
        std::fs::write(&path, beorg_emulator::samples::page_png(seed, None)).unwrap();
        path
    };
    put("real.png", 801);
    put("2026/12/nested.png", 802);
    // Never taken: an `ignore` name pattern, an `ignore` path pattern, a hard-linked file,
    // a symlink, a built-in ignored name.
    put("copy.bak", 803);
    put("drafts/draft.png", 804);
    let linked = put("linked.png", 805);
    std::fs::hard_link(&linked, env.dir.path().join("outside.png")).unwrap();
    std::os::unix::fs::symlink(&linked, inbox.join("symlink.png")).unwrap();
    put("upload.part", 806);

    let s = env.status();
    assert_eq!(s["running"], false, "{s}");
    assert_eq!(
        s["inboxes"][0]["waiting"], 2,
        "real.png and nested.png: {s}"
    );

    // What the daemon then does: exactly those two, the rest left in place.
    let daemon = env.start();
    assert_eq!(env.sidecar(0, "real.png").await.status, Status::Done);
    assert_eq!(
        env.sidecar(0, "2026/12/nested.png").await.status,
        Status::Done
    );
    holds_for("nothing else taken", Duration::from_millis(600), || {
        env.submits().len() == 2
    })
    .await;
    daemon.stop().await;
    for left in [
        "copy.bak",
        "drafts/draft.png",
        "linked.png",
        "symlink.png",
        "upload.part",
    ] {
        assert!(inbox.join(left).symlink_metadata().is_ok(), "{left} taken");
    }
    assert_eq!(env.status()["inboxes"][0]["waiting"], 0);
}

/// `status` needs no token (it never calls the API): none in the config, none in the
/// environment, and it still reports.
#[tokio::test]
async fn status_works_with_no_token_anywhere() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let status_file = env.state_dir.join("status.json");
    wait_until("first snapshot", || status_file.exists()).await;
    daemon.stop().await;
    let config = env.dir.path().join("no-token.toml");
    let text = env
        .config_text()
        .replace(&format!("token = \"{TOKEN}\""), "");
    std::fs::write(&config, text).unwrap();
    let (code, out) = run_bin(&["status", "--json"], &config, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"inboxes\""), "{out}");
    // `run` refuses the same config, as before.
    let (code, out) = run_bin(&["run"], &config, &[]);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("api.token") && out.contains("no API token"),
        "{out}"
    );
}

/// `check` reports the token's source as the loader recorded it: the environment (a note),
/// the config file or the token file (a warning when every user can read it), or a systemd
/// credential (nothing to say).
#[tokio::test]
async fn check_names_where_the_token_comes_from() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let dir = env.dir.path();
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let with_token = env.config_text();
    let token_line = format!("token = \"{TOKEN}\"");
    let without = with_token.replace(&token_line, "");
    let with_file = with_token.replace(&token_line, "token_file = \"token.txt\"");
    let check = |config: &std::path::Path, envs: &[(&str, &str)]| {
        let (code, out) = run_bin(&["check"], config, envs);
        assert_eq!(code, Some(0), "{out}");
        out
    };
    let token_lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains(" api.token"))
            .map(String::from)
            .collect()
    };

    // Inline, in a config every user can read; then in one only the group can.
    let config = write("inline.toml", &with_token, 0o644);
    let out = check(&config, &[]);
    let lines = token_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("warning  api.token: "), "{out}");
    assert!(lines[0].contains(&config.display().to_string()), "{out}");
    assert!(lines[0].contains("every user"), "{out}");
    let config = write("inline.toml", &with_token, 0o640);
    assert!(token_lines(&check(&config, &[])).is_empty());

    // In token_file, named relative to the config's folder.
    let token_file = write("token.txt", TOKEN, 0o644);
    let config = write("file.toml", &with_file, 0o640);
    let out = check(&config, &[]);
    let lines = token_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("warning  api.token_file: "), "{out}");
    assert!(
        lines[0].contains(&token_file.display().to_string()),
        "{out}"
    );
    write("token.txt", TOKEN, 0o600);
    assert!(token_lines(&check(&config, &[])).is_empty());

    // From the environment: a note, even with a token in a world-readable config.
    let config = write("inline.toml", &with_token, 0o644);
    let out = check(&config, &[("BEORG_TOKEN", TOKEN)]);
    let lines = token_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with("note     api.token: taken from BEORG_TOKEN"),
        "{out}"
    );

    // From a systemd credential: accepted, nothing to report about it.
    let credentials = dir.join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("token"), TOKEN).unwrap();
    let config = write("none.toml", &without, 0o644);
    let credentials = credentials.display().to_string();
    let out = check(&config, &[("CREDENTIALS_DIRECTORY", &credentials)]);
    assert!(token_lines(&out).is_empty(), "{out}");
}
