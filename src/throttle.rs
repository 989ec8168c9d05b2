//! Pacing: adaptive request concurrency per store (AIMD on 429/503) and the bandwidth cap.
//!
//! **Request concurrency.** Every HTTP request a store sends (object_store's and the AWS SDK's)
//! first takes a slot of that store's [`Throttle`]. Until the server throttles, the number of
//! slots is unlimited and the engine's own `concurrency` decides. The first 429 or 503 (S3's
//! `SlowDown`) sets the limit to half the requests then in flight; every further throttled
//! answer halves it again, but only once per "round": a throttled answer to a request sent
//! before the last decrease says nothing new (TCP's rule: one decrease per window), so a burst
//! of 64 rejections from one overload is one halving, not 64. Each run of `limit` answers that
//! were not throttled adds one slot back (additive increase), so the rate climbs back once the
//! provider stops pushing back. Retries (object_store's and the SDK's) go through the same
//! slots: a throttled retry waits its turn instead of adding load.
//!
//! A slot is held while a request is sent and its response headers arrive; a download's body
//! streams after the slot is released, since providers throttle request rates, not open
//! streams. No request waits for another while holding a slot, so the slots cannot deadlock.
//!
//! **Bandwidth.** [`Bandwidth`] paces the bytes read from sources: each chunk books the next
//! `len / rate` seconds of a shared timeline and its reader waits until that interval ends, so
//! over any stretch longer than a few chunks the rate is the cap (with at most [`BURST`] of
//! slack after an idle spell).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the limit can grow back to; far above any `concurrency` ferry uses.
const CEILING: usize = 4096;

/// How a store's server pushed back during a run.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ThrottleStats {
    /// Answers with 429 or 503, retries included.
    pub throttled: u64,
    /// Times the request concurrency was halved.
    pub decreases: u64,
    /// The lowest limit reached, if the server ever throttled.
    pub lowest: Option<usize>,
    /// The limit now (none: never throttled, unlimited).
    pub limit: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    /// None until the first throttled answer: unlimited.
    limit: Option<usize>,
    in_flight: usize,
    /// Bumped at every decrease; a request remembers the epoch it was sent in.
    epoch: u64,
    /// Unthrottled answers since the last change of `limit`.
    good: usize,
    stats: ThrottleStats,
}

impl State {
    fn try_take(&mut self) -> Option<u64> {
        if self.limit.is_none_or(|l| self.in_flight < l) {
            self.in_flight += 1;
            Some(self.epoch)
        } else {
            None
        }
    }

    /// Records one answer; true when the limit grew (waiters may proceed).
    fn answer(&mut self, epoch: u64, throttled: bool) -> bool {
        if throttled {
            self.stats.throttled += 1;
            if epoch == self.epoch {
                // in_flight still counts this request.
                let base = self.limit.unwrap_or(self.in_flight).min(self.in_flight.max(1));
                let l = (base / 2).max(1);
                self.limit = Some(l);
                self.epoch += 1;
                self.good = 0;
                self.stats.decreases += 1;
                self.stats.lowest = Some(self.stats.lowest.map_or(l, |x| x.min(l)));
            }
            return false;
        }
        let Some(l) = self.limit else { return false };
        self.good += 1;
        if self.good >= l && l < CEILING {
            self.good = 0;
            self.limit = Some(l + 1);
            return true;
        }
        false
    }
}

/// Adaptive request concurrency for one store. See the module documentation.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
    freed: Notify,
}

/// One request's place under a [`Throttle`]; dropping it without [`Slot::answered`] (the
/// request failed without an answer) frees it without counting anything.
pub struct Slot {
    throttle: Arc<Throttle>,
    epoch: u64,
}

impl Throttle {
    pub fn new() -> Arc<Throttle> {
        Arc::new(Throttle::default())
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(epoch) = self.state.lock().expect("throttle lock").try_take() {
                return Slot {
                    throttle: self.clone(),
                    epoch,
                };
            }
            freed.await;
        }
    }

    pub fn stats(&self) -> ThrottleStats {
        let s = self.state.lock().expect("throttle lock");
        ThrottleStats {
            limit: s.limit,
            ..s.stats
        }
    }
}

/// True for the statuses providers throttle with: 429, and 503 (S3's SlowDown, GCS and Azure's
/// "server busy").
pub fn is_throttling(status: u16) -> bool {
    status == 429 || status == 503
}

impl Slot {
    /// The request got an answer with this HTTP status.
    pub fn answered(self, status: u16) {
        let grew = self
            .throttle
            .state
            .lock()
            .expect("throttle lock")
            .answer(self.epoch, is_throttling(status));
        if grew {
            self.throttle.freed.notify_one();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.throttle.state.lock().expect("throttle lock").in_flight -= 1;
        self.throttle.freed.notify_one();
    }
}

/// Slack after an idle spell: a reader that paused may catch up this much at full speed.
pub const BURST: Duration = Duration::from_millis(50);

/// A cap on bytes per second, shared by every transfer of a run.
#[derive(Debug)]
pub struct Bandwidth {
    bytes_per_second: f64,
    /// The end of the last booked interval.
    next: Mutex<Instant>,
}

impl Bandwidth {
    pub fn new(bytes_per_second: f64) -> Bandwidth {
        Bandwidth {
            bytes_per_second: bytes_per_second.max(1.0),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Accounts for `n` bytes just read; waits until the cap allows them.
    pub async fn pace(&self, n: usize) {
        let until = {
            let mut next = self.next.lock().expect("bandwidth lock");
            let now = Instant::now();
            let start = (*next).max(now.checked_sub(BURST).unwrap_or(now));
            *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_second);
            *next
        };
        tokio::time::sleep_until(until).await;
    }
}

/// object_store's HTTP client with every request taking a slot of the store's [`Throttle`].
pub mod object_store_http {
    use std::sync::Arc;

    use object_store::client::{
        HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
    };
    use object_store::ClientOptions;

    use super::Throttle;

    #[derive(Debug)]
    pub struct Connector(pub Arc<Throttle>);

    impl HttpConnector for Connector {
        fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
            Ok(HttpClient::new(Gated {
                inner: ReqwestConnector::default().connect(options)?,
                throttle: self.0.clone(),
            }))
        }
    }

    #[derive(Debug)]
    struct Gated {
        inner: HttpClient,
        throttle: Arc<Throttle>,
    }

    #[async_trait::async_trait]
    impl HttpService for Gated {
        async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
            let slot = self.throttle.acquire().await;
            let r = self.inner.execute(req).await;
            if let Ok(res) = &r {
                slot.answered(res.status().as_u16());
            }
            r
        }
    }
}

/// The AWS SDK's HTTP client with every request taking a slot of the store's [`Throttle`].
pub mod sdk_http {
    use std::sync::Arc;

    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

    use super::Throttle;

    /// Wraps the client the SDK builds by default (aws-smithy-runtime's `default_https_client`,
    /// which is not public): hyper 1 with rustls on aws-lc, proxy settings from the environment.
    pub fn client(throttle: Arc<Throttle>) -> SharedHttpClient {
        use aws_smithy_http_client::proxy::ProxyConfig;
        use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
        let inner = Builder::new().build_with_connector_fn(|settings, components| {
            let mut b = ConnectorBuilder::default()
                .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
            b.set_connector_settings(settings.cloned());
            if let Some(c) = components {
                b.set_sleep_impl(c.sleep_impl());
            }
            b.set_proxy_config(Some(ProxyConfig::from_env()));
            b.build()
        });
        SharedHttpClient::new(Client { inner, throttle })
    }

    #[derive(Debug)]
    struct Client {
        inner: SharedHttpClient,
        throttle: Arc<Throttle>,
    }

    impl HttpClient for Client {
        fn http_connector(
            &self,
            settings: &HttpConnectorSettings,
            components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(Connector {
                inner: self.inner.http_connector(settings, components),
                throttle: self.throttle.clone(),
            })
        }
    }

    #[derive(Debug)]
    struct Connector {
        inner: SharedHttpConnector,
        throttle: Arc<Throttle>,
    }

    impl HttpConnector for Connector {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let (inner, throttle) = (self.inner.clone(), self.throttle.clone());
            HttpConnectorFuture::new(async move {
                let slot = throttle.acquire().await;
                let r = inner.call(request).await;
                if let Ok(res) = &r {
                    slot.answered(res.status().as_u16());
                }
                r
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` requests at once in the current epoch and returns their epochs.
    fn send(s: &mut State, n: usize) -> Vec<u64> {
        (0..n).map(|_| s.try_take().expect("a slot")).collect()
    }

    #[test]
    fn one_overload_halves_once_and_recovery_is_additive() {
        let mut s = State::default();
        let epochs = send(&mut s, 64);
        // 64 rejections of requests sent in one round: one halving.
        for e in epochs {
            s.answer(e, true);
            s.in_flight -= 1;
        }
        assert_eq!(s.limit, Some(32));
        assert_eq!(s.stats.throttled, 64);
        assert_eq!(s.stats.decreases, 1);
        // Only 32 may be in flight now.
        let epochs = send(&mut s, 32);
        assert!(s.try_take().is_none());
        // A throttled answer from the new round halves again.
        s.answer(epochs[0], true);
        assert_eq!(s.limit, Some(16));
        assert_eq!(s.stats.lowest, Some(16));
        s.in_flight = 0;
        // 16 good answers add one slot; 17 more add another.
        let e = s.epoch;
        for _ in 0..16 {
            s.answer(e, false);
        }
        assert_eq!(s.limit, Some(17));
        for _ in 0..17 {
            s.answer(e, false);
        }
        assert_eq!(s.limit, Some(18));
        assert_eq!(s.stats.lowest, Some(16));
    }

    #[test]
    fn the_limit_never_falls_below_one() {
        let mut s = State::default();
        for _ in 0..20 {
            let e = send(&mut s, 1)[0];
            s.answer(e, true);
            s.in_flight -= 1;
        }
        assert_eq!(s.limit, Some(1));
        assert!(s.try_take().is_some());
        assert!(s.try_take().is_none());
    }

    #[test]
    fn unthrottled_stores_are_unlimited() {
        let mut s = State::default();
        let epochs = send(&mut s, 1000);
        for e in epochs {
            assert!(!s.answer(e, false));
        }
        assert_eq!(s.limit, None);
        assert_eq!(s.stats, ThrottleStats::default());
    }

    #[tokio::test]
    async fn waiters_proceed_when_a_slot_frees_or_the_limit_grows() {
        let t = Throttle::new();
        let a = t.acquire().await;
        let b = t.acquire().await;
        a.answered(503); // limit = 1 (two in flight, halved)
        assert_eq!(t.stats().limit, Some(1));
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.acquire().await.answered(200) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter got the freed slot")
            .unwrap();
        assert_eq!(t.stats().limit, Some(2), "one good answer at limit 1 adds a slot");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bandwidth_cap_holds_over_time() {
        let cap = Arc::new(Bandwidth::new(10.0 * 1024.0 * 1024.0));
        let started = Instant::now();
        // Four readers share the cap: 100 MiB in 64 KiB chunks at 10 MiB/s is 10 s.
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let cap = cap.clone();
                tokio::spawn(async move {
                    for _ in 0..400 {
                        cap.pace(64 * 1024).await;
                    }
                })
            })
            .collect();
        for r in readers {
            r.await.unwrap();
        }
        let took = started.elapsed().as_secs_f64();
        assert!((took - 10.0).abs() < 0.1, "took {took} s");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_spell_earns_only_a_short_burst() {
        let cap = Bandwidth::new(1_000_000.0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let started = Instant::now();
        // 1 MB after a minute idle still takes about a second, less the 50 ms of slack.
        for _ in 0..100 {
            cap.pace(10_000).await;
        }
        let took = started.elapsed().as_secs_f64();
        assert!((0.94..=1.0).contains(&took), "took {took} s");
    }
}
