//! The dispatcher's DNS resolver: a receiver's name is resolved when a connection is made and
//! its addresses are checked there (`domain::webhooks::check_addresses`), so the addresses
//! checked are the ones connected to. A check before the request with its own lookup leaves a
//! window: a name that resolves to a public address for the check and to a private one a
//! moment later (DNS rebinding) would reach inside.

use std::net::SocketAddr;

use domain::webhooks::check_addresses;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves with the system's resolver and refuses a name with any address that is not public,
/// unless `allow_private` (`webhooks.allow_private_targets`).
#[derive(Clone, Copy, Debug)]
pub struct PublicOnly {
    /// Every address is allowed (a private network of receivers, tests).
    pub allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on the addresses it is given.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<_> = addrs.iter().map(SocketAddr::ip).collect();
            check_addresses(&ips, allow_private)
                .map_err(|e| format!("webhook target {host}: {e}"))?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A receiver on loopback that counts the connections it accepts.
    async fn receiver() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        (port, accepted)
    }

    fn client(allow_private: bool) -> reqwest::Client {
        reqwest::Client::builder()
            .dns_resolver(PublicOnly { allow_private })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_the_connection_is_made() {
        let (port, accepted) = receiver().await;
        let refused = client(false)
            .post(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .expect_err("loopback is not a public address");
        let text = crate::webhooks::error_chain(&refused);
        assert!(
            text.contains("webhook target localhost") && text.contains("127.0.0.1"),
            "{text}"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "nothing reached the receiver"
        );
    }

    #[tokio::test]
    async fn with_private_targets_allowed_the_same_name_connects() {
        let (port, accepted) = receiver().await;
        let answer = client(true)
            .post(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
