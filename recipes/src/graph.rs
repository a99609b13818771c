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
use comb_debian::relation::Relation;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, IntoNeighbors, NodeFiltered, Reversed, Visitable};
use petgraph::Direction;
use std::collections::{BTreeSet, HashMap};
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

/// An edge taken out of a cycle: `from` builds against the snapshot's
/// `binaries` instead of `to`'s, as a distribution bootstraps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CutEdge {
    pub from: String,
    pub to: String,
    /// The binaries of `to` that `from` requires: the snapshot has each.
    pub binaries: Vec<String>,
}

/// The recipes and their build-dependency edges; acyclic.
#[derive(Debug, Clone)]
pub struct PackageGraph {
    nodes: Vec<Node>,
    /// The edges cut out of cycles, in the order they were cut.
    cut: Vec<CutEdge>,
    /// Node `i` is recipe `i`; an edge from each recipe to each recipe it
    /// build-depends on.
    graph: DiGraph<(), ()>,
    index: HashMap<String, usize>,
    providers: HashMap<String, usize>,
    /// Node indices, dependencies first.
    order: Vec<usize>,
}

impl PackageGraph {
    /// Builds the graph of `recipes`, asking `facts` for what only the
    /// engine knows. Errors: a binary built by two recipes, and cycles.
    pub fn new(recipes: &[Recipe], facts: impl Fn(&Recipe) -> SourceFacts) -> Result<PackageGraph> {
        PackageGraph::build(recipes, facts, |_| false, true)
    }

    /// The recipes without edges between them: every requirement is the
    /// snapshot's to satisfy, as in an archive-wide rebuild of a
    /// distribution, where every package builds against the archive's
    /// binaries. Errors: a binary built by two recipes.
    pub fn unlinked(
        recipes: &[Recipe],
        facts: impl Fn(&Recipe) -> SourceFacts,
    ) -> Result<PackageGraph> {
        PackageGraph::build(recipes, facts, |_| false, false)
    }

    /// [`PackageGraph::new`], but a cycle is cut where it can be: at an
    /// edge whose every binary the snapshot has (`snapshot_has`), so the
    /// recipe builds against the snapshot's packages first, as a
    /// distribution bootstraps. Along the shortest cycle through its
    /// smallest-named recipe, the first such edge is cut, until no cycle
    /// is left; a cycle with no such edge is an error, as in `new`.
    pub fn cutting(
        recipes: &[Recipe],
        facts: impl Fn(&Recipe) -> SourceFacts,
        snapshot_has: impl Fn(&str) -> bool,
    ) -> Result<PackageGraph> {
        PackageGraph::build(recipes, facts, snapshot_has, true)
    }

    fn build(
        recipes: &[Recipe],
        facts: impl Fn(&Recipe) -> SourceFacts,
        snapshot_has: impl Fn(&str) -> bool,
        edges: bool,
    ) -> Result<PackageGraph> {
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

        let mut graph = DiGraph::with_capacity(nodes.len(), nodes.len());
        for _ in &nodes {
            graph.add_node(());
        }
        // Which binaries make each edge.
        let mut via: HashMap<(usize, usize), BTreeSet<String>> = HashMap::new();
        for (i, reqs) in requirements.into_iter().enumerate() {
            for req in reqs {
                let mut found = false;
                for name in req.relation.names().filter(|_| edges) {
                    if let Some(&j) = providers.get(name) {
                        graph.update_edge(NodeIndex::new(i), NodeIndex::new(j), ());
                        via.entry((i, j)).or_default().insert(name.to_string());
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
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let mut cut = Vec::new();
        let cuttable = |edge: &(usize, usize)| {
            via.get(edge)
                .is_some_and(|binaries| binaries.iter().all(|b| snapshot_has(b)))
        };
        loop {
            // Most cycles go in one depth-first pass per component; what
            // a pass cannot cut is cut (or reported) the slow way below.
            let stuck = cut_back_edges(&mut graph, &names, &cuttable, &via, &mut cut);
            if !stuck {
                if petgraph::algo::toposort(&graph, None).is_ok() {
                    break;
                }
                continue;
            }
            let found = cycles(&graph, &names);
            if found.is_empty() {
                break;
            }
            let mut stuck = Vec::new();
            for cycle in found {
                let edges = (0..cycle.len()).map(|k| (cycle[k], cycle[(k + 1) % cycle.len()]));
                let Some((from, to)) = edges.clone().find(|edge| cuttable(edge)) else {
                    stuck.push(cycle);
                    continue;
                };
                // A cycle found in this round may share its edge with an
                // earlier one of the same round, already cut.
                cut_edge(&mut graph, (from, to), &names, &via, &mut cut);
            }
            if !stuck.is_empty() {
                let errors = stuck
                    .into_iter()
                    .map(|cycle| cycle_error(&cycle, &nodes, &providers))
                    .collect();
                return Err(Error::from_list(errors).expect("there is a cycle"));
            }
        }
        let sorted_names = |i: usize, direction: Direction| {
            let mut v: Vec<String> = graph
                .neighbors_directed(NodeIndex::new(i), direction)
                .map(|j| names[j.index()].clone())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        for (i, node) in nodes.iter_mut().enumerate() {
            node.dependencies = sorted_names(i, Direction::Outgoing);
            node.reverse_dependencies = sorted_names(i, Direction::Incoming);
        }
        let order = topological_order(&graph, &names);
        Ok(PackageGraph {
            nodes,
            cut,
            graph,
            index,
            providers,
            order,
        })
    }

    /// The edges cut out of cycles ([`PackageGraph::cutting`]).
    pub fn cut_edges(&self) -> &[CutEdge] {
        &self.cut
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
        self.reachable(Reversed(&self.graph), changed)
    }

    /// `wanted` and everything they build-depend on, directly or not:
    /// what building `wanted` needs. In topological order; unknown names
    /// are ignored.
    pub fn needed_by(&self, wanted: &[&str]) -> Vec<&str> {
        self.reachable(&self.graph, wanted)
    }

    /// The recipes `graph` reaches from `from` (included), in topological
    /// order.
    fn reachable<G>(&self, graph: G, from: &[&str]) -> Vec<&str>
    where
        G: IntoNeighbors<NodeId = NodeIndex> + Visitable<NodeId = NodeIndex>,
    {
        let mut hit = vec![false; self.nodes.len()];
        for start in from.iter().filter_map(|n| self.index.get(*n)) {
            let mut walk = Dfs::new(graph, NodeIndex::new(*start));
            while let Some(i) = walk.next(graph) {
                hit[i.index()] = true;
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

/// Every recipe after all it depends on, ties broken by name so the
/// order is stable (Kahn's algorithm). The graph is acyclic.
fn topological_order(graph: &DiGraph<(), ()>, names: &[String]) -> Vec<usize> {
    let mut missing: Vec<usize> = graph
        .node_indices()
        .map(|i| graph.neighbors_directed(i, Direction::Outgoing).count())
        .collect();
    let mut ready: BTreeSet<(&str, usize)> = (0..names.len())
        .filter(|&i| missing[i] == 0)
        .map(|i| (names[i].as_str(), i))
        .collect();
    let mut order = Vec::with_capacity(names.len());
    while let Some((_, i)) = ready.pop_first() {
        order.push(i);
        for k in graph.neighbors_directed(NodeIndex::new(i), Direction::Incoming) {
            let k = k.index();
            missing[k] -= 1;
            if missing[k] == 0 {
                ready.insert((names[k].as_str(), k));
            }
        }
    }
    order
}

/// Removes the edge `from -> to` if it is still there, and records it.
fn cut_edge(
    graph: &mut DiGraph<(), ()>,
    (from, to): (usize, usize),
    names: &[String],
    via: &HashMap<(usize, usize), BTreeSet<String>>,
    cut: &mut Vec<CutEdge>,
) {
    if let Some(e) = graph.find_edge(NodeIndex::new(from), NodeIndex::new(to)) {
        graph.remove_edge(e);
        cut.push(CutEdge {
            from: names[from].clone(),
            to: names[to].clone(),
            binaries: via[&(from, to)].iter().cloned().collect(),
        });
    }
}

/// One depth-first pass over each strongly connected component, from its
/// smallest-named recipe and in name order, cutting each cycle a back edge
/// closes: at the back edge if the snapshot has its binaries, else at the
/// first edge of the cycle it has them for. Linear in the graph, so a
/// distribution's thousands of cycles take one or two passes. Returns
/// whether some cycle had no edge to cut (left for the caller to report).
fn cut_back_edges(
    graph: &mut DiGraph<(), ()>,
    names: &[String],
    cuttable: &dyn Fn(&(usize, usize)) -> bool,
    via: &HashMap<(usize, usize), BTreeSet<String>>,
    cut: &mut Vec<CutEdge>,
) -> bool {
    let n = graph.node_count();
    let by_name = |a: &usize, b: &usize| names[*a].cmp(&names[*b]);
    let mut components: Vec<Vec<usize>> = petgraph::algo::kosaraju_scc(&*graph)
        .into_iter()
        .filter(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
        .map(|c| {
            let mut c: Vec<usize> = c.into_iter().map(|i| i.index()).collect();
            c.sort_by(by_name);
            c
        })
        .collect();
    components.sort_by(|a, b| names[a[0]].cmp(&names[b[0]]));
    let mut member = vec![usize::MAX; n];
    for (ci, c) in components.iter().enumerate() {
        for &v in c {
            member[v] = ci;
        }
    }
    let adjacent: Vec<Vec<usize>> = (0..n)
        .map(|u| {
            let mut next: Vec<usize> = if member[u] == usize::MAX {
                Vec::new()
            } else {
                graph
                    .neighbors(NodeIndex::new(u))
                    .map(|v| v.index())
                    .filter(|&v| member[v] == member[u])
                    .collect()
            };
            next.sort_by(by_name);
            next.dedup();
            next
        })
        .collect();
    // 0: not seen, 1: on the path, 2: done.
    let mut state = vec![0u8; n];
    let mut position = vec![0usize; n];
    let mut stuck = false;
    for component in &components {
        for &root in component {
            if state[root] != 0 {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            state[root] = 1;
            position[root] = 0;
            while let Some(&mut (u, ref mut k)) = path.last_mut() {
                let Some(&v) = adjacent[u].get(*k) else {
                    state[u] = 2;
                    path.pop();
                    continue;
                };
                *k += 1;
                if !graph.contains_edge(NodeIndex::new(u), NodeIndex::new(v)) {
                    continue;
                }
                match state[v] {
                    0 => {
                        state[v] = 1;
                        position[v] = path.len();
                        path.push((v, 0));
                    }
                    1 => {
                        // u -> v closes the cycle v ... u -> v.
                        let on_path: Vec<usize> = path[position[v]..].iter().map(|e| e.0).collect();
                        let mut edges = on_path.windows(2).map(|w| (w[0], w[1]));
                        let chosen = if cuttable(&(u, v)) {
                            Some((u, v))
                        } else {
                            edges.find(|e| cuttable(e))
                        };
                        let Some((from, to)) = chosen else {
                            stuck = true;
                            continue;
                        };
                        cut_edge(graph, (from, to), names, via, cut);
                    }
                    _ => {}
                }
            }
        }
    }
    stuck
}

/// One cycle per strongly connected component that has one: the shortest
/// cycle through its smallest-named recipe. Kosaraju's algorithm, as
/// petgraph's, does not recurse: a graph of 10,000 recipes must not
/// overflow a thread's stack.
fn cycles(graph: &DiGraph<(), ()>, names: &[String]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for component in petgraph::algo::kosaraju_scc(graph) {
        let start = *component
            .iter()
            .min_by_key(|i| &names[i.index()])
            .expect("components are not empty");
        if graph.contains_edge(start, start) {
            out.push(vec![start.index()]);
            continue;
        }
        if component.len() == 1 {
            continue;
        }
        // The shortest way back to start from one of its dependencies,
        // within the component.
        let mut member = vec![false; graph.node_count()];
        for n in &component {
            member[n.index()] = true;
        }
        let within = NodeFiltered::from_fn(graph, |n| member[n.index()]);
        let back = graph
            .neighbors_directed(start, Direction::Outgoing)
            .filter(|n| member[n.index()])
            .filter_map(|first| petgraph::algo::astar(&within, first, |n| n == start, |_| 1, |_| 0))
            .min_by_key(|(length, path)| {
                (
                    *length,
                    path.iter().map(|n| &names[n.index()]).collect::<Vec<_>>(),
                )
            })
            .expect("a component of two or more recipes has a cycle through each");
        let mut cycle = vec![start.index()];
        cycle.extend(
            back.1
                .iter()
                .map(|n| n.index())
                .filter(|&n| n != start.index()),
        );
        out.push(cycle);
    }
    out.sort_by(|a, b| names[a[0]].cmp(&names[b[0]]));
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
