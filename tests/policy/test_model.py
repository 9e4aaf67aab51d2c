"""Policy validation: strict fields, defined references, ports and protocols; errors carry file:line:col."""

from __future__ import annotations

import ipaddress

import pytest

from pyscale.policy import PolicyError, PolicyNode, PolicyTestError, PolicyUser, load_policy

GOOD = """{
  "groups": {"group:eng": ["alice@example.com", "bob@"]},
  "hosts": {"db": "10.1.2.3", "lan": "192.168.1.77/24"},
  "tagOwners": {"tag:web": ["group:eng"], "tag:ci": ["tag:web"]},
  "acls": [
    {"#note": "kept for headscale-admin", "action": "accept", "proto": "tcp",
     "src": ["group:eng"], "dst": ["tag:web:80,443", "db:5432", "lan:1000-2000"]},
    {"action": "accept", "src": ["*"], "dst": ["autogroup:self:*"]},
  ],
  "autoApprovers": {"routes": {"10.0.0.0/8": ["tag:web"]}, "exitNode": ["group:eng"]},
  "ssh": [{"action": "check", "checkPeriod": "1h30m", "src": ["group:eng"], "dst": ["tag:web"],
           "users": ["root", "autogroup:nonroot"]}],
}"""


def test_good_policy_loads() -> None:
    pol = load_policy(GOOD, "acl.hujson")
    assert pol is not None and pol.acls is not None and pol.ssh is not None
    assert [a.name for a, _ in pol.acls[0].dst] == ["tag:web", "db", "lan"]
    assert pol.acls[0].dst[2][1] == ((1000, 2000),)
    assert pol.acls[0].protocols == (6,)
    assert pol.acls[1].protocols == (6, 17)
    assert str(pol.hosts["lan"]) == "192.168.1.0/24"  # masked like Headscale
    assert pol.ssh[0].check_period_s == 5400
    assert pol.may_own_tag("tag:ci", "bob", "bob@x")  # via tag:web -> group:eng -> bob@
    assert not pol.may_own_tag("tag:web", "carol", "carol@example.com")


def test_empty_text_is_no_policy() -> None:
    assert load_policy("", "x") is None
    assert load_policy("  // nothing\n", "x") is None


def test_keys_are_case_insensitive() -> None:
    pol = load_policy('{"ACLs": [{"Action": "accept", "SRC": ["*"], "Dst": ["*:*"]}], "TagOwners": {}}')
    assert pol is not None and pol.acls is not None and len(pol.acls) == 1


def test_missing_acls_means_allow_all_and_empty_acls_deny_all() -> None:
    pol = load_policy('{"groups": {}}')
    assert pol is not None and pol.acls is None
    pol = load_policy('{"acls": []}')
    assert pol is not None and pol.acls == []


def _error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy(text, "acl.hujson")
    return info.value


@pytest.mark.parametrize(("text", "line", "col", "fragment"), [
    ('{\n  "acls": [],\n  "grant": []\n}', 3, 3, 'unknown field "grant"'),
    ('{"acls": [\n {"action": "accept", "src": ["*"], "dst": ["*:*"], "ports": 1}]}', 2, 53, 'unknown field "ports"'),  # noqa: E501
    ('{"acls": [\n {"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}]}', 2, 31, "group not found"),
    ('{"acls": [\n {"action": "accept", "src": ["*"],\n  "dst": ["tag:nope:22"]}]}', 3, 11, "tag not found"),
    ('{"acls": [{"action": "accept", "src": ["nohost"], "dst": ["*:*"]}]}', 1, 40, "host not found"),
    ('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:0"]}]}', 1, 54, "first port must be >0"),
    ('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:70000"]}]}', 1, 54, "above 65535"),
    ('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:ssh"]}]}', 1, 54, "not a port number"),
    ('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:30-20"]}]}', 1, 54, "below the first"),
    ('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*"]}]}', 1, 54, "alias:ports"),
    ('{"acls": [{"action": "accept", "proto": "icmp", "src": ["*"], "dst": ["*:22"]}]}', 1, 71, "does not support specific ports"),  # noqa: E501
    ('{"acls": [{"action": "accept", "proto": "bogus", "src": ["*"], "dst": ["*:*"]}]}', 1, 41, "unknown protocol"),  # noqa: E501
    ('{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}', 1, 22, "not supported"),
    ('{"acls": [{"action": "accept", "src": ["autogroup:self"], "dst": ["*:*"]}]}', 1, 40, "src side"),
    ('{"acls": [{"action": "accept", "src": ["tag:a"], "dst": ["autogroup:self:*"]}],\n'
     ' "tagOwners": {"tag:a": []}}', 1, 40, "autogroup:self can only be used"),
    ('{"groups": {"group:a": ["group:b"], "group:b": ["x@"]}}', 1, 25, "cannot be recursive"),
    ('{"groups": {"group:a": ["carol"]}}', 1, 25, "is not a user"),
    ('{"tagOwners": {"tag:1x": []}}', 1, 16, "must start with a letter"),
    ('{"hosts": {"h": "not-an-ip"}}', 1, 17, "not an IP address"),
    ('{"ssh": [{"action": "accept", "src": ["*"], "dst": ["*"], "users": ["root"]}]}', 1, 39, 'invalid src "*"'),  # noqa: E501
    ('{"ssh": [{"action": "accept", "src": ["x@"], "dst": ["*"], "users": []}]}', 1, 69, "users must be specified"),  # noqa: E501
    ('{"ssh": [{"action": "check", "checkPeriod": "200h", "src": ["x@"], "dst": ["*"], "users": ["root"]}]}',
     1, 45, "above the max"),
    ('{"ssh": [{"action": "Accept", "src": ["x@"], "dst": ["*"], "users": ["root"]}]}', 1, 21, "not a valid action"),  # noqa: E501
    ('{"grants": [{"src": ["*"], "dst": ["*"], "app": {"x": [{}]}}]}', 1, 13, "only 'ip' grants"),
])
def test_refusals_name_file_line_column(text: str, line: int, col: int, fragment: str) -> None:
    err = _error(text)
    assert fragment in err.message
    assert (err.filename, err.line, err.column) == ("acl.hujson", line, col), str(err)


def test_ip_grants_are_accept_rules() -> None:
    pol = load_policy('{"grants": [{"src": ["*"], "dst": ["10.0.0.0/8"], "ip": ["tcp:22", "53", "*"]}]}')
    assert pol is not None and pol.acls is not None
    assert [(r.protocols, r.dst[0][1]) for r in pol.acls] == [
        ((6,), ((22, 22),)), ((6, 17), ((53, 53),)), ((6, 17), ((0, 65535),))]


TOPO_USERS = [PolicyUser(1, "alice", "alice@example.com"), PolicyUser(2, "bob", "bob@example.com")]
TOPO_NODES = [
    PolicyNode(1, 1, [ipaddress.ip_address("100.64.0.1"), ipaddress.ip_address("fd7a:115c:a1e0::1")]),
    PolicyNode(2, 2, [ipaddress.ip_address("100.64.0.2"), ipaddress.ip_address("fd7a:115c:a1e0::2")]),
    PolicyNode(3, 2, [ipaddress.ip_address("100.64.0.3")], tags=("tag:srv",)),
]
TESTED = """{
  "tagOwners": {"tag:srv": ["bob@example.com"]},
  "acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:srv:22", "bob@example.com:80"]}],
  "ssh": [{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:srv"], "users": ["ubuntu"]}],
  "tests": [
    {"src": "alice@example.com", "accept": ["tag:srv:22", "bob@example.com:80"], "deny": ["tag:srv:80"]},
    %s
  ],
  "sshTests": [{"src": "alice@example.com", "dst": ["tag:srv"], "accept": ["ubuntu"], "deny": ["root"]}],
}"""


def test_policy_tests_pass() -> None:
    assert load_policy(TESTED % "", "t.hujson", TOPO_USERS, TOPO_NODES) is not None


@pytest.mark.parametrize("extra", [
    '{"src": "bob@example.com", "accept": ["alice@example.com:22"]}',
    '{"src": "alice@example.com", "proto": "tcp", "deny": ["tag:srv:22"]}',
    '{"src": "alice@example.com", "accept": ["tag:srv:20-30"]}',
    '{"src": "ghost@example.com", "accept": ["tag:srv:22"]}',
    '{"src": "alice@example.com"}',
])
def test_failing_policy_test_refuses_the_policy_and_names_it(extra: str) -> None:
    with pytest.raises(PolicyTestError) as info:
        load_policy(TESTED % extra, "t.hujson", TOPO_USERS, TOPO_NODES)
    assert info.value.message.startswith("test 1 ")
    assert (info.value.filename, info.value.line) == ("t.hujson", 7)


def test_failing_ssh_test_is_named() -> None:
    text = TESTED.replace('"deny": ["root"]', '"deny": ["ubuntu"]') % ""
    with pytest.raises(PolicyTestError, match="sshTest 0"):
        load_policy(text, "t.hujson", TOPO_USERS, TOPO_NODES)
