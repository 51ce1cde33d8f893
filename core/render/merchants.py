"""Merchant and API-key rows to kassa.core.v1 messages."""

from __future__ import annotations

import asyncpg

from core import names
from core.render.timestamps import timestamp
from kassa.core.v1 import merchant_pb2 as pb


def merchant(row: asyncpg.Record) -> pb.Merchant:
    return pb.Merchant(
        name=names.merchant(row["id"]),
        display_name=row["display_name"],
        create_time=timestamp(row["create_time"]),
    )


def api_key(row: asyncpg.Record) -> pb.ApiKey:
    key = pb.ApiKey(
        name=names.api_key(row["merchant_id"], row["id"]),
        scopes=row["scopes"],
        description=row["description"],
        create_time=timestamp(row["create_time"]),
    )
    if row["revoke_time"] is not None:
        key.revoke_time.CopyFrom(timestamp(row["revoke_time"]))
    return key
