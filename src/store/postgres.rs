//! The PostgreSQL backend: one database shared by several replicas.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Acquire, Row};
use tokio::sync::OnceCell;

use super::api_token::ApiTokenRecord;
use super::audit::{
    from_micros, micros, AuditDraft, AuditQuery, AuditRecord, AuditRetention, PRUNE_BATCH,
};
use super::backend::{BoxFuture, Change, Updated};
use super::replicator::{self, ReplicationOptions, Replicator};
use super::{document, join_blocking, Backend, BackendError, OrgRecord, Store, StoreError};
use crate::policy::{OrgId, UserId};
use crate::report::{NamedSummary, RuleKind, RuleSummary, WouldDenyCaller};

/// Schema migrations, applied in order by the first replica that connects; each runs
/// once.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE allowlist_orgs (
        org_id TEXT PRIMARY KEY,
        version BIGINT NOT NULL CHECK (version > 0),
        document JSONB NOT NULL
    )",
    ),
    (
        2,
        "CREATE TABLE allowlist_audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        org_id TEXT NOT NULL,
        time_us BIGINT NOT NULL,
        actor TEXT NOT NULL,
        client_ip TEXT,
        forced BOOLEAN NOT NULL,
        operation TEXT NOT NULL,
        entity_type TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        version_before BIGINT NOT NULL,
        version_after BIGINT NOT NULL,
        before JSONB,
        after JSONB
    )",
    ),
    (
        3,
        "CREATE INDEX allowlist_audit_org ON allowlist_audit (org_id, id)",
    ),
    (
        4,
        "CREATE TABLE allowlist_would_deny (
        org_id TEXT NOT NULL,
        rule_kind TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        replica TEXT NOT NULL,
        since_ms BIGINT NOT NULL,
        other_requests BIGINT NOT NULL,
        total_requests BIGINT NOT NULL,
        callers JSONB NOT NULL,
        flushed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (org_id, rule_kind, rule_id, replica)
    )",
    ),
    // Only the SHA-256 of a token is kept.
    (
        5,
        "CREATE TABLE allowlist_api_tokens (
        org_id TEXT NOT NULL,
        id TEXT NOT NULL,
        hash BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
        owner TEXT NOT NULL,
        groups TEXT NOT NULL,
        permissions TEXT NOT NULL,
        name TEXT NOT NULL,
        created_us BIGINT NOT NULL,
        expires_us BIGINT,
        last_used_us BIGINT,
        PRIMARY KEY (org_id, id)
    )",
    ),
];

/// Writes a replica's would-deny summaries, one row per rule, its callers as JSON.
const INSERT_WOULD_DENY: &str = "INSERT INTO allowlist_would_deny
    (replica, org_id, rule_kind, rule_id, since_ms, other_requests, total_requests, callers)
    SELECT $1, o, k, r, s, ot, t, c::jsonb
    FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])
        AS u(o, k, r, s, ot, t, c)";

/// Inserts an audit record.
const INSERT_AUDIT: &str = "INSERT INTO allowlist_audit
    (org_id, time_us, actor, client_ip, forced, operation, entity_type, entity_id,
     version_before, version_after, before, after)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb)";

/// Deletes, oldest first and at most `$4` of them, the organization's records beyond
/// the newest `$2` or older than `$3` microseconds; never the newest, the record of
/// the change being committed.
const PRUNE_AUDIT: &str = "DELETE FROM allowlist_audit WHERE id IN (
    SELECT id FROM allowlist_audit
    WHERE org_id = $1
    AND id < (SELECT MAX(id) FROM allowlist_audit WHERE org_id = $1)
    AND (
        time_us < $3
        OR id <= (SELECT id FROM allowlist_audit WHERE org_id = $1
                  ORDER BY id DESC LIMIT 1 OFFSET $2))
    ORDER BY id LIMIT $4)";

/// Reads the organization's records, newest first.
const SELECT_AUDIT: &str = "SELECT id, org_id, time_us, actor, client_ip, forced, operation,
        entity_type, entity_id, version_before, version_after,
        before::text AS before, after::text AS after
    FROM allowlist_audit
    WHERE org_id = $1 AND time_us >= $2 AND time_us <= $3 AND id < $4
        AND ($5::text IS NULL OR entity_id = $5::text)
        AND ($6::text IS NULL OR actor = $6::text)
    ORDER BY id DESC LIMIT $7";

/// The advisory lock (one-`bigint` key space) held while migrating, so replicas that
/// start together migrate one after the other. ASCII `allowlst`.
const MIGRATION_LOCK: i64 = 0x616c_6c6f_776c_7374;

/// The class of the per-organization advisory write locks (two-`int4` key space, which
/// does not overlap the one-`bigint` space); the other half is `hashtext(org_id)`.
/// ASCII `allw`.
const ORG_LOCK_CLASS: i32 = 0x616c_6c77;

/// Rows of [`Backend::load_all`] decoded per task on the blocking pool: big enough
/// that a task outweighs its scheduling, small enough that the first batches are
/// decoded while the last rows are still arriving.
const LOAD_BATCH: usize = 1024;

/// The longest organization id a change notification can carry (PostgreSQL refuses
/// payloads of 8000 bytes or more).
const MAX_ORG_ID_BYTES: usize = 7999;

/// Where a [`PostgresBackend`] connects, and how. See [`PostgresBackend`] for the
/// shorthands most applications need.
///
/// The URL's password is never printed: `Debug` and error messages name the host,
/// port, database, user and schema only.
#[derive(Clone)]
#[must_use]
pub struct PostgresOptions {
    connect: PgConnectOptions,
    schema: Option<String>,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl PostgresOptions {
    /// Options for the database at `url`
    /// (`postgres://user:password@host:port/database?sslmode=...`; libpq's query
    /// parameters, such as `options=-csearch_path%3Dname`, are understood). Nothing
    /// is connected yet.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when `url` is not a PostgreSQL URL.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(BackendError::new(
                "the PostgreSQL URL must start with postgres:// or postgresql://: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
            ));
        }
        let connect = PgConnectOptions::from_str(url).map_err(|err| {
            BackendError::new(format!(
                "the PostgreSQL URL is invalid ({err}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ))
        })?;
        let connect = match connect.get_application_name() {
            Some(_) => connect,
            None => connect.application_name("tower-ip-allowlist"),
        };
        Ok(Self {
            connect,
            schema: None,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        })
    }

    /// Keeps the tables in `schema`, created if missing, instead of the connection's
    /// default (the first existing schema of its `search_path`, usually `public`).
    /// Several applications, or parallel tests, can then share one database; each
    /// schema also has its own change-notification channel.
    ///
    /// # Errors
    ///
    /// [`BackendError`] unless `schema` is 1 to 63 lowercase ASCII letters, digits and
    /// `_`, starting with a letter or `_`, and not starting with `pg_` (reserved).
    pub fn schema(mut self, schema: &str) -> Result<Self, BackendError> {
        check_schema(schema)?;
        self.connect = self.connect.options([("search_path", schema)]);
        self.schema = Some(schema.to_owned());
        Ok(self)
    }

    /// The most connections the backend keeps open for reads and writes (default 8).
    /// A [`Replicator`] opens one more, for `LISTEN`.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a read or write waits for a connection before failing (default 5 s):
    /// with the database down, how long the admin API takes to answer 503.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Connects and applies pending schema migrations.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the database cannot be reached or migrated.
    pub async fn connect(self) -> Result<PostgresBackend, BackendError> {
        let backend = self.connect_lazy();
        backend.migrate().await?;
        Ok(backend)
    }

    /// A backend that connects, and migrates, on first use: for a replica that must
    /// start while its database is down (with [`Store::unloaded`] and
    /// [`PostgresBackend::replicate`]). Needs a Tokio runtime when first used, not
    /// now.
    #[must_use]
    pub fn connect_lazy(self) -> PostgresBackend {
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(self.connect.clone());
        PostgresBackend {
            inner: Arc::new(Shared {
                target: target(&self.connect, self.schema.as_deref()),
                pool,
                connect: self.connect,
                schema: self.schema,
                ready: OnceCell::new(),
            }),
        }
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("target", &target(&self.connect, self.schema.as_deref()))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

/// Keeps the store in a PostgreSQL database that several replicas share.
///
/// - **One table**, `allowlist_orgs (org_id, version, document)`: each organization is
///   one row holding its JSON document and its data version. Migrations are embedded
///   and applied at start inside a transaction holding an advisory lock, so replicas
///   that start together do not race.
/// - **One transaction per change.** A writer takes a transaction-scoped advisory lock
///   on the organization (held until commit, and taken even when the organization
///   has no row yet), loads the current row, validates the change against it (limits,
///   policy versions), and writes `version + 1`; the write also checks that the
///   stored version did not move. Two replicas racing on one policy thus cannot both
///   win (the loser gets [`StoreError::VersionMismatch`]), and a 101st policy cannot
///   slip in under concurrent creates.
/// - **A notification per change**: the same transaction runs `pg_notify` on the
///   schema's channel with the organization id, delivered to every listener at
///   commit. [`replicate`](Self::replicate) starts the [`Replicator`] that listens,
///   reloads just that organization, resynchronizes after a lost connection and
///   periodically, and reports staleness.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use tower_ip_allowlist::snapshot::SnapshotHandle;
/// use tower_ip_allowlist::store::{Limits, PostgresBackend, ReplicationOptions, Store};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = PostgresBackend::connect("postgres://allowlist@db.internal/allowlist").await?;
/// let store = Store::open(Arc::new(backend.clone()), SnapshotHandle::default(), Limits::default()).await?;
/// // Keep it alive as long as the store serves: dropping it stops replication.
/// let replicator = backend.replicate(&store, ReplicationOptions::default());
/// # drop(replicator);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    /// For the replicator's own `LISTEN` connection.
    connect: PgConnectOptions,
    /// The schema given to [`PostgresOptions::schema`], if any.
    schema: Option<String>,
    /// Host, port, database, user and schema, for messages (no password).
    target: String,
    ready: OnceCell<Ready>,
}

/// What migrating found out.
struct Ready {
    /// The notification channel of the schema the tables are in.
    channel: String,
}

impl PostgresBackend {
    /// Connects to the database at `url` and applies pending schema migrations; the
    /// tables go in the connection's default schema. See [`PostgresOptions`] for the
    /// other settings.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the URL is invalid or the database cannot be reached or
    /// migrated.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        PostgresOptions::new(url)?.connect().await
    }

    /// As [`connect`](Self::connect), with the tables in `schema` (created if
    /// missing); see [`PostgresOptions::schema`].
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the URL or the schema name is invalid, or the database
    /// cannot be reached or migrated.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, BackendError> {
        PostgresOptions::new(url)?.schema(schema)?.connect().await
    }

    /// Applies pending schema migrations now, if this backend has not yet (a backend
    /// made with [`PostgresOptions::connect_lazy`] does on first use).
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the database cannot be reached or migrated.
    pub async fn migrate(&self) -> Result<(), BackendError> {
        self.ready().await.map(|_| ())
    }

    /// Starts replicating into `store`, which must have been made on this backend (or
    /// a clone of it): see [`Replicator`]. Replication stops when the returned
    /// [`Replicator`] is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    #[must_use = "replication stops when the Replicator is dropped"]
    pub fn replicate(&self, store: &Store, options: ReplicationOptions) -> Replicator {
        replicator::spawn(self.clone(), store.clone(), options)
    }

    /// Closes the connection pool: waits for the connections in use to come back,
    /// then ends each one politely, so the database logs no broken connection. For
    /// the end of a clean shutdown, after the server stopped serving and the
    /// [`Replicator`] was dropped; reads and writes after it fail with
    /// [`BackendError`]. Every clone of this backend shares the pool.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// The notification channel of this backend's schema, migrating first if needed.
    pub(super) async fn channel(&self) -> Result<String, BackendError> {
        Ok(self.ready().await?.channel.clone())
    }

    /// A new `LISTEN` connection on `channel`, on a pool of its own (one connection
    /// that does not time out), that does not reconnect by itself.
    pub(super) async fn listen(
        &self,
        channel: &str,
        timeout: Duration,
    ) -> Result<PgListener, BackendError> {
        let connect = self
            .inner
            .connect
            .clone()
            .application_name("tower-ip-allowlist listener");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(connect)
            .await
            .map_err(|err| self.error(err))?;
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|err| self.error(err))?;
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener
            .listen(channel)
            .await
            .map_err(|err| self.error(err))?;
        Ok(listener)
    }

    /// Maps a driver error, naming the server for the errors that are about reaching
    /// it.
    pub(super) fn error(&self, err: sqlx::Error) -> BackendError {
        match err {
            sqlx::Error::PoolTimedOut => BackendError::new(format!(
                "PostgreSQL at {} could not be reached, or had no free connection, within the acquire timeout: check that it is up and reachable, and that max_connections suffices",
                self.inner.target
            )),
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => {
                BackendError::new(format!(
                    "cannot reach PostgreSQL at {}: {err}",
                    self.inner.target
                ))
            }
            sqlx::Error::Database(db) if refuses_value(db.code().as_deref()) => {
                BackendError::refused(format!(
                    "PostgreSQL refused it (SQLSTATE {}): {}",
                    db.code().unwrap_or_default(),
                    db.message()
                ))
            }
            err => BackendError::new(format!("PostgreSQL ({}): {err}", self.inner.target)),
        }
    }

    async fn ready(&self) -> Result<&Ready, BackendError> {
        self.inner
            .ready
            .get_or_try_init(|| self.migrate_now())
            .await
    }

    /// Every organization, as [`Backend::load_all`]. With `io_timeout` (a replica's
    /// first load), each wait for PostgreSQL (migrating, the next row) is bounded by
    /// it, not the whole load: reading, decoding and compiling take longer the more
    /// organizations there are and the busier the machine is (on a shared machine of
    /// two cores, 100,000 took 1 to 3 s, 12 s when it was very busy, and a million
    /// 33 s), and a first load bounded as a whole would be cut and retried forever once
    /// it outgrew the bound, leaving the replica refusing every request with 503.
    pub(super) async fn load_all_waiting(
        &self,
        io_timeout: Option<Duration>,
    ) -> Result<Vec<(OrgId, OrgRecord)>, BackendError> {
        replicator::bounded(io_timeout, "migrating", self.ready()).await??;
        // One query, so that the load is one consistent state of the table. Its
        // rows are streamed and decoded (JSON, then validated as new input, the
        // bulk of a cold start) in batches on the blocking pool while the next
        // rows arrive, at most one batch per core at a time: the pool would start a
        // thread for every batch that waits.
        let mut rows =
            sqlx::query("SELECT org_id, version, document::text AS document FROM allowlist_orgs")
                .fetch(&self.inner.pool);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let mut decoding = std::collections::VecDeque::with_capacity(cores);
        let mut records = Vec::new();
        let mut batch = Vec::with_capacity(LOAD_BATCH);
        loop {
            let next = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx));
            let row = replicator::bounded(io_timeout, "loading every organization", next).await?;
            let end = row.is_none();
            if let Some(row) = row {
                batch.push(row.map_err(|err| self.error(err))?);
            }
            if batch.len() == LOAD_BATCH || (end && !batch.is_empty()) {
                if decoding.len() >= cores {
                    if let Some(oldest) = decoding.pop_front() {
                        records.extend(decoded(oldest).await?);
                    }
                }
                let backend = self.clone();
                let rows = std::mem::replace(&mut batch, Vec::with_capacity(LOAD_BATCH));
                decoding.push_back(tokio::task::spawn_blocking(move || {
                    backend.decode_all(&rows)
                }));
            }
            if end {
                break;
            }
        }
        for batch in decoding {
            records.extend(decoded(batch).await?);
        }
        Ok(records)
    }

    async fn migrate_now(&self) -> Result<Ready, BackendError> {
        let db = |err| self.error(err);
        let mut tx = self.inner.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(schema) = &self.inner.schema {
            // Validated by `PostgresOptions::schema`: a plain identifier.
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let Some(schema) = schema else {
            return Err(BackendError::new(format!(
                "PostgreSQL at {}: the connection's search_path names no existing schema: create it, or give the schema to the backend",
                self.inner.target
            )));
        };
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS allowlist_schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for (version, sql) in MIGRATIONS {
            let applied =
                sqlx::query("SELECT 1 FROM allowlist_schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?
                    .is_some();
            if !applied {
                sqlx::query(sql).execute(&mut *tx).await.map_err(db)?;
                sqlx::query("INSERT INTO allowlist_schema_migrations (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tracing::info!(version, schema = %schema, "allowlist: applied a PostgreSQL schema migration");
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(Ready {
            channel: channel_name(&schema),
        })
    }

    /// Prunes what the retention no longer keeps, in a savepoint of the change's
    /// transaction: a failure is logged and undone (PostgreSQL would otherwise abort
    /// the whole transaction), and the change still commits.
    async fn prune_audit(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        org: &OrgId,
        audit: &AuditDraft,
    ) {
        let retention = audit.retention();
        if retention == AuditRetention::default() {
            return;
        }
        let (keep, cutoff) = retention.bounds(std::time::SystemTime::now());
        let result = async {
            let mut savepoint = tx.begin().await?;
            sqlx::query(PRUNE_AUDIT)
                .bind(org.as_str())
                .bind(keep)
                .bind(cutoff)
                .bind(i64::from(PRUNE_BATCH))
                .execute(&mut *savepoint)
                .await?;
            savepoint.commit().await
        }
        .await;
        if let Err(err) = result {
            let err = self.error(err);
            tracing::warn!(organization = %org, error = %err, "allowlist: could not prune audit records; the change is kept, pruning is retried on the next change");
        }
    }

    fn audit_row(&self, row: &PgRow) -> Result<AuditRecord, BackendError> {
        let corrupt =
            |what: &str| BackendError::new(format!("PostgreSQL: corrupt audit record: {what}"));
        let id: i64 = row.try_get("id").map_err(|err| self.error(err))?;
        let version = |column: &str| -> Result<u64, BackendError> {
            let value: i64 = row.try_get(column).map_err(|err| self.error(err))?;
            u64::try_from(value).map_err(|_| corrupt(column))
        };
        let document = |column: &str| -> Result<Option<serde_json::Value>, BackendError> {
            let text: Option<String> = row.try_get(column).map_err(|err| self.error(err))?;
            text.map(|text| serde_json::from_str(&text).map_err(|_| corrupt(column)))
                .transpose()
        };
        let text = |column: &str| -> Result<String, BackendError> {
            row.try_get(column).map_err(|err| self.error(err))
        };
        let client_ip: Option<String> = row.try_get("client_ip").map_err(|err| self.error(err))?;
        Ok(AuditRecord {
            id: u64::try_from(id).map_err(|_| corrupt("id"))?,
            time: from_micros(row.try_get("time_us").map_err(|err| self.error(err))?),
            org: OrgId::from(text("org_id")?),
            actor: text("actor")?,
            client_ip: client_ip
                .map(|ip| ip.parse().map_err(|_| corrupt("client_ip")))
                .transpose()?,
            forced: row.try_get("forced").map_err(|err| self.error(err))?,
            operation: text("operation")?,
            entity_type: text("entity_type")?,
            entity_id: text("entity_id")?,
            version_before: version("version_before")?,
            version_after: version("version_after")?,
            before: document("before")?,
            after: document("after")?,
        })
    }

    /// Inserts `record` in `tx`: an organization change's audit record, or a token's.
    async fn insert_audit(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        record: &AuditRecord,
    ) -> Result<(), BackendError> {
        let version =
            |v: u64| i64::try_from(v).map_err(|_| BackendError::new("data version overflow"));
        sqlx::query(INSERT_AUDIT)
            .bind(record.org.as_str())
            .bind(record.time_micros())
            .bind(&record.actor)
            .bind(record.client_ip.map(|ip| ip.to_string()))
            .bind(record.forced)
            .bind(&record.operation)
            .bind(&record.entity_type)
            .bind(&record.entity_id)
            .bind(version(record.version_before)?)
            .bind(version(record.version_after)?)
            .bind(record.before.as_ref().map(ToString::to_string))
            .bind(record.after.as_ref().map(ToString::to_string))
            .execute(&mut **tx)
            .await
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    fn token_row(&self, row: &PgRow) -> Result<ApiTokenRecord, BackendError> {
        let corrupt =
            |what: &str| BackendError::new(format!("PostgreSQL: corrupt API token record: {what}"));
        let get_text = |column: &str| -> Result<String, BackendError> {
            row.try_get(column).map_err(|err| self.error(err))
        };
        let list = |column: &str| -> Result<Vec<String>, BackendError> {
            serde_json::from_str(&get_text(column)?).map_err(|_| corrupt(column))
        };
        let time = |column: &str| -> Result<Option<std::time::SystemTime>, BackendError> {
            let value: Option<i64> = row.try_get(column).map_err(|err| self.error(err))?;
            Ok(value.map(from_micros))
        };
        let hash: Vec<u8> = row.try_get("hash").map_err(|err| self.error(err))?;
        Ok(ApiTokenRecord {
            id: get_text("id")?,
            org: OrgId::from(get_text("org_id")?),
            owner: UserId::from(get_text("owner")?),
            groups: list("groups")?.into_iter().map(Into::into).collect(),
            permissions: list("permissions")?,
            name: get_text("name")?,
            hash: hash.try_into().map_err(|_| corrupt("hash"))?,
            created: time("created_us")?.ok_or_else(|| corrupt("created_us"))?,
            expires: time("expires_us")?,
            last_used: time("last_used_us")?,
        })
    }

    fn record(&self, org: &OrgId, row: &PgRow) -> Result<OrgRecord, BackendError> {
        let text: String = row.try_get("document").map_err(|err| self.error(err))?;
        document::decode(org, self.version_of(row)?, &text)
    }

    /// Decodes rows of `load_all`.
    fn decode_all(&self, rows: &[PgRow]) -> Result<Vec<(OrgId, OrgRecord)>, BackendError> {
        rows.iter()
            .map(|row| {
                let org = OrgId::from(
                    row.try_get::<String, _>("org_id")
                        .map_err(|err| self.error(err))?,
                );
                let record = self.record(&org, row)?;
                Ok((org, record))
            })
            .collect()
    }

    fn version_of(&self, row: &PgRow) -> Result<u64, BackendError> {
        let version: i64 = row.try_get("version").map_err(|err| self.error(err))?;
        u64::try_from(version)
            .map_err(|_| BackendError::new(format!("negative data version {version}")))
    }
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

impl Backend for PostgresBackend {
    fn shares_would_deny(&self) -> bool {
        true
    }

    fn flush_would_deny<'a>(
        &'a self,
        replica: &'a str,
        summaries: &'a [NamedSummary],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let db = |err| self.error(err);
            let mut columns: (Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
            let mut counts: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
            let mut callers = Vec::with_capacity(summaries.len());
            for named in summaries {
                columns.0.push(&named.organization);
                columns.1.push(named.kind.as_str());
                columns.2.push(&named.rule);
                counts.0.push(millis(named.summary.since));
                counts.1.push(saturate(named.summary.other_requests));
                counts.2.push(saturate(named.summary.total_requests));
                callers.push(encode_callers(&named.summary.callers));
            }
            // The replica's rows are replaced as a whole: they are its summaries as of
            // this flush, nothing older.
            let mut tx = self.inner.pool.begin().await.map_err(db)?;
            sqlx::query("DELETE FROM allowlist_would_deny WHERE replica = $1")
                .bind(replica)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if !summaries.is_empty() {
                sqlx::query(INSERT_WOULD_DENY)
                    .bind(replica)
                    .bind(&columns.0)
                    .bind(&columns.1)
                    .bind(&columns.2)
                    .bind(&counts.0)
                    .bind(&counts.1)
                    .bind(&counts.2)
                    .bind(&callers)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        })
    }

    fn would_deny<'a>(
        &'a self,
        org: &'a OrgId,
        kind: RuleKind,
        rule: &'a str,
        except: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RuleSummary>, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let rows = sqlx::query(
                "SELECT since_ms, other_requests, total_requests, callers::text AS callers
                 FROM allowlist_would_deny
                 WHERE org_id = $1 AND rule_kind = $2 AND rule_id = $3 AND replica <> $4",
            )
            .bind(org.as_str())
            .bind(kind.as_str())
            .bind(rule)
            .bind(except)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|err| self.error(err))?;
            rows.iter()
                .map(|row| {
                    let db = |err| self.error(err);
                    let since: i64 = row.try_get("since_ms").map_err(db)?;
                    let other: i64 = row.try_get("other_requests").map_err(db)?;
                    let total: i64 = row.try_get("total_requests").map_err(db)?;
                    let callers: String = row.try_get("callers").map_err(db)?;
                    let mut summary = RuleSummary::new(from_millis(since));
                    summary.other_requests = u64::try_from(other).unwrap_or(0);
                    summary.total_requests = u64::try_from(total).unwrap_or(0);
                    summary.callers = decode_callers(&callers)?;
                    Ok(summary)
                })
                .collect()
        })
    }

    fn forget_would_deny<'a>(
        &'a self,
        org: &'a OrgId,
        kind: RuleKind,
        rule: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            sqlx::query(
                "DELETE FROM allowlist_would_deny WHERE org_id = $1 AND rule_kind = $2 AND rule_id = $3",
            )
            .bind(org.as_str())
            .bind(kind.as_str())
            .bind(rule)
            .execute(&self.inner.pool)
            .await
            .map(|_| ())
            .map_err(|err| self.error(err))
        })
    }

    fn load_all(&self) -> BoxFuture<'_, Result<Vec<(OrgId, OrgRecord)>, BackendError>> {
        Box::pin(self.load_all_waiting(None))
    }

    fn load<'a>(
        &'a self,
        org: &'a OrgId,
    ) -> BoxFuture<'a, Result<Option<OrgRecord>, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let row = sqlx::query(
                "SELECT version, document::text AS document FROM allowlist_orgs WHERE org_id = $1",
            )
            .bind(org.as_str())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|err| self.error(err))?;
            row.map(|row| self.record(org, &row)).transpose()
        })
    }

    fn versions(&self) -> BoxFuture<'_, Result<Vec<(OrgId, u64)>, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let rows = sqlx::query("SELECT org_id, version FROM allowlist_orgs")
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|err| self.error(err))?;
            rows.iter()
                .map(|row| {
                    let org: String = row.try_get("org_id").map_err(|err| self.error(err))?;
                    Ok((OrgId::from(org), self.version_of(row)?))
                })
                .collect()
        })
    }

    fn update<'a>(
        &'a self,
        org: &'a OrgId,
        change: Change<'a>,
        audit: &'a AuditDraft,
    ) -> BoxFuture<'a, Result<Updated, StoreError>> {
        Box::pin(async move {
            if org.as_str().len() > MAX_ORG_ID_BYTES {
                return Err(BackendError::refused(format!(
                    "organization ids longer than {MAX_ORG_ID_BYTES} bytes cannot be stored in PostgreSQL: use a shorter id"
                ))
                .into());
            }
            let channel = self.channel().await?;
            let db = |err| StoreError::Backend(self.error(err));
            // Rolled back when dropped without commit (a cancelled request); rolled
            // back explicitly below on a refused change, to free the lock at once.
            let mut tx = self.inner.pool.begin().await.map_err(db)?;
            // Serializes this organization's writers across replicas until commit,
            // whether or not it has a row yet.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(ORG_LOCK_CLASS)
                .bind(org.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            // Read committed: this statement sees every writer that committed before
            // the lock was granted.
            let row = sqlx::query(
                "SELECT version, document::text AS document FROM allowlist_orgs WHERE org_id = $1",
            )
            .bind(org.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let before = match row {
                Some(row) => self.record(org, &row)?,
                None => OrgRecord::default(),
            };
            let updated = match Updated::apply(before, change) {
                Ok(updated) if updated.changed => updated,
                unchanged_or_refused => {
                    tx.rollback().await.map_err(db)?;
                    return unchanged_or_refused;
                }
            };
            let version = i64::try_from(updated.after.version)
                .map_err(|_| BackendError::new("data version overflow"))?;
            let previous = i64::try_from(updated.before.version)
                .map_err(|_| BackendError::new("data version overflow"))?;
            let written = sqlx::query(
                "INSERT INTO allowlist_orgs (org_id, version, document) VALUES ($1, $2, $3::jsonb)
                 ON CONFLICT (org_id) DO UPDATE
                     SET version = excluded.version, document = excluded.document
                     WHERE allowlist_orgs.version = $4",
            )
            .bind(org.as_str())
            .bind(version)
            .bind(document::encode(&updated.after)?)
            .bind(previous)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if written != 1 {
                // Only a writer that skips the advisory lock can get here.
                tx.rollback().await.map_err(db)?;
                return Err(BackendError::new(format!(
                    "organization `{org}` was changed by another writer during this change (one that does not take the organization's advisory lock): nothing was written, retry"
                ))
                .into());
            }
            // The change's record, in its transaction: both are committed, or neither.
            self.insert_audit(&mut tx, &audit.record(org, &updated))
                .await?;
            self.prune_audit(&mut tx, org, audit).await;
            // Delivered to every listener when, and only if, the transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&channel)
                .bind(org.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(updated)
        })
    }

    fn audit_events<'a>(
        &'a self,
        org: &'a OrgId,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditRecord>, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let (since, until, before_id) = query.bounds();
            let rows = sqlx::query(SELECT_AUDIT)
                .bind(org.as_str())
                .bind(since)
                .bind(until)
                .bind(before_id)
                .bind(query.entity_id.as_deref())
                .bind(query.actor.as_deref())
                .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|err| self.error(err))?;
            rows.iter().map(|row| self.audit_row(row)).collect()
        })
    }

    fn insert_api_token<'a>(
        &'a self,
        token: &'a ApiTokenRecord,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let db = |err| self.error(err);
            let list = |items: Vec<&str>| serde_json::Value::from(items).to_string();
            let mut tx = self.inner.pool.begin().await.map_err(db)?;
            sqlx::query(concat!(
                "INSERT INTO allowlist_api_tokens (",
                token_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(token.org.as_str())
            .bind(&token.id)
            .bind(&token.hash[..])
            .bind(token.owner.as_str())
            .bind(list(token.groups.iter().map(|g| g.as_str()).collect()))
            .bind(list(token.permissions.iter().map(String::as_str).collect()))
            .bind(&token.name)
            .bind(micros(token.created))
            .bind(token.expires.map(micros))
            .bind(token.last_used.map(micros))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            self.insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(db)
        })
    }

    fn api_token_by_hash<'a>(
        &'a self,
        hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<ApiTokenRecord>, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let row = sqlx::query(concat!(
                "SELECT ",
                token_columns!(),
                " FROM allowlist_api_tokens WHERE hash = $1"
            ))
            .bind(&hash[..])
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|err| self.error(err))?;
            row.map(|row| self.token_row(&row)).transpose()
        })
    }

    fn api_tokens<'a>(
        &'a self,
        org: &'a OrgId,
        owner: Option<&'a UserId>,
    ) -> BoxFuture<'a, Result<Vec<ApiTokenRecord>, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let rows = sqlx::query(concat!(
                "SELECT ",
                token_columns!(),
                " FROM allowlist_api_tokens
                 WHERE org_id = $1 AND ($2::text IS NULL OR owner = $2::text)
                 ORDER BY created_us, id"
            ))
            .bind(org.as_str())
            .bind(owner.map(UserId::as_str))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|err| self.error(err))?;
            rows.iter().map(|row| self.token_row(row)).collect()
        })
    }

    fn delete_api_token<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
        owner: Option<&'a UserId>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let db = |err| self.error(err);
            let mut tx = self.inner.pool.begin().await.map_err(db)?;
            let deleted = sqlx::query(
                "DELETE FROM allowlist_api_tokens
                 WHERE org_id = $1 AND id = $2 AND ($3::text IS NULL OR owner = $3::text)",
            )
            .bind(org.as_str())
            .bind(id)
            .bind(owner.map(UserId::as_str))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if deleted == 0 {
                tx.rollback().await.map_err(db)?;
                return Ok(false);
            }
            self.insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(db)?;
            Ok(true)
        })
    }

    fn touch_api_token<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
        at: std::time::SystemTime,
        stale_before: std::time::SystemTime,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            self.ready().await?;
            let db = |err| self.error(err);
            let mut tx = self.inner.pool.begin().await.map_err(db)?;
            let touched = sqlx::query(
                "UPDATE allowlist_api_tokens SET last_used_us = $3
                 WHERE org_id = $1 AND id = $2 AND (last_used_us IS NULL OR last_used_us < $4)",
            )
            .bind(org.as_str())
            .bind(id)
            .bind(micros(at))
            .bind(micros(stale_before))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if touched == 0 {
                tx.rollback().await.map_err(db)?;
                return Ok(false);
            }
            self.insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(db)?;
            Ok(true)
        })
    }
}

/// Whether a SQLSTATE says the value itself cannot be stored, so that retrying is
/// useless: class 22 (data exception: a string too long, a character the encoding
/// lacks, a NUL, a `pg_notify` payload too large), 23 (integrity constraint) and 54
/// (program limit exceeded, such as an index row too large).
fn refuses_value(sqlstate: Option<&str>) -> bool {
    sqlstate.is_some_and(|code| {
        code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
    })
}

fn check_schema(schema: &str) -> Result<(), BackendError> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with("pg_")
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        return Ok(());
    }
    let shown: String = schema.chars().take(64).collect();
    Err(BackendError::new(format!(
        "schema name `{shown}` is not allowed: use 1 to 63 lowercase letters, digits and `_`, starting with a letter or `_` and not with `pg_`"
    )))
}

/// The channel a schema's changes are announced on: `allowlist_changes:SCHEMA`, or,
/// where that would pass PostgreSQL's 63-byte limit on names, a fixed hash of the
/// schema name in its place (computed the same way by every replica).
fn channel_name(schema: &str) -> String {
    const PREFIX: &str = "allowlist_changes:";
    if PREFIX.len() + schema.len() <= 63 {
        format!("{PREFIX}{schema}")
    } else {
        format!("{PREFIX}{:016x}", fnv1a(schema.as_bytes()))
    }
}

/// FNV-1a, 64 bits: a hash fixed by its definition, so every replica, whatever its
/// Rust version, derives the same channel name.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn target(connect: &PgConnectOptions, schema: Option<&str>) -> String {
    let mut target = format!(
        "{}:{}/{} as {}",
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or("(default database)"),
        connect.get_username(),
    );
    if let Some(schema) = schema {
        target.push_str(" schema ");
        target.push_str(schema);
    }
    target
}

/// Milliseconds since the Unix epoch, as a database column holds them.
fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

fn saturate(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// A summary's callers as the `callers` column holds them: `[{"user", "address",
/// "count", "firstMs", "lastMs"}]`. NUL, which `jsonb` cannot hold, is replaced.
fn encode_callers(callers: &[WouldDenyCaller]) -> String {
    let callers: Vec<serde_json::Value> = callers
        .iter()
        .map(|caller| {
            serde_json::json!({
                "user": caller.user.as_ref().map(|user| user.replace('\0', "\u{fffd}")),
                "address": caller.address.map(|addr| addr.to_string()),
                "count": caller.count,
                "firstMs": millis(caller.first_seen),
                "lastMs": millis(caller.last_seen),
            })
        })
        .collect();
    serde_json::Value::Array(callers).to_string()
}

fn decode_callers(text: &str) -> Result<Vec<WouldDenyCaller>, BackendError> {
    let invalid = || {
        BackendError::new("a would-deny summary in the database is not in the form this version writes: delete the rows of allowlist_would_deny, which replicas write again")
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| invalid())?;
    value
        .as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|caller| {
            let user = match &caller["user"] {
                serde_json::Value::Null => None,
                serde_json::Value::String(user) => Some(user.clone()),
                _ => return Err(invalid()),
            };
            let address = match &caller["address"] {
                serde_json::Value::Null => None,
                serde_json::Value::String(addr) => Some(addr.parse().map_err(|_| invalid())?),
                _ => return Err(invalid()),
            };
            let count = caller["count"].as_u64().ok_or_else(invalid)?;
            let first = caller["firstMs"].as_i64().ok_or_else(invalid)?;
            let last = caller["lastMs"].as_i64().ok_or_else(invalid)?;
            Ok(WouldDenyCaller::new(
                user,
                address,
                count,
                from_millis(first),
                from_millis(last),
            ))
        })
        .collect()
}

/// A batch decoded on the blocking pool (see [`join_blocking`]).
async fn decoded(
    batch: tokio::task::JoinHandle<Result<Vec<(OrgId, OrgRecord)>, BackendError>>,
) -> Result<Vec<(OrgId, OrgRecord)>, BackendError> {
    join_blocking(batch, "decoding the stored organizations").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for good in ["public", "_x", "allowlist_test_12", &"a".repeat(63)] {
            assert!(check_schema(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Public",
            "a-b",
            "a b",
            "a\"b",
            "pg_temp",
            &"a".repeat(64),
        ] {
            let err = check_schema(bad).unwrap_err().to_string();
            assert!(err.contains("lowercase letters"), "{bad}: {err}");
        }
    }

    #[test]
    fn which_sqlstates_refuse_the_value() {
        for refused in [
            "22001", "22021", "22P05", "22023", "23505", "23514", "54000",
        ] {
            assert!(refuses_value(Some(refused)), "{refused}");
        }
        // Unreachable, overloaded, cancelled, serialization: retrying may work.
        for transient in ["08006", "53300", "57014", "40001", "40P01"] {
            assert!(!refuses_value(Some(transient)), "{transient}");
        }
        assert!(!refuses_value(None));
    }

    #[test]
    fn channel_names_fit_postgres_limit() {
        assert_eq!(channel_name("public"), "allowlist_changes:public");
        let long = "s".repeat(63);
        let channel = channel_name(&long);
        assert!(channel.len() <= 63, "{channel}");
        assert_eq!(channel, channel_name(&long), "deterministic");
        assert_ne!(channel, channel_name(&"t".repeat(63)));
    }

    #[test]
    fn options_never_show_the_password() {
        let options = PostgresOptions::new("postgres://app:s3cret@db.internal:6543/policies")
            .unwrap()
            .schema("tenant_a")
            .unwrap();
        let shown = format!("{options:?}");
        assert!(
            shown.contains("db.internal:6543/policies as app schema tenant_a"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        let err = PostgresOptions::new("mysql://x").unwrap_err().to_string();
        assert!(err.contains("expected postgres://"), "{err}");
    }
}
