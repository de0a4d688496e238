-- 0003: artifact manifests on cards, and an index of stored content for de-duplication.

ALTER TABLE cards ADD COLUMN artifacts jsonb NOT NULL DEFAULT '[]'::jsonb;

-- Every stored artifact file, by content: a client asks which sha256s the registry already
-- holds in a space and does not upload those again; the worker copies them from `key`.
CREATE TABLE artifacts (
    registry  text   NOT NULL,
    space     text   NOT NULL,
    sha256    text   NOT NULL,
    key       text   NOT NULL,
    size      bigint NOT NULL,
    uid       uuid   NOT NULL,
    PRIMARY KEY (registry, space, sha256, key)
);
CREATE INDEX artifacts_by_uid ON artifacts (uid);
