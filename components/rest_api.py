"""The router's API Gateway REST API: one streaming `{proxy+}` route behind a Lambda authorizer.

Children of the RouterService component; `RestApiFrontDoor` only groups what one REST API needs
(route, authorizer, stage, logs, throttling, WAF, private endpoint) so `router.py` stays
about the functions and their permissions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal, Optional

import pulumi
import pulumi_aws as aws

from llm_router.authorizer import KEY_HEADER, RESULT_TTL_S

from .common import assume_role_policy, child, policy_json

#: The one stage; clients call `https://<api>.execute-api.<region>.amazonaws.com/live/v1/…`.
STAGE_NAME = "live"
#: Body-inspecting rules of AWSManagedRulesCommonRuleSet that only count: prompts are large
#: (SizeRestrictions_BODY blocks bodies over 8 KB) and routinely hold code, paths and URLs
#: that the XSS / LFI / RFI / SSRF signatures were written to block in form posts.
COUNT_ONLY_RULES = ("SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY",
                    "EC2MetaDataSSRF_BODY")
#: JSON access log line: who, what, how long, and why it failed (REST API $context variables).
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "requestTime": "$context.requestTime",
    "method": "$context.httpMethod", "path": "$context.path", "status": "$context.status",
    "protocol": "$context.protocol", "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency", "integrationLatency": "$context.integrationLatency",
    "tenant": "$context.authorizer.tenant", "keyId": "$context.authorizer.keyId",
    "authorizerError": "$context.authorizer.error", "authorizerStatus": "$context.authorizer.status",
    "error": "$context.error.message", "errorType": "$context.error.responseType",
    "integrationError": "$context.integration.error", "wafResponse": "$context.wafResponseCode",
})
#: Gateway-made errors in the OpenAI error shape: (status or None to keep API Gateway's, type, code, message).
GATEWAY_ERRORS: dict[str, tuple[Optional[int], str, Optional[str], Optional[str]]] = {
    "UNAUTHORIZED": (401, "invalid_request_error", "invalid_api_key",
                     "Missing or invalid API key: send 'Authorization: Bearer <key>' once."),
    "ACCESS_DENIED": (403, "invalid_request_error", "access_denied", None),
    "WAF_FILTERED": (403, "invalid_request_error", "request_blocked", "The request was blocked by the firewall."),
    "THROTTLED": (429, "requests", "rate_limit_exceeded", "Too many requests: retry after a short wait."),
    "REQUEST_TOO_LARGE": (413, "invalid_request_error", "request_too_large", None),
    "INTEGRATION_TIMEOUT": (504, "server_error", "timeout", "The model did not answer in time."),
    "DEFAULT_4XX": (None, "invalid_request_error", None, None),
    "DEFAULT_5XX": (None, "server_error", None, None),
}


def streaming_uri(region: str, function_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """API Gateway's InvokeWithResponseStream path for a function (or alias) ARN."""
    return pulumi.Output.concat(f"arn:aws:apigateway:{region}:lambda:path/2021-11-15/functions/", function_arn,
                                "/response-streaming-invocations")


def invocation_uri(region: str, function_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """API Gateway's buffered Invoke path (what a Lambda authorizer is called with)."""
    return pulumi.Output.concat(f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/", function_arn,
                                "/invocations")


def _openai_error(type_: str, code: Optional[str], message: Optional[str]) -> str:
    text = json.dumps(message) if message else "$context.error.messageString"
    return (f'{{"error": {{"message": {text}, "type": "{type_}", "param": null, '
            f'"code": {json.dumps(code) if code else "null"}}}}}')


@dataclass
class RestApiArgs:
    region: str
    tags: dict[str, str]
    #: ARN of the function (or alias) that streams the answers.
    function_arn: pulumi.Input[str]
    #: ARN of the REQUEST authorizer function.
    authorizer_arn: pulumi.Input[str]
    #: Integration timeout (STREAM mode allows up to 900,000 ms).
    integration_timeout_ms: int
    access_log_group_arn: pulumi.Input[str]
    throttle_rate: float
    throttle_burst: int
    #: `private`: reachable only through an execute-api endpoint in the stack's VPC.
    endpoint_type: Literal["regional", "private"] = "regional"
    #: The execute-api interface endpoint (private only).
    vpc_endpoint_id: Optional[pulumi.Input[str]] = None
    #: WAFv2 web ACL on the stage (None: no WAF). Requests per IP per 5 minutes.
    waf_rate_limit: Optional[int] = None
    #: Set API Gateway's account-wide CloudWatch role (REST access logs need it).
    set_account_log_role: bool = True


class RestApiFrontDoor:
    """Declares the REST API as children of `parent`; exposes what the RouterService outputs."""

    def __init__(self, parent: pulumi.Resource, name: str, args: RestApiArgs):
        self.parent, self.name, self.args = parent, name, args
        tags = args.tags
        private = args.endpoint_type == "private"
        self.api = aws.apigateway.RestApi(
            f"{name}-api", name=name, description="OpenAI-compatible LLM router (streaming)", tags=tags,
            security_policy="TLS_1_2",
            endpoint_configuration=aws.apigateway.RestApiEndpointConfigurationArgs(
                types="PRIVATE" if private else "REGIONAL",
                vpc_endpoint_ids=[args.vpc_endpoint_id] if private else None),
            opts=child(parent))
        self.api_name = name
        self.execution_arn = self.api.execution_arn
        policy = self._private_policy() if private else None

        proxy = aws.apigateway.Resource(f"{name}-proxy", rest_api=self.api.id, parent_id=self.api.root_resource_id,
                                        path_part="{proxy+}", opts=child(parent))
        self.authorizer = aws.apigateway.Authorizer(
            f"{name}-api-key", rest_api=self.api.id, name="api-key", type="REQUEST",
            authorizer_uri=invocation_uri(args.region, args.authorizer_arn),
            identity_source=f"method.request.header.{KEY_HEADER}", authorizer_result_ttl_in_seconds=RESULT_TTL_S,
            opts=child(parent))
        method = aws.apigateway.Method(
            f"{name}-any", rest_api=self.api.id, resource_id=proxy.id, http_method="ANY", authorization="CUSTOM",
            authorizer_id=self.authorizer.id, request_parameters={"method.request.path.proxy": True},
            opts=child(parent))
        self.integration = aws.apigateway.Integration(
            f"{name}-stream", rest_api=self.api.id, resource_id=proxy.id, http_method=method.http_method,
            type="AWS_PROXY", integration_http_method="POST", uri=streaming_uri(args.region, args.function_arn),
            response_transfer_mode="STREAM", timeout_milliseconds=args.integration_timeout_ms, opts=child(parent))
        responses = [aws.apigateway.Response(
            f"{name}-{kind.lower().replace('_', '-')}", rest_api_id=self.api.id, response_type=kind,
            status_code=str(status) if status else None,
            response_templates={"application/json": _openai_error(type_, code, message)},
            response_parameters={"gatewayresponse.header.x-request-id": "context.requestId"}, opts=child(parent))
            for kind, (status, type_, code, message) in GATEWAY_ERRORS.items()]

        # A new deployment whenever what it snapshots changes.
        fingerprint = pulumi.Output.json_dumps([
            self.integration.uri, self.integration.timeout_milliseconds, self.authorizer.authorizer_uri,
            RESULT_TTL_S, list(GATEWAY_ERRORS.items()), policy.policy if policy else None,
        ]).apply(lambda text: hashlib.sha256(text.encode()).hexdigest())
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment", rest_api=self.api.id, description="llm-blueprint router",
            triggers={"fingerprint": fingerprint},
            opts=child(parent, depends_on=[method, self.integration, *responses, *([policy] if policy else [])]))
        account = self._account_log_role() if args.set_account_log_role else None
        self.stage = aws.apigateway.Stage(
            f"{name}-stage", rest_api=self.api.id, deployment=deployment.id, stage_name=STAGE_NAME,
            xray_tracing_enabled=True, tags=tags,
            access_log_settings=aws.apigateway.StageAccessLogSettingsArgs(
                destination_arn=args.access_log_group_arn, format=ACCESS_LOG_FORMAT),
            opts=child(parent, depends_on=[account] if account else []))
        aws.apigateway.MethodSettings(
            f"{name}-all-methods", rest_api=self.api.id, stage_name=self.stage.stage_name, method_path="*/*",
            settings=aws.apigateway.MethodSettingsSettingsArgs(
                metrics_enabled=True, logging_level="OFF", data_trace_enabled=False,
                throttling_rate_limit=args.throttle_rate, throttling_burst_limit=args.throttle_burst),
            opts=child(parent))
        if args.waf_rate_limit is not None:
            self._waf(args.waf_rate_limit)
        self.url = self.stage.invoke_url

    def _private_policy(self) -> aws.apigateway.RestApiPolicy:
        """Only requests through the stack's execute-api endpoint may invoke the API."""
        everything = pulumi.Output.concat(self.api.execution_arn, "/*")
        return aws.apigateway.RestApiPolicy(f"{self.name}-api-policy", rest_api_id=self.api.id, opts=child(self.parent),
                                            policy=policy_json([
            {"Sid": "Invoke", "Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke",
             "Resource": everything},
            {"Sid": "OnlyThroughTheStackEndpoint", "Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke",
             "Resource": everything, "Condition": {"StringNotEquals": {"aws:SourceVpce": self.args.vpc_endpoint_id}}},
        ]))

    def _account_log_role(self) -> aws.apigateway.Account:
        """API Gateway's CloudWatch role: one account setting per region, needed for REST access logs."""
        role = aws.iam.Role(f"{self.name}-apigw-logs", assume_role_policy=assume_role_policy("apigateway.amazonaws.com"),
                            tags=self.args.tags, opts=child(self.parent))
        push = aws.iam.RolePolicyAttachment(
            f"{self.name}-apigw-logs", role=role.name, opts=child(self.parent),
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs")
        return aws.apigateway.Account(f"{self.name}-apigw-account", cloudwatch_role_arn=role.arn,
                                      opts=child(self.parent, depends_on=[push]))

    def _waf(self, rate_limit: int) -> None:
        def visibility(metric: str) -> dict:
            return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}

        acl = aws.wafv2.WebAcl(
            f"{self.name}-waf", name=f"{self.name}-waf", scope="REGIONAL", description="llm-blueprint router",
            default_action={"allow": {}}, visibility_config=visibility(f"{self.name}-waf"), tags=self.args.tags,
            rules=[
                {"name": "aws-common", "priority": 1, "override_action": {"none": {}},
                 "statement": {"managed_rule_group_statement": {
                     "vendor_name": "AWS", "name": "AWSManagedRulesCommonRuleSet",
                     "rule_action_overrides": [{"name": r, "action_to_use": {"count": {}}} for r in COUNT_ONLY_RULES]}},
                 "visibility_config": visibility(f"{self.name}-aws-common")},
                {"name": "rate-per-ip", "priority": 2, "action": {"block": {}},
                 "statement": {"rate_based_statement": {"limit": rate_limit, "aggregate_key_type": "IP",
                                                        "evaluation_window_sec": 300}},
                 "visibility_config": visibility(f"{self.name}-rate-per-ip")},
            ], opts=child(self.parent))
        aws.wafv2.WebAclAssociation(f"{self.name}-waf", resource_arn=self.stage.arn, web_acl_arn=acl.arn,
                                    opts=child(self.parent))
