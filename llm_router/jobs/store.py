"""Where rows live: conditional writes, nothing else.

Exactly-once comes from here: every change of state is a write that holds only if the row is
still in the state the writer saw (`when`), so of two workers handed the same message one wins
and the other learns it lost. Two stores implement the same operations: `MemoryStore` (under
`serve`, in-process) and `dynamo.DynamoStore` (deployed); one contract test runs against both.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Optional, Protocol, Union

from .records import Key, Row


@dataclass(frozen=True)
class Cond:
    """One clause of a condition; a condition holds when all its clauses do."""

    field: str
    op: Literal["eq", "in", "lt", "absent"]
    value: Any = None


def eq(name: str, value: Any) -> Cond:
    return Cond(name, "eq", value)


def one_of(name: str, *values: Any) -> Cond:
    return Cond(name, "in", tuple(values))


def below(name: str, value: float) -> Cond:
    return Cond(name, "lt", value)


def absent(name: str) -> Cond:
    return Cond(name, "absent")


@dataclass(frozen=True)
class Update:
    """Change an existing row, if `when` holds: set fields, add to numbers, remove fields."""

    key: Key
    set: dict[str, Any] = field(default_factory=dict)
    add: dict[str, int] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    when: tuple[Cond, ...] = ()


@dataclass(frozen=True)
class Put:
    """Create a row that must not exist yet."""

    row: Row


class Conflict(Exception):
    """A condition did not hold: someone else changed the row first (or it does not exist)."""


class Store(Protocol):
    def put_new(self, row: Row) -> None:
        """Create; Conflict when the key exists."""

    def get(self, key: Key) -> Optional[Row]:
        """A strongly consistent read."""

    def update(self, u: Update) -> Row:
        """Apply `u` to an existing row; the row after it. Conflict when it is missing or `when` fails."""

    def transact(self, ops: list[Union[Put, Update]]) -> None:
        """All of `ops` or none; Conflict when any condition fails."""

    def lines(self, pk: str) -> Iterator[Row]:
        """A batch's line rows, in line order."""

    def owned(self, owner: str, limit: int, before: Optional[int] = None) -> list[Row]:
        """An owner's (`tenant#kind`) rows, newest first, created before `before` (ms)."""

    def scan(self, kind: str, limit: int) -> list[Row]:
        """Rows of one kind across tenants, newest first (operators only)."""

    def find(self, kind: str, id_: str) -> Optional[Row]:
        """The row with this id, whatever its tenant (operators only)."""


def holds(row: Optional[Row], when: tuple[Cond, ...]) -> bool:
    if row is None:
        return False
    for c in when:
        value = row.get(c.field)
        if c.op == "absent":
            ok = value is None
        elif c.op == "eq":
            ok = value == c.value
        elif c.op == "in":
            ok = value in c.value
        else:
            ok = value is not None and value < c.value
        if not ok:
            return False
    return True


def applied(row: Row, u: Update) -> Row:
    """`row` after `u` (setting a field to None removes it, as in DynamoDB)."""
    out = {**row, **{k: v for k, v in u.set.items() if v is not None}}
    for name in [k for k, v in u.set.items() if v is None]:
        out.pop(name, None)
    for name, n in u.add.items():
        out[name] = (out.get(name) or 0) + n
    for name in u.remove:
        out.pop(name, None)
    return out


class MemoryStore:
    """Rows in a dict under one lock: `serve`'s store, with DynamoDB's conditional semantics."""

    def __init__(self):
        self._rows: dict[Key, Row] = {}
        self._lock = threading.Lock()

    def put_new(self, row: Row) -> None:
        with self._lock:
            self._put(row)

    def _put(self, row: Row) -> None:
        k = (row["pk"], row["sk"])
        if k in self._rows:
            raise Conflict(f"{k} exists")
        self._rows[k] = copy.deepcopy(row)

    def get(self, key: Key) -> Optional[Row]:
        with self._lock:
            row = self._rows.get(key)
            return copy.deepcopy(row) if row is not None else None

    def update(self, u: Update) -> Row:
        with self._lock:
            return copy.deepcopy(self._update(u))

    def _update(self, u: Update) -> Row:
        row = self._rows.get(u.key)
        if not holds(row, u.when):
            raise Conflict(f"{u.key}: condition failed")
        self._rows[u.key] = applied(row, u)
        return self._rows[u.key]

    def transact(self, ops: list[Union[Put, Update]]) -> None:
        with self._lock:
            for op in ops:
                if isinstance(op, Put):
                    if (op.row["pk"], op.row["sk"]) in self._rows:
                        raise Conflict("transaction cancelled: row exists")
                elif not holds(self._rows.get(op.key), op.when):
                    raise Conflict("transaction cancelled: condition failed")
            for op in ops:
                self._put(op.row) if isinstance(op, Put) else self._update(op)

    def lines(self, pk: str) -> Iterator[Row]:
        with self._lock:
            rows = sorted((k[1], copy.deepcopy(r)) for k, r in self._rows.items()
                          if k[0] == pk and k[1].startswith("line#"))
        for _, row in rows:
            yield row

    def owned(self, owner: str, limit: int, before: Optional[int] = None) -> list[Row]:
        with self._lock:
            rows = [r for r in self._rows.values() if r.get("owner") == owner
                    and (before is None or r["created"] < before)]
        return copy.deepcopy(sorted(rows, key=lambda r: r["created"], reverse=True)[:limit])

    def scan(self, kind: str, limit: int) -> list[Row]:
        with self._lock:
            rows = [r for r in self._rows.values() if r.get("kind") == kind and "owner" in r]
        return copy.deepcopy(sorted(rows, key=lambda r: r["created"], reverse=True)[:limit])

    def find(self, kind: str, id_: str) -> Optional[Row]:
        with self._lock:
            found = [r for r in self._rows.values() if r.get("kind") == kind and r.get("id") == id_ and "owner" in r]
        return copy.deepcopy(found[0]) if found else None
