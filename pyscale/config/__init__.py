"""pyscale configuration: Headscale v0.27.1's config file format, its pre-0.23 key names (mapped, with a
warning each), HEADSCALE_*/PYSCALE_* environment overrides, validation with file:line, and the embedded
default used when there is no config file.

    cfg = load_config("/etc/headscale/config.yaml")        # raises ConfigError listing every problem
    report = load_config_report(path)                     # .config .errors .warnings .mappings
    print(format_configtest(report))                      # what `pyscale configtest` prints
    cfg = embedded_default("/var/lib/pyscale")            # no-config mode of `pyscale serve`
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
