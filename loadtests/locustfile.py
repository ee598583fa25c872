"""What a user of the demo service does during a rehearsal.

Each user holds one keep-alive connection (FastHttpUser's client), reads the version, writes items
and reads its own items back, with a share of slow requests so that some are always in flight when
the proxy flips. Every write that got a 201 is checked after the run: it must still be there.
"""

import random

from locust import FastHttpUser, constant, task


class KeepAliveUser(FastHttpUser):
    """One keep-alive connection, requests back to back, never a retry: a failure counts as dropped."""

    abstract = True
    wait_time = constant(0)
    max_retries = 0
    network_timeout = 30.0
    connection_timeout = 5.0

    def context(self) -> dict:
        return {"user": id(self)}


class ReadingUser(KeepAliveUser):
    """Reads only: the read-only deployment case, and the highest request rate."""

    @task(20)
    def read_version(self) -> None:
        self.client.get("/version", name="GET /version")

    @task(1)
    def slow_request(self) -> None:
        self.client.get("/slow?ms=300", name="GET /slow")


class ReadWriteUser(ReadingUser):
    """Reads, writes items and reads its own items back: the read-write deployment case."""

    def on_start(self) -> None:
        self.my_items: list[int] = []

    @task(8)
    def write_item(self) -> None:
        response = self.client.post("/items", json={"body": f"written by user {id(self)}"}, name="POST /items")
        if response.status_code == 201:
            self.my_items.append(response.json()["id"])

    @task(4)
    def read_own_item(self) -> None:
        if self.my_items:
            self.client.get(f"/items/{random.choice(self.my_items)}", name="GET /items/{id}")


USER_MIXES = {"read": ReadingUser, "read-write": ReadWriteUser}
