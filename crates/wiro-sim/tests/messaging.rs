//! Message/Send, Detail, History, Sessions, Cancel, DeleteSession and webhooks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use wiro_client::models::{HistoryRequest, Message, MessageRef, MessageStatus, SendMessageRequest};
use wiro_client::{Client, WiroError};

fn send(guid: &str, text: &str, session: Option<&str>) -> SendMessageRequest {
    SendMessageRequest {
        useragentguid: guid.to_owned(),
        message: text.to_owned(),
        sessionkey: session.map(str::to_owned),
        callbackurl: None,
    }
}

async fn wait_terminal(c: &Client, r: &MessageRef) -> Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = c.message_detail(r).await.unwrap();
        if m.status.is_terminal() {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message stuck in {}",
            m.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_message_is_queued_then_answered_and_spends_the_message_cost() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    let sent = c
        .send_message(&send(&agent.guid, "hello", None))
        .await
        .unwrap();
    assert_eq!(sent.status, MessageStatus::Queue);
    assert_eq!(sent.agenttoken.len(), 30);
    let by_token = MessageRef {
        messageguid: None,
        agenttoken: Some(sent.agenttoken.clone()),
    };
    let done = wait_terminal(&c, &by_token).await;
    assert_eq!(done.status, MessageStatus::End);
    assert!(done.response.contains("hello"), "{}", done.response);
    assert_eq!(done.sessionkey.as_deref(), Some("default"));
    assert_eq!(done.metadata["type"], "progressGenerate");
    assert!(done.startedat.is_some() && done.endedat.is_some());
    assert_eq!(
        c.detail(&agent.guid).await.unwrap().monthly_credits(),
        Some(990)
    );
}

#[tokio::test]
async fn send_is_refused_when_the_agent_is_not_running_or_not_ours() {
    let server = sim().await;
    let c = client(&server);
    let agent = deploy_seed(&c, "starter").await;
    let err = c
        .send_message(&send(&agent.guid, "hi", None))
        .await
        .unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AgentNotRunning { status: 6 }));
    let err = c.send_message(&send("nope", "hi", None)).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AgentNotFoundOrAccessDenied));
    let err = c
        .message_detail(&MessageRef::guid("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::MessageNotFound));
}

#[tokio::test]
async fn with_both_pools_empty_the_agent_answers_the_credit_limit_marker() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    server.sim().consume_credits(&agent.guid, 1000).unwrap();
    let sent = c
        .send_message(&send(&agent.guid, "still there?", None))
        .await
        .unwrap();
    let done = wait_terminal(&c, &MessageRef::guid(&sent.messageguid)).await;
    assert_eq!(done.status, MessageStatus::End);
    assert_eq!(done.response, "[SYSTEM_CREDIT_LIMIT_REACHED]");
}

#[tokio::test]
async fn history_is_newest_first_with_a_before_cursor_and_sessions_are_listed() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    let mut guids = Vec::new();
    for i in 0..5 {
        guids.push(
            c.send_message(&send(&agent.guid, &format!("m{i}"), Some("s1")))
                .await
                .unwrap()
                .messageguid,
        );
    }
    c.send_message(&send(&agent.guid, "other", Some("s2")))
        .await
        .unwrap();
    let page = c
        .message_history(&HistoryRequest {
            useragentguid: agent.guid.clone(),
            sessionkey: Some("s1".into()),
            limit: Some(2),
            before: None,
        })
        .await
        .unwrap();
    let contents: Vec<_> = page.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["m4", "m3"]);
    assert!(page.hasmore);
    let next = c
        .message_history(&HistoryRequest {
            useragentguid: agent.guid.clone(),
            sessionkey: Some("s1".into()),
            limit: Some(10),
            before: Some(page.messages[1].guid.clone()),
        })
        .await
        .unwrap();
    let contents: Vec<_> = next.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["m2", "m1", "m0"]);
    assert!(!next.hasmore);

    let sessions = c.message_sessions(&agent.guid).await.unwrap().sessions;
    let s1 = sessions.iter().find(|s| s.sessionkey == "s1").unwrap();
    assert_eq!(s1.messagecount.0, 5);
    assert_eq!(s1.lastmessage.as_deref(), Some("m4"));

    c.delete_session(&agent.guid, "s1").await.unwrap();
    let sessions = c.message_sessions(&agent.guid).await.unwrap().sessions;
    assert_eq!(sessions.len(), 1);
    let err = c
        .message_detail(&MessageRef::guid(&guids[0]))
        .await
        .unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::MessageNotFound));
}

#[tokio::test]
async fn only_unfinished_messages_can_be_cancelled() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    server.sim().freeze_clock(); // keep the message queued
    let sent = c
        .send_message(&send(&agent.guid, "cancel me", None))
        .await
        .unwrap();
    let r = MessageRef::guid(&sent.messageguid);
    c.cancel_message(&r).await.unwrap();
    let m = c.message_detail(&r).await.unwrap();
    assert_eq!(m.status, MessageStatus::Cancel);
    assert_eq!(m.response, "", "a queued cancel leaves the response empty");
    let err = c.cancel_message(&r).await.unwrap_err();
    assert_eq!(
        err.wiro(),
        Some(&WiroError::MessageNotCancellable {
            status: "agent_cancel".into()
        })
    );
    server.sim().resume_clock();
    let done = c
        .send_message(&send(&agent.guid, "answer me", None))
        .await
        .unwrap();
    let done = wait_terminal(&c, &MessageRef::guid(&done.messageguid)).await;
    let err = c
        .cancel_message(&MessageRef::guid(&done.guid))
        .await
        .unwrap_err();
    assert_eq!(
        err.wiro(),
        Some(&WiroError::MessageNotCancellable {
            status: "agent_end".into()
        })
    );
}

/// Receives webhooks; fails the first `failures` deliveries with HTTP 500.
async fn webhook_receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, seen) = (tx.clone(), seen.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (tx, seen) = (tx.clone(), seen.clone());
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
                            let status = if seen.fetch_add(1, Ordering::SeqCst) < failures {
                                500
                            } else {
                                200
                            };
                            let mut response = hyper::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn the_callback_url_gets_the_final_message_and_a_failed_delivery_is_retried() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    let (url, mut hooks) = webhook_receiver(1).await;
    let mut request = send(&agent.guid, "ping", None);
    request.callbackurl = Some(url);
    let sent = c.send_message(&request).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, second, "the retry carries the same body");
    assert_eq!(first["messageguid"], sent.messageguid.as_str());
    assert_eq!(first["status"], "agent_end");
    assert!(first["endedat"].is_number());
    assert!(first["response"].as_str().unwrap().contains("ping"));
}
