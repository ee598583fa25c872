"""Smoke tests through the proxy's preview port: the idle colour must answer as the version it claims."""

from __future__ import annotations

import requests

from simulator.errors import CutoverError


def smoke_test(base_url: str, colour: str, version: str, health_path: str, rounds: int) -> list[str]:
    """Check health and identity ``rounds`` times (enough to visit every instance); return instances seen."""
    seen = []
    with requests.Session() as session:
        health = _get(session, base_url + health_path)
        if health.status_code != 200:
            raise CutoverError(f"smoke test: {base_url}{health_path} answered {health.status_code}, expected 200.")
        for _ in range(rounds):
            identity = _get(session, base_url + "/version")
            if identity.status_code != 200:
                raise CutoverError(f"smoke test: {base_url}/version answered {identity.status_code}, expected 200.")
            body = identity.json()
            if body.get("colour") != colour or body.get("version") != version:
                raise CutoverError(
                    f"smoke test: {base_url}/version is {body.get('colour')} {body.get('version')}, expected {colour} {version}."
                )
            seen.append(body.get("instance", "?"))
    return sorted(set(seen))


def _get(session: requests.Session, url: str) -> requests.Response:
    try:
        return session.get(url, timeout=5)
    except requests.RequestException as exc:
        raise CutoverError(f"smoke test: GET {url} failed: {exc.__class__.__name__}: {exc}") from None


def smoke_write_read(base_url: str, label: str) -> int:
    """Write one item through ``base_url`` and read it back: the version there works on this schema."""
    with requests.Session() as session:
        try:
            created = session.post(base_url + "/items", json={"body": f"cutover smoke test: {label}"}, timeout=10)
        except requests.RequestException as exc:
            raise CutoverError(f"smoke test: POST {base_url}/items failed: {exc.__class__.__name__}") from None
        if created.status_code != 201:
            raise CutoverError(f"smoke test ({label}): POST {base_url}/items answered {created.status_code}: {created.text[:200]}")
        item_id = created.json()["id"]
        read = _get(session, f"{base_url}/items/{item_id}")
        if read.status_code != 200 or read.json().get("id") != item_id:
            raise CutoverError(f"smoke test ({label}): item {item_id} written through {base_url} could not be read back ({read.status_code}).")
        return item_id
