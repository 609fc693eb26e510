"""Async work for one stack: the queue, its dead-letter queue, the job table, the file bucket and a
worker function whose concurrency is capped.

The router (same app as chat) writes a job's row and enqueues it; an SQS event source hands
messages to the worker, at most `maximum_concurrency` at a time — the knob that keeps bulk work
from taking the inference capacity interactive traffic needs. The worker runs the router's own
core, in the router's subnets behind the router's security group, so it reaches exactly the
models, cache and endpoints the router reaches. A message that fails `max_receives` times moves
to the dead-letter queue, where a scheduled sweep fails its job with the reason (the message
stays for the alarm). Built in two steps because the router needs the queue and table before
the worker can copy the router: `Jobs(...)` before the RouterService, `run_with(router, ...)` after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from llm_router.jobs.dynamo import HASH_KEY, OWNER_INDEX, OWNER_KEYS, RANGE_KEY, TTL_ATTRIBUTE
from llm_router import metric_names as m
from llm_router import timeouts

from .common import assume_role_policy, child, key_policy, kms_key, logs_may_use, policy_json, private_bucket
from .network import Network
from .router import RUNTIME, Egress, RouterService
from .schema import JobsConfig, RouterConfig

#: The worker's Lambda handler, in the router's zip.
WORKER_HANDLER = "llm_router.jobs.handler.handler"
#: AWS's guidance for SQS → Lambda: the queue's visibility timeout at least six function timeouts.
VISIBILITY_FACTOR = 6
#: How often the dead-letter sweep runs.
SWEEP_SCHEDULE = "rate(5 minutes)"
#: Bedrock batch inference jobs are named by the service: their ARNs are known only per account and region.
BATCH_JOB_ACTIONS = ["bedrock:CreateModelInvocationJob", "bedrock:GetModelInvocationJob",
                     "bedrock:StopModelInvocationJob"]
DAY = 86_400


@dataclass
class JobsArgs:
    region: str
    account_id: str
    tags: dict[str, str]
    network: Network
    #: Workers at once: the event source's scalingConfig.maximumConcurrency (2–1000). Default 10.
    maximum_concurrency: int = JobsConfig.default_of("maximum_concurrency")
    #: The worker's timeout, s; the queue's visibility timeout is six times it. Default: the
    #: router's default timeout (300 s), as `jobs.workerTimeoutSeconds` unset gives.
    worker_timeout_s: int = timeouts.DEFAULT_TIMEOUT_S
    worker_memory_mb: int = JobsConfig.default_of("worker_memory_mb")
    #: Deliveries before the dead-letter queue. Default 3: two retries, then a human looks.
    max_receives: int = JobsConfig.default_of("max_receives")
    #: Days rows and files are kept (TTL, bucket expiry). Default 30.
    retention_days: int = JobsConfig.default_of("retention_days")
    #: Point-in-time recovery on the table. Default on; the blueprint turns it off outside prod.
    point_in_time_recovery: bool = True
    #: Deletion protection on the table (prod).
    deletion_protection: bool = True
    #: Model and inference-profile ARNs Bedrock batch inference may invoke; empty: no batch inference.
    bedrock_batch_model_arns: list[str] = field(default_factory=list)
    log_retention_days: int = RouterConfig.default_of("log_retention_days")
    #: The CloudWatch `service` dimension the worker's metrics carry (the router's).
    service: str = "llm-router"
    oldest_message_alarm_s: int = JobsConfig.default_of("oldest_message_alarm_seconds")
    failure_ratio_alarm: float = JobsConfig.default_of("failure_ratio_alarm")
    architecture: str = "arm64"


class Jobs(pulumi.ComponentResource):
    router_env: dict[str, pulumi.Output[str]]
    router_policy: pulumi.Output[str]
    egress: list[Egress]

    def __init__(self, name: str, args: JobsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-blueprint:jobs:Jobs", name, None, opts)
        self.prefix, self.args = name, args
        tags, region, account = args.tags, args.region, args.account_id
        self.log_group_name = f"/aws/lambda/{name}-worker"
        self.key = kms_key(self, f"{name}-key", f"{name}: job queue, table, files and worker environment", tags,
                           key_policy(account, region, via_services=("sqs", "dynamodb", "s3", "lambda"),
                                      statements=(logs_may_use(region, account, self.log_group_name),)))

        # Queues: the dead-letter queue keeps a message 14 days; the queue holds work for 4.
        self.dlq = aws.sqs.Queue(f"{name}-dlq", name=f"{name}-dlq", kms_master_key_id=self.key.arn,
                                 kms_data_key_reuse_period_seconds=300, message_retention_seconds=14 * DAY,
                                 tags={**tags, "queue-role": "dead-letter"}, opts=child(self))
        self.queue = aws.sqs.Queue(
            f"{name}-queue", name=f"{name}-queue", kms_master_key_id=self.key.arn, kms_data_key_reuse_period_seconds=300,
            visibility_timeout_seconds=VISIBILITY_FACTOR * args.worker_timeout_s, message_retention_seconds=4 * DAY,
            redrive_policy=self.dlq.arn.apply(lambda arn: json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receives})),
            tags=tags, opts=child(self))
        aws.sqs.RedriveAllowPolicy(f"{name}-dlq-sources", queue_url=self.dlq.id, opts=child(self),
                                   redrive_allow_policy=self.queue.arn.apply(lambda arn: json.dumps(
                                       {"redrivePermission": "byQueue", "sourceQueueArns": [arn]})))
        for q, what in ((self.queue, "queue"), (self.dlq, "dlq")):
            aws.sqs.QueuePolicy(f"{name}-{what}-tls", queue_url=q.id, opts=child(self), policy=policy_json([
                {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": [q.arn],
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]))

        attrs = {HASH_KEY, RANGE_KEY, *OWNER_KEYS}
        self.table = aws.dynamodb.Table(
            f"{name}-table", name=f"{name}-table", billing_mode="PAY_PER_REQUEST", hash_key=HASH_KEY[0],
            range_key=RANGE_KEY[0], attributes=[aws.dynamodb.TableAttributeArgs(name=n, type=t) for n, t in sorted(attrs)],
            global_secondary_indexes=[aws.dynamodb.TableGlobalSecondaryIndexArgs(
                name=OWNER_INDEX, projection_type="ALL", key_schemas=[
                    aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name=OWNER_KEYS[0][0], key_type="HASH"),
                    aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name=OWNER_KEYS[1][0],
                                                                        key_type="RANGE")])],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=TTL_ATTRIBUTE, enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True, kms_key_arn=self.key.arn),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=args.point_in_time_recovery),
            deletion_protection_enabled=args.deletion_protection, tags=tags, opts=child(self))
        self.index_arn = pulumi.Output.concat(self.table.arn, f"/index/{OWNER_INDEX}")

        # Files and large bodies; objects expire a day after their rows.
        self.bucket = private_bucket(self, f"{name}-files", tags, kms_key_arn=self.key.arn,
                                     noncurrent_days=1, expire_days=args.retention_days + 1)
        aws.s3.BucketPolicy(f"{name}-files-tls", bucket=self.bucket.id, opts=child(self), policy=policy_json([
            {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]))

        # The router and the worker reach DynamoDB, S3 and SQS without the internet.
        network = args.network
        self.dynamodb_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-dynamodb", vpc_id=network.vpc_id, service_name=f"com.amazonaws.{region}.dynamodb",
            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in network.private_route_tables], tags=tags,
            opts=child(self))
        network.interface_endpoint("sqs", [network.endpoint_security_group_id], parent=self)
        self.egress = [Egress(443, "DynamoDB and S3 through their gateway endpoints",
                              prefix_list_ids=(self.dynamodb_endpoint.prefix_list_id,
                                               network.s3_endpoint.prefix_list_id))]

        self.batch_role = None
        if args.bedrock_batch_model_arns:
            network.interface_endpoint("bedrock", [network.endpoint_security_group_id], parent=self)
            self.batch_role = self._batch_service_role()

        self.router_env = {"JOBS_TABLE": self.table.name, "JOBS_QUEUE_URL": self.queue.id,
                           "JOBS_BUCKET": self.bucket.bucket}
        self.router_policy = policy_json([
            {"Sid": "OwnTenantsJobRows", "Effect": "Allow",
             "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
             "Resource": [self.table.arn, self.index_arn]},
            {"Sid": "Enqueue", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": [self.queue.arn]},
            {"Sid": "FilesAndBodies", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": [pulumi.Output.concat(self.bucket.arn, "/files/*"),
                          pulumi.Output.concat(self.bucket.arn, "/jobs/*")]},
            {"Sid": "JobsKey", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
             "Resource": [self.key.arn]},
        ])
        self.register_outputs({"tableName": self.table.name, "queueUrl": self.queue.id, "dlqUrl": self.dlq.id,
                               "bucket": self.bucket.bucket})

    # ------------------------------------------------------------ worker
    def run_with(self, router: RouterService, settings: dict[str, Any], policies: dict[str, pulumi.Input[str]],
                 subnet_ids: list[pulumi.Input[str]], page_topic: pulumi.Input[str],
                 ticket_topic: pulumi.Input[str]) -> None:
        """The worker, a copy of the router's core (settings, environment, secrets, backend
        policies, subnets and security group), and the alarms."""
        a, name = self.args, self.prefix
        logs = aws.cloudwatch.LogGroup(f"{name}-worker-logs", name=self.log_group_name,
                                       retention_in_days=a.log_retention_days, kms_key_id=self.key.arn, tags=a.tags,
                                       opts=child(self))
        role = self._worker_role(router, policies, logs)
        zip_path, code_hash = router.artifact
        env = {**router.environment, **self.router_env, "JOBS_DLQ_URL": self.dlq.id, "JOBS_KMS_KEY_ARN": self.key.arn,
               "LLM_ROUTER_SETTINGS": json.dumps(settings, sort_keys=True), "POWERTOOLS_SERVICE_NAME": a.service,
               "POWERTOOLS_METRICS_NAMESPACE": m.NAMESPACE, "LOG_LEVEL": "INFO"}
        if self.batch_role is not None:
            env["JOBS_BEDROCK_ROLE_ARN"] = self.batch_role.arn
        self.worker = aws.lambda_.Function(
            f"{name}-worker", role=role.arn, handler=WORKER_HANDLER, runtime=RUNTIME, architectures=[a.architecture],
            code=pulumi.FileArchive(str(zip_path)), source_code_hash=code_hash, memory_size=a.worker_memory_mb,
            timeout=a.worker_timeout_s, kms_key_arn=self.key.arn,
            # One more than the event source may use: the dead-letter sweep never waits for a slot.
            reserved_concurrent_executions=a.maximum_concurrency + 1,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=env),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=logs.name),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(subnet_ids=subnet_ids,
                                                         security_group_ids=[router.security_group_id]),
            tags=a.tags, opts=child(self, depends_on=[logs]))
        # One message per invocation: concurrent invocations are concurrent model calls, which
        # maximumConcurrency caps; a failed record comes back alone (ReportBatchItemFailures).
        aws.lambda_.EventSourceMapping(
            f"{name}-worker-source", event_source_arn=self.queue.arn, function_name=self.worker.arn, batch_size=1,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=a.maximum_concurrency),
            tags=a.tags, opts=child(self))
        rule = aws.cloudwatch.EventRule(f"{name}-sweep", schedule_expression=SWEEP_SCHEDULE, tags=a.tags,
                                        description="Fail the jobs whose messages reached the dead-letter queue",
                                        opts=child(self))
        aws.cloudwatch.EventTarget(f"{name}-sweep", rule=rule.name, arn=self.worker.arn,
                                   input=json.dumps({"sweep": True}), opts=child(self))
        aws.lambda_.Permission(f"{name}-sweep", action="lambda:InvokeFunction", function=self.worker.name,
                               principal="events.amazonaws.com", source_arn=rule.arn, opts=child(self))
        self._alarms(page_topic, ticket_topic)

    def _worker_role(self, router: RouterService, policies: dict[str, pulumi.Input[str]],
                     logs: aws.cloudwatch.LogGroup) -> aws.iam.Role:
        """Read and write job rows, take messages, read and write files, call the backends the router calls."""
        name, a = self.prefix, self.args
        role = aws.iam.Role(f"{name}-worker", assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
                            tags=a.tags, opts=child(self))
        for suffix, arn in (("vpc-access", "service-role/AWSLambdaVPCAccessExecutionRole"),
                            ("xray", "AWSXRayDaemonWriteAccess")):
            aws.iam.RolePolicyAttachment(f"{name}-worker-{suffix}", role=role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{arn}", opts=child(self))
        bucket_objects = pulumi.Output.concat(self.bucket.arn, "/*")
        statements: list[dict[str, Any]] = [
            {"Sid": "JobRows", "Effect": "Allow", "Resource": [self.table.arn, self.index_arn],
             "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
                        "dynamodb:ConditionCheckItem"]},
            {"Sid": "TakeAndRequeue", "Effect": "Allow", "Resource": [self.queue.arn],
             "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                        "sqs:ChangeMessageVisibility", "sqs:SendMessage"]},
            {"Sid": "ReadDeadLetters", "Effect": "Allow", "Resource": [self.dlq.arn],
             "Action": ["sqs:ReceiveMessage", "sqs:GetQueueAttributes"]},
            {"Sid": "Files", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": [bucket_objects]},
            {"Sid": "ListBatchOutputs", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [self.bucket.arn],
             "Condition": {"StringLike": {"s3:prefix": ["batches/*"]}}},
            {"Sid": "JobsKey", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
             "Resource": [self.key.arn]},
            {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [pulumi.Output.concat(logs.arn, ":*")]},
        ]
        grants = router.secret_grants
        if grants:
            statements.append({"Sid": "ReadTheRoutersSecrets", "Effect": "Allow",
                               "Action": ["secretsmanager:GetSecretValue"], "Resource": [g.arn for g in grants]})
            keys = [g.key_arn for g in grants if g.key_arn is not None]
            if keys:
                statements.append({"Sid": "DecryptThoseSecrets", "Effect": "Allow", "Action": ["kms:Decrypt"],
                                   "Resource": keys, "Condition": {"StringEquals": {
                                       "kms:ViaService": f"secretsmanager.{a.region}.amazonaws.com"}}})
        if self.batch_role is not None:
            jobs_arn = f"arn:aws:bedrock:{a.region}:{a.account_id}:model-invocation-job/*"
            statements += [
                {"Sid": "BatchInference", "Effect": "Allow", "Action": BATCH_JOB_ACTIONS,
                 "Resource": [*a.bedrock_batch_model_arns, jobs_arn]},
                {"Sid": "PassTheBatchRole", "Effect": "Allow", "Action": ["iam:PassRole"],
                 "Resource": [self.batch_role.arn],
                 "Condition": {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}}]
        aws.iam.RolePolicy(f"{name}-worker", role=role.id, policy=policy_json(statements), opts=child(self))
        for pname, doc in policies.items():
            aws.iam.RolePolicy(f"{name}-worker-{pname}", role=role.id, policy=doc, opts=child(self))
        return role

    def _batch_service_role(self) -> aws.iam.Role:
        """What Bedrock batch inference assumes: read the inputs, write the outputs, invoke the tiers' models."""
        a, name = self.args, self.prefix
        role = aws.iam.Role(f"{name}-bedrock-batch", tags=a.tags, opts=child(self),
                            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                                "Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                                "Condition": {"StringEquals": {"aws:SourceAccount": a.account_id}, "ArnLike": {
                                    "aws:SourceArn": f"arn:aws:bedrock:{a.region}:{a.account_id}:model-invocation-job/*"}}}]}))
        aws.iam.RolePolicy(f"{name}-bedrock-batch", role=role.id, opts=child(self), policy=policy_json([
            {"Sid": "ReadInputs", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [pulumi.Output.concat(self.bucket.arn, "/batches/*/bedrock/*/input.jsonl")]},
            {"Sid": "ListBatches", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [self.bucket.arn],
             "Condition": {"StringLike": {"s3:prefix": ["batches/*"]}}},
            {"Sid": "WriteOutputs", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": [pulumi.Output.concat(self.bucket.arn, "/batches/*/bedrock/*/output/*")]},
            {"Sid": "JobsKey", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
             "Resource": [self.key.arn]},
            {"Sid": "InvokeTheTiersModels", "Effect": "Allow", "Action": ["bedrock:InvokeModel"],
             "Resource": a.bedrock_batch_model_arns}]))
        return role

    # ------------------------------------------------------------ alarms
    def _alarms(self, page_topic: pulumi.Input[str], ticket_topic: pulumi.Input[str]) -> None:
        a, name = self.args, self.prefix

        def alarm(suffix: str, topic: pulumi.Input[str], description: str, **kwargs: Any) -> None:
            aws.cloudwatch.MetricAlarm(f"{name}-{suffix}", name=f"{name}-{suffix}", alarm_description=description,
                                       alarm_actions=[topic], ok_actions=[topic], treat_missing_data="notBreaching",
                                       tags={**a.tags, "alarm": f"jobs-{suffix}"}, opts=child(self), **kwargs)

        alarm("dlq-depth", ticket_topic, f"TICKET: messages in {name}-dlq: jobs failed after {a.max_receives} "
              "deliveries (README: Jobs and batches, operations)", namespace="AWS/SQS",
              metric_name="ApproximateNumberOfMessagesVisible", dimensions={"QueueName": f"{name}-dlq"},
              statistic="Maximum", period=300, evaluation_periods=1, threshold=0,
              comparison_operator="GreaterThanThreshold")
        alarm("oldest-message", ticket_topic, f"TICKET: work has waited over {a.oldest_message_alarm_s} s in "
              f"{name}-queue (workers capped at {a.maximum_concurrency}, or failing)", namespace="AWS/SQS",
              metric_name="ApproximateAgeOfOldestMessage", dimensions={"QueueName": f"{name}-queue"},
              statistic="Maximum", period=300, evaluation_periods=3, datapoints_to_alarm=3,
              threshold=a.oldest_message_alarm_s, comparison_operator="GreaterThanThreshold")

        def q(id_: str, metric: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=id_, return_data=False, metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=m.NAMESPACE, metric_name=metric, dimensions={m.DIMENSION: a.service}, period=900,
                    stat="Sum"))
        alarm("failure-ratio", page_topic, f"PAGE: over {a.failure_ratio_alarm:.0%} of finished jobs failed in "
              "15 minutes", comparison_operator="GreaterThanThreshold", threshold=a.failure_ratio_alarm,
              evaluation_periods=1, metric_queries=[
                  q("failed", m.JOBS_FAILED), q("succeeded", m.JOBS_SUCCEEDED),
                  aws.cloudwatch.MetricAlarmMetricQueryArgs(
                      id="ratio", return_data=True, label="failed share",
                      expression="IF(failed + succeeded >= 10, failed / (failed + succeeded), 0)")])
