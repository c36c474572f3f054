"""`easel verify FILE...`: what an image says about where it came from (docs/provenance.md).

Two layers, reported separately: the C2PA manifest (validated offline by c2pa-python; "Trusted"
only when its chain ends in a root given with --trust) and the invisible watermark (found with
the key the workers used).  Exit status 0 when every file carries at least one intact layer, 1
when one carries none (or cannot be read).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

LOCAL_ROOT = Path(".easel/certs/root.pem")  # what `easel up` makes (cli/certs.py)


def inspect(data: bytes, trust: str | None, key: str) -> dict[str, Any]:
    from workers.provenance import read_credentials
    from workers.watermark import THRESHOLD, detect

    report: dict[str, Any] = {}
    creds = read_credentials(data, trust)
    if creds is None:
        report["c2pa"] = None
    else:
        manifest = creds.manifest or {}
        signature = manifest.get("signature_info") or {}
        report["c2pa"] = {
            "validation_state": creds.state, "failures": creds.failures,
            "claim_generator": [f"{g.get('name')} {g.get('version', '')}".strip()
                                for g in manifest.get("claim_generator_info", [])],
            "digital_source_types": creds.source_types, "models": creds.models,
            "actions": [a.get("action") for a in creds.actions],
            "signer": signature.get("common_name"), "issuer": signature.get("issuer")}
    try:
        with Image.open(io.BytesIO(data)) as image:
            mark = detect(image, key)
        report["watermark"] = {"found": mark.found, "score": round(mark.score, 1),
                               "threshold": THRESHOLD, "blocks": mark.blocks}
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        report["watermark"] = {"found": False, "error": str(exc)}
    return report


def intact(report: dict[str, Any]) -> bool:
    c2pa = report.get("c2pa") or {}
    return c2pa.get("validation_state") in ("Valid", "Trusted") or \
        bool(report.get("watermark", {}).get("found"))


def describe(path: str, report: dict[str, Any]) -> str:
    lines = [path]
    c2pa = report.get("c2pa")
    if "error" in report:
        lines.append(f"  error: {report['error']}")
    elif c2pa is None:
        lines.append("  C2PA: no manifest (never signed, or its metadata was stripped)")
    else:
        kinds = ", ".join(t.rsplit("/", 1)[-1] for t in c2pa["digital_source_types"]) or "?"
        lines.append(f"  C2PA: {c2pa['validation_state']}: {kinds}; models "
                     f"{', '.join(c2pa['models']) or '?'}; generator "
                     f"{', '.join(c2pa['claim_generator'])}; actions "
                     f"{', '.join(c2pa['actions'])}; signed by {c2pa['signer']} "
                     f"(issuer {c2pa['issuer']})")
        lines += [f"    failure {f}" for f in c2pa["failures"]]
    mark = report.get("watermark")
    if mark is not None:
        if "error" in mark:
            lines.append(f"  watermark: not checked ({mark['error']})")
        else:
            lines.append(f"  watermark: {'FOUND' if mark['found'] else 'not found'} (score "
                         f"{mark['score']}, found at {mark['threshold']}; {mark['blocks']} "
                         "blocks)")
    return "\n".join(lines)


def run(files: list[str], trust_file: str | None, key: str | None, as_json: bool) -> int:
    trust_path = Path(trust_file) if trust_file else (LOCAL_ROOT if LOCAL_ROOT.is_file() else None)
    trust = trust_path.read_text() if trust_path else None
    key = key or os.environ.get("EASEL_WATERMARK_KEY") or "easel"
    reports: dict[str, dict[str, Any]] = {}
    for name in files:
        try:
            reports[name] = inspect(Path(name).read_bytes(), trust, key)
        except OSError as exc:
            reports[name] = {"error": str(exc)}
    if as_json:
        print(json.dumps(reports, indent=2))
    else:
        if trust_path is not None:
            print(f"trusting the root in {trust_path}")
        for name, report in reports.items():
            print(describe(name, report))
    return 0 if all(intact(r) for r in reports.values()) else 1
