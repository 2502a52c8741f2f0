//! The man pages and shell completions, generated from the sources they describe so they
//! cannot drift: `beorg-hotfolder(1)` and the completions from the clap definition of the
//! command line (the binary hands it in), `beorg-hotfolder.toml(5)` from
//! `config.example.toml`, which lists every key with its default and what it does.
//!
//! The binary's hidden `generate-docs DIR` command writes them; `.ci/deb-check` runs it
//! before `cargo deb`, which installs them (see `[package.metadata.deb]` in `Cargo.toml`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap_complete::Shell;

/// The config file this page is made from: every key, its default, what it does.
const CONFIG_EXAMPLE: &str = include_str!("../../config.example.toml");

/// The command's name (the binary, the man pages, the completions).
const NAME: &str = "beorg-hotfolder";

/// Writes `DIR/man/beorg-hotfolder.1`, `DIR/man/beorg-hotfolder.toml.5` and
/// `DIR/completions/{beorg-hotfolder.bash,_beorg-hotfolder,beorg-hotfolder.fish}`.
pub fn write_all(cli: clap::Command, dir: &Path) -> anyhow::Result<()> {
    let mut cli = without_hidden_commands(&cli).name(NAME).bin_name(NAME);
    cli.build();
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    write(&man.join(format!("{NAME}.1")), &command_page(&cli)?)?;
    write(&man.join(format!("{NAME}.toml.5")), &config_page())?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cli, NAME, &completions)
            .with_context(|| format!("cannot write the {shell} completion"))?;
    }
    Ok(())
}

/// `cli` without its hidden subcommands (`generate-docs` itself): the completions would offer
/// them otherwise. `cli` must not be built yet (no help and version arguments of its own).
fn without_hidden_commands(cli: &clap::Command) -> clap::Command {
    let mut visible = clap::Command::new(NAME)
        .propagate_version(true)
        .subcommand_required(cli.is_subcommand_required_set())
        .args(cli.get_arguments().cloned())
        .subcommands(cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = cli.get_about() {
        visible = visible.about(about.clone());
    }
    if let Some(about) = cli.get_long_about() {
        visible = visible.long_about(about.clone());
    }
    if cli.get_version().is_some() {
        visible = visible.version(env!("CARGO_PKG_VERSION"));
    }
    visible
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `beorg-hotfolder(1)`: clap_mangen's name, synopsis, description and global options, then
/// every (visible) subcommand with its usage, description and options, then what a sysadmin
/// looks for beside them.
fn command_page(cli: &clap::Command) -> anyhow::Result<String> {
    let man = clap_mangen::Man::new(cli.clone()).date(env!("CARGO_PKG_VERSION"));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut page = String::from_utf8(page)?;
    page.push_str(".SH COMMANDS\n");
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        page.push_str(&subcommand_section(sub));
    }
    page.push_str(COMMAND_PAGE_END);
    Ok(page)
}

/// One subcommand: `.SS` with its usage, its long description, its arguments.
fn subcommand_section(sub: &clap::Command) -> String {
    let mut sub = sub.clone();
    let usage = sub.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage:").trim();
    let mut out = format!(".SS \"{}\"\n", roff(usage));
    let about = sub.get_long_about().or(sub.get_about());
    if let Some(about) = about {
        let _ = writeln!(out, "{}", roff_paragraphs(&sentence(&about.to_string())));
    }
    for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
        // help and version are the same everywhere; global options are in OPTIONS above.
        if matches!(arg.get_id().as_str(), "help" | "version") || arg.is_global_set() {
            continue;
        }
        let _ = writeln!(out, ".TP\n{}", roff(&argument_label(arg)));
        let help = arg.get_long_help().or(arg.get_help());
        let mut text = help.map(|h| sentence(&h.to_string())).unwrap_or_default();
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if takes_value && !defaults.is_empty() && !arg.is_hide_default_value_set() {
            let _ = write!(text, " Default: {}.", defaults.join(", "));
        }
        let _ = writeln!(out, "{}", roff_paragraphs(&text));
    }
    out
}

/// clap's help texts end without a full stop; the page's sentences do not.
fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.ends_with(['.', ')', ':']) || text.is_empty() {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

/// `-c, --config <FILE>`, `--json`, `<QUERY>`.
fn argument_label(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    if arg.is_positional() {
        return value;
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    let names = names.join(", ");
    if takes_value {
        format!("{names} {value}")
    } else {
        names
    }
}

const COMMAND_PAGE_END: &str = r#".SH SIGNALS
.TP
SIGHUP
Read the config again (\fBsystemctl reload beorg\-hotfolder\fR). A good one takes over; a bad one is refused with an ERROR naming the key, and the running one stays.
.TP
SIGTERM, SIGINT
Stop taking files, let requests on the wire finish briefly, exit.
.SH FILES
.TP
/etc/beorg\-hotfolder/config.toml
The config file (0640 root:beorg\-hotfolder); see \fBbeorg\-hotfolder.toml\fR(5).
.TP
/etc/beorg\-hotfolder/token
The API token, one line, root only (0600); systemd hands it to the service as the credential \fItoken\fR.
.TP
/var/lib/beorg\-hotfolder/
The journal (\fIjournal.sqlite\fR) and \fIstatus.json\fR, read by \fBstatus\fR and \fBexplain\fR.
.TP
/lib/systemd/system/beorg\-hotfolder.service
The sandboxed unit (Type=notify, watchdog, LoadCredential=token).
.TP
/etc/logrotate.d/beorg\-hotfolder
Rotates the ledgers under /srv/scans/ledger/ (the daemon opens a ledger by name for each line, so no signal is needed).
.SH EXIT STATUS
0 on success; 1 when \fBcheck\fR finds a problem that would stop files, when \fBexplain\fR finds nothing, when \fBrequeue\fR refuses a path, or on an error.
.SH SEE ALSO
\fBbeorg\-hotfolder.toml\fR(5), \fBsystemctl\fR(1), \fBjournalctl\fR(1), /usr/share/doc/beorg\-hotfolder/README.md
"#;

/// `beorg-hotfolder.toml(5)`: one subsection per table of `config.example.toml`, one entry
/// per key (written or commented out) with the comment above it; the example's value is
/// the default unless the text says "Required" or "No default".
fn config_page() -> String {
    let mut page = format!(
        ".TH BEORG\\-HOTFOLDER.TOML 5 \"{}\" \"{NAME} {}\" \"File formats\"\n.SH NAME\nbeorg\\-hotfolder.toml \\- the configuration file of beorg\\-hotfolder(1)\n.SH SYNOPSIS\n/etc/beorg\\-hotfolder/config.toml\n.SH DESCRIPTION\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    );
    let mut comment: Vec<&str> = Vec::new();
    let mut table: Option<String> = None;
    let mut documented: Vec<(String, String)> = Vec::new();
    for line in CONFIG_EXAMPLE.lines() {
        if let Some(header) = table_header(line) {
            if table.as_deref() == Some("[[inbox]]") && header != "[[inbox]]" {
                page.push_str(&shared_inbox_keys(&documented));
            }
            let lead = paragraph(&comment);
            comment.clear();
            if table.as_deref() == Some(header) || documented.iter().any(|(t, _)| t == header) {
                // A second [[inbox]]: an example of keys already described.
                table = Some(header.to_string());
                continue;
            }
            if table.is_none() {
                let _ = writeln!(page, "{}\n.SH KEYS", roff_paragraphs(&lead));
            } else if !lead.is_empty() {
                // The comment above a table describes the table.
                let _ = write!(
                    page,
                    ".SS \"{}\"\n{}\n",
                    roff(header),
                    roff_paragraphs(&lead)
                );
                table = Some(header.to_string());
                continue;
            }
            let _ = writeln!(page, ".SS \"{}\"", roff(header));
            table = Some(header.to_string());
        } else if let (Some(t), Some((key, value))) = (&table, key_line(line)) {
            if documented.iter().any(|(dt, dk)| dt == t && dk == key) {
                comment.clear();
                continue;
            }
            documented.push((t.clone(), key.to_string()));
            let _ = write!(
                page,
                ".TP\n\\fB{}\\fR = {}\n{}\n",
                roff(key),
                roff(value),
                roff_paragraphs(&paragraph(&comment))
            );
            comment.clear();
        } else if let Some(text) = line.strip_prefix('#') {
            // A blank line ends nothing: a comment above a table may be separated from it.
            comment.push(text.strip_prefix(' ').unwrap_or(text));
        }
    }
    page.push_str(CONFIG_PAGE_END);
    page
}

/// The `[defaults]` keys, which each `[[inbox]]` may set for itself: one entry each under
/// `[[inbox]]`, pointing at the description above.
fn shared_inbox_keys(documented: &[(String, String)]) -> String {
    documented
        .iter()
        .filter(|(table, _)| table == "[defaults]")
        .map(|(_, key)| {
            let how = if key == "ignore" {
                "both lists apply"
            } else {
                "this inbox's own value wins"
            };
            format!(
                ".TP\n\\fB{}\\fR = ...\nAs in [defaults]; {how}.\n",
                roff(key)
            )
        })
        .collect()
}

/// `[api]`, `[[inbox]]`, and the commented-out example `# [[inbox.documents]]`.
fn table_header(line: &str) -> Option<&str> {
    let line = line.strip_prefix("# ").unwrap_or(line).trim();
    (line.starts_with('[') && line.ends_with(']')).then_some(line)
}

/// `key = value` or `# key = value` (exactly one space after `#`: prose indented further,
/// like an example in a list, is not a key).
fn key_line(line: &str) -> Option<(&str, &str)> {
    let line = line.strip_prefix("# ").unwrap_or(line);
    let (key, value) = line.split_once(" = ")?;
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_key.then_some((key, value))
}

fn paragraph(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

const CONFIG_PAGE_END: &str = r#".SH CHECKING
\fBbeorg\-hotfolder check \-\-config FILE\fR reports every problem of a config and its folders with the key and the fix (exit 0 only for a config \fBrun\fR accepts); an unknown key is refused with the nearest known one. A running daemon reads the file again on SIGHUP.
.SH SEE ALSO
\fBbeorg\-hotfolder\fR(1), /usr/share/doc/beorg\-hotfolder/README.md
"#;

/// Text for a roff line: backslashes and hyphens escaped, no line starting a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Several lines of text: each escaped, blank lines as paragraph breaks.
fn roff_paragraphs(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                ".PP".into()
            } else {
                roff(l)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_line_is_a_key_and_prose_is_not() {
        assert_eq!(key_line("settle = \"2s\""), Some(("settle", "\"2s\"")));
        assert_eq!(
            key_line("# key = \"PASSPORT1\""),
            Some(("key", "\"PASSPORT1\""))
        );
        assert_eq!(key_line("#   token_file = \"/x\" (one line)"), None);
        assert_eq!(key_line("# Any key of [[inbox]] = x"), None);
        assert_eq!(
            table_header("# [[inbox.documents]]"),
            Some("[[inbox.documents]]")
        );
    }

    #[test]
    fn roff_text_cannot_start_a_request() {
        assert_eq!(roff(".beorg-work"), "\\&.beorg\\-work");
        assert_eq!(roff("a\\b"), "a\\eb");
    }
}
