//! The client side: one request to a daemon, its answers as they come.

use crate::error::{Error, Result};
use crate::protocol::Request;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long [`call`] keeps trying again when the daemon says the caller
/// sends requests too fast.
const RATE_PATIENCE: Duration = Duration::from_secs(60);

/// Sends `request` to the daemon at `socket` and hands every answer line
/// to `each`; returns the last (the one with `"done": true`). Refused for
/// its rate, it waits as long as the daemon says and tries again, for up to
/// a minute.
pub fn call(socket: &Path, request: &Request, mut each: impl FnMut(&Value)) -> Result<Value> {
    let start = Instant::now();
    loop {
        let mut first = true;
        let mut retry = None;
        let last = call_once(socket, request, |v| {
            if first && v["refusal"] == "rate_limited" {
                if let Some(ms) = v["retry_after_ms"].as_u64() {
                    let wait = Duration::from_millis(ms.clamp(1, 60_000));
                    if start.elapsed() + wait < RATE_PATIENCE {
                        retry = Some(wait);
                        return;
                    }
                }
            }
            first = false;
            each(v)
        })?;
        match retry {
            Some(wait) => std::thread::sleep(wait),
            None => return Ok(last),
        }
    }
}

fn call_once(socket: &Path, request: &Request, mut each: impl FnMut(&Value)) -> Result<Value> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        Error::io(
            format!(
                "connecting to comb serve at {} (is it running? give its --socket, or COMB_SOCKET)",
                socket.display()
            ),
            e,
        )
    })?;
    let mut line = serde_json::to_string(request).map_err(|e| Error::Environment(e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| Error::io("sending the request", e))?;
    let mut last = None;
    for answer in BufReader::new(stream).lines() {
        let answer = answer.map_err(|e| Error::io("reading the daemon's answer", e))?;
        let value: Value = serde_json::from_str(&answer)
            .map_err(|e| Error::Environment(format!("the daemon answered {answer:?}: {e}")))?;
        each(&value);
        let done = value["done"].as_bool().unwrap_or(true);
        last = Some(value);
        if done {
            break;
        }
    }
    last.ok_or_else(|| {
        Error::Environment("the daemon closed the connection without an answer".into())
    })
}
