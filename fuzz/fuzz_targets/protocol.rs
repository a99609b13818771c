//! The build service's socket protocol (`read_request`): one JSON request
//! line from a local client, read from the connection as the daemon does.
#![no_main]

use comb_service::protocol::{read_request, Request, MAX_PACKAGES, MAX_REQUEST_BYTES};
use libfuzzer_sys::fuzz_target;
use std::io::BufReader;

fuzz_target!(|data: &[u8]| {
    let mut reader = BufReader::new(data);
    if let Ok(request) = read_request(&mut reader) {
        if let Request::Submit { packages, .. } | Request::Promote { packages, .. } = &request {
            assert!(!packages.is_empty() && packages.len() <= MAX_PACKAGES);
        }
        // What was read is one request: it serializes and reads back.
        let mut line = serde_json::to_string(&request).expect("a request serializes");
        line.push('\n');
        if line.len() <= MAX_REQUEST_BYTES {
            assert_eq!(read_request(&mut line.as_bytes()).ok(), Some(request));
        }
    }
});
