//! Why a node was not a hit, in words: [`MissReason`], in the spirit of
//! cargo's `DirtyReason`.

use comb_cache::NodeKind;
use serde::Serialize;
use std::fmt;

/// The input of a node that names another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamInput {
    /// A build's environment.
    Env,
    /// The layer below a layer.
    Below,
    /// The packages installed below a resolution.
    Status,
}

/// One reason a node was not a hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MissReason {
    /// Nothing of this stage and name was recorded before.
    FirstBuild,
    /// The previous attempt failed (with the same inputs, if nothing else
    /// is listed).
    PreviousFailed,
    /// The same inputs were built before, but the output is gone.
    OutputGone,
    /// A source file was added, removed or changed.
    SourceFile {
        path: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The recipe's build script changed.
    Script { diff: String },
    /// Another input from the recipe changed: its version, outputs, build
    /// requirements.
    Recipe {
        field: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// A build dependency built by this repository changed (or came or
    /// went). Values are `VERSION sha256:HEX`.
    BuildDependency {
        package: String,
        /// The recipe that builds it, where known.
        recipe: Option<String>,
        old: Option<String>,
        new: Option<String>,
    },
    /// A package of an environment layer changed version, came or went.
    /// Values are `VERSION sha256:HEX`.
    Package {
        /// The layer's stage: `base-install`, `base-build`, `pkg-env`.
        layer: String,
        package: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// A node this one is built on changed: see its own reasons.
    Upstream {
        /// The input naming it.
        input: UpstreamInput,
        old: Option<String>,
        new: Option<String>,
        /// The node, where `comb why` found it: stage and name.
        node: Option<(NodeKind, String)>,
    },
    /// The pinned distribution snapshot changed.
    Snapshot {
        old: Option<String>,
        new: Option<String>,
    },
    /// comb's way of making this stage changed.
    Builder {
        old: Option<String>,
        new: Option<String>,
    },
    /// Any other input.
    Other {
        input: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The node it was compared with is no longer recorded (`comb gc`).
    NoLongerRecorded { key: String },
    /// Recorded before comb kept what a miss was compared with: the reason
    /// as it was written then.
    Recorded { text: String },
}

/// `blake3:3f2a…`: an algorithm and the first hex digits of a digest; any
/// other value as it is.
fn short(value: &str) -> String {
    let (prefix, rest) = match value.strip_prefix("x ") {
        Some(rest) => ("x ", rest),
        None => ("", value),
    };
    match rest.split_once(':') {
        Some((alg, hex)) if hex.len() >= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{prefix}{alg} {}…", &hex[..4])
        }
        _ if rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{}…", &rest[..4])
        }
        _ => value.to_string(),
    }
}

/// `VERSION sha256:HEX` split into the version and a short digest.
fn version_and_output(value: &str) -> (&str, String) {
    match value.split_once(' ') {
        Some((version, digest)) => (version, short(digest)),
        None => (value, String::new()),
    }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(none)")
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::FirstBuild => write!(f, "first build of this node"),
            MissReason::PreviousFailed => write!(f, "previous build failed"),
            MissReason::OutputGone => write!(f, "its previous output is gone from the store"),
            MissReason::SourceFile { path, old, new } => match (old, new) {
                (Some(o), Some(n)) => {
                    write!(
                        f,
                        "source file {path} changed ({} → {})",
                        short(o),
                        short(n)
                    )
                }
                (None, _) => write!(f, "source file {path} added"),
                (_, None) => write!(f, "source file {path} removed"),
            },
            MissReason::Script { diff } => {
                write!(f, "recipe build.script changed:")?;
                for line in diff.lines() {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
            MissReason::Recipe { field, old, new } => {
                write!(f, "recipe {field} changed: {} → {}", opt(old), opt(new))
            }
            MissReason::BuildDependency {
                package,
                recipe,
                old,
                new,
            } => {
                let from = recipe
                    .as_deref()
                    .map(|r| format!("{r} "))
                    .unwrap_or_default();
                match (old, new) {
                    (Some(o), Some(n)) => {
                        let (ov, od) = version_and_output(o);
                        let (nv, nd) = version_and_output(n);
                        if recipe.is_some() {
                            write!(f, "build dependency {package} now comes from {from}{nv} (output {od} → {nd})")?;
                        } else {
                            write!(f, "build dependency {package} changed: {ov} → {nv} (output {od} → {nd})")?;
                        }
                        if ov != nv && recipe.is_some() {
                            write!(f, ", was {ov}")?;
                        }
                        Ok(())
                    }
                    (None, Some(n)) => write!(
                        f,
                        "build dependency {package} added: {from}{}",
                        version_and_output(n).0
                    ),
                    (Some(o), None) => write!(
                        f,
                        "build dependency {package} removed (was {from}{})",
                        version_and_output(o).0
                    ),
                    (None, None) => write!(f, "build dependency {package} changed"),
                }
            }
            MissReason::Package {
                layer,
                package,
                old,
                new,
            } => match (old, new) {
                (Some(o), Some(n)) => {
                    let (ov, od) = version_and_output(o);
                    let (nv, nd) = version_and_output(n);
                    if ov == nv {
                        write!(f, "{layer} changed: {package} {nv} (output {od} → {nd})")
                    } else {
                        write!(f, "{layer} changed: {package} {ov} → {nv}")
                    }
                }
                (None, Some(n)) => write!(
                    f,
                    "{layer} changed: {package} {} added",
                    version_and_output(n).0
                ),
                (Some(o), None) => write!(
                    f,
                    "{layer} changed: {package} {} removed",
                    version_and_output(o).0
                ),
                (None, None) => write!(f, "{layer} changed: {package}"),
            },
            MissReason::Upstream {
                input,
                old,
                new,
                node,
            } => {
                let what = match input {
                    UpstreamInput::Env => "its build environment",
                    UpstreamInput::Below => "the layer below",
                    UpstreamInput::Status => "the packages installed below",
                };
                write!(f, "{what} changed")?;
                if let Some((stage, name)) = node {
                    write!(f, ": {stage} {name}")?;
                }
                write!(f, " ({} → {})", short(opt(old)), short(opt(new)))
            }
            MissReason::Snapshot { old, new } => write!(
                f,
                "the distribution snapshot changed ({} → {})",
                short(opt(old)),
                short(opt(new))
            ),
            MissReason::Builder { old, new } => {
                write!(f, "comb's builder changed ({} → {})", opt(old), opt(new))
            }
            MissReason::Other { input, old, new } => {
                write!(f, "input {input} changed: {} → {}", opt(old), opt(new))
            }
            MissReason::NoLongerRecorded { key } => {
                write!(
                    f,
                    "compared with {}, which is no longer recorded",
                    short(key)
                )
            }
            MissReason::Recorded { text } => f.write_str(text),
        }
    }
}

/// A short line diff: removed lines as `- …`, added ones as `+ …`, in
/// order (a longest common subsequence keeps the rest out).
pub fn line_diff(old: &str, new: &str) -> String {
    const MAX_LINES: usize = 400;
    let a: Vec<&str> = old.lines().take(MAX_LINES).collect();
    let b: Vec<&str> = new.lines().take(MAX_LINES).collect();
    // lcs[i][j]: common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u16; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_diff_shows_what_came_and_went() {
        assert_eq!(line_diff("a\nb\nc\n", "a\nx\nc\n"), "- b\n+ x");
        assert_eq!(line_diff("", "echo hi"), "+ echo hi");
        assert_eq!(line_diff("same", "same"), "");
    }

    #[test]
    fn digests_are_shortened_in_words() {
        let a = format!("blake3:{}", "3f2a".repeat(16));
        let b = format!("x blake3:{}", "9c1d".repeat(16));
        let r = MissReason::SourceFile {
            path: "src/greet.c".into(),
            old: Some(a),
            new: Some(b),
        };
        assert_eq!(
            r.to_string(),
            "source file src/greet.c changed (blake3 3f2a… → x blake3 9c1d…)"
        );
        let dep = MissReason::BuildDependency {
            package: "libgreet-dev".into(),
            recipe: Some("libgreet".into()),
            old: Some(format!("1.0-1 sha256:{}", "51e0".repeat(16))),
            new: Some(format!("1.1-1 sha256:{}", "a7b3".repeat(16))),
        };
        assert_eq!(
            dep.to_string(),
            "build dependency libgreet-dev now comes from libgreet 1.1-1 (output sha256 51e0… → sha256 a7b3…), was 1.0-1"
        );
    }
}
