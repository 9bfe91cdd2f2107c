-- Report jobs and their files. Files live here as bytea rather than on a volume: deleting a
-- user's reports (the deletion saga) is then one transaction with the confirmation event, every
-- replica can serve every download without shared storage, and backups hold jobs and files
-- together. A tear sheet is tens to hundreds of KiB, well within what bytea handles.
CREATE TABLE report_jobs (
    report_id     UUID PRIMARY KEY,          -- UUIDv7: ordered by creation
    user_id       UUID NOT NULL,
    subject_kind  TEXT NOT NULL CHECK (subject_kind IN ('symbol', 'watchlist', 'model')),
    symbols       TEXT[] NOT NULL DEFAULT '{}',
    model_name    TEXT,
    model_version TEXT,
    benchmark     TEXT,
    start_at      TIMESTAMPTZ NOT NULL,
    end_at        TIMESTAMPTZ NOT NULL,
    formats       INTEGER[] NOT NULL,        -- mirai.analytics.v1.ReportFormat
    title         TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    error         TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    -- A RUNNING job past this is failed by the sweeper, whether its worker is slow or gone.
    deadline_at   TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    expires_at    TIMESTAMPTZ
);

CREATE INDEX report_jobs_by_user ON report_jobs (user_id, report_id DESC);
CREATE INDEX report_jobs_queued ON report_jobs (report_id) WHERE status = 'queued';
CREATE INDEX report_jobs_running ON report_jobs (deadline_at) WHERE status = 'running';
CREATE INDEX report_jobs_expiring ON report_jobs (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE report_files (
    report_id    UUID NOT NULL REFERENCES report_jobs (report_id) ON DELETE CASCADE,
    format       INTEGER NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    content      BYTEA NOT NULL,
    PRIMARY KEY (report_id, format)
);
