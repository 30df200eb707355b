//! `cargo xtask publish-order [--dry-run]`: the order in which the publishable workspace
//! crates must reach crates.io, and the rules that make publishing possible at all.
//!
//! - A publishable crate's normal and build dependencies on workspace crates must be
//!   publishable and carry a `version` (in the root `[workspace.dependencies]` entry);
//!   every root entry for a publishable workspace crate has one.
//! - Dev-dependencies on workspace crates order the release only when versioned
//!   (`infermux-testkit` is versioned: the CLI's demo runs its simulator, so it is published
//!   before the providers that test with it).
//! - No cycles.
//!
//! `--dry-run` also runs `cargo publish --workspace --dry-run --allow-dirty --locked`, which
//! packages and builds every publishable crate against the others (slow: opt-in).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use crate::{
    Result, cargo,
    manifest::{Dep, DepKind, Workspace},
};

/// `cargo xtask publish-order [--dry-run]`.
pub(crate) fn run(root: &Path, dry_run: bool) -> Result<()> {
    let order = order(&Workspace::load(root)?)?;
    println!("publish order:");
    for (index, name) in order.iter().enumerate() {
        println!("{:>4}. {name}", index + 1);
    }
    if dry_run {
        let mut cmd = cargo(root);
        cmd.args([
            "publish",
            "--workspace",
            "--dry-run",
            "--allow-dirty",
            "--locked",
        ]);
        crate::run(&mut cmd)?;
    }
    Ok(())
}

/// A dependency resolved against the root `[workspace.dependencies]`.
struct Resolved {
    package: String,
    version: Option<String>,
}

/// The publish order (dependencies first, ties by name), or every problem found.
pub(crate) fn order(ws: &Workspace) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let root_deps: BTreeMap<String, Dep> = ws
        .manifest
        .deps()
        .into_iter()
        .filter(|(kind, _)| *kind == DepKind::Workspace)
        .map(|(_, dep)| (dep.key.clone(), dep))
        .collect();

    for dep in root_deps.values() {
        let Some(target) = ws.member(dep.package_name()) else {
            continue;
        };
        let at = format!("Cargo.toml:{}", dep.line);
        if target.publishable && dep.version.is_none() {
            problems.push(format!(
                "{at}: [workspace.dependencies] `{}` needs a `version` next to its `path` so \
                 dependents can be published",
                dep.key
            ));
        }
    }

    // Edges: crate -> the workspace crates that must be published before it.
    let mut before: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for member in ws.members.iter().filter(|m| m.publishable) {
        let edges = before.entry(member.name.as_str()).or_default();
        for (kind, dep) in member.manifest.deps() {
            let at = format!("{}:{}", member.manifest.rel_path, dep.line);
            let resolved = if dep.workspace {
                match root_deps.get(&dep.key) {
                    Some(root) => Resolved {
                        package: root.package_name().to_owned(),
                        version: root.version.clone(),
                    },
                    None => {
                        if ws.member(dep.package_name()).is_some() {
                            problems.push(format!(
                                "{at}: `{}` uses `workspace = true` but the root \
                                 [workspace.dependencies] has no `{}`",
                                dep.key, dep.key
                            ));
                        }
                        continue;
                    }
                }
            } else {
                Resolved {
                    package: dep.package_name().to_owned(),
                    version: dep.version.clone(),
                }
            };
            let Some(target) = ws.member(&resolved.package) else {
                continue;
            };
            match kind {
                DepKind::Normal | DepKind::Build => {
                    if !target.publishable {
                        problems.push(format!(
                            "{at}: publishable `{}` depends on `{}`, which has `publish = false`",
                            member.name, target.name
                        ));
                    } else if resolved.version.is_none() {
                        problems.push(format!(
                            "{at}: `{}` depends on `{}` without a `version`",
                            member.name, target.name
                        ));
                    }
                    edges.insert(target.name.clone());
                }
                DepKind::Dev if resolved.version.is_some() => {
                    if !target.publishable {
                        problems.push(format!(
                            "{at}: versioned dev-dependency on unpublishable `{}`",
                            target.name
                        ));
                    }
                    edges.insert(target.name.clone());
                }
                DepKind::Dev | DepKind::Workspace => {}
            }
        }
        edges.remove(&member.name);
    }

    let order = topological(&before);
    if order.len() < before.len() {
        problems.push(format!(
            "dependency cycle among: {}",
            on_cycles(&before, &order).join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(order)
    } else {
        Err(format!("publish-order:\n  {}", problems.join("\n  ")))
    }
}

/// Kahn's algorithm over `before` (node -> prerequisites), smallest ready name first.
/// Prerequisites that are not nodes are ignored; nodes on a cycle are left out.
fn topological(before: &BTreeMap<&str, BTreeSet<String>>) -> Vec<String> {
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = before
        .iter()
        .map(|(name, deps)| {
            let deps = deps
                .iter()
                .map(String::as_str)
                .filter(|d| before.contains_key(d))
                .collect();
            (*name, deps)
        })
        .collect();
    let mut order = Vec::new();
    while let Some(next) = remaining
        .iter()
        .find(|(_, deps)| deps.is_empty())
        .map(|(name, _)| *name)
    {
        remaining.remove(next);
        for deps in remaining.values_mut() {
            deps.remove(next);
        }
        order.push(next.to_owned());
    }
    order
}

/// The nodes left out of `order` that lie on a cycle: those blocked only because they depend
/// on a cycle are pruned, repeatedly removing nodes no remaining node depends on.
fn on_cycles<'a>(before: &BTreeMap<&'a str, BTreeSet<String>>, order: &[String]) -> Vec<&'a str> {
    let mut stuck: BTreeSet<&str> = before
        .keys()
        .copied()
        .filter(|name| !order.iter().any(|o| o == name))
        .collect();
    loop {
        let leaf = stuck.iter().copied().find(|name| {
            !stuck
                .iter()
                .any(|other| before[other].iter().any(|d| d == name))
        });
        match leaf {
            Some(leaf) => stuck.remove(leaf),
            None => return stuck.into_iter().collect(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, Member};

    /// The real workspace can be published (`cargo xtask publish-order` as a test).
    #[test]
    fn workspace_publish_order() {
        let ws = Workspace::load(&crate::project_root()).unwrap_or_else(|e| panic!("{e}"));
        let order = order(&ws).unwrap_or_else(|e| panic!("{e}"));
        let position = |name: &str| order.iter().position(|n| n == name);
        if let (Some(core), Some(http)) = (position("infermux-core"), position("infermux-http")) {
            assert!(core < http);
        }
        assert!(position("xtask").is_none());
    }

    fn member(dir: &str, toml: &str) -> Member {
        let manifest = Manifest::parse(&format!("{dir}/Cargo.toml"), toml);
        Member {
            dir: dir.into(),
            name: manifest.get_str("package", "name").unwrap(),
            publishable: manifest.publishable(),
            manifest,
        }
    }

    fn workspace(root: &str, members: Vec<Member>) -> Workspace {
        Workspace {
            manifest: Manifest::parse("Cargo.toml", root),
            members,
        }
    }

    const ROOT: &str = r#"[workspace.dependencies]
infermux-core = { path = "crates/core", version = "0.1.0" }
infermux-http = { path = "crates/http", version = "0.1.0" }
infermux-testkit = { path = "crates/testkit", version = "0.1.0" }
serde = "1"
"#;

    fn members() -> Vec<Member> {
        vec![
            member(
                "crates/http",
                "[package]\nname = \"infermux-http\"\n[dependencies]\n\
                 infermux-core.workspace = true\nserde.workspace = true\n",
            ),
            member("crates/core", "[package]\nname = \"infermux-core\"\n"),
            member(
                "crates/testkit",
                "[package]\nname = \"infermux-testkit\"\n[dependencies]\n\
                 infermux-http.workspace = true\n",
            ),
            member(
                "crates/providers/a",
                "[package]\nname = \"infermux-a\"\n[dependencies]\ninfermux-http.workspace = true\n\
                 [dev-dependencies]\ninfermux-testkit.workspace = true\n",
            ),
            member("xtask", "[package]\nname = \"xtask\"\npublish = false\n"),
        ]
    }

    #[test]
    fn orders_dependencies_first() {
        let order = order(&workspace(ROOT, members())).unwrap();
        assert_eq!(
            order,
            [
                "infermux-core",
                "infermux-http",
                "infermux-testkit",
                "infermux-a"
            ]
        );
    }

    #[test]
    fn reports_every_problem() {
        let root = ROOT.replace("crates/http\", version = \"0.1.0\"", "crates/http\"")
            + "xtask = { path = \"xtask\" }\n";
        let mut members = members();
        members.push(member(
            "crates/b",
            "[package]\nname = \"infermux-b\"\n[dependencies]\nxtask.workspace = true\n",
        ));
        let err = order(&workspace(&root, members)).unwrap_err();
        for needle in [
            "`infermux-http` needs a `version`",
            "`infermux-a` depends on `infermux-http` without a `version`",
            "publishable `infermux-b` depends on `xtask`",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
        assert!(!err.contains("cycle"), "{err}");
    }

    #[test]
    fn detects_cycles() {
        let mut members = members();
        members[1] = member(
            "crates/core",
            "[package]\nname = \"infermux-core\"\n[dependencies]\ninfermux-http.workspace = true\n",
        );
        let err = order(&workspace(ROOT, members)).unwrap_err();
        assert!(
            err.ends_with("dependency cycle among: infermux-core, infermux-http"),
            "{err}"
        );
    }
}
