//! The layout's one dependency direction, checked on the source: `cli → {gate, client,
//! relay} → {transport, state, hc} → {policy, config, token}`. The roles never import each
//! other, the lower layers never import a role, the pure core and the wire protocol never
//! touch tokio, and the modules of `transport` import each other one way only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::repo;

/// Each folder (or top-level file) of `src/` and the folders it may import from.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("policy", &["config"]),
    ("token", &["config"]),
    ("hc", &["config", "token"]),
    ("state", &["config", "token"]),
    ("transport", &["config", "token", "hc"]),
    (
        "gate",
        &["config", "policy", "token", "hc", "state", "transport"],
    ),
    ("client", &["config", "token", "hc", "state", "transport"]),
    ("relay", &["config", "token", "hc", "state", "transport"]),
];

/// Pure: no I/O runtime.
const NO_TOKIO: &[&str] = &["config", "policy", "token", "hc"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let tests = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(crate) mod tests",
    ];
    let text = match tests.iter().filter_map(|t| text.find(t)).min() {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `crate::NAME` paths a piece of code names.
fn crate_paths(code: &str, depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let path: Vec<&str> = rest
            .split("::")
            .take(depth)
            .map(|s| {
                s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap()
            })
            .collect();
        found.insert(path.join("::"));
    }
    found
}

#[test]
fn imports_point_down_and_roles_never_import_each_other() {
    let src = repo("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut transport_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if matches!(top.as_str(), "cli" | "main" | "lib") {
            continue;
        }
        let (_, allowed) = MAY_IMPORT
            .iter()
            .find(|(name, _)| *name == top)
            .unwrap_or_else(|| {
                panic!(
                    "{} is in no layer; add its folder to MAY_IMPORT",
                    rel.display()
                )
            });
        checked += 1;
        let code = code(file);
        for path in crate_paths(&code, 1) {
            // An item of the crate's root (`crate::VERSION`) belongs to no layer.
            let root_item = path.starts_with(|c: char| c.is_uppercase());
            if path != top && !root_item && !allowed.contains(&path.as_str()) {
                wrong.push(format!("{} imports crate::{path}", rel.display()));
            }
        }
        if NO_TOKIO.contains(&top.as_str()) && code.contains("tokio") {
            wrong.push(format!("{} is pure but uses tokio", rel.display()));
        }
        if top == "transport" {
            let me = rel.file_stem().unwrap().to_string_lossy().to_string();
            for path in crate_paths(&code, 2) {
                if let Some(other) = path.strip_prefix("transport::")
                    && other != me
                    && other.chars().next().is_some_and(|c| c.is_lowercase())
                {
                    transport_edges
                        .entry(me.clone())
                        .or_default()
                        .insert(other.to_string());
                }
            }
        }
    }
    for (a, targets) in &transport_edges {
        for b in targets {
            if transport_edges.get(b).is_some_and(|back| back.contains(a)) && a < b {
                wrong.push(format!(
                    "transport::{a} and transport::{b} import each other"
                ));
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} files found under {}",
        src.display()
    );
    assert!(
        wrong.is_empty(),
        "the layout's direction is broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_itself_sees_an_import() {
    // A check that cannot fail is a bug: the parser must find what it looks for.
    let code =
        "use crate::gate::Gate;\nlet x = crate::transport::dial::Dialer::new();\nnotcrate::x";
    let one: Vec<String> = crate_paths(code, 1).into_iter().collect();
    assert_eq!(one, ["gate", "transport"]);
    let two: Vec<String> = crate_paths(code, 2).into_iter().collect();
    assert_eq!(two, ["gate::Gate", "transport::dial"]);
}
