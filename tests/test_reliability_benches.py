"""`bench faults` and `bench load` run end to end (small), through the CLI: the figures they
print must hold the targets the README states — no client 5xx, no lost answer, every bad
request a 4xx — whatever the timing."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llm_blueprint.cli import app

runner = CliRunner()


def test_bench_faults_keeps_clients_whole_through_every_phase():
    result = runner.invoke(app, ["bench", "faults", "--requests", "150", "--concurrency", "8", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["requests"] == 150 and figures["streamed"] > 0
    assert figures["client_5xx"] == 0 and figures["lost"] == 0 and figures["bad_requests_not_4xx"] == 0
    assert len(figures["phases"]) == 15 and sum(p["requests"] for p in figures["phases"]) == 150
    assert figures["fallbacks"] > 0 and figures["cache_errors"] > 0  # the faults did happen
    assert set(figures["by_status"]) <= {"200", "400"}


def test_bench_load_compares_router_and_direct_per_level(tmp_path):
    plot = tmp_path / "load.png"
    result = runner.invoke(app, ["bench", "load", "--levels", "1,4", "--requests", "40", "--plot", str(plot),
                                 "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["concurrency"] for row in figures["levels"]] == [1, 4]
    for row in figures["levels"]:
        for who in ("router", "direct"):
            assert row[who]["errors"] == 0 and row[who]["requests_per_s"] > 0 and row[who]["p99_ms"] >= row[who]["p50_ms"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_limiter_reuses_the_caches_client_and_needs_a_cache_endpoint():
    from llm_router import wiring
    from llm_router.settings import Resources
    from tests.conftest import router_settings_of

    class Cache:
        client = type("Client", (), {"register_script": lambda self, script: script})()

    settings = router_settings_of("dev")
    assert wiring.limiter(settings, Resources.from_environment({}), None, Cache()) is None
    limiter = wiring.limiter(settings, Resources.from_environment({"CACHE_ENDPOINT": "cache.local"}), None, Cache())
    assert limiter.client is Cache.client and limiter.settings == settings.router.rate_limits
