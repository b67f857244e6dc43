//! The crate's layers import only downwards, and no two modules of a layer import each other
//! in a circle (the picture is in `src/lib.rs` and `docs/design.md`).
//!
//! Read from the sources: every `crate::` path outside comments names the module it reaches.
//! Unit tests (`tests.rs`, `tests/`, `fuzz`) are left out: they drive a module from above on
//! purpose, through the layers that use it.
//!
//! Run it alone with `cargo test -p tracer --test layers`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Lowest first: each may import the ones before it, never one after.
const LAYERS: [&str; 7] = [
    "kernel", "model", "analysis", "report", "trace", "lab", "cmd",
];

#[test]
fn layers_import_only_downwards() {
    let mut upward = Vec::new();
    for file in sources() {
        let from = layer_of(&file);
        for to in imports(&file).iter().map(|path| path[0].as_str()) {
            let (Some(a), Some(b)) = (rank(&from), rank(to)) else {
                continue;
            };
            if b > a {
                upward.push(format!("{} imports {to}", shown(&file)));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn no_circles_between_the_modules_of_a_layer() {
    // Module = the first two path components (`analysis::journey`), with its folder.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources() {
        let Some(from) = module_of(&file) else {
            continue;
        };
        for path in imports(&file).into_iter().filter(|p| p.len() >= 2) {
            let to = format!("{}::{}", path[0], path[1]);
            if to != from && path[0] == from.split("::").next().unwrap() {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let circles: Vec<String> = edges
        .keys()
        .filter_map(|start| circle_through(start, &edges))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_sees_imports_and_circles() {
    // The checker itself: a grouped import is read, and a circle is found.
    let text = "use crate::{model::sighting::Sighting, analysis::{fate, journey::{self, J}}};\n\
                // crate::cmd\nlet x = crate::report::output::f(y);";
    let found = imports_in(text);
    let expected = [
        "model::sighting::Sighting",
        "analysis::fate",
        "analysis::journey::self",
        "analysis::journey::J",
        "report::output::f",
    ];
    assert_eq!(found, expected.map(path));
    let mut edges = BTreeMap::new();
    edges.insert("a::x".to_string(), BTreeSet::from(["a::y".to_string()]));
    edges.insert("a::y".to_string(), BTreeSet::from(["a::x".to_string()]));
    assert!(circle_through("a::x", &edges).is_some());
}

fn path(s: &str) -> Vec<String> {
    s.split("::").map(str::to_string).collect()
}

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn shown(file: &Path) -> String {
    file.strip_prefix(src())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Every source file but the unit tests'.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("src is readable").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "tests" || name == "tests.rs" || name.starts_with("fuzz") {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &mut out);
    assert!(
        out.len() > 40,
        "the sources were not found under {:?}",
        src()
    );
    out
}

fn layer_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a path");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// `analysis::journey` for `src/analysis/journey.rs` and `src/analysis/journey/x.rs`;
/// `None` for a layer's own `mod.rs` and the crate root.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    (parts.len() >= 2 && parts[1] != "mod").then(|| format!("{}::{}", parts[0], parts[1]))
}

fn imports(file: &Path) -> Vec<Vec<String>> {
    imports_in(&fs::read_to_string(file).expect("readable source"))
}

/// The `crate::` paths of `text` outside comments, with `use crate::{a::{b, c}, d}` groups
/// opened.
fn imports_in(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        expand(&mut rest, Vec::new(), &mut out);
    }
    out.retain(|p| !p.is_empty());
    out
}

/// Reads one path, or a `{...}` group of them, at the start of `text` under `prefix`, and
/// moves `text` past it.
fn expand(text: &mut &str, mut path: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        *text = text.trim_start();
        if let Some(group) = text.strip_prefix('{') {
            *text = group;
            while !text.is_empty() {
                let before = text.len();
                expand(text, path.clone(), out);
                if text.len() == before {
                    return; // not Rust we can read: stop rather than loop
                }
                *text = text.trim_start().trim_start_matches(',').trim_start();
                if let Some(after) = text.strip_prefix('}') {
                    *text = after;
                    return;
                }
            }
            return;
        }
        let end = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        path.push(text[..end].to_string());
        *text = &text[end..];
        match text.strip_prefix("::") {
            Some(after) if end > 0 => *text = after,
            _ => break,
        }
    }
    out.push(path);
}

/// A circle of imports that comes back to `start`, written `a -> b -> a`.
fn circle_through(start: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(trail) = stack.pop() {
        let last = trail.last().expect("a trail is never empty");
        for next in edges.get(last).into_iter().flatten() {
            if next == start {
                return Some(format!("{} -> {start}", trail.join(" -> ")));
            }
            if seen.insert(next.clone()) {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}
