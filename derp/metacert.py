"""DERP "meta certificate": an extra certificate in the TLS chain that tells Go clients the relay's DERP key
and protocol version before any HTTP (Tailscale `derp/derphttp`, parseMetaCert / derper initMetacert).

Its subject CN is "derpkey" + 64 hex of the server's public key and its serial number is the DERP protocol
version. A client that finds it (over TLS 1.3) sends `Derp-Fast-Start: 1` and does not wait for the 101. The
certificate is only parsed, never trusted: it rides along after the real chain, signed by a throwaway key.
"""

from __future__ import annotations

import datetime
import warnings

from . import frames

VALIDITY = datetime.timedelta(days=3650)


def meta_cert_pem(server_public: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    # 71 characters: longer than X.520's 64-character CN bound, which Go does not enforce (derper's is too)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cn = x509.NameAttribute(NameOID.COMMON_NAME, "derpkey" + server_public.hex(), _validate=False)
    name = x509.Name([cn])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(frames.PROTOCOL_VERSION)
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + VALIDITY)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def chain_with_meta_cert(cert_chain_pem: bytes, server_public: bytes) -> bytes:
    """The configured chain (leaf first) followed by the meta certificate."""
    return cert_chain_pem.rstrip(b"\n") + b"\n" + meta_cert_pem(server_public)
