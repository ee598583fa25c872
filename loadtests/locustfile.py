"""What a user of the demo service does during a rehearsal.

Each user holds one keep-alive connection (FastHttpUser's client) and mostly reads the version,
with a share of slow requests so that some are always in flight when the proxy flips.
"""

from locust import FastHttpUser, constant, task


class CutoverUser(FastHttpUser):
    wait_time = constant(0)
    # Our load generator never retries: a request that fails counts as dropped.
    max_retries = 0
    network_timeout = 30.0
    connection_timeout = 5.0

    def context(self) -> dict:
        return {"user": id(self)}

    @task(40)
    def read_version(self) -> None:
        self.client.get("/version", name="/version")

    @task(1)
    def slow_request(self) -> None:
        self.client.get("/slow?ms=300", name="/slow")
