//! The shape of `gateway/src`, checked so that it cannot rot (ARCHITECTURE.md
//! describes it; issue 13 set the rules):
//!
//! - no Rust file is longer than about 800 lines, test code not counted;
//! - no function in the IKE exchanges is longer than about 120 lines;
//! - no import cycles: neither between the crate's top-level modules nor
//!   between sibling files of one module (a child using its parent is fine);
//! - the layers: `datapath/` never reaches up into the control plane, `ike`
//!   never reaches into the datapath or the sessions, and `spoke`, `nhrp`
//!   and `bgp` talk to the datapath only through its contract (`iface`);
//! - the integration crate and xtask declare no copy of a report type of
//!   `gateway-report` (they deserialize the gateway's own).
//!
//! The source is read as text: comments, strings and `#[cfg(test)]` items
//! are stripped, then every `crate::`, `super::` and `self::` path and every
//! `use` tree is resolved against the module tree made from the files.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const MAX_FILE_LINES: usize = 800;
const MAX_EXCHANGE_FN_LINES: usize = 120;

/// (importing module prefix, modules it must not reach, why).
const LAYERS: &[(&str, &[&str], &str)] = &[
    (
        "datapath",
        &[
            "ike", "session", "spoke", "nhrp", "bgp", "daemon", "cli", "control",
        ],
        "the datapaths sit below the control plane: they know `iface`, `ipsec`, `net`, `sys`",
    ),
    (
        "ike",
        &["datapath", "session"],
        "IKE is a protocol: the session layer implements `ike::task::SessionLayer` for it",
    ),
    (
        "spoke",
        &["datapath"],
        "protocols reach the datapath only through its contract, `iface`",
    ),
    (
        "nhrp",
        &["datapath"],
        "protocols reach the datapath only through its contract, `iface`",
    ),
    (
        "bgp",
        &["datapath"],
        "protocols reach the datapath only through its contract, `iface`",
    ),
];

struct SourceFile {
    path: PathBuf,
    /// Module path from the crate root (`["bgp", "speaker"]`).
    module: Vec<String>,
    /// The text without comments, string contents and test items.
    code: String,
    /// Lines of the file outside `#[cfg(test)]` items, comments included.
    lines: usize,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file is: `bgp/speaker.rs` and `bgp/speaker/mod.rs` are
/// `bgp::speaker`; `lib.rs` and `main.rs` are the root.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src_dir()).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Whether the file is test code as a whole: `tests.rs`, or under a
/// `tests` folder (declared `#[cfg(test)] mod tests;` by its parent).
fn is_test_file(module: &[String]) -> bool {
    module.iter().any(|m| m == "tests")
}

/// Removes comments and the contents of string and char literals, keeping
/// line breaks so line counts stay right.
fn strip_comments_and_strings(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(b, i) {
            out.push_str("\"\"");
            out.extend(std::iter::repeat_n('\n', src[i..end].matches('\n').count()));
            i = end;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\'') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            // Multi-byte UTF-8 stays whole: copy up to the next ASCII byte.
            let start = i;
            i += 1;
            while i < b.len() && !b[i].is_ascii() {
                i += 1;
            }
            out.push_str(&src[start..i]);
        }
    }
    out
}

/// Where the raw string literal (`r"..."`, `r#"..."#`) starting at `i`
/// ends, if one starts there.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    if b[i] != b'r' || ident_byte(b, i) {
        return None;
    }
    let mut j = i + 1;
    let mut hashes = 0;
    while b.get(j) == Some(&b'#') {
        hashes += 1;
        j += 1;
    }
    if b.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    while j < b.len() {
        if b[j] == b'"' && b[j + 1..].iter().take_while(|&&h| h == b'#').count() >= hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(b.len())
}

fn ident_byte(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Index just past the item that starts at `from`: through its matching
/// `}` if a `{` comes before any `;`, else through the `;`.
fn item_end(code: &str, from: usize) -> usize {
    let b = code.as_bytes();
    let mut i = from;
    while i < b.len() && b[i] != b'{' && b[i] != b';' {
        i += 1;
    }
    if i >= b.len() || b[i] == b';' {
        return (i + 1).min(b.len());
    }
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Blanks every item marked `#[cfg(test)]` (keeping its line breaks);
/// also returns how many lines those items spanned.
fn strip_test_items(code: &str) -> (String, usize) {
    let mut out = code.to_owned();
    let mut test_lines = 0;
    let mut search = 0;
    while let Some(at) = out[search..].find("#[cfg(test)]").map(|p| p + search) {
        let end = item_end(&out, at + "#[cfg(test)]".len());
        let blank: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        test_lines += blank.matches('\n').count() + 1;
        out.replace_range(at..end, &blank);
        search = at + blank.len();
    }
    (out, test_lines)
}

fn load() -> Vec<SourceFile> {
    let mut paths = Vec::new();
    rust_files(&src_dir(), &mut paths);
    paths
        .into_iter()
        .filter_map(|path| {
            let module = module_of(&path);
            if is_test_file(&module) {
                return None;
            }
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let (code, test_lines) = strip_test_items(&strip_comments_and_strings(&text));
            let lines = text.lines().count().saturating_sub(test_lines);
            Some(SourceFile {
                path,
                module,
                code,
                lines,
            })
        })
        .collect()
}

fn rel(path: &Path) -> String {
    path.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn no_file_is_longer_than_about_800_lines_of_code() {
    let long: Vec<String> = load()
        .iter()
        .map(|f| (f.lines, rel(&f.path)))
        .filter(|(n, _)| *n > MAX_FILE_LINES)
        .map(|(n, p)| format!("{p}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "split these along their concerns (lines outside `#[cfg(test)]` items, \
         limit {MAX_FILE_LINES}):\n{}",
        long.join("\n")
    );
}

/// `(name, first line, lines spanned)` of every `fn` with a body.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("fn ").map(|p| p + search) {
        search = at + 3;
        if ident_byte(b, at) {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        let end = item_end(code, at);
        if code.as_bytes()[end - 1] != b'}' {
            continue; // a declaration without a body
        }
        let first = code[..at].matches('\n').count() + 1;
        out.push((name, first, code[at..end].matches('\n').count() + 1));
    }
    out
}

#[test]
fn no_function_in_the_ike_exchanges_is_longer_than_about_120_lines() {
    let files = load();
    let exchanges: Vec<&SourceFile> = files
        .iter()
        .filter(|f| {
            f.module
                .starts_with(&["ike".to_owned(), "exchange".to_owned()])
        })
        .collect();
    assert!(!exchanges.is_empty(), "no files under src/ike/exchange");
    let long: Vec<String> = exchanges
        .iter()
        .flat_map(|f| {
            functions(&f.code)
                .into_iter()
                .filter(|(_, _, n)| *n > MAX_EXCHANGE_FN_LINES)
                .map(|(name, line, n)| format!("{}:{line}: fn {name}: {n} lines", rel(&f.path)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these functions:\n{}",
        long.join("\n")
    );
}

/// Splits a use tree body into flat paths: `a::{b, c::{d as e}}` gives
/// `a::b` and `a::c::d`.
fn flatten_use(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let prefix = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    flatten_use(&inner[start..i], &prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        flatten_use(&inner[start..], &prefix, out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(prefix, path));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}::{b}"),
    }
}

/// Every path the file names that starts at `crate`, `super` or `self`:
/// the flattened `use` trees and the paths written inline.
fn referenced_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    // `use` trees (their bodies are removed from what the inline scan sees).
    let mut inline = String::with_capacity(code.len());
    while let Some(at) = find_word(rest, "use") {
        inline.push_str(&rest[..at]);
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        flatten_use(&rest[at + 3..end], "", &mut out);
        rest = &rest[(end + 1).min(rest.len())..];
    }
    inline.push_str(rest);
    for root in ["crate::", "super::", "self::"] {
        let mut search = 0;
        while let Some(at) = inline[search..].find(root).map(|p| p + search) {
            search = at + root.len();
            if ident_byte(inline.as_bytes(), at) {
                continue;
            }
            let path: String = inline[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.trim_end_matches(':').to_owned());
        }
    }
    out
}

fn find_word(s: &str, word: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut search = 0;
    while let Some(at) = s[search..].find(word).map(|p| p + search) {
        let after = b.get(at + word.len()).copied().unwrap_or(b' ');
        if !ident_byte(b, at) && after.is_ascii_whitespace() {
            return Some(at);
        }
        search = at + word.len();
    }
    None
}

/// The absolute module path a reference from `module` leads to, cut to
/// the longest prefix that is a module of the crate.
fn resolve(module: &[String], path: &str, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut parts = path.split("::").filter(|p| !p.is_empty());
    let first = parts.next()?;
    // `super` from `a/b.rs` and from `a/b/mod.rs` (both module a::b) is `a`.
    let mut abs: Vec<String> = match first {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        _ => return None,
    };
    let mut rest: Vec<&str> = parts.collect();
    while rest.first() == Some(&"super") {
        abs.pop();
        rest.remove(0);
    }
    for p in rest {
        if p == "self" || p == "*" {
            break;
        }
        abs.push(p.to_owned());
        if !modules.contains(&abs) {
            abs.pop();
            break;
        }
    }
    Some(abs)
}

/// Module-to-module references: (from, to).
fn references(files: &[SourceFile]) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| (0..=f.module.len()).map(|n| f.module[..n].to_vec()))
        .collect();
    let mut edges = BTreeSet::new();
    for f in files {
        for path in referenced_paths(&f.code) {
            if let Some(to) = resolve(&f.module, &path, &modules)
                && to != f.module
            {
                edges.insert((f.module.clone(), to));
            }
        }
    }
    edges
}

/// Cycles among the children of each module: an edge between two
/// modules counts between their ancestors that are siblings.
fn sibling_cycles(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Vec<String> {
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, to) in edges {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        // A module and its own ancestor or descendant: parent and child.
        if common == from.len() || common == to.len() {
            continue;
        }
        graphs
            .entry(from[..common].to_vec())
            .or_default()
            .entry(from[common].clone())
            .or_default()
            .insert(to[common].clone());
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &graphs {
        for cycle in find_cycles(graph) {
            let at = if parent.is_empty() {
                "crate".to_owned()
            } else {
                parent.join("::")
            };
            cycles.push(format!("in {at}: {}", cycle.join(" -> ")));
        }
    }
    cycles
}

/// One cycle per strongly connected component with more than one node.
fn find_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    reported.extend(path.iter().cloned());
                    cycles.push(cycle);
                    stack.clear();
                    break;
                }
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    cycles
}

#[test]
fn no_import_cycles_between_modules_or_sibling_files() {
    let edges = references(&load());
    assert!(
        edges
            .iter()
            .any(|(f, t)| f == &["session"] && t == &["iface"]),
        "the reference scan found nothing: is it still reading the source?"
    );
    let cycles = sibling_cycles(&edges);
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn layers_do_not_reach_where_they_must_not() {
    let edges = references(&load());
    let mut wrong = Vec::new();
    for (from, to) in &edges {
        for (layer, forbidden, why) in LAYERS {
            if from.first().map(String::as_str) == Some(layer)
                && to.first().is_some_and(|t| forbidden.contains(&t.as_str()))
            {
                wrong.push(format!("{} uses {}: {why}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "layering:\n{}", wrong.join("\n"));
}

#[test]
fn the_scanner_sees_cycles_and_test_code_as_it_should() {
    // Self-test of the machinery on a small made-up tree.
    let (code, _) = strip_test_items(&strip_comments_and_strings(
        "use crate::{a::X, b::{c::Y as Z}};\n// crate::d::W\nlet s = \"crate::e\";\n\
         let r = r#\"crate::r\"#; let c = '\"'; /* crate::x */\n\
         fn f() { super::g::h(); }\n#[cfg(test)]\nmod tests { use crate::t::U; }\n",
    ));
    let mut paths = referenced_paths(&code);
    paths.sort();
    assert_eq!(paths, ["crate::a::X", "crate::b::c::Y", "super::g::h"]);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &["a"][..]),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    let cycles = find_cycles(&graph);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0].first(), cycles[0].last());
    let fns = functions("fn a() {\n x;\n}\nfn b();\n");
    assert_eq!(fns, [("a".to_owned(), 1, 3)]);
}

/// Every `struct`/`enum` name declared in the Rust files under `dir`.
fn declared_types(dir: &Path) -> BTreeSet<String> {
    let mut paths = Vec::new();
    rust_files(dir, &mut paths);
    let mut names = BTreeSet::new();
    for path in paths {
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let code = strip_comments_and_strings(&text);
        for keyword in ["struct ", "enum "] {
            let mut search = 0;
            while let Some(at) = code[search..].find(keyword).map(|p| p + search) {
                search = at + keyword.len();
                if ident_byte(code.as_bytes(), at) {
                    continue;
                }
                let name: String = code[search..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// The integration tests read the gateway's reports as the gateway's own
/// types (`gateway_report`), never as look-alikes of their own.
#[test]
fn the_integration_crate_declares_no_copy_of_a_report_type() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reports = declared_types(&root.join("gateway-report/src"));
    assert!(
        reports.contains("SaReport") && reports.contains("DatapathReport"),
        "the report types were not found: {reports:?}"
    );
    let mut ours = declared_types(&root.join("integration/src"));
    ours.extend(declared_types(&root.join("integration/tests")));
    ours.extend(declared_types(&root.join("xtask/src")));
    let copies: Vec<&String> = ours.intersection(&reports).collect();
    assert!(
        copies.is_empty(),
        "the lab declares its own version of these gateway reports; use gateway_report's: {copies:?}"
    );
}

/// ARCHITECTURE.md names every crate of the workspace and every top-level
/// module of `gateway/src`, so a new one cannot go in unmapped.
#[test]
fn the_architecture_map_names_every_crate_and_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let map = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for entry in fs::read_dir(&root).expect("the workspace") {
        let path = entry.expect("entry").path();
        if path.join("Cargo.toml").exists() {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !map.contains(&format!("`{name}/`")) {
                missing.push(format!("crate {name}/"));
            }
        }
    }
    for entry in fs::read_dir(src_dir()).expect("gateway/src") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if matches!(name.as_ref(), "lib.rs" | "main.rs") {
            continue;
        }
        let shown = if path.is_dir() {
            format!("`{name}/`")
        } else {
            format!("`{name}`")
        };
        if !map.contains(&shown) {
            missing.push(format!("gateway/src/{name} (as {shown})"));
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not mention: {missing:?}"
    );
}
