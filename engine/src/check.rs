//! `comb check`: does each package still build from source, and to the
//! same bytes? Each package is first built or found as `comb build` would
//! (its recorded output), then built again from source in a fresh sandbox
//! on the same cached environment, never reading or writing its build
//! node, and its `.deb`s are compared byte for byte. A package ends GOOD
//! (the same bytes), BAD (other bytes, with the files that differ), FAIL
//! (the build failed, or the infrastructure did: the two kept apart, the
//! latter retried) or SKIPPED (something it needs failed). A BAD package
//! does not stop its dependents: they are checked against their own
//! recorded outputs.

use crate::build::{self, BuildRequest, Built, BuiltDeb, Ctx, Needs};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::scheduler::JobState;
use crate::snapshot::Pinned;
use crate::vary::{VariationReport, Variations};
use comb_cache::{Hash, Sha256, Store};
use comb_distro::SourcePackage;
use comb_recipes::{Recipe, Repository};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Good,
    Bad,
    Fail,
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Good => "GOOD",
            Verdict::Bad => "BAD",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "SKIPPED",
        }
    }
}

/// Why a FAIL failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The build itself failed (its script, `dpkg-buildpackage`).
    Build,
    /// comb or the machine failed: the sandbox, the store, a download.
    Infrastructure,
}

/// One `.deb` compared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DebDigest {
    pub name: String,
    pub architecture: String,
    pub sha256: String,
    pub size: u64,
}

/// A file that differs inside a `.deb`: `None` where one side lacks it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileDifference {
    /// The package it is in.
    pub deb: String,
    /// `control` or `data`.
    pub part: String,
    pub path: String,
    pub recorded: Option<FileFacts>,
    pub rebuilt: Option<FileFacts>,
}

/// What a member of a `.deb` is: its size, content digest and metadata.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileFacts {
    pub size: u64,
    pub sha256: String,
    /// Kind, mode, owner and time, as one string (`file 0644 0:0 1704067200`).
    pub meta: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageCheck {
    pub name: String,
    pub state: Verdict,
    pub failure: Option<Failure>,
    pub recorded: Vec<DebDigest>,
    pub rebuilt: Vec<DebDigest>,
    pub differences: Vec<FileDifference>,
    /// The error of a FAIL (with the tail of its log), or what a SKIPPED
    /// waited for.
    pub reason: Option<String>,
    /// The stored log of a failure (`comb log`).
    pub log: Option<String>,
    /// Builds from source tried (more than one when infrastructure
    /// failures were retried).
    pub attempts: u32,
    pub duration_ms: u64,
    /// What the rebuild varied (`None`: nothing was asked to vary).
    pub variations: Option<VariationReport>,
    /// What `recorded` is: `recorded` (this store's last build) or
    /// `distro` (the official binaries of the pinned snapshot).
    pub compared_with: String,
    /// Rebuilt packages the snapshot has no official binary of (say,
    /// `-dbgsym`), left out of a `distro` comparison.
    pub not_in_distro: Vec<String>,
    /// For a BAD package: diffoscope's text output, a stored log blob
    /// (`comb report` shows it).
    pub diffoscope: Option<String>,
    /// Why there is no diffoscope output for a BAD package.
    pub diffoscope_note: Option<String>,
}

impl PackageCheck {
    fn new(name: &str, state: Verdict) -> PackageCheck {
        PackageCheck {
            name: name.to_string(),
            state,
            failure: None,
            recorded: Vec::new(),
            rebuilt: Vec::new(),
            differences: Vec::new(),
            reason: None,
            log: None,
            attempts: 0,
            duration_ms: 0,
            variations: None,
            compared_with: "recorded".into(),
            not_in_distro: Vec::new(),
            diffoscope: None,
            diffoscope_note: None,
        }
    }
}

/// What `comb check` was asked for.
pub struct CheckRequest {
    /// Empty: every recipe.
    pub packages: Vec<String>,
    pub jobs: usize,
    /// Extra tries of a build from source that failed for infrastructure
    /// reasons.
    pub retry_fail: u32,
    /// What the rebuild varies; `None` pins everything, as Nix does.
    pub variations: Option<Variations>,
    /// Compare packages built from `debian` sources with the official
    /// binaries of the same version in the pinned snapshot.
    pub against_distro: bool,
    /// Run diffoscope (from the snapshot, in a sandbox) over the `.deb`s
    /// of a BAD package.
    pub diffoscope: bool,
}

/// Whether an error is comb's or the machine's rather than the build's.
fn failure_of(e: &Error) -> Failure {
    match e {
        Error::Stage { .. } => Failure::Build,
        _ => Failure::Infrastructure,
    }
}

fn fail(name: &str, e: &Error, attempts: u32) -> PackageCheck {
    let mut c = PackageCheck::new(name, Verdict::Fail);
    c.failure = Some(failure_of(e));
    c.reason = Some(e.to_string());
    if let Error::Stage { stored_log, .. } = e {
        c.log = stored_log.clone();
    }
    c.attempts = attempts;
    c
}

fn digests(debs: &[BuiltDeb]) -> Vec<DebDigest> {
    let mut out: Vec<DebDigest> = debs
        .iter()
        .map(|d| DebDigest {
            name: d.name.clone(),
            architecture: d.architecture.clone(),
            sha256: d.sha256.clone(),
            size: d.size,
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    out
}

/// Checks the requested packages; one result each, in build order.
pub fn check(
    engine: &Engine,
    pinned: &Pinned,
    repo: &Repository,
    request: &CheckRequest,
) -> Result<Vec<PackageCheck>> {
    let results: Mutex<HashMap<String, PackageCheck>> = Mutex::new(HashMap::new());
    // The snapshot's binaries, read once, only for --against-distro.
    let distro: std::sync::OnceLock<Result<Distro>> = std::sync::OnceLock::new();
    let distro = || distro.get_or_init(|| distro_binaries(pinned));
    let job = |ctx: &Ctx, recipe: &Recipe, debian: Option<&SourcePackage>, needs: &Needs| {
        let started = Instant::now();
        let name = recipe.name.as_str();
        let keep = |c: PackageCheck| {
            let mut c = c;
            c.duration_ms = started.elapsed().as_millis() as u64;
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), c);
        };
        // The recorded output, built first if there is none.
        let recorded: Built = match build::build_one(ctx, recipe, debian, needs) {
            Ok(b) => b,
            Err(e) => {
                keep(fail(name, &e, 0));
                return Err(e);
            }
        };
        // What a named package needs is built (or found), not checked.
        if !request.packages.is_empty() && !request.packages.iter().any(|p| p == name) {
            return Ok(recorded);
        }
        let mut attempts = 0;
        let mut variations = None;
        let rebuilt = loop {
            attempts += 1;
            let varied = ctx.varying(request.variations.as_ref());
            match build::rebuild(&varied, recipe, debian, needs, &mut variations) {
                Err(e)
                    if failure_of(&e) == Failure::Infrastructure
                        && attempts <= request.retry_fail
                        && !engine.cancel.is_cancelled() =>
                {
                    continue
                }
                other => break other,
            }
        };
        let rebuilt = match rebuilt {
            Ok(m) => m,
            Err(e) => {
                let mut c = fail(name, &e, attempts);
                c.variations = variations;
                keep(c);
                return Err(e);
            }
        };
        let mut c = PackageCheck::new(name, Verdict::Good);
        let mut rebuilt = rebuilt;
        let recorded_debs = if request.against_distro && debian.is_some() {
            c.compared_with = "distro".into();
            let binaries = distro()
                .as_ref()
                .map_err(|e| Error::Environment(e.to_string()))?;
            let (official, missing) = official(ctx, pinned, binaries, &rebuilt.debs)?;
            rebuilt.debs.retain(|d| !missing.contains(&d.name));
            c.not_in_distro = missing;
            if official.is_empty() {
                c.state = Verdict::Skipped;
                c.reason = Some(format!(
                    "the snapshot has no official binary of {name} {}",
                    rebuilt.debs.first().map_or("", |d| d.version.as_str())
                ));
                keep(c);
                return Ok(recorded);
            }
            official
        } else {
            recorded.manifest(engine)?.debs.clone()
        };
        c.attempts = attempts;
        c.variations = variations;
        c.recorded = digests(&recorded_debs);
        c.rebuilt = digests(&rebuilt.debs);
        if c.recorded != c.rebuilt {
            c.state = Verdict::Bad;
            c.differences = differences(&engine.store, &recorded_debs, &rebuilt.debs)?;
            if request.diffoscope {
                match diffoscope(ctx, pinned, &recorded_debs, &rebuilt.debs) {
                    Ok(log) => c.diffoscope = Some(log),
                    Err(e) => c.diffoscope_note = Some(e.to_string()),
                }
            }
        }
        keep(c);
        Ok(recorded)
    };
    let build_request = BuildRequest {
        packages: request.packages.clone(),
        jobs: request.jobs,
        keep_going: true,
    };
    let states = build::run_packages(engine, pinned, repo, &build_request, job)?;
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    for r in states {
        if !request.packages.is_empty() && !request.packages.contains(&r.name) {
            if let Some(c) = results.remove(&r.name) {
                // A dependency of a named package failed: the named one
                // is SKIPPED, and says why.
                out.push(c);
            }
            continue;
        }
        let checked = match (results.remove(&r.name), &r.state) {
            (Some(c), _) => c,
            (None, JobState::Skipped { because }) => {
                let mut c = PackageCheck::new(&r.name, Verdict::Skipped);
                c.reason = Some(because.clone());
                c
            }
            (None, JobState::Failed(reason)) => {
                let mut c = PackageCheck::new(&r.name, Verdict::Fail);
                c.failure = Some(Failure::Infrastructure);
                c.reason = Some(reason.clone());
                c
            }
            (None, JobState::Done(_)) => {
                return Err(Error::Environment(format!(
                    "{}: checked, but no result",
                    r.name
                )))
            }
        };
        let details = serde_json::to_string(&checked).map_err(|e| {
            Error::Environment(format!("recording the check of {}: {e}", checked.name))
        })?;
        engine.record_check(&checked.name, checked.state.as_str(), &details)?;
        out.push(checked);
    }
    Ok(out)
}

/// The snapshot's binary packages by (name, version, architecture).
type Distro = HashMap<(String, String, String), comb_distro::aptbox::Resolved>;

fn distro_binaries(pinned: &Pinned) -> Result<Distro> {
    let mut out = HashMap::new();
    for b in pinned.snapshot()?.read_packages()? {
        let version = b.version.to_string();
        out.insert(
            (b.name.clone(), version.clone(), b.architecture.clone()),
            comb_distro::aptbox::Resolved {
                name: b.name,
                version,
                architecture: b.architecture,
                sha256: b.sha256,
                size: b.size,
                filename: b.filename,
            },
        );
    }
    Ok(out)
}

/// The official binaries of the rebuilt packages, fetched (verified
/// against the snapshot's index), and the names the snapshot lacks.
fn official(
    ctx: &Ctx,
    pinned: &Pinned,
    distro: &Distro,
    rebuilt: &[BuiltDeb],
) -> Result<(Vec<BuiltDeb>, Vec<String>)> {
    let mut wanted = Vec::new();
    let mut missing = Vec::new();
    for d in rebuilt {
        match distro.get(&(d.name.clone(), d.version.clone(), d.architecture.clone())) {
            Some(r) => wanted.push(r.clone()),
            None => missing.push(d.name.clone()),
        }
    }
    crate::env::fetch(ctx.engine(), pinned, &wanted)?;
    let official = wanted
        .into_iter()
        .map(|r| BuiltDeb {
            name: r.name,
            version: r.version,
            architecture: r.architecture,
            sha256: r.sha256,
            size: r.size,
            filename: r.filename,
            control: String::new(),
        })
        .collect();
    Ok((official, missing))
}

/// How long diffoscope may take over one package.
const DIFFOSCOPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// diffoscope's text over each pair of differing `.deb`s, run as U in a
/// sandbox on an environment with Debian's `diffoscope-minimal` (made once
/// and cached like any pkg-env): the `.deb`s are hostile input, and
/// diffoscope unpacks them with many tools. Its output is stored as a log.
fn diffoscope(
    ctx: &Ctx,
    pinned: &Pinned,
    recorded: &[BuiltDeb],
    rebuilt: &[BuiltDeb],
) -> Result<String> {
    let engine = ctx.engine();
    let env = crate::env::pkg_env_for(
        engine,
        pinned,
        ctx.base_layer(),
        "comb-diffoscope",
        &["diffoscope-minimal".to_string()],
        &[],
    )
    .map_err(|e| Error::Environment(format!("no diffoscope environment: {e}")))?;
    let dir = engine.store.tmp_path("diffoscope");
    let result = (|| {
        std::fs::create_dir(&dir).map_err(|e| Error::io("creating a diffoscope directory", e))?;
        let mut pairs = Vec::new();
        for (i, a) in recorded.iter().enumerate() {
            let Some(b) = rebuilt
                .iter()
                .find(|b| b.name == a.name && b.architecture == a.architecture)
            else {
                continue;
            };
            if a.sha256 == b.sha256 {
                continue;
            }
            for (side, deb) in [("recorded", a), ("rebuilt", b)] {
                let expected = Hash::<Sha256>::from_hex(&deb.sha256)
                    .map_err(|e| Error::Environment(format!("{}: {e}", deb.name)))?
                    .expected(None);
                let blob = engine.store.find_blob(&expected).ok_or_else(|| {
                    Error::Environment(format!(
                        "{} {} is gone from the store",
                        deb.name, deb.sha256
                    ))
                })?;
                let name = format!("{i}-{side}-{}.deb", deb.name);
                std::fs::copy(&blob, dir.join(&name))
                    .map_err(|e| Error::io("staging a .deb for diffoscope", e))?;
            }
            pairs.push(format!(
                "diffoscope --text - --no-progress /comb-diff/{i}-recorded-{n}.deb /comb-diff/{i}-rebuilt-{n}.deb || [ $? = 1 ]",
                n = a.name
            ));
        }
        let mut spec = comb_sandbox::Spec::new(
            env.paths.clone(),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("set -e\n{}", pairs.join("\n")),
            ],
        );
        spec.identity = comb_sandbox::Identity::Builder;
        spec.cancel = engine.cancel.clone();
        spec.binds.push(comb_sandbox::Bind {
            source: dir.clone(),
            target: "/comb-diff".into(),
            writable: false,
        });
        spec.limits.wall_timeout = Some(DIFFOSCOPE_TIMEOUT);
        let outcome = comb_sandbox::run(&engine.sandbox, &spec)?;
        let text = String::from_utf8_lossy(&outcome.stdout).into_owned();
        if let Some(kill) = outcome.killed_by {
            return Err(Error::Environment(format!(
                "diffoscope was stopped by the {kill:?} limit"
            )));
        }
        if !outcome.status.success() {
            return Err(Error::Environment(format!(
                "diffoscope failed: {}",
                crate::env::tail(&String::from_utf8_lossy(&outcome.stderr), 5)
            )));
        }
        crate::logs::store(engine, &text)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The files that differ between the recorded and the rebuilt `.deb`s of
/// each binary package (and packages only one side has).
fn differences(
    store: &Store,
    recorded: &[BuiltDeb],
    rebuilt: &[BuiltDeb],
) -> Result<Vec<FileDifference>> {
    let by_name = |debs: &[BuiltDeb]| -> BTreeMap<String, BuiltDeb> {
        debs.iter()
            .map(|d| (format!("{}:{}", d.name, d.architecture), d.clone()))
            .collect()
    };
    let (old, new) = (by_name(recorded), by_name(rebuilt));
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) if a.sha256 == b.sha256 => {}
            (Some(a), Some(b)) => {
                let (fa, fb) = (members(store, a)?, members(store, b)?);
                let paths: std::collections::BTreeSet<&(String, String)> =
                    fa.keys().chain(fb.keys()).collect();
                for key in paths {
                    let (x, y) = (fa.get(key), fb.get(key));
                    if x != y {
                        out.push(FileDifference {
                            deb: a.name.clone(),
                            part: key.0.clone(),
                            path: key.1.clone(),
                            recorded: x.cloned(),
                            rebuilt: y.cloned(),
                        });
                    }
                }
            }
            (a, b) => out.push(FileDifference {
                deb: a.or(b).map(|d| d.name.clone()).unwrap_or_default(),
                part: "package".into(),
                path: name.clone(),
                recorded: a.map(|d| FileFacts {
                    size: d.size,
                    sha256: d.sha256.clone(),
                    meta: "deb".into(),
                }),
                rebuilt: b.map(|d| FileFacts {
                    size: d.size,
                    sha256: d.sha256.clone(),
                    meta: "deb".into(),
                }),
            }),
        }
    }
    Ok(out)
}

/// Every member of a stored `.deb`: (`control` or `data`, path) to facts.
fn members(store: &Store, deb: &BuiltDeb) -> Result<BTreeMap<(String, String), FileFacts>> {
    let expected = Hash::<Sha256>::from_hex(&deb.sha256)
        .map_err(|e| Error::Environment(format!("{}: {e}", deb.name)))?
        .expected(None);
    let path = store.find_blob(&expected).ok_or_else(|| {
        Error::Environment(format!(
            "{} {} is gone from the store",
            deb.name, deb.sha256
        ))
    })?;
    let archive = comb_distro::deb::DebArchive::open(&path)?;
    let mut out = BTreeMap::new();
    let control = archive.control()?;
    out.insert(
        ("control".to_string(), "control".to_string()),
        facts_of(control.as_bytes(), "file".into()),
    );
    for (name, bytes) in archive.control_members()? {
        out.insert(
            ("control".to_string(), name),
            facts_of(&bytes, "file".into()),
        );
    }
    archive.data_entries(|entry, content| {
        let mut bytes = Vec::new();
        content
            .read_to_end(&mut bytes)
            .map_err(|e| comb_distro::Error::Io {
                action: "reading",
                path: path.clone(),
                source: e,
            })?;
        let meta = format!(
            "{:?} {:04o} {}:{} {}{}",
            entry.kind,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.mtime,
            if entry.link.as_os_str().is_empty() {
                String::new()
            } else {
                format!(" -> {}", entry.link.display())
            }
        );
        out.insert(
            ("data".to_string(), entry.path.display().to_string()),
            facts_of(&bytes, meta),
        );
        Ok(())
    })?;
    Ok(out)
}

fn facts_of(bytes: &[u8], meta: String) -> FileFacts {
    FileFacts {
        size: bytes.len() as u64,
        sha256: comb_cache::Digest::of_bytes(comb_cache::Algorithm::Sha256, bytes).hex(),
        meta,
    }
}
