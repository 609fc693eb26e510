"""The FT.* subset both RediSearch and ElastiCache for Valkey (valkey-search) accept.

`violations(args)` lists what in one command falls outside it; the tests run
every command the cache sends through this.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

ALLOWED = {"FT.CREATE", "FT.SEARCH", "FT.INFO", "FT.DROPINDEX", "FT._LIST"}
FIELD_TYPES = {"TAG", "NUMERIC", "VECTOR"}
TAG_VALUE = re.compile(r"^[a-z0-9_]+$")


def _s(x: Any) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def violations(args: Sequence[Any]) -> list[str]:
    cmd = _s(args[0]).upper()
    if not cmd.startswith("FT."):
        return []
    if cmd not in ALLOWED:
        return [f"{cmd} is not in the common subset"]
    words = [_s(a) for a in args]
    upper = [w.upper() for w in words]
    problems = []
    if cmd == "FT.CREATE":
        if "{" in words[1] or "}" in words[1]:
            problems.append("hashtag in index name")
        schema = upper[upper.index("SCHEMA") + 1:]
        i = 0
        while i < len(schema):
            kind = schema[i + 1]
            if kind not in FIELD_TYPES:
                problems.append(f"field type {kind} (only TAG, NUMERIC, VECTOR)")
                i += 2
                continue
            if kind == "VECTOR":
                algo, nargs = schema[i + 2], int(schema[i + 3])
                attrs = dict(zip(schema[i + 4:i + 4 + nargs:2], schema[i + 5:i + 4 + nargs:2]))
                if algo not in ("HNSW", "FLAT"):
                    problems.append(f"vector algorithm {algo}")
                if attrs.get("TYPE") != "FLOAT32":
                    problems.append(f"vector type {attrs.get('TYPE')}")
                if attrs.get("DISTANCE_METRIC") not in ("COSINE", "IP", "L2"):
                    problems.append(f"distance metric {attrs.get('DISTANCE_METRIC')}")
                i += 4 + nargs
            else:
                i += 2
    if cmd == "FT.SEARCH":
        query = words[2]
        if "=>[KNN" not in query.upper().replace(" ", ""):
            problems.append("query without a KNN clause")
        if "VECTOR_RANGE" in query.upper():
            problems.append("VECTOR_RANGE")
        for word in ("SORTBY", "WITHSCORES"):
            if word in upper[3:]:
                problems.append(word)
        if "DIALECT" not in upper or upper[upper.index("DIALECT") + 1] != "2":
            problems.append("missing DIALECT 2")
        if "PARAMS" in upper:
            p = upper.index("PARAMS")
            names = words[p + 2:p + 2 + int(words[p + 1]):2]
            for name in names:
                if f"${name}" not in query:
                    problems.append(f"PARAMS entry {name} not used in the query")
        for values in re.findall(r"\{([^}]*)\}", query):
            for v in values.split("|"):
                if not TAG_VALUE.match(v.strip()):
                    problems.append(f"tag value {v!r} outside [a-z0-9_]")
    return problems
