"""Internal address forms a webhook target must never reach (SSRF), shared by
the canonicaliser's unit tests and the save-time test over the wire."""

from __future__ import annotations

# Every form the issue found accepted, and their relatives.
INTERNAL_HOSTS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0x7F.1",
    "0177.0.0.1",
    "0177.1",
    "017700000001",
    "127.0.0.1.",
    "localhost",
    "localhost.",
    "LOCALHOST.",
    "api.localhost",
    "metadata.google.internal",
    "printer.local",
    "10.1",
    "10.0.0.1",
    "0xa.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "169.254.169.254",
    "2852039166",  # 169.254.169.254, the cloud metadata address in decimal
    "0xa9fea9fe",
    "0",
    "0.0.0.0",
    "100.64.0.1",
    "224.0.0.1",
    "[::1]",
    "[::]",
    "[fe80::1]",
    "[fc00::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",  # IPv4-compatible
    "[::a9fe:a9fe]",
    "[64:ff9b::127.0.0.1]",  # NAT64
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::a00:1]",  # local-use NAT64
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1
    "999.1.1.1",  # not an address at all: refused, not resolved
    "1.2.3.0x100",
]
