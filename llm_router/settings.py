"""Router settings, as the `Router` component hands them over."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    return json.loads(os.environ.get("LLM_ROUTER_SETTINGS", "{}"))
