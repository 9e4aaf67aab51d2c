"""Where the policy engine plugs into the mapper: per-node packet filter and peer visibility.

Until a policy is loaded every node sees every other and the filter allows everything
(tailcfg.FilterAllowAll), as Headscale does without a policy.
"""

from __future__ import annotations

from typing import Any, Protocol

ALLOW_ALL: list[dict[str, Any]] = [{"SrcIPs": ["*"], "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}]}]


class FilterSource(Protocol):
    def filter_for(self, node_id: int) -> list[dict[str, Any]]: ...

    def can_see(self, viewer_id: int, peer_id: int) -> bool: ...

    def ssh_for(self, node_id: int) -> dict[str, Any] | None: ...


class AllowAll:
    def filter_for(self, node_id: int) -> list[dict[str, Any]]:
        return ALLOW_ALL

    def can_see(self, viewer_id: int, peer_id: int) -> bool:
        return True

    def ssh_for(self, node_id: int) -> dict[str, Any] | None:
        return None
