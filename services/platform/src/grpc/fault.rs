//! Fault injection for tests and chaos experiments: per-RPC errors, added latency and hangs.
//!
//! Off unless configured (`MIRAI_FAULT_INJECTION=on` or `MIRAI_FAULTS=<rules>`, never with
//! `MIRAI_PROFILE=production`). When on, [`ServerLayer`](super::ServerLayer) asks the shared
//! [`Faults`] handle about every call after load shedding and inside the RED metrics, so
//! injected failures and latency show up in `mirai_grpc_server_*` like real ones. Health checks
//! and reflection are never faulted. When off, the layer holds no handle and takes no lock.
//!
//! # Rule syntax
//!
//! Rules are separated by `;`, each `<target>=<fault>` (whitespace around the parts is ignored):
//!
//! - target: `*` (every call), a service (`mirai.analytics.v1.AnalyticsService`) or one method
//!   (`mirai.analytics.v1.AnalyticsService/GetIndicators`); each target at most once.
//! - fault, with an optional rate in `[0, 1]` (default 1, every call):
//!   - `error(<code>[,<rate>])`: answer at once with that gRPC code, named in snake case, any
//!     letter case (`unavailable`, `resource_exhausted`, `DEADLINE_EXCEEDED`); not `ok`;
//!   - `delay(<duration>[,<rate>])`: wait (`250ms`, `2s`, `1m 30s`), then call the handler;
//!   - `hang([<rate>])`: never answer, until the caller's deadline passes or the server begins
//!     to shut down (then `UNAVAILABLE`), so a graceful shutdown is never held up by a hang.
//!
//! The most specific matching rule decides, alone: method over service over `*`. Example:
//! `mirai.analytics.v1.AnalyticsService/GetIndicators=error(unavailable,0.5);*=delay(200ms)`
//! fails half of the `GetIndicators` calls and slows every other call by 200 ms.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::telemetry::Metrics;

/// gRPC codes by their canonical snake-case name (`ok` is not an error, so it is absent).
const CODES: [(&str, Code); 16] = [
    ("cancelled", Code::Cancelled),
    ("unknown", Code::Unknown),
    ("invalid_argument", Code::InvalidArgument),
    ("deadline_exceeded", Code::DeadlineExceeded),
    ("not_found", Code::NotFound),
    ("already_exists", Code::AlreadyExists),
    ("permission_denied", Code::PermissionDenied),
    ("resource_exhausted", Code::ResourceExhausted),
    ("failed_precondition", Code::FailedPrecondition),
    ("aborted", Code::Aborted),
    ("out_of_range", Code::OutOfRange),
    ("unimplemented", Code::Unimplemented),
    ("internal", Code::Internal),
    ("unavailable", Code::Unavailable),
    ("data_loss", Code::DataLoss),
    ("unauthenticated", Code::Unauthenticated),
];

fn code_name(code: Code) -> &'static str {
    CODES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("ok", |(name, _)| name)
}

/// A rule text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault rule `{rule}`: {reason}")]
pub struct FaultParseError {
    /// The offending rule, as written.
    pub rule: String,
    /// What was expected instead.
    pub reason: String,
}

// === Rules ===

/// Which calls a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `*`: every call.
    Any,
    /// `pkg.Service`: every method of one service.
    Service(String),
    /// `pkg.Service/Method`: one method.
    Method { service: String, method: String },
}

impl Target {
    /// How specific the target is: a method beats a service beats `*`.
    fn specificity(&self) -> u8 {
        match self {
            Self::Any => 0,
            Self::Service(_) => 1,
            Self::Method { .. } => 2,
        }
    }

    fn matches(&self, service: &str, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Service(s) => s == service,
            Self::Method {
                service: s,
                method: m,
            } => s == service && m == method,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Service(service) => f.write_str(service),
            Self::Method { service, method } => write!(f, "{service}/{method}"),
        }
    }
}

/// What happens to a call a rule picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer at once with this code.
    Error(Code),
    /// Wait this long, then call the handler.
    Delay(Duration),
    /// Never answer (until the deadline or shutdown).
    Hang,
}

impl FaultKind {
    /// The `kind` label of `mirai_faults_injected_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Error(_) => "error",
            Self::Delay(_) => "delay",
            Self::Hang => "hang",
        }
    }
}

/// A fault and the share of matching calls it hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Probability in `[0, 1]` that a matching call is hit.
    pub rate: f64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = (self.rate < 1.0).then_some(self.rate);
        match (self.kind, rate) {
            (FaultKind::Error(code), None) => write!(f, "error({})", code_name(code)),
            (FaultKind::Error(code), Some(r)) => write!(f, "error({},{r})", code_name(code)),
            (FaultKind::Delay(d), None) => write!(f, "delay({})", humantime::format_duration(d)),
            (FaultKind::Delay(d), Some(r)) => {
                write!(f, "delay({},{r})", humantime::format_duration(d))
            }
            (FaultKind::Hang, None) => f.write_str("hang()"),
            (FaultKind::Hang, Some(r)) => write!(f, "hang({r})"),
        }
    }
}

/// One `<target>=<fault>` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub target: Target,
    pub fault: Fault,
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.target, self.fault)
    }
}

/// A parsed rule set (see the [module docs](self) for the syntax). `Display` writes it back in
/// the same syntax, so `GET /faults` output can be `PUT` again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRules {
    rules: Vec<FaultRule>,
}

impl FaultRules {
    /// Parses `text`; an empty text is the empty rule set.
    pub fn parse(text: &str) -> Result<Self, FaultParseError> {
        let mut rules: Vec<FaultRule> = Vec::new();
        for raw in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let error = |reason: String| FaultParseError {
                rule: raw.to_owned(),
                reason,
            };
            let (target, fault) = raw
                .split_once('=')
                .ok_or_else(|| error("expected `<target>=<fault>`".to_owned()))?;
            let rule = FaultRule {
                target: parse_target(target.trim()).map_err(error)?,
                fault: parse_fault(fault.trim()).map_err(error)?,
            };
            if rules.iter().any(|r| r.target == rule.target) {
                return Err(error(format!(
                    "target `{}` already has a rule; give each target one rule",
                    rule.target
                )));
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = &FaultRule> {
        self.rules.iter()
    }

    /// The rule that decides for `service`/`method`: the most specific match, if any.
    pub fn find(&self, service: &str, method: &str) -> Option<&FaultRule> {
        self.rules
            .iter()
            .filter(|rule| rule.target.matches(service, method))
            .max_by_key(|rule| rule.target.specificity())
    }
}

impl FromStr for FaultRules {
    type Err = FaultParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for FaultRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

/// A gRPC name part: a non-empty run of letters, digits and `_`, not starting with a digit.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_target(raw: &str) -> Result<Target, String> {
    if raw == "*" {
        return Ok(Target::Any);
    }
    let expected = "expected `*`, `pkg.Service` or `pkg.Service/Method`";
    let (service, method) = match raw.trim_start_matches('/').split_once('/') {
        Some((service, method)) => (service, Some(method)),
        None => (raw.trim_start_matches('/'), None),
    };
    if service.is_empty() || !service.split('.').all(is_identifier) {
        return Err(format!("bad target `{raw}`: {expected}"));
    }
    if super::layer::is_infrastructure(service) {
        return Err(format!(
            "bad target `{raw}`: health checks and reflection are never faulted"
        ));
    }
    match method {
        None => Ok(Target::Service(service.to_owned())),
        Some(method) if is_identifier(method) => Ok(Target::Method {
            service: service.to_owned(),
            method: method.to_owned(),
        }),
        Some(_) => Err(format!("bad target `{raw}`: {expected}")),
    }
}

fn parse_fault(raw: &str) -> Result<Fault, String> {
    let expected =
        "expected `error(<code>[,<rate>])`, `delay(<duration>[,<rate>])` or `hang([<rate>])`";
    let (name, args) = match raw.split_once('(') {
        Some((name, rest)) => {
            let args = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("bad fault `{raw}`: missing `)`"))?;
            (name.trim(), args)
        }
        // `hang` alone reads naturally; the others need an argument anyway.
        None => (raw, ""),
    };
    let args: Vec<&str> = args.split(',').map(str::trim).collect();
    let args: &[&str] = if args == [""] { &[] } else { &args };
    let kind_and_rest = match name.to_ascii_lowercase().as_str() {
        "error" => {
            let (code, rest) = args
                .split_first()
                .ok_or_else(|| format!("bad fault `{raw}`: `error` needs a gRPC code"))?;
            (FaultKind::Error(parse_code(code)?), rest)
        }
        "delay" => {
            let (duration, rest) = args
                .split_first()
                .ok_or_else(|| format!("bad fault `{raw}`: `delay` needs a duration"))?;
            let duration = humantime::parse_duration(duration)
                .map_err(|e| format!("bad delay `{duration}`: {e} (e.g. `250ms`, `2s`)"))?;
            (FaultKind::Delay(duration), rest)
        }
        "hang" => (FaultKind::Hang, args),
        _ => return Err(format!("unknown fault `{raw}`: {expected}")),
    };
    let (kind, rest) = kind_and_rest;
    let rate = match rest {
        [] => 1.0,
        [rate] => parse_rate(rate)?,
        _ => return Err(format!("bad fault `{raw}`: too many arguments; {expected}")),
    };
    Ok(Fault { kind, rate })
}

fn parse_code(raw: &str) -> Result<Code, String> {
    let name = raw.to_ascii_lowercase();
    CODES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            let known: Vec<&str> = CODES.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown gRPC code `{raw}` (expected one of {})",
                known.join(", ")
            )
        })
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("bad rate `{raw}`: expected a number from 0 to 1")),
    }
}

// === Faults (the shared handle) ===

/// The live rule set of a server with fault injection on: cheap to clone, shared by the gRPC
/// layer, the admin endpoints (`/faults`) and tests ([`GrpcServer::faults`]).
///
/// [`GrpcServer::faults`]: super::GrpcServer::faults
#[derive(Clone, Default)]
pub struct Faults {
    rules: Arc<RwLock<Arc<FaultRules>>>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Faults").field(&*self.current()).finish()
    }
}

impl Faults {
    pub fn new(rules: FaultRules) -> Self {
        Self {
            rules: Arc::new(RwLock::new(Arc::new(rules))),
        }
    }

    /// Replaces every rule.
    pub fn set(&self, rules: FaultRules) {
        tracing::info!(message = "Fault rules replaced.", rules = %rules);
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
    }

    /// Removes every rule (injection stays on, with nothing to inject).
    pub fn clear(&self) {
        self.set(FaultRules::default());
    }

    /// The current rules.
    pub fn rules(&self) -> FaultRules {
        (*self.current()).clone()
    }

    fn current(&self) -> Arc<FaultRules> {
        self.rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The fault to inject into this call, after the rate's coin toss.
    fn pick(&self, service: &str, method: &str) -> Option<FaultKind> {
        let rules = self.current();
        let fault = rules.find(service, method)?.fault;
        (fault.rate >= 1.0 || rand::random_bool(fault.rate)).then_some(fault.kind)
    }
}

// === Injection (used by the server layer) ===

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The server layer's side of fault injection: the rules, the counter, and the shutdown token
/// that ends hangs.
#[derive(Clone)]
pub(crate) struct Injector {
    faults: Faults,
    injected: Family<KindLabels, Counter>,
    shutdown: CancellationToken,
}

/// What the layer does with a call after asking the injector.
pub(crate) enum Injected {
    /// Call the handler (no fault, or after a delay).
    Proceed,
    /// Answer with this status instead of calling the handler.
    Answer(tonic::Status),
}

impl Injector {
    /// Registers `mirai_faults_injected_total{kind}`; `shutdown` ends hangs and delays.
    pub(crate) fn new(faults: Faults, metrics: &Metrics, shutdown: CancellationToken) -> Self {
        Self {
            faults,
            injected: metrics.register(
                "faults_injected",
                "Faults injected into gRPC calls by the fault-injection layer, by kind.",
                Family::default(),
            ),
            shutdown,
        }
    }

    /// Applies the rule for `service`/`method`, if one picks this call. A hang ends at
    /// `deadline` (when tonic has not dropped the call already) or when shutdown begins.
    pub(crate) async fn inject(
        &self,
        service: &str,
        method: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Injected {
        let Some(kind) = self.faults.pick(service, method) else {
            return Injected::Proceed;
        };
        self.injected
            .get_or_create(&KindLabels { kind: kind.label() })
            .inc();
        tracing::debug!(message = "Injecting a fault.", fault = ?kind);
        match kind {
            FaultKind::Error(code) => Injected::Answer(tonic::Status::new(
                code,
                format!(
                    "injected fault: error({}) on {service}/{method}",
                    code_name(code)
                ),
            )),
            FaultKind::Delay(delay) => {
                // Shutdown cuts the delay short so draining is not held up by it.
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.shutdown.cancelled() => {}
                }
                Injected::Proceed
            }
            FaultKind::Hang => {
                let deadline = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = deadline => Injected::Answer(tonic::Status::deadline_exceeded(
                        format!("injected fault: hang on {service}/{method} until the deadline"),
                    )),
                    () = self.shutdown.cancelled() => Injected::Answer(tonic::Status::unavailable(
                        format!("injected fault: hang on {service}/{method} ended by server shutdown"),
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> FaultRules {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn reason(text: &str) -> String {
        FaultRules::parse(text).unwrap_err().to_string()
    }

    const SVC: &str = "mirai.analytics.v1.AnalyticsService";

    #[test]
    fn parses_every_fault_kind_with_and_without_rates() {
        let parsed = rules(
            " mirai.analytics.v1.AnalyticsService/GetIndicators = error(UNAVAILABLE, 0.5) ; \
             mirai.user.v1.UserService=delay(1s 500ms);*=hang();x.Y/Z=hang(0.25);a.B=error(resource_exhausted);",
        );
        let all: Vec<&FaultRule> = parsed.iter().collect();
        assert_eq!(all.len(), 5);
        assert_eq!(
            all[0].target,
            Target::Method {
                service: SVC.into(),
                method: "GetIndicators".into()
            }
        );
        assert_eq!(
            all[0].fault,
            Fault {
                kind: FaultKind::Error(Code::Unavailable),
                rate: 0.5
            }
        );
        assert_eq!(
            all[1].fault.kind,
            FaultKind::Delay(Duration::from_millis(1500))
        );
        assert_eq!(all[1].fault.rate, 1.0);
        assert_eq!(all[2].target, Target::Any);
        assert_eq!(all[2].fault.kind, FaultKind::Hang);
        assert_eq!(all[3].fault.rate, 0.25);
        assert_eq!(all[4].fault.kind, FaultKind::Error(Code::ResourceExhausted));
        assert!(rules("").is_empty());
        assert!(rules(" ; ").is_empty());
        assert_eq!(
            rules("*=hang").iter().next().unwrap().fault.kind,
            FaultKind::Hang
        );
    }

    #[test]
    fn display_round_trips() {
        let text =
            "a.B/C=error(unavailable,0.5);a.B=delay(1s 500ms);*=hang(0.1);d.E=error(data_loss)";
        let parsed = rules(text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(rules(&parsed.to_string()), parsed);
        assert_eq!(rules("*=hang").to_string(), "*=hang()");
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let cases = [
            ("nonsense", "expected `<target>=<fault>`"),
            ("*=explode()", "unknown fault `explode()`"),
            ("*=error(teapot)", "unknown gRPC code `teapot`"),
            ("*=error(ok)", "unknown gRPC code `ok`"),
            ("*=error()", "`error` needs a gRPC code"),
            ("*=error(unavailable,1.5)", "bad rate `1.5`"),
            ("*=error(unavailable,-0.1)", "bad rate `-0.1`"),
            ("*=error(unavailable,NaN)", "bad rate `NaN`"),
            ("*=error(unavailable,0.5,2)", "too many arguments"),
            ("*=delay(soon)", "bad delay `soon`"),
            ("*=delay()", "`delay` needs a duration"),
            ("*=hang(2)", "bad rate `2`"),
            ("*=hang(0.5", "missing `)`"),
            ("=hang()", "bad target ``"),
            ("a..b=hang()", "bad target `a..b`"),
            ("a.B/=hang()", "bad target `a.B/`"),
            ("a.B/C/D=hang()", "bad target `a.B/C/D`"),
            ("grpc.health.v1.Health=hang()", "never faulted"),
            (
                "grpc.reflection.v1.ServerReflection/ServerReflectionInfo=hang()",
                "never faulted",
            ),
            ("*=hang();*=delay(1s)", "target `*` already has a rule"),
        ];
        for (text, expected) in cases {
            let message = reason(text);
            assert!(
                message.contains(expected),
                "{text}: `{message}` should contain `{expected}`"
            );
        }
        // The message quotes the offending rule, not the whole text.
        assert_eq!(
            reason("*=hang(); a.B=error(nope)"),
            "fault rule `a.B=error(nope)`: unknown gRPC code `nope` (expected one of cancelled, \
             unknown, invalid_argument, deadline_exceeded, not_found, already_exists, \
             permission_denied, resource_exhausted, failed_precondition, aborted, out_of_range, \
             unimplemented, internal, unavailable, data_loss, unauthenticated)"
        );
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let parsed = rules(&format!(
            "*=hang();{SVC}=delay(1s);{SVC}/GetIndicators=error(unavailable)"
        ));
        let kind = |service: &str, method: &str| parsed.find(service, method).map(|r| r.fault.kind);
        assert_eq!(
            kind(SVC, "GetIndicators"),
            Some(FaultKind::Error(Code::Unavailable))
        );
        assert_eq!(
            kind(SVC, "GetStats"),
            Some(FaultKind::Delay(Duration::from_secs(1)))
        );
        assert_eq!(
            kind("mirai.user.v1.UserService", "Login"),
            Some(FaultKind::Hang)
        );
        // Written in the other order, the answer is the same.
        let reversed = rules(&format!(
            "{SVC}/GetIndicators=error(unavailable);{SVC}=delay(1s);*=hang()"
        ));
        assert_eq!(
            reversed.find(SVC, "GetIndicators").map(|r| r.fault.kind),
            Some(FaultKind::Error(Code::Unavailable))
        );
        assert_eq!(
            rules(&format!("{SVC}=delay(1s)")).find("other.Service", "GetStats"),
            None
        );
        // A method rule does not leak to the service's other methods.
        assert_eq!(
            rules(&format!("{SVC}/GetIndicators=hang()")).find(SVC, "GetStats"),
            None
        );
    }

    #[test]
    fn rates_zero_and_one_are_never_and_always() {
        let faults = Faults::new(rules("a.B=error(internal,0);*=hang()"));
        for _ in 0..100 {
            assert_eq!(faults.pick("a.B", "C"), None);
            assert_eq!(faults.pick("x.Y", "Z"), Some(FaultKind::Hang));
        }
        faults.clear();
        assert_eq!(faults.pick("x.Y", "Z"), None);
        faults.set(rules("x.Y=delay(1ms)"));
        assert_eq!(faults.rules().to_string(), "x.Y=delay(1ms)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_ends_at_the_deadline_or_at_shutdown() {
        let shutdown = CancellationToken::new();
        let injector = Injector::new(
            Faults::new(rules("*=hang()")),
            &Metrics::new(),
            shutdown.clone(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let Injected::Answer(status) = injector.inject("a.B", "C", Some(deadline)).await else {
            panic!("a hang answers at the deadline");
        };
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(
            status.message().starts_with("injected fault: "),
            "{status:?}"
        );

        let hang = tokio::spawn({
            let injector = injector.clone();
            async move { injector.inject("a.B", "C", None).await }
        });
        tokio::task::yield_now().await;
        assert!(!hang.is_finished());
        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(3600), hang).await;
        let Injected::Answer(status) = ended.expect("shutdown ends the hang").unwrap() else {
            panic!("a hang answers at shutdown");
        };
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("server shutdown"), "{status:?}");
    }
}
