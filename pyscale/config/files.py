"""Checks of the files a config points at (opt-in: ``load_config_report(..., check_files=True)``).

Headscale only finds out at start that a policy file, DERP map file or certificate is missing or broken;
`pyscale configtest` can say so up front. Key files may be absent (they are created on first start) but
when present they must be in Headscale's format ("privkey:" + 64 hex digits), or the server would refuse
them. DERP map files are parsed as Headscale does (YAML, lower-cased field names), with file:line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pyscale.config.model import Config
from pyscale.config.report import Problem, Setting, Where
from pyscale.config.source import Loader, yaml_problem

_PRIVKEY = re.compile(r"^privkey:[0-9a-f]{64}$")
# tailcfg.DERPRegion / DERPNode field names as yaml.v3 spells them (Go field name, lower-cased).
REGION_FIELDS = frozenset({"regionid", "regioncode", "regionname", "latitude", "longitude", "avoid", "nodes"})
NODE_FIELDS = frozenset(
    {
        "name", "regionid", "hostname", "certname", "ipv4", "ipv6", "stunport", "stunonly", "derpport",
        "insecurefortests", "stuntestip", "canport80",
    }
)


@dataclass
class DerpMapFile:
    """A DERP map file as read: region id -> region mapping (lower-case keys), or None to delete it."""

    path: str
    regions: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    omit_default_regions: bool = False
    problems: list[Problem] = field(default_factory=list)


def read_derp_map_file(path: str) -> DerpMapFile:
    out = DerpMapFile(path)
    text = _read(path, out.problems) or ""
    loader = None
    try:
        loader = Loader(text)
        root = loader.get_single_node()
        if root is None:
            return out
        if not isinstance(root, yaml.MappingNode):
            return _fail(out, "a DERP map file must be a mapping with 'regions'", root)
        for k, v in root.value:
            name = str(loader.construct_object(k)).lower()
            if name == "regions" and isinstance(v, yaml.MappingNode):
                _regions(loader, v, out)
            elif name == "omitdefaultregions":
                out.omit_default_regions = bool(loader.construct_object(v))
            elif name == "regions":
                _fail(out, "'regions' must map region ids to regions", v)
    except yaml.YAMLError as e:
        out.problems.append(yaml_problem(e, text, path, "derp.paths"))
    except RecursionError:
        out.problems.append(Problem("error", "derp.paths", "YAML structure nested too deeply", Where(path)))
    finally:
        if loader is not None:
            loader.dispose()
    return out


def _read(path: str, problems: list[Problem]) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem("error", "derp.paths", f"cannot read DERP map file: {e}", Where(path)))
        return None


def _fail(out: DerpMapFile, msg: str, node: yaml.Node) -> DerpMapFile:
    out.problems.append(Problem("error", "derp.paths", msg, Where(out.path, node.start_mark.line + 1)))
    return out


def _regions(loader: Any, node: yaml.MappingNode, out: DerpMapFile) -> None:
    for k, v in node.value:
        key = loader.construct_object(k)
        if isinstance(key, bool) or not isinstance(key, int):
            _fail(out, f"region key {key!r} is not a number", k)
            continue
        value = loader.construct_object(v, deep=True)
        if value is None:
            out.regions[key] = None
            continue
        if not isinstance(value, dict):
            _fail(out, f"region {key} must be a mapping", v)
            continue
        region = {str(f).lower(): x for f, x in value.items()}
        for problem in _region_problems(key, region):
            _fail(out, problem, v)
        region["nodes"] = [{str(f).lower(): x for f, x in n.items()} for n in region.get("nodes") or []
                           if isinstance(n, dict)]
        out.regions[key] = region


def _region_problems(key: int, region: dict[str, Any]) -> list[str]:
    out = [f"region {key}: unknown field {f!r}" for f in region if f not in REGION_FIELDS]
    if region.get("regionid") != key:
        out.append(f"region {key}: regionid is {region.get('regionid')!r}, expected {key}")
    nodes = region.get("nodes") or []
    if not isinstance(nodes, list) or not nodes:
        out.append(f"region {key}: needs a list of nodes")
        return out
    for i, n in enumerate(nodes):
        if not isinstance(n, dict):
            out.append(f"region {key} node {i}: must be a mapping")
            continue
        fields = {str(f).lower(): x for f, x in n.items()}
        out += [f"region {key} node {i}: unknown field {f!r}" for f in fields if f not in NODE_FIELDS]
        if not fields.get("name") or not fields.get("hostname"):
            out.append(f"region {key} node {i}: needs name and hostname")
    return out


def check_files(cfg: Config, settings: Mapping[str, Setting]) -> list[Problem]:
    problems: list[Problem] = []

    def at(key: str) -> Where:
        s = settings.get(key)
        return s.where if s is not None else Where(cfg.source_path)

    def need(key: str, path: str, what: str) -> None:
        if path and not os.path.isfile(path):
            problems.append(Problem("error", key, f"{key}: {what} {path} does not exist", at(key)))

    if cfg.policy.mode == "file":
        need("policy.path", cfg.policy.path, "policy file")
    need("tls_cert_path", cfg.tls_cert_path, "certificate")
    need("tls_key_path", cfg.tls_key_path, "key file")
    need("dns.extra_records_path", cfg.dns.extra_records_path, "extra records file")
    need("oidc.client_secret_path", os.path.expandvars(cfg.oidc.client_secret_path), "secret file")
    keys = [("noise.private_key_path", cfg.noise.private_key_path)]
    if cfg.derp.server.enabled:
        keys.append(("derp.server.private_key_path", cfg.derp.server.private_key_path))
    for key, path in keys:
        problems += _key_file(key, path, at(key))
    if cfg.dns.extra_records_path and os.path.isfile(cfg.dns.extra_records_path):
        problems += _extra_records(cfg.dns.extra_records_path, at("dns.extra_records_path"))
    embedded_found = False
    for p in cfg.derp.paths:
        m = read_derp_map_file(p)
        # A file that cannot be read at all is reported at the derp.paths line of the config.
        problems += [pr if pr.line else Problem(pr.severity, pr.key, pr.message, at("derp.paths"))
                     for pr in m.problems]
        embedded_found |= cfg.derp.server.region_id in m.regions
    s = cfg.derp.server
    if s.enabled and not s.automatically_add_embedded_derp_region and cfg.derp.paths and not embedded_found:
        msg = f"no file in derp.paths describes the embedded region {s.region_id}"
        problems.append(Problem("error", "derp.paths", msg, at("derp.paths")))
    return problems


def _key_file(key: str, path: str, where: Where) -> list[Problem]:
    if not path or not os.path.exists(path):
        return []  # created on first start
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        return [Problem("error", key, f"{key}: cannot read {path}: {e}", where)]
    if not _PRIVKEY.match(text):
        return [Problem("error", key, f"{key}: {path} is not a private key file (privkey:<64 hex>)", where)]
    return []


def _extra_records(path: str, where: Where) -> list[Problem]:
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except (OSError, ValueError) as e:
        return [Problem("error", "dns.extra_records_path", f"dns.extra_records_path: {path}: {e}", where)]
    # Go's encoding/json matches field names case-insensitively; Type may be omitted (omitempty).
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and {"name", "value"} <= {str(k).lower() for k in r} for r in records
    ):
        msg = f"dns.extra_records_path: {path}: expected a JSON list of {{name, type, value}} records"
        return [Problem("error", "dns.extra_records_path", msg, where)]
    return []
