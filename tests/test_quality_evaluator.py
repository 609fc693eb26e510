"""The quality evaluator: RAGAS faithfulness against a fixture judge with known claims, bad
input (lines, judge answers), the low-sample path, and the scheduled handler end to end —
samples in S3 (moto), the judge over HTTP or Bedrock's real client, metrics as EMF with the
names and dimensions the plan's alarms read."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from llm_blueprint.cli import app
from llm_blueprint.fake_upstream import FakeUpstream
from llm_router import metric_names as m
from llm_router.observability import MemoryMetrics
from llm_router.quality import handler
from llm_router.quality.evaluator import InvalidSample, Report, Verdict, evaluate, metric_documents, parse
from llm_router.quality.judge import ClaimVerdict, FaithfulnessJudge
from llm_router.quality.sampler import Sampler
from llm_router.quality.store import S3Sink, object_key, read_window, window
from llm_router.resilience import RetryPolicy, UpstreamError
from llm_router.settings import Resources, dump
from llm_router.wiring import backends
from tests.conftest import example_plan, router_settings_of
from tests.fake_bedrock import FakeBedrock

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOWER = "The Eiffel Tower in Paris is 330 metres tall. It was completed in 1889."
NOW = dt.datetime(2026, 11, 20, 3, 7, tzinfo=dt.timezone.utc)


def sample(id_, answer, context=(TOWER,), question="Tell me about the Eiffel Tower."):
    return json.dumps({"id": id_, "context": list(context), "question": question, "answer": answer})


class FixtureJudge:
    """A judge model with known answers: the claims of each answer, and which claims the context supports."""

    kind, model = "fixture", "judge"

    def __init__(self, claims: dict[str, list[str]], supported: set[str], garbage: dict[str, str] | None = None):
        self.claims, self.supported, self.garbage = claims, supported, garbage or {}
        self.calls = 0

    def complete(self, body, timeout_s):
        self.calls += 1
        payload = json.loads(body["messages"][-1]["content"])
        assert body["temperature"] == 0 and body["messages"][0]["role"] == "system"
        if "answer" in payload:
            text = self.garbage.get(payload["answer"]) or json.dumps({"claims": self.claims[payload["answer"]]})
        else:
            text = json.dumps({"verdicts": [{"claim": c, "supported": c in self.supported, "reason": "fixture"}
                                            for c in payload["claims"]]})
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


FAITHFUL = "The tower is 330 m tall and was finished in 1889."
EMBELLISHED = "The tower is 330 m tall, was finished in 1889 and is the most visited monument on earth."
CLAIMS = {
    FAITHFUL: ["The Eiffel Tower is 330 metres tall.", "The Eiffel Tower was completed in 1889."],
    EMBELLISHED: ["The Eiffel Tower is 330 metres tall.", "The Eiffel Tower was completed in 1889.",
                  "The Eiffel Tower is the most visited monument on earth."],
}
SUPPORTED = {"The Eiffel Tower is 330 metres tall.", "The Eiffel Tower was completed in 1889."}


def judge_of(backend, stack="prod", tier="smart"):
    return FaithfulnessJudge(backend, router_settings_of(stack).tier(tier),
                             retry=RetryPolicy(base_s=0.001, sleep=lambda s: None))


def test_a_faithful_answer_scores_1_and_an_unsupported_claim_scores_below_1():
    report = evaluate([sample("faithful", FAITHFUL), sample("embellished", EMBELLISHED)],
                      judge_of(FixtureJudge(CLAIMS, SUPPORTED)))
    by_id = {v.id: v for v in report.verdicts}
    assert by_id["faithful"].score == 1.0
    assert by_id["embellished"].score == pytest.approx(2 / 3)
    [unsupported] = [c for c in by_id["embellished"].claims if not c.supported]
    assert unsupported.claim == "The Eiffel Tower is the most visited monument on earth."
    assert report.score == pytest.approx((1 + 2 / 3) / 2) and report.judged == 2 and report.unjudged == 0


@pytest.mark.parametrize("garbage", [
    "Sure! The answer claims the tower is tall.",                    # prose
    '{"claims": "the tower is tall"}',                               # not a list
    '{"claims": [1, 2]}',                                            # not strings
    "```json\n{\"claims\": [\"The Eiffel Tower is 330 metres tall.\"\n```",  # broken JSON
])
def test_a_judge_answering_garbage_leaves_that_sample_unjudged_not_the_run_failed(garbage):
    judge = FixtureJudge(CLAIMS, SUPPORTED, garbage={EMBELLISHED: garbage})
    report = evaluate([sample("ok", FAITHFUL), sample("bad", EMBELLISHED)], judge_of(judge))
    by_id = {v.id: v for v in report.verdicts}
    assert by_id["ok"].score == 1.0
    assert by_id["bad"].score is None and "judge" in by_id["bad"].error
    assert (report.judged, report.unjudged, report.score) == (1, 1, 1.0)


def test_fenced_json_is_read_and_a_verdict_count_that_does_not_match_is_unjudged():
    fenced = FixtureJudge(CLAIMS, SUPPORTED, garbage={FAITHFUL: "```json\n" + json.dumps({"claims": CLAIMS[FAITHFUL]})
                                                       + "\n```"})
    assert evaluate([sample("a", FAITHFUL)], judge_of(fenced)).score == 1.0

    class ShortVerdicts(FixtureJudge):
        def complete(self, body, timeout_s):
            out = super().complete(body, timeout_s)
            data = json.loads(out["choices"][0]["message"]["content"])
            if "verdicts" in data:
                out["choices"][0]["message"]["content"] = json.dumps({"verdicts": data["verdicts"][:1]})
            return out

    [v] = evaluate([sample("a", EMBELLISHED)], judge_of(ShortVerdicts(CLAIMS, SUPPORTED))).verdicts
    assert v.score is None and v.error == "the judge gave 1 verdicts for 3 claims"


def test_an_answer_without_claims_is_unjudged_not_a_perfect_score():
    [v] = evaluate([sample("thanks", "You're welcome!")], judge_of(FixtureJudge({"You're welcome!": []}, set()))).verdicts
    assert v.score is None and v.error == "the answer makes no claim to check"


def test_bad_lines_are_skipped_and_counted_with_their_line_numbers():
    lines = [sample("ok", FAITHFUL), "not json", json.dumps(["a", "list"]),
             json.dumps({"id": "x", "context": [TOWER], "question": "q"}),
             json.dumps({"id": "y", "context": [], "question": "q", "answer": "a"}),
             json.dumps({"id": "z", "context": [TOWER], "question": "q", "answer": 42})]
    report = evaluate(lines, judge_of(FixtureJudge(CLAIMS, SUPPORTED)))
    assert [v.id for v in report.verdicts] == ["ok"]
    assert report.invalid == [(2, "not JSON"), (3, "not a JSON object"), (4, "missing answer"),
                              (5, "context is not a non-empty list of strings"),
                              (6, "answer is not a non-empty string")]
    with pytest.raises(InvalidSample):
        parse('{"id": 1}')


def test_a_sample_over_the_judge_tiers_prompt_budget_is_unjudged_without_a_call():
    judge = FixtureJudge(CLAIMS, SUPPORTED)
    huge = "word " * 40_000  # prod's smart tier takes 16,000 prompt tokens
    [v] = evaluate([sample("huge", FAITHFUL, context=(huge,))], judge_of(judge)).verdicts
    assert v.score is None and "prompt budget" in v.error
    assert judge.calls == 1  # the claims were extracted; the oversized check was never sent


def test_a_failing_judge_tier_and_an_exhausted_deadline_leave_samples_unjudged():
    class Down:
        kind, model = "down", "judge"

        def complete(self, body, timeout_s):
            raise UpstreamError(503, "upstream answered 503")

    [v] = evaluate([sample("a", FAITHFUL)], judge_of(Down())).verdicts
    assert v.score is None and v.error.startswith("the judge tier failed")
    [late] = evaluate([sample("b", FAITHFUL)], judge_of(FixtureJudge(CLAIMS, SUPPORTED)), deadline=0.0).verdicts
    assert late.error == "out of time for this run"


# -------------------------------------------------------------- metrics
def report_of(scores: list[float], unjudged: int = 0, invalid: int = 0) -> Report:
    verdicts = [Verdict(f"s{i}", [ClaimVerdict("c", True, "")] * round(s * 4) + [ClaimVerdict("c", False, "")] *
                        (4 - round(s * 4))) for i, s in enumerate(scores)]
    verdicts += [Verdict(f"u{i}", error="x") for i in range(unjudged)]
    return Report(verdicts, [(i, "not JSON") for i in range(invalid)])


def metrics_in(docs: list[dict]) -> dict[str, list[float]]:
    """Metric name → values, checked against the EMF specification's shape."""
    out: dict[str, list[float]] = {}
    for doc in docs:
        meta = doc["_aws"]
        assert isinstance(meta["Timestamp"], int)
        for directive in meta["CloudWatchMetrics"]:
            assert directive["Dimensions"] == [["service"]]
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                values = value if isinstance(value, list) else [value]
                assert len(values) <= 100
                out.setdefault(metric["Name"], []).extend(values)
    return out


def test_too_few_samples_publish_the_count_but_no_score():
    docs = metric_documents(report_of([1.0, 0.5], unjudged=1, invalid=2), "llm-router-prod", 30, NOW)
    got = metrics_in(docs)
    assert got == {m.FAITHFULNESS_SAMPLES: [2], m.FAITHFULNESS_UNJUDGED: [1], m.QUALITY_SAMPLES_INVALID: [2]}


def test_enough_samples_publish_one_value_per_sample_in_documents_of_100():
    scores = [0.75] * 120 + [1.0] * 130
    got = metrics_in(metric_documents(report_of(scores), "llm-router-prod", 30, NOW))
    assert got[m.FAITHFULNESS_SAMPLES] == [250] and sorted(got[m.FAITHFULNESS]) == sorted(scores)
    assert sum(got[m.FAITHFULNESS]) / len(got[m.FAITHFULNESS]) == pytest.approx((120 * 0.75 + 130) / 250)


# ------------------------------------------------------------ end to end
@pytest.fixture
def creds(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                 "AWS_DEFAULT_REGION": "us-west-2", "AWS_REGION": "us-west-2"}.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def aws(creds):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-west-2")
        s3.create_bucket(Bucket="samples", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        yield s3


def put(s3, at: dt.datetime, lines: list[str]) -> None:
    s3.put_object(Bucket="samples", Key=object_key(at), Body="".join(line + "\n" for line in lines).encode())


def alarm_series(stack: str = "prod") -> dict[str, tuple]:
    alarms = {r.name: r.inputs for r in example_plan(stack).of_type(ALARM)}
    return {name: (a["namespace"], a["metricName"], a["dimensions"], a.get("statistic"))
            for name, a in alarms.items() if name.endswith(("-faithfulness", "-faithfulness-low-samples"))}


def test_the_router_samples_s3_and_the_evaluator_reads_the_window(aws):
    """Sampler → S3 (the router's sink) → the evaluator's window read: one hour read once."""
    settings = dataclasses.replace(router_settings_of("prod").quality, sample_rate=1.0)
    sampler = Sampler(settings, S3Sink("samples", "us-west-2", aws), MemoryMetrics(), rng=random.Random(1))
    messages = [{"role": "system", "content": TOWER}, {"role": "user", "content": "How tall?"}]
    before = dt.datetime.now(dt.timezone.utc)
    for i in range(3):
        sampler.offer(tenant="acme", request_id=f"r{i}", tier="smart", model="x", source="model",
                      messages=messages, answer="330 metres.")
    assert sampler.flush(10) and sampler.stored == 3
    start = window(before + dt.timedelta(hours=1), 1)[0]  # the hours the samples were written in
    end = window(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1), 1)[1]
    lines, objects = read_window(aws, "samples", start, end, 100)
    assert objects >= 1 and sorted(json.loads(line)["id"] for line in lines) == ["r0", "r1", "r2"]
    assert read_window(aws, "samples", start - dt.timedelta(hours=1), start, 100) == ([], 0)


def test_handler_judges_the_window_through_the_judge_tiers_backend_and_publishes_what_the_alarms_read(
        aws, monkeypatch, capsys):
    settings = router_settings_of("prod")
    # Judge with the self-hosted tier: its backend comes from SELF_HOSTED_ENDPOINTS, as in Lambda.
    settings = dataclasses.replace(settings, quality=dataclasses.replace(settings.quality, judge_tier="fast",
                                                                         min_samples=3, every_hours=24))
    start, end = window(NOW, 24)
    put(aws, start + dt.timedelta(hours=2), [sample("t1", "The Eiffel Tower is 330 metres tall. It was completed "
                                                          "in 1889."), "garbage line"])
    put(aws, end - dt.timedelta(minutes=30), [sample("t2", "The Eiffel Tower is 330 metres tall. It is the most "
                                                           "visited monument in the world."),
                                              sample("t3", "It was completed in 1889.")])
    put(aws, start - dt.timedelta(minutes=5), [sample("old", "Outside the window.")])  # read by the previous run
    put(aws, end + dt.timedelta(minutes=1), [sample("new", "The next run's.")])
    with FakeUpstream() as fake:
        fake.modes[settings.tier("fast").model] = "judge"
        for k, v in {"LLM_ROUTER_SETTINGS": json.dumps(dump(settings)), "QUALITY_SAMPLES_BUCKET": "samples",
                     "SELF_HOSTED_ENDPOINTS": json.dumps({"fast": fake.url}),
                     "POWERTOOLS_SERVICE_NAME": "llm-router-prod"}.items():
            monkeypatch.setenv(k, v)

        class Context:
            def get_remaining_time_in_millis(self):
                return 900_000

        # EventBridge Scheduler's `<aws.scheduler.scheduled-time>`, as the schedule's input carries it.
        summary = handler.handler({"scheduledTime": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}, Context())
        judged_models = {c["model"] for c in fake.calls}
    assert judged_models == {settings.tier("fast").model}
    assert (summary["samples"], summary["judged"], summary["invalid"], summary["published"]) == (3, 3, 1, True)
    assert summary["faithfulness"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-4)
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    got = metrics_in(docs)
    assert got[m.FAITHFULNESS_SAMPLES] == [3] and sorted(got[m.FAITHFULNESS]) == [0.5, 1.0, 1.0]
    assert {d["_aws"]["Timestamp"] for d in docs} == {int(end.timestamp() * 1000)}
    # What the plan's alarms read is exactly what was published.
    for name, (namespace, metric, dims, stat) in alarm_series().items():
        published = [d for d in docs if any(x["Name"] == metric for c in d["_aws"]["CloudWatchMetrics"]
                                             for x in c["Metrics"])]
        assert published, f"{name} reads {metric}, which the evaluator does not publish"
        for d in published:
            [directive] = d["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == namespace
            assert {k: d[k] for k in directive["Dimensions"][0]} == dims
    assert {stat for *_, stat in alarm_series().values()} == {"Average", "SampleCount"}


def test_the_evaluator_builds_only_its_judge_tiers_backend():
    settings = router_settings_of("prod")
    res = Resources.from_environment({"AWS_REGION": "us-west-2",
                                      "SELF_HOSTED_ENDPOINTS": json.dumps({"fast": "http://10.42.0.10/v1"})})
    assert set(backends(settings, res, only=("fast",))) == {"fast"}
    assert set(backends(settings, res, only=("smart",))) == {"smart"}


def test_a_bedrock_judge_through_the_real_client(creds, monkeypatch):
    """prod's judge tier is Bedrock: the claims and verdicts go through Converse (a fake endpoint)."""
    def converse(text):
        return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}, "metrics": {"latencyMs": 9}}

    settings = router_settings_of("prod")
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        fake.replies += [converse('{"claims": ["The Eiffel Tower is 330 metres tall.", "It is in Rome."]}'),
                         converse('{"verdicts": [{"claim": "x", "supported": true, "reason": "stated"}, '
                                  '{"claim": "y", "supported": false, "reason": "the context says Paris"}]}')]
        judge = FaithfulnessJudge(backends(settings, Resources.from_environment({"AWS_REGION": "us-west-2"}), only=("smart",))["smart"], settings.tier("smart"))
        report = evaluate([sample("b", "It is 330 metres tall and in Rome.")], judge, workers=1)
        ops = [(op, model) for op, model, _ in fake.calls]
        system = fake.calls[0][2]["system"][0]["text"]
    assert ops == [("converse", settings.tier("smart").model)] * 2 and "claims" in system
    [v] = report.verdicts
    assert v.score == 0.5 and [c.reason for c in v.claims] == ["stated", "the context says Paris"]


# ------------------------------------------------------------------- CLI
def test_slo_evaluate_prints_verdicts_and_the_score_of_a_sample_file():
    result = CliRunner().invoke(app, ["slo", "evaluate", "examples/quality/samples.jsonl", "--stack", "prod", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    by_id = {s["id"]: s for s in out["samples"]}
    assert by_id["tower-faithful"]["faithfulness"] == 1.0 and by_id["rate-limits"]["faithfulness"] == 1.0
    assert by_id["tower-embellished"]["faithfulness"] == pytest.approx(2 / 3)
    assert by_id["refund-wrong-window"]["faithfulness"] == 0.5
    assert by_id["no-claims"]["faithfulness"] is None and by_id["no-claims"]["error"]
    assert out["invalid_lines"] == [{"line": 6, "reason": "not JSON"}, {"line": 7, "reason": "missing answer"}]
    s = out["summary"]
    assert (s["judged"], s["unjudged"], s["invalid"], s["published"]) == (4, 1, 2, False)
    assert s["faithfulness"] == pytest.approx((1 + 2 / 3 + 0.5 + 1) / 4, abs=1e-4) and s["meets_objective"] is False
    text = CliRunner().invoke(app, ["slo", "evaluate", "examples/quality/samples.jsonl", "--stack", "prod"])
    assert text.exit_code == 0 and "✗ Refunds arrive within 14 days." in text.output
    assert "publish the count only (fewer than 30 judged)" in text.output


def test_slo_evaluate_asks_an_upstream_for_the_named_model():
    with FakeUpstream() as fake:
        fake.modes["my-judge"] = "judge"
        result = CliRunner().invoke(app, ["slo", "evaluate", "examples/quality/samples.jsonl", "--upstream", fake.url,
                                          "--model", "my-judge", "--json"])
        models = {c["model"] for c in fake.calls}
    assert result.exit_code == 0, result.output
    assert models == {"my-judge"} and json.loads(result.output)["summary"]["judged"] == 4


def _converse(text):
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}, "metrics": {"latencyMs": 9}}


def test_slo_evaluate_judges_with_the_stacks_own_judge_tier(creds, monkeypatch, tmp_path):
    """`--own-backends`: prod's judge tier is Bedrock, called with the caller's AWS credentials
    (here a fake Converse endpoint), as `serve` calls it; no other tier's credentials are needed."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text(sample("one", "It is 330 metres tall and in Rome.") + "\n")
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        fake.replies += [_converse('{"claims": ["It is 330 metres tall.", "It is in Rome."]}'),
                         _converse('{"verdicts": [{"claim": "a", "supported": true, "reason": "stated"}, '
                                   '{"claim": "b", "supported": false, "reason": "Paris"}]}')]
        result = CliRunner().invoke(app, ["slo", "evaluate", str(samples), "--stack", "prod", "--own-backends",
                                          "--json"])
        models = {model for _, model, _ in fake.calls}
    assert result.exit_code == 0, result.output
    assert models == {router_settings_of("prod").tier("smart").model}
    assert json.loads(result.output)["samples"][0]["faithfulness"] == 0.5


def test_slo_evaluate_with_own_backends_names_the_missing_credential(monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = CliRunner().invoke(app, ["slo", "evaluate", "examples/quality/samples.jsonl", "--stack", "prod",
                                      "--own-backends"])
    assert result.exit_code == 2
    assert "judge tier smart" in result.output and "smart (bedrock): no AWS credentials found" in result.output
    assert "fast" not in result.output  # the self-hosted tier needs no --endpoint to judge with smart
    both = CliRunner().invoke(app, ["slo", "evaluate", "examples/quality/samples.jsonl", "--own-backends",
                                    "--upstream", "http://127.0.0.1:9/v1"])
    assert both.exit_code == 2 and "pass one" in both.output
