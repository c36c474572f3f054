"""`easel certs init`: a private root and a C2PA signing certificate for a local stack.

C2PA validators refuse a self-signed signing certificate, so this makes two: a root CA (the
trust anchor a verifier is given: docs/provenance.md) and an end-entity certificate it signs,
with what the C2PA certificate profile asks for: CA:FALSE, keyUsage digitalSignature, an
extended key usage (emailProtection and documentSigning) and an Organization name.  Keys are
P-256 (ES256), written mode 0600; the root's key stays beside it to issue the next signer.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

ROOT_YEARS = 10
SIGNER_DAYS = 2 * 365  # without a timestamp, a manifest validates while its signer is valid
DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"


@dataclass(frozen=True)
class CertPaths:
    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root.pem"

    @property
    def root_key(self) -> Path:
        return self.dir / "root.key"

    @property
    def chain(self) -> Path:
        return self.dir / "signer-chain.pem"

    @property
    def key(self) -> Path:
        return self.dir / "signer.key"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.root, self.chain, self.key))


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)  # an older file keeps its mode through O_TRUNC


def init(directory: Path, organization: str = "Easel (local)", force: bool = False,
         ) -> CertPaths:
    """Make (or keep, unless `force`) the root and the signer under `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

    paths = CertPaths(directory)
    if paths.complete() and not force:
        return paths
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # clock skew between hosts

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                             key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = name(f"{organization} C2PA root")
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365 * ROOT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(sign=False, ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
                           critical=False)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (x509.CertificateBuilder().subject_name(name(f"{organization} image signer"))
              .issuer_name(root_name).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=SIGNER_DAYS))
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(usage(sign=True, ca=False), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                                    ObjectIdentifier(DOCUMENT_SIGNING)]),
                             critical=False)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                  root_key.public_key()), critical=False)
              .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    _write(paths.root_key, root_key.private_bytes(pem, pkcs8, plain), 0o600)
    _write(paths.key, key.private_bytes(pem, pkcs8, plain), 0o600)
    _write(paths.root, root.public_bytes(pem), 0o644)
    # The chain a signer embeds: its own certificate first, then the issuer's.
    _write(paths.chain, signer.public_bytes(pem) + root.public_bytes(pem), 0o644)
    return paths


def signing_env(env: dict[str, str], data_dir: Path) -> str | None:
    """`easel up`: sign with the operator's chain when EASEL_C2PA_* are set, else with a local
    one under `data_dir`/certs (made once).  Returns the root a verifier should trust, if
    local."""
    if env.get("EASEL_C2PA_CERT_CHAIN") or env.get("EASEL_C2PA_PRIVATE_KEY"):
        return None
    paths = init(data_dir / "certs")
    env["EASEL_C2PA_CERT_CHAIN"] = str(paths.chain)
    env["EASEL_C2PA_PRIVATE_KEY"] = str(paths.key)
    return str(paths.root)
