//! The embedded SQLite backend: one local file, created on first use.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Acquire, Connection, Row};

use super::api_token::ApiTokenRecord;
use super::audit::{self, AuditDraft, AuditQuery, AuditRecord};
use super::backend::{BoxFuture, Change, Updated};
use super::{document, Backend, BackendError, OrgRecord, StoreError};
use crate::policy::{OrgId, UserId};

/// Schema migrations, applied in order at open; each runs once.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE allowlist_orgs (
        org_id TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        document TEXT NOT NULL
    )",
    ),
    // AUTOINCREMENT: an id is never reused after a prune, so a page cursor stays true.
    (
        2,
        "CREATE TABLE allowlist_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        org_id TEXT NOT NULL,
        time_us INTEGER NOT NULL,
        actor TEXT NOT NULL,
        client_ip TEXT,
        forced INTEGER NOT NULL,
        operation TEXT NOT NULL,
        entity_type TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        version_before INTEGER NOT NULL,
        version_after INTEGER NOT NULL,
        before TEXT,
        after TEXT
    )",
    ),
    (
        3,
        "CREATE INDEX allowlist_audit_org ON allowlist_audit (org_id, id)",
    ),
    // 4 is PostgreSQL's would-deny table, which SQLite has no use for: the numbers stay
    // aligned between the two backends. Only the SHA-256 of a token is kept.
    (
        5,
        "CREATE TABLE allowlist_api_tokens (
        org_id TEXT NOT NULL,
        id TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
        owner TEXT NOT NULL,
        groups TEXT NOT NULL,
        permissions TEXT NOT NULL,
        name TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        expires_us INTEGER,
        last_used_us INTEGER,
        PRIMARY KEY (org_id, id)
    )",
    ),
];

/// Inserts an audit record.
const INSERT_AUDIT: &str = "INSERT INTO allowlist_audit
    (org_id, time_us, actor, client_ip, forced, operation, entity_type, entity_id,
     version_before, version_after, before, after)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Deletes, oldest first and at most `?4` of them, the organization's records beyond
/// the newest `?2` or older than `?3` microseconds; never the newest, the record of
/// the change being committed.
const PRUNE_AUDIT: &str = "DELETE FROM allowlist_audit WHERE id IN (
    SELECT id FROM allowlist_audit
    WHERE org_id = ?1
    AND id < (SELECT MAX(id) FROM allowlist_audit WHERE org_id = ?1)
    AND (
        time_us < ?3
        OR id <= (SELECT id FROM allowlist_audit WHERE org_id = ?1
                  ORDER BY id DESC LIMIT 1 OFFSET ?2))
    ORDER BY id LIMIT ?4)";

/// Reads the organization's records, newest first.
const SELECT_AUDIT: &str = "SELECT id, org_id, time_us, actor, client_ip, forced, operation,
        entity_type, entity_id, version_before, version_after, before, after
    FROM allowlist_audit
    WHERE org_id = ?1 AND time_us >= ?2 AND time_us <= ?3 AND id < ?4
        AND (?5 IS NULL OR entity_id = ?5) AND (?6 IS NULL OR actor = ?6)
    ORDER BY id DESC LIMIT ?7";

/// Keeps the store in a SQLite file. See [`SqliteBackend::open`].
///
/// Writes are `BEGIN IMMEDIATE` transactions, so two processes sharing the file
/// serialize like two tasks of one process; the file is in WAL mode with
/// `synchronous = FULL`, so a write the store acknowledged survives the process being
/// killed (and a power cut).
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
}

fn db(err: sqlx::Error) -> BackendError {
    if let sqlx::Error::Database(db) = &err {
        if refuses_value(db.code().as_deref()) {
            return BackendError::refused(format!("SQLite refused it: {}", db.message()));
        }
    }
    BackendError::new(format!("SQLite: {err}"))
}

/// Whether an SQLite result code (extended codes included) says the value itself
/// cannot be stored: `SQLITE_TOOBIG` (18), `SQLITE_CONSTRAINT` (19),
/// `SQLITE_MISMATCH` (20), `SQLITE_RANGE` (25). Busy, locked, I/O and full disk are
/// not: retrying, or freeing space, may work.
fn refuses_value(code: Option<&str>) -> bool {
    code.and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 18 | 19 | 20 | 25))
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `url`: `sqlite://allowlist.db`,
    /// `sqlite:allowlist.db`, or a plain path. Applies pending schema migrations.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the file cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, BackendError> {
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(db)?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // One connection: writers of this process queue here, other processes wait
        // on SQLite's own lock.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|err| {
                BackendError::new(format!("cannot open SQLite database `{url}`: {err}"))
            })?;
        let backend = Self { pool };
        backend.migrate().await?;
        Ok(backend)
    }

    async fn migrate(&self) -> Result<(), BackendError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS allowlist_schema_migrations (version INTEGER PRIMARY KEY NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for (version, sql) in MIGRATIONS {
            let applied =
                sqlx::query("SELECT 1 FROM allowlist_schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?
                    .is_some();
            if !applied {
                sqlx::query(sql).execute(&mut *tx).await.map_err(db)?;
                sqlx::query("INSERT INTO allowlist_schema_migrations (version) VALUES (?)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)
    }
}

fn version_of(row: &sqlx::sqlite::SqliteRow) -> Result<u64, BackendError> {
    let version: i64 = row.try_get("version").map_err(db)?;
    u64::try_from(version)
        .map_err(|_| BackendError::new(format!("negative data version {version}")))
}

impl Backend for SqliteBackend {
    fn load_all(&self) -> BoxFuture<'_, Result<Vec<(OrgId, OrgRecord)>, BackendError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT org_id, version, document FROM allowlist_orgs")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|row| {
                    let org = OrgId::from(row.try_get::<String, _>("org_id").map_err(db)?);
                    let text: String = row.try_get("document").map_err(db)?;
                    let record = document::decode(&org, version_of(row)?, &text)?;
                    Ok((org, record))
                })
                .collect()
        })
    }

    fn load<'a>(
        &'a self,
        org: &'a OrgId,
    ) -> BoxFuture<'a, Result<Option<OrgRecord>, BackendError>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT version, document FROM allowlist_orgs WHERE org_id = ?")
                .bind(org.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.map(|row| {
                let text: String = row.try_get("document").map_err(db)?;
                document::decode(org, version_of(&row)?, &text)
            })
            .transpose()
        })
    }

    fn update<'a>(
        &'a self,
        org: &'a OrgId,
        change: Change<'a>,
        audit: &'a AuditDraft,
    ) -> BoxFuture<'a, Result<Updated, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            // Rolled back when dropped without commit: on a refused change, an error,
            // or a cancelled request.
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            let row = sqlx::query("SELECT version, document FROM allowlist_orgs WHERE org_id = ?")
                .bind(org.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let before = match row {
                Some(row) => {
                    let text: String = row.try_get("document").map_err(db)?;
                    document::decode(org, version_of(&row)?, &text)?
                }
                None => OrgRecord::default(),
            };
            let updated = Updated::apply(before, change)?;
            if !updated.changed {
                return Ok(updated);
            }
            let version = i64::try_from(updated.after.version)
                .map_err(|_| BackendError::new("data version overflow"))?;
            sqlx::query(
                "INSERT INTO allowlist_orgs (org_id, version, document) VALUES (?, ?, ?)
                 ON CONFLICT (org_id) DO UPDATE SET version = excluded.version, document = excluded.document",
            )
            .bind(org.as_str())
            .bind(version)
            .bind(document::encode(&updated.after)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // The change's record, in its transaction: both are committed, or neither.
            let record = audit.record(org, &updated);
            insert_audit(&mut tx, &record).await?;
            prune_audit(&mut tx, org, audit).await;
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
            let (since, until, before_id) = query.bounds();
            let rows = sqlx::query(SELECT_AUDIT)
                .bind(org.as_str())
                .bind(since)
                .bind(until)
                .bind(before_id)
                .bind(query.entity_id.as_deref())
                .bind(query.actor.as_deref())
                .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter().map(audit_row).collect()
        })
    }

    fn insert_api_token<'a>(
        &'a self,
        token: &'a ApiTokenRecord,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            sqlx::query(concat!(
                "INSERT INTO allowlist_api_tokens (",
                token_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(token.org.as_str())
            .bind(&token.id)
            .bind(&token.hash[..])
            .bind(token.owner.as_str())
            .bind(json_list(token.groups.iter().map(|g| g.as_str())))
            .bind(json_list(token.permissions.iter().map(String::as_str)))
            .bind(&token.name)
            .bind(audit::micros(token.created))
            .bind(token.expires.map(audit::micros))
            .bind(token.last_used.map(audit::micros))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(db)
        })
    }

    fn api_token_by_hash<'a>(
        &'a self,
        hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<ApiTokenRecord>, BackendError>> {
        Box::pin(async move {
            let row = sqlx::query(concat!(
                "SELECT ",
                token_columns!(),
                " FROM allowlist_api_tokens WHERE hash = ?"
            ))
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            row.as_ref().map(token_row).transpose()
        })
    }

    fn api_tokens<'a>(
        &'a self,
        org: &'a OrgId,
        owner: Option<&'a UserId>,
    ) -> BoxFuture<'a, Result<Vec<ApiTokenRecord>, BackendError>> {
        Box::pin(async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                token_columns!(),
                " FROM allowlist_api_tokens
                 WHERE org_id = ?1 AND (?2 IS NULL OR owner = ?2)
                 ORDER BY created_us, id"
            ))
            .bind(org.as_str())
            .bind(owner.map(UserId::as_str))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(token_row).collect()
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
            let mut conn = self.pool.acquire().await.map_err(db)?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            let deleted = sqlx::query(
                "DELETE FROM allowlist_api_tokens
                 WHERE org_id = ?1 AND id = ?2 AND (?3 IS NULL OR owner = ?3)",
            )
            .bind(org.as_str())
            .bind(id)
            .bind(owner.map(UserId::as_str))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if deleted == 0 {
                return Ok(false);
            }
            insert_audit(&mut tx, audit).await?;
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
            let mut conn = self.pool.acquire().await.map_err(db)?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            let touched = sqlx::query(
                "UPDATE allowlist_api_tokens SET last_used_us = ?3
                 WHERE org_id = ?1 AND id = ?2 AND (last_used_us IS NULL OR last_used_us < ?4)",
            )
            .bind(org.as_str())
            .bind(id)
            .bind(audit::micros(at))
            .bind(audit::micros(stale_before))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if touched == 0 {
                return Ok(false);
            }
            insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(db)?;
            Ok(true)
        })
    }
}

/// A list of ids as a JSON array.
fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::from(items.collect::<Vec<_>>()).to_string()
}

fn token_row(row: &sqlx::sqlite::SqliteRow) -> Result<ApiTokenRecord, BackendError> {
    let corrupt =
        |what: &str| BackendError::new(format!("SQLite: corrupt API token record: {what}"));
    let hash: Vec<u8> = row.try_get("hash").map_err(db)?;
    let list = |column: &str| -> Result<Vec<String>, BackendError> {
        let text: String = row.try_get(column).map_err(db)?;
        serde_json::from_str(&text).map_err(|_| corrupt(column))
    };
    let time = |column: &str| -> Result<Option<std::time::SystemTime>, BackendError> {
        let micros: Option<i64> = row.try_get(column).map_err(db)?;
        Ok(micros.map(audit::from_micros))
    };
    Ok(ApiTokenRecord {
        id: row.try_get("id").map_err(db)?,
        org: OrgId::from(row.try_get::<String, _>("org_id").map_err(db)?),
        owner: UserId::from(row.try_get::<String, _>("owner").map_err(db)?),
        groups: list("groups")?.into_iter().map(Into::into).collect(),
        permissions: list("permissions")?,
        name: row.try_get("name").map_err(db)?,
        hash: hash.try_into().map_err(|_| corrupt("hash"))?,
        created: time("created_us")?.ok_or_else(|| corrupt("created_us"))?,
        expires: time("expires_us")?,
        last_used: time("last_used_us")?,
    })
}

fn to_i64(value: u64) -> Result<i64, BackendError> {
    i64::try_from(value).map_err(|_| BackendError::new("data version overflow"))
}

fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    value.map(ToString::to_string)
}

async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    record: &AuditRecord,
) -> Result<(), BackendError> {
    sqlx::query(INSERT_AUDIT)
        .bind(record.org.as_str())
        .bind(record.time_micros())
        .bind(&record.actor)
        .bind(record.client_ip.map(|ip| ip.to_string()))
        .bind(record.forced)
        .bind(&record.operation)
        .bind(&record.entity_type)
        .bind(&record.entity_id)
        .bind(to_i64(record.version_before)?)
        .bind(to_i64(record.version_after)?)
        .bind(json_text(record.before.as_ref()))
        .bind(json_text(record.after.as_ref()))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Prunes what the retention no longer keeps, in a savepoint of the change's
/// transaction: a failure is logged and undone, and the change still commits.
async fn prune_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: &OrgId,
    audit: &AuditDraft,
) {
    let retention = audit.retention();
    if retention == audit::AuditRetention::default() {
        return;
    }
    let (keep, cutoff) = retention.bounds(std::time::SystemTime::now());
    let result = async {
        let mut savepoint = tx.begin().await?;
        sqlx::query(PRUNE_AUDIT)
            .bind(org.as_str())
            .bind(keep)
            .bind(cutoff)
            .bind(i64::from(audit::PRUNE_BATCH))
            .execute(&mut *savepoint)
            .await?;
        savepoint.commit().await
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(organization = %org, error = %err, "allowlist: could not prune audit records; the change is kept, pruning is retried on the next change");
    }
}

fn audit_row(row: &sqlx::sqlite::SqliteRow) -> Result<AuditRecord, BackendError> {
    let corrupt = |what: &str| BackendError::new(format!("SQLite: corrupt audit record: {what}"));
    let id: i64 = row.try_get("id").map_err(db)?;
    let version = |column: &str| -> Result<u64, BackendError> {
        let value: i64 = row.try_get(column).map_err(db)?;
        u64::try_from(value).map_err(|_| corrupt(column))
    };
    let document = |column: &str| -> Result<Option<serde_json::Value>, BackendError> {
        let text: Option<String> = row.try_get(column).map_err(db)?;
        text.map(|text| serde_json::from_str(&text).map_err(|_| corrupt(column)))
            .transpose()
    };
    let client_ip: Option<String> = row.try_get("client_ip").map_err(db)?;
    Ok(AuditRecord {
        id: u64::try_from(id).map_err(|_| corrupt("id"))?,
        time: audit::from_micros(row.try_get("time_us").map_err(db)?),
        org: OrgId::from(row.try_get::<String, _>("org_id").map_err(db)?),
        actor: row.try_get("actor").map_err(db)?,
        client_ip: client_ip
            .map(|ip| ip.parse().map_err(|_| corrupt("client_ip")))
            .transpose()?,
        forced: row.try_get("forced").map_err(db)?,
        operation: row.try_get("operation").map_err(db)?,
        entity_type: row.try_get("entity_type").map_err(db)?,
        entity_id: row.try_get("entity_id").map_err(db)?,
        version_before: version("version_before")?,
        version_after: version("version_after")?,
        before: document("before")?,
        after: document("after")?,
    })
}

#[cfg(test)]
mod tests {
    use super::refuses_value;

    #[test]
    fn which_result_codes_refuse_the_value() {
        // SQLITE_TOOBIG, SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_CONSTRAINT_CHECK (275),
        // SQLITE_MISMATCH, SQLITE_RANGE.
        for refused in ["18", "2067", "275", "20", "25"] {
            assert!(refuses_value(Some(refused)), "{refused}");
        }
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR_WRITE (778), SQLITE_FULL.
        for transient in ["5", "6", "778", "13"] {
            assert!(!refuses_value(Some(transient)), "{transient}");
        }
        assert!(!refuses_value(None));
        assert!(!refuses_value(Some("not a number")));
    }
}
