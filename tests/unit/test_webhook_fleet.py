"""The decisions about webhook delivery processes (core/webhooks/fleet.py) and
their setting; pure, so examples and hypothesis properties."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.webhooks import fleet
from core.webhooks.settings import MAX_PROCESSES, WebhookSettings, parse
from core.webhooks.worker import DeliveryWorker
from localstack.paths import REPO


@given(st.integers(1, MAX_PROCESSES).flatmap(lambda n: st.tuples(st.just(n), st.integers(n, 5000))))
def test_the_shares_of_a_limit_add_up_to_it_and_differ_by_at_most_one(
    case: tuple[int, int],
) -> None:
    processes, total = case
    parts = [fleet.share(total, processes, i) for i in range(processes)]
    assert sum(parts) == total
    assert min(parts) >= 1 and max(parts) - min(parts) <= 1


def test_shares_by_example() -> None:
    assert [fleet.share(16, 3, i) for i in range(3)] == [6, 5, 5]
    assert [fleet.share(8, 2, i) for i in range(2)] == [4, 4]
    with pytest.raises(AssertionError):
        fleet.share(1, 2, 0)  # parse refuses fewer slots than processes


@given(st.integers(1, 8), st.integers(0, 64), st.integers(0, 64), st.floats(0.01, 30))
def test_each_process_runs_its_share_and_a_lease_that_covers_its_own_queue(
    processes: int, extra: int, endpoint_extra: int, timeout_s: float
) -> None:
    settings = WebhookSettings(
        concurrency=processes + extra,
        endpoint_concurrency=processes + endpoint_extra,
        timeout_s=timeout_s,
        delivery_processes=processes,
    )
    shares = [fleet.settings_of(settings, i) for i in range(processes)]
    # The core's limits stay totals: never more at once, overall or per endpoint.
    assert sum(s.concurrency for s in shares) == settings.concurrency
    assert sum(s.endpoint_concurrency for s in shares) == settings.endpoint_concurrency
    for s in shares:
        lease_s = DeliveryWorker(None, None, s, None, None).lease_s()  # type: ignore[arg-type]
        rounds = math.ceil(s.concurrency / s.endpoint_concurrency)
        assert lease_s >= rounds * timeout_s + s.lease_grace_s - 1e-9
        assert s.policy == settings.policy and s.timeout_s == settings.timeout_s


def test_delivery_processes_is_parsed_and_bounded() -> None:
    assert parse({}).delivery_processes == WebhookSettings().delivery_processes
    assert parse({"delivery_processes": 0}).delivery_processes == 0
    assert parse({"delivery_processes": 2}).delivery_processes == 2
    for bad in (-1, 1.5, "2", True, MAX_PROCESSES + 1):
        with pytest.raises(ValueError, match="delivery_processes"):
            parse({"delivery_processes": bad, "concurrency": 100, "endpoint_concurrency": 100})
    # A process needs a slot of each limit: more processes than slots is refused.
    with pytest.raises(ValueError, match="endpoint_concurrency"):
        parse({"delivery_processes": 3, "endpoint_concurrency": 2})
    with pytest.raises(ValueError, match="concurrency"):
        parse({"delivery_processes": 3, "concurrency": 2, "endpoint_concurrency": 2})


@given(st.integers(0, 1000), st.floats(0, 1e6, allow_nan=False))
def test_the_backoff_grows_from_half_a_second_to_thirty_and_resets_after_a_stable_run(
    before: int, ran_s: float
) -> None:
    crashes = fleet.crashes_in_a_row(before, ran_s)
    assert crashes == (1 if ran_s >= fleet.STABLE_AFTER_S else before + 1)
    delay = fleet.restart_delay_s(crashes)
    assert fleet.FIRST_RESTART_S <= delay <= fleet.MAX_RESTART_S
    assert fleet.restart_delay_s(crashes + 1) >= delay


def test_the_backoff_by_example() -> None:
    assert [fleet.restart_delay_s(n) for n in (1, 2, 3, 7, 8, 100)] == [
        0.5,
        1.0,
        2.0,
        30.0,
        30.0,
        30.0,
    ]


COUNTS = st.dictionaries(st.sampled_from(sorted(fleet.DECISIONS)), st.integers(0, 10**9))


@given(COUNTS, st.booleans())
def test_a_report_reads_back_as_written(attempts: dict[str, int], ok: bool) -> None:
    report = fleet.Report(attempts, ok)
    line = fleet.report_line(report)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert fleet.read_report(line) == report


@given(st.binary(max_size=200))
def test_any_other_line_is_no_report_and_never_raises(line: bytes) -> None:
    found = fleet.read_report(line)
    assert found is None or fleet.read_report(fleet.report_line(found)) == found


@pytest.mark.parametrize(
    "line",
    [
        b'{"attempts": {"succeeded": -1}, "database_ok": true}',
        b'{"attempts": {"succeeded": true}, "database_ok": true}',
        b'{"attempts": {"whatever": 1}, "database_ok": true}',
        b'{"attempts": {}, "database_ok": 1}',
        b'{"attempts": [], "database_ok": true}',
        b"[]",
        b"not json",
    ],
)
def test_malformed_reports_are_refused(line: bytes) -> None:
    assert fleet.read_report(line) is None


@given(COUNTS, COUNTS)
def test_increments_add_only_growth(before: dict[str, int], now: dict[str, int]) -> None:
    grown = fleet.increments(before, now)
    for key, n in grown.items():
        assert n > 0 and before.get(key, 0) + n == now[key]
    assert all(now[k] <= before.get(k, 0) for k in now if k not in grown)


def test_a_restarted_process_counts_from_zero() -> None:
    assert fleet.increments({}, {"succeeded": 3}) == {"succeeded": 3}
    assert fleet.increments({"succeeded": 3}, {"succeeded": 5, "pending": 1}) == {
        "succeeded": 2,
        "pending": 1,
    }


VIEWS = st.builds(
    fleet.ProcessView,
    running=st.booleans(),
    since_report_s=st.floats(0, 100),
    database_ok=st.sampled_from([None, True, False]),
)


@given(st.dictionaries(st.integers(0, 8), VIEWS, max_size=9))
def test_the_processes_are_healthy_only_when_each_runs_reports_and_reaches_the_database(
    views: dict[int, fleet.ProcessView],
) -> None:
    healthy = all(
        v.running and v.since_report_s <= fleet.STALE_AFTER_S and v.database_ok is True
        for v in views.values()
    )
    found = fleet.problem(views)
    assert (found is None) == healthy
    for view in views.values():
        assert fleet.up(view) == (view.running and view.since_report_s <= fleet.STALE_AFTER_S)
        assert not fleet.up(view) or fleet.process_problem(view) in (
            None,
            "starting",
            "cannot reach the database",
        )
    if found is not None:
        first = min(i for i, v in views.items() if fleet.process_problem(v) is not None)
        assert found.startswith(f"delivery process {first}: ")


def test_problems_by_example() -> None:
    ok = fleet.ProcessView(running=True, since_report_s=0.2, database_ok=True)
    starting = fleet.ProcessView(running=True, since_report_s=0.2, database_ok=None)
    assert fleet.problem({0: ok}) is None
    assert fleet.problem({0: ok, 1: starting}) == "delivery process 1: starting"
    assert fleet.problem({0: ok, 1: fleet.ProcessView(True, 0.1, False)}) == (
        "delivery process 1: cannot reach the database"
    )
    assert fleet.process_problem(fleet.ProcessView(True, 6.0, True)) == "no report for over 5 s"
    assert fleet.process_problem(fleet.ProcessView(False, 0.0, True)) == (
        "not running (restarting)"
    )


@given(st.floats(0, fleet.HUNG_AFTER_S), st.booleans())
def test_a_process_whose_reports_arrive_within_the_bound_is_never_hung(
    since_report_s: float, ok: bool
) -> None:
    assert not fleet.hung(fleet.ProcessView(True, since_report_s, ok))


@given(st.floats(fleet.HUNG_AFTER_S, 1e9, exclude_min=True), st.booleans())
def test_a_running_process_silent_past_the_bound_is_always_hung(
    since_report_s: float, ok: bool
) -> None:
    assert fleet.hung(fleet.ProcessView(True, since_report_s, ok))
    # Hung is never healthy: health said so from STALE_AFTER_S on.
    assert not fleet.up(fleet.ProcessView(True, since_report_s, ok))


@given(st.floats(0, 1e9))
def test_a_starting_process_is_judged_by_the_start_bound(since_start_s: float) -> None:
    starting = fleet.ProcessView(True, since_start_s, None)
    assert fleet.hung(starting) == (since_start_s > fleet.HUNG_STARTING_AFTER_S)


@given(st.floats(0, 1e9), st.sampled_from([None, True, False]))
def test_a_process_that_is_not_running_is_never_hung(
    since_report_s: float, ok: bool | None
) -> None:
    # It ended: the restart path has it already.
    assert not fleet.hung(fleet.ProcessView(False, since_report_s, ok))


def test_hung_by_example() -> None:
    assert fleet.STALE_AFTER_S < fleet.HUNG_AFTER_S < fleet.HUNG_STARTING_AFTER_S
    assert fleet.HUNG_AFTER_S >= 10 * fleet.REPORT_EVERY_S  # margin for a loaded machine
    assert not fleet.hung(fleet.ProcessView(True, 0.5, True))
    assert not fleet.hung(fleet.ProcessView(True, 15.0, False))
    assert fleet.hung(fleet.ProcessView(True, 15.1, False))
    assert fleet.hung(fleet.ProcessView(True, 16.0, True))
    assert not fleet.hung(fleet.ProcessView(True, 16.0, None))  # still starting
    assert not fleet.hung(fleet.ProcessView(True, 90.0, None))
    assert fleet.hung(fleet.ProcessView(True, 90.5, None))
    assert not fleet.hung(fleet.ProcessView(False, 1000.0, True))


def test_a_delivery_process_imports_no_grpc_server_code() -> None:
    """It serves no API: none of the core's server, its services, health or
    reflection. (The grpc library itself comes with core.config, which reads
    the TLS and signer settings of the whole file; nothing in the process
    starts a server or a channel, so its uvloop loop never meets grpc.aio.)"""
    code = (
        "import sys, core.delivery_main; print(sorted(m for m in sys.modules if "
        "m == 'core.server' or m.startswith(('core.api', 'grpc_health.v1', "
        "'grpc_reflection.v1alpha'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"
