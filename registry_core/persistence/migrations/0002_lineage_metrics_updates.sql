-- 0002: updates and deletes as events, lineage both ways, run metrics by step.

ALTER TABLE cards ADD COLUMN updated_at timestamptz;

ALTER TABLE command_outcomes DROP CONSTRAINT command_outcomes_status_check;
ALTER TABLE command_outcomes ADD CONSTRAINT command_outcomes_status_check
    CHECK (status IN ('registered', 'updated', 'deleted', 'rejected'));

-- One row per lineage reference: card `uid` points at `ref_uid` through attribute `field`.
-- Upstream of X: WHERE uid = X; downstream of X: WHERE ref_uid = X (second index).
CREATE TABLE lineage (
    uid      uuid NOT NULL,
    ref_uid  uuid NOT NULL,
    field    text NOT NULL,
    PRIMARY KEY (uid, field, ref_uid)
);
CREATE INDEX lineage_ref ON lineage (ref_uid);

-- RunCard / ExperimentCard metrics, one row per logged point (seq keeps the logging order).
CREATE TABLE run_metrics (
    uid       uuid             NOT NULL,
    seq       integer          NOT NULL,
    name      text             NOT NULL,
    step      integer,
    value     double precision NOT NULL,
    logged_at timestamptz,
    PRIMARY KEY (uid, seq)
);
CREATE INDEX run_metrics_by_name ON run_metrics (uid, name, step);
CREATE INDEX run_metrics_name ON run_metrics (name);

-- "newest first by creation time" within one name (sort_by_timestamp).
CREATE INDEX cards_name_created ON cards (registry, space, name, created_at DESC, event_offset DESC);
