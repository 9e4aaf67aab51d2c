"""PolicyState follows State: a node registered after the policy was set is visible to the peers
the policy lets it talk to, and its arrival makes those peers' maps be resent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyscale.db import Database
from pyscale.keys import MachinePublic, NodePublic
from pyscale.state.events import FiltersChanged
from pyscale.state.ipam import IPAllocator
from pyscale.state.model import Node
from pyscale.state.policystate import PolicyState
from pyscale.state.store import State
from tests.state.test_state_registration import V4, V6

ONE_WAY = json.dumps({"acls": [{"action": "accept", "src": ["alice@"], "dst": ["bob@:*"]}]})


def _node(i: int, user_id: int, name: str) -> Node:
    return Node(0, MachinePublic(bytes([i]) * 32), NodePublic(bytes([i]) * 32), hostname=name, given_name=name,
                user_id=user_id)


@pytest.mark.asyncio
async def test_nodes_registered_after_the_policy(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "db.sqlite"))
    state = await State.load(db, IPAllocator(V4, V6))
    alice, bob = await state.create_user("alice"), await state.create_user("bob")
    policy = PolicyState(state)
    policy.reload(ONE_WAY, "test")
    sub = state.bus.subscribe()
    a = await state.add_node(lambda: _node(1, alice.id, "alicebox"))
    b = await state.add_node(lambda: _node(2, bob.id, "bobbox"))
    assert policy.can_see(a.id, b.id) and policy.can_see(b.id, a.id)
    assert policy.filter_for(a.id) == []
    assert policy.filter_for(b.id)[0]["SrcIPs"] == [f"{a.ipv4}/32", f"{a.ipv6}/128"] or \
        f"{a.ipv4}/32" in policy.filter_for(b.id)[0]["SrcIPs"]
    changed = [e for e in sub.drain_pending() if isinstance(e, FiltersChanged)]
    assert any(a.id in e.node_ids for e in changed), changed
    await state.delete_node(b.id)
    assert not policy.can_see(a.id, b.id)
    state.close()
    await db.close()
