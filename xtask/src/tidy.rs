//! `cargo xtask tidy`: the house rules of DESIGN.md §5 that a machine can check.
//!
//! Sources (every `.rs` under `crates/`, `xtask/`, `benches/`, `fuzz/`, skipping `target`):
//! - the first non-empty line is a `//!` doc;
//! - no ignored and no should-panic tests (outside comments).
//!
//! Manifests (every workspace member):
//! - `version`, `edition`, `rust-version`, `license`, `repository` inherited from the
//!   workspace, and `[lints] workspace = true`;
//! - every dependency (normal, dev, build, target-specific) uses `workspace = true`;
//! - publishable members have a `description`, a `readme` and a `README.md` beside the manifest;
//! - package names follow the folders (`crates/<x>` → `infermux-<x>`, the facade is
//!   `infermux`, `crates/providers/<x>` → `infermux-<x>`); `xtask` and `benches` have
//!   `publish = false`.
//!
//! Every violation is reported as `file:line: message` before the check fails.

use std::{fs, path::Path};

use crate::{
    Result,
    manifest::{DepKind, Member, Workspace},
    read_to_string, rel,
};

/// Folders whose `.rs` files are checked.
const SOURCE_ROOTS: &[&str] = &["crates", "xtask", "benches", "fuzz"];

/// Package fields every member inherits from `[workspace.package]`.
const INHERITED: &[&str] = &[
    "version",
    "edition",
    "rust-version",
    "license",
    "repository",
];

/// Test attributes the house rules forbid, built so this file does not contain them.
const FORBIDDEN_ATTRIBUTES: &[&str] = &[concat!("#[", "ignore"), concat!("#[", "should_panic")];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Violation {
    /// File relative to the root.
    pub(crate) file: String,
    /// 1-based line.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// `cargo xtask tidy`: prints every violation, then fails if there was any.
pub(crate) fn run(root: &Path) -> Result<()> {
    let violations = check(root)?;
    if violations.is_empty() {
        println!("tidy: ok");
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    Err(format!("tidy: {} violation(s)", violations.len()))
}

/// Every violation in the tree, sorted by file and line.
pub(crate) fn check(root: &Path) -> Result<Vec<Violation>> {
    let mut violations = Vec::new();
    let mut files = Vec::new();
    for dir in SOURCE_ROOTS {
        collect_rs_files(&root.join(dir), &mut files)?;
    }
    files.sort();
    for file in &files {
        let text = read_to_string(file)?;
        check_source(&rel(root, file), &text, &mut violations);
    }
    let workspace = Workspace::load(root)?;
    for member in &workspace.members {
        check_member(root, member, &mut violations);
    }
    violations.sort();
    Ok(violations)
}

fn collect_rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rs_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The source rules for one `.rs` file.
pub(crate) fn check_source(file: &str, text: &str, out: &mut Vec<Violation>) {
    let mut push = |line: usize, message: String| {
        out.push(Violation {
            file: file.to_owned(),
            line,
            message,
        });
    };
    match text
        .lines()
        .enumerate()
        .find(|(_, line)| !line.trim().is_empty())
    {
        Some((_, line)) if line.trim_start().starts_with("//!") => {}
        Some((index, _)) => push(index + 1, "file must open with a `//!` doc comment".into()),
        None => push(
            1,
            "empty file: it must open with a `//!` doc comment".into(),
        ),
    }
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue; // prose may name the attributes
        }
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        for attribute in FORBIDDEN_ATTRIBUTES {
            if compact.contains(attribute) {
                push(
                    index + 1,
                    format!("`{attribute}]` is not allowed (DESIGN.md §5)"),
                );
            }
        }
    }
}

/// The manifest rules for one member.
pub(crate) fn check_member(root: &Path, member: &Member, out: &mut Vec<Violation>) {
    let m = &member.manifest;
    let package_line = m.section_line("package");
    let mut push = |line: usize, message: String| {
        out.push(Violation {
            file: m.rel_path.clone(),
            line,
            message,
        });
    };

    for field in INHERITED {
        if !m.inherits("package", field) {
            let line = m.get("package", field).map_or(package_line, |i| i.line);
            push(
                line,
                format!("`{field}` must be inherited: `{field}.workspace = true`"),
            );
        }
    }
    if m.get("lints", "workspace")
        .is_none_or(|i| i.value != "true")
    {
        push(
            m.section_line("lints"),
            "missing `[lints] workspace = true`".into(),
        );
    }

    for (kind, dep) in m.deps() {
        if kind != DepKind::Workspace && !dep.workspace {
            push(
                dep.line,
                format!(
                    "[{}] `{}` must use `workspace = true` (versions live in the root \
                     [workspace.dependencies])",
                    dep.section, dep.key
                ),
            );
        }
    }

    if member.publishable {
        match m.get_str("package", "description") {
            Some(text) if !text.trim().is_empty() => {}
            _ if m.inherits("package", "description") => {}
            _ => push(
                package_line,
                "publishable crate needs a `description`".into(),
            ),
        }
        if !m.has("package", "readme") {
            push(
                package_line,
                "publishable crate needs `readme = \"README.md\"`".into(),
            );
        }
        let readme = m
            .get_str("package", "readme")
            .unwrap_or_else(|| "README.md".into());
        if !root.join(&member.dir).join(&readme).is_file() {
            push(
                package_line,
                format!("publishable crate needs {}/{readme}", member.dir),
            );
        }
    }

    if let Some(expected) = expected_name(&member.dir)
        && member.name != expected
    {
        let line = m.get("package", "name").map_or(package_line, |i| i.line);
        push(
            line,
            format!("package for `{}` must be named `{expected}`", member.dir),
        );
    }
    if (member.dir == "xtask" || member.dir == "benches") && member.publishable {
        push(package_line, "must have `publish = false`".into());
    }
}

/// The package name a member folder must have, when the house rules fix one.
pub(crate) fn expected_name(dir: &str) -> Option<String> {
    let parts: Vec<&str> = dir.split('/').collect();
    match parts.as_slice() {
        ["crates", "infermux"] => Some("infermux".into()),
        ["crates", "providers", x] | ["crates", x] => Some(format!("infermux-{x}")),
        ["xtask"] => Some("xtask".into()),
        ["benches"] => Some("infermux-benches".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    /// The whole tree follows the house rules (`cargo xtask tidy` as a test).
    #[test]
    fn tidy() {
        let violations = check(&crate::project_root()).unwrap_or_else(|e| panic!("{e}"));
        let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "tidy found:\n{}", report.join("\n"));
    }

    #[test]
    fn source_rules() {
        let mut out = Vec::new();
        check_source("a.rs", "\n\n//! ok\nfn f() {}\n", &mut out);
        assert!(out.is_empty());
        check_source("b.rs", "// not a doc\n", &mut out);
        check_source("c.rs", "", &mut out);
        let ignored = format!("//! doc\n{}]\nfn t() {{}}\n", FORBIDDEN_ATTRIBUTES[0]);
        check_source("d.rs", &ignored, &mut out);
        let should = format!("//! doc\n{}(expected = \"x\")]\n", FORBIDDEN_ATTRIBUTES[1]);
        check_source("e.rs", &should, &mut out);
        let lines: Vec<String> = out
            .iter()
            .map(|v| format!("{}:{}", v.file, v.line))
            .collect();
        assert_eq!(lines, ["b.rs:1", "c.rs:1", "d.rs:2", "e.rs:2"]);
    }

    #[test]
    fn manifest_rules() {
        let text = r#"[package]
name = "wrong"
version = "0.1.0"
edition.workspace = true
rust-version.workspace = true
license.workspace = true
repository.workspace = true

[dependencies]
serde = "1"
tokio.workspace = true
"#;
        let manifest = Manifest::parse("crates/core/Cargo.toml", text);
        let member = Member {
            dir: "crates/core".into(),
            name: "wrong".into(),
            publishable: true,
            manifest,
        };
        let mut out = Vec::new();
        check_member(Path::new("/nonexistent"), &member, &mut out);
        let got: Vec<String> = out.iter().map(ToString::to_string).collect();
        let expected_prefixes = [
            "crates/core/Cargo.toml:3: `version` must be inherited",
            "crates/core/Cargo.toml:1: missing `[lints] workspace = true`",
            "crates/core/Cargo.toml:10: [dependencies] `serde` must use `workspace = true`",
            "crates/core/Cargo.toml:1: publishable crate needs a `description`",
            "crates/core/Cargo.toml:1: publishable crate needs `readme",
            "crates/core/Cargo.toml:1: publishable crate needs crates/core/README.md",
            "crates/core/Cargo.toml:2: package for `crates/core` must be named `infermux-core`",
        ];
        assert_eq!(got.len(), expected_prefixes.len(), "{got:#?}");
        for (got, prefix) in got.iter().zip(expected_prefixes) {
            assert!(got.starts_with(prefix), "{got} should start with {prefix}");
        }
    }

    #[test]
    fn names_follow_folders() {
        assert_eq!(
            expected_name("crates/infermux").as_deref(),
            Some("infermux")
        );
        assert_eq!(
            expected_name("crates/core").as_deref(),
            Some("infermux-core")
        );
        assert_eq!(
            expected_name("crates/providers/openai-compat").as_deref(),
            Some("infermux-openai-compat")
        );
        assert_eq!(
            expected_name("benches").as_deref(),
            Some("infermux-benches")
        );
        assert_eq!(expected_name("somewhere/else"), None);
    }
}
