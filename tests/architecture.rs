//! ARCHITECTURE.md's module table is the allow-list of the library's internal imports: for
//! every top-level module of `src/`, the "knows about" column names exactly the modules its
//! code refers to (`crate::<module>` paths outside `#[cfg(test)]`). A new import that the
//! table does not list, a listed one that is gone, or an import cycle fails this test, so the
//! document stays true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Top-level modules: `src/<m>.rs` and `src/<m>/`, without the crate roots and `bin/`.
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .expect("src/")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if path.is_dir() && name != "bin" {
                Some(name)
            } else {
                name.strip_suffix(".rs")
                    .filter(|m| *m != "lib" && *m != "main")
                    .map(str::to_string)
            }
        })
        .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("dir").flatten() {
            rust_files(&e.path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_path_buf());
    }
}

/// `crate::<m>` references per module, as `shared/tools/module_cycles.py` counts them.
fn actual(src: &Path) -> Graph {
    let mods = modules(src);
    mods.iter()
        .map(|m| {
            let mut files = Vec::new();
            rust_files(&src.join(format!("{m}.rs")), &mut files);
            rust_files(&src.join(m), &mut files);
            let mut uses = BTreeSet::new();
            for f in files {
                let text = std::fs::read_to_string(&f).expect("source");
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (i, _) in code.match_indices("crate::") {
                    let before = code[..i].chars().next_back();
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        continue; // e.g. `mmsearch_crate::`
                    }
                    let name: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if mods.contains(&name) && name != *m {
                        uses.insert(name);
                    }
                }
            }
            (m.clone(), uses)
        })
        .collect()
}

/// The "knows about" column of ARCHITECTURE.md's module table, for rows naming `src/<m>/` or
/// `src/<m>.rs`; backticked names that are modules count, anything else is prose.
fn documented(doc: &str, mods: &BTreeSet<String>) -> Graph {
    let mut g = Graph::new();
    for line in doc.lines().filter(|l| l.starts_with("| `src/")) {
        // An escaped `\|` is text inside a cell, not a column border.
        let line = line.replace("\\|", "/");
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(folder), Some(knows)) = (cells.get(1), cells.get(3)) else {
            continue;
        };
        let name = folder
            .trim_matches('`')
            .trim_start_matches("src/")
            .trim_end_matches('/')
            .trim_end_matches(".rs");
        let listed = knows
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| mods.contains(*w))
            .map(str::to_string)
            .collect();
        g.insert(name.to_string(), listed);
    }
    g
}

fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            return Some(path[i..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn imports_match_architecture_md() {
    let src = root().join("src");
    let mods = modules(&src);
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let allowed = documented(&doc, &mods);
    let got = actual(&src);
    let mut problems = Vec::new();
    for (m, uses) in &got {
        match allowed.get(m) {
            None => problems.push(format!(
                "src/{m} has no row in ARCHITECTURE.md's module table"
            )),
            Some(listed) => {
                for u in uses.difference(listed) {
                    problems.push(format!(
                        "{m} uses crate::{u}, which its \"knows about\" column does not list"
                    ));
                }
                for u in listed.difference(uses) {
                    problems.push(format!(
                        "{m}'s \"knows about\" lists {u}, which its code does not use"
                    ));
                }
            }
        }
    }
    for m in allowed.keys().filter(|m| !mods.contains(*m)) {
        problems.push(format!(
            "ARCHITECTURE.md has a row for src/{m}, which does not exist"
        ));
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md and the code disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn no_import_cycles() {
    let g = actual(&root().join("src"));
    assert_eq!(cycle(&g), None, "modules import each other in a loop");
}

#[test]
fn the_checks_can_fail() {
    let mods: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    let doc =
        "| `src/a/` | x | `b`, `mmsearch-index` |\n| `src/b.rs` | y | — |\n| other | `a` | `c` |";
    let g = documented(doc, &mods);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
    assert!(g["b"].is_empty());
    assert_eq!(g.len(), 2);
    let looped: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(x, y)| (x.to_string(), BTreeSet::from([y.to_string()])))
        .collect();
    assert_eq!(cycle(&looped).map(|c| c.len()), Some(3));
}
