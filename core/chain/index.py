"""Active invoices by deposit address, in memory.

A cache for matching a block's transfers without a database round trip per
transfer. It is rebuilt from PostgreSQL at start and is never the system of
record: a match is confirmed against the invoices table in the same
transaction that records the payment.

Layout (about 40 bytes per invoice instead of ~250 for a dict of str -> str,
which matters at millions of active invoices):
- records: an arena of fixed-size binary records, record r at
  `_addrs[20r:20r+20]` (the address, 20 bytes) and `_ids[10r:10r+10]` (the
  invoice id, 10 bytes); removed records go on a free list for reuse;
- slots: an open-addressing table (linear probing) of uint32, 0 = empty,
  TOMBSTONE = removed, else record + 1. It is kept at most 3/4 full
  (tombstones included), so probes stay short.
The slot hash is Python's keyed hash of the 20 address bytes, so addresses
an attacker chooses for transfers cannot be aimed at one probe sequence, and
every candidate is compared on the full 20 bytes, so keys that share a slot
(or a prefix) never match each other.

What does not fit the compact form — an address that is not 0x + 40 hex
digits, an invoice id that is not 20 lowercase hex digits — is kept in
plain dicts beside it, so the index accepts what the old dict accepted.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable

import asyncpg

ADDRESS_BYTES = 20
ID_BYTES = 10
EMPTY = 0
TOMBSTONE = 0xFFFFFFFF
_MIN_CAPACITY = 1024
LOAD_BATCH_ROWS = 10_000


def _address_key(address: str) -> bytes | None:
    """The 20 address bytes of "0x" + 40 hex digits (any case), else None."""
    if len(address) != 42 or address[0] != "0" or address[1] not in "xX":
        return None
    try:
        key = bytes.fromhex(address[2:])
    except ValueError:
        return None
    # bytes.fromhex skips whitespace between pairs: a short result means it was not 40 hex digits.
    return key if len(key) == ADDRESS_BYTES else None


class ActiveInvoiceIndex:
    def __init__(self, *, slot_hash: Callable[[bytes], int] = hash) -> None:
        # slot_hash is injectable so tests can force every key into one probe sequence.
        self._hash = slot_hash
        self._slots = array("I", bytes(4 * _MIN_CAPACITY))
        self._mask = _MIN_CAPACITY - 1
        self._addrs = bytearray()
        self._ids = bytearray()
        self._free = array("I")  # removed record numbers, reused by add
        self._live = 0
        self._tombstones = 0
        self._odd_ids: dict[int, str] = {}  # record -> an id that is not 20 lowercase hex
        self._other: dict[str, str] = {}  # addresses not in 0x-hex form

    def __len__(self) -> int:
        return self._live + len(self._other)

    # --- lookups ----------------------------------------------------------------------------

    def lookup(self, address: str) -> str | None:
        key = _address_key(address)
        if key is None:
            return self._other.get(address.lower())
        # The probe loop inlined (no tuple from _find): this is the per-transfer hot path.
        slots, mask, addrs = self._slots, self._mask, self._addrs
        i = self._hash(key) & mask
        while (s := slots[i]) != EMPTY:
            if s != TOMBSTONE:
                off = (s - 1) * ADDRESS_BYTES
                if addrs[off : off + ADDRESS_BYTES] == key:
                    return self._id_of(s - 1)
            i = (i + 1) & mask
        return None

    def lookup_many(self, addresses: Iterable[str]) -> list[str | None]:
        """lookup() for each address of a block, with the per-call overhead hoisted."""
        slots, mask, addrs, ids, odd = (
            self._slots,
            self._mask,
            self._addrs,
            self._ids,
            self._odd_ids,
        )
        slot_hash, fromhex = self._hash, bytes.fromhex
        out: list[str | None] = []
        append = out.append
        for address in addresses:
            if len(address) == 42 and address[0] == "0" and address[1] in "xX":
                try:
                    key = fromhex(address[2:])
                except ValueError:
                    key = b""
            else:
                key = b""
            if len(key) != ADDRESS_BYTES:
                append(self._other.get(address.lower()))
                continue
            i = slot_hash(key) & mask
            found: str | None = None
            while (s := slots[i]) != EMPTY:
                if s != TOMBSTONE:
                    off = (s - 1) * ADDRESS_BYTES
                    if addrs[off : off + ADDRESS_BYTES] == key:
                        r = s - 1
                        found = (
                            odd[r]
                            if r in odd
                            else ids[r * ID_BYTES : r * ID_BYTES + ID_BYTES].hex()
                        )
                        break
                i = (i + 1) & mask
            append(found)
        return out

    # --- writes -----------------------------------------------------------------------------

    def add(self, address: str, invoice_id: str) -> None:
        key = _address_key(address)
        if key is None:
            self._other[address.lower()] = invoice_id
            return
        slot, record = self._find(key)
        if record >= 0:
            self._set_id(record, invoice_id)
            return
        if (self._live + self._tombstones + 1) * 4 > (self._mask + 1) * 3:
            self._rehash(self._live + 1)
            slot = self._find(key)[0]
        if self._free:
            record = self._free.pop()
            self._addrs[record * ADDRESS_BYTES : (record + 1) * ADDRESS_BYTES] = key
        else:
            record = len(self._addrs) // ADDRESS_BYTES
            if record + 1 >= TOMBSTONE:
                raise OverflowError("the active invoice index holds at most 2^32 - 2 invoices")
            self._addrs += key
            self._ids += bytes(ID_BYTES)
        self._set_id(record, invoice_id)
        if self._slots[slot] == TOMBSTONE:
            self._tombstones -= 1
        self._slots[slot] = record + 1
        self._live += 1

    def remove(self, address: str) -> None:
        key = _address_key(address)
        if key is None:
            self._other.pop(address.lower(), None)
            return
        slot, record = self._find(key)
        if record < 0:
            return
        # A tombstone, not EMPTY: later keys of the same probe sequence must stay reachable.
        self._slots[slot] = TOMBSTONE
        self._tombstones += 1
        self._live -= 1
        self._odd_ids.pop(record, None)
        self._free.append(record)

    # --- loading ----------------------------------------------------------------------------

    async def load(self, conn: asyncpg.Connection, batch_rows: int = LOAD_BATCH_ROWS) -> int:
        """Add every invoice's deposit address, streamed through a server-side cursor in batches.

        A cursor keeps at most batch_rows records in Python at once, so loading a
        million invoices does not first build a million asyncpg Records.
        """
        loaded = 0
        async with conn.transaction():
            cursor = await conn.cursor(
                # Every derived address stays watched, whatever its invoice's state or
                # age: every unit that reaches one is recorded (docs/architecture.md,
                # "Every unit accounted for"); ~40 bytes per invoice.
                "SELECT deposit_address, id FROM invoices"
            )
            while rows := await cursor.fetch(batch_rows):
                for address, invoice_id in rows:
                    self.add(address, invoice_id)
                loaded += len(rows)
        return loaded

    # --- internals --------------------------------------------------------------------------

    def _find(self, key: bytes) -> tuple[int, int]:
        """(slot, record) of key if present, else (the slot where it would go, -1).

        The slot to insert at is the first tombstone on the probe path, if any,
        so removed slots are reused instead of growing clusters.
        """
        slots, mask, addrs = self._slots, self._mask, self._addrs
        i = self._hash(key) & mask
        first_tombstone = -1
        while (s := slots[i]) != EMPTY:
            if s == TOMBSTONE:
                if first_tombstone < 0:
                    first_tombstone = i
            else:
                off = (s - 1) * ADDRESS_BYTES
                if addrs[off : off + ADDRESS_BYTES] == key:
                    return i, s - 1
            i = (i + 1) & mask
        return (first_tombstone if first_tombstone >= 0 else i), -1

    def _id_of(self, record: int) -> str:
        odd = self._odd_ids.get(record)
        if odd is not None:
            return odd
        return self._ids[record * ID_BYTES : (record + 1) * ID_BYTES].hex()

    def _set_id(self, record: int, invoice_id: str) -> None:
        packed = _pack_id(invoice_id)
        if packed is None:
            self._odd_ids[record] = invoice_id
        else:
            self._odd_ids.pop(record, None)
            self._ids[record * ID_BYTES : (record + 1) * ID_BYTES] = packed

    def _rehash(self, live: int) -> None:
        """Rebuild the slots at a capacity that leaves the table under half full."""
        capacity = _MIN_CAPACITY
        while capacity < live * 2:
            capacity *= 2
        slots = array("I", bytes(4 * capacity))
        mask = capacity - 1
        addrs, slot_hash = self._addrs, self._hash
        for s in self._slots:
            if s != EMPTY and s != TOMBSTONE:
                off = (s - 1) * ADDRESS_BYTES
                i = slot_hash(bytes(addrs[off : off + ADDRESS_BYTES])) & mask
                while slots[i] != EMPTY:
                    i = (i + 1) & mask
                slots[i] = s
        self._slots, self._mask, self._tombstones = slots, mask, 0


def _pack_id(invoice_id: str) -> bytes | None:
    """10 bytes for a 20-lowercase-hex id (what secrets.token_hex(10) makes), else None."""
    if len(invoice_id) != 2 * ID_BYTES:
        return None
    try:
        packed = bytes.fromhex(invoice_id)
    except ValueError:
        return None
    return packed if len(packed) == ID_BYTES and packed.hex() == invoice_id else None
