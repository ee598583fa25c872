"""The stack operations behind the CLI: up, deploy, switch, rollback, status, down.

Each one reads the world (Docker + the proxy), asks the planner what to do, does it through the
driver, and writes one audit record whatever the outcome.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import docker.errors

from simulator import progress
from simulator.docker_driver import DockerDriver, connect, health_of, observed_containers, wait_until
from simulator.drain import docker_exec, drain, run_hook, wait_closed
from simulator.errors import CutoverError, PreflightRefused, Refused
from simulator.health import Health, PoolView, assess, observation, same_observation
from simulator.images import Artefact, ImageBuilder, short_id, stream_image, tag_image
from simulator.promotion import proven_artefact
from simulator.ledger import Ledger, changing, commands
from simulator.parallel import at_once
from simulator.planner import Action, Observed, current_versions, plan_deploy, plan_up
from simulator.proxy_api import ProxyAPI, servers_by_backend
from simulator.schema import DescribedSchema, ExpandOnlySchema, schema_for
from simulator.secrets_store import SecretStore
from simulator.gates import live_after_expand, live_release, release_checks
from simulator.smoke import smoke_test
from simulator.switchback import Flip, plan_rollback, unfinished_flip
from simulator.watch import RolledBack, Sample, Verdict, WatchPolicy, watch
from stacks.spec import COLOURS, StackSpec, is_valid_version, load_stack, other_colour
from stacks.proxy_config import render_backend
from stacks.topology import DB_PASSWORD_SECRET, app_container_names, app_image_ref, database_container_name, database_volume, proxy_container_name

HEALTHY_DEADLINE_S = 90
# How long a server may answer its health check with a wrong HTTP status before that is final.
WRONG_HEALTH_ANSWER_S = 10


@dataclass
class PoolStatus:
    version: str | None
    healthy: int
    total: int
    image_id: str | None = None  # the artefact every member runs (None when they differ or none runs)
    up: int | None = None  # servers HAProxy reports UP (only when the status was assessed)


@dataclass
class StackStatus:
    stack: str
    live: str | None
    pools: dict[str, PoolStatus]
    health: Health | None = None  # who really serves and what is wrong (status(assess=True) only)

    def as_dict(self) -> dict:
        found = {"stack": self.stack, "live": self.live, "pools": {c: asdict(p) for c, p in self.pools.items()}}
        return {**found, **(self.health.as_dict() if self.health else {})}


@dataclass
class SwitchResult:
    from_colour: str
    to_colour: str
    from_version: str | None
    to_version: str | None
    flipped_at: float  # wall clock, when the proxy confirmed the new live colour
    flip_seconds: float  # how long the flip itself took
    drain_seconds: float  # how long the old colour took to finish its in-flight requests
    drained: bool  # False when the drain budget ran out first
    watched_seconds: float = 0.0  # how long the new colour was watched after the flip (0: watch off)
    undoes_seq: int | None = None  # a rollback: the switch it undid
    completes_seq: int | None = None  # a retry that completed an interrupted flip instead of flipping again
    already_live: bool = False  # switch --to a colour that was live: nothing done


@dataclass
class DeployResult:
    colour: str
    version: str
    image: str  # the image ID the colour now runs
    replaced: list[str] = field(default_factory=list)
    smoke_instances: list[str] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # How long each step took, in order: build, migrate, drain, start, health, smoke.
    steps: dict[str, float] = field(default_factory=dict)
    artefact: Artefact | None = None


def _check_version(version: str) -> None:
    if not is_valid_version(version):
        raise Refused(f"version {version!r} cannot be an image tag: use letters, digits, '.', '_' and '-' (at most 128).")


def _name_source(args: dict, command: str) -> str:
    # The ledger records the source stack by name, not the Simulator object.
    args["from_stack"] = args.pop("source").spec.stack
    return command


class StepClock:
    """Times named steps: ``with clock("build"): ...``; ``seconds`` keeps them in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - began, 2)


@dataclass
class FinalizeResult:
    version: str
    applied: list[str]
    retired: list[str]


class Simulator:
    def __init__(self, spec: StackSpec, say: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.say = say
        self.client = connect(spec.docker_host)
        self.secrets = SecretStore(spec.stack, recover=self._recover_secret)
        self.driver = DockerDriver(self.client, spec, self.secrets.get)
        self.images = ImageBuilder(self.client, spec, say)
        self.schema = schema_for(self.driver)
        # Migration runs use the version's artefact by image ID, like its containers.
        self.schema.image_of = self.images.image_id
        self.ledger = Ledger(spec.stack, self.client, self.images.ensure_state, say)

    def refuse_foreign_stack(self) -> None:
        """Called by every changing command (simulator.ledger.changing) before it changes anything."""
        self.driver.refuse_foreign_stack()

    @classmethod
    def for_stack(cls, stack: str, say: Callable[[str], None] = print) -> "Simulator":
        return cls(load_stack(stack), say)

    def _recover_secret(self, name: str) -> str | None:
        """A secret this state directory lacks: take it from the stack's containers, or refuse to
        invent a new password for a database volume that was created with another one."""
        value = self.driver.secret_in_use(name)
        if value is None and name == DB_PASSWORD_SECRET and self.spec.app.read_write and database_volume(self.spec) in self.driver.observe().volumes:
            raise CutoverError(
                f"the database volume {database_volume(self.spec)} exists but its password is not in {self.secrets.directory}; "
                f"point CUTOVER_STATE_DIR at the state it was created with, or remove it with 'cutover down --stack {self.spec.stack} --volumes'."
            )
        return value

    # -- queries --------------------------------------------------------------------------------

    @property
    def proxy(self) -> ProxyAPI:
        return ProxyAPI(self.driver.container(proxy_container_name(self.spec)))

    def live_colour(self) -> str:
        return self.proxy.colours()["live"]

    def status(self, assess_health: bool = False) -> StackStatus:
        """The colours and pools; with ``assess_health``, also who HAProxy really sends live traffic
        to and what is degraded (and a ledger record when live traffic lost its live colour)."""
        listed = self.driver.stack_containers()
        observed = Observed(observed_containers(listed), True, frozenset())
        proxy_up = proxy_container_name(self.spec) in observed.containers and observed.containers[proxy_container_name(self.spec)].running
        live = self.live_colour() if proxy_up else None
        pools = self._pools(listed)
        state = StackStatus(self.spec.stack, live, pools)
        if assess_health:
            state.health = self._assess(state, observed, proxy_up)
            if state.health.live_down and proxy_up:
                self._record_observation(state)
        return state

    @staticmethod
    def _pools(listed: list) -> dict[str, PoolStatus]:
        """Each colour's pool from one listing of the stack's containers (Docker's health included:
        the listing inspects every container, so nothing is inspected again)."""
        observed = Observed(observed_containers(listed), True, frozenset())
        health = {c.name: health_of(c.attrs.get("State") or {}) for c in listed}
        return {
            colour: PoolStatus(
                version=observed.pool_version(colour),
                healthy=sum(1 for m in observed.pool(colour) if health.get(m.name) == "healthy"),
                total=len(observed.pool(colour)),
                image_id=observed.pool_image(colour),
            )
            for colour in COLOURS
        }

    def _assess(self, state: StackStatus, observed, proxy_up: bool) -> Health:
        up = {colour: sum(s.up for s in self.proxy.servers(colour)) if proxy_up else 0 for colour in COLOURS}
        for colour, pool in state.pools.items():
            pool.up = up[colour]
        views = {c: PoolView(p.healthy, p.total, up[c], p.version) for c, p in state.pools.items()}
        stopped = sorted(c.name for c in observed.containers.values() if c.role in ("app", "proxy", "database") and not c.running)
        return assess(self.spec.stack, state.live, self.spec.pool_size, views, stopped, proxy_up)

    def _record_observation(self, state: StackStatus) -> None:
        """'The ledger says so': one 'observe' record when status finds live traffic without its
        live colour, unless the ledger's last record already says the same. It is appended like a
        lock refusal, with no start and without the lock (the engine's flock orders appends), so
        monitoring never waits on, or blocks, a changing command."""
        fields = observation(state.health, state.live)
        try:
            records = self.ledger.entries()
            if same_observation(records[-1] if records else None, fields):
                return
            self.ledger.record("observe", "degraded", **fields, colours_after=self.ledger_snapshot())
        except CutoverError as exc:
            self.say(f"could not record the observation in the ledger: {exc}")

    def _bound_images(self, observed) -> dict[str, str]:
        """The image ID each version the stack runs is bound to; a version never built is built now."""
        images = {}
        for version in sorted(set(current_versions(self.spec, observed).values())):
            images[version] = self.images.image_id(version) or self.images.ensure_app(version).image_id
        return images

    @changing("build")
    def build(self, version: str) -> Artefact:
        """Build ``version``'s artefact (or reuse it: same source), bound to its source for good."""
        _check_version(version)
        return self.images.ensure_app(version)

    # -- changes ------------------------------------------------------------------------------

    @changing("up")
    def up(self) -> list[Action]:
        """Create what is missing, replace what drifted; a second run finds nothing to do.

        A stack created from nothing is created whole or not at all: if any step fails (an image
        that does not build, a migration that fails, an app that never passes its health check),
        what this run created is removed again.
        """
        observed = self.driver.observe()
        actions = plan_up(self.spec, observed, self._bound_images(observed))
        if not actions:
            try:
                # Containers as they should be; a backend setting (health path, interval) may still
                # have changed: it reaches the idle colour now, by a hitless reload.
                actions = self._apply_backends()
            except CutoverError as exc:
                self.ledger.record("up", "failed", actions=[], error=str(exc), removed_again=False)
                raise
            self._sync_versions()
            if actions:
                self.ledger.record("up", "ok", actions=[a.describe() for a in actions])
            return actions
        fresh = not observed.containers and not observed.network_exists
        try:
            actions = actions + self._converge(actions)
        except (CutoverError, docker.errors.APIError) as exc:
            if fresh:
                self._remove_half_made_stack(observed)
            self.ledger.record("up", "failed", actions=[a.describe() for a in actions], error=str(exc), removed_again=fresh)
            raise
        self.ledger.record("up", "ok", actions=[a.describe() for a in actions])
        return actions

    def _remove_half_made_stack(self, before) -> None:
        for container in self.driver.stack_containers():
            self.driver.remove(container.name)
        self.driver.remove_network_and_volumes(with_volumes=False)
        for volume in sorted(self.driver.observe().volumes - before.volumes):
            self.driver.remove_volume(volume)
        if database_volume(self.spec) not in before.volumes:
            # Its password went with the volume it was created for.
            self.secrets.forget_all()
        self.say(f"removed what this run created: stack {self.spec.stack} is as it was (empty)")

    def _converge(self, actions: list[Action]) -> list[Action]:
        """Carry out ``actions``; returns the backend reloads it made on top of them."""
        read_write = self.spec.app.read_write
        if read_write:
            # Settle the password before anything is created: afterwards a fresh database
            # volume would look like an old one whose password went missing.
            self.secrets.get(DB_PASSWORD_SECRET)
            self.images.ensure_database()
        self.images.ensure_proxy()
        versions = sorted({a.container.version for a in actions if a.container and a.container.role == "app"})
        # The database first, then each version's expand migrations, then the apps: no app
        # container ever starts on a schema older than the one it needs.
        first = [a for a in actions if a.container is None or a.container.role == "database"]
        for action in first:
            self.say(action.describe())
            self.driver.apply(action)
        if read_write:
            self.driver.wait_healthy([database_container_name(self.spec)], HEALTHY_DEADLINE_S)
        for version in versions:
            applied = self.schema.expand(version, None, lint=False)
            if applied:
                self.say(f"expand migrations for {version}: {', '.join(applied)}")
        for action in actions:
            if action not in first:
                self.say(action.describe())
                self.driver.apply(action)
        touched = [a.target for a in actions if a.container]
        self.driver.wait_healthy(touched, HEALTHY_DEADLINE_S)
        reloads = self._apply_backends()
        self._sync_versions()
        for colour in COLOURS:
            self._wait_servers_up(self.proxy, colour)
        if any(a.target == proxy_container_name(self.spec) and a.kind == "create" for a in actions):
            # A brand-new proxy starts from its seeded map; make the spec's colour live.
            self.proxy.switch_to(self.spec.live_colour)
        return reloads

    def _backend(self, colour: str) -> str:
        """``colour``'s backend as the stack's settings say now (servers, health path and interval)."""
        return render_backend(self.spec, colour, app_container_names(self.spec)[colour], self.spec.app.port)

    def _apply_backends(self) -> list[Action]:
        """Give the proxy each colour's backend, hitlessly (proxy-backend: a master-worker reload).

        The colour that is not live takes the stack's current settings. The live colour's backend
        is written only when it has no server yet (a new proxy, or one whose state volume predates
        per-colour backends): new settings reach a colour when it is idle, never under live traffic.
        """
        proxy = self.proxy
        live = proxy.colours()["live"]
        reloads = []
        for colour in COLOURS:
            if colour == live and proxy.servers(colour):
                continue
            if proxy.set_backend(colour, self._backend(colour)):
                reason = "the stack's settings, hitless reload" if colour != live else "its first servers, hitless reload"
                action = Action("backend", f"{colour} backend", reason=reason)
                self.say(action.describe())
                reloads.append(action)
        return reloads

    def _sync_versions(self) -> None:
        """Make the proxy's version map (stamped on every response) say what each pool runs."""
        observed = self.driver.observe()
        proxy = self.proxy
        stamped = proxy.versions()
        for colour in COLOURS:
            version = observed.pool_version(colour)
            if version and stamped.get(colour) != version:
                proxy.set_version(colour, version)

    @changing("deploy")
    def deploy(self, version: str) -> DeployResult:
        """Put ``version`` on the idle colour, health-gated and smoke-tested; the live colour is untouched."""
        _check_version(version)
        started = time.monotonic()
        idle = other_colour(self.live_colour())
        self._refuse_while_fallback_serves(idle, "deploy to")
        try:
            result = self._deploy_idle(idle, version)
        except CutoverError as exc:
            self.ledger.record("deploy", "failed", colour=idle, version=version, error=str(exc))
            raise
        result.seconds = round(time.monotonic() - started, 2)
        source = result.artefact.source if result.artefact else None
        self.ledger.record(
            "deploy", "ok", colour=idle, version=version, image_id=result.image, seconds=result.seconds, steps=result.steps,
            source_commit=source.commit if source else None, commit_time=source.commit_time if source else None,
        )
        return result

    @changing(lambda args: _name_source(args, "promote"))
    def promote(self, version: str, source: "Simulator") -> DeployResult:
        """Deploy to this stack's idle colour the exact image ID that ``version`` went live as on
        ``source`` (the stack before this one in the promotion order), by ``source``'s ledger."""
        _check_version(version)
        image_id = proven_artefact(commands(source.ledger.entries()), version)
        if image_id is None:
            raise Refused(
                f"version {version} never went live on stack {source.spec.stack} (its ledger has no switch that made it live); "
                f"promote only what was proven there."
            )
        started = time.monotonic()
        idle = other_colour(self.live_colour())
        self._refuse_while_fallback_serves(idle, "deploy to")
        artefact = self._receive(version, image_id, source)
        result = self._deploy_idle(idle, version, artefact)
        result.steps = {"receive": artefact.seconds, **{k: v for k, v in result.steps.items() if k != "receive"}}
        result.seconds = round(time.monotonic() - started, 2)
        return result

    def _receive(self, version: str, image_id: str, source: "Simulator") -> Artefact:
        """Make ``image_id`` present on this stack's engine under the version's tag: already there,
        or streamed from the source stack's engine and checked to be the same image after."""
        tag = app_image_ref(self.spec, version)
        began = time.monotonic()
        tagged = self.images.image_id(version)
        if tagged is not None and tagged != image_id:
            raise Refused(
                f"version {version} is already {short_id(tagged)} on stack {self.spec.stack}'s engine, not {short_id(image_id)} as it "
                f"went live on {source.spec.stack}: a version names one artefact; give the change a new version."
            )
        try:
            image = self.client.images.get(image_id)
        except docker.errors.ImageNotFound:
            self.say(f"streaming {short_id(image_id)} from stack {source.spec.stack}'s engine")
            try:
                stream_image(source.client, self.client, image_id)
            except docker.errors.ImageNotFound:
                raise CutoverError(f"streamed {short_id(image_id)} to stack {self.spec.stack}'s engine, but it is not there as that ID afterwards.") from None
            image = self.client.images.get(image_id)
        tag_image(image, tag)
        return Artefact(version, tag, image_id, None, None, reused=True, seconds=round(time.monotonic() - began, 2))

    def _deploy_idle(self, idle: str, version: str, artefact: Artefact | None = None) -> DeployResult:
        """Put ``version`` on ``idle``; its artefact is built (or reused) unless one is given (a promotion)."""
        steps = StepClock()
        with steps("build" if artefact is None else "receive"):
            artefact = artefact or self.images.ensure_app(version)
        with steps("migrate"):
            applied = self._expand_schema(version)
        proxy = self.proxy
        with steps("drain"):
            self._drain(proxy, idle)
        in_maint: list[str] = []
        try:
            with steps("start"):
                actions = plan_deploy(self.spec, self.driver.observe(), idle, version, artefact.image_id)
                servers = [s.server for s in proxy.servers(idle)]
                for server in servers:
                    # Noted before it is asked: a signal landing while the proxy carries it out must
                    # still put it back (ready on a server that never left is a no-op).
                    in_maint.append(server)
                    # Out of rotation before its container goes away: no health-check flapping, no new requests.
                    proxy.set_server_state(idle, server, "maint")
                for action in actions:
                    self.say(action.describe())
                    self.driver.apply(action)
            with steps("health"):
                self.driver.wait_healthy([a.target for a in actions], HEALTHY_DEADLINE_S)
                # The idle colour takes the stack's current backend settings (pool size, health
                # path and interval) now, by a hitless reload; its servers keep their MAINT state
                # across it (the proxy's server-state file).
                if proxy.set_backend(idle, self._backend(idle)):
                    self.say(f"{idle}'s backend reloaded with the stack's settings (hitless)")
                # Before the servers take traffic again, so no response of the new version is stamped old.
                proxy.set_version(idle, version)
                present = {s.server for s in proxy.servers(idle)}
                for server in servers:
                    if server in present:  # a pool that shrank lost its last servers with the reload
                        proxy.set_server_state(idle, server, "ready")
                in_maint.clear()
                self._wait_servers_up(proxy, idle)
        except BaseException:
            # Failed or interrupted (Ctrl-C) half-way: no server stays forced into maintenance; the
            # proxy's health checks, and the next switch's preflight, judge what is there.
            for server in in_maint:
                try:
                    proxy.set_server_state(idle, server, "ready")
                except CutoverError as exc:
                    # The proxy did not answer: the next changing command puts it back (simulator/repair.py).
                    self.say(f"could not put {idle}/{server} back in rotation ({exc}); the next cutover command will")
            raise
        with steps("smoke"):
            instances = self._smoke(self.spec.preview_url(), idle, version, f"{idle} {version}")
        self.say(f"smoke tests passed on {self.spec.preview_url()} ({', '.join(instances)})")
        return DeployResult(idle, version, artefact.image_id, [a.target for a in actions], instances, applied, steps=steps.seconds, artefact=artefact)

    def _smoke(self, base_url: str, colour: str, version: str, label: str) -> list[str]:
        """The app's declared smoke checks (enough rounds to reach every server), then its write probe
        (the same gate the Pulumi program's PreviewSmokeTest runs, simulator/gates.py)."""
        return release_checks(self.spec, base_url, colour, version, label)

    def _expand_schema(self, version: str) -> list[str]:
        """The schema gates of a deploy, all before the idle colour is touched.

        The new version must run on the current schema; its pending expand migrations must pass
        the lint gate; they run all-or-nothing; then the *live* version must still work on the
        migrated schema (its smoke checks and write probe through the live port).
        """
        if not self.schema.read_write:
            return []
        # The gates are simulator/gates.py's, shared with the Pulumi program's gate resources.
        live, live_version, _ = live_release(self.driver)
        applied = self.schema.expand(version, live_version)
        if not applied:
            return []
        self.say(f"expand migrations applied: {', '.join(applied)}")
        live_after_expand(self.spec, live, live_version, applied, self.say)
        return applied

    @changing(lambda args: args.pop("action"))
    def switch(self, action: str = "switch", to: str | None = None) -> SwitchResult:
        """Preflight the idle colour, flip the live colour atomically, then let the old one drain
        while the new one is watched (simulator/watch.py): a bad new colour is flipped back.

        ``action`` "rollback" goes back to the colour and version live before the last switch (or
        is refused: simulator/switchback.py); ``to`` makes the switch idempotent (already live: nothing to do).
        """
        proxy = self.proxy
        # Everything the switch decides on, read at once: the proxy's colours and server states
        # (one exec), the ledger's rows, the stack's containers (with Docker's health). Nothing
        # else changes the stack while this command holds its lock, so these readings serve the
        # whole preflight; the servers are read again in the watch baseline, just before the flip.
        (colours, stat_rows), rows, listed = at_once(proxy.read, self._earlier_commands, self.driver.stack_containers)
        current = colours["live"]
        unfinished = unfinished_flip(rows, action, current)
        if unfinished is not None:
            return self._complete_flip(proxy, unfinished, action)
        if to is not None and to not in COLOURS:
            raise Refused(f"--to must be one of {', '.join(COLOURS)}, got {to!r}.")
        status = StackStatus(self.spec.stack, current, self._pools(listed))
        if to == current:
            self.say(f"{current} is already live; nothing to switch")
            version = status.pools[current].version
            return SwitchResult(current, current, version, version, time.time(), 0.0, 0.0, True, already_live=True)
        now = self.ledger_snapshot(read=(listed, current, stat_rows))
        undoes = None
        if action == "rollback":
            try:
                undoes = plan_rollback(self.spec.stack, rows, now).undoes_seq
            except Refused as exc:
                self.ledger.record(action, "refused", live=current, reason=str(exc))
                raise
        target = other_colour(current)
        try:
            self._preflight(proxy, target, status, servers_by_backend(stat_rows).get(target, []), listed)
        except PreflightRefused as exc:
            self.ledger.record(action, "refused", live=current, target=target, reason=str(exc))
            raise
        # Going back is not watched: it returns to what was live, and must not flip forward again.
        policy = self._watch_policy() if action == "switch" else WatchPolicy(0, 0, 1, 1)
        # Kept now, so a flip back need not look at the engine before acting: every second counts then.
        after_flip = {**now, "live": target} if policy.enabled else None
        baseline = proxy.watch_sample(target, current, 0.0) if policy.enabled else None
        if baseline is not None:
            self._refuse_servers_down(action, current, target, [f"{target}/{name} is {state}" for name, state in baseline.servers.items() if state != "UP"])
        began = time.monotonic()
        proxy.switch_to(target)
        flipped_at = time.time()
        flip_seconds = time.monotonic() - began
        result = SwitchResult(
            from_colour=current,
            to_colour=target,
            from_version=status.pools[current].version,
            to_version=status.pools[target].version,
            flipped_at=flipped_at,
            flip_seconds=round(flip_seconds, 4),
            drain_seconds=0.0,
            drained=False,
            undoes_seq=undoes,
        )
        self._watch_and_drain(proxy, result, policy, baseline, after_flip)
        self.ledger.record(action, "ok", **asdict(result))
        return result

    def _watch_and_drain(self, proxy: ProxyAPI, result: SwitchResult, policy: WatchPolicy, baseline: Sample | None, after_flip: dict | None) -> None:
        """After the flip: watch the new colour while the old one drains (or only drain, the watch
        off); a bad verdict flips back (and raises)."""
        if not policy.enabled:
            drained, drain_seconds = self._drain(proxy, result.from_colour, strict=False)
            result.drained, result.drain_seconds = drained, round(drain_seconds, 3)
            return
        target, current = result.to_colour, result.from_colour
        hook = self.spec.app.drain
        hook_ran: list[str] = []

        def end_streams() -> None:
            # The drain budget ran out inside the window: the app's hook ends the old colour's
            # long-lived requests now, as `_drain` would, while the watch goes on.
            hook_ran.extend(self._running_members(current)())
            for failure in run_hook(hook_ran, hook, docker_exec(self.client)):
                self.say(failure)
            self.say(f"{current} still had requests open after {self.spec.drain_seconds}s: ran the app's drain hook in {', '.join(hook_ran)}")

        watched = watch(
            lambda seconds: proxy.watch_sample(target, current, seconds), policy, baseline, self.spec.drain_seconds,
            at_drain_budget=end_streams if hook else None,
        )
        result.drained, result.drain_seconds, result.watched_seconds = watched.drained, watched.drain_s, watched.watched_s
        if watched.verdict is not None:
            self._auto_rollback(proxy, result, watched.verdict, watched.last, after_flip)
        if not result.drained and hook_ran:
            result.drained = wait_closed(lambda: proxy.backend_sessions(current), hook.close_seconds)

    def rollback(self) -> SwitchResult:
        """Back to the colour and version that were live before the last switch (still running: instant)."""
        return self.switch(action="rollback")

    def _earlier_commands(self) -> list[dict]:
        return self.ledger.earlier_commands()

    def _watch_policy(self) -> WatchPolicy:
        spec = self.spec
        return WatchPolicy(spec.watch_seconds, spec.watch_max_5xx_percent, spec.watch_min_requests, spec.watch_max_response_ms)

    def _complete_flip(self, proxy: ProxyAPI, flip: Flip, action: str) -> SwitchResult:
        """A retried switch (or rollback) whose interrupted run already flipped the proxy: drain the
        colour it left and record it done, instead of flipping back."""
        self.say(f"the interrupted {action} (seq {flip.seq}) had already made {flip.to_colour} live; completing it instead of flipping again")
        result = SwitchResult(
            from_colour=flip.from_colour,
            to_colour=flip.to_colour,
            from_version=(flip.before.get(flip.from_colour) or {}).get("version"),
            to_version=(flip.before.get(flip.to_colour) or {}).get("version"),
            flipped_at=time.time(),  # when the watch starts: the real flip time died with the killed command
            flip_seconds=0.0,
            drain_seconds=0.0,
            drained=False,
            completes_seq=flip.seq,
        )
        # A switch killed before its watch ended was never judged: the retry watches it from now.
        policy = self._watch_policy() if action == "switch" else WatchPolicy(0, 0, 1, 1)
        baseline = proxy.watch_sample(flip.to_colour, flip.from_colour, 0.0) if policy.enabled else None
        after_flip = self.ledger_snapshot() if policy.enabled else None
        self._watch_and_drain(proxy, result, policy, baseline, after_flip)
        self.ledger.record(action, "ok", **asdict(result))
        return result

    def _auto_rollback(self, proxy: ProxyAPI, result: SwitchResult, verdict: Verdict, last: Sample, after_flip: dict) -> None:
        """Flip back to the colour the switch left, record 'auto-rollback' with the evidence, raise.

        Everything it needs was read before (the colours after the flip, the old colour's servers
        in the sample that judged): nothing stands between the verdict and the flip back.
        """
        bad, good = result.to_colour, result.from_colour
        evidence = verdict.evidence()
        if not any(status.startswith("UP") for status in last.old_servers.values()):
            # Flipping back to a colour with nothing up would make it worse: say so, leave it live.
            message = (f"switch to {bad} ({result.to_version}) went bad {verdict.seconds_after_flip:.1f}s after the flip ({verdict.reason}), "
                       f"but {good} has no server up to go back to; {bad} stays live: check 'cutover status'.")
            self.ledger.record("switch", "failed", **asdict(result), auto_rollback=None, evidence=evidence, reason=message)
            raise RolledBack(message)
        # Back first, recorded right after: every ledger exec before the flip would cost requests
        # (the switch's own start record already says a flip is under way; killed in between, the
        # next switch finds the proxy back where that switch began and treats it as never flipped).
        began = time.monotonic()
        # Forced: the check above judged it (one server up is enough to go back to).
        proxy.switch_to(good, force=True)
        flipped_back_at = time.time()
        flip_seconds = round(time.monotonic() - began, 4)
        back_after = round(flipped_back_at - result.flipped_at, 2)
        args = {"from_colour": bad, "to_colour": good, "version": result.from_version, "undoes": "switch"}
        snapshots = iter([after_flip])
        with self.ledger.command("auto-rollback", args, lambda: next(snapshots, None) or self.ledger_snapshot()):
            self.ledger.record(
                "auto-rollback", "ok", from_colour=bad, to_colour=good, from_version=result.to_version, to_version=result.from_version,
                flip_seconds=flip_seconds, seconds_after_flip=back_after, flipped_back_at=flipped_back_at, evidence=evidence,
            )
        drained, _ = self._drain(proxy, bad, strict=False)
        message = (
            f"switch to {bad} ({result.to_version}) rolled back automatically {back_after:.1f}s after the flip: {verdict.reason}; "
            f"{good} ({result.from_version}) is live again{'' if drained else f' ({bad} still had requests in flight after the drain budget)'}."
        )
        self.ledger.record("switch", "failed", **asdict(result), auto_rollback=evidence, rolled_back_after_s=back_after, reason=message)
        raise RolledBack(message)

    @changing("finalize")
    def finalize(self) -> FinalizeResult:
        """Give up rollback: retire the idle colour if it needs the old schema, then contract.

        After this, a switch or deploy to a version that needs the old schema is refused.
        """
        if not isinstance(self.schema, DescribedSchema):
            kind = "expand-only migrations" if isinstance(self.schema, ExpandOnlySchema) else "no database (a read-only deployment)"
            raise Refused(f"nothing to finalize: the app of stack {self.spec.stack} has {kind}, so there is no contract step.")
        status = self.status()
        live_version = status.pools[status.live].version
        idle = other_colour(status.live)
        pending = self.schema.finalize_plan(live_version)
        if not pending:
            raise Refused(f"nothing to finalize: the schema already is where {live_version} wants it.")
        retired = []
        idle_version = status.pools[idle].version
        if status.pools[idle].total:
            self._refuse_while_fallback_serves(idle, "retire")
        if status.pools[idle].total and (idle_version is None or not self.schema.runs_after_finalize(idle_version, live_version)):
            self._drain(self.proxy, idle)
            for member in self.driver.observe().pool(idle):
                self.driver.remove(member.name)
                retired.append(member.name)
            self.say(f"retired {idle} ({idle_version}): it cannot run on the contracted schema")
        try:
            applied = self.schema.contract(live_version)
        except CutoverError as exc:
            self.ledger.record("finalize", "failed", version=live_version, retired=retired, error=str(exc))
            raise
        result = FinalizeResult(live_version, applied, retired)
        self.ledger.record("finalize", "ok", **asdict(result))
        return result

    @changing("down")
    def down(self, with_volumes: bool = False, with_ledger: bool = False) -> list[str]:
        """Remove the stack's containers and network (and volumes); the ledger volume only with
        ``with_ledger`` as well, after the command's own end record: an audit trail outlives the stack."""
        if with_ledger and not with_volumes:
            raise Refused("--ledger removes the stack's audit ledger and goes only with --volumes (cutover down --volumes --ledger).")
        if with_ledger:
            self.ledger.after_release(lambda: self.say(f"removed the ledger volume {self.ledger.volume}") if self.ledger.remove() else None)
        removed = []
        for container in self.driver.stack_containers():
            self.driver.remove(container.name)
            removed.append(f"container {container.name}")
        removed += self.driver.remove_network_and_volumes(with_volumes)
        if with_volumes:
            # The database volume is gone, so is the password it was created with.
            self.secrets.forget_all()
        self.ledger.record("down", "ok", removed=removed)
        return removed

    # -- the gates ----------------------------------------------------------------------------

    def _preflight(self, proxy: ProxyAPI, target: str, status: StackStatus, servers: list, listed: list) -> None:
        """The gates a switch passes before it flips, each a refusal that changes nothing: the
        target has containers, all healthy in Docker; HAProxy has every one of its servers UP
        (``servers``, just read); its version runs on the database's schema; the app's smoke
        checks pass through the preview port on every server. The last two are the slow ones (a
        command in the app's container, HTTP requests through the proxy) and run at once."""
        pool = status.pools[target]
        if pool.total == 0:
            raise PreflightRefused(
                f"refusing to switch to {target}: it has no containers (retired by 'cutover finalize'?); deploy a version to it first."
            )
        if pool.healthy < pool.total:
            raise PreflightRefused(
                f"refusing to switch to {target}: only {pool.healthy} of {pool.total} containers are healthy in Docker; live colour unchanged."
            )
        down = [f"{s.server} is {s.status} ({s.check})" for s in servers if not s.up]
        if down:
            raise PreflightRefused(f"refusing to switch to {target}: HAProxy reports {'; '.join(down)}; live colour unchanged.")

        def schema() -> str | None:
            return self.schema.incompatibility(pool.version, self._runs_bound_artefact(target, pool, listed)) if pool.version else None

        def smoke() -> CutoverError | None:
            try:
                smoke_test(self.spec.preview_url(), self.spec.app.smoke, target, pool.version or "", rounds=2 * self.spec.pool_size,
                           servers={s.server for s in servers})
            except CutoverError as exc:
                return exc
            return None

        reason, failed = at_once(schema, smoke)
        if reason:
            raise PreflightRefused(f"refusing to switch to {target}: {reason}; live colour unchanged.")
        if failed is not None:
            raise PreflightRefused(f"refusing to switch to {target}: {failed} Live colour unchanged.")

    def _runs_bound_artefact(self, colour: str, pool: PoolStatus, listed: list) -> str | None:
        """A running container of ``colour`` whose image is its version's bound artefact, where the
        schema's read-only commands can run by exec; None: a one-shot container runs them."""
        if pool.image_id is None or pool.image_id != self.images.image_id(pool.version):
            return None
        return next((c.name for c in listed if c.labels.get("cutover.role") == "app" and c.labels.get("cutover.colour") == colour
                     and c.status == "running"), None)

    def _refuse_servers_down(self, action: str, current: str, target: str, down: list[str]) -> None:
        # The last reading before the flip: a server that went down during the preflight is refused
        # here, not found by the watch after live traffic reached it.
        if down:
            reason = f"refusing to switch to {target}: HAProxy reports {'; '.join(down)} just before the flip; live colour unchanged."
            self.ledger.record(action, "refused", live=current, target=target, reason=reason)
            raise PreflightRefused(reason)

    def _refuse_while_fallback_serves(self, idle: str, doing: str) -> None:
        """The idle colour serving live traffic as the fallback (the live one has no server UP)
        must not be taken out of rotation: that would turn a degraded stack into an outage."""
        live = other_colour(idle)
        if self._serving(live) == idle:
            raise Refused(
                f"refusing to {doing} {idle}: it is serving live traffic as the fallback because {live} has no server UP; "
                f"repair {live} first ('cutover up --stack {self.spec.stack}', see 'cutover status')."
            )

    def _wait_servers_up(self, proxy: ProxyAPI, colour: str) -> None:
        """Until HAProxy's HTTP check sees every server of ``colour`` up.

        A server that answers the health path with the wrong status for WRONG_HEALTH_ANSWER_S is
        running but will never pass: that is the app definition's health.path, said at once
        instead of after the whole deadline.
        """
        path = self.spec.app.health.path
        wrong_since: dict[str, float] = {}

        def all_up() -> bool:
            servers = proxy.servers(colour)
            now = time.monotonic()
            for s in servers:
                if s.up or s.check != "L7STS":
                    wrong_since.pop(s.server, None)
                    continue
                if now - wrong_since.setdefault(s.server, now) > WRONG_HEALTH_ANSWER_S:
                    raise CutoverError(
                        f"the app's health.path {path} answers {s.check_code or 'a status other than 200'} on {colour} "
                        f"({s.server}), not 200; fix health.path in the app definition or the app."
                    )
            return all(s.up for s in servers)

        wait_until(
            all_up,
            HEALTHY_DEADLINE_S,
            lambda: f"HAProxy does not see {colour} as up after {HEALTHY_DEADLINE_S}s on health.path {path}: "
            + ", ".join(f"{s.server} {s.status} ({s.check})" for s in proxy.servers(colour) if not s.up),
            what=f"waiting for HAProxy to see {colour} up",
        )

    def _drain(self, proxy: ProxyAPI, colour: str, strict: bool = True) -> tuple[bool, float]:
        """Wait for ``colour``'s in-flight requests to finish, up to the stack's drain budget; then
        the app's drain hook, if it has one, ends the long-lived ones (simulator/drain.py)."""
        began = time.monotonic()
        budget = self.spec.drain_seconds
        hook = self.spec.app.drain
        with progress.step(f"draining {colour} (up to {budget}s)") as shown:
            def in_flight() -> int:
                count = proxy.backend_sessions(colour)
                shown.update(f"{count} request(s) in flight")
                return count

            outcome = drain(in_flight, budget, hook, self._running_members(colour), docker_exec(self.client))
        if outcome.hook_ran_in:
            self.say(f"{colour} still had requests open after {budget}s: ran the app's drain hook in {', '.join(outcome.hook_ran_in)}")
        for failure in outcome.hook_failures:
            self.say(failure)
        if not outcome.drained and strict:
            # Still in flight after the budget: its own graceful stop (up to
            # APP_STOP_TIMEOUT_S) is the last line; say so rather than pretend.
            waited = budget + (hook.close_seconds if hook else 0)
            self.say(f"{colour} still has requests in flight after {waited}s; stopping gracefully (up to {self.spec.app.stop.grace_seconds}s)")
        return outcome.drained, time.monotonic() - began

    def _running_members(self, colour: str) -> Callable[[], list[str]]:
        return lambda: [c.name for c in self.driver.observe().pool(colour) if c.running]

    # -- what a killed command left (simulator/leftovers.py) ------------------------------------

    def leftovers(self) -> list:
        from simulator.repair import leftovers

        return leftovers(self)

    def repair_leftovers(self, operation) -> None:
        from simulator.repair import repair

        repair(self, operation)

    # -- the ledger's view ----------------------------------------------------------------------

    def ledger_snapshot(self, read: tuple[list, str | None, list[dict]] | None = None) -> dict:
        """The colours as the ledger records them before and after a command: which one is live,
        and each pool's version and image ID (read from its containers, never from a tag).
        ``read``: (the stack's containers, the live colour, the proxy's stats) when just read."""
        if read is None:
            containers = self.driver.stack_containers()
            proxy = [c for c in containers if c.name == proxy_container_name(self.spec) and c.status == "running"]
            live, rows = None, None
            if proxy:
                try:
                    live, rows = self._read_proxy()
                except CutoverError:
                    live = self.live_colour()  # as before: the snapshot fails when the proxy does not say
        else:
            containers, live, rows = read
        pools = {}
        for colour in COLOURS:
            members = [c for c in containers if c.labels.get("cutover.role") == "app" and c.labels.get("cutover.colour") == colour]
            versions = {c.labels.get("cutover.version") for c in members}
            images = {c.attrs.get("Image") for c in members}
            pools[colour] = {
                "version": versions.pop() if len(versions) == 1 else None,
                "image": images.pop() if len(images) == 1 else None,
                "containers": len(members),
            }
        return {"live": live, "serving": self._serving(live, rows) if live else None, **pools}

    def _read_proxy(self) -> tuple[str, list[dict]]:
        colours, rows = self.proxy.read()
        return colours["live"], rows

    def _serving(self, live: str, rows: list[dict] | None = None) -> str | None:
        """The colour HAProxy really sends live traffic to: the live one, or the fallback when the
        live one has no server UP (the proxy's rule, stacks/proxy_config.py), or None."""
        if rows is None:
            try:
                rows = self.proxy.stats()
            except CutoverError:
                return None  # the snapshot still says what is live
        up = {c: any(r["pxname"] == c and r["svname"] not in ("FRONTEND", "BACKEND") and r["status"] == "UP" for r in rows) for c in COLOURS}
        return live if up[live] else other_colour(live) if up[other_colour(live)] else None
