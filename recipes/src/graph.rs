//! The package graph by name: recipe A depends on recipe B when one of A's
//! build requirements names, in any alternative, a binary package that B
//! builds. Everything else A requires is *external*: the distribution
//! provides it.
//!
//! Edges are by name only: version constraints, architecture restrictions
//! and build profiles do not remove an edge (a repository's package
//! replaces the distribution's, whatever the constraint says), and
//! `Provides:` of outputs make no edges.

use crate::error::{CycleStep, Error, Result};
use crate::recipe::{Recipe, Requirement};
use crate::relation::Relation;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;

/// What the engine knows about a recipe that the recipe itself does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// Every binary package the recipe builds.
    pub binaries: Vec<String>,
    /// Build dependencies beyond [`Recipe::build_requires`]: a `debian`
    /// source's `Build-Depends*` from the snapshot's `Sources` index.
    pub build_depends: Vec<Relation>,
}

/// One recipe in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The source package name.
    pub name: String,
    /// Its `recipe.toml`.
    pub file: PathBuf,
    /// The binary packages it builds.
    pub binaries: Vec<String>,
    /// The recipes it build-depends on, sorted.
    pub dependencies: Vec<String>,
    /// The recipes that build-depend on it, sorted.
    pub reverse_dependencies: Vec<String>,
    /// Requirements that name a binary of some recipe (in any alternative).
    pub internal: Vec<Requirement>,
    /// Requirements that name no recipe's binary: the distribution's to
    /// satisfy.
    pub external: Vec<Requirement>,
}

/// The recipes and their build-dependency edges; acyclic.
#[derive(Debug, Clone)]
pub struct PackageGraph {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    providers: HashMap<String, usize>,
    /// Node indices, dependencies first.
    order: Vec<usize>,
}

impl PackageGraph {
    /// Builds the graph of `recipes`, asking `facts` for what only the
    /// engine knows. Errors: a binary built by two recipes, and cycles.
    pub fn new(recipes: &[Recipe], facts: impl Fn(&Recipe) -> SourceFacts) -> Result<PackageGraph> {
        let mut errors = Vec::new();
        let mut index = HashMap::new();
        let mut providers: HashMap<String, usize> = HashMap::new();
        let mut requirements: Vec<Vec<Requirement>> = Vec::new();
        let mut nodes = Vec::new();
        for (i, r) in recipes.iter().enumerate() {
            let f = facts(r);
            if index.insert(r.name.clone(), i).is_some() {
                errors.push(r.name_at.error(format!(
                    "source package {:?} has two recipes; each source package has one",
                    r.name
                )));
            }
            let mut binaries = Vec::new();
            for b in f.binaries {
                if binaries.contains(&b) {
                    continue;
                }
                match providers.get(&b) {
                    Some(&j) if j != i => {
                        let at = r
                            .outputs
                            .iter()
                            .find(|o| o.name == b)
                            .map_or(&r.source_at, |o| &o.name_at);
                        errors.push(at.error(format!(
                            "binary package {b:?} is also built by {} ({}): a binary package comes from one recipe",
                            recipes[j].name,
                            recipes[j].file.display()
                        )));
                    }
                    _ => {
                        providers.insert(b.clone(), i);
                    }
                }
                binaries.push(b);
            }
            let mut reqs: Vec<Requirement> = r.build_requires().into_iter().cloned().collect();
            reqs.extend(f.build_depends.into_iter().map(|relation| Requirement {
                relation,
                at: r.source_at.clone(),
            }));
            requirements.push(reqs);
            nodes.push(Node {
                name: r.name.clone(),
                file: r.file.clone(),
                binaries,
                dependencies: Vec::new(),
                reverse_dependencies: Vec::new(),
                internal: Vec::new(),
                external: Vec::new(),
            });
        }
        if let Some(e) = Error::from_list(errors) {
            return Err(e);
        }

        let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
        for (i, reqs) in requirements.into_iter().enumerate() {
            for req in reqs {
                let mut found = false;
                for name in req.relation.names() {
                    if let Some(&j) = providers.get(name) {
                        deps[i].insert(j);
                        found = true;
                    }
                }
                if found {
                    nodes[i].internal.push(req);
                } else {
                    nodes[i].external.push(req);
                }
            }
        }
        let mut rdeps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
        for (i, d) in deps.iter().enumerate() {
            for &j in d {
                rdeps[j].insert(i);
            }
        }
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let sorted_names = |set: &BTreeSet<usize>| {
            let mut v: Vec<String> = set.iter().map(|&j| names[j].clone()).collect();
            v.sort();
            v
        };
        for (i, node) in nodes.iter_mut().enumerate() {
            node.dependencies = sorted_names(&deps[i]);
            node.reverse_dependencies = sorted_names(&rdeps[i]);
        }

        // Kahn's algorithm, ties broken by name so the order is stable.
        let mut missing: Vec<usize> = deps.iter().map(BTreeSet::len).collect();
        let mut ready: BTreeSet<(&str, usize)> = (0..nodes.len())
            .filter(|&i| missing[i] == 0)
            .map(|i| (names[i].as_str(), i))
            .collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(first) = ready.pop_first() {
            let i = first.1;
            order.push(i);
            for &k in &rdeps[i] {
                missing[k] -= 1;
                if missing[k] == 0 {
                    ready.insert((names[k].as_str(), k));
                }
            }
        }
        if order.len() < nodes.len() {
            let stuck: Vec<bool> = missing.iter().map(|&m| m > 0).collect();
            let errors = cycles(&deps, &stuck, &names)
                .into_iter()
                .map(|cycle| cycle_error(&cycle, &nodes, &providers))
                .collect();
            return Err(Error::from_list(errors).expect("a stuck node lies on or behind a cycle"));
        }
        Ok(PackageGraph {
            nodes,
            index,
            providers,
            order,
        })
    }

    /// The recipes, in the repository's order (sorted by file).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node of source package `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The recipe that builds binary package `binary`.
    pub fn provider(&self, binary: &str) -> Option<&str> {
        self.providers
            .get(binary)
            .map(|&i| self.nodes[i].name.as_str())
    }

    /// Every recipe, each after all it depends on; ties in name order.
    pub fn topological_order(&self) -> Vec<&str> {
        self.order
            .iter()
            .map(|&i| self.nodes[i].name.as_str())
            .collect()
    }

    /// The recipes `name` build-depends on (empty for an unknown name).
    pub fn dependencies(&self, name: &str) -> &[String] {
        self.node(name).map_or(&[], |n| &n.dependencies)
    }

    /// The recipes that build-depend on `name` (empty for an unknown name).
    pub fn reverse_dependencies(&self, name: &str) -> &[String] {
        self.node(name).map_or(&[], |n| &n.reverse_dependencies)
    }

    /// `changed` and everything that depends on them, directly or not:
    /// what a change to `changed` reaches. In topological order; unknown
    /// names are ignored.
    pub fn affected(&self, changed: &[&str]) -> Vec<&str> {
        let mut hit = vec![false; self.nodes.len()];
        let mut queue: VecDeque<usize> = changed
            .iter()
            .filter_map(|n| self.index.get(*n).copied())
            .collect();
        while let Some(i) = queue.pop_front() {
            if std::mem::replace(&mut hit[i], true) {
                continue;
            }
            for r in &self.nodes[i].reverse_dependencies {
                queue.push_back(self.index[r]);
            }
        }
        self.order
            .iter()
            .filter(|&&i| hit[i])
            .map(|&i| self.nodes[i].name.as_str())
            .collect()
    }

    /// Every edge `(from, to)`: `from` build-depends on `to`. Sorted.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .nodes
            .iter()
            .flat_map(|n| {
                n.dependencies
                    .iter()
                    .map(move |d| (n.name.as_str(), d.as_str()))
            })
            .collect();
        out.sort();
        out
    }

    /// The graph in Graphviz's language, edges pointing at dependencies.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph packages {\n  rankdir=LR;\n");
        let mut nodes: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        nodes.sort();
        for n in nodes {
            let _ = writeln!(out, "  {n:?};");
        }
        for (from, to) in self.edges() {
            let _ = writeln!(out, "  {from:?} -> {to:?};");
        }
        out.push_str("}\n");
        out
    }
}

/// One cycle per strongly connected component of the stuck nodes that has
/// one: the shortest cycle through its smallest-named node.
fn cycles(deps: &[BTreeSet<usize>], stuck: &[bool], names: &[String]) -> Vec<Vec<usize>> {
    let components = strongly_connected(deps, stuck);
    let mut out = Vec::new();
    for component in components {
        let member: HashMap<usize, ()> = component.iter().map(|&i| (i, ())).collect();
        let start = *component
            .iter()
            .min_by_key(|&&i| &names[i])
            .expect("components are not empty");
        let self_loop = deps[start].contains(&start);
        if component.len() == 1 && !self_loop {
            continue;
        }
        if self_loop {
            out.push(vec![start]);
            continue;
        }
        // Breadth-first from start back to start, within the component.
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(i) = queue.pop_front() {
            for &j in &deps[i] {
                if j == start {
                    last = Some(i);
                    break 'search;
                }
                if member.contains_key(&j) && !parent.contains_key(&j) {
                    parent.insert(j, i);
                    queue.push_back(j);
                }
            }
        }
        let mut cycle = Vec::new();
        let mut at = last.expect("a component of two or more nodes has a cycle through each");
        while at != start {
            cycle.push(at);
            at = parent[&at];
        }
        cycle.push(start);
        cycle.reverse();
        out.push(cycle);
    }
    out.sort_by(|a, b| names[a[0]].cmp(&names[b[0]]));
    out
}

/// Tarjan's algorithm without recursion (graphs of 10,000 recipes must not
/// overflow a thread's stack), over the nodes where `keep` is true.
fn strongly_connected(deps: &[BTreeSet<usize>], keep: &[bool]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if !keep[root] || index[root] != usize::MAX {
            continue;
        }
        // (node, its successors not yet looked at)
        let mut work: Vec<(usize, Vec<usize>)> = Vec::new();
        let visit = |v: usize,
                     index: &mut Vec<usize>,
                     low: &mut Vec<usize>,
                     on_stack: &mut Vec<bool>,
                     stack: &mut Vec<usize>,
                     next: &mut usize| {
            index[v] = *next;
            low[v] = *next;
            *next += 1;
            stack.push(v);
            on_stack[v] = true;
            (
                v,
                deps[v]
                    .iter()
                    .rev()
                    .copied()
                    .filter(|&w| keep[w])
                    .collect::<Vec<_>>(),
            )
        };
        work.push(visit(
            root,
            &mut index,
            &mut low,
            &mut on_stack,
            &mut stack,
            &mut next,
        ));
        while let Some((v, successors)) = work.last_mut() {
            let v = *v;
            if let Some(w) = successors.pop() {
                if index[w] == usize::MAX {
                    work.push(visit(
                        w,
                        &mut index,
                        &mut low,
                        &mut on_stack,
                        &mut stack,
                        &mut next,
                    ));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                low[*parent] = low[*parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

fn cycle_error(cycle: &[usize], nodes: &[Node], providers: &HashMap<String, usize>) -> Error {
    let steps = cycle
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let next = cycle[(k + 1) % cycle.len()];
            let node = &nodes[i];
            // The first requirement naming a binary of the next recipe.
            let (req, binary) = node
                .internal
                .iter()
                .find_map(|req| {
                    req.relation
                        .names()
                        .find(|b| providers.get(*b) == Some(&next))
                        .map(|b| (req, b.to_string()))
                })
                .expect("an edge comes from a requirement");
            CycleStep {
                recipe: node.name.clone(),
                at: req.at.clone(),
                requirement: req.relation.text.clone(),
                binary,
            }
        })
        .collect();
    Error::Cycle { steps }
}
