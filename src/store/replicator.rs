//! Keeping a replica's snapshot in step with a PostgreSQL database it shares with
//! other replicas.

use std::collections::BTreeSet;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::postgres::PostgresBackend;
use super::{BackendError, Store};
use crate::policy::OrgId;

/// How a [`Replicator`] keeps its replica in step. The defaults suit most
/// deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct ReplicationOptions {
    /// How often every organization's data version is compared with what was
    /// published, as a safety net behind the notifications (default 30 s). Only the
    /// organizations whose version moved are reloaded and recompiled.
    pub resync_interval: Duration,
    /// The first wait before reconnecting after the database was lost (default 50 ms);
    /// it doubles after each failed attempt, up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest wait between reconnection attempts (default 5 s).
    pub max_backoff: Duration,
    /// How long one database operation of the replicator may take before the
    /// connection is taken for lost (default 10 s). The first load of an unloaded
    /// store is bounded per wait for the database (each row it reads), not as a
    /// whole: its length grows with the number of organizations.
    pub io_timeout: Duration,
    /// The least time between two warnings that the database is unreachable
    /// (default 10 s): the outage is logged, not every failed attempt.
    pub warn_interval: Duration,
    /// How often the replica writes its would-deny summaries to the database
    /// ([`Store::flush_would_deny`], when something was recorded since), so that
    /// every replica's `wouldDeny` answer includes them (default 10 s). What another
    /// replica recorded is at most this old in an answer, plus the time its flush
    /// takes ([`io_timeout`](Self::io_timeout) at worst).
    pub would_deny_flush_interval: Duration,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(30),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            warn_interval: Duration::from_secs(10),
            would_deny_flush_interval: Duration::from_secs(10),
        }
    }
}

impl ReplicationOptions {
    /// Sets the period of the full resync (at least 1 ms; shorter is taken as 1 ms).
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// Sets the first and the longest wait between reconnection attempts.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Sets how long one database operation may take.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Sets the least time between two warnings about an unreachable database.
    pub fn warn_interval(mut self, interval: Duration) -> Self {
        self.warn_interval = interval;
        self
    }

    /// Sets how often the would-deny summaries are written to the database (at least
    /// 1 ms; shorter is taken as 1 ms).
    pub fn would_deny_flush_interval(mut self, interval: Duration) -> Self {
        self.would_deny_flush_interval = interval;
        self
    }
}

/// Where a replica stands, from [`Replicator::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStatus {
    /// Whether the policies have been loaded at least once. Until then the layer
    /// answers 503 `policiesUnavailable` to requests that carry an identity.
    pub loaded: bool,
    /// Whether the replica is listening for changes and was up to date when it
    /// started to: every change committed from now on reaches it within moments.
    pub listening: bool,
    /// How long the replica may have been missing changes: zero while listening;
    /// otherwise the time since it stopped listening (or since replication started,
    /// if it never listened). `None` before the policies are loaded.
    pub staleness: Option<Duration>,
    /// How many times the replica started listening again after losing the database.
    pub reconnects: u64,
    /// Why the replica last lost, or could not reach, the database.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct State {
    listening: bool,
    /// When the replica was last known to be up to date, while not listening.
    lost_at: Instant,
    listened_before: bool,
    reconnects: u64,
    last_error: Option<String>,
}

/// Keeps one replica's [`Store`] in step with the PostgreSQL database that other
/// replicas write to. Started by [`PostgresBackend::replicate`]; replication stops
/// when it is dropped.
///
/// A background task
///
/// 1. opens a `LISTEN` connection on the schema's channel, then resynchronizes
///    ([`Store::resync`]; the first time, for a store made with
///    [`Store::unloaded`], that is the initial load, which ends the 503 answers);
/// 2. on each notification, reloads just the organization it names and publishes its
///    recompiled policies (a burst of notifications is coalesced);
/// 3. every [`resync_interval`](ReplicationOptions::resync_interval), checks the
///    `LISTEN` connection and resynchronizes, reloading only organizations whose
///    data version moved;
/// 4. when any of this fails (the database restarted, a network cut, a
///    `pg_terminate_backend`), keeps enforcing the last snapshot, reconnects with
///    exponential backoff, and resynchronizes before listening again, so a change
///    committed during the outage is not missed. While the database is unreachable it
///    logs a warning with the staleness in seconds every
///    [`warn_interval`](ReplicationOptions::warn_interval), and
///    [`status`](Self::status) reports it.
///
/// Listening starts before the resync that precedes it, so no change can fall
/// between the two.
pub struct Replicator {
    task: JoinHandle<()>,
    flusher: JoinHandle<()>,
    state: watch::Receiver<State>,
    store: Store,
}

impl Replicator {
    /// Where the replica stands: loaded, listening, how stale.
    #[must_use]
    pub fn status(&self) -> SyncStatus {
        let state = self.state.borrow();
        let loaded = self.store.is_loaded();
        SyncStatus {
            loaded,
            listening: state.listening,
            staleness: loaded.then(|| {
                if state.listening {
                    Duration::ZERO
                } else {
                    state.lost_at.elapsed()
                }
            }),
            reconnects: state.reconnects,
            last_error: state.last_error.clone(),
        }
    }

    /// Resolves once the replica is listening and up to date (at once if it is
    /// now), for start-up code and tests. It waits forever while the database is
    /// unreachable: bound it with a timeout.
    pub async fn until_listening(&self) {
        let mut state = self.state.clone();
        // An error means the task ended, which only dropping `self` does.
        let _ = state.wait_for(|state| state.listening).await;
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.task.abort();
        self.flusher.abort();
    }
}

impl fmt::Debug for Replicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicator")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

pub(super) fn spawn(
    backend: PostgresBackend,
    store: Store,
    options: ReplicationOptions,
) -> Replicator {
    let (state, receiver) = watch::channel(State {
        listening: false,
        lost_at: Instant::now(),
        listened_before: false,
        reconnects: 0,
        last_error: None,
    });
    let task = tokio::spawn(run(backend, store.clone(), options, state));
    let flusher = tokio::spawn(flush_would_deny(store.clone(), options));
    Replicator {
        task,
        flusher,
        state: receiver,
        store,
    }
}

async fn run(
    backend: PostgresBackend,
    store: Store,
    options: ReplicationOptions,
    state: watch::Sender<State>,
) {
    let mut backoff = options.min_backoff;
    let mut last_warning: Option<Instant> = None;
    loop {
        let (listened, err) = session(&backend, &store, &options, &state).await;
        if listened {
            backoff = options.min_backoff;
            last_warning = None;
        }
        state.send_modify(|state| {
            if state.listening {
                state.lost_at = Instant::now();
            }
            state.listening = false;
            state.last_error = Some(err.to_string());
        });
        if last_warning.is_none_or(|at| at.elapsed() >= options.warn_interval) {
            last_warning = Some(Instant::now());
            let retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
            if store.is_loaded() {
                let staleness_secs = state.borrow().lost_at.elapsed().as_secs_f64();
                tracing::warn!(
                    error = %err,
                    staleness_secs,
                    retry_in_ms,
                    "allowlist replication: the database is unreachable; enforcing the last policies loaded, which may be stale"
                );
            } else {
                tracing::warn!(
                    error = %err,
                    retry_in_ms,
                    "allowlist replication: the policies are not loaded yet; gated requests are refused with 503 until they are"
                );
            }
        } else {
            tracing::debug!(error = %err, "allowlist replication: reconnection failed");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// Listens until something fails; returns whether it got to listen, and what failed.
async fn session(
    backend: &PostgresBackend,
    store: &Store,
    options: &ReplicationOptions,
    state: &watch::Sender<State>,
) -> (bool, BackendError) {
    let limit = options.io_timeout;
    let channel = match within(limit, "migrating", backend.channel()).await {
        Ok(channel) => channel,
        Err(err) => return (false, err),
    };
    let mut listener = match within(limit, "listening", backend.listen(&channel, limit)).await {
        Ok(listener) => listener,
        Err(err) => return (false, err),
    };
    let resynced = if store.is_loaded() {
        within(limit, "resynchronizing", store.resync()).await
    } else {
        // The first load: bounded per wait for PostgreSQL, not as a whole (see
        // `PostgresBackend::load_all_waiting`).
        match backend.load_all_waiting(Some(limit)).await {
            Ok(records) => store.publish_first_load(records).await,
            Err(err) => Err(err),
        }
    };
    let reloaded = match resynced {
        Ok(reloaded) => reloaded,
        Err(err) => return (false, err),
    };
    let mut offline = Duration::ZERO;
    let mut reconnects = 0;
    state.send_modify(|state| {
        offline = state.lost_at.elapsed();
        if state.listened_before {
            state.reconnects += 1;
        }
        state.listened_before = true;
        state.listening = true;
        state.last_error = None;
        reconnects = state.reconnects;
    });
    tracing::info!(
        channel = %channel,
        organizations_reloaded = reloaded,
        reconnects,
        offline_secs = offline.as_secs_f64(),
        "allowlist replication: listening for changes"
    );

    let period = options.resync_interval.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = listener.try_recv() => {
                let first = match received {
                    Ok(Some(notification)) => notification,
                    Ok(None) => {
                        return (true, BackendError::new("the LISTEN connection to PostgreSQL was closed"));
                    }
                    Err(err) => return (true, backend.error(err)),
                };
                let mut orgs = BTreeSet::from([first.payload().to_owned()]);
                // Coalesce a burst: take what has already arrived, without waiting.
                while orgs.len() < 256 {
                    match now_or_never(listener.try_recv()).await {
                        Some(Ok(Some(notification))) => {
                            orgs.insert(notification.payload().to_owned());
                        }
                        Some(Ok(None)) => {
                            return (true, BackendError::new("the LISTEN connection to PostgreSQL was closed"));
                        }
                        Some(Err(err)) => return (true, backend.error(err)),
                        None => break,
                    }
                }
                for org in orgs {
                    let org = OrgId::from(org);
                    if let Err(err) = within(limit, "reloading an organization", store.reload_org(&org)).await {
                        return (true, err);
                    }
                    tracing::debug!(organization = %org, "allowlist replication: reloaded after a change notification");
                }
            }
            _ = ticker.tick() => {
                let alive = within(limit, "checking the LISTEN connection", async {
                    sqlx::query("SELECT 1")
                        .execute(&mut listener)
                        .await
                        .map_err(|err| backend.error(err))
                })
                .await;
                if let Err(err) = alive {
                    return (true, err);
                }
                match within(limit, "resynchronizing", store.resync()).await {
                    Ok(reloaded) => tracing::debug!(
                        organizations_reloaded = reloaded,
                        "allowlist replication: periodic resync"
                    ),
                    Err(err) => return (true, err),
                }
            }
        }
    }
}

/// Writes the replica's would-deny summaries every
/// [`would_deny_flush_interval`](ReplicationOptions::would_deny_flush_interval), when
/// they changed. A failure is retried on the next tick (said once at WARN per
/// outage: the resync loop reports the outage itself).
async fn flush_would_deny(store: Store, options: ReplicationOptions) {
    let period = options
        .would_deny_flush_interval
        .max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        let flushed = within(
            options.io_timeout,
            "writing the would-deny summaries",
            store.flush_would_deny(),
        )
        .await;
        match flushed {
            Ok(wrote) => {
                if wrote {
                    tracing::trace!("allowlist replication: would-deny summaries written");
                }
                failing = false;
            }
            Err(err) => {
                // A flush cut short by the timeout did not get to say so itself.
                store.handle().would_deny().mark_changed();
                if failing {
                    tracing::debug!(error = %err, "allowlist replication: the would-deny summaries could not be written");
                } else {
                    tracing::warn!(error = %err, "allowlist replication: the would-deny summaries could not be written; other replicas' wouldDeny answers miss this replica's until the next successful write");
                }
                failing = true;
            }
        }
    }
}

/// Polls `future` once: its output if it is ready, `None` otherwise (it is then
/// dropped, which `PgListener::try_recv` allows: it is cancel-safe).
async fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// `future`, or an error naming `what` if it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    bounded(Some(limit), what, future).await?
}

/// `future`'s output, or, past `limit` (when there is one), the error that says
/// PostgreSQL is taken for lost while doing `what`.
pub(super) async fn bounded<T>(
    limit: Option<Duration>,
    what: &str,
    future: impl Future<Output = T>,
) -> Result<T, BackendError> {
    let Some(limit) = limit else {
        return Ok(future.await);
    };
    tokio::time::timeout(limit, future).await.map_err(|_| {
        BackendError::new(format!(
            "PostgreSQL did not answer within {limit:?} while {what}: the connection is taken for lost"
        ))
    })
}
