"""Registry parity with OpsML and beyond, through the whole stack:
client -> Kafka -> sequencer -> Postgres -> API -> client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest

from client import (
    AsyncCardRegistry,
    AuditCard,
    AuditQuestion,
    CardIsDeleted,
    DataCard,
    ExperimentCard,
    InvalidVersion,
    Metric,
    ModelCard,
    NameTaken,
    NotDeletable,
    PipelineCard,
    ProjectCard,
    PromptCard,
    RegistryError,
    RunCard,
    UnknownReference,
    VersionConflict,
    WrongRegistry,
)
from tests.conftest import Stack
from tests.integration.helpers import EVENTS, dumps, outcome, publish_raw, read_topic
from tests.semver_cases import CASES
from tests.support.wire import command

pytestmark = pytest.mark.integration


async def test_semver_rules_table_through_the_whole_stack(stack: Stack) -> None:
    failures = []
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        for case in CASES:
            name = case.id[:64]
            for v in case.history:  # the history, registered with explicit versions
                await reg.register_card(ModelCard(space="semver", name=name), version=v)
            try:
                card = await reg.register_card(
                    ModelCard(space="semver", name=name),
                    case.version_type,
                    case.version,
                    **case.kwargs,
                )
                got: str | None = card.version
                code = None
            except RegistryError as exc:
                got, code = None, exc.code
            if (got, code) != (case.expected, case.error):
                failures.append(
                    f"{case.id}: got {got or code}, expected {case.expected or case.error}"
                )
    assert not failures, "\n".join(failures)


async def test_250_registrations_of_one_name_give_250_distinct_versions(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        cards = [RunCard(space="s", name="many") for _ in range(250)]
        outcomes = await reg.register_cards(cards)
        assert [o.status for o in outcomes] == ["registered"] * 250
        versions = [c.version for c in cards]
        assert versions == [f"1.{i}.0" for i in range(250)]
        listed = [c.version async for c in reg.iter_cards(space="s", name="many", limit=40)]
    assert listed == [f"1.{i}.0" for i in reversed(range(250))]  # 7 pages, newest first, no gaps


async def test_8_concurrent_clients_on_one_name_are_gap_and_duplicate_free(stack: Stack) -> None:
    async def client(n: int) -> list[str]:
        async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
            got = []
            for _ in range(25):
                card = await reg.register_card(RunCard(space="race", name="hot"))
                got.append(card.version)
            return got

    results = await asyncio.gather(*(client(i) for i in range(8)))
    every = [v for r in results for v in r]
    assert len(every) == 200 and len(set(every)) == 200
    assert sorted(every, key=lambda v: int(v.split(".")[1])) == [f"1.{i}.0" for i in range(200)]
    for r in results:  # each client sees its own versions increase
        assert r == sorted(r, key=lambda v: int(v.split(".")[1]))


async def test_every_card_type_in_its_own_registry(stack: Stack) -> None:
    url = stack.url
    async with AsyncCardRegistry("data", tracking_uri=url) as data_reg:
        data = await data_reg.register_card(DataCard(space="p", name="d", data_type="parquet"))
    async with AsyncCardRegistry("model", tracking_uri=url) as model_reg:
        model = await model_reg.register_card(ModelCard(space="p", name="m", datacard_uid=data.uid))
    async with AsyncCardRegistry("experiment", tracking_uri=url) as exp_reg:
        run = ExperimentCard(
            space="p", name="r", datacard_uids=[data.uid], modelcard_uids=[model.uid]
        )
        run.log_parameter("lr", 0.1)
        run.log_metric("loss", 0.9, step=0)
        run.log_metric("loss", 0.5, step=1)
        run = await exp_reg.register_card(run)
        assert isinstance(await exp_reg.load_card(uid=run.uid), ExperimentCard)
    async with AsyncCardRegistry("pipeline", tracking_uri=url) as pipe_reg:
        pipe = await pipe_reg.register_card(
            PipelineCard(space="p", name="pipe", datacard_uids=[data.uid], runcard_uids=[run.uid])
        )
        with pytest.raises(NotDeletable, match="PipelineCards cannot be deleted"):
            await pipe_reg.delete_card(pipe)
    async with AsyncCardRegistry("project", tracking_uri=url) as proj_reg:
        project = await proj_reg.register_card(ProjectCard(space="p", name="proj"))
        with pytest.raises(NameTaken):
            await proj_reg.register_card(ProjectCard(space="p", name="proj"))
        with pytest.raises(NotDeletable, match="ProjectCards cannot be deleted"):
            await proj_reg.delete_card(project)
    async with AsyncCardRegistry("audit", tracking_uri=url) as audit_reg:
        audit = await audit_reg.register_card(
            AuditCard(
                space="p",
                name="review",
                card_uids=[model.uid, data.uid],
                approved=True,
                questionnaire={"bias": AuditQuestion(question="Checked for bias?", response="yes")},
            )
        )
        loaded = await audit_reg.load_card(uid=audit.uid)
        assert isinstance(loaded, AuditCard) and loaded.approved
        assert loaded.questionnaire["bias"].response == "yes"
    async with AsyncCardRegistry("prompt", tracking_uri=url) as prompt_reg:
        prompt = await prompt_reg.register_card(
            PromptCard(
                space="p",
                name="summarise",
                prompt="Summarise: {text}",
                model="gpt-x",
                provider="acme",
                parameters={"temperature": 0.2},
            )
        )
        got = await prompt_reg.load_card(uid=prompt.uid)
        assert isinstance(got, PromptCard) and got.prompt == "Summarise: {text}"
        with pytest.raises(WrongRegistry):
            await prompt_reg.register_card(DataCard(space="p", name="x"))  # type: ignore[arg-type]
        with pytest.raises(WrongRegistry, match="is in the 'data' registry"):
            await prompt_reg.load_card(uid=data.uid)

    # lineage, both ways
    async with AsyncCardRegistry("data", tracking_uri=url) as data_reg:
        lin = await data_reg.lineage(data)
        down = {(link.field, link.card.uid) for link in lin.downstream}
        assert down == {("datacard_uid", model.uid), ("datacard_uids", run.uid),
                        ("datacard_uids", pipe.uid), ("card_uids", audit.uid)}  # fmt: skip
        assert lin.upstream == []
    async with AsyncCardRegistry("run", tracking_uri=url) as run_reg:
        lin = await run_reg.lineage(run)
        assert {(link.field, link.card.uid) for link in lin.upstream} == {
            ("datacard_uids", data.uid), ("modelcard_uids", model.uid)
        }  # fmt: skip
        assert [link.card.uid for link in lin.downstream] == [pipe.uid]


async def test_errors_reach_the_caller(stack: Stack) -> None:
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        await reg.register_card(ModelCard(space="e", name="m"))
        with pytest.raises(VersionConflict, match=r"1\.0\.0 is already registered"):
            await reg.register_card(ModelCard(space="e", name="m"), version="1.0.0")
        with pytest.raises(InvalidVersion, match="already released"):
            await reg.register_card(ModelCard(space="e", name="m"), "pre")
        with pytest.raises(UnknownReference, match="does not match any registered card"):
            await reg.register_card(ModelCard(space="e", name="m", datacard_uid=uuid4()))
    # a wrong card type that bypassed the client's own check is rejected by the sequencer
    body = command(registry="model", card_type="RunCard")
    await publish_raw(stack.bootstrap, dumps(body))
    got = (await outcome(stack.url, body["command_id"])).json()
    assert got["status"] == "rejected" and got["error_code"] == "wrong_registry"
    assert "holds ModelCards" in got["reason"]


async def test_update_and_delete_are_events_and_versions_are_never_reused(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        a = await reg.register_card(RunCard(space="u", name="r", tags={"stage": "dev"}))
        b = await reg.register_card(RunCard(space="u", name="r"))
        a.tags = {"stage": "prod"}
        a.description = "promoted"
        updated = await reg.update_card(a)
        assert updated.version == "1.0.0" and updated.tags == {"stage": "prod"}
        assert (await reg.load_card(uid=a.uid)).description == "promoted"
        prod = await reg.list_cards(space="u", tags={"stage": "prod"})
        assert [c.uid for c in prod] == [a.uid]

        await reg.log_metrics(b, [Metric(name="acc", value=0.7, step=1)])
        await reg.delete_card(b)
        assert [c.version for c in await reg.list_cards(space="u", name="r")] == ["1.0.0"]
        tomb = await reg.list_records(space="u", name="r", include_deleted=True)
        assert [(c.version, c.status) for c in tomb] == [("1.1.0", "deleted"), ("1.0.0", "active")]
        # the cards say it too (they had no status, so a tombstone looked like a live card)
        listed = await reg.list_cards(space="u", name="r", include_deleted=True)
        assert [(c.version, c.status) for c in listed] == [
            ("1.1.0", "deleted"), ("1.0.0", "active"),
        ]  # fmt: skip
        assert (await reg.load_card(uid=b.uid)).status == "deleted"
        assert a.status == "active" and updated.status == "active"
        with pytest.raises(CardIsDeleted):
            await reg.update_card(b)
        c = await reg.register_card(RunCard(space="u", name="r"))
        assert c.version == "1.2.0"  # 1.1.0 stays taken
    types = [e["type"] for e in await read_topic(stack.bootstrap, EVENTS)]
    assert types.count("card_updated") == 2 and types.count("card_deleted") == 1


async def test_run_metrics_are_queryable_and_comparable(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        runs = []
        for lr in (0.1, 0.01):
            run = RunCard(space="m", name="sweep", parameters={"lr": lr})
            for step in range(3):
                run.log_metric("loss", 1.0 / (step + 1) * lr * 10, step=step)
                run.log_metric("acc", 0.5 + step * lr, step=step)
            runs.append(await reg.register_card(run))
        await reg.log_metrics(runs[1], [Metric(name="loss", value=0.01, step=3)])
        cmp = await reg.run_metrics(runs, names=["loss"])
    a, b = runs[0].uid, runs[1].uid
    assert set(cmp.metrics[a]) == {"loss"}
    assert [p.step for p in cmp.metrics[a]["loss"]] == [0, 1, 2]
    assert [p.step for p in cmp.metrics[b]["loss"]] == [0, 1, 2, 3]
    assert cmp.parameters[a] == {"lr": 0.1} and cmp.parameters[b] == {"lr": 0.01}
    async with httpx.AsyncClient(base_url=stack.url) as http:
        resp = await http.get("/api/v1/runs/metrics", params={"uid": str(uuid4())})
        assert resp.status_code == 404


async def test_query_language_through_the_api(stack: Stack) -> None:
    versions = ["1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "1.20.0", "2.0.0-rc.1", "10.0.0"]
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        for v in versions:
            await reg.register_card(ModelCard(space="q", name="m", tags={"v": v}), version=v)

        async def q(**kw: object) -> list[str]:
            return [c.version for c in await reg.list_cards(space="q", name="m", **kw)]

        assert await q(version="1.*") == ["1.20.0", "1.3.0-rc.1", "1.2.5", "1.2.0", "1.0.0"]
        assert await q(version="1.2.*") == ["1.2.5", "1.2.0"]  # never 1.20.0
        assert await q(version="10.*") == ["10.0.0"]
        # ranges are precedence intervals: a pre-release inside one matches (filter it out with
        # ignore_release_candidates); "<2" stops below every 2.0.0 pre-release
        assert await q(version="^1.2.0") == ["1.20.0", "1.3.0-rc.1", "1.2.5", "1.2.0"]
        assert await q(version="^1.2.0", ignore_release_candidates=True) == [
            "1.20.0",
            "1.2.5",
            "1.2.0",
        ]
        assert await q(version="~1.2.0") == ["1.2.5", "1.2.0"]
        assert await q(version=">=1.2,<2") == ["1.20.0", "1.3.0-rc.1", "1.2.5", "1.2.0"]
        assert await q(version="1.2.5") == ["1.2.5"]
        assert await q(ignore_release_candidates=True, limit=3) == ["10.0.0", "1.20.0", "1.2.5"]
        assert await q(tags={"v": "1.2.0"}) == ["1.2.0"]
        assert await q(sort_by_timestamp=True, limit=2) == ["10.0.0", "2.0.0-rc.1"]
        future = datetime.now(UTC) + timedelta(days=1)
        assert len(await q(max_date=future)) == len(versions)
        assert await q(max_date=datetime(2000, 1, 1, tzinfo=UTC)) == []
        # "latest" skips pre-releases unless asked for
        assert (await reg.load_card(space="q", name="m")).version == "10.0.0"
        assert (await reg.load_card(space="q", name="m", version="^1.2")).version == "1.20.0"
        rc = await reg.load_card(space="q", name="m", version="2.*", include_prereleases=True)
        assert rc.version == "2.0.0-rc.1"
