//! A TOML file that does not parse, in words: line, column, the key, toml's reason, the
//! nearest known key for a misspelt one, and never the value of a secret key.

/// Keys whose values are secrets: no message ever quotes their value.
const SECRET_KEYS: [&str; 1] = ["token"];

/// toml's error text quotes the offending line of the file (and serde's part may quote the
/// value, e.g. "invalid type: integer `123`"): on a `token` line that is the token. The
/// message here gives the line and column and toml's reason, never the file's text, and on a
/// line that sets a secret key it does not give toml's reason either.
pub(super) fn parse_error_message(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else {
        return with_suggestion(e.message());
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or_default();
    // The key set on that line, if it is a `key = value` line.
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .and_then(|k| k.rsplit('.').next())
        .map(|k| k.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    match key {
        Some(key) if SECRET_KEYS.contains(&key) => format!(
            "line {line}, column {column}: the value of `{key}` is refused (not shown: it is a secret); it must be a string in double quotes, e.g. {key} = \"...\""
        ),
        Some(key) => with_suggestion(&format!(
            "line {line}, column {column}, key `{key}`: {}",
            e.message()
        )),
        None => with_suggestion(&format!("line {line}, column {column}: {}", e.message())),
    }
}

/// toml reports an unknown key as "unknown field `setle`, expected one of `settle`, ...":
/// add the nearest known key.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let unknown = rest.split('`').next().unwrap_or_default();
    let known: Vec<&str> = rest
        .split("expected one of ")
        .nth(1)
        .or_else(|| rest.split("expected ").nth(1))
        .unwrap_or_default()
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    let nearest = known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min();
    match nearest {
        Some((_, k)) => format!("{}\ndid you mean `{k}`?", message.trim_end()),
        None => message.to_string(),
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text};

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("settle = \"500ms\"", "setle = \"500ms\"");
        let e = err_text(&text);
        assert!(e.contains("setle"), "{e}");
    }

    #[test]
    fn unknown_key_gets_the_nearest_known_key_suggested() {
        let text = GOOD.replace("settle = \"500ms\"", "setle = \"500ms\"");
        let e = err_text(&text);
        assert!(e.contains("did you mean `settle`?"), "{e}");
        let text = GOOD.replace("first_poll = \"1s\"", "zzz = 1");
        assert!(!err_text(&text).contains("did you mean"));
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let text = GOOD.replace("settle = \"500ms\"", "settle = ");
        let e = err_text(&text);
        assert!(e.contains("line") && e.contains("column"), "{e}");
    }

    #[test]
    fn unknown_key_in_inbox_is_named() {
        let text = GOOD.replace("first_poll = \"1s\"", "frist_poll = \"1s\"");
        let e = err_text(&text);
        assert!(e.contains("frist_poll"), "{e}");
    }

    #[test]
    fn bad_duration_is_refused_with_its_key() {
        let text = GOOD.replace("settle = \"500ms\"", "settle = \"soon\"");
        let e = err_text(&text);
        assert!(e.contains("settle"), "{e}");
    }

    /// Finding 5 (issue 8): toml's error quoted the line (and serde the value) of a bad
    /// `token`: unquoted, a number, an unterminated string.
    #[test]
    fn config_errors_never_show_the_token() {
        for (line, secret) in [
            ("token = SECRET-abc", "SECRET-abc"),
            ("token = 987654321987", "987654321987"),
            ("token = \"SECRET-abc", "SECRET-abc"),
            ("token = 'SECRET-abc", "SECRET-abc"),
            ("token = [\"SECRET-abc\"]", "SECRET-abc"),
            ("\"token\" = SECRET-abc", "SECRET-abc"),
        ] {
            let text = GOOD.replace("token = \"t0k3n\"", line);
            let e = err_text(&text);
            assert!(!e.contains(secret), "{line}: {e}");
            assert!(e.contains("token") && e.contains("line 6"), "{line}: {e}");
        }
        // Other keys keep toml's reason, still with line and column.
        let e = err_text(&GOOD.replace("machine_uid = \"m\"", "machine_uid = m"));
        assert!(e.contains("line 5, column"), "{e}");
    }
}
