"""Promotion: which stack a version comes from, and the artefact it was proven as there (pure).

The order is configuration: ``promotion.yaml`` beside the stack files, e.g. ``order: [dev, ci,
prod]``. A version may go to a stack only as the exact image ID that went live on the stack
before it, as that stack's ledger records it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from simulator.errors import Refused

PROMOTION_FILE = "promotion.yaml"
# The commands whose success leaves a version live (its image ID is in their end record).
MAKES_LIVE = ("switch", "rollback", "up")


def promotion_order(stacks_dir: Path) -> list[str]:
    path = stacks_dir / PROMOTION_FILE
    if not path.is_file():
        raise Refused(f"no promotion order is configured: write {path} with e.g. 'order: [dev, ci, prod]'.")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise Refused(f"{path}: is not valid YAML ({exc.__class__.__name__}).") from None
    order = document.get("order") if isinstance(document, dict) else None
    if not isinstance(order, list) or len(order) < 2 or not all(isinstance(s, str) and s for s in order) or len(set(order)) != len(order):
        raise Refused(f"{path}: 'order' must list two or more distinct stack names, lowest first, e.g. [dev, ci, prod].")
    return order


def source_stack(order: list[str], target: str, path: Path) -> str:
    """The stack a promotion to ``target`` takes its artefact from."""
    if target not in order:
        raise Refused(f"stack {target!r} is not in the promotion order {order} ({path}).")
    position = order.index(target)
    if position == 0:
        raise Refused(f"stack {target!r} is first in the promotion order {order}: nothing is promoted to it; deploy there instead.")
    return order[position - 1]


def proven_artefact(commands: list[dict], version: str) -> str | None:
    """The image ID ``version`` last went live as, by a stack's ledger (its merged command rows)."""
    proven = [
        row.get("artefact")
        for row in commands
        if row.get("command") in MAKES_LIVE and row.get("outcome") == "ok" and row.get("version") == version and row.get("artefact")
    ]
    return proven[-1] if proven else None
