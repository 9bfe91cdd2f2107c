//! The contracts of MiraiKakaku: gRPC services and event payloads, generated once from the
//! `.proto` tree in this crate (`mirai/<area>/v1/*.proto`).
//!
//! | module | proto package | what |
//! |---|---|---|
//! | [`user::v1`] | `mirai.user.v1` | accounts, tokens, roles, API keys, audit, deletion saga |
//! | [`stock::v1`] | `mirai.stock.v1` | symbols, bars, quotes, import, quality, tracking, streams |
//! | [`prediction::v1`] | `mirai.prediction.v1` | forecasts, model registry, traffic, scoreboards |
//! | [`analytics::v1`] | `mirai.analytics.v1` | indicators, statistics, trends, reports |
//! | [`notification::v1`] | `mirai.notification.v1` | alerts, notifications, webhooks, preferences |
//! | [`events::v1`] | `mirai.events.v1` | every event payload (CloudEvents envelope in attributes) |
//!
//! Versioning: a breaking change gets a new package (`v2`) beside the old one; a published
//! package is only ever extended compatibly (new fields, new RPCs), never edited in place.

macro_rules! package {
    ($area:ident, $package:literal) => {
        pub mod $area {
            pub mod v1 {
                #![allow(clippy::all, clippy::pedantic, missing_docs)]
                tonic::include_proto!($package);
            }
        }
    };
}

package!(user, "mirai.user.v1");
package!(stock, "mirai.stock.v1");
package!(prediction, "mirai.prediction.v1");
package!(analytics, "mirai.analytics.v1");
package!(notification, "mirai.notification.v1");
package!(events, "mirai.events.v1");

/// Encoded `FileDescriptorSet` of every package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mirai_descriptor");
