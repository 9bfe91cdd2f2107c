//! Typed events and their CloudEvents envelope (Pub/Sub binding: attributes + binary payload).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mirai_proto::events::v1 as ev;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

use super::topology::topics;

/// A payload of `mirai.events.v1` that knows its `ce-type`, topic and aggregate id.
/// Publishing or handling an event is always in terms of such a type, never a string.
pub trait Event: prost::Message + Default + Send + Sync + 'static {
    /// `ce-type`, e.g. `mirai.symbol.listed.v1`.
    const TYPE: &'static str;
    /// The topic its publisher writes to (see [`topics`]).
    const TOPIC: &'static str;
    /// The aggregate id: `ce-subject` and the Pub/Sub ordering key.
    fn subject(&self) -> String;
}

macro_rules! events {
    ($($message:ident => $type:literal, $topic:expr, |$e:ident| $subject:expr;)*) => {
        $(impl Event for ev::$message {
            const TYPE: &'static str = $type;
            const TOPIC: &'static str = $topic;
            fn subject(&self) -> String {
                let $e = self;
                $subject.to_string()
            }
        })*
    };
}

events! {
    UserRegistered => "mirai.user.registered.v1", topics::USER, |e| e.user_id;
    UserRoleChanged => "mirai.user.role.changed.v1", topics::USER, |e| e.user_id;
    UserAccountLocked => "mirai.user.account.locked.v1", topics::USER, |e| e.user_id;
    UserRegistrationAttempted => "mirai.user.registration.attempted.v1", topics::USER, |e| e.user_id;
    UserWatchlistChanged => "mirai.user.watchlist.changed.v1", topics::USER, |e| e.user_id;
    UserDeletionRequested => "mirai.user.deletion.requested.v1", topics::USER, |e| e.user_id;
    UserDeleted => "mirai.user.deleted.v1", topics::USER, |e| e.user_id;
    SymbolListed => "mirai.symbol.listed.v1", topics::STOCK, |e| e.symbol;
    SymbolUpdated => "mirai.symbol.updated.v1", topics::STOCK, |e| e.symbol;
    SymbolDelisted => "mirai.symbol.delisted.v1", topics::STOCK, |e| e.symbol;
    BarClosed => "mirai.stock.bar.closed.v1", topics::STOCK, |e| e.bar.as_ref().map(|b| b.symbol.as_str()).unwrap_or_default();
    PriceUpdated => "mirai.stock.price.updated.v1", topics::STOCK, |e| e.symbol;
    DataQualityIssue => "mirai.data.quality.issue.v1", topics::STOCK, |e| e.symbol;
    SymbolTrackingConfirmed => "mirai.symbol.tracking.confirmed.v1", topics::STOCK, |e| e.symbol;
    SymbolTrackingRejected => "mirai.symbol.tracking.rejected.v1", topics::STOCK, |e| e.symbol;
    AlertRequested => "mirai.alert.requested.v1", topics::NOTIFICATION, |e| e.symbol;
    SymbolTrackingReleased => "mirai.symbol.tracking.released.v1", topics::NOTIFICATION, |e| e.symbol;
    AlertActivated => "mirai.alert.activated.v1", topics::NOTIFICATION, |e| e.user_id;
    AlertRejected => "mirai.alert.rejected.v1", topics::NOTIFICATION, |e| e.user_id;
    AlertTriggered => "mirai.alert.triggered.v1", topics::NOTIFICATION, |e| e.user_id;
    PredictionGenerated => "mirai.prediction.generated.v1", topics::PREDICTION, |e| e.symbol;
    ModelPerformanceUpdated => "mirai.model.performance.updated.v1", topics::PREDICTION, |e| e.model_name;
    ModelDegraded => "mirai.model.degraded.v1", topics::PREDICTION, |e| e.model_name;
    ModelPromoted => "mirai.model.promoted.v1", topics::PREDICTION, |e| e.model_name;
    ReportCompleted => "mirai.report.completed.v1", topics::ANALYTICS, |e| e.user_id;
}

/// `user.data.purged` is published by every participant on its own topic.
impl Event for ev::UserDataPurged {
    const TYPE: &'static str = "mirai.user.data.purged.v1";
    // Participants publish it on their own topic; the outbox row records the real one.
    const TOPIC: &'static str = topics::USER;
    fn subject(&self) -> String {
        self.user_id.clone()
    }
}

/// Attribute names (CloudEvents Pub/Sub protocol binding, plus ours).
pub mod attr {
    pub const SPECVERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const TYPE: &str = "ce-type";
    pub const SOURCE: &str = "ce-source";
    pub const TIME: &str = "ce-time";
    pub const SUBJECT: &str = "ce-subject";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    pub const CORRELATION_ID: &str = "mirai-correlation-id";
}

/// Content type of internal payloads.
pub const PROTOBUF: &str = "application/protobuf";

/// The CloudEvents context of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ce-id`: UUIDv7, the consumers' dedupe key.
    pub id: Uuid,
    pub event_type: String,
    /// `ce-source`: `//mirai/<service>`.
    pub source: String,
    pub time: DateTime<Utc>,
    pub subject: String,
    /// W3C trace context of the publishing span.
    pub trace_context: HashMap<String, String>,
    /// Saga / request correlation id, carried from event to event.
    pub correlation_id: Option<String>,
}

/// An envelope that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("attribute {0} is missing")]
    Missing(&'static str),
    #[error("attribute {0} is malformed")]
    Malformed(&'static str),
}

impl Envelope {
    /// A new envelope for `event`, published by `service` (e.g. `stock-data`), carrying the
    /// current span's trace context.
    pub fn new<E: Event>(service: &str, event: &E, correlation_id: Option<String>) -> Self {
        let mut trace_context = HashMap::new();
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut MapInjector(&mut trace_context))
        });
        Self {
            id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            source: format!("//mirai/{service}"),
            time: Utc::now(),
            subject: event.subject(),
            trace_context,
            correlation_id,
        }
    }

    pub fn to_attributes(&self) -> HashMap<String, String> {
        let mut attributes = HashMap::from([
            (attr::SPECVERSION.to_owned(), "1.0".to_owned()),
            (attr::ID.to_owned(), self.id.to_string()),
            (attr::TYPE.to_owned(), self.event_type.clone()),
            (attr::SOURCE.to_owned(), self.source.clone()),
            (
                attr::TIME.to_owned(),
                self.time
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
            (attr::SUBJECT.to_owned(), self.subject.clone()),
            (attr::CONTENT_TYPE.to_owned(), PROTOBUF.to_owned()),
        ]);
        attributes.extend(self.trace_context.clone());
        if let Some(id) = &self.correlation_id {
            attributes.insert(attr::CORRELATION_ID.to_owned(), id.clone());
        }
        attributes
    }

    pub fn from_attributes(attributes: &HashMap<String, String>) -> Result<Self, EnvelopeError> {
        let get = |name: &'static str| attributes.get(name).ok_or(EnvelopeError::Missing(name));
        if get(attr::SPECVERSION)? != "1.0" {
            return Err(EnvelopeError::Malformed(attr::SPECVERSION));
        }
        let trace_context = [attr::TRACEPARENT, attr::TRACESTATE]
            .into_iter()
            .filter_map(|k| attributes.get(k).map(|v| (k.to_owned(), v.clone())))
            .collect();
        Ok(Self {
            id: get(attr::ID)?
                .parse()
                .map_err(|_| EnvelopeError::Malformed(attr::ID))?,
            event_type: get(attr::TYPE)?.clone(),
            source: get(attr::SOURCE)?.clone(),
            time: DateTime::parse_from_rfc3339(get(attr::TIME)?)
                .map_err(|_| EnvelopeError::Malformed(attr::TIME))?
                .with_timezone(&Utc),
            subject: attributes.get(attr::SUBJECT).cloned().unwrap_or_default(),
            trace_context,
            correlation_id: attributes.get(attr::CORRELATION_ID).cloned(),
        })
    }

    /// The OpenTelemetry context of the publisher, to continue its trace.
    pub fn parent_context(&self) -> opentelemetry::Context {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&MapExtractor(&self.trace_context))
        })
    }
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);
impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);
impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let event = ev::SymbolListed {
            symbol: "AAPL".into(),
            ..Default::default()
        };
        let envelope = Envelope::new("stock-data", &event, Some("saga-1".into()));
        let attributes = envelope.to_attributes();
        assert_eq!(attributes["ce-type"], "mirai.symbol.listed.v1");
        assert_eq!(attributes["ce-source"], "//mirai/stock-data");
        assert_eq!(attributes["ce-subject"], "AAPL");
        assert_eq!(envelope.id.get_version_num(), 7);
        let parsed = Envelope::from_attributes(&attributes).unwrap();
        assert_eq!(parsed.id, envelope.id);
        assert_eq!(parsed.correlation_id.as_deref(), Some("saga-1"));
        assert_eq!(
            parsed.time.timestamp_micros(),
            envelope.time.timestamp_micros()
        );
    }

    #[test]
    fn malformed_envelopes_are_named() {
        let mut attributes = Envelope::new("x", &ev::UserDeleted::default(), None).to_attributes();
        attributes.insert("ce-id".into(), "not-a-uuid".into());
        assert_eq!(
            Envelope::from_attributes(&attributes),
            Err(EnvelopeError::Malformed("ce-id"))
        );
        attributes.remove("ce-type");
        attributes.insert("ce-id".into(), uuid::Uuid::now_v7().to_string());
        assert_eq!(
            Envelope::from_attributes(&attributes),
            Err(EnvelopeError::Missing("ce-type"))
        );
    }
}
