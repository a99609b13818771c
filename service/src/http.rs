//! The read-only HTTP status page and JSON API of `comb serve`.
//!
//! `/` is one self-contained HTML page (inline CSS and script, nothing
//! fetched from elsewhere, a strict Content-Security-Policy). It is rendered
//! on the server, so it reads without a script, and its script redraws it
//! from `/api/status` every two seconds. `/api/*` serves the same data as
//! JSON; `/report/N` serves the engine's report page of a run.
//!
//! Everything shown comes from a [`StatusSource`] and is untrusted: package
//! names, users and above all log lines, which hostile builds write. The
//! server escapes every string into HTML; the script only ever sets
//! `textContent` and attributes, never markup.
//!
//! The server is small and written on `std` so that every limit is explicit:
//! a request head of at most 16 KiB read within 10 s, one deadline for the
//! whole connection from accept to close (head, answer and the drain after
//! it: 20 s), a bounded number of connections in flight, GET and HEAD
//! only, one request per connection. A client that trickles bytes cannot
//! hold a connection past the deadline, so it cannot hold every slot.
//! A server bound to loopback answers only to loopback host names, so a web
//! page cannot reach it through DNS rebinding.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use serde_json::{json, Value};

/// What the page shows; the daemon implements it.
pub trait StatusSource: Send + Sync + 'static {
    /// The whole status: `daemon`, `queue`, `running`, `recent` (by
    /// pocket) and `pockets`. Missing fields are shown as absent.
    fn status(&self) -> Value;
    /// One request by id (None: unknown).
    fn request(&self, id: i64) -> Option<Value>;
    /// The engine's JSON report (schema 1) of a run, or of the last run
    /// when None. Err: a message for a 404.
    fn report(&self, run: Option<i64>) -> Result<Value, String>;
    /// The engine's self-contained HTML report page of a run.
    fn report_page(&self, run: i64) -> Result<String, String>;
}

/// The policy of every HTML page served: inline script and style only, and
/// requests only back to this server.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                            style-src 'unsafe-inline'; connect-src 'self'";

/// The largest request head (request line and headers) read.
const MAX_HEAD: usize = 16 * 1024;
/// The longest request target accepted.
const MAX_TARGET: usize = 4096;
/// Connections handled at once; more get a 503 straight away.
const MAX_CONNECTIONS: usize = 64;
/// Time allowed to send a whole request head, so slow clients cannot hold
/// a connection open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may take from accept to close, whatever the client
/// does: sending its head, reading the answer, and the drain after it.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(20);
/// The longest drain of what a client still sends after its answer.
const LINGER: Duration = Duration::from_secs(2);
/// How often the accept loop looks at the stop flag.
const STOP_POLL_MS: u16 = 100;

/// Parses ADDR: `127.0.0.1:8470`, `[::1]:8470`, `localhost:8470`, or just a
/// port `8470` / `:8470` meaning 127.0.0.1 (loopback by default). Host
/// names other than `localhost` are not looked up.
pub fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    let bad = |why: String| {
        format!(
            "bad HTTP address {addr:?}: {why}; expected PORT, :PORT, IP:PORT, [IPv6]:PORT \
             or localhost:PORT"
        )
    };
    let port = |p: &str| -> Result<u16, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("port {p:?} is not a number")));
        }
        p.parse::<u16>()
            .map_err(|_| bad(format!("port {p} is not from 0 to 65535")))
    };
    let s = addr.trim();
    if s.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let bare = s.strip_prefix(':').unwrap_or(s);
    if bare.is_empty() || bare.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port(bare)?)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err(bad(
            "the port is missing (an IPv6 address with a port goes in brackets: [::1]:8470)".into(),
        ));
    }
    if s.eq_ignore_ascii_case("localhost") {
        return Err(bad("the port is missing".into()));
    }
    match s.rsplit_once(':') {
        Some((host, p)) if host.eq_ignore_ascii_case("localhost") => {
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port(p)?)))
        }
        Some((host, p))
            if host.parse::<Ipv4Addr>().is_ok()
                || (host.starts_with('[') && host.ends_with(']')) =>
        {
            port(p)?;
            Err(bad(format!("{host} is not an IP address")))
        }
        Some((host, _)) => Err(bad(format!(
            "{host:?} is neither an IP address nor localhost (names are not looked up)"
        ))),
        None => Err(bad("the port is missing".into())),
    }
}

/// A running status server; dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The address bound (with the port picked when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for the accept loop to end.
    /// Requests already being answered finish on their own threads.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

struct Shared {
    source: Arc<dyn StatusSource>,
    /// Bound to a loopback address: answer only to loopback host names.
    loopback_only: bool,
    active: AtomicUsize,
    /// Of each connection, from accept to close.
    deadline: Duration,
}

/// Serves on addr in background threads until the returned handle is
/// dropped or `stop()`ped. Returns the bound address (port 0 picks one).
pub fn serve(addr: SocketAddr, source: Arc<dyn StatusSource>) -> io::Result<HttpServer> {
    serve_with_deadline(addr, source, CONNECTION_DEADLINE)
}

/// [`serve`], with `deadline` for each connection from accept to close
/// instead of [`CONNECTION_DEADLINE`].
pub fn serve_with_deadline(
    addr: SocketAddr,
    source: Arc<dyn StatusSource>,
    deadline: Duration,
) -> io::Result<HttpServer> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        source,
        loopback_only: local.ip().is_loopback(),
        active: AtomicUsize::new(0),
        deadline,
    });
    let thread = std::thread::Builder::new()
        .name("comb-http".into())
        .spawn({
            let stop = stop.clone();
            move || accept_loop(&listener, &shared, &stop)
        })?;
    Ok(HttpServer {
        addr: local,
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, STOP_POLL_MS) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(Duration::from_millis(STOP_POLL_MS.into()));
                continue;
            }
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => dispatch(stream, shared),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // Out of descriptors or the like: back off, not spin.
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
            }
        }
    }
}

/// Decrements the count of connections in flight when a connection ends,
/// however it ends.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn dispatch(mut stream: TcpStream, shared: &Arc<Shared>) {
    let accepted = Instant::now();
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    if shared.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        turn_away(&mut stream);
        return;
    }
    let active = Active(shared.clone());
    // If the thread cannot start, the closure (and `active`) is dropped.
    let _ = std::thread::Builder::new()
        .name("comb-http-conn".into())
        .spawn(move || {
            let active = active;
            handle_connection(stream, &active.0, accepted + active.0.deadline);
        });
}

/// Answers 503 from the accept loop itself, so it never waits long: a
/// short wait for the request (closing on an unread request would reset
/// the connection and lose the answer), a short answer that fits the
/// socket buffer, and no more.
fn turn_away(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    let busy = Response::error(503, "too many connections; try again shortly", false);
    let _ = write_response(
        stream,
        &busy,
        false,
        Instant::now() + Duration::from_secs(1),
    );
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        for _ in 0..16 {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// Answers one connection; whatever the client does, it is closed by
/// `deadline`.
fn handle_connection(mut stream: TcpStream, shared: &Shared, deadline: Instant) {
    let head_deadline = deadline.min(Instant::now() + REQUEST_TIMEOUT);
    let (response, head_only) = match read_head(&mut stream, head_deadline) {
        Ok(None) => return,
        Ok(Some(head)) => {
            match catch_unwind(AssertUnwindSafe(|| answer(&head, shared))) {
                Ok(answered) => answered,
                // A panicking source must not take the connection down silently.
                Err(_) => (
                    Response::error(500, "the status source failed; see the daemon's log", false),
                    false,
                ),
            }
        }
        Err(response) => (response, false),
    };
    if write_response(&mut stream, &response, head_only, deadline).is_ok() {
        linger(&mut stream, deadline.min(Instant::now() + LINGER));
    }
}

/// Reads the request head up to its blank line. Ok(None): the client went
/// away without a request. Err: the answer to a bad or slow request.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Option<Vec<u8>>, Response> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(&head, scanned) {
            head.truncate(end);
            return Ok(Some(head));
        }
        scanned = head.len().saturating_sub(2);
        if head.len() >= MAX_HEAD {
            return Err(if head.contains(&b'\n') {
                Response::error(431, "the request headers are too large", false)
            } else {
                Response::error(400, "the request line (URL) is too long", false)
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(Response::error(408, "the request took too long", false));
        }
        let want = (MAX_HEAD + 3 - head.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) if head.is_empty() => return Ok(None),
            Ok(0) => return Err(Response::error(400, "the request ended early", false)),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Response::error(408, "the request took too long", false))
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Where the head ends (just after the last header line's `\n`), looking
/// from `from`: a blank line, `\r\n` or a bare `\n`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        match &buf[i + 1..] {
            [b'\n', ..] | [b'\r', b'\n', ..] => Some(i + 1),
            _ => None,
        }
    })
}

struct Request {
    method: String,
    target: String,
    host: Option<String>,
}

/// A request head as [`parse_request_head`] understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, a token (`GET`, `HEAD`, or anything else well formed).
    pub method: String,
    /// The request target as sent, not yet decoded.
    pub target: String,
    /// The Host header's value, trimmed (None: none sent, HTTP/1.0 only).
    pub host: Option<String>,
}

/// Why [`parse_request_head`] refused a head: the HTTP status answered and
/// the message shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason(self.status),
            self.message
        )
    }
}

impl std::error::Error for HeadError {}

/// Parses one request head (request line and header lines, up to and
/// without the blank line), exactly as the server does with what it read
/// from a client. This is the entry point for fuzzing the parser: it must
/// never panic, whatever the bytes, and an error is the answer the client
/// would get.
pub fn parse_request_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    match parse_head(head) {
        Ok(r) => Ok(RequestHead {
            method: r.method,
            target: r.target,
            host: r.host,
        }),
        Err(r) => Err(HeadError {
            status: r.status,
            message: r.message,
        }),
    }
}

fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .ok()
        .filter(|l| l.is_ascii())
        .ok_or_else(|| Response::error(400, "the request line is not ASCII", false))?;
    // Only single spaces separate its parts: any other control character
    // (a bare CR, NUL, a tab) would end up in the method, target or version.
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err(Response::error(
            400,
            "control characters in the request line",
            false,
        ));
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Response::error(400, "malformed request line", false));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(Response::error(400, "malformed request method", false));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => {
            return Err(Response::error(
                505,
                "only HTTP/1.0 and HTTP/1.1 are spoken here",
                false,
            ))
        }
        _ => return Err(Response::error(400, "malformed HTTP version", false)),
    };
    if target.len() > MAX_TARGET {
        return Err(Response::error(400, "the URL is too long", false));
    }
    let mut host = None;
    for line in lines.filter(|l| !l.is_empty()) {
        // A bare CR or a NUL in a field is invalid and dangerous (RFC 9110
        // 5.5): refused rather than passed on in the Host value.
        if line.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
            return Err(Response::error(
                400,
                "control characters in a header line",
                false,
            ));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(Response::error(400, "malformed header line", false));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().copied().all(is_token_byte) {
            return Err(Response::error(400, "malformed header name", false));
        }
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Err(Response::error(400, "more than one Host header", false));
            }
            host = Some(String::from_utf8_lossy(value).trim().to_string());
        }
    }
    if host.is_none() && !http10 {
        return Err(Response::error(400, "HTTP/1.1 needs a Host header", false));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        host,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `host` (a Host header) names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port.strip_prefix(':')) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(Some(port)) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(p: Option<&str>) -> bool {
    p.is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The response to a request head, and whether to leave out its body.
fn answer(head: &[u8], shared: &Shared) -> (Response, bool) {
    let request = match parse_head(head) {
        Ok(r) => r,
        Err(response) => return (response, false),
    };
    let api = request.target.starts_with("/api/") || request.target == "/api";
    let head_only = request.method == "HEAD";
    if shared.loopback_only {
        if let Some(host) = &request.host {
            if !is_loopback_host(host) {
                let msg = "this server listens on loopback and answers only to localhost, \
                           127.0.0.1 or [::1]";
                return (Response::error(421, msg, api), head_only);
            }
        }
    }
    if request.method != "GET" && !head_only {
        let mut response = Response::error(
            405,
            &format!("{} is not allowed: this API is read-only", request.method),
            api,
        );
        response.headers.push(("Allow", "GET, HEAD".into()));
        return (response, false);
    }
    (route(&request.target, shared.source.as_ref()), head_only)
}

fn route(target: &str, source: &dyn StatusSource) -> Response {
    let target = target.split('#').next().unwrap_or_default();
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let api = raw_path.starts_with("/api/") || raw_path == "/api";
    if !raw_path.starts_with('/') {
        return Response::error(400, "the URL must be a path starting with /", false);
    }
    let Some(path) = percent_decode(raw_path, false) else {
        return Response::error(400, "bad percent-encoding in the URL path", api);
    };
    let Some(query) = parse_query(raw_query) else {
        return Response::error(400, "bad percent-encoding in the URL query", api);
    };
    match path.as_str() {
        "/" => Response::html(200, page(&source.status())),
        "/api/status" => Response::json(200, &source.status()),
        "/api/queue" => {
            let status = source.status();
            Response::json(
                200,
                &json!({
                    "queue": status.get("queue").cloned().unwrap_or_else(|| json!([])),
                    "running": status.get("running").cloned().unwrap_or_else(|| json!([])),
                }),
            )
        }
        "/api/pockets" => {
            let status = source.status();
            Response::json(
                200,
                status
                    .get("pockets")
                    .unwrap_or(&Value::Object(Default::default())),
            )
        }
        "/api/report" => {
            let runs: Vec<&str> = query
                .iter()
                .filter(|(k, _)| k == "run")
                .map(|(_, v)| v.as_str())
                .collect();
            let run = match runs[..] {
                [] => None,
                [run] => match parse_id(run) {
                    Some(run) => Some(run),
                    None => {
                        let msg = format!("run must be a whole number, not {run:?}");
                        return Response::error(400, &msg, true);
                    }
                },
                _ => return Response::error(400, "give run at most once", true),
            };
            match source.report(run) {
                Ok(report) => Response::json(200, &report),
                Err(msg) => Response::error(404, &msg, true),
            }
        }
        p => {
            if let Some(id) = p.strip_prefix("/api/requests/") {
                if id.contains('/') {
                    return Response::not_found(p, true);
                }
                let Some(id) = parse_id(id) else {
                    let msg = format!("the request id must be a whole number, not {id:?}");
                    return Response::error(400, &msg, true);
                };
                match source.request(id) {
                    Some(request) => Response::json(200, &request),
                    None => Response::error(404, &format!("no request {id}"), true),
                }
            } else if let Some(run) = p.strip_prefix("/report/") {
                if run.contains('/') {
                    return Response::not_found(p, false);
                }
                let Some(run) = parse_id(run) else {
                    let msg = format!("the run must be a whole number, not {run:?}");
                    return Response::error(400, &msg, false);
                };
                match source.report_page(run) {
                    Ok(page) => Response::html(200, page),
                    Err(msg) => Response::error(404, &msg, false),
                }
            } else {
                Response::not_found(p, api)
            }
        }
    }
}

fn parse_id(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decodes `%XX` (and `+` as a space in queries); None on a bad escape or
/// on bytes that are not UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn parse_query(q: &str) -> Option<Vec<(String, String)>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    /// For an error, its message as text (the body is HTML or JSON).
    message: String,
}

impl Response {
    fn json(status: u16, value: &Value) -> Response {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
            message: String::new(),
        }
    }

    fn html(status: u16, page: String) -> Response {
        Response {
            status,
            content_type: "text/html; charset=utf-8",
            body: page.into_bytes(),
            headers: vec![("Content-Security-Policy", PAGE_CSP.into())],
            message: String::new(),
        }
    }

    /// An error as `{"error": msg}` for the API, as a small page otherwise.
    fn error(status: u16, msg: &str, api: bool) -> Response {
        let mut response = if api {
            Response::json(status, &json!({ "error": msg }))
        } else {
            Response::error_page(status, msg)
        };
        response.message = msg.to_string();
        response
    }

    fn error_page(status: u16, msg: &str) -> Response {
        let title = reason(status);
        Response::html(
            status,
            format!(
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <title>{status} {title}</title><style>body{{font:15px/1.5 system-ui,\
                 sans-serif;margin:3em auto;max-width:40em;padding:0 1em;color:#1d2127}}\
                 </style></head><body><h1>{status} {title}</h1><p>{}</p>\
                 <p><a href=\"/\">The status page</a></p></body></html>\n",
                esc(msg)
            ),
        )
    }

    fn not_found(path: &str, api: bool) -> Response {
        let msg = if api {
            format!(
                "no such endpoint {path:?}; try /api/status, /api/queue, /api/pockets, \
                 /api/requests/ID or /api/report?run=RUN"
            )
        } else {
            format!("nothing at {path:?}")
        };
        Response::error(404, &msg, api)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes the answer, all of it by `deadline` (a client that reads slowly
/// does not get more time by reading a little at a time).
fn write_response(
    stream: &mut TcpStream,
    r: &Response,
    head_only: bool,
    deadline: Instant,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: comb\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        http_date(now_secs()),
        r.content_type,
        r.body.len()
    );
    for (name, value) in &r.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    let mut written = 0;
    while written < out.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(&out[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Closes gently: stop sending, then drain what the client may still send
/// (a request body), so the kernel does not reset the connection and lose
/// the answer before the client has read it; until `until` at the latest,
/// however slowly the client sends.
fn linger(stream: &mut TcpStream, until: Instant) {
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut left = 256 * 1024usize;
    while left > 0 {
        let time = until.saturating_duration_since(Instant::now());
        if time.is_zero() || stream.set_read_timeout(Some(time)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// (year, month, day) of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days + 4).rem_euclid(7) as usize],
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

// ---------------------------------------------------------------------------
// The page. The server-side rendering here and the script's (SCRIPT) build
// the same elements, so the page reads the same before and after a refresh.

/// The last second shown as a date (9999-12-31 23:59:59), as in the script.
const MAX_TIME: f64 = 253_402_300_799.0;

/// Escapes text for HTML content and quoted attributes. Control characters
/// (but tab and newline) become U+FFFD: they are not allowed in HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A value as text: strings as they are, absent or null as a dash.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => (if *b { "yes" } else { "no" }).into(),
        Some(v) => v.to_string(),
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn time_text(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(t) if t.is_finite() && (0.0..=MAX_TIME).contains(&t) => {
            let secs = t.floor() as i64;
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let s = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                s / 3600,
                s / 60 % 60,
                s % 60
            )
        }
        _ => text(v),
    }
}

/// Milliseconds as `12.0 s`, `2 min 05 s` or `1 h 04 min`.
fn ms_text(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            if ms < 60_000.0 {
                return format!("{:.1} s", ms / 1000.0);
            }
            let s = (ms / 1000.0).floor() as u64;
            if s < 3600 {
                format!("{} min {:02} s", s / 60, s % 60)
            } else {
                format!("{} h {:02} min", s / 3600, s / 60 % 60)
            }
        }
        _ => text(v),
    }
}

/// A list of names joined with commas.
fn list_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(items)) if items.is_empty() => "—".into(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| text(Some(i)))
            .collect::<Vec<_>>()
            .join(", "),
        v => text(v),
    }
}

fn user_text(r: &Value) -> String {
    match (r.get("user"), r.get("uid")) {
        (Some(u), _) if !u.is_null() => text(Some(u)),
        (_, Some(uid)) if !uid.is_null() => format!("uid {}", text(Some(uid))),
        _ => "—".into(),
    }
}

/// Packages with the versions built, `hello 2.10-3, greet 1.0-1`.
fn versions_text(r: &Value) -> String {
    let versions = r.get("versions").and_then(Value::as_object);
    let version = |name: &str| versions.and_then(|v| v.get(name)).and_then(Value::as_str);
    let names: Vec<String> = match r.get("packages") {
        Some(Value::Array(names)) => names.iter().map(|n| text(Some(n))).collect(),
        _ => versions
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default(),
    };
    if names.is_empty() {
        return "—".into();
    }
    names
        .iter()
        .map(|n| match version(n) {
            Some(v) => format!("{n} {v}"),
            None => n.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A state as a class name: lower-case letters, digits, `-` and `_`.
fn token(v: Option<&Value>) -> String {
    let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return "unknown".into();
    };
    // Like the script, which replaces each UTF-16 unit it does not keep.
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else {
            (0..c.len_utf16()).for_each(|_| out.push('_'));
        }
    }
    out
}

fn lines_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(lines)) => lines
            .iter()
            .map(|l| text(Some(l)))
            .collect::<Vec<_>>()
            .join("\n"),
        None | Some(Value::Null) => String::new(),
        v => text(v),
    }
}

fn no_items() -> Vec<Value> {
    Vec::new()
}

fn heading(title: &str, count: Option<usize>) -> String {
    match count {
        Some(n) => format!("<h2>{title} <span class=\"count\">{n}</span></h2>"),
        None => format!("<h2>{title}</h2>"),
    }
}

fn table(heads: &[&str], class: &str, rows: &str) -> String {
    let mut h = format!("<table class=\"{class}\"><thead><tr>");
    for head in heads {
        let _ = write!(h, "<th>{head}</th>");
    }
    let _ = write!(h, "</tr></thead><tbody>{rows}</tbody></table>");
    h
}

fn empty(msg: &str) -> String {
    format!("<p class=\"empty\">{msg}</p>")
}

fn render_daemon(status: &Value) -> String {
    let d = status.get("daemon").cloned().unwrap_or(Value::Null);
    let mut h = String::new();
    let mut item = |label: &str, value: String, code: bool| {
        let value = esc(&value);
        let value = if code {
            format!("<code>{value}</code>")
        } else {
            value
        };
        let _ = write!(
            h,
            "<span class=\"item\"><span class=\"label\">{label}</span> {value}</span>"
        );
    };
    let present = |k: &str| d.get(k).filter(|v| !v.is_null());
    if let Some(v) = present("version") {
        item("version", text(Some(v)), false);
    }
    if let Some(v) = present("repo") {
        item("repo", text(Some(v)), true);
    }
    if let Some(v) = present("socket") {
        item("socket", text(Some(v)), true);
    }
    if let Some(v) = present("started_at") {
        item("up since", time_text(Some(v)) + " UTC", false);
    }
    h
}

fn render_queue(status: &Value) -> String {
    let none = no_items();
    let queue = status
        .get("queue")
        .and_then(Value::as_array)
        .unwrap_or(&none);
    let mut h = heading("Queue", Some(queue.len()));
    if queue.is_empty() {
        h.push_str(&empty("Nothing is waiting."));
        return h;
    }
    let mut rows = String::new();
    for (i, r) in queue.iter().enumerate() {
        let _ = write!(
            rows,
            "<tr class=\"state-{}\" data-id=\"{}\"><td class=\"pos\">{}</td>\
             <td class=\"id\">{}</td><td class=\"pocket\">{}</td><td class=\"kind\">{}</td>\
             <td class=\"packages\">{}</td><td class=\"user\">{}</td>\
             <td class=\"time\">{}</td></tr>",
            token(r.get("state")),
            esc(&text(r.get("id"))),
            i + 1,
            esc(&text(r.get("id"))),
            esc(&text(r.get("pocket"))),
            esc(&text(r.get("kind"))),
            esc(&list_text(r.get("packages"))),
            esc(&user_text(r)),
            esc(&time_text(r.get("queued_at"))),
        );
    }
    h.push_str(&table(
        &[
            "#",
            "id",
            "pocket",
            "kind",
            "packages",
            "user",
            "queued (UTC)",
        ],
        "requests",
        &rows,
    ));
    h
}

fn render_running(status: &Value) -> String {
    let none = no_items();
    let running = status
        .get("running")
        .and_then(Value::as_array)
        .unwrap_or(&none);
    let mut h = heading("Running", Some(running.len()));
    if running.is_empty() {
        h.push_str(&empty("No build is running."));
        return h;
    }
    for r in running {
        let _ = write!(
            h,
            "<div class=\"build state-{}\" data-id=\"{}\"><div class=\"build-head\">\
             <span class=\"id\">#{}</span> <span class=\"pocket\">{}</span> \
             <span class=\"packages\">{}</span> <span class=\"user\">{}</span>",
            token(r.get("state")),
            esc(&text(r.get("id"))),
            esc(&text(r.get("id"))),
            esc(&text(r.get("pocket"))),
            esc(&list_text(r.get("packages"))),
            esc(&user_text(r)),
        );
        if let Some(run) = r.get("run").filter(|v| !v.is_null()) {
            let _ = write!(
                h,
                " <span class=\"run\">run {}</span>",
                esc(&text(Some(run)))
            );
        }
        let _ = write!(
            h,
            " <span class=\"time\">started {} UTC</span></div>",
            esc(&time_text(r.get("started_at")))
        );
        let jobs = r.get("building").and_then(Value::as_array).unwrap_or(&none);
        if jobs.is_empty() {
            h.push_str(&empty("Preparing the run…"));
        }
        for j in jobs {
            let _ = write!(
                h,
                "<div class=\"job\"><div class=\"job-head\"><span class=\"package\">{}</span> \
                 <span class=\"stage\">{}</span> <span class=\"elapsed\">{}</span></div>\
                 <pre class=\"log-tail\">{}</pre></div>",
                esc(&text(j.get("package"))),
                esc(&text(j.get("stage"))),
                esc(&ms_text(j.get("elapsed_ms"))),
                esc(&lines_text(j.get("log_tail"))),
            );
        }
        h.push_str("</div>");
    }
    h
}

fn render_recent(status: &Value) -> String {
    let mut h = heading("Recent results", None);
    let pockets = status.get("recent").and_then(Value::as_object);
    let Some(pockets) = pockets.filter(|p| !p.is_empty()) else {
        h.push_str(&empty("No results yet."));
        return h;
    };
    for (name, results) in pockets {
        let _ = write!(
            h,
            "<div class=\"pocket-results\" id=\"recent-{0}\"><h3>{0}</h3>",
            esc(name)
        );
        let results = results.as_array().filter(|r| !r.is_empty());
        let Some(results) = results else {
            h.push_str(&empty("No results yet."));
            h.push_str("</div>");
            continue;
        };
        let mut rows = String::new();
        for r in results {
            let _ = write!(
                rows,
                "<tr class=\"state-{}\" data-id=\"{}\"><td class=\"id\">{}</td>\
                 <td class=\"packages\">{}</td><td class=\"user\">{}</td>\
                 <td class=\"state\"><span class=\"badge\">{}</span>",
                token(r.get("state")),
                esc(&text(r.get("id"))),
                esc(&text(r.get("id"))),
                esc(&versions_text(r)),
                esc(&user_text(r)),
                esc(&text(r.get("state"))),
            );
            match r.get("reason") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                reason => {
                    let _ = write!(rows, "<div class=\"reason\">{}</div>", esc(&text(reason)));
                }
            }
            let _ = write!(
                rows,
                "</td><td class=\"time\">{}</td><td class=\"links\">",
                esc(&time_text(r.get("finished_at")))
            );
            match r.get("run").and_then(Value::as_i64) {
                Some(run) => {
                    let _ = write!(
                        rows,
                        "<a href=\"/report/{run}\">report</a> \
                         <a href=\"/api/report?run={run}\">json</a>"
                    );
                }
                None => rows.push('—'),
            }
            rows.push_str("</td></tr>");
        }
        h.push_str(&table(
            &[
                "id",
                "packages",
                "user",
                "state",
                "finished (UTC)",
                "report",
            ],
            "requests",
            &rows,
        ));
        h.push_str("</div>");
    }
    h
}

fn render_pockets(status: &Value) -> String {
    let mut h = heading("Pockets", None);
    let pockets = status.get("pockets").and_then(Value::as_object);
    let Some(pockets) = pockets.filter(|p| !p.is_empty()) else {
        h.push_str(&empty("No pockets are configured."));
        return h;
    };
    h.push_str("<div class=\"pocket-grid\">");
    for (name, p) in pockets {
        let _ = write!(
            h,
            "<div class=\"pocket\" id=\"pocket-{0}\"><h3>{0}",
            esc(name)
        );
        match p.get("signed") {
            Some(Value::Bool(true)) => {
                h.push_str(" <span class=\"flag flag-signed\">signed</span>")
            }
            Some(Value::Bool(false)) => {
                h.push_str(" <span class=\"flag flag-unsigned\">unsigned</span>")
            }
            _ => {}
        }
        if p.get("frozen") == Some(&Value::Bool(true)) {
            h.push_str(" <span class=\"flag flag-frozen\">frozen</span>");
        }
        h.push_str("</h3>");
        if let Some(publish) = p.get("publish").filter(|v| !v.is_null()) {
            let _ = write!(
                h,
                "<p class=\"publish\">published at <code>{}</code></p>",
                esc(&text(Some(publish)))
            );
        }
        match p
            .get("packages")
            .and_then(Value::as_object)
            .filter(|p| !p.is_empty())
        {
            None => h.push_str(&empty("Nothing published yet.")),
            Some(packages) => {
                let mut rows = String::new();
                for (package, version) in packages {
                    let _ = write!(
                        rows,
                        "<tr><td class=\"package\">{}</td><td class=\"version\">{}</td></tr>",
                        esc(package),
                        esc(&text(Some(version)))
                    );
                }
                h.push_str(&table(&["package", "version"], "packages", &rows));
            }
        }
        h.push_str("</div>");
    }
    h.push_str("</div>");
    h
}

/// The status page, with `status` rendered in.
fn page(status: &Value) -> String {
    let rendered = time_text(Some(&json!(now_secs())));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>comb serve</title>\n\
         <noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>comb serve</h1><div id=\"daemon\">{}</div>\
         <div id=\"conn\" class=\"conn-static\">rendered {rendered} UTC</div></header>\n<main>\n\
         <section id=\"queue\">{}</section>\n\
         <section id=\"running\">{}</section>\n\
         <section id=\"recent\">{}</section>\n\
         <section id=\"pockets\">{}</section>\n\
         </main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        render_daemon(status),
        render_queue(status),
        render_running(status),
        render_recent(status),
        render_pockets(status),
    )
}

const STYLE: &str = r##"
:root { --fg: #1d2127; --muted: #5f6b7a; --line: #d9dee5; --panel: #f5f7fa;
  --ok: #1a7f37; --bad: #b42318; --warn: #8a5a00; --info: #0b61c4; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: #fff; margin: 0; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .4em 1.5em;
  padding: .8em 1.5em; border-bottom: 1px solid var(--line); background: var(--panel); }
h1 { font-size: 1.35em; margin: 0; }
#daemon { display: flex; flex-wrap: wrap; gap: .2em 1.4em; color: var(--muted); }
#daemon .label { font-size: .85em; text-transform: uppercase; letter-spacing: .04em; }
#daemon code { color: var(--fg); }
#conn { margin-left: auto; font-size: .85em; padding: .1em .7em; border-radius: 1em;
  background: #e8ebef; color: var(--muted); }
#conn.conn-live { background: #dcf3e3; color: var(--ok); }
#conn.conn-error { background: #fde4e1; color: var(--bad); }
main { padding: 0 1.5em 2em; max-width: 1400px; }
section { margin-top: 1.4em; }
h2 { font-size: 1.12em; margin: 0 0 .5em; padding-bottom: .25em; border-bottom: 2px solid var(--line); }
h3 { font-size: 1em; margin: .9em 0 .35em; }
.count { display: inline-block; min-width: 1.6em; text-align: center; font-size: .8em;
  padding: 0 .45em; border-radius: 1em; background: var(--panel); border: 1px solid var(--line);
  color: var(--muted); vertical-align: middle; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3em .65em; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: .8em; font-weight: 600; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; background: var(--panel); }
td.packages, td.package, td.user, td.pocket, .reason, code, h3 { overflow-wrap: anywhere; }
td.id, td.pos, td.time, td.version { white-space: nowrap; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 .5em; border-radius: .3em; font-size: .85em;
  font-weight: 600; background: #e7eefb; color: var(--info); }
tr.state-succeeded .badge { background: #dcf3e3; color: var(--ok); }
tr.state-failed .badge { background: #fde4e1; color: var(--bad); }
tr.state-refused .badge { background: #fff0c7; color: var(--warn); }
tr.state-cancelled .badge { background: #eceff2; color: var(--muted); }
.reason { color: var(--muted); font-size: .9em; white-space: pre-wrap; margin-top: .15em; }
.build { border: 1px solid var(--line); border-left: 4px solid var(--info); border-radius: 6px;
  padding: .6em .8em; margin: .6em 0; }
.build-head { display: flex; flex-wrap: wrap; gap: .2em .9em; font-weight: 600; }
.build-head .user, .build-head .run, .build-head .time, .build-head .pocket { font-weight: normal;
  color: var(--muted); }
.job { margin-top: .55em; }
.job-head { display: flex; gap: .8em; align-items: baseline; }
.job-head .package { font-weight: 600; }
.job-head .stage { font-size: .85em; padding: 0 .5em; border-radius: .3em; background: #e7eefb;
  color: var(--info); }
.job-head .elapsed { color: var(--muted); font-variant-numeric: tabular-nums; }
pre.log-tail { margin: .3em 0 0; padding: .5em .75em; max-height: 18em; overflow: auto;
  background: #14191f; color: #d8dee6; border-radius: 4px; white-space: pre-wrap;
  overflow-wrap: anywhere; font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre.log-tail:empty::before { content: "no output yet"; color: #7b8794; }
.pocket-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
  gap: 1em; }
.pocket-grid > .pocket { border: 1px solid var(--line); border-radius: 6px;
  padding: .2em .8em .7em; }
.pocket-results table { table-layout: fixed; }
.pocket-results th:nth-child(1) { width: 6em; }
.pocket-results th:nth-child(3) { width: 14%; }
.pocket-results th:nth-child(4) { width: 30%; }
.pocket-results th:nth-child(5) { width: 14em; }
.pocket-results th:nth-child(6) { width: 9em; }
.publish { margin: 0 0 .5em; color: var(--muted); }
.flag { font-size: .75em; font-weight: 600; padding: .05em .5em; border-radius: 1em;
  vertical-align: middle; }
.flag-signed { background: #dcf3e3; color: var(--ok); }
.flag-unsigned { background: #fff0c7; color: var(--warn); }
.flag-frozen { background: #e1ecfa; color: var(--info); }
.empty { color: var(--muted); font-style: italic; margin: .4em 0; }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; }
a { color: var(--info); }
"##;

/// Redraws the sections from /api/status every 2 s. Data only ever goes into
/// text nodes and attributes: never markup.
const SCRIPT: &str = r##"
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const MAX_TIME = 253402300799;
  const arr = (v) => (Array.isArray(v) ? v : []);
  const obj = (v) => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : {});
  const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  const given = (v) => v !== undefined && v !== null;
  function text(v) {
    if (!given(v)) return "\u2014";
    if (typeof v === "string") return v;
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") return String(v);
    return JSON.stringify(v);
  }
  function time(v) {
    if (typeof v !== "number" || !isFinite(v) || v < 0 || v > MAX_TIME) return text(v);
    return new Date(Math.floor(v) * 1000).toISOString().slice(0, 19).replace("T", " ");
  }
  function ms(v) {
    if (typeof v !== "number" || !isFinite(v) || v < 0) return text(v);
    if (v < 60000) return (v / 1000).toFixed(1) + " s";
    const s = Math.floor(v / 1000);
    const two = (n) => String(n).padStart(2, "0");
    if (s < 3600) return Math.floor(s / 60) + " min " + two(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + two(Math.floor(s / 60) % 60) + " min";
  }
  function list(v) {
    if (!Array.isArray(v)) return text(v);
    return v.length ? v.map(text).join(", ") : "\u2014";
  }
  function user(r) {
    if (given(r.user)) return text(r.user);
    if (given(r.uid)) return "uid " + text(r.uid);
    return "\u2014";
  }
  function versions(r) {
    const vs = obj(r.versions);
    const names = Array.isArray(r.packages) ? r.packages.map(text) : Object.keys(vs);
    if (!names.length) return "\u2014";
    return names
      .map((n) => (has(vs, n) && typeof vs[n] === "string" ? n + " " + vs[n] : n))
      .join(", ");
  }
  function token(v) {
    if (typeof v !== "string" || !v) return "unknown";
    return v.replace(/[^A-Za-z0-9_-]/g, "_").toLowerCase();
  }
  function el(tag, cls, kids) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k of kids || []) e.append(k);
    return e;
  }
  const td = (cls, s) => el("td", cls, [s]);
  const empty = (msg) => el("p", "empty", [msg]);
  function heading(title, count) {
    const h = el("h2", "", [title]);
    if (count !== undefined) h.append(" ", el("span", "count", [String(count)]));
    return h;
  }
  function table(heads, cls, rows) {
    const head = el("tr", "", heads.map((h) => el("th", "", [h])));
    return el("table", cls, [el("thead", "", [head]), el("tbody", "", rows)]);
  }
  function link(href, label) {
    const a = el("a", "", [label]);
    a.setAttribute("href", href);
    return a;
  }

  function daemon(s) {
    const d = obj(s.daemon);
    const out = [];
    const item = (label, value, code) =>
      out.push(el("span", "item", [el("span", "label", [label]), " ", code ? el("code", "", [value]) : value]));
    if (given(d.version)) item("version", text(d.version), false);
    if (given(d.repo)) item("repo", text(d.repo), true);
    if (given(d.socket)) item("socket", text(d.socket), true);
    if (given(d.started_at)) item("up since", time(d.started_at) + " UTC", false);
    return out;
  }
  function queue(s) {
    const q = arr(s.queue);
    const out = [heading("Queue", q.length)];
    if (!q.length) return out.concat(empty("Nothing is waiting."));
    const rows = q.map((r, i) => {
      r = obj(r);
      const tr = el("tr", "state-" + token(r.state), [
        td("pos", String(i + 1)), td("id", text(r.id)), td("pocket", text(r.pocket)),
        td("kind", text(r.kind)), td("packages", list(r.packages)), td("user", user(r)),
        td("time", time(r.queued_at)),
      ]);
      tr.setAttribute("data-id", text(r.id));
      return tr;
    });
    out.push(table(["#", "id", "pocket", "kind", "packages", "user", "queued (UTC)"], "requests", rows));
    return out;
  }
  function running(s) {
    const rs = arr(s.running);
    const out = [heading("Running", rs.length)];
    if (!rs.length) return out.concat(empty("No build is running."));
    for (let r of rs) {
      r = obj(r);
      const head = el("div", "build-head", [
        el("span", "id", ["#" + text(r.id)]), " ", el("span", "pocket", [text(r.pocket)]), " ",
        el("span", "packages", [list(r.packages)]), " ", el("span", "user", [user(r)]),
      ]);
      if (given(r.run)) head.append(" ", el("span", "run", ["run " + text(r.run)]));
      head.append(" ", el("span", "time", ["started " + time(r.started_at) + " UTC"]));
      const build = el("div", "build state-" + token(r.state), [head]);
      build.setAttribute("data-id", text(r.id));
      const jobs = arr(r.building);
      if (!jobs.length) build.append(empty("Preparing the run\u2026"));
      for (let j of jobs) {
        j = obj(j);
        const tail = Array.isArray(j.log_tail) ? j.log_tail.map(text).join("\n")
          : given(j.log_tail) ? text(j.log_tail) : "";
        build.append(el("div", "job", [
          el("div", "job-head", [
            el("span", "package", [text(j.package)]), " ", el("span", "stage", [text(j.stage)]), " ",
            el("span", "elapsed", [ms(j.elapsed_ms)]),
          ]),
          el("pre", "log-tail", [tail]),
        ]));
      }
      out.push(build);
    }
    return out;
  }
  function recent(s) {
    const out = [heading("Recent results")];
    const pockets = obj(s.recent);
    const names = Object.keys(pockets).sort();
    if (!names.length) return out.concat(empty("No results yet."));
    for (const name of names) {
      const div = el("div", "pocket-results", [el("h3", "", [name])]);
      div.id = "recent-" + name;
      const rs = arr(pockets[name]);
      if (!rs.length) div.append(empty("No results yet."));
      else {
        const rows = rs.map((r) => {
          r = obj(r);
          const state = el("td", "state", [el("span", "badge", [text(r.state)])]);
          if (given(r.reason) && r.reason !== "") state.append(el("div", "reason", [text(r.reason)]));
          const links = el("td", "links", []);
          if (Number.isInteger(r.run)) {
            links.append(link("/report/" + r.run, "report"), " ", link("/api/report?run=" + r.run, "json"));
          } else links.append("\u2014");
          const tr = el("tr", "state-" + token(r.state), [
            td("id", text(r.id)), td("packages", versions(r)), td("user", user(r)), state,
            td("time", time(r.finished_at)), links,
          ]);
          tr.setAttribute("data-id", text(r.id));
          return tr;
        });
        div.append(table(["id", "packages", "user", "state", "finished (UTC)", "report"], "requests", rows));
      }
      out.push(div);
    }
    return out;
  }
  function pockets(s) {
    const out = [heading("Pockets")];
    const ps = obj(s.pockets);
    const names = Object.keys(ps).sort();
    if (!names.length) return out.concat(empty("No pockets are configured."));
    const grid = el("div", "pocket-grid", []);
    for (const name of names) {
      const p = obj(ps[name]);
      const h = el("h3", "", [name]);
      if (p.signed === true) h.append(" ", el("span", "flag flag-signed", ["signed"]));
      else if (p.signed === false) h.append(" ", el("span", "flag flag-unsigned", ["unsigned"]));
      if (p.frozen === true) h.append(" ", el("span", "flag flag-frozen", ["frozen"]));
      const div = el("div", "pocket", [h]);
      div.id = "pocket-" + name;
      if (given(p.publish)) div.append(el("p", "publish", ["published at ", el("code", "", [text(p.publish)])]));
      const pk = obj(p.packages);
      const pn = Object.keys(pk).sort();
      if (!pn.length) div.append(empty("Nothing published yet."));
      else div.append(table(["package", "version"], "packages",
        pn.map((n) => el("tr", "", [td("package", n), td("version", text(pk[n]))]))));
      grid.append(div);
    }
    out.push(grid);
    return out;
  }

  const parts = { daemon, queue, running, recent, pockets };
  const shown = {};
  function scrollTails() {
    for (const pre of document.querySelectorAll("pre.log-tail")) pre.scrollTop = pre.scrollHeight;
  }
  function render(s) {
    s = obj(s);
    for (const id of Object.keys(parts)) {
      // Redraw only what changed, so a reader's selection survives.
      const key = JSON.stringify(given(s[id]) ? s[id] : null);
      if (shown[id] === key) continue;
      shown[id] = key;
      const target = document.getElementById(id);
      if (target) target.replaceChildren(...parts[id](s));
    }
    scrollTails();
  }
  const conn = document.getElementById("conn");
  const clock = () => new Date().toISOString().slice(11, 19);
  function refresh() {
    fetch("/api/status", { cache: "no-store", headers: { Accept: "application/json" } })
      .then((r) => {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then((s) => {
        render(s);
        conn.className = "conn-live";
        conn.textContent = "live \u00b7 updated " + clock() + " UTC";
      })
      .catch((e) => {
        conn.className = "conn-error";
        conn.textContent = "cannot reach the daemon (" + (e && e.message) + "); retrying";
      })
      .finally(() => setTimeout(refresh, REFRESH_MS));
  }
  scrollTails();
  setTimeout(refresh, REFRESH_MS);
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Fake {
        status: Mutex<Value>,
        panics: bool,
    }

    impl StatusSource for Fake {
        fn status(&self) -> Value {
            assert!(!self.panics, "the fake source panics on purpose");
            self.status.lock().unwrap().clone()
        }
        fn request(&self, id: i64) -> Option<Value> {
            (id == 12).then(|| json!({"id": 12, "state": "queued", "packages": ["hello"]}))
        }
        fn report(&self, run: Option<i64>) -> Result<Value, String> {
            match run {
                None | Some(815) => Ok(json!({"schema": 1, "run": 815})),
                Some(814) => Ok(json!({"schema": 1, "run": 814})),
                Some(n) => Err(format!("no run {n}")),
            }
        }
        fn report_page(&self, run: i64) -> Result<String, String> {
            match run {
                814 => Ok("<!DOCTYPE html><title>report 814</title>".into()),
                n => Err(format!("no run <{n}>")),
            }
        }
    }

    fn sample() -> Value {
        json!({
            "daemon": {"started_at": 1764530000, "socket": "/run/comb/comb.sock",
                       "repo": "/srv/repo", "version": "0.1.0"},
            "queue": [{"id": 12, "state": "queued", "kind": "submit", "pocket": "dev",
                       "packages": ["hello"], "user": "alice", "uid": 1001,
                       "queued_at": 1764530100}],
            "running": [{"id": 11, "state": "running", "kind": "submit", "pocket": "dev",
                         "packages": ["hello", "greet"], "user": "bob", "uid": 1002,
                         "queued_at": 1764530000, "started_at": 1764530050, "run": 815,
                         "building": [{"package": "hello", "stage": "build",
                                       "elapsed_ms": 12000,
                                       "log_tail": ["dh_auto_build", "make[1]: done"]}]}],
            "recent": {
                "dev": [{"id": 10, "state": "succeeded", "kind": "submit",
                         "packages": ["hello"], "user": "alice", "finished_at": 1764530040,
                         "run": 814, "versions": {"hello": "2.10-3"}, "reason": null}],
                "prod": [{"id": 9, "state": "failed", "kind": "promote", "packages": ["greet"],
                          "user": "carol", "finished_at": 1764529000, "run": 813,
                          "reason": "greet: build failed"}]
            },
            "pockets": {"dev": {"publish": "/srv/apt/dev", "signed": true, "frozen": false,
                                "packages": {"hello": "2.10-3"}}}
        })
    }

    fn start(status: Value) -> HttpServer {
        let source = Arc::new(Fake {
            status: Mutex::new(status),
            panics: false,
        });
        serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), source).unwrap()
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
        fn json(&self) -> Value {
            assert_eq!(self.header("content-type"), Some("application/json"));
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// Sends `raw` as it is and reads the whole answer.
    fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = String::from_utf8(out[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect();
        Reply {
            status,
            headers,
            body: out[split + 4..].to_vec(),
        }
    }

    fn request(addr: SocketAddr, method: &str, target: &str) -> Reply {
        let raw = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: test\r\n\r\n",
            addr.port()
        );
        exchange(addr, raw.as_bytes())
    }

    fn get(addr: SocketAddr, target: &str) -> Reply {
        request(addr, "GET", target)
    }

    #[test]
    fn parse_request_head_is_the_servers_parser() {
        let head =
            parse_request_head(b"GET /api/status?x=1 HTTP/1.1\r\nHost:  localhost:8470 \r\n")
                .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/api/status?x=1");
        assert_eq!(head.host.as_deref(), Some("localhost:8470"));
        let err = parse_request_head(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.message, "HTTP/1.1 needs a Host header");
        assert!(err.to_string().starts_with("400 Bad Request: "), "{err}");
        let err = parse_request_head(b"GET / HTTP/2.0\r\nHost: a\r\n").unwrap_err();
        assert_eq!(err.status, 505);
        for junk in [&b""[..], b"\xff\xfe", b" ", b"GET  / HTTP/1.1", b"\n\n\n:"] {
            assert!(parse_request_head(junk).is_err());
        }
    }

    /// Found by the `http_head` fuzz target: a bare CR and NULs were taken
    /// into the request target, and a header value kept them too.
    #[test]
    fn control_characters_in_a_head_are_refused() {
        let mut fuzzed = b"GET /%2e\r".to_vec();
        fuzzed.extend([0u8; 33]);
        fuzzed.extend(b"ueue HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for head in [
            &fuzzed[..],
            b"GET /a\rb HTTP/1.1\r\nHost: localhost\r\n",
            b"GET\t/ HTTP/1.1\r\nHost: localhost\r\n",
            b"GET / HTTP/1.1\r\nHost: local\rhost\r\n",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n",
        ] {
            let err = parse_request_head(head).unwrap_err();
            assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(head));
            assert!(err.message.contains("control characters"), "{err}");
        }
        let tab = parse_request_head(b"GET / HTTP/1.1\r\nHost:\tlocalhost\r\nX-A: a\tb\r\n");
        assert_eq!(tab.unwrap().host.as_deref(), Some("localhost"));
    }

    #[test]
    fn parse_addr_defaults_to_loopback_and_names_bad_input() {
        let v4 = |p| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        assert_eq!(parse_addr("8470"), Ok(v4(8470)));
        assert_eq!(parse_addr(":8470"), Ok(v4(8470)));
        assert_eq!(parse_addr("localhost:8470"), Ok(v4(8470)));
        assert_eq!(parse_addr("LocalHost:1"), Ok(v4(1)));
        assert_eq!(parse_addr("0"), Ok(v4(0)));
        assert_eq!(
            parse_addr("127.0.0.1:8470"),
            Ok("127.0.0.1:8470".parse().unwrap())
        );
        assert_eq!(parse_addr("[::1]:8470"), Ok("[::1]:8470".parse().unwrap()));
        assert_eq!(parse_addr("0.0.0.0:80"), Ok("0.0.0.0:80".parse().unwrap()));
        for bad in [
            "",
            ":",
            "70000",
            ":-1",
            "127.0.0.1",
            "::1",
            "localhost",
            "localhost:",
            "localhost:http",
            "127.0.0.1:99999",
            "example:8470",
            "[::1]",
            "1.2.3:80",
            "[nope]:80",
        ] {
            let err = parse_addr(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(parse_addr("127.0.0.1").unwrap_err().contains("port"));
        assert!(parse_addr("example:8470").unwrap_err().contains("example"));
    }

    #[test]
    fn every_endpoint_answers_with_its_type_and_body() {
        let server = start(sample());
        let addr = server.addr();
        assert!(addr.ip().is_loopback() && addr.port() != 0);

        let page = get(addr, "/");
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("content-security-policy"), Some(PAGE_CSP));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(
            page.header("content-length"),
            Some(page.body.len().to_string().as_str())
        );
        let html = page.text();
        for needle in [
            "<section id=\"queue\">",
            "<tr class=\"state-queued\" data-id=\"12\">",
            "<td class=\"user\">alice</td>",
            "<section id=\"running\">",
            "<pre class=\"log-tail\">dh_auto_build\nmake[1]: done</pre>",
            "<span class=\"elapsed\">12.0 s</span>",
            "<div class=\"pocket-results\" id=\"recent-dev\">",
            "<div class=\"pocket-results\" id=\"recent-prod\">",
            "<tr class=\"state-failed\" data-id=\"9\">",
            "<td class=\"packages\">hello 2.10-3</td>",
            "<div class=\"reason\">greet: build failed</div>",
            "<a href=\"/report/814\">report</a>",
            "<a href=\"/api/report?run=814\">json</a>",
            "<div class=\"pocket\" id=\"pocket-dev\">",
            "<code>/srv/apt/dev</code>",
            "2025-11-30 19:15:00",
            "<code>/srv/repo</code>",
        ] {
            assert!(html.contains(needle), "{needle} missing from\n{html}");
        }
        // Self-contained: nothing is fetched from elsewhere.
        for outside in ["src=", "<link", "http://", "https://", "@import", "url("] {
            assert!(!html.contains(outside), "the page mentions {outside}");
        }

        let status = get(addr, "/api/status");
        assert_eq!(status.status, 200);
        assert_eq!(status.header("cache-control"), Some("no-store"));
        assert_eq!(status.json(), sample());

        let queue = get(addr, "/api/queue").json();
        assert_eq!(queue["queue"], sample()["queue"]);
        assert_eq!(queue["running"], sample()["running"]);
        assert_eq!(get(addr, "/api/pockets").json(), sample()["pockets"]);

        assert_eq!(get(addr, "/api/requests/12").json()["id"], 12);
        let missing = get(addr, "/api/requests/99");
        assert_eq!(missing.status, 404);
        assert_eq!(missing.json()["error"], "no request 99");
        assert_eq!(get(addr, "/api/requests/abc").status, 400);
        assert_eq!(get(addr, "/api/requests/").status, 400);
        assert_eq!(get(addr, "/api/requests/1/2").status, 404);

        assert_eq!(get(addr, "/api/report").json()["run"], 815);
        assert_eq!(get(addr, "/api/report?run=814").json()["run"], 814);
        assert_eq!(
            get(addr, "/api/report?x=1&run=%38%31%34").json()["run"],
            814
        );
        let gone = get(addr, "/api/report?run=7");
        assert_eq!(
            (gone.status, gone.json()["error"].clone()),
            (404, json!("no run 7"))
        );
        for bad in [
            "run=abc",
            "run=",
            "run=1.5",
            "run=1&run=2",
            "run=99999999999999999999",
        ] {
            let r = get(addr, &format!("/api/report?{bad}"));
            assert_eq!(r.status, 400, "{bad}");
            assert!(r.json()["error"].is_string());
        }

        let report = get(addr, "/report/814");
        assert_eq!(report.status, 200);
        assert_eq!(
            report.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(report.header("content-security-policy"), Some(PAGE_CSP));
        assert!(report.text().contains("report 814"));
        let no_report = get(addr, "/report/5");
        assert_eq!(no_report.status, 404);
        assert!(no_report.text().contains("no run &lt;5&gt;"));
        assert_eq!(get(addr, "/report/x").status, 400);

        let nowhere = get(addr, "/nowhere");
        assert_eq!(nowhere.status, 404);
        assert!(nowhere
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        let api_nowhere = get(addr, "/api/nowhere");
        assert_eq!(api_nowhere.status, 404);
        assert!(api_nowhere.json()["error"]
            .as_str()
            .unwrap()
            .contains("/api/nowhere"));
    }

    #[test]
    fn only_get_and_head_are_allowed() {
        let server = start(sample());
        let addr = server.addr();
        let head = request(addr, "HEAD", "/");
        let get = get(addr, "/");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), get.header("content-length"));
        assert_eq!(request(addr, "HEAD", "/api/status").status, 200);

        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let r = request(addr, method, "/api/status");
            assert_eq!(r.status, 405, "{method}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
            assert!(r.json()["error"].as_str().unwrap().contains(method));
        }
        let page = request(addr, "POST", "/");
        assert_eq!(page.status, 405);
        assert!(page
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        // A body is drained, not left to reset the connection.
        let body = "x".repeat(100_000);
        let with_body = exchange(
            addr,
            format!(
                "POST /api/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(with_body.status, 405);
    }

    #[test]
    fn odd_requests_get_a_400_and_the_server_lives_on() {
        let server = start(sample());
        let addr = server.addr();
        let long = format!("/{}", "a".repeat(100_000));
        assert_eq!(get(addr, &long).status, 400);
        assert_eq!(get(addr, &format!("/api/{}", "a".repeat(5000))).status, 400);
        assert_eq!(get(addr, "/%zz").status, 400);
        assert_eq!(get(addr, "/%").status, 400);
        assert_eq!(get(addr, "/%ff%fe").status, 400);
        let api = get(addr, "/api/status?x=%g1");
        assert_eq!(api.status, 400);
        assert!(api.json()["error"].is_string());
        assert_eq!(get(addr, "http://elsewhere/").status, 400);
        assert_eq!(get(addr, "*").status, 400);
        let exchanges: [(&[u8], u16); 9] = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.0\r\n\r\n", 200),
            (b"GET / HTTP/1.1\nHost: localhost\n\n", 200),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET /\xff HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        ];
        for (raw, status) in exchanges {
            let r = exchange(addr, raw);
            assert_eq!(r.status, status, "{}", String::from_utf8_lossy(raw));
        }
        let huge_headers = format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(MAX_HEAD)
        );
        assert_eq!(exchange(addr, huge_headers.as_bytes()).status, 431);
        // A client that leaves without asking is no error.
        drop(TcpStream::connect(addr).unwrap());
        assert_eq!(get(addr, "/api/status").status, 200);
    }

    #[test]
    fn a_loopback_server_refuses_foreign_host_names() {
        let server = start(sample());
        let addr = server.addr();
        for (host, status) in [
            ("localhost", 200),
            ("localhost:8470", 200),
            ("LOCALHOST.", 200),
            ("127.0.0.1", 200),
            ("127.1.2.3:9", 200),
            ("[::1]:8470", 200),
            ("[::1]", 200),
            ("attacker.example", 421),
            ("attacker.example:8470", 421),
            ("10.0.0.1", 421),
            ("localhost:x", 421),
            ("[::1", 421),
        ] {
            let raw = format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(exchange(addr, raw.as_bytes()).status, status, "{host}");
        }
    }

    #[test]
    fn hostile_strings_are_escaped_in_the_page() {
        let evil = "<script>alert(1)</script>";
        let quotes = "\"quotes\" & ampersands";
        let mut status = sample();
        status["queue"][0]["packages"] = json!([evil, quotes]);
        status["queue"][0]["user"] = json!(evil);
        status["queue"][0]["state"] = json!("queued\" onclick=\"x");
        status["running"][0]["building"][0]["log_tail"] = json!([
            evil,
            quotes,
            "</pre><img src=x onerror=alert(2)>",
            "\u{1b}[31mred\u{0}"
        ]);
        status["running"][0]["building"][0]["package"] = json!(evil);
        status["recent"] = json!({ "dev\"><script>alert(3)</script>": [
            {"id": evil, "state": evil, "packages": [evil], "versions": {evil: quotes},
             "user": quotes, "reason": evil, "run": "1\"><script>"}
        ]});
        status["pockets"] = json!({ evil: {"publish": evil, "packages": {evil: quotes}} });
        status["daemon"]["repo"] = json!(evil);
        let server = start(status);
        let html = get(server.addr(), "/").text();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("onclick=\""), "{html}");
        assert!(!html.contains('\u{0}') && !html.contains('\u{1b}'));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;quotes&quot; &amp; ampersands"));
        assert!(html.contains("&lt;/pre&gt;&lt;img src=x onerror=alert(2)&gt;"));
        assert!(html.contains("<tr class=\"state-queued__onclick__x\""));
        assert!(html.contains("id=\"recent-dev&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;\""));
        // A run that is not a number gets no link.
        assert!(!html.contains("/report/1"));
        // The page's own script is the only one.
        assert_eq!(html.matches("<script>").count(), 1);
    }

    #[test]
    fn missing_and_odd_fields_render_without_failing() {
        for status in [
            json!(null),
            json!({}),
            json!([1, 2]),
            json!({"queue": "no", "running": {}, "recent": [], "pockets": 3, "daemon": 4}),
            json!({"queue": [null, 7, {"packages": "one", "queued_at": -5}],
                   "running": [{"building": [{"elapsed_ms": 3_723_000, "log_tail": "x"}]}],
                   "recent": {"dev": [], "prod": [{"run": 1.5, "versions": {"a": "1"}}]},
                   "pockets": {"dev": null}}),
        ] {
            let server = start(status.clone());
            let page = get(server.addr(), "/");
            assert_eq!(page.status, 200, "{status}");
            let html = page.text();
            assert!(html.contains("<section id=\"pockets\">"), "{html}");
            assert_eq!(get(server.addr(), "/api/queue").status, 200);
            assert_eq!(get(server.addr(), "/api/pockets").status, 200);
        }
    }

    #[test]
    fn a_panicking_source_gets_a_500_and_stop_closes_the_port() {
        let source = Arc::new(Fake {
            status: Mutex::new(sample()),
            panics: true,
        });
        let server = serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), source).unwrap();
        let addr = server.addr();
        assert_eq!(get(addr, "/api/status").status, 500);
        assert_eq!(get(addr, "/api/requests/12").status, 200);
        server.stop();
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn connections_beyond_the_limit_are_turned_away() {
        let server = start(sample());
        let addr = server.addr();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        // The accept loop takes connections in order, so this one is over.
        let turned_away = get(addr, "/api/status");
        assert_eq!(turned_away.status, 503);
        drop(idle);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if get(addr, "/api/status").status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the idle connections never ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `first` at once, then a byte every `every` until the server
    /// closes the connection; returns how long after connecting it did
    /// (None: it was still open after `give_up`).
    fn trickle(
        addr: SocketAddr,
        first: &[u8],
        every: Duration,
        give_up: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.write_all(first).is_err() {
            return Some(start.elapsed());
        }
        while start.elapsed() < give_up {
            std::thread::sleep(every);
            // After the server closed, the first write draws a reset and
            // a later one fails.
            if s.write_all(b"x").is_err() {
                return Some(start.elapsed());
            }
        }
        None
    }

    #[test]
    fn trickling_clients_are_cut_off_at_the_deadline_and_others_are_served() {
        let deadline = Duration::from_secs(2);
        let source = Arc::new(Fake {
            status: Mutex::new(sample()),
            panics: false,
        });
        let server =
            serve_with_deadline(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), source, deadline)
                .unwrap();
        let addr = server.addr();
        let every = Duration::from_millis(300);
        let give_up = deadline * 4;
        // Every slot: half trickle their head, half a body after their
        // answer (which the drain after answering reads, a byte at a time).
        let body_head =
            b"POST /api/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n";
        let started = Instant::now();
        let tricklers: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|i| {
                std::thread::spawn(move || {
                    let first: &[u8] = if i % 2 == 0 { b"G" } else { body_head };
                    trickle(addr, first, every, give_up)
                })
            })
            .collect();
        // Give them time to be accepted, then: the slots are full.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(get(addr, "/api/status").status, 503);
        // Once the deadline has passed, the slots are free again.
        let mut served_at = None;
        while started.elapsed() < give_up {
            if get(addr, "/api/status").status == 200 {
                served_at = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let served_at = served_at.expect("the tricklers held every slot past the deadline");
        assert!(
            served_at < deadline + Duration::from_millis(1500),
            "served only after {served_at:?}"
        );
        for t in tricklers {
            let closed = t
                .join()
                .unwrap()
                .expect("a trickling client was never cut off");
            assert!(
                closed < deadline + Duration::from_millis(1500),
                "cut off after {closed:?}"
            );
        }

        // A few tricklers do not keep others waiting meanwhile.
        let few: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || trickle(addr, body_head, every, give_up)))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..10 {
            let t = Instant::now();
            assert_eq!(get(addr, "/api/status").status, 200);
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        }
        for t in few {
            assert!(t.join().unwrap().is_some());
        }
    }

    #[test]
    fn formats_match_the_script() {
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(time_text(Some(&json!(0))), "1970-01-01 00:00:00");
        assert_eq!(time_text(Some(&json!(951_782_400))), "2000-02-29 00:00:00");
        assert_eq!(time_text(Some(&json!(1764530100.9))), "2025-11-30 19:15:00");
        assert_eq!(time_text(Some(&json!(-1))), "-1");
        assert_eq!(time_text(None), "—");
        assert_eq!(ms_text(Some(&json!(12_000))), "12.0 s");
        assert_eq!(ms_text(Some(&json!(125_000))), "2 min 05 s");
        assert_eq!(ms_text(Some(&json!(3_723_000))), "1 h 02 min");
        assert_eq!(token(Some(&json!("Failed"))), "failed");
        assert_eq!(token(Some(&json!("a b\"é"))), "a_b__");
        assert_eq!(token(Some(&json!(3))), "unknown");
        assert_eq!(percent_decode("a%2Fb+c", true).as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%", false), None);
        assert_eq!(percent_decode("%e9", false), None);
    }
}
