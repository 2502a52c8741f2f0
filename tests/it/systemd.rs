//! The systemd unit and the .deb metadata: the unit passes `systemd-analyze verify`, keeps its
//! hardening (so a later edit cannot drop a directive unnoticed), and the package ships it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::precondition;

const UNIT: &str = include_str!("../../systemd/beorg-hotfolder.service");
const UNIT_NAME: &str = "beorg-hotfolder.service";

/// Every `Key=Value` of the unit's `[Service]` section, in order.
fn service_settings() -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') && !line.is_empty() {
            let (k, v) = line.split_once('=').expect("Key=Value");
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

fn values(key: &str) -> Vec<String> {
    service_settings()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// `systemd-analyze`; where it is not installed the test fails saying how to get it (None
/// only with `BEORG_TEST_SKIP_MISSING=1`).
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("systemd-analyze"))
        .find(|p| p.is_file());
    precondition(
        found.is_some(),
        "this test runs systemd-analyze, which is not installed",
        "apt-get install systemd (.ci/run does)",
    )
    .then_some(found)
    .flatten()
}

/// A copy of the unit whose ExecStart runs the binary under test: `verify` insists that
/// the executable exists, and /usr/bin/beorg-hotfolder only does once the .deb is installed.
fn unit_for_the_test_binary(dir: &Path) -> PathBuf {
    let binary = env!("CARGO_BIN_EXE_beorg-hotfolder");
    let text = UNIT.replace(
        "ExecStart=/usr/bin/beorg-hotfolder ",
        &format!("ExecStart={binary} "),
    );
    assert_ne!(
        text, UNIT,
        "the unit's ExecStart names /usr/bin/beorg-hotfolder"
    );
    let path = dir.join(UNIT_NAME);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_the_test_binary(dir.path());
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Warnings (unknown keys, bad values) go to stderr with exit 0; the unit must have none.
    assert!(
        !stderr.contains(UNIT_NAME),
        "systemd-analyze verify warns about the unit:\n{stderr}"
    );
}

#[test]
fn unit_exposure_stays_low() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/beorg-hotfolder.service"
    );
    let out = Command::new(analyze)
        .args(["security", "--offline=true", unit])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let overall = stdout
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for beorg-hotfolder.service: ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("no overall rating in:\n{stdout}"));
    let score: f64 = overall.split_whitespace().next().unwrap().parse().unwrap();
    // 1.2 with systemd 252 (what is left: network access, no IPAddressDeny=, UMask 0027,
    // PrivateUsers= off, the host's root, char-rtc:r from ProtectClock=).
    assert!(score <= 1.5, "exposure rose to {overall}:\n{stdout}");
}

#[test]
fn unit_keeps_its_notify_setup_and_hardening() {
    let settings = service_settings();
    let has = |key: &str, value: &str| settings.iter().any(|(k, v)| k == key && v == value);
    let required = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "60"),
        ("Restart", "on-failure"),
        (
            "ExecStart",
            "/usr/bin/beorg-hotfolder run --config /etc/beorg-hotfolder/config.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("User", "beorg-hotfolder"),
        ("StateDirectory", "beorg-hotfolder"),
        ("StateDirectoryMode", "0700"),
        ("LoadCredential", "token:/etc/beorg-hotfolder/token"),
        ("UMask", "0027"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RemoveIPC", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "~@privileged @resources"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ];
    let missing: Vec<String> = required
        .iter()
        .filter(|(k, v)| !has(k, v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert!(missing.is_empty(), "the unit lost: {missing:?}");
    // The scan folders are writable: ReadWritePaths= names /srv/scans (a missing one is
    // ignored, "-"), and the comment tells where to list others.
    assert!(
        values("ReadWritePaths")
            .iter()
            .any(|v| v.trim_start_matches('-') == "/srv/scans"),
        "ReadWritePaths=/srv/scans is gone"
    );
    assert!(UNIT.contains("List the scan folders here"));
    // Debian 12 has systemd 252: no Type=notify-reload. The API host is remote: no
    // IPAddressDeny=. Capabilities stay empty: no later line may add some back.
    assert_eq!(values("Type"), vec!["notify".to_string()]);
    assert!(values("IPAddressDeny").is_empty());
    assert_eq!(values("CapabilityBoundingSet"), vec![String::new()]);
    assert_eq!(values("AmbientCapabilities"), vec![String::new()]);
}

#[test]
fn deb_metadata_ships_the_unit_and_the_conffile() {
    let manifest: toml::Table =
        toml::from_str(include_str!("../../Cargo.toml")).expect("Cargo.toml parses");
    let deb = manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]");
    let assets: Vec<Vec<&str>> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect()
        })
        .collect();
    for expected in [
        ["target/release/beorg-hotfolder", "usr/bin/", "755"],
        [
            "systemd/beorg-hotfolder.service",
            "lib/systemd/system/",
            "644",
        ],
        [
            "config.example.toml",
            "etc/beorg-hotfolder/config.toml",
            "640",
        ],
        ["README.md", "usr/share/doc/beorg-hotfolder/", "644"],
    ] {
        assert!(
            assets.iter().any(|a| a == &expected),
            "asset {expected:?} missing from {assets:?}"
        );
    }
    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(conf_files.contains(&"/etc/beorg-hotfolder/config.toml"));
    assert_eq!(deb["maintainer-scripts"].as_str(), Some("debian/"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let postinst = std::fs::read_to_string(root.join("debian/postinst")).unwrap();
    assert!(postinst.contains(
        "adduser --system --group --home /var/lib/$USER --no-create-home --quiet \"$USER\""
    ));
    assert!(postinst.contains("USER=beorg-hotfolder"));
    assert!(postinst.contains("chmod 0750") && postinst.contains("chmod 0640"));
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "the service must not start before it is configured"
    );
    for script in ["postinst", "prerm", "postrm"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("debian").join(script))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "debian/{script} is not executable");
    }
}
