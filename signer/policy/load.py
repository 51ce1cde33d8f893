"""Reading the policy file at start (a bad file refuses the start) and on SIGHUP (a bad file
keeps the policy in force and says why)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from signer.config import Config, ConfigError
from signer.policy.model import Policy, PolicyError, parse_policy

if TYPE_CHECKING:
    from signer.api.pipeline import PolicyHolder

log = logging.getLogger("signer.policy")


def read_policy(config: Config) -> Policy:
    """Raises PolicyError naming the file and the problem."""
    assert config.policy_file is not None
    try:
        data = config.policy_file.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy {config.policy_file}: {exc.strerror}") from None
    try:
        return parse_policy(data, frozenset(a.key_id for a in config.approvers))
    except PolicyError as exc:
        raise PolicyError(f"policy {config.policy_file}: {exc}") from None


def load_policy(config: Config) -> Policy:
    try:
        policy = read_policy(config)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    log.info(
        "policy loaded",
        extra={
            "policy_hash": policy.hash,
            "rules": len(policy.rules),
            "file": str(config.policy_file),
        },
    )
    return policy


def reload_policy(config: Config, holder: PolicyHolder) -> None:
    try:
        policy = read_policy(config)
    except PolicyError as exc:
        log.error(
            "policy reload refused; keeping the policy in force",
            extra={"error": str(exc), "policy_hash": holder.current.hash},
        )
        return
    previous = holder.current.hash
    holder.current = policy
    log.info(
        "policy reloaded",
        extra={"policy_hash": policy.hash, "previous_hash": previous, "rules": len(policy.rules)},
    )
