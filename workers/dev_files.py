"""The files `opsml dev` keeps in a data directory: its identity, its S3 credentials, server.env
and the saved subscriber positions; and the error the local stack stops with."""

from __future__ import annotations

import json
import os
import re
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path

IDENTITY_FILE = "identity"
SERVER_ENV = "server.env"
CREDENTIALS_FILE = "s3-credentials.json"
GROUP_OFFSETS_FILE = "group-offsets.json"


class DevStackError(RuntimeError):
    """The local stack could not start; the message says why and what to do."""


def data_dir_identity(data_dir: Path) -> str:
    """The data directory's identity: a random id made at its first start and kept in
    `<data-dir>/identity`. The database the stack uses records it (`claim_database`)."""
    path = data_dir / IDENTITY_FILE
    if path.exists():
        ident = path.read_text().strip()
        if not re.fullmatch(r"[0-9a-f]{32}", ident):
            raise DevStackError(
                f"{path} does not hold an identity written by opsml dev: restore it, or delete"
                " it if this directory's database is new (a new identity is made)"
            )
        return ident
    ident = uuid.uuid4().hex
    path.write_text(ident + "\n")
    return ident


def s3_credentials(data_dir: Path) -> tuple[str, str]:
    """Per-data-dir S3 credentials for the local stack, made once and kept with the data."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        creds = json.loads(path.read_text())
        return creds["access_key"], creds["secret_key"]
    access, secret = "opsml-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    path.write_text(json.dumps({"access_key": access, "secret_key": secret}))
    path.chmod(0o600)
    return access, secret


def write_server_env(data_dir: Path, env: Mapping[str, str]) -> Path:
    """`<data-dir>/server.env`: the settings the stack gives its worker and API, as plain
    KEY=value lines of the environment variables `registry_core.settings` reads, so operator
    commands (replay, token, migrate) can load it. Mode 600: it holds the S3 secret."""
    path = data_dir / SERVER_ENV
    lines = [
        "# The server settings of the `opsml dev` stack on this data directory, as environment",
        "# variables (rewritten at every start; the Kafka and S3 ports change each time).",
        f"# S3 credentials are made once per data directory: {CREDENTIALS_FILE}",
    ]
    for key, value in env.items():
        if "\n" in value or "\r" in value:
            raise DevStackError(f"{key} holds a line break; server.env cannot carry it")
        lines.append(f"{key}={value}")
    tmp = path.with_name(SERVER_ENV + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)  # an older file left with another mode keeps it through O_CREAT
    os.replace(tmp, path)
    return path


def read_saved_positions(data_dir: Path) -> dict[str, int]:
    """The subscriber groups' positions last written to GROUP_OFFSETS_FILE (none: empty)."""
    path = data_dir / GROUP_OFFSETS_FILE
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
        return {str(group): int(offset) for group, offset in saved.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise DevStackError(
            f"{path} is not a file of subscriber positions written by opsml dev ({exc}):"
            " restore it, or delete it (subscriber groups then start where their"
            " `from_` says)"
        ) from None


def write_saved_positions(data_dir: Path, positions: Mapping[str, int]) -> None:
    """Replace GROUP_OFFSETS_FILE with these positions, atomically."""
    path = data_dir / GROUP_OFFSETS_FILE
    tmp = path.with_name(GROUP_OFFSETS_FILE + ".tmp")
    tmp.write_text(json.dumps(positions, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
