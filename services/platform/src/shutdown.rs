//! Graceful shutdown: signals, readiness first, a drain delay, then a bounded drain.
//!
//! The order matters in Kubernetes: readiness goes off first so the endpoint is removed, the
//! listener keeps accepting during the drain delay, then stops accepting while in-flight calls
//! finish, and the whole sequence is bounded by the grace period so the pod exits before SIGKILL.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;

/// Cancels `token` on SIGTERM or Ctrl-C (SIGINT).
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(message = "Cannot listen for SIGTERM.", %error);
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!(message = "Received SIGINT; shutting down."),
            _ = term => tracing::info!(message = "Received SIGTERM; shutting down."),
        }
        token.cancel();
    });
}

/// Resolves when the listener should stop accepting: after `shutdown` fires, readiness has been
/// turned off, and `drain_delay` has passed.
pub async fn stop_accepting(
    shutdown: CancellationToken,
    readiness: Readiness,
    drain_delay: Duration,
) {
    shutdown.cancelled().await;
    readiness.set_shutting_down();
    tracing::info!(
        message = "Readiness off; draining.",
        drain_delay_ms = drain_delay.as_millis() as u64
    );
    tokio::time::sleep(drain_delay).await;
}

/// Drives `server` to completion, but gives up `grace` after `shutdown` fired.
/// Returns `None` when the grace period ran out with work still in flight.
pub async fn bounded<F: Future>(
    server: F,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Option<F::Output> {
    tokio::pin!(server);
    tokio::select! {
        out = &mut server => return Some(out),
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(out) => Some(out),
        Err(_) => {
            tracing::warn!(
                message = "Grace period elapsed with calls still in flight; abandoning them.",
                grace_ms = grace.as_millis() as u64
            );
            None
        }
    }
}
