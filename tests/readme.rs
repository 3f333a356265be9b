//! The README's snippets use only the crates of the dependency list shown beside
//! them. (That they compile is checked by `cargo test` too: `src/lib.rs` includes
//! the README as doctests. Doctests build with this crate's dev-dependencies,
//! though, so a crate missing from the README's list would go unnoticed there.)

use std::collections::BTreeSet;

const README: &str = include_str!("../README.md");

/// The fenced blocks of the README: (info string, text).
fn blocks() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut current: Option<(&str, String)> = None;
    for line in README.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim(), String::new())),
            (Some(_), Some(_)) => out.push(current.take().unwrap()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "the README has an unclosed code block");
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Crate names (with `_`) of the README's `[dependencies]` list.
fn listed_crates() -> BTreeSet<String> {
    let mut crates = BTreeSet::new();
    for (info, text) in blocks() {
        if info != "toml" || !text.contains("[dependencies]") {
            continue;
        }
        for line in text
            .lines()
            .skip_while(|l| l.trim() != "[dependencies]")
            .skip(1)
        {
            if line.trim_start().starts_with('[') {
                break;
            }
            if let Some((name, _)) = line.split_once('=') {
                crates.insert(name.trim().replace('-', "_"));
            }
        }
    }
    assert!(
        !crates.is_empty(),
        "the README shows no [dependencies] list"
    );
    crates
}

/// The first segments of the paths in a snippet: `use x::...` and `x::` where a
/// path starts, leaving out names the snippet itself imports.
fn path_roots(code: &str) -> BTreeSet<String> {
    let mut imported = BTreeSet::new();
    let mut roots = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if let Some(path) = line.strip_prefix("use ") {
            let root: String = path.chars().take_while(|&c| is_ident_char(c)).collect();
            // Names brought in below the root (`use axum::routing;`) are not crates.
            for word in path[root.len()..].split(|c: char| !is_ident_char(c)) {
                imported.insert(word.to_owned());
            }
            roots.insert(root);
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let starts_path = chars[i].is_ascii_lowercase()
                && (i == 0 || !(is_ident_char(chars[i - 1]) || matches!(chars[i - 1], ':' | '.')));
            if !starts_path {
                i += 1;
                continue;
            }
            let end = (i..chars.len())
                .find(|&j| !is_ident_char(chars[j]))
                .unwrap_or(chars.len());
            // `x::y` but not a turbofish (`f::<T>`).
            if chars[end..].starts_with(&[':', ':']) && chars.get(end + 2) != Some(&'<') {
                roots.insert(chars[i..end].iter().collect());
            }
            i = end;
        }
    }
    roots
        .into_iter()
        .filter(|r| !r.is_empty() && !imported.contains(r))
        .filter(|r| !["std", "core", "alloc", "crate", "self", "super"].contains(&r.as_str()))
        .collect()
}

#[test]
fn readme_snippets_use_only_listed_crates() {
    let listed = listed_crates();
    let rust: Vec<String> = blocks()
        .into_iter()
        .filter(|(info, _)| info.is_empty() || info.split(',').any(|w| w.trim() == "rust"))
        .map(|(_, text)| text)
        .collect();
    assert!(!rust.is_empty(), "the README has no Rust snippet");
    let mut missing = BTreeSet::new();
    for code in &rust {
        for root in path_roots(code) {
            if !listed.contains(&root) {
                missing.insert(root);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README snippets use crates missing from its [dependencies] list: {missing:?} \
         (listed: {listed:?})"
    );
}

#[test]
fn readme_blocks_name_their_language() {
    // An unmarked block is compiled as Rust by the README doctests: say what it is.
    for (info, text) in blocks() {
        assert!(
            !info.is_empty(),
            "a README code block has no language (`text`, `sh`, `toml`, `json` or `rust`):\n{text}"
        );
    }
}

#[test]
fn the_checker_sees_crates() {
    let code = "use tower::Layer;\nuse axum::{Router, routing::get};\n\
                let x = sqlx::PgPool::connect(u);\nlet y = routing::get(f);\nstd::mem::drop(x);\n\
                let v = it.collect::<Vec<_>>();\napp.into_make_service::<A>();";
    assert_eq!(
        path_roots(code),
        ["axum", "sqlx", "tower"].map(String::from).into()
    );
}
