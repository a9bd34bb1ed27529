//! `UserAgent/Message/*`: send, read, history, sessions, cancel, delete session.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::UnixTime;
use super::lenient::{LenientInt, opt_time};

/// A message's lifecycle state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Waiting for the agent worker.
    Queue,
    /// Accepted; the model call is being prepared.
    Start,
    /// Streaming.
    Output,
    /// Done; `response` holds the answer.
    End,
    /// Failed.
    Error,
    /// Cancelled.
    Cancel,
    /// A status this client does not know, kept verbatim.
    Other(String),
}

impl MessageStatus {
    /// The wire value (`agent_queue`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            MessageStatus::Queue => "agent_queue",
            MessageStatus::Start => "agent_start",
            MessageStatus::Output => "agent_output",
            MessageStatus::End => "agent_end",
            MessageStatus::Error => "agent_error",
            MessageStatus::Cancel => "agent_cancel",
            MessageStatus::Other(s) => s,
        }
    }

    /// From the wire value.
    pub fn parse(s: &str) -> Self {
        match s {
            "agent_queue" => MessageStatus::Queue,
            "agent_start" => MessageStatus::Start,
            "agent_output" => MessageStatus::Output,
            "agent_end" => MessageStatus::End,
            "agent_error" => MessageStatus::Error,
            "agent_cancel" => MessageStatus::Cancel,
            other => MessageStatus::Other(other.to_owned()),
        }
    }

    /// End, Error and Cancel are final.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            MessageStatus::End | MessageStatus::Error | MessageStatus::Cancel
        )
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MessageStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MessageStatus::parse(&String::deserialize(d)?))
    }
}

/// Body of `Message/Send` (JSON form).
#[derive(Clone, Debug, Serialize)]
pub struct SendMessageRequest {
    /// Instance guid.
    pub useragentguid: String,
    /// The user's text.
    pub message: String,
    /// Conversation key (default `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessionkey: Option<String>,
    /// Webhook called on completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callbackurl: Option<String>,
}

/// Answer of `Message/Send`.
#[derive(Clone, Debug, Deserialize)]
pub struct SendMessageResponse {
    /// The message's guid.
    pub messageguid: String,
    /// Token for polling and the WebSocket.
    pub agenttoken: String,
    /// Always `agent_queue` on success.
    pub status: MessageStatus,
}

/// Body of `Message/Detail` and `Message/Cancel`: one of the two identifiers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MessageRef {
    /// Message guid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messageguid: Option<String>,
    /// Agent token from Send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agenttoken: Option<String>,
}

impl MessageRef {
    /// Refers to a message by guid.
    pub fn guid(guid: &str) -> Self {
        Self {
            messageguid: Some(guid.to_owned()),
            agenttoken: None,
        }
    }
}

/// `{data: ...}` wrapper used by Detail, History and Sessions.
#[derive(Clone, Debug, Deserialize)]
pub struct DataResponse<T> {
    /// The payload.
    pub data: T,
}

/// A message row (Detail and History).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Message guid.
    pub guid: String,
    /// Sender account uuid.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Session key.
    #[serde(default)]
    pub sessionkey: Option<String>,
    /// What the user sent.
    #[serde(default)]
    pub content: String,
    /// The answer (empty until `agent_end`).
    #[serde(default)]
    pub response: String,
    /// Accumulated output or error text.
    #[serde(default)]
    pub debugoutput: String,
    /// Lifecycle state.
    pub status: MessageStatus,
    /// Generation metadata (`{}` until done).
    #[serde(default)]
    pub metadata: Value,
    /// Attachments (`[]` for text).
    #[serde(default)]
    pub attachments: Vec<Value>,
    /// 0 normally.
    #[serde(default)]
    pub deletestatus: LenientInt,
    /// Creation time (a numeric string in the docs).
    #[serde(default, deserialize_with = "opt_time")]
    pub createdat: Option<UnixTime>,
    /// When processing started.
    #[serde(default, deserialize_with = "opt_time")]
    pub startedat: Option<UnixTime>,
    /// When it ended (may stay empty on cancel).
    #[serde(default, deserialize_with = "opt_time")]
    pub endedat: Option<UnixTime>,
}

/// Body of `Message/History`.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryRequest {
    /// Instance guid.
    pub useragentguid: String,
    /// Session (default `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessionkey: Option<String>,
    /// Page size (default 50, max 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only messages older than this guid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// `data` of `Message/History`: newest first.
#[derive(Clone, Debug, Deserialize)]
pub struct History {
    /// The page, newest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Rows in this page.
    #[serde(default)]
    pub count: LenientInt,
    /// More rows are older than the last one.
    #[serde(default)]
    pub hasmore: bool,
}

/// Body of `Message/Sessions`.
#[derive(Clone, Debug, Serialize)]
pub struct SessionsRequest {
    /// Instance guid.
    pub useragentguid: String,
}

/// `data` of `Message/Sessions`.
#[derive(Clone, Debug, Deserialize)]
pub struct Sessions {
    /// One row per session.
    #[serde(default)]
    pub sessions: Vec<SessionSummary>,
}

/// One session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session key.
    pub sessionkey: String,
    /// Number of messages (a string in the docs).
    #[serde(default)]
    pub messagecount: LenientInt,
    /// Last activity (a string in the docs).
    #[serde(default, deserialize_with = "opt_time")]
    pub updatedat: Option<UnixTime>,
    /// The last user message.
    #[serde(default)]
    pub lastmessage: Option<String>,
}

/// Body of `Message/DeleteSession`.
#[derive(Clone, Debug, Serialize)]
pub struct DeleteSessionRequest {
    /// Instance guid.
    pub useragentguid: String,
    /// Session to delete.
    pub sessionkey: String,
}
