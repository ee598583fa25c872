"""`down` removes its own stack's network only: the engine's name filter matches a part of a name,
so stack "lat" would otherwise find (and remove) the network of stack "latci"."""

from __future__ import annotations

from types import SimpleNamespace

from simulator.docker_driver import DockerDriver


class FakeNetworks:
    def __init__(self, names: list[str]) -> None:
        self.removed: list[str] = []
        self.all = [SimpleNamespace(name=n, remove=lambda n=n: self.removed.append(n)) for n in names]

    def list(self, names=None):  # like the engine: a name filter matches any name that contains it
        return [n for n in self.all if any(part in n.name for part in names or [""])]


def test_down_removes_only_the_network_named_after_its_stack():
    networks = FakeNetworks(["cutover-lat", "cutover-latci"])
    client = SimpleNamespace(networks=networks, volumes=SimpleNamespace(list=lambda **_: []))
    driver = DockerDriver(client, SimpleNamespace(stack="lat"), secrets=lambda name: "")
    assert driver.remove_network_and_volumes(with_volumes=False) == ["network cutover-lat"]
    assert networks.removed == ["cutover-lat"]


def test_a_stack_without_its_network_does_not_see_a_longer_named_one():
    driver = DockerDriver(SimpleNamespace(networks=FakeNetworks(["cutover-latci"])), SimpleNamespace(stack="lat"), secrets=lambda name: "")
    assert driver._own_networks() == []
