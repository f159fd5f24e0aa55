"""The task table in moto, and what a campaign needs that moto does not give:

- every write the table applies is reported (`on_write(task_id, item)`), including a write whose
  response is then lost or whose caller then dies, so the invariants see each state change once;
- the reconciler's queries on the sparse check index are answered from an index kept from those
  writes. moto answers a GSI query by sorting the whole table (about 0.1 s per query at 5,000
  items, and the reconciler makes 16 a minute), which would make a long campaign take hours;
- replication lag, which moto does not have: index entries appear a moment after the write
  (a GSI is eventually consistent), and a read without `ConsistentRead` may return the item as
  it was that moment ago (or not yet at all);
- reads by key straight from moto's stored items (its request and response layers cost ~5 ms a
  read). Any request shape these paths do not know goes to moto.

Every request reaches moto through `respond`, called by the campaign's transport (moto's own
hook is taken off the functions' clients, so nothing is applied twice).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.models import botocore_stubber
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType

from functions.store import (
    CHECK_AFTER_ATTRIBUTE,
    CHECK_INDEX,
    CHECK_SHARD_ATTRIBUTE,
    KEY_ATTRIBUTE_TYPES,
    TABLE_INDEXES,
    TASK_KEY,
)
from taskctl.chaos import wire
from taskctl.chaos.wire import REGION

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
# Writes the functions never make; refused, as moto would apply them without `on_write` seeing.
_UNOBSERVED_WRITES = frozenset({"BatchWriteItem", "TransactWriteItems"})
# A KEYS_ONLY entry is under 100 bytes; DynamoDB pages a query at 1 MB.
INDEX_PAGE_ITEMS = 10_000
# Versions of an item kept for eventually consistent reads (the lag is seconds at most).
VERSIONS_KEPT = 4
_deserializer = TypeDeserializer()
# Read parameters the fast read path does not implement (moto answers those).
_READ_OPTIONS = frozenset(
    {
        "ProjectionExpression",
        "AttributesToGet",
        "ExpressionAttributeNames",
        "ReturnConsumedCapacity",
    }
)

# `<hash> = :v AND <range> BETWEEN :a AND :b` (the reconciler's query), names or #placeholders.
_KEY_CONDITION = re.compile(
    r"^\s*(?P<hash>#?\w+)\s*=\s*(?P<hash_value>:\w+)\s+AND\s+(?P<range>#?\w+)\s+"
    r"BETWEEN\s+(?P<low>:\w+)\s+AND\s+(?P<high>:\w+)\s*$",
    re.IGNORECASE,
)


def create_table(client: Any, table_name: str) -> None:
    """The table as `components.task_table` declares it, from the same key description
    (`functions.store.KEY_ATTRIBUTE_TYPES`, `TABLE_INDEXES`): hash key `taskId` and the two
    KEYS_ONLY indexes."""
    client.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": type_}
            for name, type_ in KEY_ATTRIBUTE_TYPES.items()
        ],
        KeySchema=[{"AttributeName": TASK_KEY, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.hash_key, "KeyType": "HASH"},
                    {"AttributeName": index.range_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
            for index in TABLE_INDEXES
        ],
    )


def plain(value: Any) -> Any:
    """Deserialized DynamoDB values with whole numbers as int (ours are all whole)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


class CheckIndex:
    """The check index: per shard, `(checkAfter, taskId)` in order. An update becomes visible
    `lag_s()` seconds after the write that made it."""

    def __init__(self, lag_s: Callable[[], float]) -> None:
        self._lag_s = lag_s
        self._shards: dict[str, list[tuple[int, str]]] = {}
        self._entries: dict[str, tuple[str, int]] = {}  # taskId -> (shard, checkAfter) visible
        self._pending: list[tuple[datetime, int, str, tuple[str, int] | None]] = []
        self._seq = itertools.count()

    def write(self, task_id: str, entry: tuple[str, int] | None, now: datetime) -> None:
        visible_at = now + timedelta(seconds=self._lag_s())
        heapq.heappush(self._pending, (visible_at, next(self._seq), task_id, entry))

    def query(
        self,
        shard: str,
        low: int,
        high: int,
        now: datetime,
        start_after: tuple[int, str] | None = None,
        limit: int = INDEX_PAGE_ITEMS,
    ) -> tuple[list[tuple[int, str]], bool]:
        """Entries of `shard` with `low <= checkAfter <= high`, after `start_after`; and whether
        more remain (the page was cut at `limit`)."""
        self._catch_up(now)
        entries = self._shards.get(shard, [])
        begin = bisect.bisect_left(entries, (low, ""))
        if start_after is not None:
            begin = max(begin, bisect.bisect_right(entries, start_after))
        end = bisect.bisect_right(entries, high, lo=begin, key=itemgetter(0))
        return entries[begin : min(end, begin + limit)], end - begin > limit

    def _catch_up(self, now: datetime) -> None:
        while self._pending and self._pending[0][0] <= now:
            _, _, task_id, entry = heapq.heappop(self._pending)
            old = self._entries.pop(task_id, None)
            if old is not None:
                shard_entries = self._shards[old[0]]
                del shard_entries[bisect.bisect_left(shard_entries, (old[1], task_id))]
            if entry is not None:
                self._entries[task_id] = entry
                bisect.insort(self._shards.setdefault(entry[0], []), (entry[1], task_id))


@dataclass(eq=False)
class SimTable:
    """One moto table: answers requests, reports applied writes, serves index queries.
    `lag_s()` draws one replication lag (index entries, eventually consistent reads);
    `unprocessed(keys)` picks the keys of a BatchGetItem to leave unprocessed."""

    table_name: str
    clock: Callable[[], datetime]
    lag_s: Callable[[], float]
    on_write: Callable[[str, dict[str, Any] | None], None]
    unprocessed: Callable[[list[Any]], list[Any]]

    def __post_init__(self) -> None:
        self.index = CheckIndex(self.lag_s)
        self._backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]
        self._versions: dict[str, deque[tuple[datetime, dict[str, Any] | None]]] = {}

    # -- requests

    def respond(self, request: AWSPreparedRequest, event_name: str, operation: str) -> AWSResponse:
        """Apply `request` and return DynamoDB's reply."""
        body = wire.params(request)
        fast = None
        if operation == "Query":
            fast = self._index_query(request, body)
        elif operation in ("GetItem", "BatchGetItem"):
            fast = self._read(request, operation, body)
        if fast is not None:
            return fast
        if operation in _UNOBSERVED_WRITES:
            return wire.error_response(
                request, "dynamodb", "UnrecognizedClientException", f"{operation} is not simulated"
            )
        response = botocore_stubber(event_name=event_name, request=request)
        if response is None:  # never let a request through to the network
            return wire.error_response(
                request, "dynamodb", "UnrecognizedClientException", "not routed to moto", 400
            )
        if operation in WRITE_OPERATIONS and response.status_code == 200:
            self._written(body["Item" if operation == "PutItem" else "Key"][TASK_KEY]["S"])
        return response

    def _written(self, task_id: str) -> None:
        now = self.clock()
        stored = self._current(task_id)
        versions = self._versions.setdefault(task_id, deque(maxlen=VERSIONS_KEPT))
        versions.append((now, stored))
        item = _plain_item(stored)
        shard = item.get(CHECK_SHARD_ATTRIBUTE) if item else None
        check_after = item.get(CHECK_AFTER_ATTRIBUTE) if item else None
        entry = (shard, int(check_after)) if shard is not None and check_after is not None else None
        self.index.write(task_id, entry, now)
        self.on_write(task_id, item)

    def _read(
        self, request: AWSPreparedRequest, operation: str, body: dict[str, Any]
    ) -> AWSResponse | None:
        """GetItem and BatchGetItem of whole items by key, straight from moto's stored items
        (its request and response layers cost ~5 ms a read); any other shape goes to moto."""
        if operation == "GetItem":
            if (
                body.get("TableName") != self.table_name
                or _READ_OPTIONS & body.keys()
                or not _is_key(body.get("Key"))
            ):
                return None
            item = self._stored(body["Key"][TASK_KEY]["S"], bool(body.get("ConsistentRead")))
            return wire.json_response(request, 200, {"Item": item} if item else {})
        tables = body.get("RequestItems", {})
        if set(tables) != {self.table_name} or _READ_OPTIONS & tables[self.table_name].keys():
            return None
        keys = tables[self.table_name].get("Keys", [])
        if not keys or len(keys) > 100 or not all(_is_key(key) for key in keys):
            return None
        consistent = bool(tables[self.table_name].get("ConsistentRead"))
        left = self.unprocessed(keys)
        found = [
            item
            for key in keys
            if key not in left and (item := self._stored(key[TASK_KEY]["S"], consistent))
        ]
        unprocessed = {self.table_name: {**tables[self.table_name], "Keys": left}} if left else {}
        return wire.json_response(
            request, 200, {"Responses": {self.table_name: found}, "UnprocessedKeys": unprocessed}
        )

    def _stored(self, task_id: str, consistent: bool) -> dict[str, Any] | None:
        """The item as a read sees it: the latest, or for an eventually consistent read, as it
        was one replication lag ago (absent if it was created since)."""
        versions = self._versions.get(task_id)
        if consistent or not versions:
            return self._current(task_id)
        cutoff = self.clock() - timedelta(seconds=self.lag_s())
        for written_at, stored in reversed(versions):
            if written_at <= cutoff:
                return stored
        # Every kept version is newer: before the first write the item did not exist.
        return None if len(versions) < VERSIONS_KEPT else versions[0][1]

    def _current(self, task_id: str) -> dict[str, Any] | None:
        found = self._table().get_item(DynamoType({"S": task_id}))
        return found.to_json()["Attributes"] if found is not None else None

    # -- reads that are not requests (the campaign's own inspection)

    def item(self, task_id: str) -> dict[str, Any] | None:
        """The stored item as plain Python values, or None."""
        return _plain_item(self._current(task_id))

    def task_ids(self) -> list[str]:
        return [key.value for key in self._table().items]

    def _table(self) -> Any:
        return self._backend.get_table(self.table_name)

    # -- the check index

    def _index_query(self, request: AWSPreparedRequest, body: dict[str, Any]) -> AWSResponse | None:
        """The reply to a query on the check index, or None to let moto answer (a query shape
        this fast path does not know)."""
        if body.get("IndexName") != CHECK_INDEX or body.get("TableName") != self.table_name:
            return None
        unsupported = {"FilterExpression", "ProjectionExpression", "Select", "QueryFilter"}
        if unsupported & body.keys() or body.get("ScanIndexForward") is False:
            return None
        match = _KEY_CONDITION.match(body.get("KeyConditionExpression", ""))
        if match is None:
            return None
        names = body.get("ExpressionAttributeNames", {})
        keys = (names.get(match["hash"], match["hash"]), names.get(match["range"], match["range"]))
        if keys != (CHECK_SHARD_ATTRIBUTE, CHECK_AFTER_ATTRIBUTE):
            return None
        values = body.get("ExpressionAttributeValues", {})
        shard = values[match["hash_value"]]["S"]
        low, high = int(values[match["low"]]["N"]), int(values[match["high"]]["N"])
        start = body.get("ExclusiveStartKey")
        start_after = (
            (int(start[CHECK_AFTER_ATTRIBUTE]["N"]), start[TASK_KEY]["S"]) if start else None
        )
        limit = min(int(body.get("Limit", INDEX_PAGE_ITEMS)), INDEX_PAGE_ITEMS)
        page, more = self.index.query(shard, low, high, self.clock(), start_after, limit)
        items = [
            {
                TASK_KEY: {"S": task_id},
                CHECK_SHARD_ATTRIBUTE: {"S": shard},
                CHECK_AFTER_ATTRIBUTE: {"N": str(check_after)},
            }
            for check_after, task_id in page
        ]
        reply: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
        if more and items:
            reply["LastEvaluatedKey"] = items[-1]
        return wire.json_response(request, 200, reply)


def _plain_item(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {name: plain(_deserializer.deserialize(value)) for name, value in stored.items()}


def _is_key(key: Any) -> bool:
    """A well-formed key of the task table (anything else gets moto's validation error)."""
    return (
        isinstance(key, dict)
        and set(key) == {TASK_KEY}
        and set(key[TASK_KEY]) == {"S"}
        and bool(key[TASK_KEY]["S"])
    )
