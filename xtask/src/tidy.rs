//! `cargo xtask tidy`: the house rules that a machine can check (ARCHITECTURE.md,
//! "Cross-cutting concerns").
//!
//! Sources (every `.rs` under `crates/`, `xtask/`, `benches/`, `fuzz/`, skipping `target`):
//! - the first non-empty line is a `//!` doc;
//! - no ignored and no should-panic tests (outside comments).
//!
//! Manifests (every workspace member):
//! - `version`, `edition`, `rust-version`, `license`, `repository` inherited from the
//!   workspace, and `[lints] workspace = true`;
//! - every dependency (normal, dev, build, target-specific) uses `workspace = true`;
//! - publishable members have a `description`, a `readme` and a `README.md` beside the manifest,
//!   and the licence texts `LICENSE-MIT` and `LICENSE-APACHE` (links to the root's) that
//!   `license = "MIT OR Apache-2.0"` asks every copy to carry;
//! - a publishable crate's README with a Rust code block is compiled as doctests: some source
//!   file includes it with `#[doc = include_str!("…/README.md")]` (the crate's own `lib.rs`
//!   under `#[cfg(doctest)]`, or, for a provider, the facade's generated `providers.rs`); no
//!   README example is `ignore`d or `should_panic`; a provider README's examples name no
//!   `infermux_*` crate, since they are compiled in the facade and written as its users write
//!   them;
//! - package names follow the folders (`crates/<x>` → `infermux-<x>`, the facade is
//!   `infermux`, `crates/providers/<x>` → `infermux-<x>`); `xtask` and `benches` have
//!   `publish = false`.
//!
//! Every violation is reported as `file:line: message` before the check fails.

use std::{
    collections::BTreeSet,
    fs,
    path::{Component, Path, PathBuf},
};

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

/// The licence texts every published crate carries (`license = "MIT OR Apache-2.0"`).
const LICENCE_FILES: &[&str] = &["LICENSE-MIT", "LICENSE-APACHE"];

/// Test attributes the house rules forbid, built so this file does not contain them.
const FORBIDDEN_ATTRIBUTES: &[&str] = &[concat!("#[", "ignore"), concat!("#[", "should_panic")];

/// READMEs whose examples are not doc-tested yet, each waiting for a change on another branch.
/// An entry whose README is doc-tested (or has no Rust block) is itself a violation, so the list
/// only shrinks.
const README_DOCTEST_PENDING: &[&str] = &[];

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
    let mut doctested = BTreeSet::new();
    for file in &files {
        let text = read_to_string(file)?;
        let file = rel(root, file);
        check_source(&file, &text, &mut violations);
        doctested_readmes(&file, &text, &mut doctested);
    }
    let workspace = Workspace::load(root)?;
    for member in &workspace.members {
        check_member(root, member, &mut violations);
        if member.publishable {
            let readme = member
                .manifest
                .get_str("package", "readme")
                .unwrap_or_else(|| "README.md".into());
            let readme = format!("{}/{readme}", member.dir);
            if let Ok(text) = fs::read_to_string(root.join(&readme)) {
                check_readme(
                    &readme,
                    &text,
                    &doctested,
                    README_DOCTEST_PENDING,
                    &mut violations,
                );
            }
        }
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
                    format!("`{attribute}]` is not allowed: a test runs and says what it checks"),
                );
            }
        }
        // the same attributes behind a condition: `#[cfg_attr(any(), ignore)]`
        if let Some(at) = compact.find(concat!("#[", "cfg_attr(")) {
            let rest = &compact[at..];
            for word in ["ignore", "should_panic"] {
                let found = rest.match_indices(word).any(|(i, w)| {
                    let before = i.checked_sub(1).and_then(|j| rest.as_bytes().get(j));
                    let after = rest.as_bytes().get(i + w.len());
                    before.is_some_and(|b| matches!(b, b',' | b'('))
                        && after.is_some_and(|b| matches!(b, b')' | b',' | b'=' | b'('))
                });
                if found {
                    push(
                        index + 1,
                        format!(
                            "`{word}` inside `cfg_attr` is not allowed: a test runs and says what it checks"
                        ),
                    );
                }
            }
        }
    }
}

/// Adds to `out` every file a `doc = include_str!("…")` attribute of `text` (a source file at
/// `file`, relative to the root) includes, resolved against the file's folder: the Markdown
/// that rustdoc compiles as doctests of the crate `file` belongs to.
pub(crate) fn doctested_readmes(file: &str, text: &str, out: &mut BTreeSet<String>) {
    const NEEDLE: &str = "doc=include_str!(\"";
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    for line in text.lines() {
        if line.trim_start().starts_with("//") {
            continue; // a commented-out include tests nothing
        }
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(start) = compact.find(NEEDLE).map(|i| i + NEEDLE.len()) else {
            continue;
        };
        let Some(len) = compact[start..].find('"') else {
            continue;
        };
        out.insert(normalize(&dir.join(&compact[start..start + len])));
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::ParentDir if parts.last().is_some_and(|p| p != "..") => {
                parts.pop();
            }
            Component::CurDir => {}
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts
        .iter()
        .collect::<PathBuf>()
        .to_string_lossy()
        .replace('\\', "/")
}

/// One fenced code block rustdoc compiles as Rust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RustBlock {
    /// 1-based line of the opening fence.
    pub(crate) line: usize,
    /// Its info string (`rust,no_run`, or empty).
    pub(crate) info: String,
    /// The block's lines.
    pub(crate) code: Vec<String>,
}

/// Code-block attributes rustdoc reads as Rust.
fn is_rustdoc_attribute(token: &str) -> bool {
    matches!(
        token,
        "rust"
            | "no_run"
            | "ignore"
            | "should_panic"
            | "compile_fail"
            | "test_harness"
            | "standalone_crate"
    ) || token.starts_with("edition")
        || token.starts_with("ignore-")
}

/// The fenced code blocks of a Markdown text that rustdoc compiles as Rust: an empty info
/// string, or one naming `rust` or only rustdoc attributes (` ```sh `, ` ```text ` are not).
pub(crate) fn rust_blocks(text: &str) -> Vec<RustBlock> {
    let mut blocks = Vec::new();
    // (fence char, fence length, the block when it is Rust)
    let mut open: Option<(char, usize, Option<RustBlock>)> = None;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let trimmed = line.trim_start_matches(' ');
        let fence = ['`', '~']
            .into_iter()
            .map(|c| (c, trimmed.chars().take_while(|&x| x == c).count()))
            .find(|&(_, n)| n >= 3 && indent <= 3);
        match (&mut open, fence) {
            (Some((c, n, _)), Some((fc, fn_)))
                if fc == *c && fn_ >= *n && trimmed[fn_..].trim().is_empty() =>
            {
                if let Some((_, _, Some(block))) = open.take() {
                    blocks.push(block);
                }
            }
            (Some((_, _, block)), _) => {
                if let Some(block) = block {
                    block.code.push(line.to_owned());
                }
            }
            (None, Some((c, n))) => {
                let info = trimmed[n..].trim().to_owned();
                let tokens: Vec<&str> = info
                    .split([',', ' ', '\t'])
                    .filter(|t| !t.is_empty())
                    .collect();
                let rust =
                    tokens.contains(&"rust") || tokens.iter().all(|t| is_rustdoc_attribute(t));
                let block = rust.then(|| RustBlock {
                    line: index + 1,
                    info,
                    code: Vec::new(),
                });
                open = Some((c, n, block));
            }
            (None, None) => {}
        }
    }
    // An unclosed fence runs to the end of the file.
    if let Some((_, _, Some(block))) = open {
        blocks.push(block);
    }
    blocks
}

/// The README rules for the README at `readme` (relative to the root) of a publishable crate:
/// its Rust blocks are compiled as doctests (`readme` is in `doctested`), none is `ignore`d or
/// `should_panic`, and a provider README's examples go through the facade. A README in
/// `pending` is exempt from the first rule, and is a violation once the exemption is stale.
pub(crate) fn check_readme(
    readme: &str,
    text: &str,
    doctested: &BTreeSet<String>,
    pending: &[&str],
    out: &mut Vec<Violation>,
) {
    let mut push = |line: usize, message: String| {
        out.push(Violation {
            file: readme.to_owned(),
            line,
            message,
        });
    };
    let blocks = rust_blocks(text);
    let is_doctested = doctested.contains(readme);
    if pending.contains(&readme) {
        if blocks.is_empty() || is_doctested {
            push(
                1,
                "this README no longer needs its exemption: remove it from \
                 README_DOCTEST_PENDING in xtask/src/tidy.rs"
                    .into(),
            );
        }
        return;
    }
    let Some(first) = blocks.first() else {
        return;
    };
    if !is_doctested {
        push(
            first.line,
            "README has Rust examples but no crate compiles them as doctests: add \
             `#[cfg(doctest)] #[doc = include_str!(\"../README.md\")] struct ReadmeDoctests;` \
             to the crate's src/lib.rs (a provider's README is included by `cargo xtask codegen`)"
                .into(),
        );
    }
    let provider = readme.starts_with("crates/providers/");
    for block in &blocks {
        let tokens: Vec<&str> = block.info.split([',', ' ', '\t']).collect();
        for forbidden in ["ignore", "should_panic"] {
            if tokens
                .iter()
                .any(|t| *t == forbidden || t.starts_with(&format!("{forbidden}-")))
            {
                push(
                    block.line,
                    format!("a `{forbidden}` README example is not tested: make it compile"),
                );
            }
        }
        if provider {
            for (offset, line) in block.code.iter().enumerate() {
                if names_internal_crate(line) {
                    push(
                        block.line + 1 + offset,
                        "provider README examples are compiled in the facade: write \
                         `infermux::<provider>::…` and `infermux::…`, as its users do, not \
                         `infermux_*` crates"
                            .into(),
                    );
                }
            }
        }
    }
}

/// Whether a line of Rust names an `infermux_*` crate (`infermux_core::…`).
fn names_internal_crate(line: &str) -> bool {
    line.match_indices("infermux_").any(|(i, _)| {
        !line[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
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
        for licence in LICENCE_FILES {
            // (a link to the root's copy: `cargo package` ships the file it points at)
            if !root.join(&member.dir).join(licence).is_file() {
                push(
                    package_line,
                    format!("publishable crate needs {}/{licence}", member.dir),
                );
            }
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
        let hidden = format!(
            "//! doc
{}any(), ignore)]
",
            concat!("#[", "cfg_attr(")
        );
        check_source("f.rs", &hidden, &mut out);
        let fine = format!(
            "//! doc
{}test, allow(ignore_me))]
",
            concat!("#[", "cfg_attr(")
        );
        check_source("g.rs", &fine, &mut out);
        let lines: Vec<String> = out
            .iter()
            .map(|v| format!("{}:{}", v.file, v.line))
            .collect();
        assert_eq!(lines, ["b.rs:1", "c.rs:1", "d.rs:2", "e.rs:2", "f.rs:2"]);
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
            "crates/core/Cargo.toml:1: publishable crate needs crates/core/LICENSE-MIT",
            "crates/core/Cargo.toml:1: publishable crate needs crates/core/LICENSE-APACHE",
            "crates/core/Cargo.toml:2: package for `crates/core` must be named `infermux-core`",
        ];
        assert_eq!(got.len(), expected_prefixes.len(), "{got:#?}");
        for (got, prefix) in got.iter().zip(expected_prefixes) {
            assert!(got.starts_with(prefix), "{got} should start with {prefix}");
        }
    }

    /// A README with a Rust example that nothing includes, or whose include is commented out
    /// or points at another file, fails; the same README included by the crate passes.
    #[test]
    fn readme_examples_must_be_doctested() {
        let readme = "# infermux-core\n\n```sh\ncargo run\n```\n\n```rust\nlet x = 1;\n```\n";
        let check = |sources: &[(&str, &str)]| {
            let mut doctested = BTreeSet::new();
            for (file, text) in sources {
                doctested_readmes(file, text, &mut doctested);
            }
            let mut out = Vec::new();
            check_readme("crates/core/README.md", readme, &doctested, &[], &mut out);
            out.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        let included = "//! Core.\n#[cfg(doctest)]\n#[doc = include_str!(\"../README.md\")]\nstruct ReadmeDoctests;\n";
        assert_eq!(
            check(&[("crates/core/src/lib.rs", included)]),
            Vec::<String>::new()
        );
        // As a crate-level doc, and from the facade's providers.rs, it counts too.
        let inner = "#![doc = include_str!(\"../README.md\")]\n";
        assert!(check(&[("crates/core/src/lib.rs", inner)]).is_empty());
        let from_facade = "#[doc = include_str!(\"../../core/README.md\")]\n";
        assert!(check(&[("crates/infermux/src/providers.rs", from_facade)]).is_empty());

        let wrong: [&[(&str, &str)]; 4] = [
            &[],
            &[(
                "crates/core/src/lib.rs",
                "//! Core.\n// #[doc = include_str!(\"../README.md\")]\n",
            )],
            &[("crates/http/src/lib.rs", included)],
            &[(
                "crates/core/src/lib.rs",
                "//! Core.\nconst R: &str = include_str!(\"../README.md\");\n",
            )],
        ];
        for sources in wrong {
            let got = check(sources);
            assert_eq!(got.len(), 1, "{sources:?}: {got:?}");
            assert!(
                got[0].starts_with("crates/core/README.md:7: README has Rust examples"),
                "{got:?}"
            );
        }
    }

    #[test]
    fn readme_rules_on_blocks() {
        let doctested: BTreeSet<String> = ["crates/providers/x/README.md".to_owned()].into();
        let text = "```\nbare();\n```\n~~~text\nnot rust\n~~~\n```rust,ignore\nx();\n```\n\
                    ```should_panic\nuse infermux_core::Error;\n# use infermux::Client; // fine\n```\n";
        let mut out = Vec::new();
        check_readme(
            "crates/providers/x/README.md",
            text,
            &doctested,
            &[],
            &mut out,
        );
        let got: Vec<String> = out.iter().map(ToString::to_string).collect();
        let expected_prefixes = [
            "crates/providers/x/README.md:7: a `ignore` README example",
            "crates/providers/x/README.md:10: a `should_panic` README example",
            "crates/providers/x/README.md:11: provider README examples are compiled in the facade",
        ];
        assert_eq!(got.len(), expected_prefixes.len(), "{got:#?}");
        for (got, prefix) in got.iter().zip(expected_prefixes) {
            assert!(got.starts_with(prefix), "{got} should start with {prefix}");
        }
        // Which fences rustdoc compiles as Rust.
        let lines: Vec<(usize, String)> = rust_blocks(text)
            .into_iter()
            .map(|b| (b.line, b.info))
            .collect();
        assert_eq!(
            lines,
            [
                (1, String::new()),
                (7, "rust,ignore".into()),
                (10, "should_panic".into())
            ]
        );
        assert!(rust_blocks("```sh\ncargo\n```\n```toml\n[a]\n```\n").is_empty());
        assert_eq!(rust_blocks("````rust,no_run\n```\n````\n")[0].code, ["```"]);
    }

    /// A pending README passes while it is not doc-tested, and fails once it is.
    #[test]
    fn stale_readme_exemptions_fail() {
        let readme = "crates/resilience/README.md";
        let text = "```rust,no_run\nlet x = 1;\n```\n";
        let mut out = Vec::new();
        check_readme(readme, text, &BTreeSet::new(), &[readme], &mut out);
        assert!(out.is_empty(), "{out:?}");
        let doctested: BTreeSet<String> = [readme.to_owned()].into();
        check_readme(readme, text, &doctested, &[readme], &mut out);
        check_readme(
            readme,
            "no examples\n",
            &BTreeSet::new(),
            &[readme],
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            out.iter()
                .all(|v| v.message.contains("README_DOCTEST_PENDING"))
        );
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
