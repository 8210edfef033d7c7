//! The workspace's shape, as `docs/ARCHITECTURE.md` draws it: which crate may depend on which,
//! that nothing depends on the `clawdesk` binary, that the gym and the practice window link no
//! candle, and that no two files of a crate import each other (directly or round a circle).
//! Also its hygiene: every dependency a manifest names is used, and every version is declared
//! once, in the workspace's table.
//!
//! It reads the manifests, `Cargo.lock` and the sources; it builds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The packages a manifest names in one section (`dependencies`, `dev-dependencies`).
fn section_deps(manifest: &str, section: &str) -> BTreeSet<String> {
    section_lines(manifest, section)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Every workspace member's package name and directory.
fn members() -> BTreeMap<String, PathBuf> {
    let root = root();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let list = workspace
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("a members list");
    list.split('"')
        .skip(1)
        .step_by(2)
        .map(|dir| {
            let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml"))
                .expect("a member's manifest");
            let name = manifest
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .expect("a package name")
                .to_owned();
            (name, root.join(dir))
        })
        .collect()
}

fn manifest(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("Cargo.toml")).expect("a manifest")
}

#[test]
fn each_crate_depends_only_on_what_the_architecture_allows() {
    // (crate, what its own [dependencies] must not name), from docs/ARCHITECTURE.md.
    let ours =
        |names: &[&str]| -> Vec<String> { names.iter().map(|n| format!("clawdesk-{n}")).collect() };
    let all: Vec<String> = members().keys().cloned().collect();
    let rules: Vec<(&str, Vec<String>)> = vec![
        ("clawdesk-rng", all.clone()),
        ("clawdesk-png", all.clone()),
        ("clawdesk-prompts", all.clone()),
        ("clawdesk-desktop", ours(&["model", "store", "agent"])),
        ("clawdesk-store", ours(&["model", "desktop"])),
        ("clawdesk-model", ours(&["desktop", "store"])),
        (
            "clawdesk-agent",
            ours(&["trainer", "gym", "judge", "server"]),
        ),
        ("clawdesk-gym", ours(&["model", "trainer"])),
        ("clawdesk-judge", ours(&["trainer", "gym", "server"])),
        ("clawdesk-trainer", ours(&["server", "desktop", "runtime"])),
        ("clawdesk-server", ours(&["trainer", "gym", "desktop"])),
        ("clawdesk-practice", ours(&["model", "trainer"])),
        ("clawdesk-runtime", {
            let mut no = ours(&["desk"]);
            no.extend(["clawdesk", "clap", "tauri"].map(String::from));
            no
        }),
        ("clawdesk-desk", {
            let mut no = vec!["clawdesk".to_owned(), "clap".into(), "tauri".into()];
            no.push("clawdesk-app".into());
            no
        }),
    ];
    let members = members();
    let mut wrong = Vec::new();
    for (name, forbidden) in &rules {
        let dir = members
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is a member"));
        let deps = section_deps(&manifest(dir), "dependencies");
        for dep in deps.iter().filter(|d| forbidden.contains(d)) {
            wrong.push(format!("{name} depends on {dep}"));
        }
    }
    // Nothing depends on the binary crate, in any section.
    for (name, dir) in &members {
        let text = manifest(dir);
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if section_deps(&text, section).contains("clawdesk") {
                wrong.push(format!("{name} depends on the clawdesk binary ({section})"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A dependency's lines in a manifest section: (name, the rest of the line).
fn section_lines(manifest: &str, section: &str) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            lines.push((name.trim().to_owned(), line.to_owned()));
        }
    }
    lines
}

/// The text of every `.rs` file under `dir` (nothing when it does not exist).
fn sources_under(dir: &Path) -> String {
    let mut files = Vec::new();
    if dir.is_dir() {
        rust_files(dir, &mut files);
    }
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("a source file"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether Rust source names the crate `name` as code does (a path, a `use`, an `extern
/// crate`); a word in a comment does not count.
fn names_crate(code: &str, name: &str) -> bool {
    let ident = name.replace('-', "_");
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .any(|l| {
            l.match_indices(&format!("{ident}::")).any(|(at, _)| {
                !l[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            }) || l.contains(&format!("use {ident}"))
                || l.contains(&format!("extern crate {ident}"))
        })
}

#[test]
fn every_dependency_a_manifest_names_is_used() {
    let mut unused = Vec::new();
    for (name, dir) in members() {
        let text = manifest(&dir);
        let src = sources_under(&dir.join("src"));
        let mut everything = src.clone();
        for extra in ["tests", "benches", "examples"] {
            everything.push_str(&sources_under(&dir.join(extra)));
        }
        if name == "clawdesk-tests" {
            everything = sources_under(&dir);
        }
        let build = std::fs::read_to_string(dir.join("build.rs")).unwrap_or_default();
        for (section, code) in [
            (
                "dependencies",
                if name == "clawdesk-tests" {
                    &everything
                } else {
                    &src
                },
            ),
            ("dev-dependencies", &everything),
            ("build-dependencies", &build),
        ] {
            for (dep, _) in section_lines(&text, section) {
                // A crate's dev-dependency on itself turns a feature on for its tests.
                if dep != name && !names_crate(code, &dep) {
                    unused.push(format!("{name} [{section}] {dep}"));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "named but not used:\n{}",
        unused.join("\n")
    );
}

#[test]
fn every_version_is_declared_once_in_the_workspace_table() {
    let mut local = Vec::new();
    for (name, dir) in members() {
        let text = manifest(&dir);
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            for (dep, line) in section_lines(&text, section) {
                if !(line.contains("workspace = true")
                    || line.contains(".workspace")
                    || line.contains("path = "))
                {
                    local.push(format!("{name} [{section}] {dep}: {line}"));
                }
            }
        }
    }
    assert!(
        local.is_empty(),
        "versions outside the workspace table:\n{}",
        local.join("\n")
    );
}

/// Each package's dependencies in `Cargo.lock`, by name.
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let mut graph = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_default()
            .to_owned();
        let deps = match block.split_once("dependencies = [") {
            Some((_, rest)) => rest
                .split(']')
                .next()
                .unwrap_or_default()
                .split('"')
                .skip(1)
                .step_by(2)
                .map(|d| d.split(' ').next().unwrap_or_default().to_owned())
                .collect(),
            None => Vec::new(),
        };
        // Two versions of one package share a name; their dependencies are merged.
        graph.entry(name).or_insert_with(Vec::new).extend(deps);
    }
    graph
}

/// What `name` reaches through its normal dependencies (dev-dependencies left out).
fn reaches(name: &str) -> BTreeSet<String> {
    let graph = lock_graph();
    let members = members();
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        // A member's lock entry mixes in its dev-dependencies; its manifest says which count.
        let deps: Vec<String> = match members.get(&next) {
            Some(dir) => section_deps(&manifest(dir), "dependencies")
                .into_iter()
                .collect(),
            None => graph.get(&next).cloned().unwrap_or_default(),
        };
        for dep in deps {
            if seen.insert(dep.clone()) {
                todo.push(dep);
            }
        }
    }
    seen
}

#[test]
fn the_gym_and_the_practice_window_link_no_candle() {
    for name in ["clawdesk-gym", "clawdesk-practice"] {
        let reached = reaches(name);
        let candle: Vec<_> = reached.iter().filter(|d| d.starts_with("candle")).collect();
        assert!(candle.is_empty(), "{name} reaches {candle:?}");
        assert!(
            !reached.contains("clawdesk-model"),
            "{name} reaches the model"
        );
    }
}

/// A file's module path inside its crate (`observe::capture`; the root is empty).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules `file` names with `crate::…` or `super::…`, outside comments and its tests.
fn imports(src: &Path, file: &Path, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).expect("a source file");
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let me = module_of(src, file);
    // The module `super` names from this file: its own module's parent.
    let mut parent: Vec<&str> = me.split("::").filter(|p| !p.is_empty()).collect();
    parent.pop();
    let mut found = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            for (at, _) in line.match_indices(prefix) {
                let path: Vec<&str> = line[at + prefix.len()..]
                    .split(|c: char| {
                        !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':')
                    })
                    .next()
                    .unwrap_or_default()
                    .split("::")
                    .filter(|p| !p.is_empty())
                    .collect();
                // The longest prefix of the path that is a module of the crate.
                for take in (1..=path.len()).rev() {
                    let mut full = base.clone();
                    full.extend(&path[..take]);
                    let candidate = full.join("::");
                    if modules.contains(&candidate) {
                        if candidate != me {
                            found.insert(candidate);
                        }
                        break;
                    }
                }
            }
        }
    }
    found
}

/// A circle of imports in `graph`, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let mut circles = Vec::new();
    for dir in members().values() {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
        // The crate root re-exports its modules' items; imports through it are not circles.
        let graph: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|f| (module_of(&src, f), imports(&src, f, &modules)))
            .filter(|(m, _)| !m.is_empty())
            .map(|(m, deps)| (m, deps.into_iter().filter(|d| !d.is_empty()).collect()))
            .collect();
        if let Some(circle) = find_circle(&graph) {
            circles.push(format!("{}: {}", dir.display(), circle.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "{}", circles.join("\n"));
}
