-- 0001: the read model, the event archive, command outcomes and the projection's tracking row.

-- One row per card version. Ordered by semver precedence through (major, minor, patch, pre_key):
-- pre_key encodes the pre-release so that byte order ("C" collation) is semver precedence and a
-- release sorts above its pre-releases (see registry_core/domain/versioning.py).
CREATE TABLE cards (
    uid           uuid PRIMARY KEY,
    registry      text        NOT NULL,
    space         text        NOT NULL,
    name          text        NOT NULL,
    version       text        NOT NULL,
    major         integer     NOT NULL,
    minor         integer     NOT NULL,
    patch         integer     NOT NULL,
    pre_key       text COLLATE "C" NOT NULL,
    card_type     text        NOT NULL,
    tags          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    description   text,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    attributes    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status        text        NOT NULL DEFAULT 'active',
    created_at    timestamptz NOT NULL,
    command_id    uuid        NOT NULL,
    actor         text,
    event_offset  bigint      NOT NULL,
    -- The last line of defence: one version per name, ever.
    CONSTRAINT cards_version_unique UNIQUE (registry, space, name, version),
    CONSTRAINT cards_command_unique UNIQUE (command_id)
);

-- "newest version of a name" is the first entry of this index.
CREATE INDEX cards_precedence ON cards
    (registry, space, name, major DESC, minor DESC, patch DESC, pre_key DESC, event_offset DESC);
CREATE INDEX cards_registry_created ON cards (registry, created_at DESC);
CREATE INDEX cards_tags ON cards USING gin (tags jsonb_path_ops);

-- Every event read from or written to opsml.events, by offset. `applied` is false for events a
-- fenced-off sequencer (older epoch) published after a newer one started.
CREATE TABLE event_log (
    event_offset   bigint PRIMARY KEY,
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    command_id     uuid        NOT NULL,
    epoch          integer     NOT NULL,
    schema_version integer     NOT NULL,
    applied        boolean     NOT NULL,
    occurred_at    timestamptz NOT NULL,
    payload        jsonb       NOT NULL
);
CREATE INDEX event_log_command ON event_log (command_id);

-- The first outcome of every command, for de-duplication and for clients waiting on a reply.
CREATE TABLE command_outcomes (
    command_id     uuid PRIMARY KEY,
    status         text        NOT NULL CHECK (status IN ('registered', 'rejected')),
    uid            uuid,
    version        text,
    error_code     text,
    reason         text,
    registry       text,
    space          text,
    name           text,
    command_offset bigint,
    event_offset   bigint      NOT NULL,
    decided_at     timestamptz NOT NULL
);

-- Where the projection stands, written in the same transaction as the rows it covers.
CREATE TABLE tracking (
    name           text PRIMARY KEY,
    command_offset bigint      NOT NULL DEFAULT -1,  -- last opsml.commands offset handled
    event_offset   bigint      NOT NULL DEFAULT -1,  -- last opsml.events offset projected
    max_epoch      integer     NOT NULL DEFAULT 0,   -- highest sequencer epoch seen in the log
    claimed_epoch  integer     NOT NULL DEFAULT 0,   -- last epoch handed to a sequencer
    updated_at     timestamptz NOT NULL DEFAULT now()
);
