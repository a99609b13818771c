//! Build and install logs in the store: zstd-compressed blobs, read back
//! whole (`comb log`) or as their last lines (errors).

use crate::engine::Engine;
use crate::error::{Error, Result};
use comb_cache::{Digest, Store};
use std::io::Read;

/// zstd's frame magic: logs stored before compression have none.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Stores `log` compressed; returns its blob digest.
pub(crate) fn store(engine: &Engine, log: &str) -> Result<String> {
    let compressed =
        zstd::encode_all(log.as_bytes(), 3).map_err(|e| Error::io("compressing a log", e))?;
    Ok(engine
        .store
        .put_blob_reader(&mut compressed.as_slice())?
        .to_string())
}

/// The text of the log stored as `digest`.
pub fn read(store: &Store, digest: &str) -> Result<String> {
    let digest: Digest = digest
        .parse()
        .map_err(|e| Error::Environment(format!("a log's digest {digest:?}: {e}")))?;
    let mut bytes = Vec::new();
    store
        .open_blob(&digest)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading the log {digest}"), e))?;
    if bytes.starts_with(&ZSTD_MAGIC) {
        bytes = zstd::decode_all(bytes.as_slice())
            .map_err(|e| Error::io(format!("decompressing the log {digest}"), e))?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
