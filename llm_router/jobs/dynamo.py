"""The deployed store: one DynamoDB table (pk, sk; index `owner-created` for a tenant's listing).

Each `Store` operation is one request: conditional PutItem / UpdateItem (the condition always
includes that the row exists), TransactWriteItems for a line's outcome with its batch's count,
strongly consistent GetItem and Query.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Union

from .records import Key, Row
from .store import Cond, Conflict, Put, Update

#: The table's keys and its one index (the Jobs component declares the same table).
HASH_KEY, RANGE_KEY = ("pk", "S"), ("sk", "S")
OWNER_INDEX = "owner-created"
OWNER_KEYS = (("owner", "S"), ("created", "N"))
#: Epoch seconds after which DynamoDB's TTL deletes a row.
TTL_ATTRIBUTE = "expires_at"


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, (int, float)):
        return {"N": repr(v)}
    if isinstance(v, str):
        return {"S": v}
    if v is None:
        return {"NULL": True}
    raise TypeError(f"rows hold strings, numbers and booleans, not {type(v).__name__}")


def _plain(v: dict[str, Any]) -> Any:
    (kind, value), = v.items()
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if kind == "NULL":
        return None
    return value


def to_item(row: Row) -> dict[str, Any]:
    return {k: _value(v) for k, v in row.items() if v is not None}


def from_item(item: dict[str, Any]) -> Row:
    return {k: _plain(v) for k, v in item.items()}


class _Expr:
    """Placeholders for one request's expression names and values."""

    def __init__(self):
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, n: str) -> str:
        ref = f"#n{len(self.names)}"
        self.names[ref] = n
        return ref

    def value(self, v: Any) -> str:
        ref = f":v{len(self.values)}"
        self.values[ref] = _value(v)
        return ref

    def condition(self, when: tuple[Cond, ...], must_exist: bool = True) -> str:
        parts = ["attribute_exists(pk)"] if must_exist else []
        for c in when:
            n = self.name(c.field)
            if c.op == "absent":
                parts.append(f"attribute_not_exists({n})")
            elif c.op == "eq":
                parts.append(f"{n} = {self.value(c.value)}")
            elif c.op == "in":
                parts.append(f"{n} IN ({', '.join(self.value(v) for v in c.value)})")
            else:
                parts.append(f"{n} < {self.value(c.value)}")
        return " AND ".join(parts)

    def update(self, u: Update) -> str:
        sets = [f"{self.name(k)} = {self.value(v)}" for k, v in u.set.items() if v is not None]
        removes = [self.name(k) for k, v in u.set.items() if v is None] + [self.name(k) for k in u.remove]
        adds = [f"{self.name(k)} {self.value(n)}" for k, n in u.add.items()]
        out = []
        if sets:
            out.append("SET " + ", ".join(sets))
        if adds:
            out.append("ADD " + ", ".join(adds))
        if removes:
            out.append("REMOVE " + ", ".join(removes))
        return " ".join(out)

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.names:
            out["ExpressionAttributeNames"] = self.names
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _key(k: Key) -> dict[str, Any]:
    return {"pk": {"S": k[0]}, "sk": {"S": k[1]}}


class DynamoStore:
    def __init__(self, table: str, client=None, region: Optional[str] = None):
        if client is None:
            import boto3

            client = boto3.client("dynamodb", region_name=region)
        self.table, self.client = table, client

    def _failed(self, e: Exception) -> bool:
        code = getattr(e, "response", {}).get("Error", {}).get("Code")
        return code in ("ConditionalCheckFailedException", "TransactionCanceledException")

    def put_new(self, row: Row) -> None:
        try:
            self.client.put_item(TableName=self.table, Item=to_item(row), ConditionExpression="attribute_not_exists(pk)")
        except Exception as e:
            if self._failed(e):
                raise Conflict(f"{row['pk']}/{row['sk']} exists") from None
            raise

    def get(self, key: Key) -> Optional[Row]:
        item = self.client.get_item(TableName=self.table, Key=_key(key), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def _update_request(self, u: Update) -> dict[str, Any]:
        x = _Expr()
        update, condition = x.update(u), x.condition(u.when)
        return {"TableName": self.table, "Key": _key(u.key), "UpdateExpression": update,
                "ConditionExpression": condition, **x.kwargs()}

    def update(self, u: Update) -> Row:
        try:
            resp = self.client.update_item(**self._update_request(u), ReturnValues="ALL_NEW")
        except Exception as e:
            if self._failed(e):
                raise Conflict(f"{u.key}: condition failed") from None
            raise
        return from_item(resp["Attributes"])

    def transact(self, ops: list[Union[Put, Update]]) -> None:
        items = []
        for op in ops:
            if isinstance(op, Put):
                items.append({"Put": {"TableName": self.table, "Item": to_item(op.row),
                                      "ConditionExpression": "attribute_not_exists(pk)"}})
            else:
                items.append({"Update": self._update_request(op)})
        try:
            self.client.transact_write_items(TransactItems=items)
        except Exception as e:
            if self._failed(e):
                raise Conflict("transaction cancelled") from None
            raise

    def _pages(self, operation: str, **kwargs: Any) -> Iterator[Row]:
        for page in self.client.get_paginator(operation).paginate(TableName=self.table, **kwargs):
            for item in page.get("Items", []):
                yield from_item(item)

    def lines(self, pk: str) -> Iterator[Row]:
        yield from self._pages("query", KeyConditionExpression="pk = :p AND begins_with(sk, :l)", ConsistentRead=True,
                               ExpressionAttributeValues={":p": {"S": pk}, ":l": {"S": "line#"}})

    def owned(self, owner: str, limit: int, before: Optional[int] = None) -> list[Row]:
        values = {":o": {"S": owner}}
        condition = "#o = :o"
        if before is not None:
            condition += " AND created < :b"
            values[":b"] = {"N": str(before)}
        resp = self.client.query(TableName=self.table, IndexName=OWNER_INDEX, KeyConditionExpression=condition,
                                 ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues=values,
                                 ScanIndexForward=False, Limit=limit)
        return [from_item(i) for i in resp.get("Items", [])]

    def scan(self, kind: str, limit: int) -> list[Row]:
        rows = list(self._pages("scan", FilterExpression="kind = :k AND attribute_exists(#o)",
                                ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":k": {"S": kind}}))
        return sorted(rows, key=lambda r: r["created"], reverse=True)[:limit]

    def find(self, kind: str, id_: str) -> Optional[Row]:
        for row in self._pages("scan", FilterExpression="kind = :k AND id = :i AND attribute_exists(#o)",
                               ExpressionAttributeNames={"#o": "owner"},
                               ExpressionAttributeValues={":k": {"S": kind}, ":i": {"S": id_}}):
            return row
        return None
