//! What clients and the daemon say to each other on the socket: one JSON
//! request on one line, answered by JSON lines, the last of which has
//! `"done": true`. A request longer than [`MAX_REQUEST_BYTES`], not JSON,
//! or not one of these shapes is refused and the client disconnected.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};

/// The largest request line, newline included.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Most packages one request may name.
pub const MAX_PACKAGES: usize = 256;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Build packages for a pocket and publish them there.
    Submit {
        pocket: String,
        packages: Vec<String>,
        /// Keep the connection until the request ends, with its states.
        #[serde(default)]
        wait: bool,
    },
    /// Copy packages published in one pocket into another, unbuilt.
    Promote {
        from: String,
        to: String,
        packages: Vec<String>,
    },
    /// The queue and the running requests. (A struct variant, so that
    /// unknown fields are refused as for the others.)
    Queue {},
    /// Cancel a queued or running request.
    Cancel { id: i64 },
    /// One request.
    Status { id: i64 },
}

/// Why a request was refused, as a word a machine can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    NotInAccessList,
    VersionNotGreater,
    UnknownPackage,
    UnknownPocket,
    PocketFrozen,
    OutputMismatch,
    NotPublished,
    TooManyInFlight,
    Malformed,
    NotYours,
    NotFound,
    /// The uid sent requests too fast; the answer's `retry_after_ms` says
    /// when to try again.
    RateLimited,
}

/// Reads one request line from a client: at most [`MAX_REQUEST_BYTES`].
pub fn read_request(reader: &mut impl BufRead) -> Result<Request, String> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the request: {e}"))?;
    if n == 0 {
        return Err("the connection closed before a request came".into());
    }
    if n > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request is larger than {MAX_REQUEST_BYTES} bytes"
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err("the request does not end with a newline".into());
    }
    let request: Request = serde_json::from_slice(&line)
        .map_err(|e| format!("the request is not a valid request: {e}"))?;
    let packages = match &request {
        Request::Submit { packages, .. } | Request::Promote { packages, .. } => packages,
        _ => return Ok(request),
    };
    if packages.is_empty() {
        return Err("the request names no package".into());
    }
    if packages.len() > MAX_PACKAGES {
        return Err(format!(
            "the request names more than {MAX_PACKAGES} packages"
        ));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, String> {
        read_request(&mut std::io::BufReader::new(bytes))
    }

    #[test]
    fn requests_parse_and_garbage_is_refused() {
        assert_eq!(
            read(b"{\"op\":\"submit\",\"pocket\":\"dev\",\"packages\":[\"hello\"]}\n").unwrap(),
            Request::Submit {
                pocket: "dev".into(),
                packages: vec!["hello".into()],
                wait: false
            }
        );
        assert_eq!(
            read(b"{\"op\":\"cancel\",\"id\":3}\n").unwrap(),
            Request::Cancel { id: 3 }
        );
        for bad in [
            &b"hello\n"[..],
            b"{\"op\":\"rm\"}\n",
            b"{\"op\":\"queue\",\"x\":1}\n",
            b"{\"op\":\"submit\",\"pocket\":\"dev\",\"packages\":[]}\n",
            b"{\"op\":\"queue\"}",
            b"",
        ] {
            assert!(read(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut big = b"{\"op\":\"queue\",\"pad\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_REQUEST_BYTES));
        big.extend(b"\"}\n");
        assert!(read(&big).unwrap_err().contains("larger than"));
    }
}
