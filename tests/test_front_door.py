"""The front door in the plan: a streaming REST API behind a REQUEST authorizer, its stage, WAF,
the private option, and the router function under Lambda Web Adapter."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from components import artifact
from components.rest_api import ACCESS_LOG_FORMAT, STAGE_NAME
from components.router import ADAPTER_ENV, LWA_LAYER_VERSION
from llm_blueprint import offline
from llm_router import authorizer
from tests.conftest import EXAMPLE_STACKS, example_config, example_plan
from tests.test_config_schema import problems
from tests.test_iam_network_plan import DeployedIds, arn, deployed_plan

FN = "aws:lambda/function:Function"


def one(plan: offline.Plan, type_: str) -> offline.PlannedResource:
    [r] = plan.of_type(f"aws:apigateway/{type_}")
    return r


def router_fn(plan: offline.Plan) -> offline.PlannedResource:
    [fn] = [f for f in plan.of_type(FN) if f.name.endswith("-router")]
    return fn


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_no_http_api_remains(stack):
    assert not [r for r in example_plan(stack).resources if r.type.startswith("aws:apigatewayv2")]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_one_proxy_route_streams_from_the_router_behind_the_authorizer(stack):
    plan = example_plan(stack)
    api = one(plan, "restApi:RestApi")
    assert api.inputs["name"] == f"llm-{stack}-router"  # the ApiName dimension the SLO alarms read
    assert api.inputs["endpointConfiguration"] == {"types": "REGIONAL"}
    assert one(plan, "resource:Resource").inputs["pathPart"] == "{proxy+}"
    method = one(plan, "method:Method")
    assert (method.inputs["httpMethod"], method.inputs["authorization"]) == ("ANY", "CUSTOM")
    assert one(plan, "authorizer:Authorizer").urn in method.dependencies
    integration = one(plan, "integration:Integration")
    assert integration.inputs["type"] == "AWS_PROXY" and integration.inputs["responseTransferMode"] == "STREAM"
    assert integration.inputs["integrationHttpMethod"] == "POST"


@pytest.mark.parametrize("stack,target", [("dev", "function/llm-dev-router-router"),
                                          ("prod", "alias/llm-prod-router-live")])  # prod keeps a warm pool
def test_integration_uri_is_the_response_streaming_one(stack, target):
    plan = deployed_plan(stack)
    region = plan.outputs["region"]
    uri = one(plan, "integration:Integration").inputs["uri"]
    assert uri == (f"arn:aws:apigateway:{region}:lambda:path/2021-11-15/functions/"
                   f"arn:aws:lambda:{region}:123456789012:{target}/response-streaming-invocations")


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_authorizer_is_a_cached_request_authorizer_on_the_authorization_header(stack):
    plan = deployed_plan(stack)
    auth = one(plan, "authorizer:Authorizer")
    assert auth.inputs["type"] == "REQUEST"
    assert auth.inputs["identitySource"] == "method.request.header.Authorization"
    assert auth.inputs["authorizerResultTtlInSeconds"] == authorizer.RESULT_TTL_S <= 60
    [fn] = [f for f in plan.of_type(FN) if f.name.endswith("-authorizer")]
    assert auth.inputs["authorizerUri"].endswith(f"/2015-03-31/functions/{arn(fn)}/invocations")
    assert fn.inputs["handler"] == "llm_router.authorizer.handler"
    # API Gateway may invoke both functions: the router from the stage, the authorizer as this authorizer.
    api_execution = f"arn:aws:execute-api:{plan.outputs['region']}:123456789012:{one(plan, 'restApi:RestApi').name}-id"
    sources = {next(f.name for f in plan.of_type(FN) if f.urn in p.dependencies): p.inputs
               for p in plan.of_type("aws:lambda/permission:Permission")
               if p.inputs["principal"] == "apigateway.amazonaws.com"}  # (the jobs sweep's schedule is another)
    assert sources == {
        router_fn(plan).name: {**sources[router_fn(plan).name], "sourceArn": f"{api_execution}/{STAGE_NAME}/*"},
        fn.name: {**sources[fn.name], "sourceArn": f"{api_execution}/authorizers/{auth.name}-id"}}
    for p in sources.values():
        assert p["principal"] == "apigateway.amazonaws.com" and p["action"] == "lambda:InvokeFunction"


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_stage_logs_json_traces_and_throttles(stack):
    plan = example_plan(stack)
    cfg = example_config(stack)["llm-blueprint:router"]
    stage = one(plan, "stage:Stage")
    assert stage.inputs["stageName"] == STAGE_NAME and stage.inputs["xrayTracingEnabled"] is True
    fields = json.loads(stage.inputs["accessLogSettings"]["format"])
    assert stage.inputs["accessLogSettings"]["format"] == ACCESS_LOG_FORMAT
    assert {"requestId": "$context.requestId", "status": "$context.status", "latency": "$context.responseLatency",
            "integrationLatency": "$context.integrationLatency", "authorizerError": "$context.authorizer.error",
            "tenant": "$context.authorizer.tenant", "keyId": "$context.authorizer.keyId"}.items() <= fields.items()
    [logs] = [g for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("-access-logs")]
    assert logs.urn in stage.dependencies and logs.inputs["retentionInDays"] > 0
    settings = one(plan, "methodSettings:MethodSettings").inputs
    assert settings["methodPath"] == "*/*" and settings["stageName"] == STAGE_NAME
    assert settings["settings"]["throttlingRateLimit"] == cfg.get("throttling", {}).get("rateLimit", 50)
    assert settings["settings"]["throttlingBurstLimit"] == cfg.get("throttling", {}).get("burstLimit", 100)
    assert settings["settings"]["metricsEnabled"] is True and settings["settings"]["dataTraceEnabled"] is False
    assert one(plan, "deployment:Deployment").urn in stage.dependencies


def test_gateway_errors_have_the_openai_shape():
    plan = example_plan("dev")
    responses = {r.inputs["responseType"]: r.inputs for r in plan.of_type("aws:apigateway/response:Response")}
    assert {"UNAUTHORIZED", "THROTTLED", "WAF_FILTERED", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    unauthorized = json.loads(responses["UNAUTHORIZED"]["responseTemplates"]["application/json"])
    assert unauthorized["error"]["code"] == "invalid_api_key" and responses["UNAUTHORIZED"]["statusCode"] == "401"
    assert responses["THROTTLED"]["statusCode"] == "429"
    default = responses["DEFAULT_5XX"]["responseTemplates"]["application/json"]
    assert json.loads(default.replace("$context.error.messageString", '"x"'))["error"]["type"] == "server_error"


def _waf(plan: offline.Plan):
    return plan.of_type("aws:wafv2/webAcl:WebAcl"), plan.of_type("aws:wafv2/webAclAssociation:WebAclAssociation")


def test_waf_is_on_in_prod_by_default_and_off_elsewhere(write_stack):
    [acl], [assoc] = _waf(example_plan("prod"))
    stage = one(example_plan("prod"), "stage:Stage")
    assert stage.urn in assoc.dependencies and acl.urn in assoc.dependencies
    assert acl.inputs["scope"] == "REGIONAL" and acl.inputs["defaultAction"] == {"allow": {}}
    rules = {r["name"]: r for r in acl.inputs["rules"]}
    common = rules["aws-common"]["statement"]["managedRuleGroupStatement"]
    assert (common["vendorName"], common["name"]) == ("AWS", "AWSManagedRulesCommonRuleSet")
    # Prompts are large and hold code: the body-size and body-signature rules only count.
    assert {o["name"] for o in common["ruleActionOverrides"]} >= {"SizeRestrictions_BODY", "CrossSiteScripting_BODY"}
    assert all(o["actionToUse"] == {"count": {}} for o in common["ruleActionOverrides"])
    rate = rules["rate-per-ip"]
    assert rate["action"] == {"block": {}}
    assert rate["statement"]["rateBasedStatement"] == {"limit": 2000, "aggregateKeyType": "IP", "evaluationWindowSec": 300}
    for stack in ("dev", "staging"):
        assert _waf(example_plan(stack)) == ([], [])
    cfg = example_config("dev")
    cfg["llm-blueprint:router"]["waf"] = {"enabled": True, "rateLimitPerIp": 500}
    [acl], [_] = _waf(offline.plan(str(write_stack(cfg, "dev-waf"))))
    assert {r["name"]: r for r in acl.inputs["rules"]}["rate-per-ip"]["statement"]["rateBasedStatement"]["limit"] == 500
    cfg = example_config("prod")
    cfg["llm-blueprint:router"]["waf"] = {"enabled": False}
    [p] = problems(cfg)  # the policy would refuse it too (apigw-prod-waf)
    assert p.path == "router.waf.enabled" and p.allowed == "true (the prod default)"


def test_private_endpoint_type_admits_only_the_stacks_vpc_endpoint(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:router"].update(endpointType="private", privateClientCidrs=["10.99.0.0/16"])
    with mock.patch.object(offline, "OfflineMocks", DeployedIds):
        plan = offline.plan(str(write_stack(cfg, "internal")))
    [endpoint] = [e for e in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e.name.endswith("-execute-api")]
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-east-1.execute-api"
    assert endpoint.inputs["vpcEndpointType"] == "Interface" and endpoint.inputs["privateDnsEnabled"] is True
    private_subnets = {f"{s.name}-id" for s in plan.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name}
    assert set(endpoint.inputs["subnetIds"]) == private_subnets
    [sg_id] = endpoint.inputs["securityGroupIds"]
    [sg] = [s for s in plan.of_type("aws:ec2/securityGroup:SecurityGroup") if f"{s.name}-id" == sg_id]
    assert sg.name == "llm-internal-router-execute-api"  # its own group, not the shared endpoints' one
    assert [(i["fromPort"], i["cidrBlocks"]) for i in sg.inputs["ingress"]] == [(443, ["10.40.0.0/16", "10.99.0.0/16"])]
    api = one(plan, "restApi:RestApi")
    assert api.inputs["endpointConfiguration"] == {"types": "PRIVATE", "vpcEndpointIds": [f"{endpoint.name}-id"]}
    policy = json.loads(one(plan, "restApiPolicy:RestApiPolicy").inputs["policy"])
    [deny] = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"StringNotEquals": {"aws:SourceVpce": f"{endpoint.name}-id"}}
    assert deny["Action"] == "execute-api:Invoke" and deny["Principal"] == "*"
    # The regional example stacks have neither.
    assert not example_plan("dev").of_type("aws:apigateway/restApiPolicy:RestApiPolicy")
    assert not [e for e in example_plan("dev").of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
                if "execute-api" in e.inputs["serviceName"]]


def test_client_cidrs_without_a_private_endpoint_are_a_config_error(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:router"]["privateClientCidrs"] = ["10.99.0.0/16"]
    [p] = problems(cfg)
    assert p.path == "router.privateClientCidrs" and p.allowed == "router.endpointType: private"


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_router_runs_the_asgi_app_under_lambda_web_adapter(stack):
    plan = example_plan(stack)
    fn = router_fn(plan).inputs
    region = plan.outputs["region"]
    assert fn["layers"] == [f"arn:aws:lambda:{region}:753240598075:layer:LambdaAdapterLayerArm64:{LWA_LAYER_VERSION}"]
    assert fn["handler"] == "llm_router/run.sh"
    assert (fn["runtime"], fn["architectures"]) == ("python3.13", ["arm64"])
    env = fn["environment"]["variables"]
    assert {k: env[k] for k in ADAPTER_ENV} == {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "AWS_LWA_INVOKE_MODE": "response_stream", "PORT": "8080",
        "AWS_LWA_READINESS_CHECK_PATH": "/healthz", "LLM_ROUTER_AUTH": "gateway"}
    # What the data plane read before stays.
    assert {"LLM_ROUTER_SETTINGS", "CACHE_ENDPOINT", "CACHE_SECRET_ARN", "POWERTOOLS_SERVICE_NAME",
            "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} <= set(env)
    assert "API_KEYS_SECRET_ARN" not in env  # the authorizer alone reads the keys
    assert fn["vpcConfig"]["subnetIds"] and fn["vpcConfig"]["securityGroupIds"]
    assert fn["reservedConcurrentExecutions"] == example_config(stack)["llm-blueprint:router"]["reservedConcurrency"]
    warm = plan.of_type("aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig")
    assert [w.inputs["provisionedConcurrentExecutions"] for w in warm] == ([4] if stack == "prod" else [])


def test_shell_scripts_are_executable_in_a_reproducible_artifact(tmp_path):
    import zipfile

    package = tmp_path / "llm_router"
    package.mkdir()
    (package / "run.sh").write_text("#!/bin/sh\nexec python -m uvicorn app:app\n")
    (package / "app.py").write_text("app = None\n")
    a, hash_a = artifact.build(tmp_path / "a.zip", package=package)
    b, hash_b = artifact.build(tmp_path / "b.zip", package=package)
    assert a.read_bytes() == b.read_bytes() and hash_a == hash_b
    with zipfile.ZipFile(a) as zf:
        modes = {i.filename: (i.external_attr >> 16) for i in zf.infolist() if i.filename.startswith("llm_router/")}
    assert modes == {"llm_router/app.py": 0o100644, "llm_router/run.sh": 0o100755}


def test_the_artifact_carries_the_native_parts_the_start_script_asks_for(tmp_path):
    """run.sh names uvloop and httptools rather than letting uvicorn fall back to its pure-Python
    ones; a missing or wrong-platform build would stop every cold start, so the zip must hold
    both (and the Valkey reply parser) built for the function's runtime: arm64, CPython 3.13."""
    import re
    import zipfile

    script = (artifact.PROJECT_DIR / "llm_router" / "run.sh").read_text()
    asked = set(re.findall(r"--(?:loop|http) (\w+)", script))
    assert asked == {"uvloop", "httptools"}
    zip_path, _ = artifact.build(tmp_path / "router.zip")
    with zipfile.ZipFile(zip_path) as zf:
        native = [n for n in zf.namelist() if n.endswith(".so")]
    for package in (*asked, "libvalkey"):
        built = [n for n in native if n.startswith(f"{package}/")]
        assert built and all("cpython-313-aarch64-linux-gnu" in n for n in built), (package, built)
