"""Development certificates: a throw-away CA and a certificate for every Kassa process and client.

    OUT/ca.pem, ca.key             the development CA
    OUT/core-api.pem, .key         the core's API (server; SAN: the --host names)
    OUT/core.pem, .key             the core as a client of the signer and the adapters (CN=kassa-core)
    OUT/signer.pem, .key           the signer (server; SAN: the --host names)
    OUT/adapter-<chain>.pem, .key  one EVM adapter per --adapter chain (server; SAN: its identity,
                                   e.g. eip155-31337.adapter.kassa, what the core checks)
    OUT/client.pem, .key           an API client (kassactl, services), where the core asks for one
    OUT/adapters.pem, .key         another client identity (CN=kassa-adapters), for tests of callers
                                   that are not the core

For local stacks and tests only: keys are written unencrypted (mode 0600).
Production certificates come from the operator's own CA.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 30
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_ADAPTERS = ("eip155:31337",)


@dataclass(frozen=True)
class Party:
    file: str  # OUT/<file>.pem and .key
    common_name: str
    server: bool
    sans: tuple[str, ...] = ()


def adapter_name(chain: str) -> str:
    """The identity of a chain's adapter; core/config.py derives the same default."""
    return f"{chain.replace(':', '-').lower()}.adapter.kassa"


def parties(hosts: Sequence[str], adapters: Sequence[str]) -> list[Party]:
    found = [
        Party("core-api", "kassa-core-api", True, tuple(hosts)),
        Party("core", "kassa-core", False),
        Party("signer", "kassa-signer", True, tuple(hosts)),
        Party("client", "kassa-client", False),
        # Another client identity of the same CA (the signer's tests: a caller that is
        # not the core). No Kassa process presents it.
        Party("adapters", "kassa-adapters", False),
    ]
    for chain in adapters:
        name = adapter_name(chain)
        found.append(
            Party(f"adapter-{chain.replace(':', '-')}", f"kassa-adapter-{chain}", True, (name,))
        )
    return found


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make(
    out_dir: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    adapters: Sequence[str] = DEFAULT_ADAPTERS,
    ca_name: str = "Kassa development CA",
) -> list[Party]:
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = _name(ca_name)
    ca = (
        x509.CertificateBuilder()
        .subject_name(issuer)
        .issuer_name(issuer)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (out_dir / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(out_dir / "ca.key", ca_key)
    made = parties(hosts, adapters)
    for party in made:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if party.server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(party.common_name))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if party.sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(h) for h in party.sans]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        (out_dir / f"{party.file}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(out_dir / f"{party.file}.key", key)
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make-dev-certs", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--host", action="append", help="API and signer host names/IPs (repeatable)"
    )
    parser.add_argument(
        "--adapter", action="append", help="a chain (CAIP-2) to make an adapter certificate for"
    )
    parser.add_argument("--ca-name", default="Kassa development CA")
    args = parser.parse_args(argv)
    made = make(
        args.out_dir,
        args.host or DEFAULT_HOSTS,
        args.adapter or DEFAULT_ADAPTERS,
        args.ca_name,
    )
    for party in made:
        names = f"\tSAN={','.join(party.sans)}" if party.sans else ""
        print(f"{args.out_dir / (party.file + '.pem')}\tCN={party.common_name}{names}")
    print(f"{args.out_dir / 'ca.pem'}\tCA", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
