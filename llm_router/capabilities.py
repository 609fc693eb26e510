"""What each backend kind and model family can do, what a request needs, and the 400 it gets when
its tier lacks something — so a feature is never silently dropped on the way to a model.

Bedrock facts come from the Converse API's "supported models and model features" table, the
ToolChoice reference (a named tool only on Anthropic Claude and Amazon Nova) and the structured
output guide (native JSON schema on Claude Sonnet 4.5, Haiku 4.5, Opus 4.5 and 4.6). Where a model
is not in the table, the conservative set applies: a request that needs more gets a clear 400
instead of a model that ignores part of it. `python -m llm_router.capabilities` prints the table
the README shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .errors import ApiError

TOOLS, TOOL_CHOICE, PARALLEL_TOOL_CALLS = "tools", "tool_choice", "parallel_tool_calls"
JSON_OBJECT, JSON_SCHEMA = "json_object", "json_schema"
IMAGE_INPUT, FILE_INPUT, AUDIO_INPUT = "image_input", "file_input", "audio_input"
REASONING, N, LOGPROBS, STOP, STREAMING = "reasoning", "n", "logprobs", "stop", "streaming"
PENALTIES, LOGIT_BIAS = "penalties", "logit_bias"
# How a Bedrock model serves the above; a request never asks for these by name.
NATIVE_JSON_SCHEMA, STREAM_TOOLS, SYSTEM_PROMPT = "native_json_schema", "stream_tools", "system_prompt"
THINKING_BUDGET = "thinking_budget"  # reasoning_effort sets Claude's extended-thinking budget
#: Claude's smallest extended-thinking budget; the answer needs as much again beside it.
MIN_THINKING = 1024
#: Marks a thinking model whose tier's maxTokens leaves no room to think (never requested; says why).
NO_ROOM_TO_THINK = "no_room_to_think"

#: Features a request can need, in the order errors and the README name them.
FEATURES: dict[str, str] = {
    TOOLS: "tool calling", TOOL_CHOICE: "forced tool choice (required / a named function)",
    PARALLEL_TOOL_CALLS: "parallel tool calls", JSON_OBJECT: "JSON mode", JSON_SCHEMA: "JSON-schema output",
    IMAGE_INPUT: "image input", FILE_INPUT: "file input", AUDIO_INPUT: "audio input",
    REASONING: "reasoning", N: "n > 1", LOGPROBS: "logprobs", STOP: "stop sequences", STREAMING: "streaming",
    PENALTIES: "presence/frequency penalties", LOGIT_BIAS: "logit_bias",
}
#: Short column titles for the README table.
COLUMNS: dict[str, str] = {
    TOOLS: "tools", TOOL_CHOICE: "tool choice", PARALLEL_TOOL_CALLS: "parallel calls", JSON_OBJECT: "JSON mode",
    JSON_SCHEMA: "JSON schema", IMAGE_INPUT: "images", FILE_INPUT: "files", AUDIO_INPUT: "audio",
    REASONING: "reasoning", N: "n > 1", LOGPROBS: "logprobs", STOP: "stop", STREAMING: "stream",
    PENALTIES: "penalties", LOGIT_BIAS: "logit_bias",
}


@dataclass(frozen=True)
class Family:
    backend: str
    name: str
    #: Searched in the normalised model id (lower case, no region prefix or ARN).
    pattern: str
    features: frozenset[str]
    note: str = ""


def _f(*names: str) -> frozenset[str]:
    return frozenset(names)


_TEXT = _f(STOP, STREAMING)
_CLAUDE = _f(TOOLS, TOOL_CHOICE, PARALLEL_TOOL_CALLS, JSON_OBJECT, JSON_SCHEMA, IMAGE_INPUT, STOP, STREAMING,
             STREAM_TOOLS, SYSTEM_PROMPT)
_NOVA = _f(TOOLS, TOOL_CHOICE, JSON_OBJECT, JSON_SCHEMA, STOP, STREAMING, STREAM_TOOLS, SYSTEM_PROMPT)
_OPEN_TOOLS = _f(TOOLS, STOP, STREAMING, SYSTEM_PROMPT)  # tools with `auto` only; no streamed tool use
_GPT = _f(TOOLS, TOOL_CHOICE, PARALLEL_TOOL_CALLS, JSON_OBJECT, JSON_SCHEMA, IMAGE_INPUT, FILE_INPUT, N, LOGPROBS,
          STOP, STREAMING, PENALTIES, LOGIT_BIAS)
_O_SERIES = _f(TOOLS, TOOL_CHOICE, PARALLEL_TOOL_CALLS, JSON_OBJECT, JSON_SCHEMA, IMAGE_INPUT, FILE_INPUT, REASONING,
               STREAMING)

BEDROCK_FAMILIES: tuple[Family, ...] = (
    Family("bedrock", "Claude Sonnet/Haiku/Opus 4.5+", r"anthropic\.claude-(sonnet|haiku|opus)-4-[5-9]",
           _CLAUDE | {REASONING, THINKING_BUDGET, NATIVE_JSON_SCHEMA},
           "JSON schema natively (outputConfig); thinking budget"),
    Family("bedrock", "Claude Sonnet 4, Opus 4 / 4.1", r"anthropic\.claude-(sonnet|opus)-4-(1-)?\d{8}",
           _CLAUDE | {REASONING, THINKING_BUDGET}, "JSON through a forced tool; thinking budget"),
    Family("bedrock", "Claude 3.7 Sonnet", r"anthropic\.claude-3-7-sonnet", _CLAUDE | {REASONING, THINKING_BUDGET},
           "JSON through a forced tool; thinking budget"),
    Family("bedrock", "Claude 3.5 Haiku", r"anthropic\.claude-3-5-haiku", _CLAUDE - {IMAGE_INPUT},
           "JSON through a forced tool"),
    Family("bedrock", "Claude 3 / 3.5 Sonnet", r"anthropic\.claude-3-(5-sonnet|haiku|sonnet|opus)", _CLAUDE,
           "JSON through a forced tool"),
    Family("bedrock", "Nova Micro", r"amazon\.nova-micro", _NOVA, "JSON through a forced tool"),
    Family("bedrock", "Nova Lite / Pro / Premier", r"amazon\.nova-(lite|pro|premier)", _NOVA | {IMAGE_INPUT},
           "JSON through a forced tool"),
    Family("bedrock", "Llama 3.1 / 3.3", r"meta\.llama3-(1|3)-", _OPEN_TOOLS, "streamed tool calls are buffered"),
    Family("bedrock", "Llama 3.2 11B / 90B", r"meta\.llama3-2-(11|90)b", _OPEN_TOOLS | {IMAGE_INPUT},
           "streamed tool calls are buffered"),
    Family("bedrock", "Llama 3 / 3.2 1B / 3B", r"meta\.llama3-(8b|70b|2-1b|2-3b)", _TEXT | {SYSTEM_PROMPT}),
    Family("bedrock", "Llama 4 Scout / Maverick", r"meta\.llama4-", _OPEN_TOOLS | {IMAGE_INPUT},
           "streamed tool calls are buffered"),
    Family("bedrock", "Mistral Large / Small", r"mistral\.mistral-(large|small)", _OPEN_TOOLS,
           "streamed tool calls are buffered"),
    Family("bedrock", "Pixtral Large", r"mistral\.pixtral-large", _OPEN_TOOLS | {IMAGE_INPUT},
           "streamed tool calls are buffered"),
    Family("bedrock", "Mistral 7B / Mixtral", r"mistral\.(mistral-7b|mixtral)", _TEXT,
           "no system prompt: system text leads the first user turn"),
    Family("bedrock", "Cohere Command R / R+", r"cohere\.command-r", _OPEN_TOOLS, "streamed tool calls are buffered"),
    Family("bedrock", "DeepSeek-R1", r"deepseek\.r1", _TEXT | {REASONING, SYSTEM_PROMPT},
           "always reasons; reasoning_effort does not change it"),
)
BEDROCK_DEFAULT = Family("bedrock", "other Bedrock models", "", _TEXT,
                         "text only until `family_hint` names the family")

OPENAI_FAMILIES: tuple[Family, ...] = (
    Family("openai", "GPT-5 chat", r"^gpt-5[\w.]*-chat", _GPT),
    Family("openai", "GPT-5 (mini, nano, 5.x)", r"^gpt-5", _O_SERIES, "no stop, logprobs or penalties"),
    Family("openai", "o1-mini / o1-preview", r"^o1-(mini|preview)", _f(REASONING, STREAMING)),
    Family("openai", "o3-mini", r"^o3-mini", _O_SERIES - {IMAGE_INPUT, FILE_INPUT}),
    Family("openai", "o1 / o3 / o4-mini", r"^(o1|o3|o4-mini)", _O_SERIES, "no stop, logprobs or penalties"),
    Family("openai", "GPT-4o audio", r"^gpt-4o(-mini)?-audio",
           _f(TOOLS, TOOL_CHOICE, PARALLEL_TOOL_CALLS, AUDIO_INPUT, STOP, STREAMING, PENALTIES)),
    Family("openai", "GPT-4o / GPT-4.1", r"^(chatgpt-)?gpt-4(o|\.1)", _GPT),
)
OPENAI_DEFAULT = Family("openai", "other OpenAI models", "", _GPT,
                        "assumed GPT-4o-like; the upstream's own 400 applies")

_REGION_PREFIX = re.compile(r"^(us|eu|apac|jp|au|ca|us-gov|global)\.")


def bedrock_model_id(model: str) -> str:
    """The foundation-model part of a model id, cross-region profile id or ARN, lower case."""
    m = model.strip().lower().rsplit("/", 1)[-1]
    return _REGION_PREFIX.sub("", m)


def family(backend: str, model: str) -> Family:
    if backend == "bedrock":
        mid = bedrock_model_id(model)
        return next((f for f in BEDROCK_FAMILIES if re.search(f.pattern, mid)), BEDROCK_DEFAULT)
    if backend in ("openai", "azure-openai"):
        mid = model.strip().lower().rsplit("/", 1)[-1]
        return next((f for f in OPENAI_FAMILIES if re.search(f.pattern, mid)), OPENAI_DEFAULT)
    raise ValueError(f"no model families for backend {backend!r}")


def _family_named(name: str) -> Family:
    for f in BEDROCK_FAMILIES:
        if f.name == name or re.search(f.pattern, bedrock_model_id(name)):
            return f
    raise ValueError(f"unknown Bedrock model family {name!r}; one of: {', '.join(f.name for f in BEDROCK_FAMILIES)}")


def of(backend: str, model: str, *, family_hint: Optional[str] = None, tool_call_parser: Optional[str] = None,
       reasoning_parser: Optional[str] = None, image_input: bool = False, engine: str = "vllm",
       api_version: Optional[str] = None) -> frozenset[str]:
    """What a tier can do.

    `bedrock`: by model family; `family_hint` names it (a family name or a model id) when the
    model is an opaque ARN (application inference profile, provisioned throughput).
    `openai` / `azure-openai`: by model family; Azure drops reasoning before api-version
    2024-12-01-preview and JSON schema before 2024-08-01-preview.
    `vllm-eks`: by deployment — tools only when vLLM runs with a tool-call parser
    (`--enable-auto-tool-choice --tool-call-parser …`), reasoning only with a reasoning parser,
    images only for a multimodal model; TGI gets the conservative text set.
    """
    if backend == "bedrock":
        return (_family_named(family_hint) if family_hint else family(backend, model)).features
    if backend in ("openai", "azure-openai"):
        caps = family(backend, model).features
        if backend == "azure-openai" and api_version:
            if api_version[:10] < "2024-12-01":
                caps -= {REASONING}
            if api_version[:10] < "2024-08-01":
                caps -= {JSON_SCHEMA}
        return caps
    if backend == "vllm-eks":
        if engine != "vllm":
            return _f(STOP, STREAMING, LOGPROBS)
        caps = {JSON_OBJECT, JSON_SCHEMA, N, LOGPROBS, STOP, STREAMING, PENALTIES, LOGIT_BIAS}
        if tool_call_parser:
            caps |= {TOOLS, TOOL_CHOICE, PARALLEL_TOOL_CALLS}
        if reasoning_parser:
            caps.add(REASONING)
        if image_input:
            caps.add(IMAGE_INPUT)
        return frozenset(caps)
    raise ValueError(f"unknown backend kind {backend!r}")


def for_tier(tier: Any) -> frozenset[str]:
    """What a configured tier (`settings.TierSettings`) can do, from its backend, model and
    deployment settings; the router computes this once per tier at start-up."""
    server = tier.server
    if tier.backend == "vllm-eks" and server is not None:
        return of(tier.backend, tier.model, tool_call_parser=server.tool_call_parser,
                  reasoning_parser=server.reasoning_parser, image_input=server.image_input, engine=server.engine)
    caps = of(tier.backend, tier.model, family_hint=tier.family_hint, api_version=tier.api_version)
    if THINKING_BUDGET in caps and tier.max_tokens < 2 * MIN_THINKING:
        # Every reasoning request would be refused for its budget: don't offer (or route to) it.
        caps = (caps - {REASONING, THINKING_BUDGET}) | {NO_ROOM_TO_THINK}
    return caps


def context_length(tier: Any) -> int:
    """The most tokens one exchange with the tier may hold: its prompt and completion budgets,
    within the model server's window where the stack runs it."""
    budget = tier.max_prompt_tokens + tier.max_tokens
    return min(budget, tier.server.max_model_len) if tier.server is not None else budget


def describe(tier: Any, caps: frozenset[str]) -> dict[str, Any]:
    """The fields `GET /v1/models` adds beside OpenAI's for a tier: every feature with whether the
    tier has it (what a request may ask for), and its token limits."""
    return {"capabilities": {f: f in caps for f in FEATURES}, "context_length": context_length(tier),
            "max_prompt_tokens": tier.max_prompt_tokens, "max_completion_tokens": tier.max_tokens}


_PART_FEATURES = {"image_url": IMAGE_INPUT, "file": FILE_INPUT, "input_audio": AUDIO_INPUT}


def needs(body: dict[str, Any]) -> dict[str, str]:
    """Each feature the request needs, with the first parameter that needs it."""
    out: dict[str, str] = {}
    choice = body.get("tool_choice")
    if body.get("tools") and choice != "none":
        out[TOOLS] = "tools"
        if choice == "required" or isinstance(choice, dict):
            out[TOOL_CHOICE] = "tool_choice"
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in (JSON_OBJECT, JSON_SCHEMA):
        out[kind] = "response_format"
    for i, msg in enumerate(body.get("messages") or []):
        parts = msg.get("content") if isinstance(msg, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            feature = _PART_FEATURES.get(part.get("type")) if isinstance(part, dict) else None
            if feature:
                out.setdefault(feature, f"messages[{i}].content[{j}]")
    if body.get("reasoning_effort") not in (None, "none"):
        out[REASONING] = "reasoning_effort"
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        out[N] = "n"
    if body.get("logprobs") or body.get("top_logprobs"):
        out[LOGPROBS] = "logprobs" if body.get("logprobs") else "top_logprobs"
    if body.get("stop"):
        out[STOP] = "stop"
    if body.get("stream"):
        out[STREAMING] = "stream"
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            out.setdefault(PENALTIES, name)
    if body.get("logit_bias"):
        out[LOGIT_BIAS] = "logit_bias"
    return dict(sorted(out.items(), key=lambda kv: list(FEATURES).index(kv[0])))


def required(body: dict[str, Any]) -> set[str]:
    return set(needs(body))


def tiers_with(features: Iterable[str], all_tiers: dict[str, frozenset[str]]) -> list[str]:
    """Tiers that can serve a request needing `features` (for automatic tiering and error messages)."""
    wanted = set(features)
    return sorted(name for name, caps in all_tiers.items() if wanted <= caps)


def check(tier_name: str, tier_caps: frozenset[str], body: dict[str, Any],
          all_tiers: dict[str, frozenset[str]]) -> None:
    """Raise a 400 naming the tier, what it lacks and the tiers that could serve the request."""
    wanted = needs(body)
    missing = [f for f in wanted if f not in tier_caps]
    if not missing:
        return
    lacks = " or ".join(f"{FEATURES[f]} ({wanted[f]})" for f in missing)
    if REASONING in missing and NO_ROOM_TO_THINK in tier_caps:
        lacks += (f" (its model can think, but its maxTokens is below {2 * MIN_THINKING}: the smallest thinking "
                  f"budget, {MIN_THINKING}, and an answer must fit)")
    able = [t for t in tiers_with(wanted, all_tiers) if t != tier_name]
    if able:
        where = f"tiers that can serve it: {', '.join(able)}"
    else:
        having = [t for t in tiers_with([missing[0]], all_tiers) if t != tier_name]
        where = (f"no tier here has everything it needs; tiers with {FEATURES[missing[0]]}: {', '.join(having)}"
                 if having else f"no tier here has {FEATURES[missing[0]]}")
    raise ApiError(400, f"tier '{tier_name}' cannot serve this request: it has no {lacks}; {where}",
                   "invalid_request_error", "unsupported_feature", wanted[missing[0]])


def table_rows() -> list[tuple[str, str, frozenset[str], str]]:
    """(backend, family, features, note) for every row the README shows."""
    rows = [(f.backend, f.name, f.features, f.note) for f in (*BEDROCK_FAMILIES, BEDROCK_DEFAULT)]
    rows += [("openai, azure-openai", f.name, f.features, f.note) for f in (*OPENAI_FAMILIES, OPENAI_DEFAULT)]
    rows += [
        ("vllm-eks", "vLLM, no parsers", of("vllm-eks", ""), ""),
        ("vllm-eks", "vLLM + tool-call parser", of("vllm-eks", "", tool_call_parser="x"),
         "`--enable-auto-tool-choice --tool-call-parser …`"),
        ("vllm-eks", "vLLM + reasoning parser", of("vllm-eks", "", reasoning_parser="x"), "`--reasoning-parser …`"),
        ("vllm-eks", "vLLM, multimodal model", of("vllm-eks", "", image_input=True), ""),
        ("vllm-eks", "TGI", of("vllm-eks", "", engine="tgi"), ""),
    ]
    return rows


def markdown_table() -> str:
    head = ["backend", "family", *COLUMNS.values(), "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for backend, name, caps, note in table_rows():
        marks = ["✓" if f in caps else "–" for f in COLUMNS]
        lines.append("| " + " | ".join([backend, name, *marks, note]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
