//! The layers of ARCHITECTURE.md, checked: the top-level modules of `src/` use each other
//! one way only (no cycle), and no production file grows past the size a newcomer reads in
//! one sitting.
//!
//! Production code only: a file's `#[cfg(test)]` tail, `tests.rs` files, `src/bin`,
//! `main.rs` and `lib.rs` are left out, and so are comments (a doc link is no dependency).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most production lines one file may hold.
const MAX_PRODUCTION_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Production files of `src/`, each with its top-level module and its production text.
fn production() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for path in files {
        let rel: Vec<String> = path
            .strip_prefix(&src)
            .expect("under src")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let name = rel.last().expect("a file name").as_str();
        let in_tests_dir = rel[..rel.len() - 1].iter().any(|d| d == "tests");
        if rel[0] == "bin"
            || (rel.len() == 1 && (name == "main.rs" || name == "lib.rs"))
            || name == "tests.rs"
            || in_tests_dir
        {
            continue;
        }
        let module = rel[0].trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&path).expect("a readable source file");
        // production is what comes before the test module (`#[cfg(test)] mod tests`), not
        // before the first test-only item: one `#[cfg(test)]` helper inside an impl must not
        // hide the rest of the file from the size check
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        out.push((module, path, text));
    }
    out
}

/// `crate::X` uses in `text`, comments left out.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let ident: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !ident.is_empty() {
                found.insert(ident);
            }
            rest = after;
        }
    }
    found
}

/// Module → the modules it uses, with the files that use each.
fn edges() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let files = production();
    let modules: BTreeSet<String> = files.iter().map(|f| f.0.clone()).collect();
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> =
        modules.iter().map(|m| (m.clone(), BTreeMap::new())).collect();
    for (module, path, text) in &files {
        for used in crate_uses(text) {
            if used != *module && modules.contains(&used) {
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let by = edges.get_mut(module).expect("every module has an entry");
                by.entry(used).or_default().insert(format!("{module}/{file}"));
            }
        }
    }
    edges
}

/// Every cycle's strongly connected component (Tarjan), each sorted.
fn cycles(edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges[v].keys() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn top_level_modules_use_each_other_one_way() {
    let edges = edges();
    assert!(edges.len() > 10, "the scan found the modules of src/");
    let found = cycles(&edges);
    let mut report = String::new();
    for comp in &found {
        report.push_str(&format!("cycle among {comp:?}:\n"));
        for a in comp {
            for (b, files) in &edges[a] {
                if comp.contains(b) {
                    report.push_str(&format!("  {a} -> {b} (in {files:?})\n"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "top-level modules import each other in a circle:\n{report}"
    );
}

#[test]
fn the_cycle_finder_finds_a_known_cycle() {
    // the check above is only as good as its finder: a small graph with one cycle
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "d")] {
        g.entry(a.into()).or_default().insert(b.into(), BTreeSet::new());
        g.entry(b.into()).or_default();
    }
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    assert_eq!(
        crate_uses("use crate::hnsw::Graph; // crate::storage\nlet x = crate::params::M;"),
        ["hnsw", "params"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn no_production_file_passes_the_size_a_newcomer_reads_at_once() {
    let big: Vec<String> = production()
        .iter()
        .filter(|(_, _, text)| text.lines().count() > MAX_PRODUCTION_LINES)
        .map(|(_, path, text)| format!("{} ({} lines)", path.display(), text.lines().count()))
        .collect();
    assert!(
        big.is_empty(),
        "production files over {MAX_PRODUCTION_LINES} lines: {big:?}"
    );
}
