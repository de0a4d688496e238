-- 0007 (issue 18): aliases, their history, and what "the registry as of a moment" reads.

-- Commands that set or remove an alias have outcomes too.
ALTER TABLE command_outcomes DROP CONSTRAINT command_outcomes_status_check;
ALTER TABLE command_outcomes ADD CONSTRAINT command_outcomes_status_check
    CHECK (status IN ('registered', 'updated', 'deleted', 'rejected', 'alias_set', 'alias_removed'));

-- Where each alias points now (one row per alias of a registry/space/name).
CREATE TABLE aliases (
    registry      text        NOT NULL,
    space         text        NOT NULL,
    name          text        NOT NULL,
    alias         text        NOT NULL,
    uid           uuid        NOT NULL,
    version       text        NOT NULL,
    actor         text,
    set_at        timestamptz NOT NULL,
    event_offset  bigint      NOT NULL,
    PRIMARY KEY (registry, space, name, alias)
);
-- "which aliases point at these cards" (list results show them)
CREATE INDEX aliases_uid ON aliases (uid);

-- Every AliasSet / AliasRemoved, by offset: `opsml alias history`, and "where did `prod` point
-- at offset N" is the first entry of alias_history_at at or below N.
CREATE TABLE alias_history (
    event_offset     bigint PRIMARY KEY,
    registry         text        NOT NULL,
    space            text        NOT NULL,
    name             text        NOT NULL,
    alias            text        NOT NULL,
    action           text        NOT NULL CHECK (action IN ('set', 'removed')),
    uid              uuid        NOT NULL,
    version          text        NOT NULL,
    previous_version text,
    actor            text,
    occurred_at      timestamptz NOT NULL
);
CREATE INDEX alias_history_at ON alias_history (registry, space, name, alias, event_offset DESC);
-- "which aliases pointed at card X at offset N" starts from the moves to X (most cards: none)
CREATE INDEX alias_history_uid ON alias_history (uid, event_offset);

-- The offsets of every update and delete of a card: a card read "as of" offset N is its current
-- row unless it changed after N; then it is the record in the archived event at its last change
-- at or below N (or its registration).
CREATE TABLE card_changes (
    uid           uuid   NOT NULL,
    event_offset  bigint NOT NULL,
    PRIMARY KEY (uid, event_offset)
);

-- "as of <time>": the last event at or before a time, one index probe.
CREATE INDEX event_log_occurred ON event_log (occurred_at, event_offset);
