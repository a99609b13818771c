//! comb-remote: comb's client of a shared cache that speaks the Remote
//! Execution API (REAPI v2, `build.bazel.remote.execution.v2`), the
//! protocol of Bazel's remote caches and of BuildGrid, Buildbarn and
//! NativeLink.
//!
//! A comb node is one REAPI action: its `Command` names the node's kind
//! and key, so a node key maps one-to-one to an `Action` digest, and its
//! outputs are the action's output files. What it guarantees:
//!
//! - Every blob read is checked against its SHA-256 before it is
//!   returned: a cache that serves other bytes than a digest names is
//!   reported, never believed.
//! - Results are written to the action cache only by [`Remote::record`],
//!   which callers use only when told to upload (trusted machines); a
//!   server that refuses updates (BuildGrid's `allow-updates: false`)
//!   gives [`Error::Refused`].
//! - Calls are synchronous for the caller (a small Tokio runtime of the
//!   client's own), bounded by a timeout, and an unreachable server is
//!   [`Error::Unreachable`], never a hang.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use prost::Message;
use sha2::{Digest as _, Sha256};
use std::time::Duration;
use tonic::transport::Channel;

pub mod bots;

pub use bazel_remote_apis::google::protobuf::Any;
pub use bazel_remote_apis::google::rpc::Status;
pub use re::{
    command::EnvironmentVariable, Action, ActionResult, Command, Digest, Directory, DirectoryNode,
    ExecutedActionMetadata, FileNode, OutputDirectory, OutputFile, SymlinkNode, Tree,
};

/// Blobs up to this size go in batch calls; larger ones through ByteStream.
const BATCH_LIMIT: usize = 1 << 20;
/// ByteStream chunks.
const CHUNK: usize = 1 << 20;
/// Longest one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the remote cache {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("the remote cache refused to record a result (it takes only what its own workers execute): {0}")]
    Refused(String),
    #[error("the remote cache served {what} that does not hash to its digest {expected} (it hashes to {actual}): refused")]
    Corrupt {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("the remote cache lost {0} (evicted?)")]
    Missing(String),
    #[error("the remote cache: {0}")]
    Call(String),
    #[error("{0} is not a remote cache address: write grpc://HOST:PORT")]
    BadUrl(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A blob's SHA-256 and size, as REAPI names it; as text `SHA256/SIZE`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct BlobDigest {
    pub sha256: String,
    pub size: u64,
}

impl BlobDigest {
    pub fn of(data: &[u8]) -> BlobDigest {
        BlobDigest {
            sha256: hex::encode(Sha256::digest(data)),
            size: data.len() as u64,
        }
    }

    /// As REAPI messages carry it.
    pub fn proto(&self) -> re::Digest {
        re::Digest {
            hash: self.sha256.clone(),
            size_bytes: self.size as i64,
        }
    }

    pub fn from_proto(d: &re::Digest) -> Result<BlobDigest> {
        let ok = d.hash.len() == 64 && d.hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok || d.size_bytes < 0 {
            return Err(Error::Call(format!(
                "a malformed digest {}/{}",
                d.hash, d.size_bytes
            )));
        }
        Ok(BlobDigest {
            sha256: d.hash.to_ascii_lowercase(),
            size: d.size_bytes as u64,
        })
    }
}

impl TryFrom<String> for BlobDigest {
    type Error = String;
    /// `SHA256/SIZE`, the SHA-256 in lowercase hex: nothing else (it
    /// names files).
    fn try_from(text: String) -> std::result::Result<BlobDigest, String> {
        let bad = || format!("{text:?} is not a digest (SHA256/SIZE)");
        let (hash, size) = text.split_once('/').ok_or_else(bad)?;
        let hex_ok =
            hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| hex_ok)
            .ok_or_else(bad)?;
        Ok(BlobDigest {
            sha256: hash.to_string(),
            size,
        })
    }
}

impl From<BlobDigest> for String {
    fn from(d: BlobDigest) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.sha256, self.size)
    }
}

/// The action that stands for the comb node `kind` `key`: its digest,
/// and the encoded `Action` and `Command` (to upload beside a result).
pub fn node_action(kind: &str, key: &str) -> (BlobDigest, Vec<u8>, Vec<u8>) {
    let command = re::Command {
        arguments: vec!["comb".into(), "node".into(), kind.into(), key.into()],
        ..Default::default()
    }
    .encode_to_vec();
    let empty_root = re::Directory::default().encode_to_vec();
    let action = re::Action {
        command_digest: Some(BlobDigest::of(&command).proto()),
        input_root_digest: Some(BlobDigest::of(&empty_root).proto()),
        ..Default::default()
    }
    .encode_to_vec();
    (BlobDigest::of(&action), action, command)
}

/// BuildGrid's scheduling hints, sent as a binary header of `Execute`.
#[derive(Clone, PartialEq, prost::Message)]
struct SchedulingMetadata {
    #[prost(string, tag = "1")]
    locality_hint: String,
}

const SCHEDULING_HEADER: &str = "build.buildgrid.schedulingmetadata-bin";

/// What came of an `Execute`.
#[derive(Debug, Clone)]
pub struct Executed {
    pub result: ActionResult,
    /// The server answered from its action cache: nothing ran.
    pub cached: bool,
}

/// `message` as a `google.protobuf.Any` of the REAPI type `name` (such as
/// `build.bazel.remote.execution.v2.ActionResult`).
pub fn to_any(name: &str, message: &impl Message) -> Any {
    Any {
        type_url: format!("type.googleapis.com/{name}"),
        value: message.encode_to_vec(),
    }
}

/// The message of type `name` an `Any` holds, if it holds one.
pub fn from_any<M: Message + Default>(name: &str, any: &Any) -> Option<M> {
    let type_name = any.type_url.rsplit('/').next()?;
    if type_name != name {
        return None;
    }
    M::decode(any.value.as_slice()).ok()
}

/// A connection to one REAPI server instance.
pub struct Remote {
    url: String,
    instance: String,
    channel: Channel,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// Connects to `grpc://HOST:PORT` (instance `instance`, often `main`
    /// or empty).
    pub fn connect(url: &str, instance: &str) -> Result<Remote> {
        let rest = url
            .strip_prefix("grpc://")
            .filter(|r| !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| Error::BadUrl(url.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Call(format!("starting the client: {e}")))?;
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{rest}"))
            .map_err(|_| Error::BadUrl(url.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = runtime
            .block_on(endpoint.connect())
            .map_err(|e| Error::Unreachable {
                url: url.to_string(),
                message: source_chain(&e),
            })?;
        Ok(Remote {
            url: url.to_string(),
            instance: instance.to_string(),
            channel,
            runtime,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `action` (its blobs uploaded) through the server's `Execute`
    /// and waits for it: the result, and whether the server took it from
    /// its action cache. A server that loses the operation's stream is
    /// asked again with `WaitExecution`. `locality` names what the action
    /// shares with others (its environment): BuildGrid, given an
    /// `!assign-by-locality` assigner, prefers a worker that ran an action
    /// of the same hint, which has that environment already.
    fn execute_once(&self, action: &BlobDigest, locality: Option<&str>) -> Result<Executed> {
        use bazel_remote_apis::google::longrunning::operation::Result as Outcome;
        let mut client = re::execution_client::ExecutionClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20);
        let mut request = tonic::Request::new(re::ExecuteRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.proto()),
            ..Default::default()
        });
        if let Some(hint) = locality {
            let metadata = SchedulingMetadata {
                locality_hint: hint.to_string(),
            };
            request.metadata_mut().insert_bin(
                tonic::metadata::MetadataKey::from_static(SCHEDULING_HEADER),
                tonic::metadata::MetadataValue::from_bytes(&metadata.encode_to_vec()),
            );
        }
        self.runtime.block_on(async {
            let mut stream = client
                .execute(request)
                .await
                .map_err(|s| self.status(s))?
                .into_inner();
            let mut name = String::new();
            loop {
                let operation = match stream.message().await.map_err(|s| self.status(s))? {
                    Some(op) => op,
                    None if name.is_empty() => {
                        return Err(Error::Call("Execute ended without an operation".into()))
                    }
                    None => {
                        let wait = re::WaitExecutionRequest { name: name.clone() };
                        stream = client
                            .wait_execution(wait)
                            .await
                            .map_err(|s| self.status(s))?
                            .into_inner();
                        continue;
                    }
                };
                name = operation.name.clone();
                if !operation.done {
                    continue;
                }
                let response = match operation.result {
                    Some(Outcome::Response(any)) => {
                        re::ExecuteResponse::decode(any.value.as_slice())
                            .map_err(|e| Error::Call(format!("a malformed ExecuteResponse: {e}")))?
                    }
                    Some(Outcome::Error(s)) => {
                        return Err(Error::Call(format!(
                            "the execution failed: {} (code {})",
                            s.message, s.code
                        )))
                    }
                    None => return Err(Error::Call("an operation done without a result".into())),
                };
                if let Some(s) = response.status.as_ref().filter(|s| s.code != 0) {
                    return Err(Error::Call(format!(
                        "the execution failed: {} (code {})",
                        s.message, s.code
                    )));
                }
                let result = response
                    .result
                    .ok_or_else(|| Error::Call("an execution without a result".into()))?;
                return Ok(Executed {
                    result,
                    cached: response.cached_result,
                });
            }
        })
    }

    /// `call`, made again (twice at most, a moment apart) when the
    /// connection broke under it: the channel connects anew, and every
    /// call comb makes may be repeated (an `Execute` of the same action
    /// joins the one the server runs).
    fn again<T>(&self, call: impl Fn() -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            match call() {
                Err(Error::Unreachable { .. }) if tries < 2 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(200 * tries));
                }
                done => return done,
            }
        }
    }

    /// [`Self::execute_once`], again after a broken connection.
    pub fn execute(&self, action: &BlobDigest, locality: Option<&str>) -> Result<Executed> {
        self.again(|| self.execute_once(action, locality))
    }

    /// [`Self::lookup_once`], again after a broken connection.
    pub fn lookup(&self, action: &BlobDigest) -> Result<Option<ActionResult>> {
        self.again(|| self.lookup_once(action))
    }

    /// [`Self::record_once`], again after a broken connection.
    pub fn record(&self, action: &BlobDigest, result: ActionResult) -> Result<()> {
        self.again(|| self.record_once(action, result.clone()))
    }

    /// [`Self::missing_once`], again after a broken connection.
    pub fn missing(&self, digests: &[BlobDigest]) -> Result<Vec<BlobDigest>> {
        self.again(|| self.missing_once(digests))
    }

    /// [`Self::upload_once`], again after a broken connection.
    pub fn upload(&self, blobs: &[&[u8]]) -> Result<()> {
        self.again(|| self.upload_once(blobs))
    }

    /// [`Self::download_all_once`], again after a broken connection.
    pub fn download_all(&self, digests: &[BlobDigest], what: &str) -> Result<Vec<Vec<u8>>> {
        self.again(|| self.download_all_once(digests, what))
    }

    /// The instance name calls are made for.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn status(&self, s: tonic::Status) -> Error {
        // A connection that breaks under a call (the server killed) comes
        // back as Unknown with the transport's error as its source.
        let broken = s.code() == tonic::Code::Unknown
            && (std::error::Error::source(&s).is_some() || s.message() == "transport error");
        if broken {
            return Error::Unreachable {
                url: self.url.clone(),
                message: source_chain(&s),
            };
        }
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Error::Unreachable {
                url: self.url.clone(),
                message: s.message().to_string(),
            },
            tonic::Code::PermissionDenied | tonic::Code::Unimplemented => {
                Error::Refused(s.message().to_string())
            }
            tonic::Code::NotFound => Error::Missing(s.message().to_string()),
            _ => Error::Call(format!("{:?}: {}", s.code(), s.message())),
        }
    }

    /// The result the action cache holds for `action`, if any.
    fn lookup_once(&self, action: &BlobDigest) -> Result<Option<ActionResult>> {
        let mut ac = re::action_cache_client::ActionCacheClient::new(self.channel.clone());
        let request = re::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.proto()),
            ..Default::default()
        };
        match self.runtime.block_on(ac.get_action_result(request)) {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(self.status(s)),
        }
    }

    /// Records `result` for `action`. The blobs it names must be uploaded
    /// first.
    fn record_once(&self, action: &BlobDigest, result: ActionResult) -> Result<()> {
        let mut ac = re::action_cache_client::ActionCacheClient::new(self.channel.clone());
        let request = re::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.proto()),
            action_result: Some(result),
            ..Default::default()
        };
        self.runtime
            .block_on(ac.update_action_result(request))
            .map(|_| ())
            .map_err(|s| self.status(s))
    }

    /// Which of `digests` the CAS does not hold.
    fn missing_once(&self, digests: &[BlobDigest]) -> Result<Vec<BlobDigest>> {
        let mut cas = re::content_addressable_storage_client::ContentAddressableStorageClient::new(
            self.channel.clone(),
        );
        let request = re::FindMissingBlobsRequest {
            instance_name: self.instance.clone(),
            blob_digests: digests.iter().map(BlobDigest::proto).collect(),
            ..Default::default()
        };
        let response = self
            .runtime
            .block_on(cas.find_missing_blobs(request))
            .map_err(|s| self.status(s))?;
        response
            .into_inner()
            .missing_blob_digests
            .iter()
            .map(BlobDigest::from_proto)
            .collect()
    }

    /// Uploads the blobs the CAS does not hold yet.
    fn upload_once(&self, blobs: &[&[u8]]) -> Result<()> {
        let digests: Vec<BlobDigest> = blobs.iter().map(|b| BlobDigest::of(b)).collect();
        let missing = self.missing(&digests)?;
        let mut batch = Vec::new();
        let mut batch_size = 0;
        for (digest, data) in digests.iter().zip(blobs) {
            if !missing.contains(digest) {
                continue;
            }
            if data.len() > BATCH_LIMIT {
                self.write_stream(digest, data)?;
                continue;
            }
            if batch_size + data.len() > BATCH_LIMIT {
                self.write_batch(std::mem::take(&mut batch))?;
                batch_size = 0;
            }
            batch_size += data.len();
            batch.push((digest.clone(), data.to_vec()));
        }
        self.write_batch(batch)
    }

    fn write_batch(&self, blobs: Vec<(BlobDigest, Vec<u8>)>) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        let mut cas = re::content_addressable_storage_client::ContentAddressableStorageClient::new(
            self.channel.clone(),
        );
        let request = re::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: blobs
                .into_iter()
                .map(|(d, data)| re::batch_update_blobs_request::Request {
                    digest: Some(d.proto()),
                    data,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let response = self
            .runtime
            .block_on(cas.batch_update_blobs(request))
            .map_err(|s| self.status(s))?;
        for r in response.into_inner().responses {
            if let Some(status) = r.status.filter(|s| s.code != 0) {
                return Err(Error::Call(format!(
                    "storing a blob: {} (code {})",
                    status.message, status.code
                )));
            }
        }
        Ok(())
    }

    fn write_stream(&self, digest: &BlobDigest, data: &[u8]) -> Result<()> {
        let mut client = bs::byte_stream_client::ByteStreamClient::new(self.channel.clone());
        let upload = format!(
            "{}/uploads/{}/blobs/{}/{}",
            self.instance,
            upload_id(digest),
            digest.sha256,
            digest.size
        );
        let upload = upload.trim_start_matches('/').to_string();
        let mut requests = Vec::new();
        let mut offset = 0;
        for chunk in data.chunks(CHUNK) {
            requests.push(bs::WriteRequest {
                resource_name: if offset == 0 {
                    upload.clone()
                } else {
                    String::new()
                },
                write_offset: offset as i64,
                finish_write: offset + chunk.len() == data.len(),
                data: chunk.to_vec(),
            });
            offset += chunk.len();
        }
        let response = self
            .runtime
            .block_on(client.write(tokio_stream::iter(requests)))
            .map_err(|s| self.status(s))?;
        let committed = response.into_inner().committed_size;
        if committed != data.len() as i64 {
            return Err(Error::Call(format!(
                "storing {digest}: the server committed {committed} bytes"
            )));
        }
        Ok(())
    }

    /// The blob `digest`, checked against it.
    pub fn download(&self, digest: &BlobDigest, what: &str) -> Result<Vec<u8>> {
        let mut all = self.download_all(std::slice::from_ref(digest), what)?;
        Ok(all.pop().expect("one asked, one returned"))
    }

    /// The blobs `digests`, in their order, each checked: the small ones
    /// in as few batch calls as fit, the large ones streamed.
    fn download_all_once(&self, digests: &[BlobDigest], what: &str) -> Result<Vec<Vec<u8>>> {
        let mut out: Vec<Option<Vec<u8>>> = vec![None; digests.len()];
        let mut batch: Vec<usize> = Vec::new();
        let mut batch_size = 0;
        for (i, d) in digests.iter().enumerate() {
            if d.size as usize > BATCH_LIMIT {
                out[i] = Some(self.read_stream(d, what)?);
                continue;
            }
            if batch_size + d.size as usize > BATCH_LIMIT && !batch.is_empty() {
                self.read_batch(digests, &std::mem::take(&mut batch), &mut out, what)?;
                batch_size = 0;
            }
            batch_size += d.size as usize;
            batch.push(i);
        }
        self.read_batch(digests, &batch, &mut out, what)?;
        digests
            .iter()
            .zip(out)
            .map(|(digest, data)| {
                let data = data.ok_or_else(|| Error::Missing(format!("{what} ({digest})")))?;
                let actual = BlobDigest::of(&data);
                if &actual != digest {
                    return Err(Error::Corrupt {
                        what: what.to_string(),
                        expected: digest.to_string(),
                        actual: actual.to_string(),
                    });
                }
                Ok(data)
            })
            .collect()
    }

    /// Reads `digests[i]` for each `i` of `wanted` in one call, into `out`.
    fn read_batch(
        &self,
        digests: &[BlobDigest],
        wanted: &[usize],
        out: &mut [Option<Vec<u8>>],
        what: &str,
    ) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        let mut cas = re::content_addressable_storage_client::ContentAddressableStorageClient::new(
            self.channel.clone(),
        )
        .max_decoding_message_size(2 * BATCH_LIMIT + (1 << 20));
        let request = re::BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: wanted.iter().map(|&i| digests[i].proto()).collect(),
            ..Default::default()
        };
        let response = self
            .runtime
            .block_on(cas.batch_read_blobs(request))
            .map_err(|s| self.status(s))?;
        for r in response.into_inner().responses {
            let Some(digest) = r
                .digest
                .as_ref()
                .and_then(|d| BlobDigest::from_proto(d).ok())
            else {
                continue;
            };
            match r.status {
                Some(s) if s.code == tonic::Code::NotFound as i32 => {
                    return Err(Error::Missing(format!("{what} ({digest})")))
                }
                Some(s) if s.code != 0 => {
                    return Err(Error::Call(format!(
                        "reading {what}: {} (code {})",
                        s.message, s.code
                    )))
                }
                _ => {}
            }
            for &i in wanted {
                if digests[i] == digest && out[i].is_none() {
                    out[i] = Some(r.data.clone());
                }
            }
        }
        Ok(())
    }

    fn read_stream(&self, digest: &BlobDigest, what: &str) -> Result<Vec<u8>> {
        let mut client = bs::byte_stream_client::ByteStreamClient::new(self.channel.clone());
        let name = format!("{}/blobs/{}/{}", self.instance, digest.sha256, digest.size);
        let request = bs::ReadRequest {
            resource_name: name.trim_start_matches('/').to_string(),
            read_offset: 0,
            read_limit: 0,
        };
        self.runtime.block_on(async {
            let mut stream = client
                .read(request)
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::NotFound => Error::Missing(format!("{what} ({digest})")),
                    _ => self.status(s),
                })?
                .into_inner();
            let mut data = Vec::with_capacity(digest.size as usize);
            while let Some(chunk) = stream.message().await.map_err(|s| self.status(s))? {
                data.extend_from_slice(&chunk.data);
                if data.len() as u64 > digest.size {
                    break;
                }
            }
            Ok(data)
        })
    }
}

/// A fresh upload name (REAPI asks for a UUID; any unique string works).
fn upload_id(digest: &BlobDigest) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{digest} {nanos} {}", std::process::id());
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_key_is_one_action_digest() {
        let (a, action, command) = node_action("build", &"a".repeat(64));
        let (b, ..) = node_action("build", &"a".repeat(64));
        let (c, ..) = node_action("build", &"b".repeat(64));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, BlobDigest::of(&action));
        let decoded = re::Action::decode(action.as_slice()).unwrap();
        assert_eq!(
            decoded.command_digest.unwrap().hash,
            BlobDigest::of(&command).sha256
        );
    }

    #[test]
    fn a_digest_as_text_is_lowercase_hex_and_a_size_and_nothing_else() {
        let good = format!("{}/12", "a".repeat(64));
        assert_eq!(
            BlobDigest::try_from(good.clone()).unwrap().to_string(),
            good
        );
        let bad = [
            "../../etc/passwd/1".to_string(),
            format!("{}/x", "a".repeat(64)),
            format!("{}/1", "A".repeat(64)),
            format!("{}/-1", "a".repeat(64)),
            "abc/1".to_string(),
        ];
        for text in bad {
            assert!(BlobDigest::try_from(text.clone()).is_err(), "{text}");
            let json = serde_json::to_string(&text).unwrap();
            assert!(serde_json::from_str::<BlobDigest>(&json).is_err(), "{text}");
        }
    }

    #[test]
    fn only_grpc_addresses_are_taken() {
        for bad in ["http://x:1", "grpc://", "grpc://x/y", "x:1"] {
            assert!(
                matches!(Remote::connect(bad, ""), Err(Error::BadUrl(_))),
                "{bad}"
            );
        }
        // Nothing listens on port 1.
        assert!(matches!(
            Remote::connect("grpc://127.0.0.1:1", ""),
            Err(Error::Unreachable { .. })
        ));
    }
}
