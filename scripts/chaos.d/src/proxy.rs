//! A loopback TCP proxy in front of PostgreSQL, one per service, that the harness can cut:
//! while cut, every proxied connection is closed and new ones are closed as soon as they are
//! accepted, so the service sees its database unreachable (and its leader lock session, if any,
//! dies with the connection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    cut: AtomicBool,
    /// Bumped on every cut: live connections watch it and close.
    generation: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(listen: &str, upstream: SocketAddr) -> Result<Arc<Proxy>> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("database proxy: binding {listen}"))?;
        let proxy = Arc::new(Proxy {
            cut: AtomicBool::new(false),
            generation: watch::channel(0).0,
        });
        let this = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if this.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = this.generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(proxy)
    }

    /// Closes every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server behind the proxy: bytes pass; a cut closes the live connection and
    /// refuses new ones; after `restore` connections pass again.
    #[tokio::test]
    async fn a_cut_closes_live_connections_and_refuses_new_ones_until_restored() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let proxy = Proxy::start(&listen, upstream).await.unwrap();

        let mut live = TcpStream::connect(&listen).await.unwrap();
        live.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        live.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        proxy.cut();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            live.read_to_end(&mut rest),
        )
        .await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the live connection is closed: {read:?}"
        );
        let mut refused = TcpStream::connect(&listen).await.unwrap();
        let n =
            tokio::time::timeout(std::time::Duration::from_secs(2), refused.read(&mut buf)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "a new connection is closed at once: {n:?}"
        );

        proxy.restore();
        let mut again = TcpStream::connect(&listen).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}
