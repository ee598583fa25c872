"""A small keep-alive read load for the self-healing tests: every request on one line of the CSV
named by $HEAL_RECORD (wall-clock start, status, colour and fallback headers, error), so a test can
say which requests failed, when, and who served the rest.

Run by Locust in a process of its own (it patches the standard library with gevent):
``locust -f tests/integration/heal_load.py --headless -u 10 -r 10 -t 30s --host http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import csv
import os
import time

from locust import FastHttpUser, between, events, task

from stacks.proxy_config import COLOUR_HEADER, FALLBACK_HEADER

_record = open(os.environ["HEAL_RECORD"], "a", newline="", buffering=1)
_writer = csv.writer(_record)


@events.request.add_listener
def _on_request(request_type, name, response_time, response_length, response=None, exception=None, start_time=None, **_):
    status = getattr(response, "status_code", 0) or 0
    headers = getattr(response, "headers", None) or {}
    _writer.writerow([
        round(start_time or time.time(), 4), status, headers.get(COLOUR_HEADER, "") if status else "",
        headers.get(FALLBACK_HEADER, "") if status else "", f"{exception.__class__.__name__}: {exception}" if exception else "",
    ])


class Reader(FastHttpUser):
    wait_time = between(0.02, 0.05)

    @task
    def page(self):
        self.client.get("/", name="/")
