//! What `comb build` shows while it works. On a terminal (indicatif): an
//! overall bar of packages done with an ETA from recorded build times,
//! and one line per running build or installation with its stage, name,
//! elapsed time and the last line of its log. Off a terminal: one line per
//! event, never redrawn. `--json`: one object per node. `-q`: failures and
//! the summary only. `-v`: every log line, prefixed with its node.

use comb_engine::NodeKind;
use comb_engine::{NodeEvent, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How `comb build` talks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Json,
    Quiet,
    Normal,
    Verbose,
}

/// Counts events and shows them.
pub struct Reporter {
    mode: Mode,
    /// hit, built, failed, skipped, fetched (from the remote cache).
    pub counts: [AtomicU64; 6],
    live: Option<Live>,
    /// Per running node: output not yet ended by a newline.
    partial: Mutex<HashMap<String, Vec<u8>>>,
}

/// The terminal display.
struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
    /// Each package's recorded build time.
    expected: Mutex<HashMap<String, u64>>,
    /// Recorded build time of the packages not done yet.
    remaining_ms: AtomicU64,
    jobs: AtomicUsize,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Reporter {
    /// `terminal`: stderr is one (bars are drawn only then, and only in
    /// the normal and verbose modes).
    pub fn new(mode: Mode, terminal: bool) -> Reporter {
        let live = (terminal && matches!(mode, Mode::Normal | Mode::Verbose)).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(style("{elapsed:>4} [{bar:30}] {pos}/{len} packages {msg}"));
            overall.enable_steady_tick(Duration::from_millis(200));
            Live {
                multi,
                overall,
                running: Mutex::new(HashMap::new()),
                expected: Mutex::new(HashMap::new()),
                remaining_ms: AtomicU64::new(0),
                jobs: AtomicUsize::new(1),
            }
        });
        Reporter {
            mode,
            counts: Default::default(),
            live,
            partial: Mutex::new(HashMap::new()),
        }
    }

    /// A line above the bars, or on stderr; a build's text in it is
    /// shown, never run by the terminal.
    fn say(&self, line: String) {
        let line = crate::term::safe(&line).into_owned();
        match &self.live {
            Some(live) => {
                let _ = live.multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Clears the bars (before the summary).
    pub fn finish(&self) {
        if let Some(live) = &self.live {
            for bar in live
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
            {
                bar.finish_and_clear();
            }
            live.overall.finish_and_clear();
        }
    }

    fn update_eta(&self, live: &Live) {
        let remaining = live.remaining_ms.load(Ordering::Relaxed);
        let jobs = live.jobs.load(Ordering::Relaxed).max(1) as u64;
        if remaining > 0 {
            live.overall.set_message(format!(
                "ETA {}",
                crate::report_cmd::duration(remaining / jobs)
            ));
        } else {
            live.overall.set_message(String::new());
        }
    }
}

/// The last complete, non-blank line of `bytes`.
fn last_line(bytes: &[u8]) -> Option<String> {
    bytes
        .split(|&b| b == b'\n' || b == b'\r')
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .rfind(|l| !l.is_empty())
}

impl Observer for Reporter {
    fn node(&self, e: &NodeEvent) {
        let slot = match e.status.as_str() {
            "hit" => 0,
            "built" => 1,
            "failed" => 2,
            "fetched" => 4,
            _ => 3,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        if e.worker.is_some() {
            self.counts[5].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(live) = &self.live {
            if let Some(bar) = live
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&e.name)
            {
                bar.finish_and_clear();
                live.multi.remove(&bar);
            }
            if e.stage == NodeKind::Build {
                live.overall.inc(1);
                let expected = live
                    .expected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&e.name)
                    .unwrap_or(0);
                let _ = live
                    .remaining_ms
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                        Some(r.saturating_sub(expected))
                    });
                self.update_eta(live);
            }
        }
        self.partial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&e.name);
        if self.mode == Mode::Json {
            let line = serde_json::json!({
                "event": "node",
                "name": e.name,
                "stage": e.stage,
                "key": e.key,
                "status": e.status,
                "duration_ms": e.duration_ms,
                "reason": e.reason,
                "worker": e.worker,
            });
            println!("{line}");
            return;
        }
        let failed = e.status.as_str() == "failed";
        if self.mode == Mode::Quiet && !failed {
            return;
        }
        if e.stage == NodeKind::Fetch
            || (self.live.is_some() && e.status.as_str() == "hit" && e.stage != NodeKind::Build)
        {
            return;
        }
        let reason = e
            .reason
            .as_deref()
            .and_then(|r| r.lines().next())
            .unwrap_or("");
        self.say(match e.status.as_str() {
            "hit" => format!("{:<13} {:<32} hit", e.stage, e.name),
            "fetched" => format!("{:<13} {:<32} fetched: {reason}", e.stage, e.name),
            "failed" => format!(
                "{:<13} {:<32} FAILED after {:.1}s\n{}",
                e.stage,
                e.name,
                e.duration_ms as f64 / 1000.0,
                e.reason.as_deref().unwrap_or("")
            ),
            status => format!(
                "{:<13} {:<32} {status}{} in {:.1}s ({reason})",
                e.stage,
                e.name,
                e.worker
                    .as_deref()
                    .map(|w| format!(" on {w}"))
                    .unwrap_or_default(),
                e.duration_ms as f64 / 1000.0
            ),
        })
    }

    fn started(&self, stage: NodeKind, name: &str) {
        if stage == NodeKind::Fetch {
            return;
        }
        match (&self.live, self.mode) {
            (Some(live), _) => {
                let bar = live.multi.add(ProgressBar::new_spinner());
                bar.set_style(style("  {spinner} {prefix} {elapsed:>4}  {wide_msg}"));
                bar.set_prefix(format!("{:<13} {:<28}", stage.as_str(), name));
                bar.enable_steady_tick(Duration::from_millis(120));
                live.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_string(), bar);
            }
            (None, Mode::Normal | Mode::Verbose) => {
                self.say(format!("{stage:<13} {name:<32} building…"))
            }
            _ => {}
        }
    }

    fn output(&self, name: &str, chunk: &[u8]) {
        if self.mode == Mode::Json || self.mode == Mode::Quiet {
            return;
        }
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        let pending = partial.entry(name.to_string()).or_default();
        pending.extend_from_slice(chunk);
        // Complete lines go; the rest waits for its newline.
        let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = pending.drain(..=end).collect();
        drop(partial);
        if self.mode == Mode::Verbose {
            for line in complete.split(|&b| b == b'\n') {
                if !line.is_empty() {
                    self.say(format!("{name} | {}", String::from_utf8_lossy(line)));
                }
            }
        }
        if let (Some(live), Some(line)) = (&self.live, last_line(&complete)) {
            if let Some(bar) = live
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
            {
                bar.set_message(crate::term::safe(&line).into_owned());
            }
        }
    }

    fn waiting(&self, what: &str) {
        if self.mode != Mode::Json {
            self.say(format!("comb: waiting for {what} to finish"));
        }
    }

    fn note(&self, text: &str) {
        if self.mode == Mode::Json {
            // stdout is the events'; a note is for whoever reads stderr.
            eprintln!("comb: {text}");
        } else {
            self.say(format!("comb: {text}"));
        }
    }

    fn plan(&self, packages: &[(String, u64)], jobs: usize) {
        if let Some(live) = &self.live {
            live.overall.set_length(packages.len() as u64);
            live.jobs.store(jobs, Ordering::Relaxed);
            let mut expected = live.expected.lock().unwrap_or_else(|e| e.into_inner());
            expected.clear();
            expected.extend(packages.iter().cloned());
            live.remaining_ms
                .store(packages.iter().map(|(_, ms)| ms).sum(), Ordering::Relaxed);
            drop(expected);
            self.update_eta(live);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_skips_blank_ones() {
        assert_eq!(last_line(b"one\ntwo\n\n").as_deref(), Some("two"));
        assert_eq!(last_line(b"50%\r75%\r").as_deref(), Some("75%"));
        assert_eq!(last_line(b"\n \n"), None);
    }
}
