//! The events the service consumes: which handler each event type of each topic reaches.
//! What the handlers do lives with them (`evaluate`, `saga`, `system`, `account_mail`,
//! `symbols`); what the service publishes goes out through the outbox in the same
//! transactions, as `crate::SERVICE`.

use mirai_platform::app::ServiceApp;
use mirai_platform::events::consumer::Batching;
use mirai_platform::events::deletion;
use mirai_platform::events::topology::topics;
use mirai_proto::events::v1 as ev;

use crate::SERVICE;
use crate::context::{Shared, with};
use crate::{account_mail, evaluate, saga, symbols, system};

/// Registers every consumer of the service.
pub fn consume(app: &mut ServiceApp, ctx: &Shared) {
    // The market events (a price update per symbol every few seconds, 1,000/s and more in all)
    // are handled in batches: one transaction, one commit and one wake-up of the outbox relay and
    // of the live streams for up to 64 of them instead of one each. Their handlers only touch the
    // rows of their own symbol (the ordering key, so one lane), the notifications they store and
    // the outbox.
    let stock = symbols::register(
        app.consumer(topics::STOCK).batched(Batching::default()),
        ctx,
    )
    .on::<ev::PriceUpdated, _>("evaluate.price-updated", with(ctx, evaluate::on_price))
    .on::<ev::BarClosed, _>("evaluate.bar-closed", with(ctx, evaluate::on_bar))
    .on::<ev::SymbolTrackingConfirmed, _>("saga.tracking-confirmed", with(ctx, saga::on_confirmed))
    .on::<ev::SymbolTrackingRejected, _>("saga.tracking-rejected", with(ctx, saga::on_rejected))
    .on::<ev::DataQualityIssue, _>("system.data-quality", with(ctx, system::on_quality_issue));
    app.consume(stock);
    let prediction = app
        .consumer(topics::PREDICTION)
        .on::<ev::PredictionGenerated, _>(
            "evaluate.prediction-generated",
            with(ctx, evaluate::on_prediction),
        )
        .on::<ev::ModelDegraded, _>(
            "system.model-degraded",
            with(ctx, system::on_model_degraded),
        )
        .on::<ev::ModelPromoted, _>(
            "system.model-promoted",
            with(ctx, system::on_model_promoted),
        );
    app.consume(prediction);
    let users = app
        .consumer(topics::USER)
        .on::<ev::UserRegistered, _>("users.registered", with(ctx, system::on_registered))
        .on::<ev::UserRoleChanged, _>("users.role-changed", with(ctx, system::on_role_changed))
        .on::<ev::UserAccountLocked, _>(
            "users.account-locked",
            with(ctx, account_mail::on_account_locked),
        )
        .on::<ev::UserRegistrationAttempted, _>(
            "users.registration-attempted",
            with(ctx, account_mail::on_registration_attempted),
        );
    let users = deletion::participate(users, SERVICE, topics::NOTIFICATION, system::purge_fn());
    app.consume(users);
    let analytics = app
        .consumer(topics::ANALYTICS)
        .on::<ev::ReportCompleted, _>("system.report-completed", with(ctx, system::on_report));
    app.consume(analytics);
}
