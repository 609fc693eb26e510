"""Compose one environment from its validated stack config.

The flow is stack config → components → cloud resources; each component
gets a typed args object built here and nowhere else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from llm_router.settings import dump

from .bedrock import TITAN_EMBED_V2, BedrockAccess, BedrockAccessArgs, ProvisionedThroughput
from .cache import CACHE_PORT, SemanticCache, SemanticCacheArgs
from .network import Network, NetworkArgs
from .quality import EvaluatorArgs, Quality, QualityArgs, judge_access
from .router import ANYWHERE, Egress, RouterService, RouterServiceArgs, SecretGrant
from .router_settings import router_settings
from .schema import StackConfig, VllmTier
from .slo import DAY, DestinationSpec, QualityWatch, SloAlarms, SloAlarmsArgs


def stack_tags(cfg: StackConfig) -> dict[str, str]:
    return {**cfg.tags, "environment": cfg.environment, "stack": pulumi.get_stack(), "managed-by": "llm-blueprint"}


def build(cfg: StackConfig) -> dict[str, Any]:
    """Declare every resource this environment needs; return the stack outputs."""
    tags = stack_tags(cfg)
    stack = pulumi.get_stack()
    name = f"llm-{stack}"
    account_id = aws.get_caller_identity().account_id
    net_cfg = cfg.network
    network = Network(f"{name}-net", NetworkArgs(
        region=cfg.region, tags=tags, cidr=net_cfg.cidr, availability_zones=net_cfg.availability_zones or 2,
        nat_gateways=net_cfg.nat_gateways, flow_logs=net_cfg.flow_logs))

    env: dict[str, Any] = {}
    secrets: list[SecretGrant] = []
    #: Backend → the secret its tiers use (the quality evaluator reads its judge's).
    backend_secret: dict[str, SecretGrant] = {}
    egress = [Egress(443, "AWS APIs through the VPC interface endpoints",
                     security_group_id=network.endpoint_security_group_id)]
    policies: dict[str, Any] = {}
    outputs: dict[str, Any] = {
        "region": cfg.region,
        "tiers": [{"name": t.name, "backend": t.backend, "model": t.model} for t in cfg.serving.tiers],
        "vpcId": network.vpc_id,
    }

    cache = None
    if cfg.cache.enabled:
        c = cfg.cache
        cache = SemanticCache(f"{name}-cache", SemanticCacheArgs(
            vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids, tags=tags, engine_version=c.engine_version,
            node_type=c.node_type, nodes=c.nodes or 1, multi_az=bool(c.multi_az),
            snapshot_retention_days=c.snapshot_retention_days, maintenance_window=c.maintenance_window))
        env.update(CACHE_ENDPOINT=cache.endpoint, CACHE_SECRET_ARN=cache.secret_arn)
        secrets.append(SecretGrant(cache.secret_arn, cache.key.arn))
        egress.append(Egress(CACHE_PORT, "Valkey cache", security_group_id=cache.security_group_id))
        outputs.update(cacheEndpoint=cache.endpoint, cacheSecretArn=cache.secret_arn,
                       cacheReplicationGroupId=cache.replication_group_id)

    bedrock_models = [t.model for t in cfg.tiers_on("bedrock")]
    titan = cfg.cache.enabled and cfg.cache.embedder.provider == "bedrock-titan-v2"
    embedding_models = sorted({e.model for e in cfg.serving.embeddings if e.backend == "bedrock"}
                              | ({TITAN_EMBED_V2} if titan else set()))
    bedrock = None
    if bedrock_models or embedding_models or cfg.serving.bedrock.invocation_logging_owner:
        b = cfg.serving.bedrock
        bedrock = BedrockAccess(f"{name}-bedrock", BedrockAccessArgs(
            region=cfg.region, account_id=account_id, models=bedrock_models, tags=tags, network=network,
            embedding_models=embedding_models, guardrail_id=b.guardrail_id,
            guardrail_version=b.guardrail_version, invocation_logging_owner=b.invocation_logging_owner,
            invocation_log_retention_days=b.invocation_log_retention_days,
            invocation_log_bucket=b.invocation_log_bucket, invocation_log_text=b.invocation_log_text,
            private_endpoint=b.private_endpoint and bool(bedrock_models or embedding_models), stack=stack,
            provisioned=[ProvisionedThroughput(t.name, t.model, t.bedrock.provisioned_model_units, t.bedrock.commitment)
                         for t in cfg.tiers_on("bedrock") if t.bedrock and t.bedrock.provisioned_model_units]))
        policies.update(bedrock.policies)
        if bedrock.endpoint_sg is not None:
            egress.append(Egress(443, "bedrock-runtime over PrivateLink", security_group_id=bedrock.endpoint_sg.id))
        outputs["bedrockModelArns"] = bedrock.model_arns
        if bedrock.endpoint_id is not None:
            outputs["bedrockEndpointId"] = bedrock.endpoint_id
        if bedrock.provisioned_arns:
            env["BEDROCK_PROVISIONED_ARNS"] = pulumi.Output.json_dumps(bedrock.provisioned_arns)

    # Chat tiers and embeddings aliases on Azure: one deployment each, named after the alias.
    azure_tiers = [*cfg.tiers_on("azure-openai"), *(e for e in cfg.serving.embeddings if e.backend == "azure-openai")]
    if azure_tiers and cfg.serving.azure_openai is not None:
        from .azure_openai import AzureDeploymentSpec, AzureOpenAIAccount, AzureOpenAIAccountArgs

        az = cfg.serving.azure_openai
        azure = AzureOpenAIAccount(f"{name}-azure", AzureOpenAIAccountArgs(
            location=az.location, subdomain=az.subdomain, tags=tags, private=bool(az.private),
            entra_principal_id=az.entra_principal_id, allowed_ips=network.nat_public_ips, vnet_cidr=az.vnet_cidr,
            deployments=[AzureDeploymentSpec(tier=t.name, model=t.model, model_version=t.azure.model_version,
                                             sku=t.azure.sku, capacity=t.azure.capacity, rai_policy=t.azure.rai_policy)
                         for t in azure_tiers if t.azure is not None]))
        env.update(AZURE_OPENAI_SECRET_ARN=azure.secret_arn)
        secrets.append(SecretGrant(azure.secret_arn))  # encrypted with the AWS managed key
        backend_secret["azure-openai"] = secrets[-1]
        if az.private:
            egress.append(Egress(443, "Azure OpenAI private endpoint (over the VPN)", cidrs=(az.vnet_cidr,)))
        outputs.update(azureOpenAIEndpoint=azure.endpoint)

    queue_metrics: dict[str, str] = {}
    if cfg.tiers_on("vllm-eks") and cfg.serving.eks is not None:
        from .gpu_cluster import GpuCluster, GpuClusterArgs
        from .model_serving import ENGINES, SERVICE_PORT, ModelServing, ModelServingArgs, ModelSpec, Prescale

        e = cfg.serving.eks
        cluster = GpuCluster(f"{name}-gpu", GpuClusterArgs(
            subnet_ids=network.private_subnet_ids, tags=tags, kubernetes_version=e.kubernetes_version,
            public_access_cidrs=e.public_access_cidrs, admin_role_arns=e.admin_role_arns,
            gpu_instance_types=e.gpu_instance_types, gpu_ami_type=e.gpu_ami_type, gpu_nodes_min=e.gpu_nodes_min,
            gpu_nodes_desired=e.gpu_nodes_desired or e.gpu_nodes_min, gpu_nodes_max=e.gpu_nodes_max,
            system_instance_type=e.system_instance_type, region=cfg.region, network=network))
        specs = []
        for t in cfg.tiers_on("vllm-eks"):
            v = t.vllm or VllmTier()
            cpu, memory_gi, shm_gi = v.pod_resources()
            specs.append(ModelSpec(
                tier=t.name, model=t.model, engine=v.engine, image=v.image, gpus_per_pod=v.gpus_per_pod,
                cpu=cpu, memory_gi=memory_gi, shm_gi=shm_gi,
                max_model_len=v.max_model_len, gpu_memory_utilization=v.gpu_memory_utilization,
                quantization=v.quantization, min_replicas=v.replicas.min, max_replicas=v.replicas.max,
                tool_call_parser=v.tool_call_parser, reasoning_parser=v.reasoning_parser,
                weights=v.weights, target_queue_per_replica=v.target_queue_per_replica,
                prescale=[Prescale(w.start, w.end, w.replicas, w.timezone) for w in v.prescale]))
            queue_metrics[t.name] = ENGINES[v.engine].queue_metric
        serving = ModelServing(f"{name}-models", ModelServingArgs(
            cluster=cluster, models=specs, tags=tags, region=cfg.region, environment=cfg.environment,
            client_cidrs=network.router_cidrs, service=f"llm-router-{stack}",
            **({"metrics_agent_image": e.metrics_agent_image} if e.metrics_agent_image else {})))
        env["SELF_HOSTED_ENDPOINTS"] = pulumi.Output.json_dumps(serving.endpoints)
        egress.append(Egress(SERVICE_PORT, "self-hosted models (internal load balancers)",
                             cidrs=tuple(network.private_cidrs)))
        # The servers require this key (plain-string secret): the router sends `Authorization: Bearer <key>`.
        env["SELF_HOSTED_API_KEY_SECRET_ARN"] = serving.api_key_secret_arn
        secrets.append(SecretGrant(serving.api_key_secret_arn, serving.api_key_kms_key_arn))
        backend_secret["vllm-eks"] = secrets[-1]
        outputs.update(eksClusterName=cluster.cluster_name, selfHostedEndpoints=serving.endpoints,
                       selfHostedApiKeySecretArn=serving.api_key_secret_arn)
        if serving.weights_bucket is not None:
            outputs["weightsBucket"] = serving.weights_bucket.bucket

    egress += _internet_egress(cfg, bedrock_used=bool(bedrock_models or embedding_models),
                               bedrock_private=bedrock is not None and bedrock.endpoint_sg is not None)
    backend_policies = dict(policies)
    jobs = _jobs(cfg, name, tags, account_id, network) if cfg.jobs.enabled else None
    if jobs is not None:
        env.update(jobs.router_env)
        policies["jobs"] = jobs.router_policy
        egress += jobs.egress
    quality = None
    if cfg.quality.sample_rate > 0:
        quality = Quality(f"{name}-quality", QualityArgs(
            region=cfg.region, account_id=account_id, tags=tags, stack=stack,
            retention_days=cfg.quality.retention_days, log_retention_days=cfg.router.log_retention_days))
        env["QUALITY_SAMPLES_BUCKET"] = quality.bucket_name
        policies["quality-samples"] = quality.router_policy
        egress.append(Egress(443, "S3 through the gateway endpoint (quality samples)",
                             prefix_list_ids=(network.s3_prefix_list_id,)))
        outputs["qualitySamplesBucket"] = quality.bucket_name
    r = cfg.router
    router = RouterService(f"{name}-router", RouterServiceArgs(
        vpc_id=network.vpc_id, subnet_ids=network.router_subnet_ids, region=cfg.region, tags=tags,
        settings=dump(router_settings(cfg)), env=env, policies=policies, secrets=secrets, egress=egress,
        memory_mb=r.memory_mb, timeout_seconds=r.timeout_seconds,
        reserved_concurrency=r.reserved_concurrency, provisioned_concurrency=r.provisioned_concurrency,
        throttle_rate=r.throttling.rate_limit, throttle_burst=r.throttling.burst_limit,
        log_retention_days=r.log_retention_days, service=f"llm-router-{stack}",
        hosted_api=(cfg.serving.openai.base_url, cfg.serving.openai.api_key.get_secret_value())
        if cfg.tiers_on("openai") and cfg.serving.openai else None,
        cache_embedder_api_key=cfg.cache.embedder.api_key.get_secret_value()
        if cfg.cache.enabled and cfg.cache.embedder.api_key else None,
        endpoint_type=r.endpoint_type, network=network, private_client_cidrs=r.private_client_cidrs,
        waf_rate_limit=r.waf.rate_limit_per_ip if r.waf.enabled else None,
        access_log_role_owner=r.access_log_role_owner))
    if cache is not None:
        cache.allow_from("router", router.security_group_id)
    if bedrock is not None:
        bedrock.allow_from("router", router.security_group_id)
    if quality is not None:
        judge = cfg.judge_tier()
        backend_secret.update({"openai": router.hosted_secret} if router.hosted_secret else {})
        quality.add_evaluator(EvaluatorArgs(
            settings=dump(router_settings(cfg)), service=f"llm-router-{stack}", vpc_id=network.vpc_id,
            subnet_ids=network.router_subnet_ids, endpoint_security_group_id=network.endpoint_security_group_id,
            s3_prefix_list_id=network.s3_prefix_list_id, artifact=router.artifact, every_hours=cfg.quality.every_hours,
            judge=judge_access(cfg, judge, account_id, env, secret=backend_secret.get(judge.backend), bedrock=bedrock,
                               private_cidrs=tuple(network.private_cidrs))))
        if bedrock is not None and judge.backend == "bedrock":
            bedrock.allow_from("quality-evaluator", quality.evaluator_security_group_id)

    alerts = SloAlarms(f"{name}-slo", SloAlarmsArgs(
        service=f"llm-router-{stack}", slo=cfg.slo, tags=tags, api_name=router.api_name, stage=router.stage_name,
        region=cfg.region,
        page=_destination(cfg.alarms.page), ticket=_destination(cfg.alarms.ticket),
        cache_cluster_ids=cache.member_cluster_ids if cache is not None else [],
        queue_metrics=queue_metrics,
        cache_audit_wrong_ratio=cfg.cache.audit.wrong_ratio_alarm if cache and cfg.cache.audit.sample_rate else None,
        cache_audit_min_samples=cfg.cache.audit.min_samples,
        quality=QualityWatch(window_s=cfg.quality.window_days * DAY, min_samples=cfg.quality.min_samples)
        if quality is not None else None))

    if jobs is not None:
        jobs.run_with(router, dump(router_settings(cfg)), backend_policies, network.router_subnet_ids,
                      alerts.page_topic_arn, alerts.ticket_topic_arn)
        outputs.update(jobsTable=jobs.table.name, jobsQueueUrl=jobs.queue.id, jobsDlqUrl=jobs.dlq.id,
                       jobsBucket=jobs.bucket.bucket, jobsWorker=jobs.worker.name)

    outputs.update(
        routerUrl=router.url,
        openaiBaseUrl=router.url.apply(lambda u: u.rstrip("/") + "/v1"),
        apiKeysSecretArn=router.api_keys_secret_arn,
        accessLogGroup=router.access_log_group,
        dashboardUrl=f"https://{cfg.region}.console.aws.amazon.com/cloudwatch/home?region={cfg.region}"
                     f"#dashboards:name={name}-slo",
        pageTopicArn=alerts.page_topic_arn,
        ticketTopicArn=alerts.ticket_topic_arn,
    )
    return outputs


def _jobs(cfg: StackConfig, name: str, tags: dict[str, str], account_id: str, network: Network):
    """The Jobs component (queue, dead-letter queue, table, bucket; the worker follows the router)."""
    from .bedrock import model_arns
    from .jobs import Jobs, JobsArgs

    j = cfg.jobs
    batch_models = sorted({a for t in cfg.tiers_on("bedrock") for a in model_arns(t.model, cfg.region, account_id)}) \
        if j.bedrock_batch else []
    return Jobs(f"{name}-jobs", JobsArgs(
        region=cfg.region, account_id=account_id, tags=tags, network=network,
        maximum_concurrency=j.maximum_concurrency, worker_timeout_s=j.worker_timeout_seconds,
        worker_memory_mb=j.worker_memory_mb, max_receives=j.max_receives, retention_days=j.retention_days,
        point_in_time_recovery=cfg.is_prod, deletion_protection=cfg.is_prod, bedrock_batch_model_arns=batch_models,
        log_retention_days=cfg.router.log_retention_days, service=f"llm-router-{pulumi.get_stack()}",
        oldest_message_alarm_s=j.oldest_message_alarm_seconds, failure_ratio_alarm=j.failure_ratio_alarm))


def _internet_egress(cfg: StackConfig, bedrock_used: bool, bedrock_private: bool) -> list[Egress]:
    """HTTPS out through the NAT, only for what no VPC endpoint reaches (and an embedder's own port)."""
    needs = [f"OpenAI-compatible API ({t.name})" for t in cfg.tiers_on("openai")]
    az = cfg.serving.azure_openai
    if cfg.tiers_on("azure-openai") and az is not None and not az.private:
        needs.append("Azure OpenAI")
    if bedrock_used and not bedrock_private:
        needs.append("Bedrock (no private endpoint)")
    out = [Egress(443, "HTTPS through the NAT: " + ", ".join(needs), cidrs=(ANYWHERE,))] if needs else []
    emb = cfg.cache.embedder
    if cfg.cache.enabled and emb.provider == "openai-compatible" and emb.url:
        url = urlsplit(emb.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        out.append(Egress(port, f"embeddings at {url.hostname}", cidrs=(ANYWHERE,)))
    return out


def _destination(d) -> DestinationSpec:
    secret = d.https_endpoint.get_secret_value() if d.https_endpoint else None
    return DestinationSpec(emails=d.emails, topic_arn=d.topic_arn,
                           https_endpoint=pulumi.Output.secret(secret) if secret else None)
