//! The product's module graph has no cycle, at any level. Every `crate::` and `super::` path in
//! `src/` (outside `#[cfg(test)]` items and comments) is a use of the module it names. At
//! every level of the tree, each child module is taken together with all its descendants:
//! child `a` depends on its sibling `b` when any module under `a` names any module under `b`.
//! The graph of siblings must be acyclic under every parent (the crate included), so
//! `config → store::layout` with `store::retention → config` is a cycle between `config` and
//! `store`, even though no single file names the other's file back. A failure names the cycle
//! and the lines (file:line) that make each of its edges.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// A line of the product's code that names another module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    /// The file, relative to the folder above `src/` (`src/config.rs`).
    file: String,
    /// 1-based.
    line: usize,
    /// The line as written, trimmed.
    text: String,
}

impl std::fmt::Display for Use {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.text)
    }
}

/// From one module to the modules it names, each with the lines that name it.
type Edges = BTreeMap<String, BTreeMap<String, Vec<Use>>>;

/// `src/pipeline/claim.rs` → `pipeline::claim`; `src/pipeline/mod.rs` → `pipeline`;
/// `src/lib.rs` → `` (the crate).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its `#[cfg(test)]` items (unit tests may use anything) and
/// without comments, line by line: (1-based line number, code).
fn product_code(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_cfg_test = false;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if pending_cfg_test && !trimmed.is_empty() {
            pending_cfg_test = false;
            if skip_depth.is_none() {
                skip_depth = Some(depth);
            }
        }
        depth += opens - closes;
        if let Some(start) = skip_depth {
            if depth <= start && (opens > 0 || closes > 0 || trimmed.ends_with(';')) {
                skip_depth = None;
            }
            continue;
        }
        out.push((index + 1, code.to_string()));
    }
    out
}

/// The code's words joined by single spaces (so a `use` group spread over lines reads as
/// one), with the line each word came from.
struct Flat {
    text: String,
    /// (offset in `text` where a word starts, its line), in order.
    words: Vec<(usize, usize)>,
}

impl Flat {
    fn new(lines: &[(usize, String)]) -> Flat {
        let mut flat = Flat {
            text: String::new(),
            words: Vec::new(),
        };
        for (line, code) in lines {
            for word in code.split_whitespace() {
                flat.words.push((flat.text.len(), *line));
                flat.text.push_str(word);
                flat.text.push(' ');
            }
        }
        flat
    }

    /// The line of the part of `text` that `piece` (a slice of it) starts at.
    fn line_of(&self, piece: &str) -> usize {
        let at = piece.as_ptr() as usize - self.text.as_ptr() as usize;
        let index = self.words.partition_point(|(start, _)| *start <= at);
        self.words[index.saturating_sub(1)].1
    }
}

/// Paths named in `code` as written (`crate::a::b`, `super::c`, `super::super::d` and
/// `use crate::{a, b::c}` groups), resolved to full paths from the crate, each with the line
/// where the name (for a group: the group's member) is written.
fn named_paths(module: &str, code: &[(usize, String)]) -> Vec<(String, usize)> {
    let flat = Flat::new(code);
    let mut found = Vec::new();
    for prefix in ["crate::", "super::"] {
        for (at, _) in flat.text.match_indices(prefix) {
            let before = flat.text[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &flat.text[at + prefix.len()..];
            let mut base = if prefix == "super::" {
                parent(module)
            } else {
                String::new()
            };
            let mut path_text = rest;
            if prefix == "super::" {
                while let Some(up) = path_text.strip_prefix("super::") {
                    base = parent(&base);
                    path_text = up;
                }
            }
            for (path, piece) in expand(path_text) {
                let full = if base.is_empty() {
                    path
                } else {
                    format!("{base}::{path}")
                };
                found.push((full, flat.line_of(piece)));
            }
        }
    }
    found
}

/// `a::b::{c, d::e}` → [`a::b::c`, `a::b::d::e`, `a::b`]; `a::b::C;` → [`a::b::C`]; each
/// with the slice of `text` where it is written.
fn expand(text: &str) -> Vec<(String, &str)> {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let head = head.trim_end_matches(':').to_string();
    let after = text[head.len()..].trim_start_matches(':');
    if !after.starts_with('{') {
        return vec![(head, text)];
    }
    let mut depth = 0;
    let mut end = after.len();
    for (i, c) in after.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let inner = &after[1..end];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "self")
        .flat_map(expand)
        .map(|(p, piece)| {
            if head.is_empty() {
                (p, piece)
            } else {
                (format!("{head}::{p}"), piece)
            }
        })
        .chain(std::iter::once((head.clone(), text)).filter(|(h, _)| !h.is_empty()))
        .collect()
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// The longest known module that `path` starts with (the crate, ``, if none).
fn owner(path: &str, modules: &BTreeSet<String>) -> String {
    let mut candidate = path.to_string();
    loop {
        if modules.contains(&candidate) {
            return candidate;
        }
        match candidate.rsplit_once("::") {
            Some((up, _)) => candidate = up.to_string(),
            None => return String::new(),
        }
    }
}

/// Which module names which, file by file, with the lines that do it.
fn module_uses(src: &Path) -> Edges {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    let mut modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    // A folder of modules without a file of its own is still a module.
    for module in modules.clone() {
        let mut up = module;
        while !up.is_empty() {
            up = parent(&up);
            modules.insert(up.clone());
        }
    }
    let shown_root = src.parent().unwrap_or(src);
    let mut uses = Edges::new();
    for file in &files {
        let module = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let shown = file.strip_prefix(shown_root).unwrap_or(file);
        let named = uses.entry(module.clone()).or_default();
        for (path, line) in named_paths(&module, &product_code(&text)) {
            let target = owner(&path, &modules);
            if target == module {
                continue;
            }
            let places = named.entry(target).or_default();
            let place = Use {
                file: shown.display().to_string(),
                line,
                text: lines[line - 1].trim().to_string(),
            };
            if !places.contains(&place) {
                places.push(place);
            }
        }
    }
    uses
}

/// Where a use from `from` to `to` counts: under their nearest common ancestor, as an edge
/// from the child of it that holds `from` to the child that holds `to`. `None` when one is
/// an ancestor of the other (a module and its own descendants are one node at every level
/// above it, and a parent is not one of its children's siblings).
fn sibling_edge(from: &str, to: &str) -> Option<(String, String, String)> {
    let from_parts: Vec<&str> = from.split("::").filter(|p| !p.is_empty()).collect();
    let to_parts: Vec<&str> = to.split("::").filter(|p| !p.is_empty()).collect();
    let common = from_parts
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == from_parts.len() || common == to_parts.len() {
        return None;
    }
    let level = from_parts[..common].join("::");
    Some((
        level,
        from_parts[common].to_string(),
        to_parts[common].to_string(),
    ))
}

/// For every parent module (the crate is ``): the graph of its children, each taken with
/// its descendants, with the lines that make each edge.
fn sibling_graphs(uses: &Edges) -> BTreeMap<String, Edges> {
    let mut levels: BTreeMap<String, Edges> = BTreeMap::new();
    for (from, named) in uses {
        for (to, places) in named {
            if let Some((level, a, b)) = sibling_edge(from, to) {
                levels
                    .entry(level)
                    .or_default()
                    .entry(a)
                    .or_default()
                    .entry(b)
                    .or_default()
                    .extend(places.iter().cloned());
            }
        }
    }
    levels
}

fn reachable(graph: &Edges, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([from.to_string()]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(&node).into_iter().flat_map(|n| n.keys()) {
            if seen.insert(next.clone()) {
                queue.push_back(next.clone());
            }
        }
    }
    seen
}

/// A group of siblings that import each other in a cycle.
#[derive(Debug)]
struct Cycle {
    /// One shortest cycle through the group's first member: `a -> b -> a`.
    path: Vec<String>,
    /// Every edge inside the group (each is a way round, so each may need cutting).
    edges: Vec<(String, String)>,
}

/// The groups of siblings that import each other in a cycle.
fn cycles(graph: &Edges) -> Vec<Cycle> {
    let mut found = Vec::new();
    let mut placed = BTreeSet::new();
    for node in graph.keys() {
        if placed.contains(node) {
            continue;
        }
        let ahead = reachable(graph, node);
        if !ahead.contains(node) {
            continue;
        }
        let group: BTreeSet<String> = ahead
            .into_iter()
            .filter(|other| reachable(graph, other).contains(node))
            .collect();
        placed.extend(group.iter().cloned());
        let edges = group
            .iter()
            .flat_map(|a| {
                graph[a]
                    .keys()
                    .filter(|b| group.contains(*b))
                    .map(move |b| (a.clone(), b.clone()))
            })
            .collect();
        found.push(Cycle {
            path: shortest_cycle(graph, node, &group),
            edges,
        });
    }
    found
}

/// A shortest way from `start` back to itself inside `group`.
fn shortest_cycle(graph: &Edges, start: &str, group: &BTreeSet<String>) -> Vec<String> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(node) = queue.pop_front() {
        for next in graph[&node].keys().filter(|n| group.contains(*n)) {
            if next == start {
                let mut path = vec![start.to_string(), node.clone()];
                while let Some(before) = came_from.get(path.last().unwrap()) {
                    path.push(before.clone());
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(next) && next != start {
                came_from.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    unreachable!("{start} is on a cycle inside {group:?}")
}

fn level_name(level: &str) -> String {
    if level.is_empty() {
        "crate".to_string()
    } else {
        format!("crate::{level}")
    }
}

/// Every cycle at every level, written out with the lines that make each edge; empty when
/// there is none.
fn cycle_report(levels: &BTreeMap<String, Edges>) -> String {
    let mut report = String::new();
    for (level, graph) in levels {
        for cycle in cycles(graph) {
            report.push_str(&format!(
                "\nunder {}: {}\n",
                level_name(level),
                cycle.path.join(" -> ")
            ));
            for (a, b) in cycle.edges {
                report.push_str(&format!("  {a} -> {b}:\n"));
                for place in &graph[&a][&b] {
                    report.push_str(&format!("    {place}\n"));
                }
            }
        }
    }
    report
}

#[test]
fn no_module_and_its_descendants_import_a_sibling_that_imports_them_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let uses = module_uses(&src);
    assert!(
        uses.len() > 20 && uses.contains_key("pipeline::submit"),
        "the module graph was not read: {uses:?}"
    );
    let levels = sibling_graphs(&uses);
    assert!(
        levels.contains_key("") && levels.contains_key("pipeline"),
        "no sibling graph for the crate or the pipeline: {levels:?}"
    );
    // The commands sit above the daemon, never below it (status's reader once shared a
    // module with the daemon's snapshot writer).
    let daemon_names_cli = levels[""].get("daemon").and_then(|to| to.get("cli"));
    assert!(
        daemon_names_cli.is_none(),
        "the daemon imports a command module: {daemon_names_cli:#?}"
    );
    let report = cycle_report(&levels);
    assert!(
        report.is_empty(),
        "modules import each other in a cycle (each module taken with its descendants, \
         against its siblings):\n{report}\nA stage must not import the wiring (daemon), \
         storage must not import a stage, and cli may import daemon but not the reverse; move \
         what both need into the module they both may import."
    );
}

/// The checker itself: a use from a module's descendant, a `use crate::{..}` group spread
/// over lines, `super::` and `super::super::` paths all make edges between siblings, at the
/// crate and deeper; a unit test module's imports are not edges, nor is a child naming its
/// parent; the report names the lines.
#[test]
fn the_cycle_check_takes_each_module_with_its_descendants_at_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a/x")).unwrap();
    std::fs::create_dir_all(src.join("c/q")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    // a names b only from its grandchild, inside a group over several lines.
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\npub struct Y;\n").unwrap();
    std::fs::write(src.join("a/x.rs"), "pub mod deep;\nuse super::Y;\n").unwrap();
    std::fs::write(
        src.join("a/x/deep.rs"),
        "use crate::{\n    c::C,\n    b::Thing,\n};\n#[cfg(test)]\nmod tests {\n    use crate::b::Z;\n}\n",
    )
    .unwrap();
    // b names a's child x.
    std::fs::write(src.join("b.rs"), "pub fn f() {\n    crate::a::x::g();\n}\n").unwrap();
    // Under c: p and q name each other through super:: and super::super::.
    std::fs::write(src.join("c/mod.rs"), "pub mod p;\npub mod q;\n").unwrap();
    std::fs::write(src.join("c/p.rs"), "use super::q::Q;\n").unwrap();
    std::fs::write(src.join("c/q.rs"), "pub mod r;\n").unwrap();
    std::fs::write(src.join("c/q/r.rs"), "use super::super::p::P;\n").unwrap();

    let uses = module_uses(&src);
    assert_eq!(
        uses["a::x::deep"].keys().collect::<Vec<_>>(),
        ["b", "c"],
        "{uses:#?}"
    );
    assert_eq!(uses["a::x::deep"]["b"][0].line, 3);
    assert_eq!(uses["a::x"].keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(uses["c::q::r"].keys().collect::<Vec<_>>(), ["c::p"]);

    let levels = sibling_graphs(&uses);
    assert_eq!(
        levels.keys().collect::<Vec<_>>(),
        ["", "c"],
        "a child naming its parent is no edge between siblings: {levels:#?}"
    );
    let crate_cycles = cycles(&levels[""]);
    assert_eq!(crate_cycles.len(), 1, "{crate_cycles:?}");
    assert_eq!(crate_cycles[0].path, ["a", "b", "a"]);
    let deeper = cycles(&levels["c"]);
    assert_eq!(deeper.len(), 1, "{deeper:?}");
    assert_eq!(deeper[0].path, ["p", "q", "p"]);

    let report = cycle_report(&levels);
    for expected in [
        "under crate: a -> b -> a",
        "src/a/x/deep.rs:3: b::Thing,",
        "src/b.rs:2: crate::a::x::g();",
        "under crate::c: p -> q -> p",
        "src/c/p.rs:1: use super::q::Q;",
        "src/c/q/r.rs:1: use super::super::p::P;",
    ] {
        assert!(report.contains(expected), "{expected:?} not in:\n{report}");
    }
    assert!(
        !report.contains("Z;"),
        "a unit test's import counted:\n{report}"
    );
}

/// `code` without its string literals' contents (a log line may say "the journal").
fn without_strings(code: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
    for c in code.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => {
                in_string = false;
                out.push(c);
            }
            (true, false, _) => {}
            (false, _, '"') => {
                in_string = true;
                out.push(c);
            }
            (false, _, _) => out.push(c),
        }
    }
    out
}

/// The lines of the product code of `file` (comments, strings and unit tests left out) that
/// name the journal: the word `journal` or `Journal` as an identifier or path segment.
fn lines_naming_the_journal(text: &str) -> Vec<(usize, String)> {
    let names_it = |code: &str| {
        code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == "journal" || word == "Journal")
    };
    product_code(text)
        .into_iter()
        .filter(|(_, code)| names_it(&without_strings(code)))
        .map(|(line, code)| (line, code.trim().to_string()))
        .collect()
}

/// Every transition goes through one write point: under `src/pipeline/`, only the recorder
/// names the journal (the stages report events to it). A failure lists each line elsewhere.
#[test]
fn only_the_recorder_names_the_journal_in_the_pipeline() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let recorder = src.join("pipeline/recorder.rs");
    let mut files = Vec::new();
    rust_files(&src.join("pipeline"), &mut files);
    assert!(
        files.contains(&recorder),
        "{} is missing",
        recorder.display()
    );
    let mut found = Vec::new();
    for file in files.iter().filter(|f| **f != recorder) {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, code) in lines_naming_the_journal(&text) {
            let at = file
                .strip_prefix(&src)
                .unwrap_or(file)
                .display()
                .to_string();
            found.push(format!("  src/{at}:{line}: {code}"));
        }
    }
    assert!(
        found.is_empty(),
        "only src/pipeline/recorder.rs may name the journal under src/pipeline/ (report an event to the recorder, or ask it):\n{}",
        found.join("\n")
    );
}

/// The check sees a stage that calls the journal or imports it, and not a comment, a log
/// line or a unit test that mentions it.
#[test]
fn the_journal_check_sees_code_and_not_prose() {
    let text = r#"//! Stores nothing in the journal itself.
use crate::store::journal::until_stored;
fn f(p: &Context) {
    // the journal says submitting
    tracing::info!("stored in the journal");
    p.journal.set_sha256(1, x);
    let j: Journal = open();
}
#[cfg(test)]
mod tests {
    use crate::store::journal::Journal;
}
"#;
    let lines: Vec<usize> = lines_naming_the_journal(text)
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    assert_eq!(lines, [2, 6, 7]);
}
