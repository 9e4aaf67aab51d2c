"""Tailscale wire types (tailcfg) with one explicit JSON mapping each."""
