from tests.peers.fixtures import headscale, make_tailscaled, peer_bins, pyscale

__all__ = ["headscale", "make_tailscaled", "peer_bins", "pyscale"]
