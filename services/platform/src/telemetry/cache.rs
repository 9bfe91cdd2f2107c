//! Cache lookups as one counter family shared by every cache of a process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

/// `mirai_cache_requests_total{cache, result="hit"|"miss"}`: lookups in an in-process cache.
/// The hit ratio of a cache is `hit / (hit + miss)`; `cache` is a fixed name per cache
/// (`quotes`, `jwks`, `bars`, ...), never a key.
#[derive(Clone)]
pub struct CacheMetrics {
    requests: Family<CacheLabels, Counter>,
}

impl CacheMetrics {
    /// The family of `metrics`, registered on first use and shared by every cache after.
    pub fn register(metrics: &Metrics) -> Self {
        metrics.shared(|metrics| Self {
            requests: metrics.register(
                "cache_requests",
                "Lookups in in-process caches, by cache and result (hit, miss).",
                Family::default(),
            ),
        })
    }

    /// Counts one lookup in `cache`.
    pub fn record(&self, cache: &'static str, hit: bool) {
        self.requests
            .get_or_create(&CacheLabels {
                cache,
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// One cache's view of the family.
    pub fn cache(&self, cache: &'static str) -> CacheCounter {
        CacheCounter {
            metrics: self.clone(),
            cache,
        }
    }
}

/// [`CacheMetrics`] for one named cache.
#[derive(Clone)]
pub struct CacheCounter {
    metrics: CacheMetrics,
    cache: &'static str,
}

impl CacheCounter {
    /// Counts a lookup answered from the cache.
    pub fn hit(&self) {
        self.metrics.record(self.cache, true);
    }

    /// Counts a lookup the cache could not answer.
    pub fn miss(&self) {
        self.metrics.record(self.cache, false);
    }

    /// Counts a lookup: a hit when `hit`, else a miss.
    pub fn record(&self, hit: bool) {
        self.metrics.record(self.cache, hit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_misses_are_counted_per_cache_in_one_family() {
        let metrics = Metrics::new();
        let quotes = CacheMetrics::register(&metrics).cache("quotes");
        let jwks = CacheMetrics::register(&metrics).cache("jwks");
        quotes.hit();
        quotes.hit();
        quotes.miss();
        jwks.record(true);
        let text = metrics.encode();
        assert_eq!(
            text.matches("# TYPE mirai_cache_requests counter").count(),
            1,
            "{text}"
        );
        for line in [
            r#"mirai_cache_requests_total{cache="quotes",result="hit"} 2"#,
            r#"mirai_cache_requests_total{cache="quotes",result="miss"} 1"#,
            r#"mirai_cache_requests_total{cache="jwks",result="hit"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
