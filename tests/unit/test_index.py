"""The compact active-invoice index behaves like a dict, including on colliding keys."""

from __future__ import annotations

import secrets

from hypothesis import given, settings
from hypothesis import strategies as st

from core.chain.index import ActiveInvoiceIndex

PREFIX = "0x" + "ab" * 8  # 8 shared bytes, as a prefix-keyed design would collide on


def addr(tail: int, prefix: str = PREFIX) -> str:
    return prefix + format(tail, "024x")


def first_byte_hash(key: bytes) -> int:
    # Every address starting with 0xab lands on one slot: the worst case, made on purpose.
    return key[0]


def test_add_lookup_remove() -> None:
    index = ActiveInvoiceIndex()
    a, b = "0x" + "11" * 20, "0x" + "22" * 20
    index.add(a, "0123456789abcdef0123")
    index.add(b.upper().replace("0X", "0x"), "fedcba9876543210fedc")
    assert len(index) == 2
    assert index.lookup(a) == "0123456789abcdef0123"
    assert index.lookup(b) == "fedcba9876543210fedc"
    assert index.lookup("0x" + "33" * 20) is None
    index.remove(a)
    assert index.lookup(a) is None and len(index) == 1
    index.remove(a)  # removing twice is harmless
    assert len(index) == 1


def test_prefix_collisions_never_match_the_wrong_invoice() -> None:
    index = ActiveInvoiceIndex(slot_hash=first_byte_hash)
    ids = {addr(n): secrets.token_hex(10) for n in range(200)}
    for address, invoice_id in ids.items():
        index.add(address, invoice_id)
    for address, invoice_id in ids.items():
        assert index.lookup(address) == invoice_id
    # Same 8-byte prefix (and same slot), different tail: a miss, not a neighbour's invoice.
    assert index.lookup(addr(10_000)) is None
    assert index.lookup_many([addr(5), addr(10_000), addr(7)]) == [ids[addr(5)], None, ids[addr(7)]]
    # Removing from the middle of the probe chain keeps the rest reachable.
    for n in range(0, 200, 2):
        index.remove(addr(n))
    for n in range(200):
        assert index.lookup(addr(n)) == (None if n % 2 == 0 else ids[addr(n)])


def test_ids_and_addresses_outside_the_compact_form_still_work() -> None:
    index = ActiveInvoiceIndex()
    evm = "0x" + "44" * 20
    index.add(evm, "inv1")  # not 20 hex chars: kept beside the arena
    index.add("bc1qexampleaddress", "0123456789abcdef0123")
    index.add("0x" + "4" * 39 + " ", "0123456789ABCDEF0123")  # not hex: "other" form
    assert index.lookup(evm) == "inv1"
    assert index.lookup_many([evm, "bc1qexampleaddress"]) == ["inv1", "0123456789abcdef0123"]
    assert index.lookup("0x" + "4" * 39 + " ") == "0123456789ABCDEF0123"
    index.add(evm, "0123456789abcdef0123")
    assert index.lookup(evm) == "0123456789abcdef0123"
    assert len(index) == 3


def test_grows_past_many_rehashes_and_reuses_removed_records() -> None:
    index = ActiveInvoiceIndex()
    ids = {"0x" + secrets.token_hex(20): secrets.token_hex(10) for _ in range(5000)}
    for a, i in ids.items():
        index.add(a, i)
    for a in list(ids)[:4000]:
        index.remove(a)
        del ids[a]
    arena = len(index._addrs)
    for _ in range(3000):
        a = "0x" + secrets.token_hex(20)
        ids[a] = secrets.token_hex(10)
        index.add(a, ids[a])
    assert len(index._addrs) == arena  # the 4000 freed records took the new ones
    assert len(index) == len(ids)
    assert index.lookup_many(list(ids)) == list(ids.values())


# Few distinct tails under one prefix so that adds, removes and lookups hit the same keys.
keys = st.builds(addr, st.integers(0, 40))
ids = st.builds(lambda b: b.hex(), st.binary(min_size=10, max_size=10)) | st.sampled_from(
    ["inv1", "x"]
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), keys, ids),
        st.tuples(st.just("remove"), keys, st.none()),
        st.tuples(st.just("lookup"), keys, st.none()),
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(ops, st.booleans())
def test_behaves_like_a_dict(operations: list[tuple[str, str, str | None]], collide: bool) -> None:
    index = ActiveInvoiceIndex(slot_hash=first_byte_hash) if collide else ActiveInvoiceIndex()
    reference: dict[str, str] = {}
    for op, address, invoice_id in operations:
        if op == "add":
            assert invoice_id is not None
            index.add(address, invoice_id)
            reference[address] = invoice_id
        elif op == "remove":
            index.remove(address)
            reference.pop(address, None)
        else:
            assert index.lookup(address) == reference.get(address)
        assert len(index) == len(reference)
    every = [addr(n) for n in range(41)]
    assert index.lookup_many(every) == [reference.get(a) for a in every]
