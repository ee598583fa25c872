"""Who serves live traffic and what `cutover status` calls degraded (pure: simulator/health.py)."""

from __future__ import annotations

from simulator.health import Health, PoolView, assess, observation, same_observation


def pools(blue_up: int, green_up: int, size: int = 2, blue_healthy: int | None = None) -> dict[str, PoolView]:
    return {
        "blue": PoolView(blue_up if blue_healthy is None else blue_healthy, size, blue_up, "1.0.0"),
        "green": PoolView(green_up, size, green_up, "2.0.0"),
    }


def judge(live="blue", pool_views=None, stopped=(), proxy_running=True, size=2) -> Health:
    return assess("heal", live, size, pool_views or pools(2, 2), list(stopped), proxy_running)


def test_a_full_live_pool_is_not_degraded():
    health = judge()
    assert health == Health("blue", False, [])
    assert not health.degraded and not health.fallback


def test_a_live_pool_with_no_server_up_is_served_by_the_other_colour():
    health = judge(pool_views=pools(0, 2), stopped=["cutover-heal-blue-1"])
    assert health.serving == "green" and health.live_down and health.fallback and health.degraded
    assert "live colour blue has no server UP" in health.problems[0] and "fallback, green (2.0.0)" in health.problems[0]
    assert any("cutover-heal-blue-1 is stopped" in p and "cutover up --stack heal" in p for p in health.problems)


def test_the_fallback_works_both_ways():
    health = judge(live="green", pool_views=pools(1, 0))
    assert (health.serving, health.live_down) == ("blue", True)


def test_nothing_serves_when_neither_colour_has_a_server_up():
    health = judge(pool_views=pools(0, 0))
    assert health.serving is None and health.live_down and not health.fallback
    assert "every live request gets 503" in health.problems[0]


def test_a_live_pool_below_its_size_is_degraded_but_still_serving():
    health = judge(pool_views=pools(1, 2))
    assert (health.serving, health.live_down) == ("blue", False)
    assert health.problems == ["live pool blue is below its size: 1 of 2 servers UP in HAProxy, 1 of 2 containers healthy"]


def test_docker_unhealthy_members_count_even_when_haproxy_still_sends_to_them():
    health = judge(pool_views=pools(2, 2, blue_healthy=1))
    assert not health.live_down and "1 of 2 containers healthy" in health.problems[0]


def test_a_stopped_proxy_means_nothing_serves():
    health = judge(live=None, proxy_running=False, stopped=["cutover-heal-proxy"])
    assert health.serving is None and health.live_down
    assert health.problems[0].startswith("the proxy is not running")


def test_a_stack_that_is_not_up_says_so():
    empty = {"blue": PoolView(0, 0, 0), "green": PoolView(0, 0, 0)}
    health = judge(live=None, pool_views=empty, proxy_running=False)
    assert health.live_down and health.problems == ["stack heal is not up (it has no containers); 'cutover up --stack heal' creates it"]


def test_a_retired_idle_pool_is_not_a_problem_but_a_broken_one_is():
    retired = {"blue": PoolView(2, 2, 2, "1.0.0"), "green": PoolView(0, 0, 0, None)}
    assert not judge(pool_views=retired).degraded
    broken = judge(pool_views=pools(2, 1))
    assert broken.problems == ["idle pool green: 1 of 2 servers UP in HAProxy"] and not broken.live_down


def test_an_observation_is_recorded_once_while_it_lasts():
    health = judge(pool_views=pools(0, 2))
    fields = observation(health, "blue")
    last = {"command": "observe", "outcome": "degraded", "seq": 7, **fields}
    assert same_observation(last, fields)
    assert not same_observation(None, fields)
    assert not same_observation({"command": "switch", **fields}, fields)
    other = observation(judge(pool_views=pools(0, 0)), "blue")
    assert not same_observation(last, other)
