"""DERP relay and STUN server; imports nothing from pyscale so it can run alone."""
