//! Report jobs and their files.
//!
//! Lifecycle: `queued` → (a worker claims it with `FOR UPDATE SKIP LOCKED`) `running` with a
//! deadline → `succeeded` (files stored) or `failed` (reason stored). Finishing only applies
//! to a job that is still `running`, so a job the sweeper already failed for its deadline stays
//! failed even if its worker completes later. Every finish enqueues `report.completed` in the
//! same transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use mirai_proto::events::v1 as ev;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::config::ReportSettings;
use crate::domain::Symbol;
use crate::error::Error;
use crate::reports::spec::{Format, Spec, Subject};

/// A stored job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub user_id: Uuid,
    pub spec: Spec,
    pub status: pb::ReportStatus,
    pub error: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub files: Vec<pb::ReportFile>,
}

impl Job {
    pub fn to_wire(&self) -> pb::ReportJob {
        pb::ReportJob {
            report_id: self.id.to_string(),
            user_id: self.user_id.to_string(),
            subject: Some(self.spec.subject.to_wire()),
            start: Some(wire::timestamp(self.spec.start)),
            end: Some(wire::timestamp(self.spec.end)),
            formats: self
                .spec
                .formats
                .iter()
                .map(|f| f.to_wire().into())
                .collect(),
            title: self.spec.title.clone(),
            status: self.status.into(),
            error: self.error.clone(),
            files: self.files.clone(),
            created_at: Some(wire::timestamp(self.created_at)),
            started_at: self.started_at.map(wire::timestamp),
            finished_at: self.finished_at.map(wire::timestamp),
            expires_at: self.expires_at.map(wire::timestamp),
        }
    }
}

fn status_of(text: &str) -> pb::ReportStatus {
    match text {
        "queued" => pb::ReportStatus::Queued,
        "running" => pb::ReportStatus::Running,
        "succeeded" => pb::ReportStatus::Succeeded,
        "failed" => pb::ReportStatus::Failed,
        _ => pb::ReportStatus::Unspecified,
    }
}

pub fn status_text(status: pb::ReportStatus) -> Option<&'static str> {
    match status {
        pb::ReportStatus::Queued => Some("queued"),
        pb::ReportStatus::Running => Some("running"),
        pb::ReportStatus::Succeeded => Some("succeeded"),
        pb::ReportStatus::Failed => Some("failed"),
        pb::ReportStatus::Unspecified => None,
    }
}

/// A `report_jobs` row, as every query that returns jobs lists its columns.
struct JobRow {
    report_id: Uuid,
    user_id: Uuid,
    subject_kind: String,
    symbols: Vec<String>,
    model_name: Option<String>,
    model_version: Option<String>,
    benchmark: Option<String>,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    formats: Vec<i32>,
    title: String,
    status: String,
    error: String,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

fn job_of(row: JobRow) -> Result<Job, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let symbols = row.symbols;
    let parse = |s: &String| Symbol::parse("symbols", s).map_err(|e| decode(e.to_string()));
    let subject = match row.subject_kind.as_str() {
        "symbol" => Subject::Symbol(parse(
            symbols.first().ok_or_else(|| decode("no symbol".into()))?,
        )?),
        "watchlist" => Subject::Watchlist(symbols.iter().map(parse).collect::<Result<_, _>>()?),
        _ => Subject::Model {
            name: row.model_name.unwrap_or_default(),
            version: row.model_version.unwrap_or_default(),
        },
    };
    Ok(Job {
        id: row.report_id,
        user_id: row.user_id,
        spec: Spec {
            subject,
            start: row.start_at,
            end: row.end_at,
            formats: row
                .formats
                .into_iter()
                .filter_map(|f| Format::from_wire("formats", f).ok())
                .collect(),
            benchmark: row
                .benchmark
                .and_then(|b| Symbol::parse("benchmark", &b).ok()),
            title: row.title,
        },
        status: status_of(&row.status),
        error: row.error,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        expires_at: row.expires_at,
        files: Vec::new(),
    })
}

/// Stores a new QUEUED job.
/// Queues a job unless the user is at a cap of `settings` (reports queued or running, and
/// reports kept — every job until it expires or is deleted — by count and file bytes): `RESOURCE_EXHAUSTED` then. The count and the
/// insert run under a per-user lock, so concurrent requests cannot pass a cap together.
pub async fn create(
    pool: &PgPool,
    user_id: Uuid,
    spec: &Spec,
    settings: &ReportSettings,
) -> Result<Job, Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('mirai_reports:' || $1, 0))",
        user_id.to_string(),
    )
    .execute(&mut *tx)
    .await?;
    let counts = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status IN ('queued', 'running')) AS "pending!",
                count(*) AS "stored!",
                COALESCE((SELECT sum(f.size_bytes)::BIGINT FROM report_files f
                          JOIN report_jobs j USING (report_id) WHERE j.user_id = $1), 0) AS "bytes!"
         FROM report_jobs WHERE user_id = $1"#,
        user_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let (pending, stored, bytes) = (counts.pending, counts.stored, counts.bytes);
    if pending >= i64::from(settings.max_pending) {
        return Err(Error::ResourceExhausted(format!(
            "at most {} reports queued or running at once; wait for one to finish",
            settings.max_pending
        )));
    }
    if stored >= i64::from(settings.max_stored) || bytes as u64 >= settings.max_stored_bytes {
        return Err(Error::ResourceExhausted(format!(
            "at most {} stored reports and {} MiB of report files; delete old reports first \
             (they also expire)",
            settings.max_stored,
            settings.max_stored_bytes / (1024 * 1024)
        )));
    }
    let job = insert(&mut tx, user_id, spec).await?;
    tx.commit().await?;
    Ok(job)
}

async fn insert(tx: &mut PgConnection, user_id: Uuid, spec: &Spec) -> Result<Job, sqlx::Error> {
    let (model_name, model_version) = match &spec.subject {
        Subject::Model { name, version } => (Some(name.clone()), Some(version.clone())),
        _ => (None, None),
    };
    let row = sqlx::query_as!(
        JobRow,
        "INSERT INTO report_jobs (report_id, user_id, subject_kind, symbols, model_name,
                                  model_version, benchmark, start_at, end_at, formats, title)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING report_id, user_id, subject_kind, symbols, model_name, model_version,
    benchmark, start_at, end_at, formats, title, status, error, created_at, started_at,
    finished_at, expires_at",
        Uuid::now_v7(),
        user_id,
        spec.subject.kind(),
        &spec.subject.symbols(),
        model_name,
        model_version,
        spec.benchmark.as_ref().map(Symbol::to_string),
        spec.start,
        spec.end,
        &spec
            .formats
            .iter()
            .map(|f| i32::from(f.to_wire()))
            .collect::<Vec<_>>(),
        &spec.title,
    )
    .fetch_one(tx)
    .await?;
    job_of(row)
}

async fn files_of(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, pb::ReportFile)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT report_id, format, file_name, content_type, size_bytes, sha256
         FROM report_files WHERE report_id = ANY($1) ORDER BY report_id, format",
        ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.report_id,
                pb::ReportFile {
                    format: r.format,
                    file_name: r.file_name,
                    content_type: r.content_type,
                    size_bytes: r.size_bytes as u64,
                    sha256: r.sha256,
                },
            )
        })
        .collect())
}

/// One job of `user_id` with its files; `None` for another user's or an unknown id.
pub async fn get(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query_as!(
        JobRow,
        "SELECT report_id, user_id, subject_kind, symbols, model_name, model_version,
    benchmark, start_at, end_at, formats, title, status, error, created_at, started_at,
    finished_at, expires_at FROM report_jobs WHERE report_id = $1 AND user_id = $2",
        id,
        user_id,
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut job = job_of(row)?;
    job.files = files_of(pool, &[id])
        .await?
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    Ok(Some(job))
}

/// A page of the user's jobs, newest first, after `before` (a job id) when given.
pub async fn list(
    pool: &PgPool,
    user_id: Uuid,
    statuses: &[&str],
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query_as!(
        JobRow,
        "SELECT report_id, user_id, subject_kind, symbols, model_name, model_version,
    benchmark, start_at, end_at, formats, title, status, error, created_at, started_at,
    finished_at, expires_at FROM report_jobs
         WHERE user_id = $1 AND (cardinality($2::text[]) = 0 OR status = ANY($2))
           AND ($3::uuid IS NULL OR report_id < $3)
         ORDER BY report_id DESC LIMIT $4",
        user_id,
        statuses as _,
        before,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let mut jobs = rows
        .into_iter()
        .map(job_of)
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    for (id, file) in files_of(pool, &ids).await? {
        if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
            job.files.push(file);
        }
    }
    Ok(jobs)
}

/// The content of one file of a job of `user_id`.
pub async fn file(
    pool: &PgPool,
    user_id: Uuid,
    id: Uuid,
    format: Format,
) -> Result<Option<(pb::ReportFile, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT f.file_name, f.content_type, f.size_bytes, f.sha256, f.content
         FROM report_files f JOIN report_jobs j USING (report_id)
         WHERE f.report_id = $1 AND j.user_id = $2 AND f.format = $3",
        id,
        user_id,
        i32::from(format.to_wire()),
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        (
            pb::ReportFile {
                format: format.to_wire().into(),
                file_name: r.file_name,
                content_type: r.content_type,
                size_bytes: r.size_bytes as u64,
                sha256: r.sha256,
            },
            r.content,
        )
    }))
}

/// Deletes a job of `user_id` and its files; false when there was none.
pub async fn delete(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM report_jobs WHERE report_id = $1 AND user_id = $2",
        id,
        user_id
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Claims the oldest QUEUED job: RUNNING with a deadline `timeout` from now. Concurrent
/// workers (of any replica) skip each other's locked rows.
pub async fn claim(pool: &PgPool, timeout: Duration) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query_as!(
        JobRow,
        "UPDATE report_jobs
            SET status = 'running', started_at = now(), attempts = attempts + 1,
                deadline_at = now() + make_interval(secs => $1)
          WHERE report_id = (SELECT report_id FROM report_jobs WHERE status = 'queued'
                             ORDER BY report_id FOR UPDATE SKIP LOCKED LIMIT 1)
          RETURNING report_id, user_id, subject_kind, symbols, model_name, model_version,
    benchmark, start_at, end_at, formats, title, status, error, created_at, started_at,
    finished_at, expires_at",
        timeout.as_secs_f64(),
    )
    .fetch_optional(pool)
    .await?;
    row.map(job_of).transpose()
}

/// A produced file.
#[derive(Debug, Clone)]
pub struct File {
    pub format: Format,
    pub file_name: String,
    pub content: Vec<u8>,
}

fn file_meta(file: &File) -> pb::ReportFile {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(&file.content);
    pb::ReportFile {
        format: file.format.to_wire().into(),
        file_name: file.file_name.clone(),
        content_type: file.format.content_type().to_owned(),
        size_bytes: file.content.len() as u64,
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

async fn completed(
    tx: &mut PgConnection,
    job: &Job,
    status: pb::ReportStatus,
    error: &str,
    files: Vec<pb::ReportFile>,
) -> Result<(), sqlx::Error> {
    outbox::enqueue(
        tx,
        crate::SERVICE,
        &ev::ReportCompleted {
            report_id: job.id.to_string(),
            user_id: job.user_id.to_string(),
            status: status.into(),
            error: error.to_owned(),
            title: job.spec.title.clone(),
            files,
        },
        None,
    )
    .await?;
    Ok(())
}

/// Stores the files and marks the job SUCCEEDED, if it is still RUNNING (false otherwise:
/// the sweeper failed it meanwhile, and the files are not kept).
pub async fn succeed(
    pool: &PgPool,
    job: &Job,
    files: &[File],
    retention: Duration,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query!(
        "UPDATE report_jobs SET status = 'succeeded', finished_at = now(), deadline_at = NULL,
                expires_at = now() + make_interval(secs => $2)
          WHERE report_id = $1 AND status = 'running'",
        job.id,
        retention.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let mut metas = Vec::with_capacity(files.len());
    for file in files {
        let meta = file_meta(file);
        sqlx::query!(
            "INSERT INTO report_files (report_id, format, file_name, content_type, size_bytes,
                                       sha256, content)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            job.id,
            meta.format,
            &meta.file_name,
            &meta.content_type,
            meta.size_bytes as i64,
            &meta.sha256,
            &file.content,
        )
        .execute(&mut *tx)
        .await?;
        metas.push(meta);
    }
    completed(&mut tx, job, pb::ReportStatus::Succeeded, "", metas).await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks the job FAILED with `error`, if it is still RUNNING.
pub async fn fail(
    pool: &PgPool,
    job: &Job,
    error: &str,
    retention: Duration,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query!(
        "UPDATE report_jobs SET status = 'failed', error = $2, finished_at = now(),
                deadline_at = NULL, expires_at = now() + make_interval(secs => $3)
          WHERE report_id = $1 AND status = 'running'",
        job.id,
        error,
        retention.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    completed(&mut tx, job, pb::ReportStatus::Failed, error, Vec::new()).await?;
    tx.commit().await?;
    Ok(true)
}

/// Fails every RUNNING job past its deadline (a slow or vanished worker). Returns how many.
pub async fn fail_overdue(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query_as!(
        JobRow,
        "UPDATE report_jobs
            SET status = 'failed', finished_at = now(), deadline_at = NULL,
                error = 'timed out: the report was not finished within '
                        || extract(epoch FROM (deadline_at - started_at))::bigint || ' s',
                expires_at = now() + make_interval(secs => $1)
          WHERE report_id IN (SELECT report_id FROM report_jobs
                              WHERE status = 'running' AND deadline_at < now()
                              FOR UPDATE SKIP LOCKED)
          RETURNING report_id, user_id, subject_kind, symbols, model_name, model_version,
    benchmark, start_at, end_at, formats, title, status, error, created_at, started_at,
    finished_at, expires_at",
        retention.as_secs_f64(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let count = rows.len() as u64;
    for row in rows {
        let job = job_of(row)?;
        completed(
            &mut tx,
            &job,
            pb::ReportStatus::Failed,
            &job.error,
            Vec::new(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(count)
}

/// Deletes finished jobs (and files) past their expiry. Returns how many jobs.
pub async fn delete_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query!("DELETE FROM report_jobs WHERE expires_at < now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// The deletion saga's purge: the user's jobs and files; returns jobs + files removed.
pub async fn purge_user(tx: &mut PgConnection, user_id: Uuid) -> Result<u64, sqlx::Error> {
    let files: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM report_files f JOIN report_jobs j USING (report_id)
         WHERE j.user_id = $1"#,
        user_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let jobs = sqlx::query!("DELETE FROM report_jobs WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(jobs + files as u64)
}

/// Puts a RUNNING job back in the queue (its worker is shutting down), so another worker or
/// replica generates it.
pub async fn requeue(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE report_jobs SET status = 'queued', started_at = NULL, deadline_at = NULL
          WHERE report_id = $1 AND status = 'running'",
        id,
    )
    .execute(pool)
    .await?;
    Ok(())
}
