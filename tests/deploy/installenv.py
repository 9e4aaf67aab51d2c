"""What the install tests hand to deploy/install.sh for an offline install.

The service's venv is made from the system Python, and the dependencies are the ones this test run
already imports (``--deps-from`` its site-packages). That only works when both are the same Python
minor version (compiled extensions) and the site-packages is not hidden by ProtectHome.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import sysconfig

SITE_PACKAGES = sysconfig.get_path("purelib")
SYSTEM_PYTHON = "/usr/bin/python3"


@functools.cache
def unusable() -> str | None:
    """Why the offline install cannot work here, or None."""
    if os.geteuid() != 0:
        return "needs root (useradd --prefix, chown, namespaces)"
    if not os.path.exists(SYSTEM_PYTHON):
        return f"no {SYSTEM_PYTHON}"
    res = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                         text=True, timeout=30)
    if res.stdout.strip() != str(sys.version_info[:2]):
        return f"{SYSTEM_PYTHON} is {res.stdout.strip()}, the test venv {sys.version_info[:2]}: extensions differ"
    if SITE_PACKAGES.startswith(("/root/", "/home/")):
        return f"{SITE_PACKAGES} is hidden from the service by ProtectHome"
    return None
