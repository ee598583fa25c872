"""HAProxy's rendered config (the constant base and each colour's backend), and the proxy
container that carries the base."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from stacks.proxy_config import (
    COLOUR_HEADER,
    FALLBACK_HEADER,
    SERVER_HEADER,
    VERSION_HEADER,
    VERSION_MAP,
    ADMIN_SOCKET,
    BACKENDS_DIR,
    COLOUR_MAP,
    COLOUR_MAP_DIR,
    HAPROXY_CONFIG_PATH,
    HARD_STOP_AFTER_S,
    LIVE_CONTAINER_PORT,
    PREVIEW_CONTAINER_PORT,
    SERVER_STATE_FILE,
    backend_path,
    render_backend,
    render_base_config,
    render_haproxy_config,
)
from stacks.spec import COLOURS, load_stack
from stacks.topology import app_container_name, app_container_names, proxy_container

REPO_ROOT = Path(__file__).resolve().parents[2]

STACKS = ("dev", "ci", "prod")
PROXY_DIR = Path(__file__).resolve().parents[2] / "images" / "proxy"
ENTRYPOINT = PROXY_DIR / "proxy-entrypoint"


def sections(config: str) -> dict[str, list[list[str]]]:
    """{"global": [...], "frontend live": [...], "backend blue": [...]}: each section's lines as tokens."""
    parsed: dict[str, list[list[str]]] = {}
    current = None
    for raw in config.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = " ".join(line.split()[:2])
            assert current not in parsed, f"section {current!r} appears twice"
            parsed[current] = []
        else:
            assert current is not None, f"directive outside a section: {raw!r}"
            parsed[current].append(line.split())
    return parsed


def directives(section: list[list[str]], keyword: str) -> list[list[str]]:
    return [tokens for tokens in section if tokens[0] == keyword]


def unconditional_use_backend(section: list[list[str]]) -> list[str]:
    """The frontend's last word: the one use_backend without a condition, which must come last."""
    rules = directives(section, "use_backend")
    unconditional = [r for r in rules if "if" not in r and "unless" not in r]
    assert len(unconditional) == 1 and rules[-1] is unconditional[0], rules
    return unconditional[0]


def rendered(spec) -> dict[str, list[list[str]]]:
    return sections(render_haproxy_config(spec, app_container_names(spec), spec.app.port))


@pytest.fixture(params=STACKS)
def spec(request):
    return load_stack(request.param)


# -- backends and servers ------------------------------------------------------------------------


def test_both_backends_with_pool_size_servers_each(spec):
    config = rendered(spec)
    assert {name for name in config if name.startswith("backend ")} == {f"backend {c}" for c in COLOURS}
    for colour in COLOURS:
        servers = directives(config[f"backend {colour}"], "server")
        assert len(servers) == spec.pool_size
        assert [s[1] for s in servers] == [f"{colour}-{i}" for i in range(1, spec.pool_size + 1)]
        assert [s[2] for s in servers] == [f"{app_container_name(spec, colour, i)}:{spec.app.port}" for i in range(1, spec.pool_size + 1)]


@pytest.mark.parametrize("pool_size", [1, 5, 20])
def test_server_count_follows_the_pool_size(pool_size):
    spec = replace(load_stack("ci"), pool_size=pool_size)
    config = rendered(spec)
    for colour in COLOURS:
        assert len(directives(config[f"backend {colour}"], "server")) == pool_size


def test_every_server_is_health_checked(spec):
    config = rendered(spec)
    # The check settings live in each backend (its own file), never in the constant defaults.
    assert not directives(config["defaults"], "default-server")
    for colour in COLOURS:
        backend = config[f"backend {colour}"]
        defaults = directives(backend, "default-server")
        assert len(defaults) == 1
        inherited = defaults[0][1:]
        assert "no-check" not in inherited
        assert ["option", "httpchk", "GET", spec.health_path] in backend
        assert ["http-check", "expect", "status", "200"] in backend
        for server in directives(backend, "server"):
            options = inherited + server[3:]
            assert "check" in options and "no-check" not in server[3:], f"{server[1]} is not health-checked"
            # The check runs at the spec's interval (from default-server unless the server overrides it).
            last_inter = max(i for i, token in enumerate(options) if token == "inter")
            assert options[last_inter + 1] == f"{spec.health_interval_ms}ms"


# -- frontends and the admin socket --------------------------------------------------------------


def test_only_the_live_and_preview_frontends_bind_ports(spec):
    config = rendered(spec)
    binds = {name: directives(lines, "bind") for name, lines in config.items() if directives(lines, "bind")}
    assert binds == {
        "frontend live": [["bind", f":{LIVE_CONTAINER_PORT}"]],
        "frontend preview": [["bind", f":{PREVIEW_CONTAINER_PORT}"]],
    }
    assert not any(name.startswith("listen ") for name in config)


def test_admin_socket_is_a_unix_socket_never_a_tcp_port(spec):
    config = rendered(spec)
    sockets = directives(config["global"], "stats")
    sockets = [s for s in sockets if s[1] == "socket"]
    assert len(sockets) == 1
    address = sockets[0][2]
    assert address == ADMIN_SOCKET
    assert address.startswith("/") and not re.search(r"^(ipv4@|ipv6@|tcp|abns@|fd@)|:\d+$", address)
    assert sockets[0][3:5] == ["mode", "600"]
    # No HTTP stats page anywhere, which would expose the same data on a port.
    for lines in config.values():
        assert not any(tokens[:2] in (["stats", "enable"], ["stats", "uri"]) for tokens in lines)


def test_admin_socket_is_not_published(spec):
    proxy = proxy_container(spec)
    assert sorted(p.internal for p in proxy.ports) == [LIVE_CONTAINER_PORT, PREVIEW_CONTAINER_PORT]
    assert {p.external for p in proxy.ports} == {spec.live_port, spec.preview_port}
    assert {p.internal: p.ip for p in proxy.ports} == {LIVE_CONTAINER_PORT: spec.bind_address, PREVIEW_CONTAINER_PORT: spec.preview_bind_address}


def test_frontends_route_by_the_colour_map(spec):
    config = rendered(spec)
    for frontend, key in (("frontend live", "live"), ("frontend preview", "preview")):
        rule = unconditional_use_backend(config[frontend])
        match = re.fullmatch(rf"%\[str\({key}\),map\({re.escape(COLOUR_MAP)},(\w+)\)\]", rule[1])
        assert match, rule
        assert match.group(1) in COLOURS
    assert COLOUR_MAP.startswith(COLOUR_MAP_DIR + "/")


def test_map_fallbacks_match_the_map_the_proxy_image_seeds():
    """When the map has no entry the fallback applies; it must say what a fresh proxy's map says."""
    seeded = dict(re.findall(r"(live|preview) (blue|green)", ENTRYPOINT.read_text()))
    config = rendered(load_stack("ci"))
    fallbacks = {}
    for frontend, key in (("frontend live", "live"), ("frontend preview", "preview")):
        rule = unconditional_use_backend(config[frontend])
        fallbacks[key] = re.search(r",(\w+)\)\]$", rule[1]).group(1)
    assert fallbacks == seeded
    assert fallbacks["live"] != fallbacks["preview"]


def test_posts_are_never_retried_at_layer_7(spec):
    config = rendered(spec)
    for frontend in ("frontend live", "frontend preview"):
        assert ["http-request", "disable-l7-retry", "if", "METH_POST"] in config[frontend]


# -- switching must never replace the proxy ------------------------------------------------------


def test_live_colour_is_not_an_input_of_the_proxy_container(spec):
    """`pulumi config set liveColor green` must not change the proxy container (or pulumi-docker replaces it)."""
    blue = proxy_container(replace(spec, live_colour="blue"))
    green = proxy_container(replace(spec, live_colour="green"))
    assert asdict(blue) == asdict(green), "the proxy container's inputs depend on the live colour"
    assert blue.fingerprint() == green.fingerprint()


def test_live_colour_is_not_in_the_rendered_config(spec):
    blue = render_haproxy_config(replace(spec, live_colour="blue"), app_container_names(spec), spec.app.port)
    green = render_haproxy_config(replace(spec, live_colour="green"), app_container_names(spec), spec.app.port)
    assert blue == green


def test_deploying_a_version_does_not_change_the_proxy(spec):
    """A deploy changes a colour's version; the proxy finds servers by name, so it stays as it is."""
    before = proxy_container(spec)
    after = proxy_container(replace(spec, blue_version="9.9.9", green_version="8.8.8", drain_seconds=1))
    assert before.fingerprint() == after.fingerprint()


def test_the_proxy_carries_only_the_constant_base_config(spec):
    proxy = proxy_container(spec)
    (upload,) = proxy.uploads
    assert upload.path == HAPROXY_CONFIG_PATH
    assert upload.content == render_base_config()
    assert not [name for name in sections(upload.content) if name.startswith(("backend ", "listen "))]
    assert [v.container_path for v in proxy.volumes] == [COLOUR_MAP_DIR]
    assert BACKENDS_DIR.startswith(COLOUR_MAP_DIR + "/")


@pytest.mark.parametrize(
    "change",
    [
        {"pool_size": 7},
        {"health_interval_ms": 250},
        {"health_interval_ms": 120000},
        {"live_colour": "green"},
        {"blue_version": "9.9.9"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_no_stack_setting_is_an_input_of_the_proxy_container(spec, change):
    """Pool size and the health check change a colour's backend file (proxy-backend, a hitless
    reload), never the proxy container's inputs: pulumi-docker would replace it, the simulator too."""
    changed = replace(spec, **change)
    assert proxy_container(changed).fingerprint() == proxy_container(spec).fingerprint()
    assert render_base_config() == proxy_container(changed).uploads[0].content


def test_the_health_path_is_not_an_input_of_the_proxy_container():
    site = load_stack("static-ci", REPO_ROOT / "examples/static-site")
    demo = load_stack("ci")
    assert site.health_path != demo.health_path or site.app.port != demo.app.port
    assert proxy_container(site).uploads == proxy_container(demo).uploads


def test_the_base_config_loads_before_both_backend_files_in_the_image():
    """The entrypoint hands HAProxy the base, then each colour's backend file, in that order, and
    writes an empty backend for a colour whose file is missing (so the frontends find both)."""
    text = ENTRYPOINT.read_text()
    command = next(line for line in text.splitlines() if line.startswith("exec haproxy"))
    files = re.findall(r'-f "\$state/([^"]+)"', command)
    state = COLOUR_MAP_DIR
    assert [f"{state}/{f}" for f in files] == [HAPROXY_CONFIG_PATH, *(backend_path(c) for c in COLOURS)]
    assert " -W " in command, "master-worker mode: a reload hands the listening sockets to the new worker"
    assert "backend %s" in text and "for colour in blue green" in text


# -- one colour's backend ------------------------------------------------------------------------


def test_a_backend_is_one_section_for_its_colour_only(spec):
    names = app_container_names(spec)
    for colour in COLOURS:
        parsed = sections(render_backend(spec, colour, names[colour], spec.app.port))
        assert list(parsed) == [f"backend {colour}"]
        servers = directives(parsed[f"backend {colour}"], "server")
        assert [s[1] for s in servers] == [f"{colour}-{i}" for i in range(1, spec.pool_size + 1)]


def test_a_backend_carries_its_health_settings_in_a_default_server_line():
    spec = replace(load_stack("ci"), health_interval_ms=4000)
    backend = sections(render_backend(spec, "green", ["a", "b", "c"], 8000))["backend green"]
    (default_server,) = directives(backend, "default-server")
    assert default_server[default_server.index("inter") + 1] == "4000ms"
    assert default_server[default_server.index("fastinter") + 1] == "2000ms"
    assert [s[2] for s in directives(backend, "server")] == ["a:8000", "b:8000", "c:8000"]


def test_a_backend_changes_with_pool_size_and_interval_but_not_with_the_live_colour():
    spec = load_stack("ci")
    base = render_backend(spec, "blue", ["a"], 8000)
    assert render_backend(replace(spec, live_colour="green"), "blue", ["a"], 8000) == base
    assert render_backend(replace(spec, health_interval_ms=3000), "blue", ["a"], 8000) != base
    assert render_backend(spec, "blue", ["a", "b"], 8000) != base


def test_a_backend_with_no_servers_is_still_a_section():
    parsed = sections(render_backend(load_stack("ci"), "blue", [], 8000))
    assert not directives(parsed["backend blue"], "server")


def test_only_a_colour_gets_a_backend():
    with pytest.raises(ValueError):
        render_backend(load_stack("ci"), "purple", ["a"], 8000)


def test_the_whole_config_is_the_base_then_each_backend(spec):
    names = app_container_names(spec)
    whole = render_haproxy_config(spec, names, spec.app.port)
    assert whole == "\n".join([render_base_config(), *(render_backend(spec, c, names[c], spec.app.port) for c in COLOURS)])


# -- a graceful stop and a hitless reload ----------------------------------------------------------


def test_docker_stop_is_a_bounded_soft_stop(spec):
    """SIGUSR1 is HAProxy's soft stop (requests in flight finish); hard-stop-after bounds it below
    the stop timeout, so Docker's SIGKILL never lands on a proxy still finishing requests."""
    proxy = proxy_container(spec)
    config = sections(render_base_config())
    (hard_stop,) = directives(config["global"], "hard-stop-after")
    assert seconds(hard_stop[1]) == HARD_STOP_AFTER_S
    assert proxy.stop_signal == "SIGUSR1"
    assert 0 < HARD_STOP_AFTER_S < proxy.stop_timeout_s
    assert "STOPSIGNAL SIGUSR1" in (PROXY_DIR / "Dockerfile").read_text().splitlines()


def test_a_reload_keeps_server_states_and_idle_connections():
    config = sections(render_base_config())
    assert ["server-state-file", SERVER_STATE_FILE] in config["global"]
    assert ["load-server-state-from-file", "global"] in config["defaults"]
    # A reload's old worker closes an idle keep-alive connection after its next response, not under it.
    assert ["option", "idle-close-on-response"] in config["defaults"]
    assert SERVER_STATE_FILE in (PROXY_DIR / "proxy-backend").read_text()


# -- who served a response, said by the proxy -----------------------------------------------------


def test_every_backend_stamps_colour_version_and_server_on_its_responses(spec):
    config = rendered(spec)
    for colour in COLOURS:
        backend = config[f"backend {colour}"]
        stamps = {tokens[2]: tokens[3] for tokens in directives(backend, "http-response") if tokens[1] == "set-header"}
        assert stamps[COLOUR_HEADER] == colour
        # The version is looked up in the runtime map on every response: a deploy changes it without a reload.
        assert stamps[VERSION_HEADER] == f"%[str({colour}),map({VERSION_MAP},unknown)]"
        assert stamps[SERVER_HEADER] == "%[srv_name]"


def test_the_app_port_and_health_path_come_from_the_app_definition():
    spec = load_stack("static-ci", REPO_ROOT / "examples/static-site")
    config = rendered(spec)
    for colour in COLOURS:
        backend = config[f"backend {colour}"]
        assert all(server[2].endswith(":9090") for server in directives(backend, "server"))
        assert ["option", "httpchk", "GET", "/healthz"] in backend


# -- the live pool lost: the other colour serves --------------------------------------------------


def test_live_traffic_falls_back_to_the_other_colour_only_when_the_live_one_has_no_usable_server(spec):
    frontend = rendered(spec)["frontend live"]
    acls = {tokens[1]: tokens[2:] for tokens in directives(frontend, "acl")}
    for colour in COLOURS:
        # Which colour is live comes from the same runtime map the final use_backend reads.
        assert acls[f"live_is_{colour}"] == [f"str(live),map({COLOUR_MAP},blue)", "-m", "str", colour]
        assert acls[f"{colour}_usable"] == [f"nbsrv({colour})", "gt", "0"]
    decisions = [t for t in directives(frontend, "http-request") if t[1].startswith("set-var(txn.fallback_from)")]
    assert sorted(decisions) == sorted(
        ["http-request", "set-var(txn.fallback_from)", f"str({live})", "if", f"live_is_{live}", f"!{live}_usable", f"{other}_usable"]
        for live, other in (("blue", "green"), ("green", "blue"))
    )
    conditional = [r for r in directives(frontend, "use_backend") if "if" in r]
    assert sorted(conditional) == sorted(
        ["use_backend", other, "if", "{", "var(txn.fallback_from)", "-m", "str", live, "}"] for live, other in (("blue", "green"), ("green", "blue"))
    )
    # A response served by the fallback says so, naming the live colour that had no server.
    assert ["http-response", "set-header", FALLBACK_HEADER, "%[var(txn.fallback_from)]", "if", "{", "var(txn.fallback_from)", "-m", "found", "}"] in frontend


def test_the_preview_never_falls_back(spec):
    """The preview shows the idle colour as it is: a broken idle pool must look broken."""
    preview = rendered(spec)["frontend preview"]
    assert len(directives(preview, "use_backend")) == 1
    assert not directives(preview, "acl")


# -- Docker's DNS not answering is not a removed container -----------------------------------------


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 0.001}[unit]


def test_servers_keep_their_address_while_docker_dns_does_not_answer(spec):
    resolvers = rendered(spec)["resolvers docker"]
    holds = {tokens[1]: seconds(tokens[2]) for tokens in directives(resolvers, "hold")}
    # An engine restart (dockerd serves 127.0.0.11) took ~8 s here; keep addresses far longer.
    for status in ("timeout", "refused", "other"):
        assert holds[status] >= 60, f"hold {status} {holds[status]}s would drop servers while the engine restarts"
    # A name that is really gone, and a new address, are followed quickly.
    assert holds["nx"] <= 5
    timeouts = {tokens[1]: seconds(tokens[2]) for tokens in directives(resolvers, "timeout")}
    assert timeouts["resolve"] <= 1
