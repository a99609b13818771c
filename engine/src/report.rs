//! `comb report`: what runs reused, built and failed, and why, read from
//! the index. The JSON form of [`Report`] is a stable schema (see the
//! README), checked by tests: a change to it is deliberate.

use crate::error::Result;
use crate::why::{self, MissReason};
use comb_cache::{Event, EventStatus, Index, NodeKind, RunId, RunRecord, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The version of the JSON schema.
pub const SCHEMA: u32 = 1;

/// Stage names in pipeline order.
pub const STAGES: [NodeKind; 7] = [
    NodeKind::Index,
    NodeKind::Resolve,
    NodeKind::Fetch,
    NodeKind::BaseInstall,
    NodeKind::BaseBuild,
    NodeKind::PkgEnv,
    NodeKind::Build,
];

/// How many of the slowest builds a run's report lists.
const SLOWEST: usize = 10;

/// A build time "changed sharply" when it at least doubled or halved and
/// moved by at least this much.
const SHARP_CHANGE_MS: u64 = 1000;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub hit: u64,
    /// Found in the remote cache.
    pub fetched: u64,
    pub built: u64,
    /// Of `built`, those a remote worker ran (`[remote] execute`).
    pub built_remotely: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Counts {
    fn add(&mut self, status: EventStatus, worker: Option<&str>) {
        if status == EventStatus::Built && worker.is_some() {
            self.built_remotely += 1;
        }
        match status {
            EventStatus::Hit => self.hit += 1,
            EventStatus::Fetched => self.fetched += 1,
            EventStatus::Built => self.built += 1,
            EventStatus::Failed => self.failed += 1,
            EventStatus::Skipped => self.skipped += 1,
        }
    }

    /// Hits (here or in the remote cache) among the nodes that were
    /// looked up (hit, fetched, built or failed).
    pub fn hit_rate(&self) -> Option<f64> {
        let reused = self.hit + self.fetched;
        let looked = reused + self.built + self.failed;
        (looked > 0).then(|| reused as f64 / looked as f64)
    }
}

/// One package of a run: how its build ended and why it was not a hit.
#[derive(Debug, Clone, Serialize)]
pub struct PackageRow {
    pub name: String,
    /// `hit`, `built`, `failed` or `skipped`: its build node's status.
    pub status: EventStatus,
    /// The stage that decided it: the first of its stages that was not a
    /// hit (where a failure happened, or where the rebuild began).
    pub stage: NodeKind,
    /// Its stages' time in this run.
    pub duration_ms: u64,
    /// Its build node's key (empty if it never got one).
    pub key: String,
    /// The build node's reasons in words (empty for a hit).
    pub reasons: Vec<String>,
    /// Every stage of it that was not a hit, with its reasons.
    pub why: Vec<StageLine>,
    /// The remote worker that built it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageLine {
    pub stage: NodeKind,
    pub name: String,
    pub status: EventStatus,
    pub duration_ms: u64,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Slow {
    pub name: String,
    pub stage: NodeKind,
    pub status: EventStatus,
    pub duration_ms: u64,
    /// The remote worker that ran it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub name: String,
    pub stage: NodeKind,
    /// The error, with the tail of the log.
    pub reason: String,
    /// The whole log, a blob digest (`comb log`).
    pub log: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CriticalPath {
    pub duration_ms: u64,
    /// From the first package to the last.
    pub packages: Vec<String>,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub id: RunId,
    pub command: String,
    pub status: String,
    pub started_at: i64,
    pub duration_ms: Option<u64>,
    /// By stage name, in pipeline order.
    pub stages: BTreeMap<String, Counts>,
    pub total: Counts,
    pub hit_rate: Option<f64>,
    /// The recorded build time of everything that was a hit.
    pub time_saved_ms: u64,
    /// The time of everything built or failed.
    pub time_spent_ms: u64,
    pub slowest: Vec<Slow>,
    pub critical_path: CriticalPath,
    pub failures: Vec<Failure>,
    pub packages: Vec<PackageRow>,
    /// Each package to the packages it needs.
    pub graph: BTreeMap<String, Vec<String>>,
    /// The edges cut out of build-dependency cycles: `from` built against
    /// the snapshot's `binaries` instead of `to`'s.
    pub cycles_cut: Vec<comb_recipes::CutEdge>,
    /// For a `comb check` run, each package's result.
    pub checks: Vec<CheckRow>,
}

/// One package's `comb check` result in a run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub package: String,
    /// `GOOD`, `BAD`, `FAIL` or `SKIPPED`.
    pub state: String,
    /// For a FAIL: `build` or `infrastructure`.
    pub failure: Option<String>,
    pub reason: Option<String>,
    /// For a BAD: the files that differ, as `deb part:path`.
    pub differences: Vec<String>,
    /// `recorded` or `distro`.
    pub compared_with: Option<String>,
    /// For a BAD package: diffoscope's output (a log blob), and its first
    /// lines; or why there is none.
    pub diffoscope: Option<String>,
    pub diffoscope_excerpt: Option<String>,
    pub diffoscope_note: Option<String>,
}

/// Lines of diffoscope's output a report shows.
const DIFFOSCOPE_LINES: usize = 200;

/// A package whose build time changed sharply between two builds.
#[derive(Debug, Clone, Serialize)]
pub struct TimeChange {
    pub package: String,
    pub run: RunId,
    pub before_ms: u64,
    pub after_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    pub run: RunId,
    pub started_at: i64,
    /// Hit rate by stage name (stages with nothing looked up are left out).
    pub hit_rate: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    /// Newest first.
    pub runs: Vec<RunReport>,
    /// Oldest first.
    pub trend: Vec<TrendPoint>,
    pub build_time_changes: Vec<TimeChange>,
    /// Every `comb check` run, oldest first: the repository-wide counts.
    pub checks: Vec<CheckRun>,
    /// The packages whose last check was BAD or FAIL, and since when.
    pub failing_since: Vec<FailingSince>,
}

/// One `comb check` run's counts.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRun {
    pub run: RunId,
    pub started_at: i64,
    pub good: u64,
    pub bad: u64,
    pub fail: u64,
    pub skipped: u64,
}

/// A package that is BAD or FAIL, since the first check run of that
/// streak (beehive's "failing since").
#[derive(Debug, Clone, Serialize)]
pub struct FailingSince {
    pub package: String,
    /// Its last state: `BAD` or `FAIL`.
    pub state: String,
    pub since_run: RunId,
    /// When that run started (Unix seconds).
    pub since: i64,
    /// Check runs of it since then, that one included.
    pub runs: u64,
    /// The last check's reason (a FAIL's error).
    pub reason: Option<String>,
}

/// The check history of `repository` (and of runs recorded before runs
/// had one): counts per check run and the failing packages.
fn check_history(
    index: &Index,
    repository: Option<&str>,
) -> Result<(Vec<CheckRun>, Vec<FailingSince>)> {
    let mut runs: BTreeMap<RunId, CheckRun> = BTreeMap::new();
    let mut by_package: BTreeMap<String, Vec<(RunId, String, String)>> = BTreeMap::new();
    for (run, package, state, details) in index.checks(repository)? {
        let counts = runs.entry(run).or_insert_with(|| CheckRun {
            run,
            started_at: 0,
            good: 0,
            bad: 0,
            fail: 0,
            skipped: 0,
        });
        match state.as_str() {
            "GOOD" => counts.good += 1,
            "BAD" => counts.bad += 1,
            "FAIL" => counts.fail += 1,
            _ => counts.skipped += 1,
        }
        by_package
            .entry(package)
            .or_default()
            .push((run, state, details));
    }
    for (id, counts) in runs.iter_mut() {
        if let Some(r) = index.run(*id)? {
            counts.started_at = r.started_at;
        }
    }
    let mut failing = Vec::new();
    for (package, history) in by_package {
        let Some((_, last_state, last_details)) = history.last() else {
            continue;
        };
        if last_state != "BAD" && last_state != "FAIL" {
            continue;
        }
        // The streak: back to the last GOOD (a SKIPPED does not end it).
        let streak: Vec<&(RunId, String, String)> = history
            .iter()
            .rev()
            .take_while(|(_, s, _)| s != "GOOD")
            .collect();
        let first = streak
            .last()
            .map_or(history.last().unwrap().0, |(r, _, _)| *r);
        let reason = serde_json::from_str::<serde_json::Value>(last_details)
            .ok()
            .and_then(|v| v["reason"].as_str().map(String::from));
        failing.push(FailingSince {
            package,
            state: last_state.clone(),
            since_run: first,
            since: runs.get(&first).map_or(0, |c| c.started_at),
            runs: streak.len() as u64,
            reason,
        });
    }
    failing.sort_by(|a, b| (a.since, &a.package).cmp(&(b.since, &b.package)));
    Ok((runs.into_values().collect(), failing))
}

/// The report of `runs` (newest first).
pub fn report(store: &Store, index: &Index, runs: &[RunRecord]) -> Result<Report> {
    let mut reports = Vec::new();
    let mut changes = Vec::new();
    for run in runs {
        let events = index.events(run.id)?;
        changes.extend(time_changes(index, run.id, &events)?);
        reports.push(run_report(store, index, run, &events)?);
    }
    let trend = reports
        .iter()
        .rev()
        .map(|r| TrendPoint {
            run: r.id,
            started_at: r.started_at,
            hit_rate: r
                .stages
                .iter()
                .filter_map(|(stage, c)| c.hit_rate().map(|h| (stage.clone(), h)))
                .collect(),
        })
        .collect();
    // The history of the repository the newest reported run was for.
    let repository = runs.first().and_then(|r| r.repository.as_deref());
    let (checks, failing_since) = check_history(index, repository)?;
    Ok(Report {
        schema: SCHEMA,
        runs: reports,
        trend,
        build_time_changes: changes,
        checks,
        failing_since,
    })
}

fn time_changes(index: &Index, run: RunId, events: &[Event]) -> Result<Vec<TimeChange>> {
    let mut out = Vec::new();
    for e in events {
        if e.kind != NodeKind::Build || e.status != EventStatus::Built {
            continue;
        }
        let Some(previous) = e.previous_key.as_deref() else {
            continue;
        };
        let Some(before) = index.node(previous)? else {
            continue;
        };
        let (a, b) = (before.duration_ms, e.duration_ms);
        let sharp = a.abs_diff(b) >= SHARP_CHANGE_MS
            && (b >= a.saturating_mul(2) || a >= b.saturating_mul(2));
        if sharp {
            out.push(TimeChange {
                package: e.name.clone(),
                run,
                before_ms: a,
                after_ms: b,
            });
        }
    }
    Ok(out)
}

/// The package a node belongs to, for a node that belongs to one.
fn package_of(e: &Event) -> Option<&str> {
    match e.kind {
        NodeKind::Build => Some(&e.name),
        NodeKind::PkgEnv | NodeKind::Resolve => e
            .name
            .strip_prefix("pkg-env:")
            .or_else(|| e.name.strip_prefix("source:")),
        _ => None,
    }
}

fn run_report(
    store: &Store,
    index: &Index,
    run: &RunRecord,
    events: &[Event],
) -> Result<RunReport> {
    let mut stages: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    let mut saved = 0;
    let mut spent = 0;
    for e in events {
        stages
            .entry(e.kind.as_str().to_string())
            .or_default()
            .add(e.status, e.worker.as_deref());
        total.add(e.status, e.worker.as_deref());
        match e.status {
            EventStatus::Hit | EventStatus::Fetched => {
                if let Some(node) = index.node(&e.node_key)? {
                    saved += node.duration_ms;
                }
            }
            EventStatus::Built | EventStatus::Failed => spent += e.duration_ms,
            EventStatus::Skipped => {}
        }
    }
    let mut slowest: Vec<Slow> = events
        .iter()
        .filter(|e| matches!(e.status, EventStatus::Built | EventStatus::Failed))
        .map(|e| Slow {
            name: e.name.clone(),
            stage: e.kind,
            status: e.status,
            duration_ms: e.duration_ms,
            worker: e.worker.clone(),
        })
        .collect();
    slowest.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.name.cmp(&b.name)));
    slowest.truncate(SLOWEST);
    let failures = events
        .iter()
        .filter(|e| e.status == EventStatus::Failed)
        .map(|e| Failure {
            name: e.name.clone(),
            stage: e.kind,
            reason: e.reason.clone().unwrap_or_default(),
            log: e.log.clone(),
        })
        .collect();
    let graph = index.run_graph(run.id)?;
    let cycles_cut = why::cuts_of(index, run.id)?;
    let packages = package_rows(store, index, run.id, events)?;
    let cost: HashMap<&str, u64> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.duration_ms))
        .collect();
    let critical_path = critical_path(&graph, &cost);
    let checks = index
        .run_checks(run.id)?
        .into_iter()
        .map(|(package, state, details)| {
            let v: serde_json::Value = serde_json::from_str(&details).unwrap_or_default();
            let text = |k: &str| v[k].as_str().map(String::from);
            CheckRow {
                package,
                state,
                failure: text("failure"),
                reason: text("reason"),
                differences: v["differences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!(
                            "{} {}:{}",
                            d["deb"].as_str().unwrap_or(""),
                            d["part"].as_str().unwrap_or(""),
                            d["path"].as_str().unwrap_or("")
                        )
                    })
                    .collect(),
                compared_with: text("compared_with"),
                diffoscope_excerpt: text("diffoscope").and_then(|log| {
                    crate::logs::read(store, &log).ok().map(|t| {
                        t.lines()
                            .take(DIFFOSCOPE_LINES)
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                }),
                diffoscope: text("diffoscope"),
                diffoscope_note: text("diffoscope_note"),
            }
        })
        .collect();
    Ok(RunReport {
        id: run.id,
        command: run.command.clone(),
        status: run.status.as_str().to_string(),
        started_at: run.started_at,
        duration_ms: run.duration_ms,
        hit_rate: total.hit_rate(),
        stages: STAGES
            .iter()
            .filter_map(|s| {
                stages
                    .remove(s.as_str())
                    .map(|c| (s.as_str().to_string(), c))
            })
            .collect(),
        total,
        time_saved_ms: saved,
        time_spent_ms: spent,
        slowest,
        critical_path,
        failures,
        packages,
        graph,
        cycles_cut,
        checks,
    })
}

fn package_rows(
    store: &Store,
    index: &Index,
    run: RunId,
    events: &[Event],
) -> Result<Vec<PackageRow>> {
    let mut by_package: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        if let Some(p) = package_of(e) {
            by_package.entry(p).or_default().push(e);
        }
    }
    let any_miss = events
        .iter()
        .any(|e| matches!(e.status, EventStatus::Built | EventStatus::Failed));
    // Which recipe built which binary, for the words of a miss.
    let binaries = if any_miss {
        why::binaries_of_run(store, index, run)?
    } else {
        HashMap::new()
    };
    let mut rows = Vec::new();
    for (name, own) in by_package {
        let Some(build) = own.iter().find(|e| e.kind == NodeKind::Build) else {
            continue;
        };
        let duration_ms = own.iter().map(|e| e.duration_ms).sum();
        let misses = own
            .iter()
            .any(|e| matches!(e.status, EventStatus::Built | EventStatus::Failed));
        let explained = if misses {
            why::explain_events(index, name, run, events, &binaries)?
                .stages
                .into_iter()
                .filter(|s| s.status != EventStatus::Hit)
                .collect()
        } else {
            Vec::new()
        };
        let words = |reasons: &[MissReason]| reasons.iter().map(|r| r.to_string()).collect();
        let decided = explained.first().map_or(NodeKind::Build, |s| s.stage);
        rows.push(PackageRow {
            name: name.to_string(),
            status: build.status,
            stage: if build.status == EventStatus::Hit {
                NodeKind::Build
            } else {
                decided
            },
            duration_ms,
            key: build.node_key.clone(),
            reasons: explained
                .iter()
                .find(|s| s.stage == NodeKind::Build)
                .map(|s| words(&s.reasons))
                .unwrap_or_default(),
            worker: build.worker.clone(),
            why: explained
                .iter()
                .map(|s| StageLine {
                    stage: s.stage,
                    name: s.name.clone(),
                    status: s.status,
                    duration_ms: s.duration_ms,
                    reasons: words(&s.reasons),
                })
                .collect(),
            error: own
                .iter()
                .find(|e| matches!(e.status, EventStatus::Failed | EventStatus::Skipped))
                .and_then(|e| e.reason.clone()),
        });
    }
    Ok(rows)
}

/// The heaviest chain of packages through `graph`, each weighing `cost`:
/// over petgraph's topological order, each package's heaviest chain is
/// its own weight on its heaviest dependency's. A graph with a cycle (a
/// corrupt record) has none.
fn critical_path(graph: &BTreeMap<String, Vec<String>>, cost: &HashMap<&str, u64>) -> CriticalPath {
    let mut dependents = petgraph::graphmap::DiGraphMap::<&str, ()>::new();
    for (p, deps) in graph {
        dependents.add_node(p.as_str());
        for d in deps {
            dependents.add_edge(d.as_str(), p.as_str(), ());
        }
    }
    let Ok(order) = petgraph::algo::toposort(&dependents, None) else {
        return CriticalPath::default();
    };
    // best[p]: the heaviest chain ending at p, and the package before it.
    let mut best: HashMap<&str, (u64, Option<&str>)> = HashMap::new();
    for p in order {
        let mut before = (0, None);
        for d in graph.get(p).into_iter().flatten() {
            let w = best.get(d.as_str()).map_or(0, |b| b.0);
            if w > before.0 || before.1.is_none() {
                before = (w, Some(d.as_str()));
            }
        }
        best.insert(p, (before.0 + cost.get(p).copied().unwrap_or(0), before.1));
    }
    let Some((&end, &(weight, _))) = best
        .iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
    else {
        return CriticalPath::default();
    };
    let mut packages = vec![end.to_string()];
    let mut at = end;
    while let Some(&(_, Some(before))) = best.get(at) {
        packages.push(before.to_string());
        at = before;
    }
    packages.reverse();
    CriticalPath {
        duration_ms: weight,
        packages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_critical_path_is_the_heaviest_chain() {
        let graph: BTreeMap<String, Vec<String>> = [
            ("a", vec![]),
            ("b", vec!["a"]),
            ("c", vec!["a"]),
            ("d", vec!["b", "c"]),
            ("e", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let cost: HashMap<&str, u64> = [("a", 5), ("b", 1), ("c", 7), ("d", 2), ("e", 13)]
            .into_iter()
            .collect();
        let path = critical_path(&graph, &cost);
        assert_eq!(path.packages, ["a", "c", "d"]);
        assert_eq!(path.duration_ms, 14);
        assert_eq!(
            critical_path(&BTreeMap::new(), &cost).packages,
            Vec::<String>::new()
        );
        let mut cyclic = graph.clone();
        cyclic.insert("a".into(), vec!["d".into()]);
        assert_eq!(critical_path(&cyclic, &cost).packages, Vec::<String>::new());
    }

    #[test]
    fn hit_rates_count_what_was_looked_up() {
        let mut c = Counts::default();
        assert_eq!(c.hit_rate(), None);
        for s in [
            EventStatus::Hit,
            EventStatus::Hit,
            EventStatus::Built,
            EventStatus::Skipped,
        ] {
            c.add(s, None);
        }
        assert_eq!(c.hit_rate(), Some(2.0 / 3.0));
    }
}
