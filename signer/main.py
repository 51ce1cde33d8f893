"""kassa-signer: the only process that can use Kassa's private keys.

Exit codes: 0 success, 2 bad configuration or usage, 3 the HSM or the signer's
state cannot be used as configured (the message says why), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from signer import config as config_module
from signer import keyring, logs
from signer.api.server import serve
from signer.config import Config, ConfigError
from signer.hd.bip32 import ACCOUNT_PATH
from signer.hsm.check import run_check
from signer.hsm.thread import HsmThread
from signer.hsm.token import HsmError, TokenSession
from signer.state.seed_file import SeedFileError

EXIT_CONFIG = 2
EXIT_HSM = 3

T = TypeVar("T")
log = logging.getLogger("signer.main")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kassa-signer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML config file (defaults apply without)")
    commands = parser.add_subparsers(dest="command", required=True)

    hsm = commands.add_parser("hsm", help="HSM backend").add_subparsers(dest="action", required=True)
    hsm.add_parser("check", help="report whether the configured PKCS#11 token can run Kassa")

    keys = commands.add_parser("keys", help="key ceremony and key listing").add_subparsers(
        dest="action", required=True)
    init = keys.add_parser("init", help="key ceremony: KEK, encrypted HD seed, first hot key")
    init.add_argument("--xpub-out", type=Path, help="also write the account xpub to this file")
    keys.add_parser("list", help="list keys with the attributes the token reports")
    create = keys.add_parser("create", help="generate a new hot key in the token")
    create.add_argument("--label", required=True)
    export = keys.add_parser("export-xpub", help="print the HD account xpub")
    export.add_argument("--out", type=Path, help="also write it to this file")

    commands.add_parser("serve", help="run the gRPC SignerService")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, f"config: {exc}")
    logs.setup(config.log_level)
    thread = HsmThread()
    try:
        return _dispatch(args, config, thread)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, f"config: {exc}")
    except (HsmError, SeedFileError) as exc:
        return _fail(EXIT_HSM, str(exc))
    finally:
        thread.close()


def _dispatch(args: argparse.Namespace, config: Config, thread: HsmThread) -> int:
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
                log.warning("no HD seed yet; run `kassa-signer keys init`",
                            extra={"seed_path": str(config.seed_path)})
            asyncio.run(serve(config, thread, session, xpub))
            return 0
        return _keys(args, config, thread, session)
    finally:
        thread.call(session.close)


def _keys(args: argparse.Namespace, config: Config, thread: HsmThread,
          session: TokenSession) -> int:
    def on_hsm(fn: Callable[..., T], *fn_args: object) -> T:
        return thread.call(fn, session, *fn_args)

    if args.action == "init":
        result = on_hsm(keyring.init_ceremony, config.seed_path)
        _note("key-encryption key " + ("generated" if result.kek_created else "already present"))
        _note(("HD seed generated and stored encrypted at " if result.seed_created
               else "HD seed already present at ") + str(config.seed_path))
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
