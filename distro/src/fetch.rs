//! Verified downloads: `http://`, `https://` and `file:` URIs are streamed to
//! a temporary file beside the destination while their size and sha256 are
//! checked; only a file with the expected digest is renamed into place.
//! Anything else is deleted and reported with the URL, the expected and the
//! actual digest.
//!
//! Transient network failures (connection errors, timeouts, HTTP 5xx) are
//! retried a few times; a wrong digest never is: the mirror served it.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The outcome of a successful fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Lowercase hex sha256 of the file now at the destination.
    pub sha256: String,
    pub size: u64,
    /// The destination already held the expected bytes: nothing was
    /// downloaded.
    pub reused: bool,
}

/// One file for [`parallel_fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchItem {
    pub uri: String,
    pub dest: PathBuf,
    /// Expected lowercase hex sha256.
    pub sha256: String,
    /// Expected size in bytes.
    pub size: u64,
}

/// Timeouts, retries and limits of a [`Fetcher`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// To establish a connection (DNS, TCP, TLS).
    pub connect_timeout: Duration,
    /// To receive the response headers.
    pub response_timeout: Duration,
    /// To receive a whole body (generous: a large .deb on a slow line).
    pub body_timeout: Duration,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// First pause between attempts; doubled each time.
    pub retry_pause: Duration,
    /// Cap on files fetched without an expected size.
    pub max_unverified_size: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30 * 60),
            retries: 2,
            retry_pause: Duration::from_millis(500),
            max_unverified_size: 256 << 20,
        }
    }
}

/// A downloader with one connection pool, to share between threads.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    options: FetchOptions,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new(FetchOptions::default())
    }
}

/// Fetch `uri` to `dest` with the default [`Fetcher`]; see
/// [`Fetcher::fetch_to`].
pub fn fetch_to(uri: &str, dest: &Path, expected: Option<(&str, u64)>) -> Result<Fetched> {
    default_fetcher().fetch_to(uri, dest, expected)
}

/// Fetch many files with the default [`Fetcher`]; see
/// [`Fetcher::parallel_fetch`].
pub fn parallel_fetch<F>(items: &[FetchItem], jobs: usize, progress: F) -> Vec<Result<Fetched>>
where
    F: Fn(usize, usize, u64) + Sync,
{
    default_fetcher().parallel_fetch(items, jobs, progress)
}

fn default_fetcher() -> &'static Fetcher {
    static DEFAULT: OnceLock<Fetcher> = OnceLock::new();
    DEFAULT.get_or_init(Fetcher::default)
}

enum Source<'a> {
    Http(&'a str),
    File(PathBuf),
}

fn classify(uri: &str) -> Result<Source<'_>> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        Ok(Source::Http(uri))
    } else if let Some(path) = uri.strip_prefix("file://") {
        Ok(Source::File(PathBuf::from(path)))
    } else if let Some(path) = uri.strip_prefix("file:") {
        Ok(Source::File(PathBuf::from(path)))
    } else {
        Err(Error::UnsupportedUri {
            url: uri.to_string(),
        })
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    error: Error,
    transient: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            transient: false,
        }
    }
}

/// Deletes a temporary file unless it was renamed into place.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A fresh temporary name beside `dest` (hidden, unique in this process).
pub(crate) fn temp_path(dest: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.{n}.part", std::process::id()))
}

/// Size and sha256 of a local file.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let size = read_chunks(path, |chunk| hasher.update(chunk))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Passes the file at `path` to `f` in chunks; returns its size.
pub(crate) fn read_chunks(path: &Path, mut f: impl FnMut(&[u8])) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            return Ok(size);
        }
        f(&buf[..n]);
        size += n as u64;
    }
}

/// Lowercase hex sha256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Fetcher {
    pub fn new(options: FetchOptions) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.response_timeout))
            .timeout_recv_body(Some(options.body_timeout))
            .user_agent(concat!("comb/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
            options,
        }
    }

    /// Fetch `uri` to `dest`. With `expected = Some((sha256, size))` the
    /// bytes must match both, the download is cut off as soon as it grows
    /// past `size`, and a `dest` that already holds exactly those bytes is
    /// kept without downloading (`reused`). Without, the size is capped by
    /// [`FetchOptions::max_unverified_size`].
    ///
    /// The bytes go to a temporary file beside `dest` that is renamed to
    /// `dest` only when complete and verified; on any error it is deleted
    /// and `dest` is left as it was.
    pub fn fetch_to(
        &self,
        uri: &str,
        dest: &Path,
        expected: Option<(&str, u64)>,
    ) -> Result<Fetched> {
        let expected = expected.map(|(h, s)| (h.to_ascii_lowercase(), s));
        if let Some((hash, size)) = &expected {
            if let Ok(meta) = std::fs::metadata(dest) {
                if meta.is_file() && meta.len() == *size && hash_file(dest)?.0 == *hash {
                    return Ok(Fetched {
                        sha256: hash.clone(),
                        size: *size,
                        reused: true,
                    });
                }
            }
        }
        let source = classify(uri)?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let mut pause = self.options.retry_pause;
        let mut attempt = 1;
        loop {
            match self.attempt(uri, &source, dest, expected.as_ref()) {
                Ok(f) => return Ok(f),
                Err(f) if f.transient && attempt <= self.options.retries => {
                    std::thread::sleep(pause);
                    pause *= 2;
                    attempt += 1;
                }
                Err(f) => {
                    return Err(match f.error {
                        Error::Download { url, reason, .. } => Error::Download {
                            url,
                            reason,
                            attempts: attempt,
                        },
                        other => other,
                    })
                }
            }
        }
    }

    fn attempt(
        &self,
        uri: &str,
        source: &Source<'_>,
        dest: &Path,
        expected: Option<&(String, u64)>,
    ) -> std::result::Result<Fetched, Failure> {
        let download = |reason: String, transient: bool| Failure {
            error: Error::Download {
                url: uri.to_string(),
                reason,
                attempts: 1,
            },
            transient,
        };
        let mut reader: Box<dyn Read> = match source {
            Source::File(path) => match File::open(path) {
                Ok(f) => Box::new(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotFound {
                        url: uri.to_string(),
                        status: 0,
                    }
                    .into())
                }
                Err(e) => return Err(Error::io("reading", path, e).into()),
            },
            Source::Http(url) => match self.agent.get(*url).call() {
                Ok(response) => Box::new(response.into_body().into_reader()),
                Err(ureq::Error::StatusCode(status @ (404 | 410))) => {
                    return Err(Error::NotFound {
                        url: uri.to_string(),
                        status,
                    }
                    .into())
                }
                Err(ureq::Error::StatusCode(status)) => {
                    let transient = status >= 500 || status == 408 || status == 429;
                    return Err(download(format!("HTTP status {status}"), transient));
                }
                Err(
                    e @ (ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::HostNotFound
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::Protocol(_)),
                ) => return Err(download(e.to_string(), true)),
                Err(e) => return Err(download(e.to_string(), false)),
            },
        };
        let limit = expected.map_or(self.options.max_unverified_size, |(_, s)| *s);
        let tmp = temp_path(dest);
        let mut guard = TempGuard(None);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        guard.0 = Some(tmp.clone());
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let is_http = matches!(source, Source::Http(_));
                    return Err(download(format!("reading the body: {e}"), is_http));
                }
            };
            size += n as u64;
            if size > limit {
                return Err(match expected {
                    Some((hash, s)) => Error::HashMismatch {
                        url: uri.to_string(),
                        expected_sha256: hash.clone(),
                        expected_size: *s,
                        actual_sha256: "(not computed: the download was cut off)".to_string(),
                        actual_size: size,
                    },
                    None => Error::TooLarge {
                        url: uri.to_string(),
                        limit,
                    },
                }
                .into());
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io("writing", &tmp, e))?;
        }
        let sha256 = hex::encode(hasher.finalize());
        if let Some((hash, s)) = expected {
            if *hash != sha256 || *s != size {
                return Err(Error::HashMismatch {
                    url: uri.to_string(),
                    expected_sha256: hash.clone(),
                    expected_size: *s,
                    actual_sha256: sha256,
                    actual_size: size,
                }
                .into());
            }
        }
        // Durable before visible: a crash must not leave a short file under
        // the final name.
        out.sync_all().map_err(|e| Error::io("writing", &tmp, e))?;
        drop(out);
        std::fs::rename(&tmp, dest).map_err(|e| Error::io("renaming into", dest, e))?;
        guard.0 = None;
        Ok(Fetched {
            sha256,
            size,
            reused: false,
        })
    }

    /// Fetch `items` with up to `jobs` downloads at once. Returns one result
    /// per item, in the order of `items`. After each item, successful or
    /// not, `progress(done, total, bytes)` is called with the number of
    /// finished items, the number of items and the bytes of the successful
    /// ones so far.
    pub fn parallel_fetch<F>(
        &self,
        items: &[FetchItem],
        jobs: usize,
        progress: F,
    ) -> Vec<Result<Fetched>>
    where
        F: Fn(usize, usize, u64) + Sync,
    {
        let total = items.len();
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Fetched>>>> =
            Mutex::new((0..total).map(|_| None).collect());
        // (done, bytes), updated and reported under one lock so that
        // progress only ever moves forward.
        let counters = Mutex::new((0usize, 0u64));
        let workers = jobs.clamp(1, total.max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result =
                        self.fetch_to(&item.uri, &item.dest, Some((&item.sha256, item.size)));
                    {
                        let mut c = counters.lock().unwrap_or_else(|e| e.into_inner());
                        c.0 += 1;
                        if let Ok(f) = &result {
                            c.1 += f.size;
                        }
                        progress(c.0, total, c.1);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(Error::Download {
                        url: items[i].uri.clone(),
                        reason: "a download thread stopped before this item".to_string(),
                        attempts: 0,
                    })
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_verify_and_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"hello").unwrap();
        let hash = sha256_hex(b"hello");
        let dest = dir.path().join("out/dest.bin");
        for uri in [
            format!("file://{}", src.display()),
            format!("file:{}", src.display()),
        ] {
            let _ = std::fs::remove_file(&dest);
            let f = fetch_to(&uri, &dest, Some((&hash, 5))).unwrap();
            assert_eq!((f.size, f.reused), (5, false));
            assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        }
        let f = fetch_to("file:/nonexistent", &dest, Some((&hash, 5))).unwrap();
        assert!(f.reused, "the destination already has these bytes");

        let err = fetch_to("file:/nonexistent", &dir.path().join("x"), None).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("file:/nonexistent"));
        let err = fetch_to("ftp://x/y", &dir.path().join("x"), None).unwrap_err();
        assert!(err.to_string().contains("unsupported URI ftp://x/y"));
    }

    #[test]
    fn mismatches_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"hello").unwrap();
        let uri = format!("file://{}", src.display());
        let out = dir.path().join("out");
        let dest = out.join("d");
        let wrong = sha256_hex(b"other");
        let err = fetch_to(&uri, &dest, Some((&wrong, 5))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&uri) && msg.contains(&wrong) && msg.contains(&sha256_hex(b"hello")),
            "{msg}"
        );
        // Too long: cut off at the expected size.
        let err = fetch_to(&uri, &dest, Some((&sha256_hex(b"hell"), 4))).unwrap_err();
        assert!(
            matches!(err, Error::HashMismatch { actual_size: 5, .. }),
            "{err}"
        );
        let options = FetchOptions {
            max_unverified_size: 3,
            ..FetchOptions::default()
        };
        let err = Fetcher::new(options)
            .fetch_to(&uri, &dest, None)
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 3, .. }), "{err}");
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "no file or temp left"
        );
    }
}
