//! Runs a graph of jobs on a rayon pool: a job starts when everything it
//! needs has succeeded, the one with the longest remaining path first;
//! a failure skips what depends on it (naming the failed job) and, without
//! keep-going, lets running jobs finish but starts no new ones.
//!
//! No worker waits for work: a job that becomes ready is a task spawned on
//! the pool, which takes the most urgent ready job when it starts. So a job
//! that itself works in parallel (rayon's iterators, as the unpacking of a
//! layer does) has the pool's idle threads, and there is no second pool.

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

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

impl Graph<'_> {
    /// The jobs as a petgraph graph: an edge from each job to each job
    /// that needs it; node `i` is job `i`.
    fn to_petgraph(&self) -> DiGraph<(), ()> {
        let mut g = DiGraph::with_capacity(self.deps.len(), self.deps.len());
        for _ in self.deps {
            g.add_node(());
        }
        for (i, deps) in self.deps.iter().enumerate() {
            for &d in deps {
                g.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
            }
        }
        g
    }
}

/// Runs every job with at most `jobs` at once. `run(i, done)` gets the
/// values of the jobs done so far (all of its dependencies' are set).
/// `stop` is polled before each job: once set, nothing new starts.
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
    let g = graph.to_petgraph();
    let Some(priority) = longest_paths(&g, graph.cost) else {
        // The package graph refuses cycles before a run; never reached.
        return (0..n)
            .map(|_| JobState::Failed("the jobs' graph has a cycle".into()))
            .collect();
    };
    let waiting: Vec<usize> = graph.deps.iter().map(Vec::len).collect();
    let ready: BinaryHeap<_> = (0..n)
        .filter(|&i| waiting[i] == 0)
        .map(|i| (priority[i], std::cmp::Reverse(i)))
        .collect();
    let initially_ready = ready.len();
    let state = Mutex::new(Progress {
        waiting,
        ready,
        results: vec![None; n],
        stopped_by: None,
    });
    let done: Vec<OnceLock<T>> = (0..n).map(|_| OnceLock::new()).collect();

    // One task per job that became ready; it runs the most urgent one.
    fn task<'s, T, F>(scope: &rayon::Scope<'s>, cx: &'s Context<'s, T, F>)
    where
        T: Send + Sync + Clone,
        F: Fn(usize, &[OnceLock<T>]) -> Result<T, String> + Sync,
    {
        let i = {
            let mut st = cx.lock();
            if cx.stop.load(Ordering::Relaxed) && st.stopped_by.is_none() {
                st.stopped_by = Some("the run was interrupted".to_string());
            }
            if st.stopped_by.is_some() {
                return;
            }
            match st.ready.pop() {
                Some((_, std::cmp::Reverse(i))) => i,
                None => return,
            }
        };
        let result = (cx.run)(i, cx.done);
        let mut freed = 0;
        {
            let mut st = cx.lock();
            match result {
                Ok(value) => {
                    let _ = cx.done[i].set(value.clone());
                    st.results[i] = Some(JobState::Done(value));
                    for d in cx
                        .graph
                        .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
                    {
                        let d = d.index();
                        st.waiting[d] -= 1;
                        if st.waiting[d] == 0 && st.results[d].is_none() {
                            st.ready.push((cx.priority[d], std::cmp::Reverse(d)));
                            freed += 1;
                        }
                    }
                }
                Err(reason) => {
                    st.results[i] = Some(JobState::Failed(reason));
                    skip_dependents(i, cx.graph, cx.names, &mut st.results);
                    if !cx.keep_going && st.stopped_by.is_none() {
                        st.stopped_by =
                            Some(format!("{} failed and --keep-going is off", cx.names[i]));
                    }
                }
            }
        }
        for _ in 0..freed {
            scope.spawn(move |s| task(s, cx));
        }
    }

    let cx = Context {
        graph: &g,
        names: graph.names,
        priority: &priority,
        done: &done,
        state: &state,
        stop,
        keep_going,
        run: &run,
    };
    // Not fewer threads than `jobs` for fewer jobs: a job's own parallel
    // work takes the others.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .expect("a thread pool");
    pool.scope(|scope| {
        for _ in 0..initially_ready {
            scope.spawn(|s| task(s, &cx));
        }
    });
    let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
    let because = st.stopped_by.unwrap_or_else(|| {
        if stop.load(Ordering::Relaxed) {
            "the run was interrupted"
        } else {
            "the run stopped"
        }
        .to_string()
    });
    st.results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| JobState::Skipped {
                because: because.clone(),
            })
        })
        .collect()
}

/// What every task of a run shares.
struct Context<'s, T, F> {
    graph: &'s DiGraph<(), ()>,
    names: &'s [String],
    priority: &'s [u64],
    done: &'s [OnceLock<T>],
    state: &'s Mutex<Progress<T>>,
    stop: &'s AtomicBool,
    keep_going: bool,
    run: &'s F,
}

impl<T, F> Context<'_, T, F> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The scheduler's shared state.
struct Progress<T> {
    /// Per job: dependencies not yet done.
    waiting: Vec<usize>,
    /// Jobs whose dependencies are done, highest priority first.
    ready: BinaryHeap<(u64, std::cmp::Reverse<usize>)>,
    results: Vec<Option<JobState<T>>>,
    /// Why nothing new starts, once something stopped the run.
    stopped_by: Option<String>,
}

/// Marks everything that depends on `failed`, directly or not, skipped.
fn skip_dependents<T>(
    failed: usize,
    graph: &DiGraph<(), ()>,
    names: &[String],
    results: &mut [Option<JobState<T>>],
) {
    let mut dependents = petgraph::visit::Dfs::new(graph, NodeIndex::new(failed));
    while let Some(d) = dependents.next(graph) {
        let d = d.index();
        if d != failed && results[d].is_none() {
            results[d] = Some(JobState::Skipped {
                because: format!("it needs {}, which failed", names[failed]),
            });
        }
    }
}

/// For each job, its cost plus the longest chain of costs after it (the
/// critical path through it), or `None` if the graph has a cycle.
fn longest_paths(graph: &DiGraph<(), ()>, cost: &[u64]) -> Option<Vec<u64>> {
    let order = petgraph::algo::toposort(graph, None).ok()?;
    let mut best = vec![0; graph.node_count()];
    for node in order.into_iter().rev() {
        let after = graph
            .neighbors_directed(node, Direction::Outgoing)
            .map(|d| best[d.index()])
            .max()
            .unwrap_or(0);
        best[node.index()] = cost[node.index()].max(1) + after;
    }
    Some(best)
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

    /// A job that works in parallel gets the pool's idle threads: the two
    /// halves of its work meet, so they ran at once.
    #[test]
    fn a_job_working_in_parallel_has_the_idle_workers() {
        use rayon::prelude::*;
        let deps = vec![vec![]];
        let names = names(1);
        let graph = Graph {
            deps: &deps,
            cost: &[1],
            names: &names,
        };
        let stop = AtomicBool::new(false);
        let out = run(&graph, 2, true, &stop, |_, _| {
            let arrived = [AtomicBool::new(false), AtomicBool::new(false)];
            let met = (0..2usize)
                .into_par_iter()
                .map(|half| {
                    arrived[half].store(true, Ordering::SeqCst);
                    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while !arrived[1 - half].load(Ordering::SeqCst) {
                        if std::time::Instant::now() > until {
                            return false;
                        }
                        std::thread::yield_now();
                    }
                    true
                })
                .all(|met| met);
            Ok(met)
        });
        assert_eq!(out[0], JobState::Done(true));
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
