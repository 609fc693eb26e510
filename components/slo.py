"""SLO alerting: where pages and tickets go, and the alarms that send them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from .common import child

NAMESPACE = "LlmBlueprint"


@dataclass
class DestinationSpec:
    emails: list[str]
    topic_arn: Optional[str] = None
    https_endpoint: Optional[pulumi.Input[str]] = None


@dataclass
class SloAlarmsArgs:
    service: str
    tags: dict[str, str]
    availability_objective: float
    latency_p50_s: float
    latency_p95_s: float
    faithfulness_objective: float
    page: DestinationSpec
    ticket: DestinationSpec


class SloAlarms(pulumi.ComponentResource):
    page_topic_arn: pulumi.Output[str]
    ticket_topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: SloAlarmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:slo:SloAlarms", name, None, opts)
        self.prefix, self.args = name, args
        self.page_topic_arn = self._topic("page", args.page)
        self.ticket_topic_arn = self._topic("ticket", args.ticket)
        dims = {"service": args.service}
        aws.cloudwatch.MetricAlarm(
            f"{name}-latency-p95", alarm_description=f"P95 end-to-end latency above {args.latency_p95_s} s",
            namespace=NAMESPACE, metric_name="Latency", dimensions=dims, extended_statistic="p95",
            period=300, evaluation_periods=3, datapoints_to_alarm=3, threshold=args.latency_p95_s * 1000,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", unit="Milliseconds",
            alarm_actions=[self.page_topic_arn], ok_actions=[self.page_topic_arn], tags=args.tags, opts=child(self))
        aws.cloudwatch.MetricAlarm(
            f"{name}-faithfulness", alarm_description=f"Faithfulness below {args.faithfulness_objective}",
            namespace=NAMESPACE, metric_name="Faithfulness", dimensions=dims, statistic="Average",
            period=3600, evaluation_periods=3, threshold=args.faithfulness_objective,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching",
            alarm_actions=[self.ticket_topic_arn], tags=args.tags, opts=child(self))
        self.register_outputs({"pageTopicArn": self.page_topic_arn, "ticketTopicArn": self.ticket_topic_arn})

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
