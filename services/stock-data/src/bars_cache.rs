//! Pages of bars kept in memory, so that repeated reads of the same range (a chart, a dashboard,
//! a backtest rereading a year) are answered without PostgreSQL.
//!
//! A page is valid until a bar of its symbol changes. Every statement that writes or deletes
//! bars announces its symbols on the channel `mirai_bars` at commit (a trigger, so imports,
//! live bars, corrections and other replicas' writes are all seen); each announcement moves the
//! symbol to a new *generation*, and pages are kept under the generation their read began in.
//! A read that raced with a write is therefore kept under the old generation and never served
//! again, whichever of the commit, the read and the announcement came first. This replica's own
//! writers also move the generation right after their commit (`forget`), so a client that wrote
//! through it reads its write at once, without waiting for the announcement.
//!
//! Announcements are lost while the listener is disconnected, so pages are kept only while it
//! listens, and every reconnection starts a new *epoch* that retires every page kept before.
//! A page also expires after [`TIME_TO_LIVE`], which bounds how stale a page can be should the
//! listener's connection die without the socket reporting it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirai_platform::telemetry::{CacheCounter, CacheMetrics, Metrics};
use mirai_proto::stock::v1 as pb;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::bars::Query;

/// The channel the `bars_changed` trigger notifies (payload: the symbol).
const CHANNEL: &str = "mirai_bars";

/// The longest a page is served after it was read.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// The pages; [`Default`] is a disabled cache (every read goes to PostgreSQL).
#[derive(Clone, Default)]
pub struct BarsCache {
    /// `None` when disabled (a capacity of 0 bars).
    inner: Option<Arc<Inner>>,
}

struct Inner {
    pages: moka::sync::Cache<Key, Arc<pb::GetBarsResponse>>,
    /// Changes announced per symbol (absent: none yet).
    generations: Mutex<HashMap<String, u64>>,
    epoch: AtomicU64,
    listening: AtomicBool,
    lookups: CacheCounter,
}

#[derive(PartialEq, Eq, Hash)]
struct Key {
    epoch: u64,
    generation: u64,
    query: Query,
}

impl BarsCache {
    /// A cache of at most `max_bars` bars in all (0 disables it); lookups are counted as
    /// `mirai_cache_requests_total{cache="bars"}`. Pages are kept once [`BarsCache::follow`]
    /// listens.
    pub fn new(max_bars: u64, metrics: &Metrics) -> Self {
        if max_bars == 0 {
            return Self { inner: None };
        }
        let pages = moka::sync::Cache::builder()
            .max_capacity(max_bars)
            .weigher(|_: &Key, page: &Arc<pb::GetBarsResponse>| {
                u32::try_from(page.bars.len() + 1).unwrap_or(u32::MAX)
            })
            .time_to_live(TIME_TO_LIVE)
            .build();
        Self {
            inner: Some(Arc::new(Inner {
                pages,
                generations: Mutex::default(),
                epoch: AtomicU64::new(0),
                listening: AtomicBool::new(false),
                lookups: CacheMetrics::register(metrics).cache("bars"),
            })),
        }
    }

    /// The page for `query`: from memory, or from `load` (and then kept, unless bars of the
    /// symbol changed meanwhile).
    pub async fn get_or_load<E, F>(&self, query: &Query, load: F) -> Result<pb::GetBarsResponse, E>
    where
        F: Future<Output = Result<pb::GetBarsResponse, E>>,
    {
        let Some(inner) = &self.inner else {
            return load.await;
        };
        // Taken before the read: a change committed after this point has a newer key.
        let key = inner.listening.load(Ordering::Acquire).then(|| Key {
            epoch: inner.epoch.load(Ordering::Acquire),
            generation: inner.generation(query.ticker.as_str()),
            query: query.clone(),
        });
        if let Some(page) = key.as_ref().and_then(|key| inner.pages.get(key)) {
            inner.lookups.hit();
            return Ok((*page).clone());
        }
        inner.lookups.miss();
        let page = load.await?;
        if let Some(key) = key {
            inner.pages.insert(key, Arc::new(page.clone()));
        }
        Ok(page)
    }

    /// Retires the pages of `symbol` (its bars changed).
    pub fn forget(&self, symbol: &str) {
        if let Some(inner) = &self.inner {
            *inner
                .generations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(symbol.to_owned())
                .or_default() += 1;
        }
    }

    /// Retires every page (changes of unknown symbols, or announcements possibly lost).
    pub fn forget_all(&self) {
        if let Some(inner) = &self.inner {
            inner.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Listens for announced changes until `stop`, reconnecting when the connection is lost.
    pub async fn follow(&self, pool: PgPool, stop: CancellationToken) {
        let Some(inner) = &self.inner else {
            return;
        };
        while !stop.is_cancelled() {
            let Some(mut listener) = mirai_platform::db::listen(&pool, CHANNEL).await else {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            // Changes made while no one listened were not announced.
            self.forget_all();
            inner.listening.store(true, Ordering::Release);
            loop {
                let received = tokio::select! {
                    _ = stop.cancelled() => break,
                    received = listener.try_recv() => received,
                };
                match received {
                    Ok(Some(notification)) => self.forget(notification.payload()),
                    Ok(None) | Err(_) => {
                        tracing::warn!(
                            message = "Bars cache listener lost; serving from PostgreSQL until it reconnects."
                        );
                        break;
                    }
                }
            }
            inner.listening.store(false, Ordering::Release);
            self.forget_all();
        }
    }
}

impl Inner {
    fn generation(&self, symbol: &str) -> u64 {
        self.generations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(symbol)
            .copied()
            .unwrap_or_default()
    }
}
