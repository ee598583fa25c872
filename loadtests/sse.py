"""Reading a server-sent-events stream (``GET /events``) as a client would, for the fault suite:
how many events came, whether the last one was ``event: end``, and whether it stopped in the
middle of an event. No Locust here, so it is unit-tested against a local server.
"""

from __future__ import annotations

import time

import requests

from stacks.proxy_config import COLOUR_HEADER


def read_stream(base_url: str, limit_s: float) -> dict:
    """Read GET /events (server-sent events) until it ends, at most ``limit_s``: how many events,
    whether the last was ``event: end``, and whether it stopped in the middle of one."""
    result = {"status": 0, "colour": "", "events": 0, "ended": False, "partial": False, "error": ""}
    deadline = time.monotonic() + limit_s
    try:
        with requests.get(f"{base_url}/events", stream=True, timeout=(5, limit_s)) as answer:
            result["status"], result["colour"] = answer.status_code, answer.headers.get(COLOUR_HEADER, "")
            if answer.status_code != 200:
                return result
            block: list[str] = []
            for line in answer.iter_lines(decode_unicode=True):
                if line:
                    block.append(line)
                elif block:  # a blank line ends one event
                    result["events"] += 1
                    result["ended"] = any(is_end(line) for line in block)
                    block = []
                if result["ended"] or time.monotonic() > deadline:
                    break
            result["partial"] = bool(block)
    except requests.RequestException as exc:
        result["error"] = exc.__class__.__name__
        result["partial"] = True
    return result


def is_end(line: str) -> bool:
    """``event: end`` (the space after the colon is optional in SSE)."""
    name, _, value = line.partition(":")
    return name == "event" and value.strip() == "end"


def reconnect_colour(base_url: str) -> str:
    """The colour that serves a new stream (the proxy's header), or "" when none is served."""
    try:
        with requests.get(f"{base_url}/events", stream=True, timeout=5) as answer:
            return answer.headers.get(COLOUR_HEADER, "") if answer.status_code == 200 else ""
    except requests.RequestException:
        return ""
