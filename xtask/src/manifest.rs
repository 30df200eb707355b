//! A tiny, line-based reader for the subset of TOML our `Cargo.toml` files use, and the
//! workspace model built on it.
//!
//! It knows tables (`[a.b]`, `[[bin]]`), `key = value` and dotted keys (`x.workspace = true`),
//! strings, inline tables and arrays (which may span lines). That is all tidy, codegen and
//! publish-order need, so xtask does not depend on the `toml` crate.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{Result, read_to_string};

/// One `key = value` line of a manifest.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The table the key is in, as written between the brackets (`""` before any table).
    pub(crate) section: String,
    /// The key with its dotted parts unquoted and joined by `.`.
    pub(crate) key: String,
    /// The raw value text (arrays spanning lines joined with spaces), comments removed.
    pub(crate) value: String,
    /// 1-based line number of the key.
    pub(crate) line: usize,
}

/// A parsed `Cargo.toml`.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    /// Path relative to the repository root, with `/` separators (for messages).
    pub(crate) rel_path: String,
    /// Every `key = value` in file order.
    pub(crate) items: Vec<Item>,
    /// Every table header and its 1-based line.
    pub(crate) sections: Vec<(String, usize)>,
}

/// Which dependency table a dependency was declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DepKind {
    /// `[dependencies]`
    Normal,
    /// `[build-dependencies]`
    Build,
    /// `[dev-dependencies]`
    Dev,
    /// `[workspace.dependencies]` of the root manifest
    Workspace,
}

/// One dependency declaration, merged from all the keys that describe it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dep {
    /// The dependency key (the name the crate is imported under).
    pub(crate) key: String,
    /// `package = "..."` if renamed.
    pub(crate) package: Option<String>,
    /// `workspace = true`
    pub(crate) workspace: bool,
    /// `version = "..."` (or a bare string value)
    pub(crate) version: Option<String>,
    /// `path = "..."`
    pub(crate) path: Option<String>,
    /// The table it was declared in, as written (e.g. `target.'cfg(unix)'.dependencies`).
    pub(crate) section: String,
    /// 1-based line of its first key.
    pub(crate) line: usize,
}

impl Dep {
    /// The package name this dependency refers to.
    pub(crate) fn package_name(&self) -> &str {
        self.package.as_deref().unwrap_or(&self.key)
    }
}

impl Manifest {
    /// Reads and parses `root/rel_path`.
    pub(crate) fn load(root: &Path, rel_path: &str) -> Result<Manifest> {
        let text = read_to_string(&root.join(rel_path))?;
        Ok(Manifest::parse(rel_path, &text))
    }

    /// Parses manifest text; `rel_path` is only used in messages.
    pub(crate) fn parse(rel_path: &str, text: &str) -> Manifest {
        let mut manifest = Manifest {
            rel_path: rel_path.to_owned(),
            items: Vec::new(),
            sections: Vec::new(),
        };
        let mut section = String::new();
        let mut lines = text.lines().enumerate();
        while let Some((index, raw)) = lines.next() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix('[') {
                let header = header.trim_start_matches('[');
                let header = header.trim_end().trim_end_matches(']');
                section = split_dotted(header).join(".");
                manifest.sections.push((section.clone(), index + 1));
                continue;
            }
            let Some(eq) = find_outside_strings(line, '=') else {
                continue;
            };
            let key = split_dotted(&line[..eq]).join(".");
            let mut value = line[eq + 1..].trim().to_owned();
            while depth(&value) > 0 {
                let Some((_, next)) = lines.next() else { break };
                value.push(' ');
                value.push_str(strip_comment(next).trim());
            }
            manifest.items.push(Item {
                section: section.clone(),
                key,
                value,
                line: index + 1,
            });
        }
        manifest
    }

    /// The item `key` in table `section`.
    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&Item> {
        self.items
            .iter()
            .find(|item| item.section == section && item.key == key)
    }

    /// The string value of `key` in `section`.
    pub(crate) fn get_str(&self, section: &str, key: &str) -> Option<String> {
        self.get(section, key).and_then(|item| unquote(&item.value))
    }

    /// The line of a table header, or 1 when the table is absent.
    pub(crate) fn section_line(&self, section: &str) -> usize {
        self.sections
            .iter()
            .find(|(name, _)| name == section)
            .map_or(1, |&(_, line)| line)
    }

    /// Whether `field` in `section` is set at all (directly or inherited).
    pub(crate) fn has(&self, section: &str, field: &str) -> bool {
        let dotted = format!("{field}.");
        self.items.iter().any(|item| {
            item.section == section && (item.key == field || item.key.starts_with(&dotted))
        })
    }

    /// Whether `field` in `section` is inherited: `field.workspace = true` or
    /// `field = { workspace = true }`.
    pub(crate) fn inherits(&self, section: &str, field: &str) -> bool {
        if self
            .get(section, &format!("{field}.workspace"))
            .is_some_and(|i| i.value == "true")
        {
            return true;
        }
        self.get(section, field)
            .and_then(|item| inline_table(&item.value))
            .is_some_and(|table| table.iter().any(|(k, v)| k == "workspace" && v == "true"))
    }

    /// `[package] publish` is neither `false` nor `[]`.
    pub(crate) fn publishable(&self) -> bool {
        match self.get("package", "publish") {
            Some(item) => {
                let value = item.value.replace(' ', "");
                value != "false" && value != "[]"
            }
            None => true,
        }
    }

    /// Every dependency declared in this manifest, in file order (target-specific tables
    /// included, mapped to their kind).
    pub(crate) fn deps(&self) -> Vec<(DepKind, Dep)> {
        let mut deps: Vec<(DepKind, Dep)> = Vec::new();
        for item in &self.items {
            let sec = split_dotted(&item.section);
            let key = split_dotted(&item.key);
            // Strip `target.<cfg>.`.
            let sec: &[String] = if sec.len() >= 3 && sec[0] == "target" {
                &sec[2..]
            } else {
                &sec
            };
            let (kind, rest) = match sec {
                [w, d, rest @ ..] if w == "workspace" && d == "dependencies" => {
                    (DepKind::Workspace, rest)
                }
                [table, rest @ ..] => match table.as_str() {
                    "dependencies" => (DepKind::Normal, rest),
                    "dev-dependencies" => (DepKind::Dev, rest),
                    "build-dependencies" => (DepKind::Build, rest),
                    _ => continue,
                },
                [] => continue,
            };
            // Either `[deps] name = ...` / `name.attr = ...` or `[deps.name] attr = ...`.
            let (name, attr) = match (rest, key.as_slice()) {
                ([], [name]) => (name.clone(), None),
                ([], [name, attr]) => (name.clone(), Some(attr.clone())),
                ([name], [attr]) => (name.clone(), Some(attr.clone())),
                _ => continue,
            };
            let table_name = self.dep_table(item).unwrap_or_default();
            let index = match deps
                .iter()
                .position(|(k, d)| *k == kind && d.key == name && d.section == table_name)
            {
                Some(index) => index,
                None => {
                    let dep = Dep {
                        key: name,
                        section: table_name,
                        line: item.line,
                        ..Dep::default()
                    };
                    deps.push((kind, dep));
                    deps.len() - 1
                }
            };
            let dep = &mut deps[index].1;
            match attr {
                None => {
                    if let Some(version) = unquote(&item.value) {
                        dep.version = Some(version);
                    } else if let Some(table) = inline_table(&item.value) {
                        for (k, v) in table {
                            dep.set(&k, &v);
                        }
                    }
                }
                Some(attr) => dep.set(&attr, &item.value),
            }
        }
        deps
    }

    /// The dependency table an item belongs to, without a trailing `.<name>` subtable.
    fn dep_table(&self, item: &Item) -> Option<String> {
        let parts = split_dotted(&item.section);
        let table_at = parts.iter().position(|p| {
            p == "dependencies" || p == "dev-dependencies" || p == "build-dependencies"
        })?;
        Some(parts[..=table_at].join("."))
    }
}

impl Dep {
    fn set(&mut self, attr: &str, value: &str) {
        match attr {
            "workspace" => self.workspace = value == "true",
            "version" => self.version = unquote(value),
            "path" => self.path = unquote(value),
            "package" => self.package = unquote(value),
            _ => {}
        }
    }
}

/// A workspace member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Folder relative to the root, `/`-separated (e.g. `crates/providers/openai-compat`).
    pub(crate) dir: String,
    /// Its parsed manifest.
    pub(crate) manifest: Manifest,
    /// `[package] name`.
    pub(crate) name: String,
    /// Not `publish = false`.
    pub(crate) publishable: bool,
}

/// The root manifest and every member's.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    /// The root `Cargo.toml`.
    pub(crate) manifest: Manifest,
    /// Members sorted by folder.
    pub(crate) members: Vec<Member>,
}

impl Workspace {
    /// Loads the root manifest and expands `[workspace] members` (a trailing `/*` glob is
    /// supported), minus `exclude`.
    pub(crate) fn load(root: &Path) -> Result<Workspace> {
        let manifest = Manifest::load(root, "Cargo.toml")?;
        let list = |key: &str| {
            manifest
                .get("workspace", key)
                .and_then(|item| array(&item.value))
                .unwrap_or_default()
                .iter()
                .filter_map(|v| unquote(v))
                .collect::<Vec<_>>()
        };
        let exclude = list("exclude");
        let mut dirs = Vec::new();
        for pattern in list("members") {
            if let Some(parent) = pattern.strip_suffix("/*") {
                for entry in sorted_dir(&root.join(parent))? {
                    if entry.join("Cargo.toml").is_file() {
                        let name = entry.file_name().unwrap_or_default().to_string_lossy();
                        dirs.push(format!("{parent}/{name}"));
                    }
                }
            } else if pattern.contains('*') {
                return Err(format!("Cargo.toml: unsupported members glob `{pattern}`"));
            } else {
                dirs.push(pattern);
            }
        }
        dirs.retain(|dir| !exclude.contains(dir));
        dirs.sort();
        dirs.dedup();
        let mut members = Vec::new();
        for dir in dirs {
            let manifest = Manifest::load(root, &format!("{dir}/Cargo.toml"))?;
            let name = manifest
                .get_str("package", "name")
                .ok_or_else(|| format!("{}: no [package] name", manifest.rel_path))?;
            let publishable = manifest.publishable();
            members.push(Member {
                dir,
                manifest,
                name,
                publishable,
            });
        }
        Ok(Workspace { manifest, members })
    }

    /// The member whose package is `name`.
    pub(crate) fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// Sub-directories of `dir`, sorted by name (empty if `dir` does not exist).
pub(crate) fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

/// The value of a TOML basic (`"…"`) or literal (`'…'`) string, or `None`.
pub(crate) fn unquote(value: &str) -> Option<String> {
    let value = value.trim();
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        return Some(value[1..value.len() - 1].to_owned());
    }
    if !(value.len() >= 2 && value.starts_with('"') && value.ends_with('"')) {
        return None;
    }
    let mut out = String::new();
    let mut chars = value[1..value.len() - 1].chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The `key = value` pairs of an inline table `{ … }`, or `None`.
pub(crate) fn inline_table(value: &str) -> Option<Vec<(String, String)>> {
    let inner = value.trim().strip_prefix('{')?.strip_suffix('}')?;
    Some(
        split_top_level(inner)
            .into_iter()
            .filter_map(|part| {
                let eq = find_outside_strings(&part, '=')?;
                Some((
                    split_dotted(&part[..eq]).join("."),
                    part[eq + 1..].trim().to_owned(),
                ))
            })
            .collect(),
    )
}

/// The raw elements of an array `[ … ]`, or `None`.
pub(crate) fn array(value: &str) -> Option<Vec<String>> {
    let inner = value.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(split_top_level(inner))
}

/// Splits on commas that are outside strings, brackets and braces; drops empty parts.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut level = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => level += 1,
                ']' | '}' => level -= 1,
                ',' if level == 0 => {
                    parts.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            },
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Splits a (possibly quoted) dotted key into its unquoted parts.
pub(crate) fn split_dotted(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in key.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None => match c {
                '"' | '\'' => quote = Some(c),
                '.' => parts.push(std::mem::take(&mut current).trim().to_owned()),
                _ => current.push(c),
            },
        }
    }
    parts.push(current.trim().to_owned());
    parts
}

/// Removes a trailing `# comment` that is outside strings.
fn strip_comment(line: &str) -> &str {
    match find_outside_strings(line, '#') {
        Some(index) => &line[..index],
        None => line,
    }
}

/// Byte index of the first `needle` outside `"…"` / `'…'` strings.
fn find_outside_strings(s: &str, needle: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in s.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == needle => return Some(index),
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
    }
    None
}

/// Open brackets/braces minus closed ones, outside strings.
fn depth(s: &str) -> i32 {
    let mut level = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => level += 1,
                ']' | '}' => level -= 1,
                _ => {}
            },
        }
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[package]
name = "infermux-x" # trailing comment
version.workspace = true
edition = { workspace = true }
publish = false
description = "has # hash and \"quotes\""

[dependencies]
serde.workspace = true
tokio = { workspace = true, features = ["a", "b"] }
plain = "1"
renamed = { package = "real-name", path = "../real", version = "0.1" }

[dependencies.sub]
workspace = true
features = [
    "x", # a comment
    "y",
]

[target.'cfg(unix)'.dev-dependencies]
nix.workspace = true

[workspace]
members = [
    "a",
    "b/*",
]

[lints]
workspace = true
"#;

    #[test]
    fn parses_the_subset_we_use() {
        let m = Manifest::parse("Cargo.toml", SAMPLE);
        assert_eq!(m.get_str("package", "name").as_deref(), Some("infermux-x"));
        assert_eq!(
            m.get_str("package", "description").as_deref(),
            Some("has # hash and \"quotes\"")
        );
        assert!(m.inherits("package", "version"));
        assert!(m.inherits("package", "edition"));
        assert!(!m.inherits("package", "license"));
        assert!(!m.publishable());
        assert_eq!(
            m.get("lints", "workspace").map(|i| i.value.as_str()),
            Some("true")
        );
        let members = array(
            &m.get("workspace", "members")
                .map(|i| i.value.clone())
                .unwrap(),
        )
        .unwrap()
        .iter()
        .filter_map(|v| unquote(v))
        .collect::<Vec<_>>();
        assert_eq!(members, ["a", "b/*"]);
    }

    #[test]
    fn merges_dependency_declarations() {
        let m = Manifest::parse("Cargo.toml", SAMPLE);
        let deps = m.deps();
        let find = |name: &str| deps.iter().find(|(_, d)| d.key == name).unwrap();
        assert!(find("serde").1.workspace);
        assert!(find("tokio").1.workspace);
        assert_eq!(find("plain").1.version.as_deref(), Some("1"));
        assert!(!find("plain").1.workspace);
        let renamed = &find("renamed").1;
        assert_eq!(renamed.package_name(), "real-name");
        assert_eq!(renamed.path.as_deref(), Some("../real"));
        assert!(find("sub").1.workspace);
        assert_eq!(find("sub").1.line, 16);
        let (kind, nix) = find("nix");
        assert_eq!(*kind, DepKind::Dev);
        assert!(nix.workspace);
        assert_eq!(deps.len(), 6);
    }
}
