"""The promotion rules (pure): the order, the source stack, the proven artefact."""

from __future__ import annotations

import pytest

from simulator.errors import Refused
from simulator.promotion import promotion_order, proven_artefact, source_stack


def test_the_order_comes_from_promotion_yaml(tmp_path):
    (tmp_path / "promotion.yaml").write_text("order: [dev, ci, prod]\n")
    order = promotion_order(tmp_path)
    assert order == ["dev", "ci", "prod"]
    assert source_stack(order, "prod", tmp_path) == "ci" and source_stack(order, "ci", tmp_path) == "dev"
    with pytest.raises(Refused, match="first in the promotion order"):
        source_stack(order, "dev", tmp_path)
    with pytest.raises(Refused, match="not in the promotion order"):
        source_stack(order, "staging", tmp_path)


@pytest.mark.parametrize("text", ["", "order: dev\n", "order: [dev]\n", "order: [dev, dev]\n", "order: [dev, 3]\n", "order: [dev\n"])
def test_a_bad_or_missing_order_is_one_sentence(tmp_path, text):
    if text:
        (tmp_path / "promotion.yaml").write_text(text)
    with pytest.raises(Refused) as raised:
        promotion_order(tmp_path)
    assert "promotion.yaml" in str(raised.value) and "\n" not in str(raised.value)


def test_only_a_version_that_went_live_is_proven_and_the_latest_image_counts():
    rows = [
        {"command": "deploy", "outcome": "ok", "version": "2.0.0", "artefact": "sha256:deployed"},
        {"command": "switch", "outcome": "refused", "version": "2.0.0", "artefact": "sha256:refused"},
        {"command": "switch", "outcome": "ok", "version": "1.0.0", "artefact": "sha256:one"},
    ]
    assert proven_artefact(rows, "2.0.0") is None
    rows.append({"command": "switch", "outcome": "ok", "version": "2.0.0", "artefact": "sha256:two"})
    rows.append({"command": "rollback", "outcome": "ok", "version": "1.0.0", "artefact": "sha256:one"})
    assert proven_artefact(rows, "2.0.0") == "sha256:two"
    assert proven_artefact(rows, "1.0.0") == "sha256:one"
