//! Objects in flight that find their own level (issue 19). Between remote stores the right
//! number depends on the round trip: each small object costs a GET and a PUT, so N in flight
//! copy at most N / (2 x RTT) objects a second, and what helps at 80 ms (hundreds) only adds
//! overhead on a LAN. So a job starts at the default and climbs while throughput does: every
//! window, the work finished per second (objects, plus MiB) is compared with the best window
//! so far; a gain of 5% or more raises the limit by half, up to the ceiling; a window without
//! one returns to the last limit that gained and settles there. A later drop of a third (the
//! server slowing, larger objects) lowers it by a third. The AIMD throttle (`throttle`) stays the
//! brake on 429 and 503 answers, request by request; the memory budget still bounds the bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often the limit is looked at.
pub(super) const WINDOW: Duration = Duration::from_millis(500);
/// Work units per MiB copied (an object is one unit): large objects count by their bytes.
const UNITS_PER_MIB: u64 = 1;

/// The climb itself, pure: fed each window's rate, says the limit.
#[derive(Debug, Clone)]
pub(super) struct Climb {
    limit: usize,
    floor: usize,
    ceiling: usize,
    /// The best rate seen, and the limit it was seen at.
    best: Option<(f64, usize)>,
    settled: bool,
    pub(super) peak: usize,
}

impl Climb {
    pub(super) fn new(start: usize, ceiling: usize) -> Climb {
        let start = start.min(ceiling).max(1);
        Climb {
            limit: start,
            floor: start,
            ceiling: ceiling.max(start),
            best: None,
            settled: false,
            peak: start,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// The limit after a window whose work rate was `rate` units a second. A window with no
    /// work finished says nothing (listing, one large object) and changes nothing.
    pub(super) fn step(&mut self, rate: f64) -> usize {
        if rate <= 0.0 {
            return self.limit;
        }
        match self.best {
            None => self.best = Some((rate, self.limit)),
            Some((best, at)) if !self.settled => {
                if rate >= best * 1.05 {
                    self.best = Some((rate, self.limit));
                } else {
                    // No gain from the last raise: back to where the gain was, and stay.
                    self.limit = at;
                    self.settled = true;
                    return self.limit;
                }
            }
            Some((best, _)) => {
                if rate < best * 0.66 && self.limit > self.floor {
                    self.limit = (self.limit * 2 / 3).max(self.floor);
                    self.best = Some((rate, self.limit));
                } else if rate > best {
                    self.best = Some((rate, self.limit));
                }
                return self.limit;
            }
        }
        if self.limit < self.ceiling {
            self.limit = (self.limit + self.limit.div_ceil(2)).min(self.ceiling);
            self.peak = self.peak.max(self.limit);
        } else {
            self.settled = true;
        }
        self.limit
    }
}

/// The gate every object of a job passes: as many permits as the climb's limit.
pub(super) struct Gate {
    permits: Arc<Semaphore>,
    work: AtomicU64,
    climb: Mutex<Climb>,
}

impl Gate {
    pub(super) fn new(start: usize, ceiling: usize) -> Arc<Gate> {
        let climb = Climb::new(start, ceiling);
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(climb.limit())),
            work: AtomicU64::new(0),
            climb: Mutex::new(climb),
        })
    }

    pub(super) async fn enter(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the gate is never closed")
    }

    /// An object of `size` bytes is done (copied or failed).
    pub(super) fn done(&self, size: u64) {
        self.work.fetch_add(1 + (size >> 20) * UNITS_PER_MIB, Ordering::Relaxed);
    }

    /// The highest limit the job reached.
    pub(super) fn peak(&self) -> usize {
        self.climb.lock().expect("climb lock").peak
    }

    /// Starts adjusting the limit every [`WINDOW`], until the returned guard is dropped.
    pub(super) fn start(self: &Arc<Gate>) -> Driver {
        Driver(tokio::spawn(self.clone().drive()))
    }

    async fn drive(self: Arc<Gate>) {
        let mut tick = tokio::time::interval(WINDOW);
        tick.tick().await;
        let mut last = 0;
        loop {
            tick.tick().await;
            let now = self.work.load(Ordering::Relaxed);
            let rate = (now - last) as f64 / WINDOW.as_secs_f64();
            last = now;
            let (before, after) = {
                let mut c = self.climb.lock().expect("climb lock");
                let before = c.limit();
                (before, c.step(rate))
            };
            if after > before {
                self.permits.add_permits(after - before);
            } else if after < before {
                // Taken back as objects finish: the permits are forgotten once acquired.
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned((before - after) as u32).await {
                        p.forget();
                    }
                });
            }
        }
    }
}

/// Stops a gate's driver when the job's copies end (or are dropped, on a signal).
pub(super) struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::Climb;

    #[test]
    fn climbs_while_throughput_grows_then_settles_where_it_last_gained() {
        let mut c = Climb::new(64, 256);
        assert_eq!(c.step(100.0), 96);
        assert_eq!(c.step(150.0), 144);
        assert_eq!(c.step(220.0), 216);
        // 216 gained nothing over 144: back to 144 and stay.
        assert_eq!(c.step(221.0), 144);
        assert_eq!(c.step(400.0), 144);
        assert_eq!(c.peak, 216);
    }

    #[test]
    fn stops_at_the_ceiling_and_a_drop_lowers_it_but_not_below_the_start() {
        let mut c = Climb::new(64, 100);
        assert_eq!(c.step(10.0), 96);
        assert_eq!(c.step(20.0), 100);
        assert_eq!(c.step(30.0), 100);
        assert_eq!(c.step(5.0), 66);
        assert_eq!(c.step(1.0), 64);
        assert_eq!(c.step(0.5), 64);
    }

    #[test]
    fn idle_windows_change_nothing_and_a_ceiling_below_the_start_wins() {
        let mut c = Climb::new(64, 16);
        assert_eq!(c.limit(), 16);
        assert_eq!(c.step(0.0), 16);
        assert_eq!(c.step(50.0), 16);
        assert_eq!(c.peak, 16);
    }
}
