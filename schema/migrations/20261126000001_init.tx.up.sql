CREATE TABLE workout_plans (
    id          VARCHAR(128) PRIMARY KEY,
    name        TEXT NOT NULL,
    client_id   VARCHAR(128) NOT NULL,
    trainer_id  VARCHAR(128) NOT NULL,
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP
)
--bun:split
CREATE INDEX workout_plans_client_id_idx ON workout_plans (client_id)
--bun:split
CREATE INDEX workout_plans_trainer_id_idx ON workout_plans (trainer_id)
--bun:split
CREATE TABLE workout_phases (
    id            VARCHAR(128) PRIMARY KEY,
    plan_id       VARCHAR(128) NOT NULL REFERENCES workout_plans (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    order_number  INTEGER NOT NULL DEFAULT 0,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP
)
--bun:split
CREATE INDEX workout_phases_plan_id_idx ON workout_phases (plan_id, order_number)
--bun:split
CREATE TABLE workout_sessions (
    id            VARCHAR(128) PRIMARY KEY,
    phase_id      VARCHAR(128) NOT NULL REFERENCES workout_phases (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    order_number  INTEGER NOT NULL DEFAULT 0,
    created_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP
)
--bun:split
CREATE INDEX workout_sessions_phase_id_idx ON workout_sessions (phase_id, order_number)
--bun:split
CREATE TABLE workout_exercises (
    id            VARCHAR(128) PRIMARY KEY,
    session_id    VARCHAR(128) NOT NULL REFERENCES workout_sessions (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    order_number  INTEGER NOT NULL DEFAULT 0,
    sets          INTEGER NOT NULL DEFAULT 0 CHECK (sets >= 0),
    reps          INTEGER NOT NULL DEFAULT 0 CHECK (reps >= 0),
    weight        DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (weight >= 0),
    rest_seconds  INTEGER NOT NULL DEFAULT 0 CHECK (rest_seconds >= 0),
    tempo         TEXT NOT NULL DEFAULT '',
    notes         TEXT NOT NULL DEFAULT '',
    created_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP
)
--bun:split
CREATE INDEX workout_exercises_session_id_idx ON workout_exercises (session_id, order_number)
--bun:split
CREATE TABLE user_actions (
    id          VARCHAR(256) PRIMARY KEY,
    user_id     VARCHAR(128) NOT NULL,
    action      TEXT NOT NULL,
    details     TEXT NOT NULL DEFAULT '{}',
    created_at  {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP
)
--bun:split
CREATE INDEX user_actions_user_id_idx ON user_actions (user_id, created_at)
--bun:split
CREATE TABLE notifications (
    id            VARCHAR(256) PRIMARY KEY,
    user_id       VARCHAR(128) NOT NULL,
    title         TEXT NOT NULL,
    message       TEXT NOT NULL,
    type          VARCHAR(32) NOT NULL,
    action_url    TEXT NOT NULL DEFAULT '',
    created_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP,
    delivered_at  {{.Timestamp}}
)
--bun:split
CREATE INDEX notifications_user_id_idx ON notifications (user_id, created_at)
--bun:split
CREATE TABLE email_outbox (
    id          VARCHAR(256) PRIMARY KEY,
    to_address  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP,
    sent_at     {{.Timestamp}}
)
--bun:split
CREATE INDEX email_outbox_unsent_idx ON email_outbox (sent_at, created_at)
--bun:split
CREATE TABLE data_sync_runs (
    id          VARCHAR(256) PRIMARY KEY,
    plan_id     VARCHAR(128) NOT NULL,
    direction   VARCHAR(16) NOT NULL,
    phases      INTEGER NOT NULL,
    sessions    INTEGER NOT NULL,
    exercises   INTEGER NOT NULL,
    snapshot    TEXT NOT NULL,
    created_at  {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP
)
--bun:split
CREATE INDEX data_sync_runs_plan_id_idx ON data_sync_runs (plan_id, created_at)
--bun:split
CREATE TABLE trellis_step_runs (
    job_id        VARCHAR(256) PRIMARY KEY,
    message_type  VARCHAR(128) NOT NULL,
    attempt       INTEGER NOT NULL,
    result        TEXT NOT NULL,
    created_at    {{.Timestamp}} NOT NULL DEFAULT CURRENT_TIMESTAMP
)
