"""The one stack-config schema every component reads.

Pure pydantic: no Pulumi import, so the CLI (`new-stack`, `cost`) and the
tests share it with the program. Structure is checked here; rules that
compare fields across sections live in `components/config_rules.py`.

Defaults are the secure, production-sensible choice. Fields left as `None`
take an environment-dependent default in `config_rules.apply_environment_defaults`
(for example prod gets a Multi-AZ cache and three availability zones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Optional

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from llm_router import timeouts
from llm_router.cache.verifier import DEFAULT as VERIFIER

Environment = Literal["dev", "staging", "prod"]
Backend = Literal["bedrock", "azure-openai", "vllm-eks", "openai"]

TIER_NAME = r"^[a-z][a-z0-9-]{0,31}$"
#: Model aliases the router reserves; a tier may not be named after them.
RESERVED_TIER_NAMES = ("auto",)


class Section(BaseModel):
    """Base for every config block: camelCase keys, typos rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )

    @classmethod
    def default_of(cls, field: str) -> Any:
        """This section's default for `field`: component args that restate a configurable default
        take it from here, so each default has one home (the schema, where it is documented)."""
        return cls.model_fields[field].default


#: A string that must come from `pulumi config set --secret`: the loader
#: rejects one whose config key is not marked secret, and it never prints.
Secret = SecretStr


# --------------------------------------------------------------------- network
class NetworkConfig(Section):
    cidr: str = Field("10.40.0.0/16", pattern=r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-4])$")
    #: None: 2 outside prod, 3 in prod.
    availability_zones: Optional[int] = Field(None, ge=2, le=3)
    #: NAT for egress the VPC endpoints don't cover (Azure OpenAI, image
    #: registries). `none` keeps the VPC fully private.
    nat_gateways: Literal["none", "single", "per-az"] = "single"
    flow_logs: bool = True


# --------------------------------------------------------------------- serving
class PriceConfig(Section):
    """USD per million tokens, for cost estimates and tier savings."""

    input_per_mtok: float = Field(ge=0, alias="inputPerMTok")
    output_per_mtok: float = Field(ge=0, alias="outputPerMTok")
    #: Prompt tokens read from the provider's prompt cache (Claude on Bedrock: a tenth of the
    #: input price). None: priced as input, so no saving is counted.
    cached_input_per_mtok: Optional[float] = Field(None, ge=0, alias="cachedInputPerMTok")
    #: Prompt tokens written to Bedrock's prompt cache (Claude: 1.25 × input). None: as input.
    cache_write_per_mtok: Optional[float] = Field(None, ge=0, alias="cacheWritePerMTok")


class BedrockTier(Section):
    #: Provisioned throughput in model units (0 = on-demand).
    provisioned_model_units: int = Field(0, ge=0)
    commitment: Literal["none", "1month", "6months"] = "none"
    #: The model family behind an opaque `model` ARN (application inference profile, provisioned
    #: throughput): a family name from the README's capability table or a model id. None: the
    #: family is read from `model`; an ARN it cannot be read from gets the text-only row.
    family_hint: Optional[str] = Field(None, min_length=1, max_length=200)


class AzureDeployment(Section):
    model_version: str = Field(min_length=1)
    sku: Literal["Standard", "GlobalStandard", "DataZoneStandard", "ProvisionedManaged"] = "GlobalStandard"
    #: Capacity in 1K-tokens-per-minute units.
    capacity: int = Field(10, ge=1, le=10000)
    rai_policy: str = "Microsoft.DefaultV2"


class Replicas(Section):
    #: Warm replicas that never scale away (prod: at least 2).
    min: int = Field(1, ge=1)
    max: int = Field(4, ge=1)


class PrescaleWindow(Section):
    """Scheduled pre-scaling, e.g. weekdays 08:00–18:00 at 4 replicas."""

    start: str = Field(pattern=r"^\S+ \S+ \S+ \S+ \S+$")
    end: str = Field(pattern=r"^\S+ \S+ \S+ \S+ \S+$")
    replicas: int = Field(ge=1)
    timezone: str = "UTC"


#: `repository[:tag][@sha256:<digest>]`, no registry port. Kubernetes pulls by the digest when
#: there is one and ignores the tag, which stays for humans: `vllm/vllm-openai:v0.11.0@sha256:…`.
IMAGE = r"^[^\s:@]+(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$"
IMAGE_DIGEST = re.compile(r"@sha256:[a-f0-9]{64}$")
IMAGE_DIGEST_FORM = "repository:tag@sha256:<64 hex digits>"
#: Stands in for a digest nobody has looked up yet; never pullable (README: Pinning images).
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
#: Default engine images. vLLM's is the multi-arch index digest of the v0.11.0 tag; TGI's is
#: pinned by tag only, so a prod TGI tier must name its image with a digest.
ENGINE_IMAGES = {
    "vllm": "vllm/vllm-openai:v0.11.0@sha256:014a95f21c9edf6abe0aea6b07353f96baa4ec291c427bb1176dc7c93a85845c",
    "tgi": "ghcr.io/huggingface/text-generation-inference:3.3.6",
}
#: Default CloudWatch agent image (scrapes the servers' queue metrics); pinned by tag only.
METRICS_AGENT_IMAGE = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300062.0b1304"


def _pinned_image(v: Optional[str]) -> Optional[str]:
    if v is None:
        return v
    name = v.split("@")[0]
    if ":" not in name and not IMAGE_DIGEST.search(v):
        raise ValueError("an image is pinned by a tag or a digest (repository:tag@sha256:…)")
    if name.endswith(":latest"):
        raise ValueError("images are pinned by version, never ':latest'")
    return v


Image = Annotated[str, Field(pattern=IMAGE), AfterValidator(_pinned_image)]

#: Per-GPU defaults of PodResources, sized so one pod fits the default g6e.xlarge
#: (4 vCPU, 32 GiB, 1 GPU: about 3.6 vCPU and 28.9 GiB allocatable).
CPU_PER_GPU = 3.0
MEMORY_GI_PER_GPU = 20
SHM_GI_PER_GPU = 2


class PodResources(Section):
    """What one model pod asks of its node; None takes the per-GPU default × gpusPerPod.

    The GPU-scheduling policy checks that the pod fits every instance type of the GPU node
    group (README: Sizing the GPU node group). The container's memory limit is memoryGi +
    shmGi, because /dev/shm is memory-backed and charged to the pod.
    """

    #: vCPU requested. Default 3 per GPU: the API server, the engine core and tokenisation.
    cpu: Optional[float] = Field(None, gt=0, le=192)
    #: Host memory requested for the server process, GiB. Default 20 per GPU: weights live on
    #: the GPU; the host holds the process, the streamer's read buffer and the tokenizer.
    memory_gi: Optional[int] = Field(None, ge=1, le=2048)
    #: Memory-backed /dev/shm, GiB (NCCL and vLLM's inter-process queues). Default 2 per GPU.
    shm_gi: Optional[int] = Field(None, ge=1, le=256)


PARSER_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"


class VllmTier(Section):
    engine: Literal["vllm", "tgi"] = "vllm"
    #: None: the engine's default image (ENGINE_IMAGES). Pinned by tag or digest, never
    #: `latest`; prod requires a digest (`repository:tag@sha256:…`).
    image: Optional[Image] = None
    gpus_per_pod: int = Field(1, ge=1, le=8)
    max_model_len: int = Field(8192, ge=256)
    gpu_memory_utilization: float = Field(0.90, gt=0.1, le=0.98)
    quantization: Optional[Literal["awq", "gptq"]] = None
    replicas: Replicas = Replicas()
    #: s3: weights streamed from the stack's bucket (Run:ai streamer); pvc: a
    #: persistent volume caches what the pod downloads on first start.
    weights: Literal["s3", "pvc"] = "s3"
    #: Requests waiting per replica before another replica is added.
    target_queue_per_replica: int = Field(5, ge=1)
    prescale: list[PrescaleWindow] = []
    resources: PodResources = PodResources()
    #: vLLM's tool-call parser for this model (`hermes` for Qwen, `llama3_json` for Llama 3.x,
    #: `mistral`, …): the server starts with `--enable-auto-tool-choice --tool-call-parser <it>`
    #: and the tier advertises tool calling. None: no tools (a request with tools is a 400).
    tool_call_parser: Optional[str] = Field(None, pattern=PARSER_NAME)
    #: vLLM's `--reasoning-parser` (`deepseek_r1`, `qwen3`, …): reasoning comes back apart from
    #: the answer and the tier advertises reasoning. None: off.
    reasoning_parser: Optional[str] = Field(None, pattern=PARSER_NAME)
    #: The model takes images (a multimodal model such as Qwen2.5-VL); advertised as image input.
    image_input: bool = False

    def effective_image(self) -> str:
        return self.image or ENGINE_IMAGES[self.engine]

    def pod_resources(self) -> tuple[float, int, int]:
        """(vCPU, memory GiB, shm GiB) of one pod, defaults filled in per GPU."""
        r, g = self.resources, self.gpus_per_pod
        return (r.cpu if r.cpu is not None else CPU_PER_GPU * g,
                r.memory_gi if r.memory_gi is not None else MEMORY_GI_PER_GPU * g,
                r.shm_gi if r.shm_gi is not None else SHM_GI_PER_GPU * g)


class PromptCacheConfig(Section):
    """Bedrock prompt caching (README: "Prompt caching"): cache points after the long, stable
    prefixes of a request, on models that take them (Claude 3.7+, Nova). A prefix shorter than
    the model's minimum (1,024 tokens on most) gets none. Other backends cache prefixes by
    themselves (OpenAI and Azure from 1,024 tokens, vLLM's prefix caching)."""

    #: A cache point after the system prompt (it also covers the tool definitions before it).
    system: bool = True
    #: A cache point after the tool definitions (Claude only: Nova refuses one there).
    tools: bool = True


class Tier(Section):
    """A model alias the router serves (`fast`, `smart`, …) and what serves it."""

    name: str = Field(pattern=TIER_NAME)
    backend: Backend
    #: Bedrock model id or inference-profile id; Azure OpenAI model name;
    #: Hugging Face model id for vllm-eks.
    model: str = Field(min_length=1, max_length=200)
    #: Prompt budget; older turns are dropped to fit.
    max_prompt_tokens: int = Field(4096, ge=64, le=1_000_000)
    #: Completion budget; requests above it are clamped or rejected.
    max_tokens: int = Field(1024, ge=1, le=64_000)
    #: Worst-case generation speed: `maxTokens` at this speed must finish inside
    #: the streamed deadline (README: "Timeouts").
    min_tokens_per_second: float = Field(40.0, gt=0)
    #: Tier to try when this one fails or its circuit is open.
    fallback: Optional[str] = Field(None, pattern=TIER_NAME)
    price: Optional[PriceConfig] = None
    bedrock: Optional[BedrockTier] = None
    azure: Optional[AzureDeployment] = None
    vllm: Optional[VllmTier] = None
    #: Bedrock cache points; on by default: a cached prefix costs a tenth to a quarter of input.
    prompt_cache: PromptCacheConfig = PromptCacheConfig()

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_TIER_NAMES:
            raise ValueError(f"'{v}' is a reserved model alias; choose another tier name")
        return v


class BedrockConfig(Section):
    #: Model invocation logging is one setting per account+region: exactly
    #: one stack there may own it.
    invocation_logging_owner: bool = False
    invocation_log_retention_days: int = Field(90, ge=1)
    #: Also deliver invocation logs to an encrypted S3 bucket (long retention).
    invocation_log_bucket: bool = False
    #: Put prompt and completion text into the invocation logs. Default false: metadata only
    #: (model, token counts, latency, caller), because the logs would otherwise hold every
    #: user's prompts. Both destinations are encrypted with the stack's own KMS key either way.
    invocation_log_text: bool = False
    guardrail_id: Optional[str] = None
    guardrail_version: Optional[str] = Field(None, pattern=r"^\d+$")
    #: Interface endpoint for bedrock-runtime so model calls need no NAT.
    private_endpoint: bool = True


class AzureOpenAIConfig(Section):
    location: str = Field(pattern=r"^[a-z0-9]+$")
    #: Custom subdomain; globally unique.
    subdomain: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    #: None: private (no public network access + private endpoint) in prod.
    private: Optional[bool] = None
    #: Entra ID app/object id of the principal the router authenticates as;
    #: when set, key auth is disabled on the account.
    entra_principal_id: Optional[str] = None
    #: Key for an account this stack does not own. Secret-only.
    api_key: Optional[Secret] = None
    #: Data-plane API version the router calls (reasoning needs 2024-12-01-preview or later,
    #: JSON schema 2024-08-01 or later; the README's capability table).
    api_version: str = Field("2024-10-21", pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")
    #: Address space of the Azure VNet that holds the private endpoint.
    vnet_cidr: str = Field("10.90.0.0/24", pattern=r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-9])$")


class OpenAIConfig(Section):
    """The OpenAI API itself (or another hosted OpenAI-compatible API)."""

    base_url: str = Field("https://api.openai.com/v1", pattern=r"^https://")
    #: Secret-only; copied into a Secrets Manager secret the router alone may read.
    api_key: Secret


GPU_FAMILIES = ("g5", "g6", "g6e", "p4d", "p5")


class EksConfig(Section):
    kubernetes_version: str = Field("1.33", pattern=r"^1\.\d{2}$")
    #: CIDRs allowed to reach a public API endpoint; empty = private only.
    public_access_cidrs: list[str] = []
    admin_role_arns: list[str] = []
    gpu_instance_types: list[str] = ["g6e.xlarge"]
    gpu_ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"
    gpu_nodes_min: int = Field(1, ge=0)
    gpu_nodes_desired: Optional[int] = Field(None, ge=0)
    gpu_nodes_max: int = Field(4, ge=1)
    system_instance_type: str = "m6i.large"
    #: None: METRICS_AGENT_IMAGE. The CloudWatch agent that scrapes the servers' queue depth
    #: (autoscaling reads it); prod requires a digest like the model images.
    metrics_agent_image: Optional[Image] = None

    @field_validator("gpu_instance_types")
    @classmethod
    def _gpu_allowlist(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t.split(".")[0] not in GPU_FAMILIES]
        if bad or not v:
            raise ValueError(
                f"GPU instance types must be from the families {', '.join(GPU_FAMILIES)}; got {bad or v}"
            )
        return v


@dataclass(frozen=True)
class EmbeddingModelSpec:
    """What an embeddings model takes: output sizes, inputs per request, tokens per input."""

    #: Sizes the model can return; its native size first.
    dimensions: tuple[int, ...]
    max_inputs: int
    max_input_tokens: int
    #: Any size from 1 up to the native one (OpenAI's text-embedding-3 family).
    any_smaller: bool = False


#: Embeddings models the router knows. Titan takes one text per call, so a request's
#: inputs are capped where the latency of one call each stays reasonable.
EMBEDDING_MODELS: dict[str, EmbeddingModelSpec] = {
    "amazon.titan-embed-text-v2:0": EmbeddingModelSpec((1024, 512, 256), 32, 8192),
    "cohere.embed-english-v3": EmbeddingModelSpec((1024,), 96, 512),
    "cohere.embed-multilingual-v3": EmbeddingModelSpec((1024,), 96, 512),
    "cohere.embed-v4:0": EmbeddingModelSpec((1536, 1024, 512, 256), 96, 128_000),
    "text-embedding-3-small": EmbeddingModelSpec((1536,), 2048, 8191, any_smaller=True),
    "text-embedding-3-large": EmbeddingModelSpec((3072,), 2048, 8191, any_smaller=True),
    "text-embedding-ada-002": EmbeddingModelSpec((1536,), 2048, 8191),
}


class EmbeddingModel(Section):
    """An alias served at `/v1/embeddings` (the examples use `embed`) and what serves it."""

    name: str = Field(pattern=TIER_NAME)
    #: `bedrock` (Titan Text Embeddings v2, Cohere Embed), `azure-openai` (a deployment in the
    #: stack's account), `openai` (the `serving.openai` API), `openai-compatible` (`url`).
    backend: Literal["bedrock", "azure-openai", "openai", "openai-compatible"]
    model: str = Field(min_length=1, max_length=200)
    #: Size returned when a request names none. None: the model's native size. Required for
    #: models the router does not know.
    dimensions: Optional[int] = Field(None, ge=1, le=8192)
    #: Inputs per request. None: what the model takes (Titan: 32, Cohere: 96, OpenAI: 2048).
    max_inputs: Optional[int] = Field(None, ge=1, le=2048)
    #: Base URL of an OpenAI-compatible `/v1/embeddings` server (openai-compatible only).
    url: Optional[str] = Field(None, pattern=r"^https?://")
    price: Optional[PriceConfig] = None
    #: The Azure OpenAI deployment (azure-openai only).
    azure: Optional[AzureDeployment] = None


class ServingConfig(Section):
    tiers: list[Tier] = Field(min_length=1)
    #: Embeddings aliases for `/v1/embeddings`; none by default.
    embeddings: list[EmbeddingModel] = []
    bedrock: BedrockConfig = BedrockConfig()
    azure_openai: Optional[AzureOpenAIConfig] = None
    openai: Optional[OpenAIConfig] = None
    eks: Optional[EksConfig] = None


# ---------------------------------------------------------------------- router
class TieringRules(Section):
    """Signals that send a request to the expensive tier under `auto`."""

    cheap_tier: Optional[str] = Field(None, pattern=TIER_NAME)
    expensive_tier: Optional[str] = Field(None, pattern=TIER_NAME)
    #: Last user turn longer than this (in tokens) goes to the expensive tier.
    long_prompt_tokens: int = Field(600, ge=1)
    #: Conversations with more turns than this go to the expensive tier.
    long_conversation_turns: int = Field(8, ge=1)
    keywords: list[str] = [
        "compare", "analyse", "analyze", "explain in detail", "step by step",
        "prove", "design", "trade-off", "tradeoff", "refactor",
    ]
    code_blocks: bool = True


class Throttling(Section):
    rate_limit: float = Field(50, gt=0)
    burst_limit: int = Field(100, gt=0)


CIDR = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"
#: A lower-case DNS name with at least one dot (no scheme, port or path).
HOSTNAME = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"


class WafConfig(Section):
    """A WAFv2 web ACL on the API stage: AWS managed common rules + a per-IP rate limit."""

    #: None: on in prod, off elsewhere.
    enabled: Optional[bool] = None
    #: Requests one client IP may send in 5 minutes before the rate-based rule blocks it.
    rate_limit_per_ip: int = Field(2000, ge=10, le=2_000_000_000)


class RateLimitConfig(Section):
    #: A token bucket: a burst of this many requests, refilled evenly over the minute. null: no limit.
    requests_per_minute: Optional[int] = Field(None, ge=1, le=1_000_000)
    #: Prompt + completion tokens per UTC day (a request reserves its prompt and max_tokens). null: no limit.
    tokens_per_day: Optional[int] = Field(None, ge=1000, le=10**12)


class RateLimits(Section):
    """Per API key and per tenant, counted in the cache's Valkey (`llm_router/limits.py`)."""

    #: Every key's limits unless the key has its own (`llm-blueprint keys limits`). 600 a
    #: minute per key: a runaway client stops at a fraction of the stage's throttle (50/s
    #: by default) instead of taking it all; tokens are left to the per-tenant quotas.
    per_key: RateLimitConfig = RateLimitConfig(requests_per_minute=600)
    #: Every tenant's limits (all its keys together) unless `tenants` names it. None by default.
    per_tenant: RateLimitConfig = RateLimitConfig()
    #: Limits for named tenants, replacing `perTenant` for them.
    tenants: dict[Annotated[str, Field(min_length=1, max_length=128)], RateLimitConfig] = {}


class RouterConfig(Section):
    #: Model alias used when the request names none (`auto` = let tiering decide).
    default_tier: str = "auto"
    tiering: TieringRules = TieringRules()
    #: What to do with `max_tokens` above the tier budget.
    max_tokens_policy: Literal["clamp", "reject"] = "clamp"
    max_body_bytes: int = Field(256 * 1024, ge=1024, le=6 * 1024 * 1024)
    #: Messages per request: fitting a budget is linear, but thousands of tiny messages
    #: are abuse, not a conversation.
    max_messages: int = Field(1000, ge=2, le=100_000)
    memory_mb: int = Field(1024, ge=128, le=10240)
    #: The router's budget per request, s: a streamed answer may run this long (API Gateway
    #: streams up to 900 s); a buffered one gets at most the 5-minute idle limit. The Lambda,
    #: integration and upstream timeouts derive from it (`llm_router/timeouts.py`).
    timeout_seconds: int = Field(timeouts.DEFAULT_TIMEOUT_S, ge=timeouts.MIN_TIMEOUT_S, le=timeouts.STREAM_MAX_S)
    #: `regional`: reachable from the internet (behind keys, throttling and, in prod, WAF);
    #: `private`: only through an execute-api interface endpoint in the stack's VPC.
    endpoint_type: Literal["regional", "private"] = "regional"
    #: Networks besides the stack's VPC (peered VPCs, VPN) that may reach a private endpoint.
    private_client_cidrs: list[Annotated[str, Field(pattern=CIDR)]] = []
    waf: WafConfig = WafConfig()
    #: REST API access logs need API Gateway's CloudWatch role, one account setting per
    #: region: true makes this stack set it. Set false in all but one stack per account+region.
    access_log_role_owner: bool = True
    reserved_concurrency: int = Field(50, ge=1)
    #: Warm Lambda environments for the front door (0 = none).
    provisioned_concurrency: int = Field(0, ge=0)
    throttling: Throttling = Throttling()
    log_retention_days: int = Field(30, ge=1)
    #: Prompt text stays out of logs unless this is turned on.
    log_prompts: bool = False
    #: Hosts whose http(s) image URLs requests may carry (e.g. your own CDN). Default none: images
    #: travel inline as data: URLs, and the router never fetches (or has a model server fetch) an
    #: arbitrary URL for whoever holds a key.
    remote_image_hosts: list[Annotated[str, Field(pattern=HOSTNAME)]] = []
    rate_limits: RateLimits = RateLimits()


# ----------------------------------------------------------------------- cache
EMBEDDER_DIMENSIONS: dict[str, tuple[int, ...]] = {
    "local-minilm": (384,),
    "bedrock-titan-v2": (256, 512, 1024),
}
OPENAI_EMBEDDING_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class EmbedderConfig(Section):
    """Deployed routers embed with Titan v2 or an OpenAI-compatible endpoint;
    `local-minilm` (torch) runs only under `llm-blueprint serve` and `cache eval`."""

    provider: Literal["local-minilm", "bedrock-titan-v2", "openai-compatible"] = "bedrock-titan-v2"
    model: Optional[str] = None
    dimensions: int = Field(512, ge=8, le=8192)
    #: OpenAI-compatible `/v1/embeddings` base URL (openai-compatible only).
    url: Optional[str] = Field(None, pattern=r"^https?://")
    #: Its API key (openai-compatible only). Secret-only; copied into a Secrets Manager secret
    #: the router alone may read.
    api_key: Optional[Secret] = None
    #: One embedding's budget on the request path, no retries: a slow embedder costs a miss,
    #: never a slow answer.
    timeout_ms: int = Field(1000, ge=50, le=10_000)


class TtlConfig(Section):
    default_seconds: int = Field(3600, ge=60)
    #: Per-tier overrides, keyed by tier name.
    tiers: dict[str, int] = {}


class VerifierConfig(Section):
    """The near-miss verifier between the KNN candidates and a semantic hit (README:
    "Near-miss verifier"). `cache calibrate` sweeps the two tunable fields with the threshold."""

    #: Content words one question may have that the other lacks, when it is reworded (a
    #: paraphrase says "corporate" for "company"). 0 refuses every unmatched word: highest
    #: precision, about a quarter of the recall on the labelled dev pairs.
    max_unmatched: int = Field(VERIFIER.max_unmatched, ge=0, le=10)
    #: Word-pair overlap below which a question counts as reworded. At or above it, any
    #: changed content word is a changed fact ("brake pads" -> "brake discs") and refused.
    reworded_below: float = Field(VERIFIER.reworded_below, ge=0.0, le=1.0)
    #: Questions longer than this (characters) are not served or stored semantically: the
    #: checks stay bounded, and MiniLM reads only the first 256 tokens anyway.
    max_question_chars: int = Field(VERIFIER.max_chars, ge=100, le=20_000)


CacheWhen = Literal["never", "deterministic", "repeats", "always"]


class TierCacheConfig(Section):
    """Per-tier cache behaviour (`cache.tiers.<tier>`)."""

    #: None: the stack's `cache.cacheWhen`.
    cache_when: Optional[CacheWhen] = None


class GreyBandConfig(Section):
    """Ask a model "same question?" for a candidate just below the similarity threshold
    (README: "Grey band"). Off by default: it adds a model call (bounded by `timeoutMs`) to
    requests whose best candidate falls in the band, until the verdict is cached."""

    enabled: bool = False
    #: Candidates from here up to `similarityThreshold` that the verifier passes are judged.
    lower_threshold: float = Field(0.75, gt=0.5, lt=1.0)
    #: None: the stack's cheapest tier (by price; else `router.tiering.cheapTier`).
    tier: Optional[str] = Field(None, pattern=TIER_NAME)
    #: The judge's budget; no answer in time is a miss.
    timeout_ms: int = Field(1500, ge=100, le=10_000)
    #: Verdicts are cached per pair of questions (per tenant, tier and system prompt).
    verdict_ttl_seconds: int = Field(86_400, ge=60)


class AuditConfig(Section):
    """Production precision (README: "Auditing cached answers"): a share of semantic hits is
    re-asked of the model off the request path and a model judges whether the cached answer
    still answers the question. `CacheAuditSamples` / `CacheAuditWrong` in CloudWatch."""

    #: Share of semantic hits audited; 0 turns the audit off. Each audit costs two model calls.
    sample_rate: float = Field(0.01, ge=0, le=1)
    #: None: the stack's cheapest tier judges.
    judge_tier: Optional[str] = Field(None, pattern=TIER_NAME)
    #: Audits waiting per router process; more are dropped (`CacheAuditDropped`).
    queue_size: int = Field(16, ge=1, le=1000)
    #: Disagreements kept per tenant in the cache for `llm-blueprint cache audit` (they hold
    #: question and answer text, as cache entries do), and for how long.
    keep: int = Field(100, ge=1, le=10_000)
    keep_days: int = Field(14, ge=1, le=90)
    #: A ticket when more than this share of audited hits disagree over a day (`minSamples`
    #: audits at least).
    wrong_ratio_alarm: float = Field(0.05, gt=0, le=1)
    min_samples: int = Field(20, ge=1)


class CacheConfig(Section):
    enabled: bool = True
    embedder: EmbedderConfig = EmbedderConfig()
    #: Cosine similarity a candidate must reach before the verifier runs.
    similarity_threshold: float = Field(0.90, gt=0.5, lt=1.0)
    #: The near-miss verifier's settings.
    verifier: VerifierConfig = VerifierConfig()
    #: Answers larger than this (bytes of JSON) are never cached: one huge answer must not
    #: evict thousands of ordinary ones. 256 KiB.
    max_entry_bytes: int = Field(262_144, ge=1024, le=16 * 1024 * 1024)
    #: Precision target `cache calibrate` recommends a threshold for.
    precision_target: float = Field(0.99, gt=0.5, le=1.0)
    #: Share of near-miss questions allowed a hit, for `cache calibrate` on pairs that label
    #: near-miss classes.
    near_miss_target: float = Field(0.01, ge=0.0, le=1.0)
    #: At or below this temperature a request is deterministic; above it, or with no
    #: temperature (the API's default is 1.0), it is sampled (see `cacheWhen`).
    max_cacheable_temperature: float = Field(0.3, ge=0, le=2)
    #: What sampled requests get: `repeats` (default) serves exact repeats from the cache and
    #: semantic hits only to deterministic requests; `always` both layers whatever the
    #: temperature; `deterministic` no cache for sampled requests; `never` no cache at all.
    cache_when: CacheWhen = "repeats"
    #: Per-tier overrides, keyed by tier name (`{creative: {cacheWhen: never}}`).
    tiers: dict[str, TierCacheConfig] = {}
    grey_band: GreyBandConfig = GreyBandConfig()
    audit: AuditConfig = AuditConfig()
    ttl: TtlConfig = TtlConfig()
    node_type: str = Field("cache.t4g.small", pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    #: None: 1 outside prod, 2 in prod.
    nodes: Optional[int] = Field(None, ge=1, le=6)
    #: None: true in prod.
    multi_az: Optional[bool] = None
    engine_version: str = Field("8.2", pattern=r"^\d+\.\d+$")
    snapshot_retention_days: int = Field(7, ge=0, le=35)
    maintenance_window: str = Field("sun:05:00-sun:06:00", pattern=r"^[a-z]{3}:\d{2}:\d{2}-[a-z]{3}:\d{2}:\d{2}$")
    #: Lookups slower than this fail open (request proceeds uncached).
    timeout_ms: int = Field(50, ge=1, le=1000)
    #: HNSW search breadth: higher finds more near neighbours in very large caches, at
    #: the cost of lookup time (README: "Semantic cache speed"). Must be at least k (5).
    ef_runtime: int = Field(32, ge=5, le=1024)
    #: Scopes (tenant × tier × system prompt) that get a search index of their own; later
    #: ones share one index with a scope filter. None: the engine's index cap less two
    #: (the shared index, and one free for a version change) — 8 on Valkey 8.x, 998 on 9.x.
    dedicated_indexes: Optional[int] = Field(None, ge=0)


def search_index_limit(engine_version: str) -> int:
    """ElastiCache's cap on search indexes per cluster (10 on Valkey 8.x, 1,000 from 9.0)."""
    return 10 if int(engine_version.split(".")[0]) < 9 else 1000


# ------------------------------------------------------------------------ jobs
#: Lambda's invoke payload is 6 MB and API Gateway hands the body over JSON-escaped: a
#: deployed router cannot take a larger upload whole.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class JobsConfig(Section):
    """Async work (README: "Jobs and batches"): `POST /v1/jobs` and the OpenAI Batch API on an SQS
    queue drained by a worker function whose concurrency is capped."""

    #: Off by default: the queue, table, bucket and worker cost nothing until a stack asks for them.
    enabled: bool = False
    #: Workers at once (the SQS event source's maximumConcurrency, 2–1000): the knob that keeps
    #: bulk work from taking the capacity interactive requests need. 10: ten model calls at a time.
    maximum_concurrency: int = Field(10, ge=2, le=1000)
    #: The worker function's timeout, s. A job's model call gets this less a margin (no API Gateway
    #: idle limit: a buffered job may use all of it). The queue's visibility timeout is six times
    #: this (AWS's guidance for SQS → Lambda). None: `router.timeoutSeconds`, so a job gets the time
    #: a streamed answer gets.
    worker_timeout_seconds: Optional[int] = Field(None, ge=timeouts.MIN_TIMEOUT_S, le=timeouts.LAMBDA_MAX_S)
    worker_memory_mb: int = Field(1024, ge=128, le=10240)
    #: Deliveries of a message before it moves to the dead-letter queue and its job fails with
    #: the reason. 3: a transient outage gets two more tries, a poison message stops soon.
    max_receives: int = Field(3, ge=1, le=1000)
    #: Largest `/v1/files` upload, bytes. 4 MiB; at most 5 MiB (a deployed router receives the
    #: upload inside Lambda's 6 MB invoke payload).
    max_file_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=MAX_UPLOAD_BYTES)
    #: Requests in one batch (OpenAI's limit is 50,000).
    max_batch_requests: int = Field(50_000, ge=1, le=50_000)
    #: Days finished jobs, batches and files are kept: the table's TTL and the bucket's expiry.
    retention_days: int = Field(30, ge=1, le=365)
    #: Bedrock tiers: a batch with at least `bedrockBatchMinRecords` requests for one Bedrock tier
    #: goes to Bedrock batch inference (about half the on-demand price, hours not minutes).
    bedrock_batch: bool = False
    #: Bedrock's minimum records per batch inference job (a service quota, 100 for most models);
    #: smaller batches run through the worker.
    bedrock_batch_min_records: int = Field(100, ge=1, le=50_000)
    #: Ticket when the oldest queued message is older than this, s (work is waiting).
    oldest_message_alarm_seconds: int = Field(1800, ge=60, le=86_400)
    #: Page when more than this share of finished jobs failed over 15 minutes.
    failure_ratio_alarm: float = Field(0.1, gt=0, le=1)


# ------------------------------------------------------------------------- slo
class HigherIsBetter(Section):
    """An objective where bigger is stricter (availability %, faithfulness)."""

    objective: float
    sla: float


class LowerIsBetter(Section):
    """An objective where smaller is stricter (latency s, error rate %)."""

    objective: float = Field(gt=0)
    sla: float = Field(gt=0)


class Percent(HigherIsBetter):
    objective: float = Field(gt=0, lt=100)
    sla: float = Field(gt=0, lt=100)


class Score(HigherIsBetter):
    objective: float = Field(gt=0, le=1)
    sla: float = Field(gt=0, le=1)


class PercentLower(LowerIsBetter):
    objective: float = Field(gt=0, lt=100)
    sla: float = Field(gt=0, lt=100)


class LatencySlo(Section):
    p50: LowerIsBetter
    p95: LowerIsBetter


class MillisecondsSlo(LowerIsBetter):
    objective: float = Field(gt=0, le=900_000)
    sla: float = Field(gt=0, le=900_000)


class SloConfig(Section):
    window_days: int = Field(30, ge=7, le=90)
    #: Share of requests that are not 5xx, percent.
    availability: Percent
    latency: LatencySlo
    #: P95 time to first token at the router (`TimeToFirstTokenMs`), milliseconds.
    ttft_p95_ms: MillisecondsSlo = MillisecondsSlo(objective=2000, sla=4000)
    #: Share of requests that are 5xx, percent.
    error_rate: PercentLower
    #: Faithfulness score (0–1) from the evaluation job.
    faithfulness: Score
    #: Below this many requests in a window, availability alarms do not page.
    min_requests_per_window: int = Field(20, ge=1)


# --------------------------------------------------------------------- quality
class QualityConfig(Section):
    """The faithfulness SLO measuring itself: the router samples answered requests, a scheduled
    evaluator has the judge tier's model check each answer against its context (README:
    "Quality SLO")."""

    #: Share of answered requests sampled, 0–1. 1 % of 10,000 requests a day is ~100 samples.
    #: 0 turns sampling off, and with it the sample bucket, the evaluator and the faithfulness
    #: alarms (nothing would feed them); prod must sample.
    sample_rate: float = Field(0.01, ge=0, le=1)
    #: Tenants whose requests are never sampled, whatever they send.
    opt_out_tenants: list[str] = []
    #: Mask e-mail addresses, phone and card numbers, keys and secrets before a sample is stored
    #: (prod keeps it on).
    redact: bool = True
    #: Tier whose model judges. None: `router.tiering.expensiveTier`, else the last tier listed
    #: (a judge should be at least as capable as the model it judges).
    judge_tier: Optional[str] = Field(None, pattern=TIER_NAME)
    #: Hours between evaluator runs (EventBridge Scheduler `rate(N hours)`); each run reads the
    #: samples of the hours since the previous one. Daily by default.
    every_hours: int = Field(24, ge=1, le=168)
    #: The faithfulness alarm's window, days: the mean of every sample judged in it. At most 7,
    #: the longest span a CloudWatch alarm evaluates.
    window_days: int = Field(7, ge=1, le=7)
    #: Judged samples a run needs before it publishes a score, and the window before its score
    #: counts; fewer opens the low-sample ticket.
    min_samples: int = Field(30, ge=1, le=10_000)
    #: Samples one run judges at most (a random subset of its window): bounds the judge's cost
    #: and the run's time (two judge calls per sample, eight at a time, inside 15 minutes).
    max_samples: int = Field(200, ge=1, le=1000)
    #: Days a sample stays in the bucket before it expires.
    retention_days: int = Field(30, ge=1, le=365)


# ---------------------------------------------------------------------- alarms
class Destination(Section):
    emails: list[str] = []
    #: Existing SNS topic to publish to instead of a new one.
    topic_arn: Optional[str] = Field(None, pattern=r"^arn:aws[a-z-]*:sns:")
    #: HTTPS integration URL (PagerDuty, Opsgenie): carries a key, secret-only.
    https_endpoint: Optional[Secret] = None

    @field_validator("emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", e)]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(bad)}")
        return v


class AlarmsConfig(Section):
    page: Destination = Destination()
    ticket: Destination = Destination()


# ------------------------------------------------------------------ exemptions
def _calendar_day(v: object) -> object:
    """YAML and the Pulumi CLI may hand a date over as a midnight timestamp."""
    if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T00:00:00(\.0+)?(Z|[+-]00:?00)?", v):
        return v[:10]
    return v


class ExemptionConfig(Section):
    """One resource excused from one policy rule, for a stated reason, until a date.

    `check` and the CrossGuard pack report an exempted violation as exempted (never
    hidden) and list every exemption; after `expires` the violation is mandatory again,
    whatever the rule's own level, so an exemption cannot quietly outlive its reason."""

    #: A rule of the policy pack (`llm-blueprint check` lists them).
    rule: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    #: The resource's name as the plan shows it (`llm-prod-cache`).
    resource: str = Field(min_length=1, max_length=256)
    #: The resource type, needed only when two resources of different types share the name.
    type: Optional[str] = Field(None, pattern=r"^[a-z0-9-]+:[A-Za-z0-9./-]+:[A-Za-z0-9]+$")
    #: Why the rule does not apply here, for the reviewer and the next on-call.
    reason: str = Field(min_length=10, max_length=500)
    #: Last day the exemption holds (YYYY-MM-DD, UTC).
    expires: Annotated[date, BeforeValidator(_calendar_day)]

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, v: str) -> str:
        import difflib

        from policies.registry import rules  # the pack's catalogue: pure, no Pulumi

        known = sorted(r.name for r in rules())
        if v not in known:
            close = difflib.get_close_matches(v, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"names no policy rule{hint}; rules: {', '.join(known)}")
        return v


# ----------------------------------------------------------------------- stack
REQUIRED_TAGS = ("owner", "cost-center")


def _check_tags(v: dict[str, str]) -> dict[str, str]:
    missing = [t for t in REQUIRED_TAGS if not v.get(t)]
    if missing:
        raise ValueError(f"required tags missing: {', '.join(missing)}")
    bad = [k for k, val in v.items() if len(k) > 128 or len(str(val)) > 256 or k.startswith("aws:")]
    if bad:
        raise ValueError(f"invalid tag keys (≤128 chars, no 'aws:' prefix; values ≤256 chars): {', '.join(bad)}")
    return v


Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]
Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")]


class StackConfig(Section):
    """Everything one environment needs. Keys map to `llm-blueprint:<key>`;
    `region` comes from `aws:region`."""

    environment: Environment
    region: Region
    tags: Tags
    network: NetworkConfig = NetworkConfig()
    serving: ServingConfig
    router: RouterConfig = RouterConfig()
    cache: CacheConfig = CacheConfig()
    jobs: JobsConfig = JobsConfig()
    slo: SloConfig
    quality: QualityConfig = QualityConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    #: Policy exemptions (see `ExemptionConfig`); none by default.
    exemptions: list[ExemptionConfig] = []

    # Convenience views used by several components.
    def tier(self, name: str) -> Tier:
        return next(t for t in self.serving.tiers if t.name == name)

    def tiers_on(self, backend: str) -> list[Tier]:
        return [t for t in self.serving.tiers if t.backend == backend]

    def judge_tier(self) -> Tier:
        """The tier that judges faithfulness (`quality.judgeTier`, defaulted)."""
        name = self.quality.judge_tier or self.router.tiering.expensive_tier or self.serving.tiers[-1].name
        return self.tier(name)

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"


#: Top-level config keys, in the order stack files list them.
SECTIONS = tuple(k for k in StackConfig.model_fields if k != "region")
