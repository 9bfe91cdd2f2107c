//! The events the service consumes: the participants' confirmations of the deletion saga
//! (`crate::deletion`). What the service publishes goes out through the outbox in the
//! transactions that change an account, as `crate::SERVICE`.

use mirai_platform::app::ServiceApp;
use mirai_platform::events::topology::topics;
use mirai_proto::events::v1 as ev;

use crate::deletion::on_purged;

/// Registers the confirmation handler on every participant topic this service reads.
pub fn consume(app: &mut ServiceApp) {
    for topic in [
        topics::STOCK,
        topics::PREDICTION,
        topics::ANALYTICS,
        topics::NOTIFICATION,
    ] {
        let consumer = app
            .consumer(topic)
            .on::<ev::UserDataPurged, _>("deletion-saga.purged", on_purged);
        app.consume(consumer);
    }
}
