"""Cards of every type, registered through the client as a data scientist would: a DataCard with
a table, a ModelCard trained on it with sample data, two runs with metrics and parameters, an
audit, a prompt, a pre-release and a deleted version. Used by the browser tests and by
`python -m tests.browser.seed <url>` (a populated registry to look at)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from client import (
    AsyncCardRegistry,
    AuditCard,
    AuditQuestion,
    DataCard,
    Metric,
    ModelCard,
    PromptCard,
    RunCard,
)

SPACE = "demo"


@dataclass
class Seeded:
    cards: dict[str, Any] = field(default_factory=dict)
    run_points: dict[str, int] = field(default_factory=dict)  # run key -> metric points logged


async def seed(url: str) -> Seeded:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    out = Seeded()
    frame = pd.DataFrame(
        {"age": [31, 45, 22, 60], "plan": ["a", "b", "a", "c"], "churned": [0, 1, 0, 1]}
    )
    async with AsyncCardRegistry("data", tracking_uri=url) as reg:
        data = DataCard(space=SPACE, name="churn-data", data=frame, tags={"team": "growth"},
                        description="Customers and whether they left.")  # fmt: skip
        out.cards["data"] = await reg.register_card(data)
    async with AsyncCardRegistry("model", tracking_uri=url) as reg:
        x = frame[["age"]].to_numpy(dtype=float)
        model = LogisticRegression().fit(x, frame["churned"])
        out.cards["model"] = await reg.register_card(
            ModelCard(space=SPACE, name="churn-model", model=model, datacard_uid=data.uid,
                      sample_data=frame[["age"]].head(2), tags={"team": "growth"})
        )  # fmt: skip
    async with AsyncCardRegistry("run", tracking_uri=url) as reg:
        for i, lr in enumerate((0.1, 0.03)):
            steps = 12 + 4 * i
            metrics = [Metric(name="loss", value=float(np.exp(-s * lr * 3)) + 0.05 * i, step=s)
                       for s in range(steps)]  # fmt: skip
            metrics += [Metric(name="accuracy", value=0.5 + 0.04 * s, step=s) for s in range(6)]
            run = RunCard(space=SPACE, name="churn-train", parameters={"lr": lr, "epochs": steps},
                          metrics=metrics, datacard_uids=[data.uid],
                          modelcard_uids=[out.cards["model"].uid])  # fmt: skip
            out.cards[f"run{i}"] = await reg.register_card(run)
            out.run_points[f"run{i}"] = len(metrics)
    async with AsyncCardRegistry("audit", tracking_uri=url) as reg:
        out.cards["audit"] = await reg.register_card(
            AuditCard(space=SPACE, name="churn-audit", approved=True,
                      questionnaire={"fairness": AuditQuestion(question="Is any group harmed?",
                                                               response="Checked by age band.")},
                      card_uids=[out.cards["model"].uid])
        )  # fmt: skip
    async with AsyncCardRegistry("prompt", tracking_uri=url) as reg:
        out.cards["prompt"] = await reg.register_card(
            PromptCard(space=SPACE, name="churn-explain",
                       prompt="Explain why {customer} may leave.",
                       system_prompt="You are a careful analyst.", model="small-llm",
                       provider="local", parameters={"temperature": 0.2})
        )  # fmt: skip
    async with AsyncCardRegistry("data", tracking_uri=url) as reg:
        # versions for the constraint search: 1.0.0 (above), 1.1.0, 1.2.0, a deleted 1.3.0, and
        # a pre-release of 2.0.0
        for version in ("1.1.0", "1.2.0", "1.3.0"):
            await reg.register_card(DataCard(space=SPACE, name="churn-data", version=version))
        gone = (await reg.list_cards(space=SPACE, name="churn-data", version="1.3.0"))[0]
        await reg.delete_card(gone)
        out.cards["pre"] = await reg.register_card(
            DataCard(space=SPACE, name="churn-data"), version_type="pre", version="2.0.0-rc.0"
        )
        for name, version in (("events-2", "2.4.0"), ("events-1", "1.5.0"), ("events-0", "0.9.0")):
            await reg.register_card(DataCard(space="logs", name=name, version=version))
    return out


if __name__ == "__main__":
    print(asyncio.run(seed(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")))
