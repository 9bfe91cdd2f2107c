//! A circuit breaker with resilience4j's semantics.
//!
//! - **CLOSED**: calls pass; each outcome goes into a sliding window (the last N calls, or the
//!   calls of the last N seconds). Once the window holds at least `minimum_calls`, the breaker
//!   opens when the failure rate or the slow-call rate reaches its threshold.
//! - **OPEN**: calls are rejected at once, with the time left, until `open_wait` has passed;
//!   then the breaker moves to HALF_OPEN by itself (the move happens when it is next asked,
//!   by a call or by a status read).
//! - **HALF_OPEN**: `half_open_calls` trial calls are let through, the rest rejected. When all
//!   trials have finished, their failure and slow-call rates decide: at or above a threshold →
//!   OPEN again, below → CLOSED with an empty window.
//!
//! An outcome counts only in the state it was admitted in: a call admitted while CLOSED that
//! finishes after the breaker opened changes nothing. A call dropped before it finished (the
//! caller went away) records nothing and gives its half-open trial back. What counts as a failure
//! is the caller's decision ([`super::is_failure`] for gRPC codes); slowness is measured here.
//!
//! The clock is `tokio::time`, so tests drive it with a paused runtime.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// The value of the `mirai_circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
}

/// The sliding window the rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last N calls.
    Count(u32),
    /// The calls that finished in the last N whole seconds.
    Time(u32),
}

impl std::str::FromStr for Window {
    type Err = String;

    /// `20` (calls) or `30s` (seconds, 1–600).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(calls) = s.parse::<u32>() {
            return if calls == 0 {
                Err("a window of zero calls".to_owned())
            } else {
                Ok(Window::Count(calls))
            };
        }
        let span = humantime::parse_duration(s)
            .map_err(|_| format!("`{s}`: expected a number of calls (20) or a duration (30s)"))?;
        match span.as_secs() {
            1..=600 => Ok(Window::Time(span.as_secs() as u32)),
            _ => Err("a time window spans 1 s to 10 min".to_owned()),
        }
    }
}

/// How a breaker judges and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub window: Window,
    /// Calls the window must hold before the rates may open the breaker.
    pub minimum_calls: u32,
    /// Failure rate, in percent, at or above which the breaker opens.
    pub failure_rate: f64,
    /// Slow-call rate, in percent, at or above which the breaker opens.
    pub slow_call_rate: f64,
    /// A call that takes longer than this is slow.
    pub slow_call: Duration,
    /// Time spent OPEN before trial calls are let through.
    pub open_wait: Duration,
    /// Trial calls in HALF_OPEN.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    /// resilience4j's thresholds (50 % failures, 100 % slow calls) over a window sized for
    /// a service that answers hundreds of calls a second rather than resilience4j's 100 calls
    /// and 60 s, so a dead upstream is cut off within a second, and probed again after 5 s.
    fn default() -> Self {
        Self {
            window: Window::Count(20),
            minimum_calls: 10,
            failure_rate: 50.0,
            slow_call_rate: 100.0,
            slow_call: Duration::from_secs(2),
            open_wait: Duration::from_secs(5),
            half_open_calls: 3,
        }
    }
}

/// A call refused because the breaker is open (or every half-open trial is taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Until the breaker lets a trial call through.
    pub retry_in: Duration,
}

/// Called once per transition, outside the breaker's lock.
pub type OnTransition = Arc<dyn Fn(State, State) + Send + Sync>;

/// One breaker (per upstream endpoint).
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    on_transition: OnTransition,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish()
    }
}

struct Inner {
    phase: Phase,
    /// Bumped on every transition; outcomes of calls admitted in an earlier one are ignored.
    generation: u64,
    window: Outcomes,
}

enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        issued: u32,
        done: u32,
        failures: u32,
        slow: u32,
    },
}

impl Phase {
    fn state(&self) -> State {
        match self {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig, on_transition: OnTransition) -> Self {
        Self {
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                generation: 0,
                window: Outcomes::new(config.window),
            }),
            config,
            on_transition,
        }
    }

    /// The current state (moving OPEN to HALF_OPEN when the wait is over).
    pub fn state(&self) -> State {
        let (state, moved) = {
            let mut inner = self.lock();
            let moved = self.expire_open(&mut inner);
            (inner.phase.state(), moved)
        };
        self.fire(moved);
        state
    }

    /// Time left OPEN, if the breaker is open.
    pub fn retry_in(&self) -> Option<Duration> {
        match self.lock().phase {
            Phase::Open { until } => Some(until.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }

    /// Admits a call, or says how long until one may be tried.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let (result, moved) = {
            let mut inner = self.lock();
            let moved = self.expire_open(&mut inner);
            let result = match &mut inner.phase {
                Phase::Closed => Ok(()),
                Phase::Open { until } => Err(Rejected {
                    retry_in: until.saturating_duration_since(Instant::now()),
                }),
                Phase::HalfOpen { issued, .. } if *issued < self.config.half_open_calls => {
                    *issued += 1;
                    Ok(())
                }
                // Every trial is out: their answers come within a call's deadline.
                Phase::HalfOpen { .. } => Err(Rejected {
                    retry_in: Duration::from_secs(1),
                }),
            };
            (
                result.map(|()| Permit {
                    breaker: Arc::clone(self),
                    generation: inner.generation,
                    started: Instant::now(),
                    recorded: false,
                }),
                moved,
            )
        };
        self.fire(moved);
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fire(&self, transition: Option<(State, State)>) {
        if let Some((from, to)) = transition {
            (self.on_transition)(from, to);
        }
    }

    fn expire_open(&self, inner: &mut Inner) -> Option<(State, State)> {
        match inner.phase {
            Phase::Open { until } if Instant::now() >= until => Some(self.enter(
                inner,
                Phase::HalfOpen {
                    issued: 0,
                    done: 0,
                    failures: 0,
                    slow: 0,
                },
            )),
            _ => None,
        }
    }

    fn enter(&self, inner: &mut Inner, phase: Phase) -> (State, State) {
        let from = inner.phase.state();
        inner.phase = phase;
        inner.generation += 1;
        inner.window = Outcomes::new(self.config.window);
        (from, inner.phase.state())
    }

    fn open(&self, inner: &mut Inner) -> (State, State) {
        let until = Instant::now() + self.config.open_wait;
        self.enter(inner, Phase::Open { until })
    }

    fn over_threshold(&self, calls: u32, failures: u32, slow: u32) -> bool {
        let rate = |n: u32| f64::from(n) * 100.0 / f64::from(calls.max(1));
        rate(failures) >= self.config.failure_rate || rate(slow) >= self.config.slow_call_rate
    }

    fn record(&self, generation: u64, failure: bool, elapsed: Duration) {
        let slow = elapsed > self.config.slow_call;
        let moved = {
            let mut inner = self.lock();
            if inner.generation != generation {
                return;
            }
            match &mut inner.phase {
                Phase::Closed => {
                    let now = Instant::now();
                    inner.window.push(now, failure, slow);
                    let (calls, failures, slows) = inner.window.totals(now);
                    let minimum = match self.config.window {
                        // A count window can never hold more than its size.
                        Window::Count(size) => self.config.minimum_calls.min(size),
                        Window::Time(_) => self.config.minimum_calls,
                    };
                    (calls >= minimum.max(1) && self.over_threshold(calls, failures, slows))
                        .then(|| self.open(&mut inner))
                }
                Phase::HalfOpen {
                    done,
                    failures,
                    slow: slows,
                    ..
                } => {
                    *done += 1;
                    *failures += u32::from(failure);
                    *slows += u32::from(slow);
                    let (done, failures, slows) = (*done, *failures, *slows);
                    (done >= self.config.half_open_calls).then(|| {
                        if self.over_threshold(done, failures, slows) {
                            self.open(&mut inner)
                        } else {
                            self.enter(&mut inner, Phase::Closed)
                        }
                    })
                }
                Phase::Open { .. } => None,
            }
        };
        self.fire(moved);
    }

    fn release(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if let Phase::HalfOpen { issued, .. } = &mut inner.phase {
            *issued = issued.saturating_sub(1);
        }
    }
}

/// An admitted call. [`Permit::record`] its outcome; dropping it unrecorded records nothing.
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    generation: u64,
    started: Instant,
    recorded: bool,
}

impl Permit {
    /// Records the call's outcome; its duration is measured from admission.
    pub fn record(mut self, failure: bool) {
        self.recorded = true;
        self.breaker
            .record(self.generation, failure, self.started.elapsed());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.release(self.generation);
        }
    }
}

// === impl Outcomes ===

/// The sliding window of CLOSED outcomes.
enum Outcomes {
    Count {
        size: usize,
        calls: VecDeque<(bool, bool)>,
        failures: u32,
        slow: u32,
    },
    Time {
        origin: Instant,
        /// One bucket per second: (second since origin, calls, failures, slow).
        buckets: Vec<(u64, u32, u32, u32)>,
    },
}

impl Outcomes {
    fn new(window: Window) -> Self {
        match window {
            Window::Count(size) => Outcomes::Count {
                size: size as usize,
                calls: VecDeque::with_capacity(size as usize),
                failures: 0,
                slow: 0,
            },
            Window::Time(seconds) => Outcomes::Time {
                origin: Instant::now(),
                buckets: vec![(u64::MAX, 0, 0, 0); seconds as usize],
            },
        }
    }

    fn push(&mut self, now: Instant, failure: bool, slow: bool) {
        match self {
            Outcomes::Count {
                size,
                calls,
                failures,
                slow: slows,
            } => {
                if calls.len() == *size
                    && let Some((f, s)) = calls.pop_front()
                {
                    *failures -= u32::from(f);
                    *slows -= u32::from(s);
                }
                calls.push_back((failure, slow));
                *failures += u32::from(failure);
                *slows += u32::from(slow);
            }
            Outcomes::Time { origin, buckets } => {
                let second = now.saturating_duration_since(*origin).as_secs();
                let len = buckets.len() as u64;
                let bucket = &mut buckets[(second % len) as usize];
                if bucket.0 != second {
                    *bucket = (second, 0, 0, 0);
                }
                bucket.1 += 1;
                bucket.2 += u32::from(failure);
                bucket.3 += u32::from(slow);
            }
        }
    }

    /// (calls, failures, slow calls) in the window.
    fn totals(&self, now: Instant) -> (u32, u32, u32) {
        match self {
            Outcomes::Count {
                calls,
                failures,
                slow,
                ..
            } => (calls.len() as u32, *failures, *slow),
            Outcomes::Time { origin, buckets } => {
                let second = now.saturating_duration_since(*origin).as_secs();
                let len = buckets.len() as u64;
                buckets
                    .iter()
                    .filter(|b| b.0 != u64::MAX && b.0 + len > second)
                    .fold((0, 0, 0), |(c, f, s), b| (c + b.1, f + b.2, s + b.3))
            }
        }
    }
}

// The state-machine scenarios of resilience4j's CircuitBreakerStateMachine tests, on a paused
// clock.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Transitions = Arc<Mutex<Vec<(State, State)>>>;

    fn breaker(config: BreakerConfig) -> (Arc<CircuitBreaker>, Transitions) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let breaker = CircuitBreaker::new(
            config,
            Arc::new(move |from, to| log.lock().unwrap().push((from, to))),
        );
        (Arc::new(breaker), seen)
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: Window::Count(10),
            minimum_calls: 5,
            failure_rate: 50.0,
            slow_call_rate: 100.0,
            slow_call: Duration::from_secs(1),
            open_wait: Duration::from_secs(5),
            half_open_calls: 2,
        }
    }

    fn call(breaker: &Arc<CircuitBreaker>, failure: bool) {
        breaker.try_acquire().expect("admitted").record(failure);
    }

    #[tokio::test(start_paused = true)]
    async fn stays_closed_below_the_minimum_number_of_calls() {
        let (breaker, _) = breaker(config());
        for _ in 0..4 {
            call(&breaker, true);
        }
        assert_eq!(breaker.state(), State::Closed, "4 failures < 5 calls");
        call(&breaker, true);
        assert_eq!(
            breaker.state(),
            State::Open,
            "the fifth call reaches the minimum"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_the_failure_rate_threshold() {
        let (breaker, seen) = breaker(config());
        for failure in [false, false, false, true, true] {
            call(&breaker, failure);
        }
        assert_eq!(breaker.state(), State::Closed, "40 % < 50 %");
        call(&breaker, true);
        assert_eq!(breaker.state(), State::Open, "3 of 6 = 50 %");
        assert_eq!(*seen.lock().unwrap(), [(State::Closed, State::Open)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_window_forgets_the_oldest_calls() {
        let (breaker, _) = breaker(config());
        for _ in 0..10 {
            call(&breaker, false);
        }
        for _ in 0..4 {
            call(&breaker, true);
        }
        assert_eq!(breaker.state(), State::Closed, "4 of the last 10");
        // Over all 15 calls this would be 33 %; over the last 10 it is 50 %.
        call(&breaker, true);
        assert_eq!(breaker.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_slow_call_rate() {
        let (breaker, _) = breaker(BreakerConfig {
            slow_call_rate: 60.0,
            ..config()
        });
        for _ in 0..5 {
            let permit = breaker.try_acquire().unwrap();
            tokio::time::advance(Duration::from_millis(1500)).await;
            permit.record(false);
            if breaker.state() == State::Open {
                return;
            }
        }
        panic!("five slow successes did not open the breaker");
    }

    #[tokio::test(start_paused = true)]
    async fn open_rejects_without_calling_and_says_when_to_retry() {
        let (breaker, _) = breaker(config());
        for _ in 0..5 {
            call(&breaker, true);
        }
        let called = AtomicUsize::new(0);
        tokio::time::advance(Duration::from_secs(2)).await;
        let rejected = breaker
            .try_acquire()
            .map(|_| called.fetch_add(1, Ordering::SeqCst))
            .unwrap_err();
        assert_eq!(called.load(Ordering::SeqCst), 0);
        assert_eq!(rejected.retry_in, Duration::from_secs(3));
        assert_eq!(breaker.retry_in(), Some(Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn moves_to_half_open_after_the_wait_and_closes_after_the_permitted_successes() {
        let (breaker, seen) = breaker(config());
        for _ in 0..5 {
            call(&breaker, true);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(breaker.state(), State::HalfOpen);
        let (first, second) = (
            breaker.try_acquire().unwrap(),
            breaker.try_acquire().unwrap(),
        );
        assert!(breaker.try_acquire().is_err(), "only two trial calls");
        first.record(false);
        assert_eq!(breaker.state(), State::HalfOpen);
        second.record(false);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (State::Closed, State::Open),
                (State::Open, State::HalfOpen),
                (State::HalfOpen, State::Closed)
            ]
        );
        // A fresh window: four failures are below the minimum again.
        for _ in 0..4 {
            call(&breaker, true);
        }
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn reopens_on_a_failure_in_half_open() {
        let (breaker, _) = breaker(config());
        for _ in 0..5 {
            call(&breaker, true);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        call(&breaker, false);
        call(&breaker, true);
        assert_eq!(breaker.state(), State::Open, "1 of 2 trials failed: 50 %");
        assert_eq!(
            breaker.retry_in(),
            Some(Duration::from_secs(5)),
            "a new wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_never_count() {
        // The caller classifies: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED… are answers.
        let (breaker, _) = breaker(config());
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::NotFound,
            tonic::Code::PermissionDenied,
            tonic::Code::AlreadyExists,
            tonic::Code::FailedPrecondition,
            tonic::Code::Unauthenticated,
        ]
        .into_iter()
        .cycle()
        .take(30)
        {
            call(&breaker, super::super::is_failure(code, false));
        }
        // A quota answered for one caller (a locked-out account) is an answer too.
        for _ in 0..30 {
            call(
                &breaker,
                super::super::is_failure(tonic::Code::ResourceExhausted, false),
            );
        }
        assert_eq!(breaker.state(), State::Closed);
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Internal,
            tonic::Code::Unknown,
        ] {
            assert!(super::super::is_failure(code, false), "{code:?}");
        }
        assert!(
            super::super::is_failure(tonic::Code::ResourceExhausted, true),
            "a shed call counts"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_calls_record_nothing_and_free_their_trial() {
        let (breaker, _) = breaker(config());
        for _ in 0..5 {
            call(&breaker, true);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(breaker.try_acquire().unwrap());
        drop(breaker.try_acquire().unwrap());
        call(&breaker, false);
        call(&breaker, false);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_of_an_earlier_state_are_ignored() {
        let (breaker, _) = breaker(config());
        let late = breaker.try_acquire().unwrap();
        for _ in 0..5 {
            call(&breaker, true);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(breaker.state(), State::HalfOpen);
        late.record(true);
        call(&breaker, false);
        call(&breaker, false);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_window_counts_the_last_seconds_only() {
        let (breaker, _) = breaker(BreakerConfig {
            window: Window::Time(10),
            ..config()
        });
        for _ in 0..4 {
            call(&breaker, true);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        // The four failures are older than the window: one more is 1 call, below the minimum.
        call(&breaker, true);
        assert_eq!(breaker.state(), State::Closed);
        for _ in 0..4 {
            call(&breaker, true);
        }
        assert_eq!(breaker.state(), State::Open);
    }

    #[test]
    fn windows_parse() {
        assert_eq!("20".parse(), Ok(Window::Count(20)));
        assert_eq!("30s".parse(), Ok(Window::Time(30)));
        assert!("0".parse::<Window>().is_err());
        assert!("1h".parse::<Window>().is_err());
        assert!("soon".parse::<Window>().is_err());
    }
}
