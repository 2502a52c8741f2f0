//! The product's module graph has no cycle: every `crate::` and `super::` path in `src/`
//! (outside `#[cfg(test)]` blocks) is an edge from the module that writes it to the module it
//! names, and a stage that imports the wiring (or storage that imports a stage) fails here,
//! naming the cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/pipeline/claim.rs` → `pipeline::claim`; `src/pipeline/mod.rs` → `pipeline`.
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
/// without comments.
fn product_code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_cfg_test = false;
    for line in text.lines() {
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
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Paths named in `code` as written (`crate::a::b`, `super::c`, and `use crate::{a, b::c}`
/// groups), resolved to module names relative to `module`.
fn named_paths(module: &str, code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let flat: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    for (prefix, base) in [("crate::", String::new()), ("super::", parent(module))] {
        let mut rest = flat.as_str();
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for path in expand(rest) {
                let full = if base.is_empty() {
                    path
                } else {
                    format!("{base}::{path}")
                };
                found.push(full);
            }
        }
    }
    found
}

/// `a::b::{c, d::e}` → [`a::b::c`, `a::b::d::e`]; `a::b::C;` → [`a::b::C`].
fn expand(text: &str) -> Vec<String> {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let head = head.trim_end_matches(':').to_string();
    let after = &text[head.len()..].trim_start_matches(':');
    if after.starts_with('{') {
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
        return parts
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "self")
            .flat_map(expand)
            .map(|p| {
                if head.is_empty() {
                    p
                } else {
                    format!("{head}::{p}")
                }
            })
            .chain(std::iter::once(head.clone()).filter(|h| !h.is_empty()))
            .collect();
    }
    vec![head]
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// The longest known module that `path` starts with.
fn owner<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    let mut candidate = path.to_string();
    loop {
        if let Some(m) = modules.get(&candidate) {
            return Some(m);
        }
        candidate = candidate.rsplit_once("::")?.0.to_string();
    }
}

fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let code = product_code(&std::fs::read_to_string(file).unwrap());
        let mut edges = BTreeSet::new();
        for path in named_paths(&module, &code) {
            if let Some(target) = owner(&path, &modules) {
                // A module naming its own descendants or itself is not an edge between peers;
                // a child naming its ancestor is (that is how a cycle through `mod.rs` shows).
                if *target != module
                    && !target.starts_with(&format!("{module}::"))
                    && !target.is_empty()
                {
                    edges.insert(target.clone());
                }
            }
        }
        graph.insert(module, edges);
    }
    graph
}

/// A cycle in `graph`, as the modules on it in order, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Closed,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Closed => {}
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Closed);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 20 && graph.contains_key("pipeline::submit"),
        "the module graph was not read: {graph:?}"
    );
    // The commands sit above the daemon, never below it (status's reader once shared a
    // module with the daemon's snapshot writer).
    let daemon_names_cli = graph
        .iter()
        .filter(|(m, _)| m.as_str() == "daemon" || m.starts_with("daemon::"))
        .find(|(_, to)| to.iter().any(|t| t == "cli" || t.starts_with("cli::")));
    assert!(
        daemon_names_cli.is_none(),
        "the daemon imports a command module: {daemon_names_cli:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the modules import each other in a cycle: {}. A stage must not import the wiring \
             (daemon), storage must not import a stage, and cli may import daemon but not the \
             reverse; move what both need into the module they both may import.",
            cycle.join(" -> ")
        );
    }
}

/// The checker itself: a cycle through a parent module, a `use crate::{..}` group and a
/// `super::` path is found; a unit test module's imports are not edges.
#[test]
fn the_cycle_check_sees_groups_super_and_parents() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\nuse crate::{b::Thing};\n").unwrap();
    std::fs::write(
        src.join("a/x.rs"),
        "use super::Y;\n#[cfg(test)]\nmod tests {\n    use crate::b::Z;\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "pub fn f() { crate::a::x::g(); }\n").unwrap();
    let graph = module_graph(src);
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(graph["a::x"], BTreeSet::from(["a".to_string()]));
    assert_eq!(graph["b"], BTreeSet::from(["a::x".to_string()]));
    let cycle = find_cycle(&graph).expect("a -> b -> a::x -> a");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
}
