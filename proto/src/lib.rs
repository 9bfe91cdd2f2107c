//! The contracts of MiraiKakaku: every gRPC service and every event payload, generated once
//! (by this crate's `build.rs`, with the vendored `protoc`) from the `.proto` tree in
//! `proto/mirai/<area>/v<N>/`. No other crate keeps a copy of a `.proto`.
//!
//! # Layout
//!
//! One Rust module per proto package; the leading `mirai.` is the crate itself:
//!
//! | module | proto package | contents |
//! |---|---|---|
//! | [`user::v1`] | `mirai.user.v1` | `UserService`: accounts, tokens, JWKS, roles, API keys, audit log, deletion saga |
//! | [`stock::v1`] | `mirai.stock.v1` | `StockDataService`: symbols, bars, quotes, import, quality, tracking, quote streams, replay |
//! | [`prediction::v1`] | `mirai.prediction.v1` | `PredictionService`: forecasts, model registry, traffic, scoreboards, history |
//! | [`analytics::v1`] | `mirai.analytics.v1` | `AnalyticsService`: indicators, statistics, trends, report jobs, read model |
//! | [`notification::v1`] | `mirai.notification.v1` | `NotificationService`: alerts, notifications, webhooks, push, preferences |
//! | [`events::v1`] | `mirai.events.v1` | one message per event type (the CloudEvents envelope travels as Pub/Sub attributes) |
//!
//! Each service module holds the messages plus, per service `FooService`, a client
//! (`foo_service_client::FooServiceClient`) and a server (`foo_service_server::FooService`
//! trait and `foo_service_server::FooServiceServer` wrapper). Well-known types map to
//! [`prost_types`] (`Timestamp`, `Duration`, `FieldMask`) and `google.protobuf.Empty` to `()`.
//! [`FILE_DESCRIPTOR_SET`] describes every package, for gRPC server reflection.
//!
//! # Versioning
//!
//! A published package is only ever extended compatibly: new fields with new numbers, new
//! messages, new RPCs, new enum values; a removed field's number and name are `reserved`. A
//! breaking change (renaming, renumbering, retyping, changing semantics) is never made in place:
//! it gets a new package (`mirai.stock.v2`, module `stock::v2`) beside the old one, and both are
//! served until every caller has moved. Events follow the same rule (a `.v2` `ce-type`).

macro_rules! package {
    ($(#[$doc:meta])* $area:ident :: $version:ident => $package:literal) => {
        $(#[$doc])*
        pub mod $area {
            #[doc = concat!("Generated from the `", $package, "` proto package.")]
            pub mod $version {
                // Generated code: its style is prost's and tonic's, not ours.
                #![allow(clippy::all, clippy::pedantic, clippy::nursery)]
                tonic::include_proto!($package);
            }
        }
    };
}

package! {
    /// Accounts, credentials, tokens, roles, API keys, audit log, account deletion.
    user::v1 => "mirai.user.v1"
}
package! {
    /// Symbols, bars, quotes, ingestion, data quality, tracking, streams, replay.
    stock::v1 => "mirai.stock.v1"
}
package! {
    /// Forecasts, the model registry, traffic, accuracy scoreboards, prediction history.
    prediction::v1 => "mirai.prediction.v1"
}
package! {
    /// Indicators, statistics, trends, reports, the analytics read model.
    analytics::v1 => "mirai.analytics.v1"
}
package! {
    /// Alerts, notifications, delivery channels, preferences, the notification read model.
    notification::v1 => "mirai.notification.v1"
}
package! {
    /// Payloads of every internal event; ce-type, publisher, ordering key and consumers are
    /// documented on each message.
    events::v1 => "mirai.events.v1"
}

/// The encoded `google.protobuf.FileDescriptorSet` of every `mirai.*` package (with their
/// imports), for gRPC server reflection, e.g.
/// `tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mirai_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn descriptor_set_holds_every_package() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let packages: Vec<&str> = set
            .file
            .iter()
            .filter_map(|f| f.package.as_deref())
            .collect();
        for package in [
            "mirai.user.v1",
            "mirai.stock.v1",
            "mirai.prediction.v1",
            "mirai.analytics.v1",
            "mirai.notification.v1",
            "mirai.events.v1",
        ] {
            assert!(packages.contains(&package), "{package} missing");
        }
    }

    #[test]
    fn every_service_is_described() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                let package = f.package.clone().unwrap_or_default();
                f.service
                    .iter()
                    .map(move |s| format!("{package}.{}", s.name()))
            })
            .collect();
        for service in [
            "mirai.user.v1.UserService",
            "mirai.stock.v1.StockDataService",
            "mirai.prediction.v1.PredictionService",
            "mirai.analytics.v1.AnalyticsService",
            "mirai.notification.v1.NotificationService",
        ] {
            assert!(services.iter().any(|s| s == service), "{service} missing");
        }
    }
}
