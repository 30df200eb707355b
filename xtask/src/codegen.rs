//! `cargo xtask codegen [--check]`: the lists of providers that must follow
//! `crates/providers/*`.
//!
//! From each `crates/providers/<x>/Cargo.toml` (folder `x`, `description`), sorted by folder:
//! - `crates/infermux/Cargo.toml`: the block between
//!   `# BEGIN GENERATED (cargo xtask codegen): provider dependencies` and `# END GENERATED`
//!   in `[dependencies]` (`infermux-<x> = { workspace = true, optional = true }`), and the block
//!   between `# BEGIN GENERATED (cargo xtask codegen): provider features` and
//!   `# END GENERATED` in `[features]` (`<x> = ["dep:infermux-<x>"]` and `full`; a line
//!   `# full-extra: a, b` just above that BEGIN marker adds non-provider features to `full`);
//! - `crates/infermux/src/providers.rs`: one feature-gated `pub use` per provider, and one
//!   `#[cfg(all(doctest, feature = "<x>"))]` item per provider whose doc is that provider's
//!   `README.md`, so `cargo test --doc -p infermux --all-features` compiles every provider
//!   README's examples as a user of the facade writes them;
//! - `docs/providers.md`: the providers table.
//!
//! With `--check` nothing is written; stale files are listed and the command fails.

use std::{fs, path::Path};

use crate::{
    Result,
    manifest::{Manifest, sorted_dir},
    read_to_string,
};

/// Marker opening the generated dependencies of the facade.
pub(crate) const BEGIN_DEPS: &str =
    "# BEGIN GENERATED (cargo xtask codegen): provider dependencies";
/// Marker opening the generated features of the facade.
pub(crate) const BEGIN_FEATURES: &str =
    "# BEGIN GENERATED (cargo xtask codegen): provider features";
/// Marker closing a generated block.
pub(crate) const END: &str = "# END GENERATED";
/// Prefix of the optional line above [`BEGIN_FEATURES`] listing extra `full` features.
const FULL_EXTRA: &str = "# full-extra:";

const FACADE_MANIFEST: &str = "crates/infermux/Cargo.toml";
const FACADE_PROVIDERS: &str = "crates/infermux/src/providers.rs";
const PROVIDERS_DOC: &str = "docs/providers.md";

/// One provider crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Provider {
    /// Folder name under `crates/providers`, also the facade feature.
    pub(crate) folder: String,
    /// `[package] description`.
    pub(crate) description: String,
}

impl Provider {
    fn package(&self) -> String {
        format!("infermux-{}", self.folder)
    }

    fn ident(&self) -> String {
        self.folder.replace('-', "_")
    }

    /// `hf-tei` → `HfTeiReadme`: the item carrying the provider's README as its doc.
    fn readme_item(&self) -> String {
        let mut out = String::new();
        for word in self.folder.split(['-', '_']) {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
        out.push_str("Readme");
        out
    }
}

/// `cargo xtask codegen [--check]`.
pub(crate) fn run(root: &Path, check: bool) -> Result<()> {
    let files = generate(root)?;
    let mut stale = Vec::new();
    for (path, contents) in &files {
        let full = root.join(path);
        if fs::read_to_string(&full).ok().as_deref() == Some(contents.as_str()) {
            continue;
        }
        stale.push(*path);
        if !check {
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            fs::write(&full, contents).map_err(|e| format!("{}: {e}", full.display()))?;
            println!("codegen: wrote {path}");
        }
    }
    if check && !stale.is_empty() {
        return Err(format!(
            "generated files are stale: {}; run `cargo xtask codegen`",
            stale.join(", ")
        ));
    }
    if stale.is_empty() {
        println!("codegen: {} generated file(s) up to date", files.len());
    }
    Ok(())
}

/// Every generated file (path relative to the root, expected contents).
pub(crate) fn generate(root: &Path) -> Result<Vec<(&'static str, String)>> {
    let providers = providers(root)?;
    check_workspace_entries(root, &providers)?;
    let manifest = read_to_string(&root.join(FACADE_MANIFEST))?;
    let manifest = update_facade_manifest(&manifest, &providers)
        .map_err(|e| format!("{FACADE_MANIFEST}: {e}"))?;
    Ok(vec![
        (FACADE_MANIFEST, manifest),
        (FACADE_PROVIDERS, providers_rs(&providers)),
        (PROVIDERS_DOC, providers_md(&providers)),
    ])
}

/// The provider crates, sorted by folder.
pub(crate) fn providers(root: &Path) -> Result<Vec<Provider>> {
    let mut providers = Vec::new();
    for dir in sorted_dir(&root.join("crates/providers"))? {
        if !dir.join("Cargo.toml").is_file() {
            continue;
        }
        let folder = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let rel_path = format!("crates/providers/{folder}/Cargo.toml");
        let manifest = Manifest::load(root, &rel_path)?;
        let name = manifest.get_str("package", "name");
        if name.as_deref() != Some(format!("infermux-{folder}").as_str()) {
            return Err(format!(
                "{rel_path}: package must be named `infermux-{folder}` (found {name:?})"
            ));
        }
        let description = manifest
            .get_str("package", "description")
            .unwrap_or_default();
        providers.push(Provider {
            folder,
            description,
        });
    }
    Ok(providers)
}

/// The generated facade dependencies say `workspace = true`: without a root
/// `[workspace.dependencies]` entry cargo could not even load the workspace (nor run xtask),
/// so refuse to generate them until every provider has one.
fn check_workspace_entries(root: &Path, providers: &[Provider]) -> Result<()> {
    let manifest = Manifest::load(root, "Cargo.toml")?;
    let version = manifest
        .get_str("workspace.package", "version")
        .unwrap_or("0.1.0".into());
    let missing: Vec<String> = providers
        .iter()
        .filter(|p| {
            manifest
                .get("workspace.dependencies", &p.package())
                .is_none()
        })
        .map(|p| {
            format!(
                "{} = {{ path = \"crates/providers/{}\", version = \"{version}\" }}",
                p.package(),
                p.folder
            )
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "Cargo.toml: add to [workspace.dependencies] before running codegen:\n  {}",
        missing.join("\n  ")
    ))
}

/// Replaces both generated blocks of the facade manifest.
pub(crate) fn update_facade_manifest(text: &str, providers: &[Provider]) -> Result<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();

    let (begin, end) = block(&lines, BEGIN_DEPS, "[dependencies]")?;
    let deps = providers
        .iter()
        .map(|p| format!("{} = {{ workspace = true, optional = true }}", p.package()));
    lines.splice(begin + 1..end, deps);

    let (begin, end) = block(&lines, BEGIN_FEATURES, "[features]")?;
    let extra = match begin.checked_sub(1).map(|i| lines[i].trim()) {
        Some(line) if line.starts_with(FULL_EXTRA) => line[FULL_EXTRA.len()..]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    let mut features: Vec<String> = providers
        .iter()
        .map(|p| format!("{} = [\"dep:{}\"]", p.folder, p.package()))
        .collect();
    let full: Vec<String> = providers
        .iter()
        .map(|p| &p.folder)
        .chain(&extra)
        .map(|f| format!("\"{f}\""))
        .collect();
    let one_line = format!("full = [{}]", full.join(", "));
    if one_line.len() <= 100 {
        features.push(one_line);
    } else {
        features.push("full = [".into());
        features.extend(full.iter().map(|f| format!("    {f},")));
        features.push("]".into());
    }
    lines.splice(begin + 1..end, features);

    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// Line indices of a `begin` marker and the `# END GENERATED` after it, checking the block
/// sits in `table`.
fn block(lines: &[String], begin: &str, table: &str) -> Result<(usize, usize)> {
    let hint = format!("expected a line `{begin}` inside {table}, closed by a line `{END}`");
    let start = lines
        .iter()
        .position(|l| l.trim() == begin)
        .ok_or_else(|| format!("missing generated-block marker: {hint}"))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim() == END)
        .map(|offset| start + 1 + offset)
        .ok_or_else(|| format!("unclosed generated block: {hint}"))?;
    let section = lines[..start]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['));
    if section.map(|s| s.replace(' ', "")).as_deref() != Some(table) {
        return Err(format!("generated block in the wrong table: {hint}"));
    }
    if let Some(inner) = lines[start + 1..end]
        .iter()
        .find(|l| l.trim().starts_with('['))
    {
        return Err(format!(
            "table header `{}` inside a generated block: {hint}",
            inner.trim()
        ));
    }
    Ok((start, end))
}

/// `crates/infermux/src/providers.rs`.
pub(crate) fn providers_rs(providers: &[Provider]) -> String {
    let mut out = String::from(
        "//! The provider crates, each re-exported under its own feature of the same name.\n\
         //!\n\
         //! Generated by `cargo xtask codegen` from `crates/providers/*/Cargo.toml`: do not edit\n\
         //! by hand, run `cargo xtask codegen` after adding or renaming a provider.\n",
    );
    for p in providers {
        let (feature, ident) = (&p.folder, p.ident());
        out.push_str(&format!(
            "\n#[cfg(feature = \"{feature}\")]\n\
             #[cfg_attr(docsrs, doc(cfg(feature = \"{feature}\")))]\n\
             pub use infermux_{ident} as {ident};\n"
        ));
    }
    out.push_str(
        "\n// Each provider's README is compiled as doctests of this crate\n\
         // (`cargo test --doc -p infermux --all-features`), so its examples are written as a\n\
         // user of the facade writes them.\n",
    );
    for p in providers {
        out.push_str(&format!(
            "\n#[cfg(all(doctest, feature = \"{feature}\"))]\n\
             #[doc = include_str!(\"../../providers/{feature}/README.md\")]\n\
             struct {item};\n",
            feature = p.folder,
            item = p.readme_item(),
        ));
    }
    out
}

/// `docs/providers.md`.
pub(crate) fn providers_md(providers: &[Provider]) -> String {
    let mut out = String::from(
        "<!-- Generated by `cargo xtask codegen` from crates/providers/*/Cargo.toml: do not edit. -->\n\
         \n\
         # Providers\n\
         \n\
         Each provider is its own crate and a feature of the `infermux` facade of the same name\n\
         (`full` enables them all).\n\
         \n\
         | Provider | Crate | Facade feature | Description |\n\
         |---|---|---|---|\n",
    );
    for p in providers {
        let description = p.description.replace('|', "\\|").replace('\n', " ");
        out.push_str(&format!(
            "| {folder} | [`{package}`](../crates/providers/{folder}) | `{folder}` | {description} |\n",
            folder = p.folder,
            package = p.package(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated files match `crates/providers/*` (`cargo xtask codegen --check` as a test).
    #[test]
    fn codegen_is_up_to_date() {
        let root = crate::project_root();
        let stale: Vec<&str> = generate(&root)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|(path, contents)| {
                fs::read_to_string(root.join(path)).ok().as_deref() != Some(contents.as_str())
            })
            .map(|(path, _)| path)
            .collect();
        assert!(
            stale.is_empty(),
            "stale generated files {stale:?}: run `cargo xtask codegen`"
        );
    }

    fn sample() -> Vec<Provider> {
        vec![
            Provider {
                folder: "anthropic".into(),
                description: "Claude".into(),
            },
            Provider {
                folder: "openai-compat".into(),
                description: "a | b".into(),
            },
        ]
    }

    const FACADE: &str = r#"[package]
name = "infermux"

[dependencies]
infermux-core.workspace = true
# BEGIN GENERATED (cargo xtask codegen): provider dependencies
stale = "1"
# END GENERATED

[features]
default = []
cache = []
# full-extra: cache, "tower"
# BEGIN GENERATED (cargo xtask codegen): provider features
# END GENERATED
"#;

    #[test]
    fn fills_the_facade_blocks() {
        let out = update_facade_manifest(FACADE, &sample()).unwrap();
        let expected = r#"[package]
name = "infermux"

[dependencies]
infermux-core.workspace = true
# BEGIN GENERATED (cargo xtask codegen): provider dependencies
infermux-anthropic = { workspace = true, optional = true }
infermux-openai-compat = { workspace = true, optional = true }
# END GENERATED

[features]
default = []
cache = []
# full-extra: cache, "tower"
# BEGIN GENERATED (cargo xtask codegen): provider features
anthropic = ["dep:infermux-anthropic"]
openai-compat = ["dep:infermux-openai-compat"]
full = ["anthropic", "openai-compat", "cache", "tower"]
# END GENERATED
"#;
        assert_eq!(out, expected);
        // Idempotent.
        assert_eq!(update_facade_manifest(&out, &sample()).unwrap(), expected);
    }

    #[test]
    fn rejects_missing_or_misplaced_markers() {
        let err = update_facade_manifest("[dependencies]\n", &sample()).unwrap_err();
        assert!(err.contains("missing generated-block marker"), "{err}");
        let misplaced = FACADE.replace("[features]", "[dev-dependencies]");
        let err = update_facade_manifest(&misplaced, &sample()).unwrap_err();
        assert!(err.contains("wrong table"), "{err}");
        let unclosed = FACADE.replace("# END GENERATED\n\n[features]", "\n[features]");
        assert!(update_facade_manifest(&unclosed, &sample()).is_err());
    }

    #[test]
    fn long_full_lists_wrap() {
        let many: Vec<Provider> = (0..12)
            .map(|i| Provider {
                folder: format!("provider-{i:02}"),
                description: String::new(),
            })
            .collect();
        let out = update_facade_manifest(FACADE, &many).unwrap();
        assert!(out.contains("full = [\n    \"provider-00\",\n"), "{out}");
        assert!(out.contains("    \"tower\",\n]\n# END GENERATED"), "{out}");
    }

    #[test]
    fn renders_reexports_and_docs() {
        let rs = providers_rs(&sample());
        assert!(rs.starts_with("//! "));
        assert!(rs.contains(
            "\n#[cfg(feature = \"openai-compat\")]\n\
             #[cfg_attr(docsrs, doc(cfg(feature = \"openai-compat\")))]\n\
             pub use infermux_openai_compat as openai_compat;\n"
        ));
        assert!(rs.contains(
            "\n#[cfg(all(doctest, feature = \"openai-compat\"))]\n\
             #[doc = include_str!(\"../../providers/openai-compat/README.md\")]\n\
             struct OpenaiCompatReadme;\n"
        ));
        let md = providers_md(&sample());
        assert!(md.contains(
            "| openai-compat | [`infermux-openai-compat`](../crates/providers/openai-compat) \
             | `openai-compat` | a \\| b |\n"
        ));
    }
}
