//! Runs a graph of jobs on a rayon pool: a job starts when everything it
//! needs has succeeded, the one with the longest remaining path first;
//! a failure skips what depends on it (naming the failed job) and, without
//! keep-going, lets running jobs finish but starts no new ones.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState<T> {
    Done(T),
    Failed(String),
    /// Not run: `because` names the job it waited for that failed, or says
    /// the run stopped.
    Skipped {
        because: String,
    },
}

/// A graph of `deps.len()` jobs; `deps[i]` are the jobs `i` needs.
pub struct Graph<'a> {
    pub deps: &'a [Vec<usize>],
    /// Expected duration of each job (from the last recorded run), for the
    /// longest-path-first order; 1 for jobs never run.
    pub cost: &'a [u64],
    /// A name for messages.
    pub names: &'a [String],
}

/// Runs every job with at most `jobs` at once. `run(i, done)` gets the
/// values of the jobs done so far (all of its dependencies' are set).
/// `stop` is polled between jobs: once set, nothing new starts.
///
/// Each of the `jobs` workers takes the next ready job itself when it
/// finishes one, so a graph of jobs that end at once (cache hits) is not
/// held up by a dispatcher's round trips.
pub fn run<T, F>(
    graph: &Graph,
    jobs: usize,
    keep_going: bool,
    stop: &AtomicBool,
    run: F,
) -> Vec<JobState<T>>
where
    T: Send + Sync + Clone,
    F: Fn(usize, &[OnceLock<T>]) -> Result<T, String> + Sync,
{
    let n = graph.deps.len();
    let mut dependents = vec![Vec::new(); n];
    for (i, deps) in graph.deps.iter().enumerate() {
        for &d in deps {
            dependents[d].push(i);
        }
    }
    let priority = longest_paths(graph, &dependents);
    let waiting: Vec<usize> = graph.deps.iter().map(Vec::len).collect();
    let ready = (0..n)
        .filter(|&i| waiting[i] == 0)
        .map(|i| (priority[i], std::cmp::Reverse(i)))
        .collect();
    let state = Mutex::new(Progress {
        waiting,
        ready,
        results: vec![None; n],
        running: 0,
        stopped_by: None,
    });
    let changed = Condvar::new();
    let done: Vec<OnceLock<T>> = (0..n).map(|_| OnceLock::new()).collect();
    let workers = jobs.max(1).min(n.max(1));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .expect("a thread pool");
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    pool.scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|_| loop {
                // The next job, or the end of this worker.
                let i = {
                    let mut st = lock();
                    loop {
                        if stop.load(Ordering::Relaxed) && st.stopped_by.is_none() {
                            st.stopped_by = Some("the run was interrupted".to_string());
                            changed.notify_all();
                        }
                        if st.stopped_by.is_none() {
                            if let Some((_, std::cmp::Reverse(i))) = st.ready.pop() {
                                st.running += 1;
                                break Some(i);
                            }
                        }
                        // Nothing to start: done when nothing runs (or the
                        // run stopped); else a running job may free more.
                        if st.running == 0 || st.stopped_by.is_some() {
                            break None;
                        }
                        st = changed
                            .wait_timeout(st, Duration::from_millis(100))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                };
                let Some(i) = i else {
                    changed.notify_all();
                    return;
                };
                let result = run(i, &done);
                let mut st = lock();
                st.running -= 1;
                match result {
                    Ok(value) => {
                        let _ = done[i].set(value.clone());
                        st.results[i] = Some(JobState::Done(value));
                        for &d in &dependents[i] {
                            st.waiting[d] -= 1;
                            if st.waiting[d] == 0 && st.results[d].is_none() {
                                st.ready.push((priority[d], std::cmp::Reverse(d)));
                            }
                        }
                    }
                    Err(reason) => {
                        st.results[i] = Some(JobState::Failed(reason));
                        skip_dependents(i, graph, &dependents, &mut st.results);
                        if !keep_going && st.stopped_by.is_none() {
                            st.stopped_by =
                                Some(format!("{} failed and --keep-going is off", graph.names[i]));
                        }
                    }
                }
                changed.notify_all();
            });
        }
    });
    let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
    let because = st
        .stopped_by
        .unwrap_or_else(|| "the run stopped".to_string());
    st.results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| JobState::Skipped {
                because: because.clone(),
            })
        })
        .collect()
}

/// The scheduler's shared state.
struct Progress<T> {
    /// Per job: dependencies not yet done.
    waiting: Vec<usize>,
    /// Jobs whose dependencies are done, highest priority first.
    ready: BinaryHeap<(u64, std::cmp::Reverse<usize>)>,
    results: Vec<Option<JobState<T>>>,
    running: usize,
    /// Why nothing new starts, once something stopped the run.
    stopped_by: Option<String>,
}

/// Marks everything that depends on `failed`, directly or not, skipped.
fn skip_dependents<T>(
    failed: usize,
    graph: &Graph,
    dependents: &[Vec<usize>],
    results: &mut [Option<JobState<T>>],
) {
    let mut stack = dependents[failed].clone();
    while let Some(d) = stack.pop() {
        if results[d].is_none() {
            results[d] = Some(JobState::Skipped {
                because: format!("it needs {}, which failed", graph.names[failed]),
            });
            stack.extend(dependents[d].iter().copied());
        }
    }
}

/// For each job, its cost plus the longest chain of costs after it.
fn longest_paths(graph: &Graph, dependents: &[Vec<usize>]) -> Vec<u64> {
    let n = graph.deps.len();
    let mut best = vec![None; n];
    fn visit(i: usize, graph: &Graph, dependents: &[Vec<usize>], best: &mut [Option<u64>]) -> u64 {
        if let Some(v) = best[i] {
            return v;
        }
        let after = dependents[i]
            .iter()
            .map(|&d| visit(d, graph, dependents, best))
            .max()
            .unwrap_or(0);
        let v = graph.cost[i].max(1) + after;
        best[i] = Some(v);
        v
    }
    (0..n)
        .map(|i| visit(i, graph, dependents, &mut best))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("job{i}")).collect()
    }

    #[test]
    fn dependencies_run_first_and_failures_skip_dependents() {
        // 0 <- 1 <- 3, 2 independent, 4 needs 2.
        let deps = vec![vec![], vec![0], vec![], vec![1], vec![2]];
        let cost = vec![1; 5];
        let names = names(5);
        let graph = Graph {
            deps: &deps,
            cost: &cost,
            names: &names,
        };
        let order = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        let out = run(&graph, 2, true, &stop, |i, done| {
            for &d in &deps[i] {
                assert_eq!(done[d].get(), Some(&(d * 10)));
            }
            order.lock().unwrap().push(i);
            if i == 1 {
                Err("boom".to_string())
            } else {
                Ok(i * 10)
            }
        });
        assert_eq!(out[0], JobState::Done(0));
        assert_eq!(out[1], JobState::Failed("boom".into()));
        assert_eq!(out[2], JobState::Done(20));
        assert_eq!(
            out[3],
            JobState::Skipped {
                because: "it needs job1, which failed".into()
            }
        );
        assert_eq!(out[4], JobState::Done(40));
        assert!(!order.lock().unwrap().contains(&3));
    }

    #[test]
    fn without_keep_going_nothing_new_starts_after_a_failure() {
        let deps = vec![vec![], vec![], vec![], vec![]];
        let cost = vec![4, 3, 2, 1];
        let names = names(4);
        let graph = Graph {
            deps: &deps,
            cost: &cost,
            names: &names,
        };
        let stop = AtomicBool::new(false);
        let out = run(&graph, 1, false, &stop, |i, _| {
            if i == 0 {
                Err("no".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(out[0], JobState::Failed("no".into()));
        assert!(out[1..]
            .iter()
            .all(|s| matches!(s, JobState::Skipped { .. })));
    }

    #[test]
    fn the_longest_path_goes_first() {
        // A chain 0 <- 1 <- 2 and four independent jobs of the same cost:
        // the chain's head starts first, and the order respects it.
        let mut deps = vec![vec![], vec![0], vec![1]];
        deps.extend((0..4).map(|_| vec![]));
        let cost = vec![40; 7];
        let names = names(7);
        let graph = Graph {
            deps: &deps,
            cost: &cost,
            names: &names,
        };
        let stop = AtomicBool::new(false);
        let order = Mutex::new(Vec::new());
        run(&graph, 1, true, &stop, |i, _| {
            order.lock().unwrap().push(i);
            Ok(())
        });
        let order = order.into_inner().unwrap();
        assert_eq!(order[0], 0);
        assert_eq!(order[1], 1, "{order:?}");
        assert_eq!(order.len(), 7);
    }

    #[test]
    fn a_stop_request_starts_nothing_new() {
        let deps = vec![vec![], vec![0]];
        let cost = vec![1, 1];
        let names = names(2);
        let graph = Graph {
            deps: &deps,
            cost: &cost,
            names: &names,
        };
        let stop = AtomicBool::new(false);
        let out = run(&graph, 1, true, &stop, |_, _| {
            stop.store(true, Ordering::Relaxed);
            Ok(())
        });
        assert_eq!(out[0], JobState::Done(()));
        assert_eq!(
            out[1],
            JobState::Skipped {
                because: "the run was interrupted".into()
            }
        );
    }
}
