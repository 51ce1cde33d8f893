"""`kassa-signer hsm check`: what the module offers, what Kassa needs, and why not."""

from __future__ import annotations

from dataclasses import dataclass, field

from signer.config import ConfigError, HsmConfig
from signer.hsm.mechanisms import REQUIRED, missing
from signer.hsm.token import (
    HsmError,
    describe_mechanisms,
    find_token,
    load_module,
    login,
    offered_mechanisms,
    probe_secp256k1,
)


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        verdict = (
            "OK: this HSM can run the Kassa signer"
            if self.ok
            else ("FAILED: " + "; ".join(self.problems))
        )
        return "\n".join([*self.lines, verdict])


def run_check(config: HsmConfig) -> CheckReport:
    """Must run on the HsmThread."""
    report = CheckReport()
    report.lines.append(f"module:      {config.module}")
    try:
        lib = load_module(config.module)
    except HsmError as exc:
        report.problems.append(str(exc))
        return report
    report.lines.append(
        f"             {lib.manufacturer_id.strip()} / {lib.library_description.strip()} "
        f"v{lib.library_version[0]}.{lib.library_version[1]}"
    )
    try:
        token = find_token(lib, config.module, config.token_label)
    except HsmError as exc:
        report.problems.append(str(exc))
        return report
    report.lines.append(
        f"token:       {token.label!r} ({token.manufacturer_id.strip()} {token.model.strip()}, "
        f"serial {token.serial.decode(errors='replace').strip()})"
    )
    offered = offered_mechanisms(token)
    report.lines.append(f"offered:     {len(offered)} mechanisms")
    for name in describe_mechanisms(offered):
        report.lines.append(f"               {name}")
    lacking = missing(offered)
    report.lines.append("required:")
    for requirement in REQUIRED:
        mark = "MISSING" if requirement in lacking else "ok     "
        report.lines.append(f"  [{mark}] {requirement.name:<24} {requirement.purpose}")
    if lacking:
        report.problems.append("missing required mechanisms: " + ", ".join(r.name for r in lacking))
        return report
    try:
        pin = config.read_pin()
    except ConfigError as exc:
        report.problems.append(str(exc))
        return report
    try:
        session = login(token, pin)
    except HsmError as exc:
        report.problems.append(str(exc))
        return report
    report.lines.append("login:       ok")
    try:
        probe_secp256k1(session)
        report.lines.append("secp256k1:   ok (session key generated and signed a digest)")
    except HsmError as exc:
        report.problems.append(str(exc))
    finally:
        session.close()
    return report
