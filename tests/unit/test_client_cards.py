"""The client's cards (client/cards.py) over the domain's pure ones: the domain's card classes
hold data only; the client's subclasses, under the same names, attach files, save figures and
load through the registry they came from."""

from __future__ import annotations

import ast
import inspect
import os
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

import client
from client import cards
from registry_core.domain import cards as domain
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.errors import InvalidArtifact

CLIENT_ONLY = ("add_artifact", "load", "download_artifacts", "log_artifact", "log_figure",
               "split_data", "status")  # fmt: skip


def test_the_domain_cards_do_no_io() -> None:
    tree = ast.parse(inspect.getsource(domain))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"os", "tempfile", "pathlib", "shutil", "io", "polars", "pyarrow"}
    for cls in domain.CARD_CLASSES.values():
        for name in CLIENT_ONLY:
            assert not hasattr(cls, name), f"{cls.__name__}.{name} belongs to the client"
        assert not cls.__private_attributes__, cls.__name__


def test_every_card_type_has_a_client_class_of_the_same_name() -> None:
    for card_type, dom in domain.CARD_CLASSES.items():
        cls = cards.CARD_CLASSES[card_type]
        assert issubclass(cls, dom) and issubclass(cls, cards.Card)
        assert cls.__name__ == dom.__name__ and getattr(client, cls.__name__) is cls
        assert cls.model_fields.keys() == dom.model_fields.keys()
        assert (cls.registry_type, cls.card_type) == (dom.registry_type, dom.card_type)
    assert issubclass(client.ExperimentCard, client.RunCard)
    # the wire is the domain's: the same attributes for the same card
    kw = {"space": "demo", "name": "churn", "parameters": {"lr": 0.1}}
    assert client.RunCard(**kw).attributes() == domain.RunCard(**kw).attributes()


def test_a_record_becomes_a_client_card_with_its_status() -> None:
    record = CardRecord(
        uid=uuid4(), registry=RegistryType.RUN, space="demo", name="churn", version="1.1.0",
        card_type="ExperimentCard", status="deleted", created_at=datetime.now(UTC),
        command_id=uuid4(), attributes={"parameters": {"lr": 0.1}},
    )  # fmt: skip
    card = cards.from_record(record)
    assert type(card) is client.ExperimentCard
    assert (card.version, card.uid, card.status) == ("1.1.0", record.uid, "deleted")
    assert card.parameters == {"lr": 0.1}
    assert client.RunCard(space="demo", name="churn").status is None
    with pytest.raises(RuntimeError, match="did not come from a registry"):
        card.load()
    with pytest.raises(RuntimeError, match="did not come from a registry"):
        card.download_artifacts(".")


def test_a_card_loads_through_the_registry_it_is_bound_to() -> None:
    class Source:
        def load_artifacts(self, card: object, path: object = None) -> tuple[str, object]:
            return "load", path

        def download_artifacts(self, card: object, path: object) -> tuple[str, object]:
            return "download", path

    card = cards.bind(client.RunCard(space="demo", name="churn"), Source())
    assert card.load("here") == ("load", "here")  # type: ignore[attr-defined]
    assert card.download_artifacts("there") == ("download", "there")  # type: ignore[attr-defined]


def test_files_and_directories_are_attached_and_symlinks_refused(tmp_path: Path) -> None:
    (tmp_path / "report" / "sub").mkdir(parents=True)
    (tmp_path / "report" / "a.txt").write_text("a")
    (tmp_path / "report" / "sub" / "b.txt").write_text("b")
    (tmp_path / "w.bin").write_bytes(b"w")
    run = client.RunCard(space="demo", name="churn")
    assert cards.pending_files(run) == {}
    run.log_artifact(tmp_path / "report")
    run.add_artifact(tmp_path / "w.bin", "model/weights.bin")
    assert cards.pending_files(run) == {
        "report/a.txt": str(tmp_path / "report" / "a.txt"),
        "report/sub/b.txt": str(tmp_path / "report" / "sub" / "b.txt"),
        "model/weights.bin": str(tmp_path / "w.bin"),
    }
    os.symlink(tmp_path / "w.bin", tmp_path / "report" / "sub" / "link")
    with pytest.raises(InvalidArtifact, match="symlink"):
        run.add_artifact(tmp_path / "report", "again")
    assert not any(p.startswith("again/") for p in cards.pending_files(run))  # all or nothing
    with pytest.raises(InvalidArtifact, match="not a file or directory"):
        run.add_artifact(tmp_path / "missing")
    assert cards.pending_files(domain.RunCard(space="demo", name="churn")) == {}


def test_a_registered_card_forgets_its_files_and_is_active() -> None:
    class Source:
        def load_artifacts(self, card: object, path: object = None) -> None: ...

        def download_artifacts(self, card: object, path: object) -> None: ...

    run = client.RunCard(space="demo", name="churn")
    run._pending = {"x": "y"}
    uid = uuid4()
    cards.registered(run, "1.0.0", uid, datetime.now(UTC), cards.Origin(Source(), "active"))
    cards.uploaded(run)
    assert (run.version, run.uid, run.status, cards.pending_files(run)) == (
        "1.0.0", uid, "active", {},
    )  # fmt: skip
    plain = domain.RunCard(space="demo", name="churn")
    cards.registered(
        plain, "1.0.0", uid, None, cards.Origin(Source(), "active")
    )  # a domain card: the fields only
    assert (plain.version, plain.uid) == ("1.0.0", uid)
