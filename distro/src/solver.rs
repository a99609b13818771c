//! Dependency resolution in comb's own process: what `apt-get install`
//! would add to an installed system, without running APT.
//!
//! A [`Universe`] is a snapshot's binary packages for one architecture,
//! parsed once and indexed (names interned, each name's versions, its
//! providers and the packages that conflict with it). A [`System`] is
//! what is installed on top of which a resolution happens (a dpkg status),
//! and the repository's own packages, which take the place of the
//! universe's packages of the same names. [`System::resolve`] takes a
//! request (the relations of a `Depends:` field: a package's build
//! dependencies) and returns the exact packages to install or upgrade,
//! with their versions and sha256, or an [`Unsatisfiable`] that explains,
//! as APT does, which dependency cannot be met and why.
//!
//! The resolver does what APT's `pkgDepCache::MarkInstall` does, so that
//! its install sets are APT's (a test of comb compares them with
//! `apt-get --simulate` over thousands of real source packages):
//!
//! - each name has one *candidate*: its highest available version, or the
//!   installed one when that is higher (no downgrades), unless the
//!   available versions are preferred (the repository's replacements);
//! - a package is marked, then the groups of its `Pre-Depends` and
//!   `Depends` (in that order, APT's) that the system does not already
//!   satisfy are satisfied in turn by the first possible solution: the
//!   alternatives in order, each one's candidates sorted as APT's
//!   `CompareProviders` sorts them (installed packages first, then the
//!   package named before its providers, essential packages, higher
//!   `Priority`, and last the package the index names last, as APT
//!   numbers packages in the order the index first names them), upgrades
//!   of installed packages before new installs;
//! - a candidate whose critical dependencies have no possible solution at
//!   all is passed over (APT's fail-early); a candidate that conflicts
//!   with an installed package upgrades that package when its candidate
//!   does not conflict, and is passed over otherwise (nothing installed is
//!   ever removed).
//!
//! Where APT would leave the system broken and call its problem resolver,
//! this resolver checks its greedy answer and, if any dependency is unmet
//! or two packages conflict, searches the choices exhaustively (with a
//! bound) for a consistent install set. Both answers are valid installs;
//! they may differ from APT's there, which the comparison test explains.
//!
//! Every answer is checked before it is returned: each package installed
//! or kept has its `Depends` and `Pre-Depends` met, and no two conflict.

use crate::aptbox::Resolved;
use crate::packages::{BinaryPackage, MultiArch};
use comb_debian::relation::{Op, Relation};
use comb_debian::Version;
use std::collections::{HashMap, HashSet};
use std::fmt;

type NameId = u32;
type VerId = u32;

/// The name of a package that cannot exist here (unknown to the universe,
/// or of another architecture): no atom naming it is ever satisfied.
const NOTHING: NameId = NameId::MAX;

/// One alternative of a dependency, interned.
#[derive(Debug, Clone)]
struct Atom {
    name: NameId,
    constraint: Option<(Op, Version)>,
    /// `name:any`: only a `Multi-Arch: allowed` package satisfies it.
    any: bool,
}

/// One version of one package, interned.
#[derive(Debug)]
struct Ver {
    name: NameId,
    /// `Pre-Depends` then `Depends`, each an or-group.
    depends: Vec<Vec<Atom>>,
    /// `Conflicts` and `Breaks`.
    negative: Vec<Atom>,
    provides: Vec<(NameId, Option<Version>)>,
    /// APT's order: 1 required … 5 extra, 0 when not given.
    priority: u8,
}

/// The interned names and versions shared by a [`Universe`] and the
/// [`System`]s built on it.
#[derive(Debug, Default)]
struct Tables {
    names: HashMap<String, NameId>,
    name_text: Vec<String>,
    packages: Vec<BinaryPackage>,
    vers: Vec<Ver>,
    real: HashMap<NameId, Vec<VerId>>,
    provided: HashMap<NameId, Vec<(VerId, Option<Version>)>>,
    /// For each name, the versions whose `Conflicts`/`Breaks` name it
    /// (with the index of the atom).
    rev_negative: HashMap<NameId, Vec<(VerId, u32)>>,
}

/// A snapshot's binary packages for one architecture, indexed for
/// resolution. Packages of other architectures are left out; `all`
/// packages are in.
#[derive(Debug)]
pub struct Universe {
    architecture: String,
    tables: Tables,
    /// Each name's highest version.
    best: Vec<Option<VerId>>,
}

impl Universe {
    /// Index `packages` (those of `architecture` and `all`; others are
    /// skipped). Their order is the index's: it breaks ties between
    /// providers as APT's does.
    pub fn new(architecture: &str, packages: Vec<BinaryPackage>) -> Universe {
        let mut tables = Tables::default();
        let nothing = Tables::default();
        for p in packages {
            if p.architecture == architecture || p.architecture == "all" {
                tables.add_with(p, &nothing, architecture);
            }
        }
        let mut best = vec![None; tables.name_text.len()];
        for (&name, vers) in &tables.real {
            best[name as usize] = vers.iter().copied().max_by(|a, b| {
                let (a, b) = (&tables.packages[*a as usize], &tables.packages[*b as usize]);
                a.version.cmp(&b.version)
            });
        }
        Universe {
            architecture: architecture.to_string(),
            tables,
            best,
        }
    }

    /// The architecture resolved for.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// How many package versions it holds.
    pub fn len(&self) -> usize {
        self.tables.vers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.vers.is_empty()
    }

    /// Its packages, in the order given.
    pub fn packages(&self) -> &[BinaryPackage] {
        &self.tables.packages
    }

    /// The package `name` at `version`, if it holds it.
    pub fn find(&self, name: &str, version: &str) -> Option<&BinaryPackage> {
        let id = *self.tables.names.get(name)?;
        self.tables.real.get(&id)?.iter().find_map(|&v| {
            let p = &self.tables.packages[v as usize];
            (p.version.as_str() == version).then_some(p)
        })
    }
}

impl Tables {
    fn intern(&mut self, name: &str, base: &Tables) -> NameId {
        if let Some(&id) = base.names.get(name) {
            return id;
        }
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = (base.name_text.len() + self.name_text.len()) as NameId;
        self.names.insert(name.to_string(), id);
        self.name_text.push(name.to_string());
        id
    }

    /// Add one package; ids of versions and names continue `base`'s.
    fn add_with(&mut self, p: BinaryPackage, base: &Tables, architecture: &str) -> VerId {
        let id = (base.vers.len() + self.vers.len()) as VerId;
        let name = self.intern(&p.name, base);
        let atom = |t: &mut Tables, a: &comb_debian::relation::Alternative| Atom {
            name: match a.arch_qualifier.as_deref() {
                // A package of another architecture: none is in a
                // universe of one.
                Some(q) if q != "any" && q != "native" && q != architecture => NOTHING,
                _ => t.intern(&a.name, base),
            },
            constraint: a
                .version
                .as_ref()
                .and_then(|c| Version::parse(&c.version).ok().map(|v| (c.op, v))),
            any: a.arch_qualifier.as_deref() == Some("any"),
        };
        // APT's order: `Pre-Depends`, `Depends`, `Conflicts`, `Breaks`,
        // the fields that only name packages, `Provides`.
        let mut depends = Vec::with_capacity(p.depends.len() + p.pre_depends.len());
        for r in p.pre_depends.iter().chain(&p.depends) {
            let group: Vec<Atom> = r.alternatives.iter().map(|a| atom(self, a)).collect();
            depends.push(group);
        }
        let mut negative = Vec::new();
        for r in p.conflicts.iter().chain(&p.breaks) {
            for a in &r.alternatives {
                let at = atom(self, a);
                if at.name == NOTHING {
                    continue;
                }
                self.rev_negative
                    .entry(at.name)
                    .or_default()
                    .push((id, negative.len() as u32));
                negative.push(at);
            }
        }
        for name in &p.mentioned {
            self.intern(name, base);
        }
        let mut provides = Vec::new();
        for r in &p.provides {
            for a in &r.alternatives {
                let n = self.intern(&a.name, base);
                let v = a
                    .version
                    .as_ref()
                    .filter(|c| c.op == Op::Equal)
                    .and_then(|c| Version::parse(&c.version).ok());
                self.provided.entry(n).or_default().push((id, v.clone()));
                provides.push((n, v));
            }
        }
        let priority = match p.priority.as_deref() {
            Some("required") => 1,
            Some("important") => 2,
            Some("standard") => 3,
            Some("optional") => 4,
            Some("extra") => 5,
            _ => 0,
        };
        self.real.entry(name).or_default().push(id);
        self.vers.push(Ver {
            name,
            depends,
            negative,
            provides,
            priority,
        });
        self.packages.push(p);
        id
    }
}

/// The packages installed (a dpkg status) and the repository's packages
/// that take the place of the universe's, over one [`Universe`]: what
/// resolutions start from. Build one per base environment and resolve
/// each package's build dependencies on it, from several threads at once
/// if wanted.
#[derive(Debug)]
pub struct System<'u> {
    universe: &'u Universe,
    /// Names, versions and packages beyond the universe's: the installed
    /// packages the universe does not have and the local packages.
    extra: Tables,
    /// Names whose universe versions the local packages replace.
    hidden: HashSet<NameId>,
    installed: HashMap<NameId, VerId>,
    /// Installed versions that nothing available has: candidates only
    /// when nothing else is.
    installed_only: HashSet<VerId>,
    candidates: HashMap<NameId, Option<VerId>>,
    prefer_available: bool,
}

/// Why a request cannot be installed, in APT's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsatisfiable {
    /// One line per unmet dependency, ` PACKAGE : Depends: …`, the request
    /// first and then, indented, why its choices cannot be installed.
    pub lines: Vec<String>,
}

impl fmt::Display for Unsatisfiable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "The following packages have unmet dependencies:")?;
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unsatisfiable {}

/// This resolver and its version: part of the key of every resolution it
/// makes. Bump it whenever an answer may change.
pub const RESOLVER: &str = "comb-solver 1";

/// What a request is called in explanations (APT shows the dummy
/// package that carries a build's dependencies).
pub const REQUEST_NAME: &str = "comb-build-deps";

/// Bound on the exhaustive search's steps, per resolution.
const SEARCH_STEPS: usize = 20_000;

impl<'u> System<'u> {
    /// `installed`: the packages of a dpkg status (see
    /// [`crate::packages::parse_status`]). `local`: packages that take the
    /// place of the universe's packages of the same names. With
    /// `prefer_available`, an installed package that a dependency needs is
    /// moved to the available version, up or down (APT with the index
    /// pinned above 1000).
    pub fn new(
        universe: &'u Universe,
        installed: Vec<BinaryPackage>,
        local: Vec<BinaryPackage>,
        prefer_available: bool,
    ) -> System<'u> {
        let base = &universe.tables;
        let mut extra = Tables::default();
        let mut hidden = HashSet::new();
        for p in local {
            if p.architecture != universe.architecture && p.architecture != "all" {
                continue;
            }
            let name = extra.intern(&p.name, base);
            if (name as usize) < base.name_text.len() {
                hidden.insert(name);
            }
            extra.add_with(p, base, &universe.architecture);
        }
        let mut system = System {
            universe,
            extra,
            hidden,
            installed: HashMap::new(),
            installed_only: HashSet::new(),
            candidates: HashMap::new(),
            prefer_available,
        };
        for p in installed {
            let same = system.lookup(&p.name).and_then(|name| {
                system.real(name).find(|&v| {
                    let q = system.package(v);
                    q.version == p.version && q.architecture == p.architecture
                })
            });
            let name = system.extra.intern(&p.name, base);
            let ver = match same {
                Some(v) => v,
                None => {
                    let v = system.extra.add_with(p, base, &universe.architecture);
                    system.installed_only.insert(v);
                    v
                }
            };
            system.installed.insert(name, ver);
        }
        // Only these names have a candidate other than the universe's.
        let names: HashSet<NameId> = system
            .installed
            .keys()
            .chain(&system.hidden)
            .chain(system.extra.real.keys())
            .copied()
            .collect();
        for name in names {
            let c = system.compute_candidate(name);
            system.candidates.insert(name, c);
        }
        system
    }

    fn lookup(&self, name: &str) -> Option<NameId> {
        self.universe
            .tables
            .names
            .get(name)
            .or_else(|| self.extra.names.get(name))
            .copied()
    }

    fn base_vers(&self) -> u32 {
        self.universe.tables.vers.len() as u32
    }

    fn ver(&self, v: VerId) -> &Ver {
        let base = self.base_vers();
        if v < base {
            &self.universe.tables.vers[v as usize]
        } else {
            &self.extra.vers[(v - base) as usize]
        }
    }

    fn package(&self, v: VerId) -> &BinaryPackage {
        let base = self.base_vers();
        if v < base {
            &self.universe.tables.packages[v as usize]
        } else {
            &self.extra.packages[(v - base) as usize]
        }
    }

    /// Every version of the package `name` (available or installed).
    fn real(&self, name: NameId) -> impl Iterator<Item = VerId> + '_ {
        let hidden = self.hidden.contains(&name);
        let base = self
            .universe
            .tables
            .real
            .get(&name)
            .filter(|_| !hidden)
            .into_iter()
            .flatten();
        base.chain(self.extra.real.get(&name).into_iter().flatten())
            .copied()
    }

    /// Every version that provides `name`, with the version provided.
    fn providers(&self, name: NameId) -> impl Iterator<Item = (VerId, &Option<Version>)> + '_ {
        let base = self
            .universe
            .tables
            .provided
            .get(&name)
            .into_iter()
            .flatten()
            .filter(|(v, _)| !self.hidden.contains(&self.ver(*v).name));
        base.chain(self.extra.provided.get(&name).into_iter().flatten())
            .map(|(v, pv)| (*v, pv))
    }

    fn rev_negative(&self, name: NameId) -> impl Iterator<Item = (VerId, u32)> + '_ {
        let base = self
            .universe
            .tables
            .rev_negative
            .get(&name)
            .into_iter()
            .flatten()
            .filter(|(v, _)| !self.hidden.contains(&self.ver(*v).name));
        base.chain(self.extra.rev_negative.get(&name).into_iter().flatten())
            .copied()
    }

    fn compute_candidate(&self, name: NameId) -> Option<VerId> {
        let available = self
            .real(name)
            .filter(|v| !self.installed_only.contains(v))
            .max_by(|a, b| self.package(*a).version.cmp(&self.package(*b).version));
        let installed = self.installed.get(&name).copied();
        match (available, installed) {
            (Some(a), Some(i)) => {
                if self.prefer_available || self.package(a).version >= self.package(i).version {
                    Some(a)
                } else {
                    Some(i)
                }
            }
            (a, i) => a.or(i),
        }
    }

    fn candidate(&self, name: NameId) -> Option<VerId> {
        match self.candidates.get(&name) {
            Some(c) => *c,
            None => self.universe.best.get(name as usize).copied().flatten(),
        }
    }

    /// Does version `v` satisfy `atom`, as the package itself or by a
    /// `Provides`?
    fn satisfies(&self, v: VerId, atom: &Atom) -> bool {
        let ver = self.ver(v);
        let p = self.package(v);
        if atom.any && p.multi_arch != MultiArch::Allowed {
            return false;
        }
        if ver.name == atom.name {
            return match &atom.constraint {
                None => true,
                Some((op, want)) => op.satisfied_by(&p.version, want),
            };
        }
        ver.provides.iter().any(|(n, pv)| {
            *n == atom.name
                && match (&atom.constraint, pv) {
                    (None, _) => true,
                    (Some((op, want)), Some(have)) => op.satisfied_by(have, want),
                    (Some(_), None) => false,
                }
        })
    }

    /// Resolve `request` (the relations of a `Depends:` field) on this
    /// system: the packages to install or upgrade, sorted by name.
    pub fn resolve(&self, request: &[Relation]) -> Result<Vec<Resolved>, Unsatisfiable> {
        let groups = self.groups(request);
        let mut state = State::default();
        let mut unmet = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            if state.satisfied(self, group) {
                continue;
            }
            let mut found = false;
            for c in self.solutions(&state, group) {
                let name = self.ver(c).name;
                if state.candidate(self, name) == Some(c) && state.mark_install(self, name, 1) {
                    found = true;
                    break;
                }
            }
            if !found {
                unmet.push(i);
            }
        }
        if !self.consistent(&state, &groups) {
            state.repair(self);
        }
        if !self.consistent(&state, &groups) {
            // Where APT calls its problem resolver: search every choice,
            // from the start (a greedy choice may be what is in the way).
            let mut steps = 0;
            match search(self, &groups, State::default(), &mut steps) {
                Some(found) => state = found,
                None if !unmet.is_empty() => return Err(self.explain(request, &groups, &unmet)),
                None => {
                    return Err(Unsatisfiable {
                        lines: vec![format!(
                            " {REQUEST_NAME} : the dependencies can be chosen only in ways \
                             that conflict or leave a dependency unmet ({steps} choices tried)"
                        )],
                    })
                }
            }
        }
        let mut out: Vec<Resolved> = state
            .marked
            .iter()
            .map(|&n| {
                let v = state
                    .current(self, n)
                    .expect("a marked name has a candidate");
                let p = self.package(v);
                Resolved {
                    name: p.name.clone(),
                    version: p.version.to_string(),
                    architecture: p.architecture.clone(),
                    sha256: p.sha256.clone(),
                    size: p.size,
                    filename: p.filename.clone(),
                }
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The request's relations, interned.
    fn groups(&self, request: &[Relation]) -> Vec<Vec<Atom>> {
        request
            .iter()
            .map(|r| {
                r.alternatives
                    .iter()
                    .map(|a| Atom {
                        name: self.lookup(&a.name).unwrap_or(NOTHING),
                        constraint: a
                            .version
                            .as_ref()
                            .and_then(|c| Version::parse(&c.version).ok().map(|v| (c.op, v))),
                        any: a.arch_qualifier.as_deref() == Some("any"),
                    })
                    .collect()
            })
            .collect()
    }

    /// The state in which `install` (name and version of each package)
    /// is installed on this system, or why there is none.
    fn state_of(&self, install: &[Resolved]) -> Result<State, String> {
        let mut state = State::default();
        for r in install {
            let name = self
                .lookup(&r.name)
                .ok_or_else(|| format!("{} is not a package of this system", r.name))?;
            let v = self.candidate(name).filter(|&v| {
                self.package(v).version.as_str() == r.version
                    || Version::parse(&r.version).is_ok_and(|w| self.package(v).version == w)
            });
            if v.is_none() {
                return Err(format!(
                    "{} {} is not the version the index offers",
                    r.name, r.version
                ));
            }
            state.mark(name);
        }
        Ok(state)
    }

    /// Check an install set made elsewhere (APT's): is `request` met once
    /// `install` is installed on this system, with every dependency of
    /// what is installed met and no two packages in conflict? `Err` says
    /// what is wrong.
    pub fn check(&self, request: &[Relation], install: &[Resolved]) -> Result<(), String> {
        let groups = self.groups(request);
        let state = self.state_of(install)?;
        match first_problem(self, &state, &groups) {
            None => Ok(()),
            Some(Problem::Unmet { owner: None, group }) => Err(format!(
                "the request's `{}` is unmet",
                self.group_text(group)
            )),
            Some(Problem::Unmet {
                owner: Some(owner),
                group,
            }) => {
                let v = state.current(self, owner).expect("an owner is installed");
                let p = self.package(v);
                Err(format!(
                    "{} {} depends on `{}`, which is unmet",
                    p.name,
                    p.version,
                    self.group_text(group)
                ))
            }
            Some(Problem::Conflict(a, b)) => {
                let name = |n| {
                    let v = state
                        .current(self, n)
                        .expect("a conflicting package is installed");
                    format!("{} {}", self.package(v).name, self.package(v).version)
                };
                Err(format!("{} and {} conflict", name(a), name(b)))
            }
        }
    }

    /// The largest part of `install` (a valid install set, or part of one)
    /// that is installable on this system by itself: every dependency of
    /// what it keeps is met by what it keeps or what is installed. What
    /// two environments' sets have in common is such a part, unless they
    /// met a dependency differently.
    pub fn installable_part(&self, install: &[Resolved]) -> Result<Vec<Resolved>, String> {
        let mut kept: Vec<Resolved> = install.to_vec();
        loop {
            let state = self.state_of(&kept)?;
            match first_problem(self, &state, &[]) {
                None => return Ok(kept),
                Some(Problem::Unmet {
                    owner: Some(owner), ..
                }) => {
                    let name = self.name_text(owner).to_string();
                    let before = kept.len();
                    kept.retain(|r| r.name != name);
                    if kept.len() == before {
                        // An installed package's dependency is unmet: no
                        // part of `install` fixes that.
                        return Err(format!("{name} is installed with an unmet dependency"));
                    }
                }
                Some(Problem::Unmet { owner: None, .. }) => unreachable!("no request"),
                Some(Problem::Conflict(a, b)) => {
                    return Err(format!(
                        "{} and {} conflict",
                        self.name_text(a),
                        self.name_text(b)
                    ))
                }
            }
        }
    }

    /// Where two valid install sets for `request` chose differently: each
    /// dependency (of the request, or of a package both install) that they
    /// meet with different packages, as `DEPENDENCY (of OWNER): FIRST took
    /// X, SECOND took Y`.
    pub fn choices_between(
        &self,
        request: &[Relation],
        first: (&str, &[Resolved]),
        second: (&str, &[Resolved]),
    ) -> Result<Vec<String>, String> {
        let groups = self.groups(request);
        let a = self.state_of(first.1)?;
        let b = self.state_of(second.1)?;
        let mut owners: Vec<(String, &[Vec<Atom>])> = vec![(REQUEST_NAME.to_string(), &groups)];
        let mut both: Vec<NameId> = a
            .log
            .iter()
            .copied()
            .filter(|n| b.marked.contains(n))
            .collect();
        both.sort_unstable();
        for n in both {
            let v = a.current(self, n).expect("marked");
            owners.push((self.package(v).name.clone(), self.ver(v).depends.as_slice()));
        }
        let mut choices = Vec::new();
        for (owner, deps) in owners {
            for group in deps {
                let took = |state: &State| -> Vec<String> {
                    let mut names: Vec<String> = group
                        .iter()
                        .flat_map(|atom| state.matching(self, atom))
                        .map(|v| self.package(v).name.clone())
                        .collect();
                    names.sort();
                    names.dedup();
                    names
                };
                let (x, y) = (took(&a), took(&b));
                if x != y {
                    choices.push(format!(
                        "`{}` (of {owner}): {} took {}, {} took {}",
                        self.group_text(group),
                        first.0,
                        list_or_nothing(&x),
                        second.0,
                        list_or_nothing(&y)
                    ));
                }
            }
        }
        Ok(choices)
    }

    fn group_text(&self, group: &[Atom]) -> String {
        group
            .iter()
            .map(|atom| {
                let name = if atom.name == NOTHING {
                    "(a package of another architecture)".to_string()
                } else {
                    self.name_text(atom.name).to_string()
                };
                let any = if atom.any { ":any" } else { "" };
                match &atom.constraint {
                    Some((op, v)) => format!("{name}{any} ({op} {v})"),
                    None => format!("{name}{any}"),
                }
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn name_text(&self, n: NameId) -> &str {
        let base = self.universe.tables.name_text.len() as u32;
        if n < base {
            &self.universe.tables.name_text[n as usize]
        } else {
            &self.extra.name_text[(n - base) as usize]
        }
    }

    /// APT's `getAllPossibleSolutions`: each alternative's candidates that
    /// satisfy it, sorted as `CompareProviders` sorts them; upgrades of
    /// installed packages before new installs.
    fn solutions(&self, state: &State, group: &[Atom]) -> Vec<VerId> {
        let mut upgrades = Vec::new();
        let mut new = Vec::new();
        for atom in group {
            if atom.name == NOTHING {
                continue;
            }
            let mut found: Vec<VerId> = Vec::new();
            if let Some(c) = state.candidate(self, atom.name) {
                if self.satisfies(c, atom) {
                    found.push(c);
                }
            }
            for (v, _) in self.providers(atom.name) {
                if state.candidate(self, self.ver(v).name) == Some(v)
                    && self.satisfies(v, atom)
                    && !found.contains(&v)
                {
                    found.push(v);
                }
            }
            found.sort_by(|a, b| self.compare_providers(atom.name, *a, *b));
            for v in found {
                let name = self.ver(v).name;
                if state.current(self, name) == Some(v) {
                    continue;
                }
                if upgrades.contains(&v) || new.contains(&v) {
                    continue;
                }
                if self.installed.contains_key(&name) {
                    upgrades.push(v);
                } else {
                    new.push(v);
                }
            }
        }
        upgrades.extend(new);
        upgrades
    }

    fn compare_providers(&self, target: NameId, a: VerId, b: VerId) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let (va, vb) = (self.ver(a), self.ver(b));
        let (pa, pb) = (self.package(a), self.package(b));
        let first = |x: bool, y: bool| match (x, y) {
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            _ => None,
        };
        let installed = |name: NameId| self.installed.contains_key(&name);
        first(installed(va.name), installed(vb.name))
            .or_else(|| first(va.name == target, vb.name == target))
            .or_else(|| first(pa.essential, pb.essential))
            .unwrap_or_else(|| {
                // Then the higher priority; then the package the index
                // named last, as APT's "unable to decide" does.
                va.priority
                    .cmp(&vb.priority)
                    .then_with(|| vb.name.cmp(&va.name))
            })
    }

    /// Is every package installed or marked free of unmet dependencies and
    /// conflicts, and the request met?
    fn consistent(&self, state: &State, request: &[Vec<Atom>]) -> bool {
        if !request.iter().all(|g| state.satisfied(self, g)) {
            return false;
        }
        let upgraded = state.marked.iter().any(|n| self.installed.contains_key(n));
        let check = |name: NameId| -> bool {
            let Some(v) = state.current(self, name) else {
                return true;
            };
            self.ver(v).depends.iter().all(|g| state.satisfied(self, g))
                && state.conflict_of(self, v).is_none()
        };
        state.marked.iter().all(|&n| check(n))
            && (!upgraded || self.installed.keys().all(|&n| check(n)))
    }

    /// APT's explanation of the unmet groups of a request.
    fn explain(
        &self,
        request: &[Relation],
        groups: &[Vec<Atom>],
        unmet: &[usize],
    ) -> Unsatisfiable {
        let mut lines = Vec::new();
        let pad = " ".repeat(REQUEST_NAME.len() + 2);
        for (n, &i) in unmet.iter().enumerate() {
            let head = if n == 0 {
                format!(" {REQUEST_NAME} : ")
            } else {
                format!(" {pad} ")
            };
            let reasons: Vec<String> = request[i]
                .alternatives
                .iter()
                .zip(&groups[i])
                .map(|(a, atom)| format!("{} {}", alternative_text(a), self.why_not(atom)))
                .collect();
            lines.push(format!("{head}Depends: {}", reasons.join(" or\n    ")));
            // Why the first installable choice is not: one level down.
            let mut seen = HashSet::new();
            for atom in &groups[i] {
                if let Some(line) = self.why_not_installable(atom, 1, &mut seen) {
                    lines.extend(line);
                    break;
                }
            }
        }
        Unsatisfiable { lines }
    }

    /// APT's phrase for an alternative that cannot be met.
    fn why_not(&self, atom: &Atom) -> String {
        if atom.name == NOTHING {
            return "but it is not installable".into();
        }
        let candidate = self.candidate(atom.name);
        let providers: Vec<VerId> = self
            .providers(atom.name)
            .map(|(v, _)| v)
            .filter(|&v| self.candidate(self.ver(v).name) == Some(v))
            .collect();
        match candidate {
            Some(c) if !self.satisfies(c, atom) && providers.is_empty() => {
                let p = self.package(c);
                if atom.any && p.multi_arch != MultiArch::Allowed {
                    format!("but {} is not Multi-Arch: allowed", p.name)
                } else {
                    format!("but {} is to be installed", p.version)
                }
            }
            None if providers.is_empty() => "but it is not installable".into(),
            None if !providers.iter().any(|&v| self.satisfies(v, atom)) => {
                "but it is a virtual package whose providers do not satisfy it".into()
            }
            _ => "but it is not going to be installed".into(),
        }
    }

    /// Why the best solution of `atom` cannot be installed: the first of
    /// its dependencies or conflicts that fails, as APT lists them.
    fn why_not_installable(
        &self,
        atom: &Atom,
        depth: usize,
        seen: &mut HashSet<NameId>,
    ) -> Option<Vec<String>> {
        if depth > 8 || atom.name == NOTHING {
            return None;
        }
        let state = State::default();
        let solution = self.solutions(&state, std::slice::from_ref(atom));
        let v = *solution.first()?;
        let ver = self.ver(v);
        if !seen.insert(ver.name) {
            return None;
        }
        let p = self.package(v);
        let indent = "  ".repeat(depth);
        let head = format!(" {indent}{} {} : ", p.name, p.version);
        let relations: Vec<&Relation> = p.depends.iter().chain(&p.pre_depends).collect();
        let mut state = State::default();
        state.marked.insert(ver.name);
        state.log.push(ver.name);
        if let Some((w, kind)) = state.conflict_of(self, v) {
            let q = self.package(w);
            return Some(vec![format!(
                "{head}{kind}: {} but {} {} is installed",
                q.name, q.name, q.version
            )]);
        }
        for (group, relation) in ver.depends.iter().zip(relations) {
            if state.satisfied(self, group) || !self.solutions(&state, group).is_empty() {
                continue;
            }
            let reasons: Vec<String> = relation
                .alternatives
                .iter()
                .zip(group)
                .map(|(a, atom)| format!("{} {}", alternative_text(a), self.why_not(atom)))
                .collect();
            let field = if p.depends.iter().any(|r| r == relation) {
                "Depends"
            } else {
                "PreDepends"
            };
            return Some(vec![format!("{head}{field}: {}", reasons.join(" or "))]);
        }
        for group in &ver.depends {
            if state.satisfied(self, group) {
                continue;
            }
            if let Some(deeper) = group
                .iter()
                .find_map(|a| self.why_not_installable(a, depth + 1, seen))
            {
                return Some(deeper);
            }
        }
        None
    }
}

fn list_or_nothing(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

fn alternative_text(a: &comb_debian::relation::Alternative) -> String {
    let qualifier = a
        .arch_qualifier
        .as_deref()
        .map(|q| format!(":{q}"))
        .unwrap_or_default();
    match &a.version {
        Some(c) => format!("{}{qualifier} ({} {})", a.name, c.op, c.version),
        None => format!("{}{qualifier}", a.name),
    }
}

/// The names marked for installation (each at its candidate), in the
/// order marked, and the names whose candidate a failed choice discarded
/// (as APT discards them for the rest of a resolution).
#[derive(Debug, Default, Clone)]
struct State {
    marked: HashSet<NameId>,
    log: Vec<NameId>,
    discarded: HashSet<NameId>,
}

impl State {
    /// The version `name` would be installed at: its candidate, or what is
    /// installed once the candidate was discarded.
    fn candidate(&self, s: &System, name: NameId) -> Option<VerId> {
        if self.discarded.contains(&name) {
            s.installed.get(&name).copied()
        } else {
            s.candidate(name)
        }
    }

    fn current(&self, s: &System, name: NameId) -> Option<VerId> {
        if self.marked.contains(&name) {
            self.candidate(s, name)
        } else {
            s.installed.get(&name).copied()
        }
    }

    fn mark(&mut self, name: NameId) {
        if self.marked.insert(name) {
            self.log.push(name);
        }
    }

    fn unmark(&mut self, name: NameId) {
        if self.marked.remove(&name) {
            self.log.retain(|&n| n != name);
        }
    }

    /// APT's `MarkInstall_DiscardInstall`: `name` is not installed after
    /// all, and its candidate is out of the running.
    fn discard(&mut self, name: NameId) {
        self.unmark(name);
        self.discarded.insert(name);
    }

    fn satisfied(&self, s: &System, group: &[Atom]) -> bool {
        group.iter().any(|atom| {
            if atom.name == NOTHING {
                return false;
            }
            if let Some(v) = self.current(s, atom.name) {
                if s.satisfies(v, atom) {
                    return true;
                }
            }
            s.providers(atom.name)
                .any(|(v, _)| self.current(s, s.ver(v).name) == Some(v) && s.satisfies(v, atom))
        })
    }

    /// A package of the system that `v` conflicts with or breaks, or that
    /// conflicts with or breaks `v`.
    fn conflict_of(&self, s: &System, v: VerId) -> Option<(VerId, &'static str)> {
        let ver = s.ver(v);
        let kind = |w: VerId, i: usize| {
            let p = s.package(w);
            if i < p
                .conflicts
                .iter()
                .map(|r| r.alternatives.len())
                .sum::<usize>()
            {
                "Conflicts"
            } else {
                "Breaks"
            }
        };
        for (i, atom) in ver.negative.iter().enumerate() {
            if let Some(w) = self.current(s, atom.name) {
                if w != v && s.ver(w).name != ver.name && s.satisfies(w, atom) {
                    return Some((w, kind(v, i)));
                }
            }
            for (w, _) in s.providers(atom.name) {
                if w != v
                    && s.ver(w).name != ver.name
                    && self.current(s, s.ver(w).name) == Some(w)
                    && s.satisfies(w, atom)
                {
                    return Some((w, kind(v, i)));
                }
            }
        }
        let names = std::iter::once(ver.name).chain(ver.provides.iter().map(|(n, _)| *n));
        for n in names {
            for (w, i) in s.rev_negative(n) {
                let wv = s.ver(w);
                if w != v
                    && wv.name != ver.name
                    && self.current(s, wv.name) == Some(w)
                    && s.satisfies(v, &wv.negative[i as usize])
                {
                    return Some((w, kind(w, i as usize)));
                }
            }
        }
        None
    }

    /// APT's `MarkInstall` with auto-install, for a dependency (fail
    /// early): mark `name`'s candidate, then satisfy its dependencies in
    /// turn. On failure `name` is unmarked and its candidate discarded;
    /// what it marked for its other dependencies stays marked, as in APT.
    fn mark_install(&mut self, s: &System, name: NameId, depth: usize) -> bool {
        let Some(c) = self.candidate(s, name) else {
            return false;
        };
        if self.current(s, name) == Some(c) {
            return true;
        }
        if depth > 3000 {
            return false;
        }
        let ver = s.ver(c);
        // A critical dependency nothing could satisfy: discard it now.
        for group in &ver.depends {
            if !self.satisfied(s, group) && s.solutions(self, group).is_empty() {
                self.discard(name);
                return false;
            }
        }
        // Its conflicts: a package marked for installation is unmarked; an
        // installed one is upgraded when its candidate does not conflict;
        // nothing installed is removed, so otherwise this choice fails.
        let mut upgrade = Vec::new();
        for atom in &ver.negative {
            for w in self.matching(s, atom) {
                let wname = s.ver(w).name;
                if w == c || wname == name {
                    continue;
                }
                if self.marked.contains(&wname) {
                    self.unmark(wname);
                } else {
                    match self.candidate(s, wname) {
                        Some(cw) if cw != w && !s.satisfies(cw, atom) => upgrade.push(wname),
                        _ => return false,
                    }
                }
            }
        }
        self.mark(name);
        // What is installed or marked and conflicts with it: not APT's
        // business here (its problem resolver's), so the choice fails.
        if let Some((w, _)) = self.conflict_of(s, c) {
            if !upgrade.contains(&s.ver(w).name) {
                self.unmark(name);
                return false;
            }
        }
        for wname in upgrade {
            if !self.mark_install(s, wname, depth + 1) {
                self.discard(name);
                return false;
            }
        }
        for group in &ver.depends {
            if self.satisfied(s, group) {
                continue;
            }
            let mut found = false;
            for v in s.solutions(self, group) {
                let vname = s.ver(v).name;
                if self.candidate(s, vname) != Some(v) {
                    continue;
                }
                if self.mark_install(s, vname, depth + 1) {
                    found = true;
                    break;
                }
            }
            if !found {
                self.discard(name);
                return false;
            }
        }
        true
    }

    /// The versions installed or marked that satisfy `atom`.
    fn matching(&self, s: &System, atom: &Atom) -> Vec<VerId> {
        let mut found = Vec::new();
        if atom.name == NOTHING {
            return found;
        }
        if let Some(v) = self.current(s, atom.name) {
            if s.satisfies(v, atom) {
                found.push(v);
            }
        }
        for (v, _) in s.providers(atom.name) {
            if self.current(s, s.ver(v).name) == Some(v)
                && s.satisfies(v, atom)
                && !found.contains(&v)
            {
                found.push(v);
            }
        }
        found
    }

    /// What APT's problem resolver does first: installed packages that an
    /// upgrade left with an unmet dependency are upgraded too.
    fn repair(&mut self, s: &System) {
        for _ in 0..4 {
            let broken: Vec<NameId> = s
                .installed
                .keys()
                .copied()
                .filter(|n| !self.marked.contains(n))
                .filter(|&n| {
                    let v = s.installed[&n];
                    !s.ver(v).depends.iter().all(|g| self.satisfied(s, g))
                })
                .collect();
            if broken.is_empty() {
                return;
            }
            for n in broken {
                self.mark_install(s, n, 0);
            }
        }
    }
}

/// Exhaustive search, depth first in APT's order of preference: the
/// first problem of `state` (an unmet group of the request, an unmet
/// dependency or a conflict) and each way to fix it.
fn search(s: &System, request: &[Vec<Atom>], state: State, steps: &mut usize) -> Option<State> {
    *steps += 1;
    if *steps > SEARCH_STEPS {
        return None;
    }
    let Some(problem) = first_problem(s, &state, request) else {
        return Some(state);
    };
    let options: Vec<NameId> = match problem {
        Problem::Unmet { owner, group } => {
            let mut options: Vec<NameId> = s
                .solutions(&state, group)
                .into_iter()
                .map(|v| s.ver(v).name)
                .filter(|n| !state.marked.contains(n))
                .collect();
            if let Some(owner) = owner {
                if !state.marked.contains(&owner)
                    && state.candidate(s, owner) != state.current(s, owner)
                {
                    options.push(owner);
                }
            }
            options
        }
        Problem::Conflict(a, b) => [a, b]
            .into_iter()
            .filter(|n| !state.marked.contains(n) && state.candidate(s, *n) != state.current(s, *n))
            .collect(),
    };
    for name in options {
        let mut next = state.clone();
        next.mark(name);
        if let Some(found) = search(s, request, next, steps) {
            return Some(found);
        }
        if *steps > SEARCH_STEPS {
            return None;
        }
    }
    None
}

enum Problem<'a> {
    /// An unmet group: of the request (`owner` none) or of a package.
    Unmet {
        owner: Option<NameId>,
        group: &'a [Atom],
    },
    /// Two packages (names) that conflict.
    Conflict(NameId, NameId),
}

/// The first problem of `state`, if it has one.
fn first_problem<'a>(
    s: &'a System,
    state: &State,
    request: &'a [Vec<Atom>],
) -> Option<Problem<'a>> {
    for group in request {
        if !state.satisfied(s, group) {
            return Some(Problem::Unmet { owner: None, group });
        }
    }
    let upgraded = state.marked.iter().any(|n| s.installed.contains_key(n));
    let mut names: Vec<NameId> = state.log.clone();
    if upgraded {
        let mut installed: Vec<NameId> = s.installed.keys().copied().collect();
        installed.sort_unstable();
        names.extend(installed.into_iter().filter(|n| !state.marked.contains(n)));
    }
    for name in names {
        let Some(v) = state.current(s, name) else {
            continue;
        };
        for group in &s.ver(v).depends {
            if !state.satisfied(s, group) {
                return Some(Problem::Unmet {
                    owner: Some(name),
                    group,
                });
            }
        }
        if let Some((w, _)) = state.conflict_of(s, v) {
            return Some(Problem::Conflict(name, s.ver(w).name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::{parse_packages, parse_status};

    /// An index paragraph: `name version` and extra fields.
    fn pkg(name: &str, version: &str, fields: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\n{fields}\
             Filename: pool/{name}_{version}.deb\nSize: 1\nSHA256: {}\n\n",
            "a".repeat(64)
        )
    }

    fn universe(index: &str) -> Universe {
        Universe::new("amd64", parse_packages(index, "test").unwrap())
    }

    fn installed(status: &str) -> Vec<BinaryPackage> {
        parse_status(status, "status").unwrap()
    }

    fn request(text: &str) -> Vec<Relation> {
        crate::relation_field("test", "Depends", text).unwrap()
    }

    /// `name=version` of each package to install.
    fn resolve(system: &System, text: &str) -> Vec<String> {
        system
            .resolve(&request(text))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .into_iter()
            .map(|r| format!("{}={}", r.name, r.version))
            .collect()
    }

    /// What two install sets share is kept only where it stands alone.
    #[test]
    fn the_installable_part_of_a_shared_set_drops_what_lost_its_dependency() {
        let u = universe(&format!(
            "{}{}{}{}{}",
            pkg("tool", "1", "Depends: mta-a | mta-b, base\n"),
            pkg("mta-a", "1", ""),
            pkg("mta-b", "1", ""),
            pkg("base", "1", ""),
            pkg("other", "1", "Depends: base\n")
        ));
        let s = System::new(&u, Vec::new(), Vec::new(), false);
        let with_a = s.resolve(&request("tool, mta-a, other")).unwrap();
        let with_b = s.resolve(&request("mta-b, tool")).unwrap();
        let common: Vec<Resolved> = with_a
            .iter()
            .filter(|r| with_b.iter().any(|o| o.name == r.name))
            .cloned()
            .collect();
        let names = |set: &[Resolved]| -> Vec<String> {
            let mut n: Vec<String> = set.iter().map(|r| r.name.clone()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&common), ["base", "tool"]);
        // tool's mail agent differs between the two: it cannot stand alone.
        assert_eq!(names(&s.installable_part(&common).unwrap()), ["base"]);
        assert_eq!(names(&s.installable_part(&with_a).unwrap()), names(&with_a));
    }

    fn fails(system: &System, text: &str) -> String {
        match system.resolve(&request(text)) {
            Ok(r) => panic!("{text} resolved to {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn dependencies_are_followed_and_alternatives_taken_in_order() {
        let u = universe(
            &[
                pkg("a", "1", "Depends: b | c, d (>= 2)\n"),
                pkg("b", "1", ""),
                pkg("c", "1", ""),
                pkg("d", "2", "Depends: e\n"),
                pkg("e", "1", ""),
                pkg("x", "1", "Depends: missing | c\n"),
            ]
            .concat(),
        );
        let s = System::new(&u, Vec::new(), Vec::new(), false);
        assert_eq!(resolve(&s, "a"), ["a=1", "b=1", "d=2", "e=1"]);
        // An alternative that cannot be installed is passed over.
        assert_eq!(resolve(&s, "x"), ["c=1", "x=1"]);
        assert_eq!(resolve(&s, ""), Vec::<String>::new());
    }

    #[test]
    fn what_is_installed_is_not_installed_again() {
        let u = universe(&[pkg("a", "1", "Depends: b\n"), pkg("b", "1", "")].concat());
        let status =
            "Package: b\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n";
        let s = System::new(&u, installed(status), Vec::new(), false);
        assert_eq!(resolve(&s, "a"), ["a=1"]);
        // An installed version that is too old is upgraded.
        let old = "Package: b\nStatus: install ok installed\nVersion: 0.5\nArchitecture: amd64\n\n";
        let s = System::new(&u, installed(old), Vec::new(), false);
        assert_eq!(resolve(&s, "a, b (>= 1)"), ["a=1", "b=1"]);
        // A newer installed version is not downgraded.
        let newer = "Package: b\nStatus: install ok installed\nVersion: 2\nArchitecture: amd64\n\n";
        let s = System::new(&u, installed(newer), Vec::new(), false);
        assert_eq!(resolve(&s, "a"), ["a=1"]);
        assert!(fails(&s, "b (<< 2)").contains("b (<< 2) but 2 is to be installed"));
    }

    #[test]
    fn virtual_packages_go_to_the_provider_apt_prefers() {
        let u = universe(
            &[
                pkg(
                    "mta-b",
                    "1",
                    "Provides: mail-transport-agent\nPriority: optional\n",
                ),
                pkg(
                    "mta-a",
                    "1",
                    "Provides: mail-transport-agent\nPriority: standard\n",
                ),
                pkg("real", "1", "Provides: both\n"),
                pkg("both", "1", ""),
                pkg("v1", "1", "Provides: api (= 1)\n"),
                pkg("v2", "1", "Provides: api (= 2)\n"),
                pkg("plain", "1", "Provides: api\n"),
            ]
            .concat(),
        );
        let s = System::new(&u, Vec::new(), Vec::new(), false);
        // Higher Priority first.
        assert_eq!(resolve(&s, "mail-transport-agent"), ["mta-a=1"]);
        // The package named before its providers.
        assert_eq!(resolve(&s, "both"), ["both=1"]);
        // Versioned dependencies only on versioned provides.
        assert_eq!(resolve(&s, "api (>= 2)"), ["v2=1"]);
        assert!(fails(&s, "api (>= 3)").contains("api (>= 3) but it is a virtual package"));
    }

    #[test]
    fn a_conflict_with_an_installed_package_upgrades_it_or_fails_the_choice() {
        let u = universe(
            &[
                pkg("new", "1", "Conflicts: old (<< 2)\n"),
                pkg("old", "2", ""),
                pkg("stuck", "1", "Conflicts: keep\n"),
                pkg("keep", "1", ""),
                pkg("alt", "1", ""),
                // An arch-qualified conflict names a package of another
                // architecture, which a universe of one does not have.
                pkg("libc6-x32", "1", "Conflicts: libc6-i386:x32\n"),
                pkg("libc6-i386", "1", ""),
            ]
            .concat(),
        );
        let status = "Package: old\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n\
                      Package: keep\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n";
        let s = System::new(&u, installed(status), Vec::new(), false);
        assert_eq!(resolve(&s, "new"), ["new=1", "old=2"]);
        assert_eq!(resolve(&s, "stuck | alt"), ["alt=1"]);
        assert!(fails(&s, "stuck").contains("stuck but it is not going to be installed"));
        assert_eq!(
            resolve(&s, "libc6-x32, libc6-i386"),
            ["libc6-i386=1", "libc6-x32=1"]
        );
    }

    #[test]
    fn a_greedy_choice_in_the_way_is_searched_around() {
        // hdf5 takes the first alternative (openssl); hts needs gnutls,
        // which conflicts with openssl but also provides what hdf5 needs.
        let u = universe(
            &[
                pkg("hdf5", "1", "Depends: curl-openssl | curl-ssl\n"),
                pkg("hts", "1", "Depends: curl-gnutls\n"),
                pkg(
                    "curl-openssl",
                    "1",
                    "Provides: curl-ssl\nConflicts: curl-gnutls\n",
                ),
                pkg(
                    "curl-gnutls",
                    "1",
                    "Provides: curl-ssl\nConflicts: curl-openssl\n",
                ),
            ]
            .concat(),
        );
        let s = System::new(&u, Vec::new(), Vec::new(), false);
        assert_eq!(resolve(&s, "hdf5"), ["curl-openssl=1", "hdf5=1"]);
        assert_eq!(
            resolve(&s, "hdf5, hts"),
            ["curl-gnutls=1", "hdf5=1", "hts=1"]
        );
    }

    #[test]
    fn unmet_dependencies_are_explained_as_apt_explains_them() {
        let u = universe(
            &[
                pkg("a", "1", "Depends: b (>= 2)\n"),
                pkg("b", "1", ""),
                pkg("top", "1", "Depends: a\n"),
            ]
            .concat(),
        );
        let s = System::new(&u, Vec::new(), Vec::new(), false);
        let text = fails(&s, "nope, top");
        assert!(
            text.starts_with("The following packages have unmet dependencies:\n"),
            "{text}"
        );
        assert!(
            text.contains(" comb-build-deps : Depends: nope but it is not installable"),
            "{text}"
        );
        assert!(
            text.contains("Depends: top but it is not going to be installed"),
            "{text}"
        );
        assert!(
            text.contains("a 1 : Depends: b (>= 2) but 1 is to be installed"),
            "{text}"
        );
    }

    #[test]
    fn local_packages_take_the_place_of_the_universe_s() {
        let u = universe(
            &[
                pkg("lib", "1", ""),
                pkg("tool", "1", "Depends: lib (>= 1)\n"),
            ]
            .concat(),
        );
        let local = parse_packages(&pkg("lib", "1+local", ""), "local").unwrap();
        let status =
            "Package: lib\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n";
        // Preferring the available versions moves the installed copy to
        // the local one when asked for.
        let s = System::new(&u, installed(status), local.clone(), true);
        assert_eq!(
            resolve(&s, "tool, lib (= 1+local)"),
            ["lib=1+local", "tool=1"]
        );
        // The universe's own copy is hidden.
        let s = System::new(&u, Vec::new(), local, false);
        assert_eq!(resolve(&s, "lib"), ["lib=1+local"]);
        assert!(fails(&s, "lib (= 1)").contains("lib (= 1) but 1+local is to be installed"));
    }

    #[test]
    fn any_qualified_dependencies_need_multi_arch_allowed() {
        let u = universe(
            &[
                pkg("perl", "1", "Multi-Arch: allowed\n"),
                pkg("make", "1", ""),
            ]
            .concat(),
        );
        let s = System::new(&u, Vec::new(), Vec::new(), false);
        assert_eq!(resolve(&s, "perl:any"), ["perl=1"]);
        assert!(fails(&s, "make:any").contains("make:any but make is not Multi-Arch: allowed"));
    }
}
