//! What every handler, RPC and worker of the service shares.

use std::sync::Arc;

use futures::future::BoxFuture;
use mirai_platform::events::consumer::Handler;
use mirai_platform::events::{Envelope, Event};
use sqlx::{PgConnection, PgPool};

use crate::config::Config;
use crate::deliver::email::Email;
use crate::evaluate::Index;
use crate::notify::FanOut;
use crate::stream::Hub;

/// Shared state.
pub struct Context {
    pub pool: PgPool,
    pub config: Config,
    pub index: Index,
    pub fanout: FanOut,
    pub hub: Hub,
    /// The SMTP sender (`None` without SMTP): alert email and verification links.
    pub email: Option<Email>,
}

pub type Shared = Arc<Context>;

/// A handler that needs the shared context: `fn(&Context, tx, envelope, event)`.
pub type ContextFn<E> = for<'a> fn(
    &'a Context,
    &'a mut PgConnection,
    &'a Envelope,
    E,
) -> BoxFuture<'a, anyhow::Result<()>>;

/// Binds a context handler to the context, for `Consumer::on`.
pub struct With<E> {
    context: Shared,
    handler: ContextFn<E>,
}

pub fn with<E: Event>(context: &Shared, handler: ContextFn<E>) -> With<E> {
    With {
        context: context.clone(),
        handler,
    }
}

impl<E: Event> Handler<E> for With<E> {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        event: E,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        (self.handler)(&self.context, tx, envelope, event)
    }
}
