"""Round trips and robustness: dump -> YAML -> load gives the same Config; the loader never raises on any
input (it reports); duration parsing returns a value or CoerceError."""

from __future__ import annotations

import dataclasses
import pathlib
import random

import pytest
import yaml

from pyscale.config import ConfigReport, dump_config, embedded_default, load_config_report
from pyscale.config.coerce import CoerceError, parse_go_duration
from pyscale.config.dump import format_go_duration

DATA = pathlib.Path(__file__).resolve().parent / "data"
SOURCES = [
    DATA / "headscale" / "config-example-v0.27.1.yaml",
    DATA / "runbook-config.yaml",
    pathlib.Path(__file__).resolve().parents[2] / "deploy" / "config.example.yaml",
]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_dump_then_load_gives_the_same_config(source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    first = load_config_report(str(source), env={}).config
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(dump_config(first)))
    again = load_config_report(str(dumped), env={})
    assert again.ok and again.mappings == []
    assert dataclasses.replace(again.config, source_path=first.source_path) == first


def test_embedded_default_round_trips(tmp_path: pathlib.Path) -> None:
    cfg = embedded_default(str(tmp_path / "data"))
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(dump_config(cfg)))
    again = load_config_report(str(dumped), env={})
    assert again.ok
    assert dataclasses.replace(again.config, source_path=None) == cfg


@pytest.mark.parametrize("seconds", [0, 0.8, 1, 59.5, 120, 1800, 5400, 9930.5, 86400 * 3, 1e-5, -120])
def test_go_duration_format_round_trips(seconds: float) -> None:
    assert parse_go_duration(format_go_duration(seconds)) == pytest.approx(seconds)


def _mutations(text: str, rng: random.Random, count: int) -> list[str]:
    out = []
    alphabet = ":-[]{}#&*!|>'\"%@`,? \n\t0x"
    for _ in range(count):
        chars = list(text)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                del chars[i]
            elif op < 0.8:
                chars.insert(i, rng.choice(alphabet))
            else:
                j = rng.randrange(len(chars))
                chars[i], chars[j] = chars[j], chars[i]
        out.append("".join(chars))
    return out


def test_loader_reports_but_never_raises_on_mangled_files(tmp_path: pathlib.Path) -> None:
    """Invariant: for any bytes in the file, load_config_report returns a report (errors have a location)."""
    rng = random.Random(1234)
    target = tmp_path / "config.yaml"
    texts = []
    for source in SOURCES:
        texts += _mutations(source.read_text(), rng, 60)
    texts += ["", "\x00", "---\n...\n", "a: !!python/object:os.system x\n", "&a [*a]\n", "? [a]\n: b\n"]
    texts += ["\ufeffa: 1", "a: *undefined\n", "{" * 2000]
    for text in texts:
        target.write_text(text, errors="surrogateescape")
        report = load_config_report(str(target), env={})
        assert isinstance(report, ConfigReport)
        for problem in report.errors + report.warnings:
            assert problem.where.file == str(target) or problem.where.file is None or problem.where.env


def test_duration_parser_returns_or_raises_its_error() -> None:
    rng = random.Random(99)
    alphabet = "0123456789.hmsuµn-+ x"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        try:
            value = parse_go_duration(text)
        except CoerceError:
            continue
        assert isinstance(value, float)


def test_derp_map_reader_reports_but_never_raises(tmp_path: pathlib.Path) -> None:
    from pyscale.config.files import read_derp_map_file

    rng = random.Random(7)
    target = tmp_path / "derp.yaml"
    source = (DATA / "headscale" / "derp-example-v0.27.1.yaml").read_text()
    for text in _mutations(source, rng, 150) + ["\x00", "regions: 5\n", "regions:\n  1: [1]\n", "- 1\n"]:
        target.write_text(text, errors="surrogateescape")
        result = read_derp_map_file(str(target))
        assert all(p.where.file == str(target) for p in result.problems)


def test_libyaml_and_pure_python_loaders_agree(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: E501
    """The C parser is used when available; reports (lines included) must not depend on it."""
    from pyscale.config import files, source

    fast = source.Loader
    if fast is yaml.SafeLoader:
        pytest.skip("PyYAML without libyaml: only the pure-Python parser exists")
    rng = random.Random(5)
    target = tmp_path / "config.yaml"
    texts = [s.read_text() for s in SOURCES] + _mutations(SOURCES[1].read_text(), rng, 30)
    texts += ["a: [1, 2\nb: 3\n", "x: 'open\n", "- 1\n", "a: 1\na: 2\n", "a:\n\tb: 1\n"]

    def report_text(loader: object, text: str) -> str:
        monkeypatch.setattr(source, "Loader", loader)
        monkeypatch.setattr(files, "Loader", loader)
        target.write_text(text)
        r = load_config_report(str(target), env={})
        return repr((r.config, [str(p.where) for p in r.errors + r.warnings], [str(m) for m in r.mappings]))

    for text in texts:
        assert report_text(yaml.SafeLoader, text) == report_text(fast, text), text
