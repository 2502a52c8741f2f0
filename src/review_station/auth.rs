//! Reviewers and their passwords: the users file holds `name:<argon2id PHC string>` per line
//! (blank lines and `#` comments allowed). It is read at each login, so `reviewer add` and
//! `reviewer remove` take effect without a restart. Hashing and checking are blocking and
//! cost tens of milliseconds and 19 MiB each: callers run them on a blocking thread, after
//! the login limit.

use std::path::Path;
use std::sync::LazyLock;

use argon2::Argon2;
use password_hash::rand_core::OsRng;
use password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password `reviewer add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Whether `user` may log in with `password`. An unknown name costs the same as a wrong
/// password (a check against a hash of nothing), so the answer's time does not tell names.
pub fn check_password(users_file: &Path, user: &str, password: &str) -> std::io::Result<bool> {
    let users = read_users(users_file)?;
    let stored = users
        .iter()
        .find(|(name, _)| name == user)
        .map(|(_, h)| h.as_str());
    let hash = stored.unwrap_or(&DECOY);
    let ok = PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    Ok(ok && stored.is_some())
}

/// A hash nobody's password matches, checked for unknown names.
static DECOY: LazyLock<String> =
    LazyLock::new(|| hash_password("no such reviewer").unwrap_or_default());

/// The PHC string of `password` (argon2id v19, the crate's defaults: 19 MiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// The users file's `(name, hash)` pairs.
pub fn read_users(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, hash)| (name.to_string(), hash.to_string()))
        .collect())
}

/// Why a reviewer's name cannot be used, if it cannot: 1 to 64 characters, letters, digits,
/// `.`, `_`, `-`, `@`.
pub fn name_problem(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.chars().count() > 64 || !name.chars().all(allowed) {
        return Some(format!(
            "\"{name}\" cannot be a reviewer's name: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ));
    }
    None
}

/// Writes `users` to `path` atomically (mode 0640: the daemon's group reads it).
pub fn write_users(path: &Path, users: &[(String, String)]) -> std::io::Result<()> {
    let mut text = String::from(
        "# beorg-hotfolder reviewers: name:<argon2id hash>; edit with `beorg-hotfolder reviewer add|remove`\n",
    );
    for (name, hash) in users {
        text.push_str(&format!("{name}:{hash}\n"));
    }
    crate::store::fsutil::replace_file_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_checks_against_its_hash_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("reviewers");
        let users = vec![("anna".to_string(), hash_password("correct horse").unwrap())];
        write_users(&file, &users).unwrap();
        assert!(users[0].1.starts_with("$argon2id$v=19$"));
        assert!(check_password(&file, "anna", "correct horse").unwrap());
        assert!(!check_password(&file, "anna", "wrong").unwrap());
        assert!(!check_password(&file, "boris", "correct horse").unwrap());
        assert!(!check_password(&file, "boris", "no such reviewer").unwrap());
        assert!(name_problem("anna.k@front-desk_2").is_none());
        assert!(name_problem("a:b").is_some() && name_problem("").is_some());
    }
}
