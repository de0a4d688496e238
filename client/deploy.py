"""Deploy specs and lock files: what a service needs from the registry, pinned exactly.

A spec (a TOML file, or `[tool.opsml.deploy]` in pyproject.toml) lists cards by registry,
space, name and a version constraint or an alias. `lock` resolves each entry to one card
version - uid, version and every file's sha256 - and writes `opsml.lock` (JSON);
`check_lock` says whether the spec now resolves to another version (a newer match, a moved
alias, a changed spec); `download_locked` fetches exactly the locked files into one bundle
directory per entry and verifies them. Format and commands: docs/deployment.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client import bundle
from client.registry import AsyncCardRegistry
from registry_core.domain.artifacts import validate_artifact_path
from registry_core.domain.cards import RegistryType, registry_type
from registry_core.domain.errors import AliasNotFound, CardNotFound, RegistryError
from registry_core.domain.names import validate_name
from registry_core.domain.versioning import parse_constraint

LOCK_FORMAT = 1
SPEC_FILES = ("opsml-deploy.toml", "pyproject.toml")
ENTRY_KEYS = {"dir", "registry", "space", "name", "version", "alias", "prereleases"}


class DeployError(RegistryError):
    """The deploy spec or lock file cannot be used as it is."""

    code = "deploy_error"


@dataclass(frozen=True)
class SpecEntry:
    """One card a service needs: a version constraint (none: the newest), or an alias."""

    dir: str
    registry: RegistryType
    space: str
    name: str
    version: str | None = None
    alias: str | None = None
    prereleases: bool = False

    @property
    def wanted(self) -> str:
        what = f"{self.registry.value}/{self.space}/{self.name}"
        if self.alias is not None:
            return f"{what} alias {self.alias!r}"
        return what + (f" {self.version}" if self.version else " (newest)")


@dataclass(frozen=True)
class LockedCard:
    """One spec entry resolved: the exact card version and its files."""

    dir: str
    registry: str
    space: str
    name: str
    version_constraint: str | None
    alias: str | None
    prereleases: bool
    version: str
    uid: str
    card_type: str
    files: list[dict[str, Any]] = field(default_factory=list)

    def entry(self) -> SpecEntry:
        return SpecEntry(
            self.dir, RegistryType(self.registry), self.space, self.name,
            self.version_constraint, self.alias, self.prereleases,
        )  # fmt: skip


def find_spec(path: str | os.PathLike[str] | None) -> Path:
    """The spec to read: `path`, or opsml-deploy.toml / pyproject.toml in the current directory."""
    if path is not None:
        return Path(path)
    for name in SPEC_FILES:
        if Path(name).is_file():
            return Path(name)
    raise DeployError(f"no deploy spec given and none of {', '.join(SPEC_FILES)} is here")


def read_spec(path: str | os.PathLike[str]) -> list[SpecEntry]:
    """The entries of a spec file: `[[cards]]` tables at the top level of a TOML file, or
    `[[tool.opsml.deploy.cards]]` in a pyproject.toml."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise DeployError(f"{p}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeployError(f"{p} is not valid TOML: {exc}") from None
    table: Any = doc
    if "tool" in doc or p.name == "pyproject.toml":
        table = doc.get("tool", {}).get("opsml", {}).get("deploy")
        if table is None:
            raise DeployError(f"{p} has no [tool.opsml.deploy] table")
    cards = table.get("cards") if isinstance(table, dict) else None
    if not isinstance(cards, list) or not cards:
        raise DeployError(f"{p}: no [[cards]] entries (each: registry, space, name, version)")
    entries = [_entry(p, i, raw) for i, raw in enumerate(cards)]
    seen: set[str] = set()
    for e in entries:
        if e.dir in seen:
            raise DeployError(f"{p}: two entries download into {e.dir!r}: give one a `dir`")
        seen.add(e.dir)
    return entries


def _entry(p: Path, i: int, raw: Any) -> SpecEntry:
    where = f"{p}: cards[{i}]"
    if not isinstance(raw, dict):
        raise DeployError(f"{where} is not a table")
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        raise DeployError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(ENTRY_KEYS))}"
        )
    for key in ("registry", "space", "name"):
        if not isinstance(raw.get(key), str):
            raise DeployError(f"{where}: `{key}` is required (a string)")
    try:
        reg = registry_type(raw["registry"])
        space = validate_name(raw["space"], field="space")
        name = validate_name(raw["name"], field="name")
        version = raw.get("version")
        if version is not None:
            parse_constraint(str(version))
        folder = str(raw.get("dir") or name)
        if "/" in validate_artifact_path(folder):
            raise ValueError(f"dir {folder!r} must be one directory name")
    except (ValueError, RegistryError) as exc:
        raise DeployError(f"{where}: {exc}") from None
    alias = raw.get("alias")
    if alias is not None and version is not None:
        raise DeployError(f"{where}: give `version` or `alias`, not both")
    return SpecEntry(
        folder, reg, space, name, None if version is None else str(version),
        None if alias is None else str(alias), bool(raw.get("prereleases", False)),
    )  # fmt: skip


def _files(card: Any) -> list[dict[str, Any]]:
    """As card.json lists them: path, sha256 and size, by path."""
    return bundle.describe_files(card)


async def _resolve_one(reg: AsyncCardRegistry, e: SpecEntry) -> LockedCard:
    try:
        if e.alias is not None:  # the version the alias points at now (the registry's aliases)
            card = await reg.load_card(space=e.space, name=e.name, alias=e.alias)
        else:
            card = await reg.load_card(
                space=e.space, name=e.name, version=e.version, include_prereleases=e.prereleases
            )
    except (CardNotFound, AliasNotFound) as exc:
        raise DeployError(f"{e.dir}: nothing matches {e.wanted} ({exc})") from None
    assert card.version is not None and card.uid is not None
    files = _files(card)
    return LockedCard(
        e.dir, e.registry.value, e.space, e.name, e.version, e.alias, e.prereleases,
        card.version, str(card.uid), card.card_type, files,
    )  # fmt: skip


async def resolve(entries: list[SpecEntry], tracking_uri: str | None = None) -> list[LockedCard]:
    """Each entry's newest matching card version (one registry client per registry type)."""
    regs: dict[RegistryType, AsyncCardRegistry] = {}
    try:
        out = []
        for e in entries:
            if e.registry not in regs:
                regs[e.registry] = AsyncCardRegistry(e.registry, tracking_uri=tracking_uri)
            out.append(await _resolve_one(regs[e.registry], e))
        return out
    finally:
        for reg in regs.values():
            await reg.close()


def lock_document(locked: list[LockedCard]) -> dict[str, Any]:
    return {"lock_format": LOCK_FORMAT, "cards": [asdict(c) for c in locked]}


def write_lock(path: str | os.PathLike[str], locked: list[LockedCard]) -> None:
    target = Path(path)
    part = target.with_name(target.name + ".part")
    part.write_text(json.dumps(lock_document(locked), indent=2) + "\n")
    os.replace(part, target)


def read_lock(path: str | os.PathLike[str]) -> list[LockedCard]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise DeployError(
            f"{p}: no such lock file (make it with `opsml lock SPEC -o {p}`)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeployError(f"{p} is not a lock file (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("lock_format") != LOCK_FORMAT:
        raise DeployError(f"{p}: lock_format is not {LOCK_FORMAT}; make it again with opsml lock")
    try:
        return [LockedCard(**c) for c in doc["cards"]]
    except (KeyError, TypeError) as exc:
        raise DeployError(f"{p}: a malformed lock entry ({exc}); make it again") from None


async def _locked_card(reg: AsyncCardRegistry, c: LockedCard) -> Any:
    """The registry's card for a lock entry; a deleted or vanished card is a DeployError."""
    what = f"{c.dir}: locked {c.registry}/{c.space}/{c.name} {c.version} (uid {c.uid})"
    try:
        card = await reg.load_card(uid=c.uid)
    except CardNotFound:
        raise DeployError(f"{what} does not exist in this registry") from None
    if card.status == "deleted":
        raise DeployError(
            f"{what} was deleted; run `opsml lock` to pin another version of the spec"
        )
    files = _files(card)
    if files != c.files:
        raise DeployError(f"{what}: the registry lists other files than the lock; lock again")
    return card


async def check_lock(
    entries: list[SpecEntry], locked: list[LockedCard], tracking_uri: str | None = None
) -> list[str]:
    """Why the lock no longer matches the spec (empty: it is fresh). A locked card that was
    deleted raises DeployError."""
    by_dir = {c.dir: c for c in locked}
    regs: dict[RegistryType, AsyncCardRegistry] = {}
    stale = [f"{c.dir}: in the lock, not in the spec" for c in locked if c.dir not in
             {e.dir for e in entries}]  # fmt: skip
    try:
        for e in entries:
            reg = regs.get(e.registry) or AsyncCardRegistry(e.registry, tracking_uri=tracking_uri)
            regs[e.registry] = reg
            old = by_dir.get(e.dir)
            if old is None:
                stale.append(f"{e.dir}: in the spec, not in the lock")
                continue
            if old.entry() != e:
                stale.append(f"{e.dir}: the spec entry changed (now {e.wanted})")
                continue
            await _locked_card(reg, old)
            new = await _resolve_one(reg, e)
            if new.uid != old.uid:
                stale.append(
                    f"{e.dir}: locked {old.version}, the match of {e.wanted} is now"
                    f" {new.version} (uid {new.uid})"
                )
    finally:
        for reg in regs.values():
            await reg.close()
    return stale


async def download_locked(
    locked: list[LockedCard], to: str | os.PathLike[str], tracking_uri: str | None = None
) -> list[tuple[LockedCard, Path]]:
    """Fetch exactly the locked files of every entry into `to/<dir>/` (with card.json), verify
    them against the lock, and replace what was there. Returns (entry, bundle directory)."""
    root = Path(to)
    root.mkdir(parents=True, exist_ok=True)
    regs: dict[str, AsyncCardRegistry] = {}
    done: list[tuple[LockedCard, Path]] = []
    try:
        for c in locked:
            reg = regs.get(c.registry) or AsyncCardRegistry(c.registry, tracking_uri=tracking_uri)
            regs[c.registry] = reg
            card = await _locked_card(reg, c)
            target = root / validate_artifact_path(c.dir)
            part = root / f".{c.dir}.partial"
            shutil.rmtree(part, ignore_errors=True)
            try:
                await card.download_artifacts(part)
                doc = bundle.read_card_json(part)
                bundle.verify(part, doc)
                if doc["files"] != c.files or doc["uid"] != c.uid:
                    raise DeployError(f"{c.dir}: the downloaded bundle differs from the lock")
                shutil.rmtree(target, ignore_errors=True)
                os.replace(part, target)
            finally:
                shutil.rmtree(part, ignore_errors=True)
            done.append((c, target))
    finally:
        for reg in regs.values():
            await reg.close()
    return done
