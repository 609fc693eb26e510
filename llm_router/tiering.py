"""Which tier answers: the model alias the client named, or rules for `auto` — never a tier that
lacks what the request needs (`capabilities.needs`)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from . import capabilities
from .settings import RouterSettings
from .errors import ApiError, bad_request
from .tokens import content_text, count_text


def choose_tier(settings: RouterSettings, body: dict[str, Any],
                caps: Optional[Mapping[str, frozenset[str]]] = None) -> tuple[str, str]:
    """(tier, reason). Unknown model names are a 404, as with the OpenAI API; a tier that cannot
    serve the request (by `caps`, each tier's capabilities) is a 400 naming the tiers that can."""
    requested = body.get("model")
    name = requested or settings.router.default_tier
    if name in settings.tier_names:
        chosen = name, "requested" if requested else "default"
    elif name in {e.name for e in settings.embeddings}:
        raise bad_request(f"'{name}' is an embeddings model (POST /v1/embeddings); chat models here: "
                          f"{', '.join(['auto', *settings.tier_names])}", "model", "not_a_chat_model")
    elif name != "auto":
        known = ", ".join(["auto", *settings.tier_names])
        raise ApiError(404, f"The model '{name}' does not exist; available: {known}", "invalid_request_error",
                       "model_not_found", "model")
    else:
        chosen = auto_tier(settings, body["messages"], caps, capabilities.required(body))
    if caps is not None:
        capabilities.check(chosen[0], caps[chosen[0]], body, dict(caps))
    return chosen


def auto_tier(settings: RouterSettings, messages: list[dict[str, Any]],
              caps: Optional[Mapping[str, frozenset[str]]] = None, needs: frozenset[str] | set[str] = frozenset(),
              ) -> tuple[str, str]:
    """The rules' tier; when it lacks something the request needs, the other rule tier, then any
    tier in config order that has it all (reason `needs:<feature>`). When none has, the rules'
    tier stays, and the capability check refuses the request naming what is missing."""
    tier, reason = _by_rules(settings, messages)
    if caps is None or set(needs) <= caps[tier]:
        return tier, reason
    t, names = settings.router.tiering, settings.tier_names
    order = [n for n in (t.cheap_tier, t.expensive_tier) if n in names] + list(names)
    able = next((n for n in order if set(needs) <= caps[n]), None)
    if able is None:
        return tier, reason
    missing = next(f for f in capabilities.FEATURES if f in needs and f not in caps[tier])
    return able, f"needs:{missing}"


def _by_rules(settings: RouterSettings, messages: list[dict[str, Any]]) -> tuple[str, str]:
    t, names = settings.router.tiering, settings.tier_names
    cheap = t.cheap_tier if t.cheap_tier in names else names[0]
    expensive = t.expensive_tier if t.expensive_tier in names else names[-1]
    users = [m for m in messages if m.get("role") == "user"]
    last = content_text(users[-1]) if users else ""
    lowered = last.lower()
    if t.code_blocks and "```" in last:
        return expensive, "code"
    for keyword in t.keywords:
        if keyword in lowered:
            return expensive, f"keyword:{keyword}"
    if count_text(last) > t.long_prompt_tokens:
        return expensive, "long-prompt"
    turns = len([m for m in messages if m.get("role") in ("user", "assistant")])
    if turns > t.long_conversation_turns:
        return expensive, "long-conversation"
    return cheap, "simple"
