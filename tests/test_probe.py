"""The hostile-input probe against `serve`: no 5xx, no trace, an OpenAI error body on every 4xx."""

from __future__ import annotations

import pytest

from llm_blueprint import probe
from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from tests.conftest import running, validated_config

KEY = "sk-probe-acme"


@pytest.fixture(scope="module")
def served(minilm):
    with FakeUpstream() as upstream:
        local = build(validated_config("dev"), upstream.url, {KEY: "acme", "sk-other": "globex"}, embedder=minilm)
        with running(local.app) as base:
            yield local, base
        local.close()


def test_the_hostile_corpus_gets_no_5xx_and_an_openai_error_on_every_4xx(served):
    local, base = served
    outcomes = probe.run(f"{base}/v1", KEY, local.router.settings.router.limits.max_body_bytes)
    assert len(outcomes) >= 75
    assert [(o.case, o.status, o.problem) for o in outcomes if o.problem] == []
    by_case = {o.case: o.status for o in outcomes}
    # A few that must be refused, not answered:
    assert by_case["duplicate-authorization"] == 400 and by_case["gateway-context-forged"] == 401
    assert by_case["unicode-lone-high-surrogate"] == 400 and by_case["deep-nesting-arrays"] == 400
    assert by_case["body-over-limit"] == 413 and by_case["wrong-type-role-list"] == 400
    assert by_case["authorization-non-utf8"] == 401 and by_case["method-put"] == 405
    assert by_case["wrong-type-image-remote"] == 400 and by_case["wrong-type-tools-without-name"] == 400


def test_the_probe_reports_what_is_wrong():
    assert probe._judge(500, b"{}") == "server error 500"
    assert probe._judge(400, b"oops") == "400 without an OpenAI error body"
    assert probe._judge(400, b'Traceback (most recent call last):') == "a stack trace in the body"
    assert probe._judge(404, b'{"error": {"message": "no", "type": "invalid_request_error"}}') is None
    assert probe._judge(None, b"") == "no HTTP answer"
