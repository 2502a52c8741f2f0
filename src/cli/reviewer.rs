//! `beorg-hotfolder reviewer add NAME --users-file F` and `reviewer remove NAME --users-file
//! F`: the review station's users file. `add` asks for the password twice on a terminal
//! (without echo), or reads one line from stdin when it is not one, and writes its argon2id
//! hash (a name already there gets the new password); `remove` takes the name out. The file
//! is replaced atomically, mode 0640; the station reads it at each login.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::review_station::auth;

/// Adds `name` (or sets its new password) with a password read from the terminal or stdin.
pub fn add(users_file: &Path, name: &str) -> anyhow::Result<String> {
    if let Some(problem) = auth::name_problem(name) {
        anyhow::bail!(problem);
    }
    let mut users = existing(users_file)?;
    let password = read_password(name)?;
    if password.chars().count() < auth::MIN_PASSWORD_CHARS {
        anyhow::bail!(
            "the password is too short: use at least {} characters",
            auth::MIN_PASSWORD_CHARS
        );
    }
    let hash = auth::hash_password(&password).map_err(anyhow::Error::msg)?;
    let known = users.iter().any(|(n, _)| n == name);
    users.retain(|(n, _)| n != name);
    users.push((name.to_string(), hash));
    write(users_file, &users)?;
    Ok(if known {
        format!("{name}: new password set in {}", users_file.display())
    } else {
        format!("{name}: added to {}", users_file.display())
    })
}

/// Removes `name`; an error if it is not there.
pub fn remove(users_file: &Path, name: &str) -> anyhow::Result<String> {
    let mut users = existing(users_file)?;
    let before = users.len();
    users.retain(|(n, _)| n != name);
    if users.len() == before {
        anyhow::bail!("{name} is not a reviewer in {}", users_file.display());
    }
    write(users_file, &users)?;
    Ok(format!(
        "{name}: removed from {} (a session already open lasts until it is idle for session_timeout)",
        users_file.display()
    ))
}

fn existing(users_file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    match auth::read_users(users_file) {
        Ok(users) => Ok(users),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", users_file.display()),
    }
}

fn write(users_file: &Path, users: &[(String, String)]) -> anyhow::Result<()> {
    auth::write_users(users_file, users)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", users_file.display()))
}

/// Twice without echo on a terminal (they must match), else one line of stdin.
fn read_password(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = prompt(&format!("Password for {name}: "))?;
    let second = prompt("The same password again: ")?;
    if first != second {
        anyhow::bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

/// One line from the terminal with its echo off (restored after, even on error).
fn prompt(text: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    eprint!("{text}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
