"""C2PA content credentials: a signed manifest in every result image (docs/provenance.md).

The manifest says what made the image (Easel, as the claim generator, and the model id), and how:
IPTC's digital source type `trainedAlgorithmicMedia` for a generation; for an edit or a
variation, the uploaded image as the parent ingredient (`c2pa.opened`) and a `c2pa.edited`
action of type `compositeWithTrainedAlgorithmicMedia`.  It is signed offline with the
operator's certificate chain and key (no timestamp authority, no network), and it hashes the
final encoded bytes, so it is the last thing done to an image (after the watermark).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core.storage import CONTENT_TYPES, sniff

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATED = IPTC + "trainedAlgorithmicMedia"
COMPOSITE = IPTC + "compositeWithTrainedAlgorithmicMedia"
CLAIM_GENERATOR = "Easel"
INPUT_ID = "easel-input"  # the parent ingredient's label, named by the c2pa.opened action


def easel_version() -> str:
    try:
        from importlib.metadata import version

        return version("easel")
    except Exception:
        return "0.1.0"


def algorithm_of(key_pem: bytes) -> str:
    """The C2PA signing algorithm that fits a PEM private key (es256 for P-256, ...)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in curves:
            return curves[key.curve.name]
        raise ValueError(f"C2PA cannot sign with an EC key on {key.curve.name}")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ValueError(f"C2PA cannot sign with a {type(key).__name__}")


@dataclass(frozen=True)
class Origin:
    """What a manifest says about one image."""

    kind: str  # generate, edit, variation
    model: str
    pipeline: str = ""

    @property
    def source_type(self) -> str:
        return GENERATED if self.kind == "generate" else COMPOSITE

    def actions(self, with_parent: bool) -> list[dict[str, Any]]:
        agent = {"name": self.model}
        note = f"model {self.model!r}" + (f" (pipeline {self.pipeline!r})" if self.pipeline else "")
        what = {"generate": "Generated", "edit": "Inpainted"}.get(self.kind, "Varied")
        if not with_parent:  # a generation, or an input that could not be read
            return [{"action": "c2pa.created", "digitalSourceType": self.source_type,
                     "softwareAgent": agent, "description": f"{what} by Easel, {note}"}]
        return [{"action": "c2pa.opened", "parameters": {"ingredientIds": [INPUT_ID]}},
                {"action": "c2pa.edited", "digitalSourceType": COMPOSITE,
                 "softwareAgent": agent, "description": f"{what} by Easel, {note}"}]


class Signer:
    """One per worker process: the certificate chain and key are read and checked once."""

    def __init__(self, cert_chain: Path, private_key: Path, algorithm: str = "") -> None:
        import c2pa

        chain, key = cert_chain.read_bytes(), private_key.read_bytes()
        self.algorithm = algorithm or algorithm_of(key)
        self._signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(self.algorithm, chain, key,
                                                                 None))
        # No thumbnail (the image is the asset), no re-verification of what was just signed
        # (tests read every format back): signing stays about a millisecond per image.
        self._context = c2pa.Context.from_dict({
            "builder": {"thumbnail": {"enabled": False},
                        "claim_generator_info": {"name": CLAIM_GENERATOR,
                                                 "version": easel_version()}},
            "verify": {"verify_after_sign": False, "remote_manifest_fetch": False,
                       "ocsp_fetch": False}})
        self._lock = threading.Lock()  # the native signer is not documented as thread-safe
        # c2pa checks the certificate profile (self-signed, CA:TRUE, no EKU...) only when it
        # signs: sign a probe now, so a bad chain stops the worker at start, not every job.
        probe = io.BytesIO()
        Image.new("RGB", (8, 8)).save(probe, "PNG")
        self.sign(probe.getvalue(), "png", Origin("generate", "probe"))

    def sign(self, data: bytes, fmt: str, origin: Origin, parent: bytes | None = None) -> bytes:
        """`data` (encoded as `fmt`) with the manifest embedded; `parent` is the input image of
        an edit or a variation (PNG, as the gateway stores inputs)."""
        import c2pa

        manifest = {"title": f"easel-{origin.kind}.{fmt}",
                    "assertions": [{"label": "c2pa.actions.v2",
                                    "data": {"actions": origin.actions(parent is not None)}}]}
        out = io.BytesIO()
        with self._lock, c2pa.Builder(manifest, context=self._context) as builder:
            if parent is not None:
                builder.add_ingredient({"title": "input.png", "relationship": "parentOf",
                                        "label": INPUT_ID}, "image/png",
                                       io.BytesIO(parent))
            builder.sign(self._signer, CONTENT_TYPES[fmt], io.BytesIO(data), out)
        return out.getvalue()


@dataclass(frozen=True)
class Credentials:
    """What c2pa's Reader makes of a file: the active manifest and its validation state
    ("Invalid", "Valid": intact and signed, "Trusted": and by a chain ending in a trusted root)."""

    state: str | None
    manifest: dict[str, Any] | None
    failures: list[str]

    @property
    def actions(self) -> list[dict[str, Any]]:
        return [action for assertion in (self.manifest or {}).get("assertions", [])
                if str(assertion.get("label", "")).startswith("c2pa.actions")
                for action in assertion.get("data", {}).get("actions", [])]

    @property
    def source_types(self) -> list[str]:
        return [a["digitalSourceType"] for a in self.actions if "digitalSourceType" in a]

    @property
    def models(self) -> list[str]:
        return [a["softwareAgent"]["name"] for a in self.actions
                if isinstance(a.get("softwareAgent"), dict) and "name" in a["softwareAgent"]]


def read_credentials(data: bytes, trust_anchors: str | None = None) -> Credentials | None:
    """The file's C2PA manifest, validated offline (trusted only under `trust_anchors`, PEM
    roots); None when it carries none."""
    import c2pa

    fmt = sniff(data)
    if fmt is None:
        return None
    mime = CONTENT_TYPES[fmt]
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    try:
        reader = c2pa.Reader(mime, io.BytesIO(data), context=c2pa.Context.from_dict(settings))
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "not found" in str(exc).lower():
            return None
        return Credentials("Invalid", None, [str(exc)])
    with reader:
        results = reader.get_validation_results() or {}
        failures = [f"{f.get('code')}: {f.get('explanation', '')}"
                    for f in (results.get("activeManifest") or {}).get("failure", [])]
        return Credentials(reader.get_validation_state(), reader.get_active_manifest(), failures)
