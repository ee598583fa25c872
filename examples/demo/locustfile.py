"""What a user of the demo service does during a rehearsal (named in cutover-app.yaml).

An ordinary Locust file: cutover runs every User class in it and records each request. Each user
holds one keep-alive connection (FastHttpUser). A DemoUser reads, writes items and reads its own items
back; one user in 40 (none below 20 users) is a SlowRequestUser that holds a 300 ms request after
another, so that one is in flight whenever the proxy flips. (Until issue 11 every user sent those as
1 task in 33: 3 % of all requests took 300 ms by design, so the run's p99 was that sleep, not the
service, and the sleeping users sent nothing.) Writes are
tagged "write", so `cutover rehearse --mix read` leaves them out; a POST /items answered 201 is
the app's write probe, and cutover reads every one of them back after the run.
"""

import random

from locust import FastHttpUser, constant, tag, task


class _DemoClient(FastHttpUser):
    """What both kinds of user share: back to back, one keep-alive connection, never a retry."""

    abstract = True
    wait_time = constant(0)
    # Never a retry: a failure counts as a dropped request.
    max_retries = 0
    network_timeout = 30.0
    connection_timeout = 5.0


class DemoUser(_DemoClient):
    weight = 39

    def on_start(self) -> None:
        self.my_items: list[int] = []

    @task(20)
    def read_version(self) -> None:
        self.client.get("/version", name="GET /version")

    @tag("write")
    @task(8)
    def write_item(self) -> None:
        with self.client.post("/items", json={"body": f"written by user {id(self)}"}, name="POST /items", catch_response=True) as response:
            if response.status_code != 201:
                return
            try:
                self.my_items.append(response.json()["id"])
            except (ValueError, KeyError, TypeError):
                # A 201 whose body was cut short is a failed request, not a crashed user.
                response.failure("201 without an item id in its body")

    @tag("write")
    @task(4)
    def read_own_item(self) -> None:
        if self.my_items:
            self.client.get(f"/items/{random.choice(self.my_items)}", name="GET /items/{id}")


class SlowRequestUser(_DemoClient):
    """Held requests, back to back: a request that spans each flip, drained on the colour it began on."""

    weight = 1

    @task
    def slow_request(self) -> None:
        self.client.get("/slow?ms=300", name="GET /slow")
