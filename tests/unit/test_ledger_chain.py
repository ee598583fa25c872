"""The ledger's chain: the real writer (images/state/cutover-ledger, run here on a directory instead
of the volume) and ``verify_chain``, against every way of tampering with every line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.ledger import GENESIS, commands, line_hash, open_starts, parse_records, verify_chain

WRITER = Path(__file__).resolve().parents[2] / "images/state/cutover-ledger"
RECORDS = 6


def writer(directory: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(WRITER), *args], capture_output=True, text=True, check=True,
        env={**os.environ, "CUTOVER_LEDGER_DIR": str(directory)},
    )
    return result.stdout


def read(directory: Path) -> tuple[list[str], dict | None]:
    out = writer(directory, "read").splitlines()
    head = json.loads(out[0])["head"] if out and out[0].startswith('{"head"') else None
    return [line for line in out[1:] if line.strip()] if head else out, head


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> tuple[list[str], dict]:
    directory = tmp_path_factory.mktemp("ledger")
    for n in range(RECORDS):
        writer(directory, "append", json.dumps({"command": "switch", "phase": "start" if n % 2 == 0 else "end", "note": f"record {n + 1}"}))
    return read(directory)


def test_the_writer_numbers_and_chains_each_record_and_keeps_the_head(ledger):
    lines, head = ledger
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, RECORDS + 1))
    assert records[0]["prev"] == GENESIS
    for before, line in zip(lines, lines[1:]):
        assert json.loads(line)["prev"] == line_hash(before)
    assert head == {"seq": RECORDS, "sha256": line_hash(lines[-1])}
    report = verify_chain(lines, head)
    assert report.intact and report.records == RECORDS


def test_an_empty_ledger_is_intact(tmp_path):
    assert verify_chain([], None).intact


def _edited(line: str) -> str:
    record = json.loads(line)
    record["note"] = "rewritten by hand"
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("k", range(1, RECORDS + 1))
def test_editing_any_line_fails_at_that_record(ledger, k):
    lines, head = ledger
    tampered = list(lines)
    tampered[k - 1] = _edited(lines[k - 1])
    report = verify_chain(tampered, head)
    assert not report.intact
    assert (report.seq, report.line) == (k, k), report.problem
    assert f"seq {k}" in report.problem and "altered" in report.problem


@pytest.mark.parametrize("k", range(1, RECORDS + 1))
def test_deleting_any_line_fails_at_that_record(ledger, k):
    lines, head = ledger
    tampered = lines[: k - 1] + lines[k:]
    report = verify_chain(tampered, head)
    assert not report.intact
    assert report.seq == k, report.problem
    assert f"seq {k}" in report.problem and "removed" in report.problem


@pytest.mark.parametrize("k", range(1, RECORDS + 2))
def test_inserting_a_line_anywhere_fails_at_that_line(ledger, k):
    lines, head = ledger
    # A copy of another record (a replayed line) put in at line k: an earlier one where there is
    # one two lines up, else a later one. (A copy of the line just above is the forged case below.)
    copied = lines[k - 3] if k >= 3 else lines[k + 2]
    tampered = lines[: k - 1] + [copied] + lines[k - 1 :]
    report = verify_chain(tampered, head)
    assert not report.intact
    assert report.line == k, report.problem
    assert "inserted" in report.problem or "reordered" in report.problem


@pytest.mark.parametrize("k", range(1, RECORDS + 1))
def test_inserting_a_forged_record_with_the_right_seq_and_prev_is_caught(ledger, k):
    lines, head = ledger
    forged = json.dumps({"command": "deploy", "phase": "end", "seq": k, "prev": GENESIS if k == 1 else line_hash(lines[k - 2]), "time": "x"},
                        sort_keys=True, separators=(",", ":"))
    tampered = lines[: k - 1] + [forged] + lines[k - 1 :]
    report = verify_chain(tampered, head)
    assert not report.intact
    assert report.seq == k and report.line == k + 1, report.problem
    assert f"lines {k} and {k + 1} both say seq {k}" in report.problem


@pytest.mark.parametrize("k", range(1, RECORDS))
def test_swapping_any_two_neighbouring_lines_fails_at_the_first_of_them(ledger, k):
    lines, head = ledger
    tampered = list(lines)
    tampered[k - 1], tampered[k] = tampered[k], tampered[k - 1]
    report = verify_chain(tampered, head)
    assert not report.intact
    assert report.line == k, report.problem
    assert "reordered" in report.problem and f"seq {k + 1} is at line {k}" in report.problem


def test_a_line_that_is_no_record_any_more(ledger):
    lines, head = ledger
    tampered = list(lines)
    tampered[2] = tampered[2][:40]
    report = verify_chain(tampered, head)
    assert (report.seq, report.line) == (3, 3) and "not a ledger record" in report.problem


def test_a_ledger_rewritten_whole_with_a_fresh_chain_is_caught_by_this_machines_cache(ledger, tmp_path):
    lines, head = ledger
    rewritten = tmp_path / "rewritten"
    rewritten.mkdir()
    for n, line in enumerate(lines, start=1):
        record = json.loads(line)
        body = {k: v for k, v in record.items() if k not in ("seq", "prev", "time")}
        if n == 4:
            body["note"] = "what really happened was otherwise"
        writer(rewritten, "append", json.dumps(body))
    new_lines, new_head = read(rewritten)
    assert verify_chain(new_lines, new_head).intact  # a consistent forgery, head and all
    report = verify_chain(new_lines, new_head, witness=lines[:5])
    assert not report.intact and report.seq == 1  # the rewrite changed every record's time
    report = verify_chain(new_lines, new_head, witness=lines[:0])
    assert report.intact


def test_the_cache_must_be_a_prefix_of_the_ledger(ledger):
    lines, head = ledger
    assert verify_chain(lines, head, witness=lines[:3]).intact
    assert verify_chain(lines, head, witness=lines).intact
    report = verify_chain(lines[:4], {"seq": 4, "sha256": line_hash(lines[3])}, witness=lines)
    assert not report.intact and report.seq == 5 and "removed" in report.problem


def test_a_start_without_an_end_is_an_interrupted_command(tmp_path):
    writer(tmp_path, "append", json.dumps({"command": "deploy", "phase": "start", "args": {"version": "2.0.0"}}))
    writer(tmp_path, "append", json.dumps({"command": "deploy", "phase": "end", "start_seq": 1, "outcome": "ok"}))
    writer(tmp_path, "append", json.dumps({"command": "deploy", "phase": "start", "args": {"version": "3.0.0"}}))
    writer(tmp_path, "append", json.dumps({"command": "switch", "phase": "end", "start_seq": None, "outcome": "refused", "reason": "locked"}))
    lines, head = read(tmp_path)
    records = parse_records(lines)
    assert [r["seq"] for r in open_starts(records)] == [3]
    rows = commands(records)
    assert [(r["seq"], r["command"], r["outcome"]) for r in rows] == [(1, "deploy", "ok"), (3, "deploy", "interrupted"), (4, "switch", "refused")]
