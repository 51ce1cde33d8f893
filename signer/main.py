"""kassa-signer: the only process that can use Kassa's private keys.

Exit codes: 0 success, 2 bad configuration or usage, 3 the HSM or the signer's
state cannot be used as configured (the message says why), 1 anything else.
"""

from __future__ import annotations

import os

# gRPC's C core writes its own plain-text lines on stderr (a failed TLS handshake is
# an INFO line); this process's stderr is one JSON object per line, so only gRPC's
# errors, unless the operator asks for more. Read once, when grpc is first
# imported: here, before it is. (The core does the same in core/main.py.)
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import logging
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from signer import config as config_module
from signer import keyring
from signer.api.lifecycle import StateInUse
from signer.api.server import serve
from signer.api.workers import supervise
from signer.audit import chain as audit_chain
from signer.audit import files as audit_files
from signer.audit.files import AuditFileError
from signer.config import Config, ConfigError
from signer.hd.bip32 import ACCOUNT_PATH
from signer.hsm.check import run_check
from signer.hsm.thread import HsmThread
from signer.hsm.token import HsmError, TokenSession
from signer.policy.load import read_policy
from signer.policy.model import PolicyError
from signer.state.seed_file import SeedFileError
from signer.telemetry import logs

EXIT_CONFIG = 2
EXIT_HSM = 3

T = TypeVar("T")
log = logging.getLogger("signer.main")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kassa-signer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML config file (defaults apply without)")
    commands = parser.add_subparsers(dest="command", required=True)

    hsm = commands.add_parser("hsm", help="HSM backend").add_subparsers(
        dest="action", required=True
    )
    hsm.add_parser("check", help="report whether the configured PKCS#11 token can run Kassa")

    keys = commands.add_parser("keys", help="key ceremony and key listing").add_subparsers(
        dest="action", required=True
    )
    init = keys.add_parser("init", help="key ceremony: KEK, encrypted HD seed, first hot key")
    init.add_argument("--xpub-out", type=Path, help="also write the account xpub to this file")
    keys.add_parser("list", help="list keys with the attributes the token reports")
    create = keys.add_parser("create", help="generate a new hot key in the token")
    create.add_argument("--label", required=True)
    export = keys.add_parser("export-xpub", help="print the HD account xpub")
    export.add_argument("--out", type=Path, help="also write it to this file")
    public = keys.add_parser("export-public", help="print a hot key's public key and address")
    public.add_argument("--key-id", required=True)

    audit = commands.add_parser("audit", help="the hash-chained audit log").add_subparsers(
        dest="action", required=True
    )
    verify = audit.add_parser(
        "verify",
        help="check a chain offline (SQLite state file or "
        "JSON-lines export); exit 1 at the first break",
    )
    verify.add_argument("file", type=Path)
    verify.add_argument("--head", help="an anchored record_hash the chain must contain")
    export_log = audit.add_parser("export", help="write the chain as JSON lines")
    export_log.add_argument("--out", type=Path, help="file to write (default stdout)")

    policy = commands.add_parser("policy", help="the signing policy").add_subparsers(
        dest="action", required=True
    )
    check = policy.add_parser("check", help="parse a policy file and print its hash")
    check.add_argument("file", type=Path, nargs="?", help="default: policy.file of the config")

    serve_cmd = commands.add_parser("serve", help="run the gRPC SignerService")
    # Set by the supervisor (server.workers > 1) on the processes it starts.
    serve_cmd.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, f"config: {exc}")
    logs.setup(config.log_level, getattr(args, "worker", None))
    if args.command == "serve" and args.worker is None and config.server.workers > 1:
        try:
            return supervise(config, args.config)
        except ConfigError as exc:
            return _fail(EXIT_CONFIG, f"config: {exc}")
        except StateInUse as exc:
            return _fail(EXIT_HSM, str(exc))
    thread = HsmThread()
    try:
        return _dispatch(args, config, thread)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, f"config: {exc}")
    except (HsmError, SeedFileError, StateInUse) as exc:
        return _fail(EXIT_HSM, str(exc))
    except (AuditFileError, sqlite3.Error) as exc:
        return _fail(1, f"audit: {exc}")
    finally:
        thread.close()


def _dispatch(args: argparse.Namespace, config: Config, thread: HsmThread) -> int:
    if args.command == "audit":
        return _audit(args, config)
    if args.command == "policy":
        return _policy(args, config)
    if args.command == "hsm":
        report = thread.call(run_check, config.hsm)
        print(report.render())
        return 0 if report.ok else EXIT_HSM
    pin = config.hsm.read_pin()
    session = thread.call(TokenSession.open, config.hsm, pin)
    try:
        if args.command == "serve":
            xpub = thread.call(keyring.account_xpub, session, config.seed_path)
            if xpub is None:
                log.warning(
                    "no HD seed yet; run `kassa-signer keys init`",
                    extra={"seed_path": str(config.seed_path)},
                )
            asyncio.run(serve(config, thread, session, xpub, args.worker))
            return 0
        return _keys(args, config, thread, session)
    finally:
        thread.call(session.close)


def _keys(
    args: argparse.Namespace, config: Config, thread: HsmThread, session: TokenSession
) -> int:
    def on_hsm(fn: Callable[..., T], *fn_args: object) -> T:
        return thread.call(fn, session, *fn_args)

    if args.action == "init":
        result = on_hsm(keyring.init_ceremony, config.seed_path)
        _note("key-encryption key " + ("generated" if result.kek_created else "already present"))
        _note(
            (
                "HD seed generated and stored encrypted at "
                if result.seed_created
                else "HD seed already present at "
            )
            + str(config.seed_path)
        )
        if result.hot_key_created is not None:
            key = result.hot_key_created
            _note(f"hot key {key.label!r} generated: {key.address}")
        _note(f"account xpub ({ACCOUNT_PATH}) follows on stdout")
        _emit_xpub(result.xpub, args.xpub_out)
    elif args.action == "export-xpub":
        xpub = on_hsm(keyring.account_xpub, config.seed_path)
        if xpub is None:
            raise HsmError(f"no HD seed at {config.seed_path}: run `kassa-signer keys init` first")
        _emit_xpub(xpub, args.out)
    elif args.action == "export-public":
        hot = thread.call(session.hot_key, args.key_id)
        if hot is None:
            raise HsmError(f"no hot key {args.key_id!r}")
        print(f"{hot.label}\t{hot.address}\t{hot.public_key.hex()}")
    elif args.action == "create":
        key = thread.call(session.create_hot_key, args.label)
        print(f"{key.label}\t{key.address}")
    elif args.action == "list":
        xpub = on_hsm(keyring.account_xpub, config.seed_path)
        for info in on_hsm(keyring.list_keys, xpub):
            where = info.address or f"{info.derivation_path} {info.xpub}"
            attrs = " ".join(f"{k}={v}" for k, v in sorted(info.attributes.items()))
            print(f"{info.key_id}\t{info.label}\t{info.kind}\t{where}\t{attrs}")
    return 0


def _audit(args: argparse.Namespace, config: Config) -> int:
    if args.action == "export":
        out = sys.stdout if args.out is None else args.out.open("w", encoding="utf-8")
        try:
            count = 0
            for line in audit_files.export(config.db_path):
                out.write(line)
                count += 1
        finally:
            if args.out is not None:
                out.close()
        _note(f"exported {count} records from {config.db_path}")
        return 0
    result = audit_chain.verify(audit_files.records_of(args.file))
    if result.first_break is not None:
        print(f"BROKEN: {result.first_break}")
        print(
            f"verified {result.count} records before it; last good seq {result.head_seq} "
            f"hash {result.head_hash}"
        )
        return 1
    if args.head is not None and args.head not in result.hashes:
        print(f"BROKEN: anchored head {args.head} is not in the chain (truncated or rewritten)")
        return 1
    print(f"OK: {result.count} records; head seq {result.head_seq} hash {result.head_hash}")
    return 0


def _policy(args: argparse.Namespace, config: Config) -> int:
    path = args.file or config.policy_file
    if path is None:
        raise ConfigError("no policy file given and no policy.file in the config")
    try:
        policy = read_policy(replace(config, policy_file=path))
    except PolicyError as exc:
        print(f"FAILED: {exc}")
        return EXIT_CONFIG
    print(f"OK: {len(policy.rules)} rules; policy hash {policy.hash}")
    return 0


def _emit_xpub(xpub: str, out: Path | None) -> None:
    print(xpub)
    if out is not None:
        out.write_text(xpub + "\n")


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _fail(code: int, message: str) -> int:
    print(f"kassa-signer: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
