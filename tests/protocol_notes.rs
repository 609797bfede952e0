//! The protocol notes the code cites exist: every `docs/protocols.md §N` or
//! `§N.M` in a comment names a section heading of `docs/protocols.md`, and
//! no comment cites the old path outside `docs/`.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The section numbers of the document's headings: `## 4. …` → "4", `### 4.3 …` → "4.3".
fn sections(doc: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .filter_map(|title| title.split_whitespace().next())
        .map(|number| number.trim_end_matches('.').to_string())
        .filter(|n| n.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect()
}

/// The section numbers a line cites after `docs/protocols.md` (`§2 and §3`, `§1.6`).
fn cited(line: &str) -> Vec<String> {
    let Some((_, rest)) = line.split_once("docs/protocols.md") else { return Vec::new() };
    let rest = rest.split(')').next().unwrap_or(rest);
    rest.split('§')
        .skip(1)
        .map(|s| s.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect::<String>())
        .map(|s| s.trim_end_matches('.').to_string())
        .collect()
}

#[test]
fn every_cited_section_exists() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/protocols.md")).expect("docs/protocols.md exists");
    let known = sections(&doc);
    for n in ["1", "1.6", "2", "3", "3.3", "4", "4.2", "4.3", "5", "6"] {
        assert!(known.contains(&n.to_string()), "section {n} in {known:?}");
    }
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "fuzz", "crates"] {
        rust_files(&Path::new(ROOT).join(dir), &mut files);
    }
    let mut citations = 0;
    // This file talks about the citations rather than making them.
    files.retain(|f| !f.ends_with("tests/protocol_notes.rs"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", file.display(), i + 1);
            if !line.contains("protocols.md") || line.contains("fn ") || line.contains('"') {
                continue;
            }
            assert!(line.contains("docs/protocols.md"), "{at}: cite docs/protocols.md: {line}");
            for section in cited(line) {
                assert!(known.contains(&section), "{at}: §{section} is not a section of docs/protocols.md");
                citations += 1;
            }
        }
    }
    assert!(citations >= 16, "the citations were found ({citations})");
}

#[test]
fn citations_are_read_as_written() {
    assert_eq!(cited("//! WebSocket quote feeds (docs/protocols.md §2 and §3)."), ["2", "3"]);
    assert_eq!(cited("//! strike-off (docs/protocols.md §1.6)."), ["1.6"]);
    assert_eq!(sections("## 4. Server-Sent Events\n### 4.3 Subscribing\n## Contents"), ["4", "4.3"]);
}
