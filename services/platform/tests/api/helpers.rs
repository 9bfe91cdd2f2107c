//! A deliberately slow gRPC service for shutdown, deadline and tracing tests.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use mirai_platform::app::ServiceApp;
use mirai_platform::config::ServiceConfig;
use mirai_platform::testing::TestDatabase;
use tonic::server::{NamedService, UnaryService};
use tonic_prost::ProstCodec;

pub const SLEEP_PATH: &str = "/test.Slow/Sleep";

/// `test.Slow/Sleep`: waits `delay`, then answers with the deadline it saw (ms left), or 0.
#[derive(Clone)]
pub struct Slow {
    pub delay: Duration,
}

impl NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

struct Sleep(Duration);

impl UnaryService<()> for Sleep {
    type Response = u64;
    type Future = BoxFuture<'static, Result<tonic::Response<u64>, tonic::Status>>;
    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        let delay = self.0;
        Box::pin(async move {
            let left =
                mirai_platform::grpc::deadline::remaining().map_or(0, |d| d.as_millis() as u64);
            tracing::info!(message = "Sleeping.", delay_ms = delay.as_millis() as u64);
            tokio::time::sleep(delay).await;
            Ok(tonic::Response::new(left))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Slow {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let delay = self.delay;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<u64, ()>::default());
            Ok(grpc.unary(Sleep(delay), request).await)
        })
    }
}

/// Calls `test.Slow/Sleep` with optional metadata; returns the deadline the server saw (ms).
pub async fn call_sleep(
    addr: std::net::SocketAddr,
    timeout: Option<Duration>,
    metadata: &[(&'static str, &str)],
) -> Result<u64, tonic::Status> {
    call_with(addr, "Sleep", timeout, metadata).await
}

/// Calls `test.Slow/<method>` (every method of `test.Slow` is the same sleeping handler).
pub async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    timeout: Option<Duration>,
) -> Result<u64, tonic::Status> {
    call_with(addr, method, timeout, &[]).await
}

async fn call_with(
    addr: std::net::SocketAddr,
    method: &str,
    timeout: Option<Duration>,
    metadata: &[(&'static str, &str)],
) -> Result<u64, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(());
    mirai_platform::testing::sign_as(&mut request, None);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    let path = http::uri::PathAndQuery::try_from(format!("/test.Slow/{method}")).unwrap();
    let response = client
        .unary(request, path, ProstCodec::<(), u64>::default())
        .await?;
    Ok(response.into_inner())
}

/// A prepared service app with the slow service added, on a fresh database.
pub async fn slow_app(delay: Duration) -> (ServiceApp, TestDatabase) {
    slow_app_with(delay, |_| {}).await
}

/// [`slow_app`] with the test config adjusted by `configure` first.
pub async fn slow_app_with(
    delay: Duration,
    configure: impl FnOnce(&mut ServiceConfig),
) -> (ServiceApp, TestDatabase) {
    let db = TestDatabase::create("platform").await;
    let mut config = ServiceConfig::for_tests("mirai-platform-test", db.url());
    configure(&mut config);
    let mut app = ServiceApp::prepare(&config, &sqlx::migrate::Migrator::DEFAULT)
        .await
        .expect("prepare");
    app.server.add_service(Slow { delay });
    (app, db)
}
