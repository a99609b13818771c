//! The Remote Workers API (`google.devtools.remoteworkers.v1test2`), the
//! protocol by which BuildGrid hands actions to bots: a bot keeps one
//! session with the server, and each `UpdateBotSession` call tells the
//! server the state of its leases and receives new ones. The messages
//! are written out here (no crate ships them), with the field numbers of
//! the protocol's `bots.proto` and `worker.proto`.

use crate::{Error, Remote, Result};
use bazel_remote_apis::google::protobuf::{Any, Timestamp};
use bazel_remote_apis::google::rpc::Status;

/// `BotStatus.OK`: the bot takes leases.
pub const BOT_OK: i32 = 1;
/// `BotStatus.BOT_TERMINATING`: the bot is going away.
pub const BOT_TERMINATING: i32 = 4;

/// The states of a lease.
pub const LEASE_PENDING: i32 = 1;
pub const LEASE_ACTIVE: i32 = 2;
pub const LEASE_COMPLETED: i32 = 4;
pub const LEASE_CANCELLED: i32 = 5;

#[derive(Clone, PartialEq, prost::Message)]
pub struct BotSession {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub bot_id: String,
    #[prost(enumeration = "i32", tag = "3")]
    pub status: i32,
    #[prost(message, optional, tag = "4")]
    pub worker: Option<Worker>,
    #[prost(message, repeated, tag = "5")]
    pub leases: Vec<Lease>,
    #[prost(message, optional, tag = "6")]
    pub expire_time: Option<Timestamp>,
    #[prost(string, tag = "7")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    #[prost(string, tag = "7")]
    pub id: String,
    /// What to run: an `Action`, or the `Digest` of one.
    #[prost(message, optional, tag = "8")]
    pub payload: Option<Any>,
    /// What came of it: an `ActionResult`.
    #[prost(message, optional, tag = "9")]
    pub result: Option<Any>,
    #[prost(enumeration = "i32", tag = "2")]
    pub state: i32,
    #[prost(message, optional, tag = "3")]
    pub status: Option<Status>,
    #[prost(message, optional, tag = "4")]
    pub requirements: Option<Worker>,
    #[prost(message, optional, tag = "5")]
    pub expire_time: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Worker {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<Device>,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    #[prost(string, tag = "1")]
    pub handle: String,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Property {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CreateBotSessionRequest {
    #[prost(string, tag = "1")]
    parent: String,
    #[prost(message, optional, tag = "2")]
    bot_session: Option<BotSession>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FieldMask {
    #[prost(string, repeated, tag = "1")]
    paths: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct UpdateBotSessionRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    bot_session: Option<BotSession>,
    #[prost(message, optional, tag = "3")]
    update_mask: Option<FieldMask>,
}

const SERVICE: &str = "google.devtools.remoteworkers.v1test2.Bots";

/// The deadline of a bot's call.
const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(10);

impl Remote {
    async fn bots_call<Q, A>(&self, method: &'static str, request: Q) -> Result<A>
    where
        Q: prost::Message + Send + Sync + 'static,
        A: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| Error::Unreachable {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        let path = format!("/{SERVICE}/{method}");
        let path = tonic::codegen::http::uri::PathAndQuery::try_from(path)
            .map_err(|e| Error::Call(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Q, A>::default();
        // BuildGrid holds a call open while it has no work for the bot,
        // for most of the call's deadline: a short one keeps the bot's
        // answers (and its session) fresh.
        let mut request = tonic::Request::new(request);
        request.set_timeout(LONG_POLL);
        grpc.unary(request, path, codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.status(s))
    }

    /// Opens a bot session for `session.bot_id` on this instance.
    pub fn create_bot_session(&self, session: BotSession) -> Result<BotSession> {
        let request = CreateBotSessionRequest {
            parent: self.instance.clone(),
            bot_session: Some(session),
        };
        self.runtime
            .block_on(self.bots_call("CreateBotSession", request))
    }

    /// Tells the server the session's state (its leases' states and
    /// results) and gets it back with any new lease.
    pub fn update_bot_session(&self, session: BotSession) -> Result<BotSession> {
        let request = UpdateBotSessionRequest {
            name: session.name.clone(),
            bot_session: Some(session),
            update_mask: None,
        };
        self.runtime
            .block_on(self.bots_call("UpdateBotSession", request))
    }
}
