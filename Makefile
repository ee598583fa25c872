# The two commands a user needs: `make demo` (the main job) and `make test` (the tests).
# Everything they need is set up on the way: the venv, the Docker engine, the images.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev

.PHONY: demo test unit engine venv base-image down clean benchmark bench soak faults faults-engine pulumi-matrix wrk proxy-cost demo-latency cluster-test demo-cluster down-cluster cluster-faults

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

engine:
	bash scripts/ensure-docker.sh

base-image: engine
	bash images/base/bootstrap.sh

demo: venv base-image
	$(BIN)/cutover up --stack $(STACK)
	$(BIN)/cutover rehearse --stack $(STACK)
	$(BIN)/cutover status --stack $(STACK)

test: venv base-image wrk
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest tests/unit

# The cluster stack on a local multi-node swarm (docs/cluster.md): a manager and two workers as
# Docker-in-Docker nodes, the edge publishing the stack's ports on 127.0.0.1, the stack up, then the
# same rehearsal as `make demo` (deploy, switch, rollback, switch under Locust load) with every flip
# reaching every proxy task. `make down-cluster` removes the stack and the swarm.
CLUSTER ?= local
demo-cluster: venv base-image
	$(BIN)/cutover cluster up --name $(CLUSTER) --publish 18180 --publish 18181
	$(BIN)/cutover up --stack cluster
	$(BIN)/cutover rehearse --stack cluster
	$(BIN)/cutover status --stack cluster

down-cluster: venv
	$(BIN)/cutover down --stack cluster --volumes --ledger
	$(BIN)/cutover cluster down --name $(CLUSTER)

# The local multi-node swarm (docs/cluster.md): three Docker-in-Docker nodes form a swarm, an image
# reaches each by digest and by stream, a service spreads over them, the edge balances over the
# workers and drops a killed one; the simulator's swarm stack (up, deploy, scale), the switch across
# proxy tasks, a cutover rehearsal under load on the swarm, and the short form of the cluster
# faults (a worker killed, a worker drained, the manager lost); -s prints the figures. Not in `make
# test` (its own target; `.ci/run` runs it after `make test`).
cluster-test: venv base-image
	$(BIN)/python -m pytest -s -m cluster tests/integration/test_cluster_nodes.py tests/integration/test_swarm_switch_cluster.py tests/integration/test_swarm_stack.py tests/integration/test_swarm_cutover.py tests/integration/test_cluster_faults.py

# Nodes of the local swarm broken under load (docs/cluster.md, "Faults on a cluster"): the full run
# prints and writes its figures; CLUSTER_FAULTS_ARGS adds options (--cases, --users, ...).
cluster-faults: venv base-image
	$(BIN)/python -m loadtests.cluster_faults --out cluster-faults/results.json --down $(CLUSTER_FAULTS_ARGS)

# The replacement matrix in docs/pulumi.md, computed from the Pulumi program under mocks
# (tests/unit/replacement_matrix.py; tests/unit/test_pulumi_replacement.py fails when it is stale).
pulumi-matrix: venv
	$(BIN)/python tests/unit/replacement_matrix.py --write

benchmark: venv base-image
	$(BIN)/python -m loadtests.benchmark --stack ci

# Debian's wrk, the load generator of proxy-cost (installed with apt-get when missing, as root).
wrk:
	bash scripts/ensure-wrk.sh

# Proxy vs direct to as many app containers, with wrk, at several concurrencies; figures printed and
# written to $(PROXY_COST_JSON). Brings the stack up first (a no-op when it is up to date).
PROXY_COST_STACK ?= ci
PROXY_COST_JSON ?= proxy-cost/results.json
proxy-cost: venv base-image wrk
	$(BIN)/cutover up --stack $(PROXY_COST_STACK)
	$(BIN)/python -m loadtests.proxy_cost --stack $(PROXY_COST_STACK) --path /version --json $(PROXY_COST_JSON) $(PROXY_COST_ARGS)

# The rehearsal's load on $(STACK)'s live port (up already), no deploy or switch: p50/p99 per request,
# CPU by part, new database sessions.
demo-latency: venv
	$(BIN)/python -m loadtests.demo_latency --stack $(STACK) --json demo-latency/results.json $(DEMO_LATENCY_ARGS)

# Five ways of switching versions side by side, one run (README "make bench"): bench/results.json,
# results.md, comparison.png, requests.csv and the cutover report (report.html, report.png). BENCH_SWITCHES (default 20) switches per way; BENCH_ARGS for the rest.
BENCH_SWITCHES ?= 20
bench: venv base-image
	$(BIN)/python -m loadtests.bench --switches $(BENCH_SWITCHES) $(BENCH_ARGS)

# The soak (README "make soak"): >= SOAK_REQUESTS requests over >= SOAK_FLIPS flips; soak/summary.json,
# requests.csv and the cutover report (report.html, report.png).
SOAK_REQUESTS ?= 1000000
SOAK_FLIPS ?= 100
soak: venv base-image
	$(BIN)/python -m loadtests.soak --requests $(SOAK_REQUESTS) --flips $(SOAK_FLIPS) $(SOAK_ARGS)

# The fault suite (README: "Breaking it on purpose"): every case but the engine restart.
faults: venv base-image
	$(BIN)/python -m loadtests.faults $(FAULTS_ARGS)

# Kills this machine's Docker engine, every stack on it included: only on a machine of your own.
faults-engine: venv base-image
	$(BIN)/python -m loadtests.faults --cases engine-restart --allow-engine-restart $(FAULTS_ARGS)

down: venv
	$(BIN)/cutover down --stack $(STACK)

clean: venv
	-$(BIN)/cutover down --stack dev --volumes
	-$(BIN)/cutover down --stack ci --volumes
	-CUTOVER_STACKS_DIR=$${CUTOVER_STATE_DIR:-$$HOME/.local/state/cutover}/bench/bench-stacks $(BIN)/cutover down --stack bench --volumes
	-CUTOVER_STACKS_DIR=$${CUTOVER_STATE_DIR:-$$HOME/.local/state/cutover}/soak/bench-stacks $(BIN)/cutover down --stack soak --volumes
	-CUTOVER_STACKS_DIR=$${CUTOVER_STATE_DIR:-$$HOME/.local/state/cutover}/faults/stacks $(BIN)/cutover down --stack faults --volumes
	rm -rf $(VENV)
