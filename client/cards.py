"""The client's cards: the domain's card classes plus what happens on the user's machine.

The domain's cards (`registry_core/domain/cards.py`) are plain data, validated alike by the client
and the sequencer, and never touch a file. Everything that does lives here, in subclasses with the
same names: attaching files and directories (walked, symlinks refused), saving a matplotlib
figure, splitting loaded data, and `load()` / `download_artifacts()` on a card that came from a
registry. `from client import RunCard` gives these classes; the registries also accept the
domain's (they simply carry no files).
"""

from __future__ import annotations

import inspect
import os
import tempfile
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from pydantic import PrivateAttr

from registry_core.domain import cards as domain
from registry_core.domain.artifacts import validate_artifact_path
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.errors import InvalidArtifact


class Source(Protocol):
    """What a card that came from a registry loads itself through: an AsyncCardRegistry (the
    calls return awaitables) or a CardRegistry (they block)."""

    def load_artifacts(self, card: Any, path: Any = None) -> Any: ...

    def download_artifacts(self, card: Any, path: Any) -> Any: ...


class Origin(NamedTuple):
    source: Source | None
    status: str | None  # "active" | "deleted", as the registry last said


NOT_FROM_A_REGISTRY = "this card did not come from a registry: load it with load_card"


class Card(domain.Card):
    """The base of the client's cards: a domain card that can carry local files and knows the
    registry it came from. (One private attribute per job, both None until used: every
    registration builds a card, and each private attribute costs its construction time.)"""

    # files to upload with the card: artifact path -> local file (see add_artifact)
    _pending: dict[str, str] | None = PrivateAttr(default=None)
    # set when the card came from (or was registered through) a registry
    _origin: Origin | None = PrivateAttr(default=None)

    @property
    def status(self) -> str | None:
        """ "active", or "deleted" for a tombstone listed with `include_deleted=True`; None for
        a card that has not been registered."""
        return self._origin.status if self._origin is not None else None

    def add_artifact(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Attach a local file, or every file of a directory, to be stored with the card under
        `name` (default: the file or directory name). Symlinks are refused."""
        path = os.fspath(local_path)
        base = name or os.path.basename(os.path.normpath(path))
        found: dict[str, str] = {}
        if os.path.islink(path):
            raise InvalidArtifact(f"{path} is a symlink; attach the file it points to instead")
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path, followlinks=False):
                for entry in [*dirs, *files]:
                    if os.path.islink(os.path.join(root, entry)):
                        raise InvalidArtifact(f"{os.path.join(root, entry)} is a symlink")
                for f in files:
                    rel = os.path.relpath(os.path.join(root, f), path).replace(os.sep, "/")
                    found[validate_artifact_path(f"{base}/{rel}")] = os.path.join(root, f)
        elif os.path.isfile(path):
            found[validate_artifact_path(base)] = path
        else:
            raise InvalidArtifact(f"{path} is not a file or directory")
        # (all or nothing: a directory with one bad entry attaches none of its files)
        self._pending = {**(self._pending or {}), **found}

    def load(self, path: str | None = None) -> Any:
        """Download this card's artifacts (verifying each sha256) and rebuild its objects
        (data, model, ...). With an AsyncCardRegistry this returns an awaitable."""
        return self._source().load_artifacts(self, path)

    def download_artifacts(self, path: str | os.PathLike[str]) -> Any:
        """Download every artifact of this card into directory `path`, verified by sha256, and
        write `card.json` beside them: a bundle `client.load_card_dir(path)` loads with no
        registry (docs/deployment.md). With an AsyncCardRegistry this returns an awaitable."""
        from client import bundle

        result = self._source().download_artifacts(self, path)
        if self.uid is None:  # (a registry refuses an unregistered card: nothing to describe)
            return result
        if inspect.isawaitable(result):
            return _then_describe(result, self, path)
        bundle.write_card_json(self, path)
        return result

    def _source(self) -> Source:
        if self._origin is None or self._origin.source is None:
            raise RuntimeError(NOT_FROM_A_REGISTRY)
        return self._origin.source


async def _then_describe(downloading: Any, card: Card, path: str | os.PathLike[str]) -> Any:
    from client import bundle

    paths = await downloading
    bundle.write_card_json(card, path)
    return paths


def _filter_rows(data: Any, column: str, value: Any) -> Any:
    if hasattr(data, "filter") and hasattr(data, "columns") and not hasattr(data, "loc"):
        import polars as pl

        return data.filter(pl.col(column) == value)
    if hasattr(data, "loc"):
        return data[data[column] == value]
    import pyarrow.compute as pc

    return data.filter(pc.equal(data[column], value))


class DataCard(domain.DataCard, Card):
    __doc__ = domain.DataCard.__doc__

    def split_data(self) -> dict[str, Any]:
        """The loaded data cut into its named splits (by column value, or by row range)."""
        if self.data is None:
            raise RuntimeError("no data: set `data`, or `load()` the card first")
        out = {}
        for split in self.data_splits:
            if split.column is not None:
                out[split.label] = _filter_rows(self.data, split.column, split.value)
            else:
                out[split.label] = self.data[split.start : split.stop]
        return out


class ModelCard(domain.ModelCard, Card):
    __doc__ = domain.ModelCard.__doc__


class RunCard(domain.RunCard, Card):
    __doc__ = domain.RunCard.__doc__

    def log_artifact(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Store a file or directory with the run (figures, reports, ...)."""
        self.add_artifact(local_path, name)

    def log_figure(self, figure: Any, name: str = "figure.png", **savefig_kwargs: Any) -> None:
        """Save a matplotlib figure as a PNG artifact."""
        tmp = tempfile.mkdtemp(prefix="opsml-figure-")
        path = os.path.join(tmp, os.path.basename(name))
        figure.savefig(path, format="png", **savefig_kwargs)
        self.add_artifact(path, name)


class ExperimentCard(domain.ExperimentCard, RunCard):
    __doc__ = domain.ExperimentCard.__doc__


class PipelineCard(domain.PipelineCard, Card):
    __doc__ = domain.PipelineCard.__doc__


class ProjectCard(domain.ProjectCard, Card):
    __doc__ = domain.ProjectCard.__doc__


class AuditCard(domain.AuditCard, Card):
    __doc__ = domain.AuditCard.__doc__


class PromptCard(domain.PromptCard, Card):
    __doc__ = domain.PromptCard.__doc__


CARD_CLASSES: dict[str, type[Card]] = {
    c.card_type: c
    for c in (
        DataCard, ModelCard, RunCard, ExperimentCard, PipelineCard, ProjectCard, AuditCard,
        PromptCard,
    )
}  # fmt: skip
CARD_CLASS_FOR_REGISTRY: dict[RegistryType, type[Card]] = {
    r: CARD_CLASSES[c.card_type] for r, c in domain.CARD_CLASS_FOR_REGISTRY.items()
}
assert CARD_CLASSES.keys() == domain.CARD_CLASSES.keys(), "a card type without a client class"


def from_record(record: CardRecord, source: Source | None = None) -> Card:
    """The client's card for a record the registry returned, bound to `source`."""
    cls = CARD_CLASSES.get(record.card_type) or CARD_CLASS_FOR_REGISTRY[record.registry]
    card = record.to_card(cls)
    assert isinstance(card, Card)
    card._origin = Origin(source, record.status)
    return card


def registered(
    card: domain.Card, version: str, uid: Any, created_at: datetime | None, origin: Origin
) -> None:
    """Record on `card` what its registration returned; `origin`: (the registry, "active"),
    built once per registry (this runs per card of a bulk registration)."""
    card.version, card.uid, card.created_at = version, uid, created_at
    if isinstance(card, Card):
        card._origin = origin  # (reading a private attribute is slow in pydantic: not done here)


def uploaded(card: domain.Card) -> None:
    """The attached files are stored with the registered card: forget them."""
    if isinstance(card, Card):
        card._pending = None


def bind(card: domain.Card, source: Source) -> domain.Card:
    """Make `card.load()` / `card.download_artifacts()` go through `source`."""
    if isinstance(card, Card):
        card._origin = Origin(source, card.status)
    return card


def pending_files(card: domain.Card) -> dict[str, str]:
    """The local files attached to `card` (none for a domain card)."""
    return (card._pending if isinstance(card, Card) else None) or {}
