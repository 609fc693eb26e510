"""Which tier answers: the model alias the client named, or rules for `auto`."""

from __future__ import annotations

from typing import Any

from .settings import RouterSettings
from .errors import ApiError, bad_request
from .tokens import content_text, count_text


def choose_tier(settings: RouterSettings, requested: str | None, messages: list[dict[str, Any]]) -> tuple[str, str]:
    """(tier, reason). Unknown model names are a 404, as with the OpenAI API."""
    name = requested or settings.router.default_tier
    if name in settings.tier_names:
        return name, "requested" if requested else "default"
    if name in {e.name for e in settings.embeddings}:
        raise bad_request(f"'{name}' is an embeddings model (POST /v1/embeddings); chat models here: "
                          f"{', '.join(['auto', *settings.tier_names])}", "model", "not_a_chat_model")
    if name != "auto":
        known = ", ".join(["auto", *settings.tier_names])
        raise ApiError(404, f"The model '{name}' does not exist; available: {known}", "invalid_request_error",
                       "model_not_found", "model")
    return auto_tier(settings, messages)


def auto_tier(settings: RouterSettings, messages: list[dict[str, Any]]) -> tuple[str, str]:
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
