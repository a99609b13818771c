//! The status page's HTTP request head (`http::parse_request_head`): the
//! request line and header lines a client on the network sent, up to the
//! blank line, parsed exactly as the server parses them.
#![no_main]

use comb_service::http::parse_request_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request_head(data) {
        Ok(head) => {
            // The method is a token, the target one word of visible ASCII,
            // the Host one line without control characters but tabs.
            assert!(!head.method.is_empty());
            assert!(head.method.bytes().all(|b| b.is_ascii_graphic()));
            assert!(
                head.target.bytes().all(|b| b.is_ascii_graphic()),
                "{:?}",
                head.target
            );
            if let Some(host) = &head.host {
                assert!(
                    !host.bytes().any(|b| b.is_ascii_control() && b != b'\t'),
                    "{host:?}"
                );
            }
        }
        Err(e) => {
            assert!((400..=599).contains(&e.status), "{e}");
            assert!(!e.message.is_empty());
        }
    }
});
