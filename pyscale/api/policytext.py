"""Policy validation at the API edge: the policy engine's strict parse (line:column messages).

Topology-dependent checks (the policy's own ``tests``) run again in the app before a policy is
switched on; this is the check that never lets an unparseable policy be stored.
"""

from __future__ import annotations

from pyscale.policy import PolicyError, load_policy


class PolicyInvalid(ValueError):
    pass


def validate_policy(text: str) -> None:
    """Raise PolicyInvalid with the engine's message."""
    try:
        load_policy(text)
    except PolicyError as exc:
        raise PolicyInvalid(str(exc)) from None
