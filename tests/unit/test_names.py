from __future__ import annotations

import pytest
from pydantic import ValidationError

from registry_core.domain.cards import RunCard
from registry_core.domain.errors import InvalidName
from registry_core.domain.names import validate_name


@pytest.mark.parametrize("good", ["a", "churn", "churn-model-2", "0", "a" * 64, "x1-y2"])
def test_valid_names(good: str) -> None:
    assert validate_name(good) == good


@pytest.mark.parametrize(
    "bad",
    ["", "Churn", "churn_model", "-churn", "churn-", "a" * 65, "../etc", "a/b", "a b", "é", "a.b",
     "a\x00b", "churn;drop table cards"],
)  # fmt: skip
def test_invalid_names(bad: str) -> None:
    with pytest.raises(InvalidName, match="lowercase letters, digits and '-'"):
        validate_name(bad)


def test_hint_for_common_mistakes() -> None:
    with pytest.raises(InvalidName, match="did you mean 'churn-model'"):
        validate_name("churn_model")
    with pytest.raises(InvalidName, match="did you mean 'churn'"):
        validate_name("Churn")


def test_card_rejects_bad_name_on_the_client() -> None:
    with pytest.raises(ValidationError, match="name 'Churn Model' is invalid"):
        RunCard(space="demo", name="Churn Model")
    with pytest.raises(ValidationError, match="space"):
        RunCard(space="Demo", name="churn")
