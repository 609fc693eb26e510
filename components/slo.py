"""SLO alerting the way SRE teams do it: multi-window, multi-burn-rate.

Availability is measured where clients see it (the REST API's `5XXError` /
`Count`, dimensions `ApiName` + `Stage`); error rate is measured at the router
(`UpstreamErrors` / `Requests`), so a backend failing behind a healthy fallback
still burns its budget. Latency is API Gateway's `Latency`, which for a streamed
answer lasts until its last byte; time to first token (`TimeToFirstTokenMs`,
from the router) is what a streaming client feels, and has its own SLO.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from llm_router import metric_names as m

from .common import child
from .schema import SloConfig

#: The REST API's CloudWatch namespace and metrics (dimensions ApiName + Stage).
APIGW, COUNT, CLIENT_ERRORS, SERVER_ERRORS = "AWS/ApiGateway", "Count", "4XXError", "5XXError"
LATENCY, INTEGRATION_LATENCY = "Latency", "IntegrationLatency"

# Google SRE workbook, ch. 5: (name, long window s, short window s, burn rate, severity)
BURN_WINDOWS = (
    ("1h", 3600, 300, 14.4, "page"),
    ("6h", 6 * 3600, 1800, 6.0, "page"),
    ("3d", 3 * 86400, 6 * 3600, 1.0, "ticket"),
)
DAY, WEEK = 86400, 7 * 86400


def check_alarm_limits(period: int, evaluation_periods: int) -> None:
    """CloudWatch's rules for an alarm's period and total evaluation span."""
    if period not in (10, 20, 30) and period % 60:
        raise ValueError(f"alarm period {period} s: must be 10, 20, 30 or a multiple of 60")
    span = period * evaluation_periods
    limit = DAY if period < 3600 else WEEK
    if span > limit:
        raise ValueError(f"alarm spans {span} s (period {period} × {evaluation_periods}); limit {limit} s")


def burn_threshold(burn: float, objective_pct: float, higher_is_better: bool) -> float:
    """Error-ratio threshold for a burn rate: burn × allowed error ratio."""
    budget = (100.0 - objective_pct) / 100.0 if higher_is_better else objective_pct / 100.0
    return burn * budget


@dataclass
class DestinationSpec:
    emails: list[str]
    topic_arn: Optional[str] = None
    https_endpoint: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class QualityWatch:
    """How the faithfulness alarms read the evaluator's results (`quality` in the stack config)."""

    #: The alarm's window, s: the mean of every sample judged in it. CloudWatch evaluates at
    #: most 7 days.
    window_s: int = WEEK
    #: Judged samples the window needs; fewer (or no evaluator results at all) is a ticket.
    min_samples: int = 30


@dataclass
class SloAlarmsArgs:
    service: str
    slo: SloConfig
    tags: dict[str, str]
    #: The REST API's name and stage: its CloudWatch dimensions `ApiName` and `Stage`.
    api_name: str
    stage: str
    page: DestinationSpec
    ticket: DestinationSpec
    region: str = "us-east-1"
    #: ElastiCache member cluster ids (for memory / eviction alarms).
    cache_cluster_ids: list[str] = field(default_factory=list)
    #: Self-hosted tiers → the queue metric their servers publish (dimension `tier`).
    queue_metrics: dict[str, str] = field(default_factory=dict)
    #: The faithfulness alarms. None: the stack samples nothing (`quality.sampleRate: 0`), so
    #: nothing would feed them.
    quality: Optional[QualityWatch] = None
    budget_cap_share: float = 0.10
    cache_hit_floor: float = 0.05
    cache_fail_open_per_5m: int = 10
    upstream_throttled_per_5m: int = 20
    vllm_queue_depth: int = 20
    #: Share of audited semantic hits the judge may find wrong over a day before a ticket
    #: (None: the stack does not audit its cache), and the audits a day needs to count.
    cache_audit_wrong_ratio: Optional[float] = None
    cache_audit_min_samples: int = 20


class SloAlarms(pulumi.ComponentResource):
    page_topic_arn: pulumi.Output[str]
    ticket_topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: SloAlarmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:slo:SloAlarms", name, None, opts)
        self.prefix, self.args = name, args
        self.page_topic_arn = self._topic("page", args.page)
        self.ticket_topic_arn = self._topic("ticket", args.ticket)
        self.topics = {"page": self.page_topic_arn, "ticket": self.ticket_topic_arn}
        slo = args.slo
        self.router_dims = {m.DIMENSION: args.service}
        self.api_dims = {"ApiName": args.api_name, "Stage": args.stage}
        self.composites: list[aws.cloudwatch.CompositeAlarm] = []

        self._burn_rate("availability", slo.availability.objective, slo.availability.sla, True,
                        (APIGW, SERVER_ERRORS, self.api_dims), (APIGW, COUNT, self.api_dims))
        self._burn_rate("error-rate", slo.error_rate.objective, slo.error_rate.sla, False,
                        (m.NAMESPACE, m.UPSTREAM_ERRORS, self.router_dims), (m.NAMESPACE, m.REQUESTS, self.router_dims))
        gateway_latency = (APIGW, LATENCY, self.api_dims)
        self._percentile("latency-p95", "p95", slo.latency.p95, "page", 3, gateway_latency, 1000, "s")
        self._percentile("latency-p50", "p50", slo.latency.p50, "ticket", 6, gateway_latency, 1000, "s")
        self._percentile("ttft-p95", "p95", slo.ttft_p95_ms, "page", 3,
                         (m.NAMESPACE, m.TIME_TO_FIRST_TOKEN_MS, self.router_dims), 1, "ms")
        self._quality()
        self._supporting()
        self._dashboard()
        self.register_outputs({"pageTopicArn": self.page_topic_arn, "ticketTopicArn": self.ticket_topic_arn})

    # ------------------------------------------------------------- helpers
    def _tags(self, kind: str, objective: float, sla: float, higher: bool) -> dict[str, str]:
        return {**self.args.tags, "slo": kind, "slo-objective": f"{objective:g}", "slo-sla": f"{sla:g}",
                "slo-direction": "higher" if higher else "lower"}

    def _alarm(self, suffix: str, **kwargs) -> aws.cloudwatch.MetricAlarm:
        queries = kwargs.get("metric_queries")
        period = max(q.metric.period for q in queries if q.metric is not None) if queries else kwargs["period"]
        check_alarm_limits(int(period), int(kwargs.get("evaluation_periods", 1)))
        kwargs.setdefault("tags", self.args.tags)
        # Fixed names: composite rules and runbooks can name them at plan time.
        return aws.cloudwatch.MetricAlarm(f"{self.prefix}-{suffix}", name=f"{self.prefix}-{suffix}",
                                          opts=child(self), **kwargs)

    def _ratio_alarm(self, suffix: str, bad, total, window: int, threshold: float, description: str,
                     tags: dict[str, str], min_requests: int) -> aws.cloudwatch.MetricAlarm:
        """Error ratio over one window, guarded so a handful of requests never pages."""
        def q(id_, spec):
            ns, metric, dims = spec
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=id_, return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=ns, metric_name=metric, dimensions=dims, period=window, stat="Sum"))
        return self._alarm(
            suffix, alarm_description=description, comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=round(threshold, 6), evaluation_periods=1, datapoints_to_alarm=1,
            treat_missing_data="notBreaching", tags=tags,
            metric_queries=[q("bad", bad), q("total", total), aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="ratio", return_data=True, label="error ratio",
                expression=f"IF(total >= {min_requests}, bad / total, 0)")])

    # -------------------------------------------------------------- alarms
    def _burn_rate(self, kind: str, objective: float, sla: float, higher: bool, bad, total) -> None:
        tags = self._tags(kind, objective, sla, higher)
        guard = self.args.slo.min_requests_per_window
        for label, long_s, short_s, burn, severity in BURN_WINDOWS:
            threshold = burn_threshold(burn, objective, higher)
            children: list[str] = []
            for window in (long_s, short_s):
                w = _window_name(window)
                # The short window needs proportionally fewer requests before it may fire.
                min_req = max(1, round(guard * window / long_s)) if window == short_s else guard
                suffix = f"{kind}-burn-{label}-{w}"
                self._ratio_alarm(
                    suffix, bad, total, window, threshold,
                    f"{kind}: error ratio ≥ {threshold:.4%} over {w} (burn {burn:g}× of a {objective:g} SLO)",
                    {**tags, "burn-window": w}, min_req)
                children.append(f"{self.prefix}-{suffix}")
            topic = self.topics[severity]
            composite = f"{self.prefix}-{kind}-burn-{label}"
            self.composites.append(aws.cloudwatch.CompositeAlarm(
                composite, alarm_name=composite, alarm_rule=" AND ".join(f'ALARM("{c}")' for c in children), actions_enabled=True,
                alarm_description=f"{severity.upper()}: {kind} SLO {objective:g} burning {burn:g}× over {label}",
                alarm_actions=[topic], ok_actions=[topic], tags={**tags, "severity": severity}, opts=child(self)))

    def _percentile(self, kind: str, stat: str, target, severity: str, periods: int, series, scale: float,
                    unit: str) -> None:
        """A percentile above its objective for `periods` × 5 min (latency in s, time to first token in ms)."""
        topic = self.topics[severity]
        namespace, metric, dims = series
        self._alarm(
            kind, alarm_description=f"{severity.upper()}: {stat} {metric} above {target.objective:g} {unit} "
                                    f"for {periods * 5} min",
            namespace=namespace, metric_name=metric, dimensions=dims, extended_statistic=stat,
            period=300, evaluation_periods=periods, datapoints_to_alarm=periods,
            threshold=target.objective * scale, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[topic], ok_actions=[topic],
            tags=self._tags(kind, target.objective, target.sla, False))

    def _quality(self) -> None:
        """Fed by the quality evaluator (`components/quality.py`): one `Faithfulness` value per judged
        sample, so the window's `Average` is the mean of its samples and `SampleCount` their number."""
        q = self.args.quality
        if q is None:
            return
        f = self.args.slo.faithfulness
        tags = self._tags("faithfulness", f.objective, f.sla, True)
        topic = self.topics["ticket"]
        window = _window_name(q.window_s)
        series = dict(namespace=m.NAMESPACE, metric_name=m.FAITHFULNESS, dimensions=self.router_dims,
                      period=q.window_s, evaluation_periods=1, comparison_operator="LessThanThreshold",
                      alarm_actions=[topic], ok_actions=[topic], tags=tags)
        # Too few samples publish no score: missing data is not a breach here ...
        self._alarm("faithfulness", alarm_description=f"TICKET: mean faithfulness below {f.objective:g} over {window}",
                    statistic="Average", threshold=f.objective, treat_missing_data="notBreaching", **series)
        # ... but has its own ticket: too few judged samples, or no evaluator results at all.
        self._alarm("faithfulness-low-samples",
                    alarm_description=f"TICKET: fewer than {q.min_samples} judged samples over {window}: "
                                      "the faithfulness SLO is not measured",
                    statistic="SampleCount", threshold=q.min_samples, treat_missing_data="breaching", **series)

    def _supporting(self) -> None:
        a, topic = self.args, self.topics["ticket"]
        dims = self.router_dims

        def metric(id_, name, stat="Sum", period=300, ns=m.NAMESPACE, dimensions=None):
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(id=id_, return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=ns, metric_name=name, dimensions=dimensions or dims, period=period, stat=stat))

        guard = a.slo.min_requests_per_window
        self._alarm("budget-caps", alarm_description=f"TICKET: over {a.budget_cap_share:.0%} of requests hit a token cap",
                    metric_queries=[metric("capped", m.BUDGET_CAPPED), metric("total", m.REQUESTS),
                                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                                        id="share", return_data=True,
                                        expression=f"IF(total >= {guard}, capped / total, 0)")],
                    comparison_operator="GreaterThanThreshold", threshold=a.budget_cap_share, evaluation_periods=3,
                    datapoints_to_alarm=3, treat_missing_data="notBreaching", alarm_actions=[topic])
        self._alarm("cache-hit-collapse", alarm_description=f"TICKET: cache hit rate below {a.cache_hit_floor:.0%}",
                    metric_queries=[metric("hits", m.CACHE_HITS, period=3600), metric("misses", m.CACHE_MISSES, period=3600),
                                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                                        id="rate", return_data=True,
                                        expression=f"IF(hits + misses >= {guard * 5}, hits / (hits + misses), 1)")],
                    comparison_operator="LessThanThreshold", threshold=a.cache_hit_floor, evaluation_periods=3,
                    datapoints_to_alarm=3, treat_missing_data="notBreaching", alarm_actions=[topic])
        self._alarm("cache-fail-open", alarm_description="TICKET: cache unreachable or slow; requests served uncached",
                    namespace=m.NAMESPACE, metric_name=m.CACHE_FAIL_OPEN, dimensions=dims, statistic="Sum",
                    period=300, evaluation_periods=2, datapoints_to_alarm=2, threshold=a.cache_fail_open_per_5m,
                    comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", alarm_actions=[topic])
        if a.cache_audit_wrong_ratio is not None:
            self._alarm("cache-audit-wrong", alarm_description=f"TICKET: over {a.cache_audit_wrong_ratio:.0%} of audited "
                                                               "semantic cache hits were wrong over a day "
                                                               "(`llm-blueprint cache audit` shows them)",
                        metric_queries=[metric("wrong", m.CACHE_AUDIT_WRONG, period=DAY),
                                        metric("samples", m.CACHE_AUDIT_SAMPLES, period=DAY),
                                        aws.cloudwatch.MetricAlarmMetricQueryArgs(
                                            id="ratio", return_data=True, label="wrong share of audited hits",
                                            expression=f"IF(samples >= {a.cache_audit_min_samples}, wrong / samples, 0)")],
                        comparison_operator="GreaterThanThreshold", threshold=a.cache_audit_wrong_ratio,
                        evaluation_periods=1, datapoints_to_alarm=1, treat_missing_data="notBreaching",
                        alarm_actions=[topic], ok_actions=[topic])
        self._alarm("upstream-throttled", alarm_description="TICKET: model backends are throttling the router",
                    namespace=m.NAMESPACE, metric_name=m.UPSTREAM_THROTTLED, dimensions=dims, statistic="Sum",
                    period=300, evaluation_periods=3, datapoints_to_alarm=2, threshold=a.upstream_throttled_per_5m,
                    comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", alarm_actions=[topic])
        for tier, queue_metric in a.queue_metrics.items():
            self._alarm(f"{tier}-queue", alarm_description=f"TICKET: {tier} model queue above {a.vllm_queue_depth} for 10 min",
                        namespace=m.NAMESPACE, metric_name=queue_metric, dimensions={"tier": tier}, statistic="Maximum",
                        period=60, evaluation_periods=10, datapoints_to_alarm=8, threshold=a.vllm_queue_depth,
                        comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
                        alarm_actions=[topic])
        for i, cluster_id in enumerate(a.cache_cluster_ids):
            node = {"CacheClusterId": cluster_id}
            self._alarm(f"cache-memory-{i}", alarm_description=f"TICKET: {cluster_id} memory above 80%",
                        namespace="AWS/ElastiCache", metric_name="DatabaseMemoryUsagePercentage", dimensions=node,
                        statistic="Maximum", period=300, evaluation_periods=3, threshold=80,
                        comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
                        alarm_actions=[topic])
            self._alarm(f"cache-evictions-{i}", alarm_description=f"TICKET: {cluster_id} evicting keys",
                        namespace="AWS/ElastiCache", metric_name="Evictions", dimensions=node, statistic="Sum",
                        period=300, evaluation_periods=3, datapoints_to_alarm=3, threshold=100,
                        comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
                        alarm_actions=[topic])

    def _dashboard(self) -> None:
        a, slo = self.args, self.args.slo
        window = slo.window_days * 86400
        budget = (100 - slo.availability.objective) / 100

        api = ["ApiName", a.api_name, "Stage", a.stage]
        svc = [m.DIMENSION, a.service]

        def ratio(expression: str, label: str, period: int) -> list:
            return [{"expression": expression, "label": label, "id": "r"},
                    [APIGW, SERVER_ERRORS, *api, {"id": "e", "stat": "Sum", "visible": False, "period": period}],
                    [APIGW, COUNT, *api, {"id": "c", "stat": "Sum", "visible": False, "period": period}]]

        widgets = [
            _widget("Availability (SLO attainment, window)", ratio("100 * (1 - e / MAX([c, 1]))", "availability %",
                                                                   window), a.region,
                    annotations=[{"label": "SLO", "value": slo.availability.objective},
                                 {"label": "SLA", "value": slo.availability.sla}]),
            _widget("Error budget remaining %", ratio(f"100 * (1 - (e / MAX([c, 1])) / {budget})", "budget left %",
                                                      window), a.region),
            _widget("Burn rate (1 h)", ratio(f"(e / MAX([c, 1])) / {budget}", "burn", 3600), a.region,
                    annotations=[{"label": "page 1h", "value": 14.4}, {"label": "page 6h", "value": 6}]),
            _widget("Requests and errors", [[APIGW, name, *api, {"stat": "Sum", "label": name}]
                                            for name in (COUNT, CLIENT_ERRORS, SERVER_ERRORS)], a.region),
            _widget("Latency to the last byte (ms)",
                    [[APIGW, LATENCY, *api, {"stat": s, "label": f"gateway {s}"}] for s in ("p50", "p95", "p99")]
                    + [[APIGW, INTEGRATION_LATENCY, *api, {"stat": "p95", "label": "integration p95"}]], a.region,
                    annotations=[{"label": "P95 SLO", "value": slo.latency.p95.objective * 1000}]),
            _widget("Time to first token (ms)", [[m.NAMESPACE, m.TIME_TO_FIRST_TOKEN_MS, *svc, {"stat": s, "label": s}]
                                                 for s in ("p50", "p95", "p99")], a.region,
                    annotations=[{"label": "P95 SLO", "value": slo.ttft_p95_ms.objective}]),
            _widget("Cache hit rate", [
                {"expression": "h / MAX([h + x, 1])", "label": "hit rate", "id": "hr"},
                [m.NAMESPACE, m.CACHE_HITS, *svc, {"id": "h", "stat": "Sum", "visible": False}],
                [m.NAMESPACE, m.CACHE_MISSES, *svc, {"id": "x", "stat": "Sum", "visible": False}],
            ], a.region),
            _widget("Cached-answer precision (audit, daily)", [
                {"expression": "1 - w / MAX([s, 1])", "label": "audited precision", "id": "p"},
                [m.NAMESPACE, m.CACHE_AUDIT_WRONG, *svc, {"id": "w", "stat": "Sum", "visible": False, "period": DAY}],
                [m.NAMESPACE, m.CACHE_AUDIT_SAMPLES, *svc, {"id": "s", "stat": "Sum", "period": DAY}],
            ], a.region),
            _widget("Tier mix (requests)", [[m.NAMESPACE, m.REQUESTS, *svc, {"stat": "Sum"}]], a.region),
            _widget("Estimated cost (USD)", [[m.NAMESPACE, "EstimatedCostUsd", *svc, {"stat": "Sum"}]], a.region),
            _widget("Faithfulness", [[m.NAMESPACE, m.FAITHFULNESS, *svc, {"stat": "Average"}],
                                     [m.NAMESPACE, m.FAITHFULNESS_SAMPLES, *svc,
                                      {"stat": "Sum", "yAxis": "right", "label": "judged samples"}]], a.region,
                    annotations=[{"label": "SLO", "value": slo.faithfulness.objective}]),
        ]
        aws.cloudwatch.Dashboard(f"{self.prefix}-dashboard", dashboard_name=f"{self.prefix}",
                                 dashboard_body=json.dumps({"widgets": widgets}), opts=child(self))

    def _topic(self, kind: str, dest: DestinationSpec) -> pulumi.Output[str]:
        if dest.topic_arn:
            return pulumi.Output.from_input(dest.topic_arn)
        topic = aws.sns.Topic(f"{self.prefix}-{kind}", kms_master_key_id="alias/aws/sns", tags=self.args.tags,
                              opts=child(self))
        for i, email in enumerate(dest.emails):
            aws.sns.TopicSubscription(f"{self.prefix}-{kind}-email-{i}", topic=topic.arn, protocol="email",
                                      endpoint=email, opts=child(self))
        if dest.https_endpoint is not None:
            aws.sns.TopicSubscription(f"{self.prefix}-{kind}-https", topic=topic.arn, protocol="https",
                                      endpoint=pulumi.Output.secret(dest.https_endpoint),
                                      endpoint_auto_confirms=True, opts=child(self))
        return topic.arn


def _window_name(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def _widget(title: str, metrics: list, region: str, annotations: Optional[list] = None) -> dict:
    props = {"title": title, "metrics": metrics, "region": region, "view": "timeSeries", "stacked": False}
    if annotations:
        props["annotations"] = {"horizontal": annotations}
    return {"type": "metric", "width": 12, "height": 6, "properties": props}
