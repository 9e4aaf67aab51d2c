"""pyscale: a Headscale-compatible Tailscale control server."""

__version__ = "0.1.0"
