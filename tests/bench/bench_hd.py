"""scripts/bench hd: deposit addresses per second through bip-utils (what the
core uses, core.chain.hd) against a bare coincurve CKDpub + keccak of the
same indices in the same run (the raw limit; tests/unit/test_hd.py proves
both give the same addresses)."""

from __future__ import annotations

import argparse
import json
import time

from core.chain.hd import DepositAddresses
from tests.support.hd import M_0H_1_2H, reference_addresses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addresses", type=int, default=5000)
    n = parser.parse_args().addresses
    addresses = DepositAddresses(M_0H_1_2H)
    started = time.perf_counter()
    derived = [addresses.address(i) for i in range(n)]
    bip_utils_per_s = n / (time.perf_counter() - started)
    started = time.perf_counter()
    reference = reference_addresses(M_0H_1_2H, n)
    coincurve_per_s = n / (time.perf_counter() - started)
    assert derived == reference
    print(
        json.dumps(
            {
                "bench": "hd",
                "value": round(bip_utils_per_s),
                "unit": "addresses/s",
                "baseline": round(coincurve_per_s),
                "ratio": round(bip_utils_per_s / coincurve_per_s, 3),
                "addresses": n,
            }
        )
    )


if __name__ == "__main__":
    main()
