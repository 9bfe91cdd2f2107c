//! The webhook receiver the users' endpoints point at: records each delivery's `webhook-id`
//! (stable across retries, so a receiver dedupes on it, as Standard Webhooks documents) and how
//! often each id arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

#[derive(Clone, Default)]
pub struct Receiver {
    seen: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Receiver {
    /// Listens on 127.0.0.1:`port`; returns the receiver and the endpoints' base URL.
    pub async fn start(port: u16) -> Result<(Receiver, String)> {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/hooks/{user}", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((receiver, url))
    }

    /// Distinct delivery ids received.
    pub fn ids(&self) -> BTreeSet<String> {
        self.seen.lock().expect("seen").keys().cloned().collect()
    }

    /// Arrivals beyond the first of one id (retries the receiver dedupes).
    pub fn redeliveries(&self) -> u64 {
        self.seen
            .lock()
            .expect("seen")
            .values()
            .map(|n| u64::from(n - 1))
            .sum()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap) -> StatusCode {
    let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    *receiver
        .seen
        .lock()
        .expect("seen")
        .entry(id.to_owned())
        .or_default() += 1;
    StatusCode::NO_CONTENT
}
