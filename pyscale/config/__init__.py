"""pyscale configuration: Headscale v0.27.1's config file format, its pre-0.23 key names (mapped, with one
warning each), HEADSCALE_*/PYSCALE_* environment overrides, validation with file:line, and the embedded
default used when there is no config file.

    cfg = load_config(path)                        # raises ConfigError listing every problem; logs warnings
    report = load_config_report(path, env, embedded_data_dir=..., check_files=...)
                                                   # never raises: .config .ok .errors .warnings .mappings
    cfg = load_cli_config(path, embedded_data_dir=...)   # for CLI verbs: server-only problems don't stop it
    print(format_configtest(report))               # what `pyscale configtest` prints (ends with OK / FAIL)
    cfg = embedded_default(default_data_dir())     # no-config mode of `pyscale serve`
    print(describe_locations(cfg))                 # where everything is, for the startup log
    dump_config(cfg)                               # effective config as a YAML-ready dict

Attribute paths follow the YAML key paths (cfg.dns.nameservers.split, cfg.derp.server.stun_listen_addr);
``database.postgres.pass`` is ``pass_`` and ``dns.nameservers.global`` is ``global_`` (Python keywords).
Durations are float seconds, lists are tuples, prefixes are ipaddress networks, file modes are ints.
"""

from pyscale.config.dump import dump_config
from pyscale.config.embedded import default_data_dir, describe_locations, embedded_default
from pyscale.config.load import find_config_file, load_cli_config, load_config, load_config_report
from pyscale.config.model import Config
from pyscale.config.report import ConfigError, ConfigReport, LegacyMapping, Problem, Where, format_configtest

__all__ = [
    "Config",
    "ConfigError",
    "ConfigReport",
    "LegacyMapping",
    "Problem",
    "Where",
    "default_data_dir",
    "describe_locations",
    "dump_config",
    "embedded_default",
    "find_config_file",
    "format_configtest",
    "load_cli_config",
    "load_config",
    "load_config_report",
]
