"""Policy validation at the API edge: the policy engine when installed, else HuJSON syntax only.

``pyscale.policy.load_policy`` (strict model, line:column messages) is used when that package
provides it. Without it, the text must still be well-formed HuJSON (JSON plus comments and
trailing commas), so ``policy set``/``check`` never store or bless an unparseable file.
"""

from __future__ import annotations

import importlib
import json
import re

_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/|.', re.S)


class PolicyInvalid(ValueError):
    pass


def strip_hujson(text: str) -> str:
    """HuJSON -> JSON: drop comments and trailing commas, keep strings untouched."""
    out = []
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok.startswith(("//", "/*")) or (tok == "," and _is_trailing(text, m.end())):
            out.append(" ")
        else:
            out.append(tok)
    return "".join(out)


def _is_trailing(text: str, pos: int) -> bool:
    rest = re.sub(r"//[^\n]*|/\*.*?\*/", "", text[pos:pos + 4096], flags=re.S).lstrip()
    return rest[:1] in ("]", "}")


def validate_policy(text: str) -> None:
    """Raise PolicyInvalid with the engine's (or the JSON parser's) message."""
    module = importlib.import_module("pyscale.policy")
    load = getattr(module, "load_policy", None)
    if load is not None:
        try:
            load(text)
        except Exception as exc:  # the engine's PolicyError
            raise PolicyInvalid(str(exc)) from None
        return
    if not text.strip():
        return  # empty policy: allow all, as Headscale
    try:
        value = json.loads(strip_hujson(text))
    except ValueError as exc:
        raise PolicyInvalid(f"parsing hujson: {exc}") from None
    if not isinstance(value, dict):
        raise PolicyInvalid("parsing policy: the policy must be a JSON object")
