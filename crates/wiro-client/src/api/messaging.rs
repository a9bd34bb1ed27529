use crate::models::{
    Ack, DataResponse, DeleteSessionRequest, History, HistoryRequest, Message, MessageRef,
    SendMessageRequest, SendMessageResponse, Sessions, SessionsRequest,
};
use crate::{Client, Endpoint, Result};

impl Client {
    /// `UserAgent/Message/Send`. Creates a message: never retried here.
    ///
    /// # Errors
    /// [`crate::WiroError::AgentNotRunning`] and friends, or an unknown outcome.
    pub async fn send_message(&self, request: &SendMessageRequest) -> Result<SendMessageResponse> {
        self.call(Endpoint::MessageSend, request).await
    }

    /// `UserAgent/Message/Detail` by guid or agent token.
    ///
    /// # Errors
    /// [`crate::WiroError::MessageNotFound`].
    pub async fn message_detail(&self, message: &MessageRef) -> Result<Message> {
        let response: DataResponse<Message> = self.call(Endpoint::MessageDetail, message).await?;
        Ok(response.data)
    }

    /// `UserAgent/Message/History`: newest first; pass the oldest guid as `before` for the next
    /// page.
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn message_history(&self, request: &HistoryRequest) -> Result<History> {
        let response: DataResponse<History> = self.call(Endpoint::MessageHistory, request).await?;
        Ok(response.data)
    }

    /// `UserAgent/Message/Sessions`.
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn message_sessions(&self, useragentguid: &str) -> Result<Sessions> {
        let request = SessionsRequest {
            useragentguid: useragentguid.to_owned(),
        };
        let response: DataResponse<Sessions> =
            self.call(Endpoint::MessageSessions, &request).await?;
        Ok(response.data)
    }

    /// `UserAgent/Message/Cancel`: only queued, starting or streaming messages can be cancelled.
    ///
    /// # Errors
    /// [`crate::WiroError::MessageNotCancellable`] or [`crate::WiroError::MessageNotFound`].
    pub async fn cancel_message(&self, message: &MessageRef) -> Result<()> {
        let _: Ack = self.call(Endpoint::MessageCancel, message).await?;
        Ok(())
    }

    /// `UserAgent/Message/DeleteSession`: deletes the caller's messages of a session.
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn delete_session(&self, useragentguid: &str, sessionkey: &str) -> Result<()> {
        let request = DeleteSessionRequest {
            useragentguid: useragentguid.to_owned(),
            sessionkey: sessionkey.to_owned(),
        };
        let _: Ack = self.call(Endpoint::MessageDeleteSession, &request).await?;
        Ok(())
    }
}
