"""Self-describing bundles: the `card.json` written beside a card's downloaded artifacts, and
the check that a bundle directory holds exactly the bytes it lists.

A bundle is what a CI build packages and a serving container loads without the registry:
the card's identity (registry, space, name, version, uid), its tags and metadata, what its
files are (format, framework and library versions, torch class and constructor arguments,
exports, feature map, sample data) and the sha256 and size of every file. Its format is
`docs/card-bundle.schema.json`; `client.offline.load_card_dir` reads it back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from registry_core.domain.artifacts import validate_artifact_path
from registry_core.domain.cards import Card, DataCard, ModelCard
from registry_core.domain.errors import ArtifactIntegrityError, InvalidArtifact

CARD_JSON = "card.json"
BUNDLE_FORMAT = 1
SCHEMA_ID = "https://opsml-registry.dev/schemas/card-bundle-1.json"


class NotABundle(InvalidArtifact):
    """The directory is not a card bundle (no readable card.json)."""


def _interface(card: Card) -> dict[str, Any]:
    """What the files are and how to load them, by card type."""
    names = {a.path for a in card.artifacts}
    if isinstance(card, ModelCard):
        sample = next((n for n in ("sample_data.parquet", "sample_data.npy") if n in names), None)
        model_file = next(
            (n for n in ("model.skops", "model.safetensors") if n in names),
            None,
        )
        return {
            "kind": "model",
            "framework": card.framework,
            "format": card.model_format,
            "model_file": model_file,
            "framework_versions": dict(card.framework_versions),
            "model_class": card.model_class,
            "model_init_kwargs": dict(card.model_init_kwargs),
            "exports": dict(card.exports),
            "feature_map": dict(card.feature_map),
            "sample_data": {"path": sample, "type": card.sample_data_type} if sample else None,
        }
    if isinstance(card, DataCard):
        data = next((n for n in ("data.parquet", "data.npy") if n in names), None)
        return {
            "kind": "data",
            "data_file": data,
            "data_type": card.data_type,
            "row_count": card.row_count,
            "feature_map": dict(card.feature_map),
            "data_splits": [s.model_dump(mode="json") for s in card.data_splits],
        }
    return {"kind": "files"}


def describe(card: Card) -> dict[str, Any]:
    """The card.json document for a registered card (no registry address, no credentials:
    a bundle travels into images)."""
    if card.uid is None or card.version is None:
        raise InvalidArtifact("only a registered card (with a uid and version) makes a bundle")
    return {
        "$schema": SCHEMA_ID,
        "bundle_format": BUNDLE_FORMAT,
        "registry": card.registry_type.value,
        "card_type": card.card_type,
        "space": card.space,
        "name": card.name,
        "version": card.version,
        "uid": str(card.uid),
        "created_at": card.created_at.isoformat() if card.created_at else None,
        "tags": dict(card.tags),
        "description": card.description,
        "metadata": dict(card.metadata),
        "attributes": card.attributes(),
        "interface": _interface(card),
        "files": describe_files(card),
    }


def describe_files(card: Card) -> list[dict[str, Any]]:
    """Every artifact's path, sha256 and size, sorted by path."""
    return [
        {"path": a.path, "sha256": a.sha256, "size": a.size}
        for a in sorted(card.artifacts, key=lambda a: a.path)
    ]


def write_card_json(card: Card, directory: str | os.PathLike[str]) -> Path:
    """Write `card.json` for `card` into `directory` (atomically); returns its path. (No
    artifact can clash with it: the registry reserves the name.)"""
    text = json.dumps(describe(card), indent=2) + "\n"
    target = Path(directory) / CARD_JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(CARD_JSON + ".part")
    part.write_text(text)
    os.replace(part, target)
    return target


def read_card_json(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's card.json, checked for the fields a loader relies on."""
    path = Path(directory) / CARD_JSON
    if not Path(directory).is_dir():
        raise NotABundle(f"{directory} is not a directory")
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotABundle(
            f"{directory} has no {CARD_JSON}: it is not a card bundle (make one with"
            " `opsml download ... --to DIR` or card.download_artifacts(DIR))"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotABundle(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise NotABundle(f"{path} is not a JSON object")
    fmt = doc.get("bundle_format")
    if fmt != BUNDLE_FORMAT:
        raise NotABundle(
            f"{path}: bundle_format {fmt!r} is not one this client reads ({BUNDLE_FORMAT});"
            " upgrade opsml-registry or download the bundle again"
        )
    for key, kind in (("files", list), ("attributes", dict), ("card_type", str)):
        if not isinstance(doc.get(key), kind):
            raise NotABundle(f"{path}: {key!r} is missing or not a {kind.__name__}")
    return doc


def verify(directory: str | os.PathLike[str], doc: dict[str, Any]) -> list[Path]:
    """Check every file card.json lists: present, of its size and sha256. Raises
    ArtifactIntegrityError naming every file that is not; returns the files' paths."""
    from client.transfer import sha256_of

    root = Path(directory)
    problems: list[str] = []
    paths: list[Path] = []
    for entry in doc["files"]:
        try:
            rel = validate_artifact_path(str(entry["path"]))
            expected, size = str(entry["sha256"]), int(entry["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NotABundle(f"{root / CARD_JSON}: a malformed files entry {entry!r}") from exc
        path = root / rel
        paths.append(path)
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != size:
            problems.append(f"{rel}: {path.stat().st_size} bytes, card.json says {size}")
        elif (actual := sha256_of(path)) != expected:
            problems.append(f"{rel}: sha256 {actual}, card.json says {expected}")
    if problems:
        raise ArtifactIntegrityError(
            f"bundle {root} does not match its card.json - refusing to load it: "
            + "; ".join(problems)
            + " (download it again; if it still differs, tell the registry's operators)"
        )
    return paths
