"""C2PA content credentials: `easel certs init` makes a chain c2pa accepts, workers sign every
format and operation with the right digital source type, and the manifest covers the final
(watermarked) bytes."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from cli.certs import CertPaths, init, signing_env
from core.jobs import RenderJob
from core.settings import WorkerSettings
from workers import finishing, watermark
from workers.encoding import encode
from workers.provenance import COMPOSITE, GENERATED, Origin, Signer, read_credentials


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return init(tmp_path_factory.mktemp("easel") / "certs")


@pytest.fixture(scope="module")
def signer(certs: CertPaths) -> Signer:
    return Signer(certs.chain, certs.key)


def _image() -> Image.Image:
    return Image.new("RGB", (128, 128), (250, 250, 250))


def test_certs_init_makes_a_root_and_an_end_entity_signer_with_private_keys(
        certs: CertPaths) -> None:
    for key in (certs.key, certs.root_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(certs.dir.stat().st_mode) == 0o700
    leaf, root = x509.load_pem_x509_certificates(certs.chain.read_bytes())
    assert root.public_bytes(Encoding.PEM) == certs.root.read_bytes()
    assert leaf.issuer == root.subject != leaf.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in ekus
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    before = certs.chain.read_bytes()
    assert init(certs.dir).chain.read_bytes() == before  # kept: made once


def test_certs_init_force_replaces_and_up_keeps_an_operators_chain(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    root = signing_env(env, tmp_path)
    assert root == str(tmp_path / "certs" / "root.pem")
    assert Path(env["EASEL_C2PA_CERT_CHAIN"]).is_file()
    assert Path(env["EASEL_C2PA_PRIVATE_KEY"]).is_file()
    first = Path(env["EASEL_C2PA_CERT_CHAIN"]).read_bytes()
    assert init(tmp_path / "certs", force=True).chain.read_bytes() != first
    own = {"EASEL_C2PA_CERT_CHAIN": "/etc/easel/chain.pem",
           "EASEL_C2PA_PRIVATE_KEY": "/etc/easel/key.pem"}
    assert signing_env(own, tmp_path / "other") is None
    assert own["EASEL_C2PA_CERT_CHAIN"] == "/etc/easel/chain.pem"
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize(("kind", "source_type"), [("generate", GENERATED), ("edit", COMPOSITE),
                                                   ("variation", COMPOSITE)])
def test_every_format_and_operation_is_signed_with_its_source_type(
        signer: Signer, certs: CertPaths, fmt: str, kind: str, source_type: str) -> None:
    parent = encode(_image(), "png") if kind != "generate" else None
    signed = signer.sign(encode(_image(), fmt), fmt, Origin(kind, "dall-e-3", "shapes"), parent)
    trusted = read_credentials(signed, certs.root.read_text())
    assert trusted is not None and trusted.state == "Trusted", trusted
    assert trusted.source_types == [source_type]
    assert trusted.models == ["dall-e-3"]
    assert trusted.manifest is not None
    assert trusted.manifest["claim_generator_info"][0]["name"] == "Easel"
    if kind != "generate":  # the input is the parent ingredient, opened then edited
        assert [a["action"] for a in trusted.actions] == ["c2pa.opened", "c2pa.edited"]
        assert trusted.manifest["ingredients"][0]["relationship"] == "parentOf"
    plain = read_credentials(signed)  # no trust anchor: intact, but not trusted
    assert plain is not None and plain.state == "Valid"
    with Image.open(io.BytesIO(signed)) as image:
        assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]


def test_the_sdk_reader_sees_the_manifest_and_a_changed_pixel_breaks_it(
        signer: Signer) -> None:
    signed = signer.sign(encode(_image(), "png"), "png", Origin("generate", "gpt-image-1"))
    with c2pa.Reader("image/png", io.BytesIO(signed)) as reader:
        manifest = reader.get_active_manifest()
    assert manifest is not None
    assert GENERATED in str(manifest["assertions"])
    # Stripping metadata loses the manifest (the watermark is the fallback for that).
    stripped = io.BytesIO()
    Image.open(io.BytesIO(signed)).save(stripped, "PNG")
    assert read_credentials(stripped.getvalue()) is None
    # Same metadata, other pixels: the data hash no longer matches.
    start = signed.index(b"IDAT") + 20
    tampered = signed[:start] + bytes([signed[start] ^ 0xFF]) + signed[start + 1:]
    creds = read_credentials(tampered)
    assert creds is not None and creds.state == "Invalid"


def test_a_self_signed_certificate_is_refused_when_the_worker_starts(
        certs: CertPaths, tmp_path: Path) -> None:
    with pytest.raises(c2pa.C2paError):
        Signer(certs.root, certs.root_key)  # the root signs itself: C2PA refuses it
    settings = WorkerSettings(c2pa_cert_chain=certs.root, c2pa_private_key=certs.root_key)
    with pytest.raises(SystemExit, match="C2PA signing cannot start"):
        finishing.Finisher(settings)
    with pytest.raises(SystemExit, match="both"):
        finishing.Finisher(WorkerSettings(c2pa_cert_chain=certs.chain))


class _Runtime:
    def __init__(self, settings: WorkerSettings, stored: dict[str, bytes]) -> None:
        self.settings = settings
        self.storage = type("S", (), {"get": lambda _self, key: stored[key]})()


def _job(kind: str = "generate", fmt: str = "png") -> RenderJob:
    return RenderJob(job_id="j", kind=kind, model="gpt-image-1", pipeline="shapes", width=128,
                     height=128, n=1, seeds=[1], steps=4, guidance=5.0, output_format=fmt,
                     image_keys=["inputs/p/image0.png"] if kind != "generate" else [])


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_a_finished_image_is_watermarked_then_signed_over_its_final_bytes(
        certs: CertPaths, fmt: str) -> None:
    settings = WorkerSettings(c2pa_cert_chain=certs.chain, c2pa_private_key=certs.key)
    stored = {"inputs/p/image0.png": encode(_image(), "png")}
    for kind, source_type in (("generate", GENERATED), ("edit", COMPOSITE)):
        data = finishing.for_job(_Runtime(settings, stored), _job(kind, fmt))(_image())
        creds = read_credentials(data, certs.root.read_text())
        assert creds is not None and creds.state == "Trusted" and creds.failures == []
        assert creds.source_types == [source_type]
        with Image.open(io.BytesIO(data)) as image:
            assert watermark.detect(image, "easel").found


def test_without_a_chain_images_are_watermarked_but_unsigned() -> None:
    data = finishing.for_job(_Runtime(WorkerSettings(), {}), _job())(_image())
    assert read_credentials(data) is None
    with Image.open(io.BytesIO(data)) as image:
        assert watermark.detect(image, "easel").found
    off = WorkerSettings(watermark=False)
    with Image.open(io.BytesIO(finishing.for_job(_Runtime(off, {}), _job())(_image()))) as im:
        assert not watermark.detect(im, "easel").found
