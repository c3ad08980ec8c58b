"""C2PA provenance: a development PKI, signing a released MP4 with its moderation assertion, and
reading a file's manifest back with its validation state.

Signing happens last, after all pixel work and muxing (a remux strips the manifest). The dev
PKI made on first run is clearly untrusted: production configures a PEM chain and key (or a
callback signer for a KMS/HSM) and a trust-anchor list. The private key never leaves this module:
it is not logged, not put in errors, not returned.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline import __version__

CLAIM_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")  # C2PA claimSigning EKU
MODERATION_LABEL = "org.genguard.moderation"
MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg", ".png": "image/png"}
SOFT_BINDING_ALG = "org.genguard.ss48"  # pipeline/invisible.py: 32-bit payload + CRC-16


@dataclass(frozen=True, slots=True)
class Credentials:
    chain_pem: bytes  # signer certificate, then intermediates
    key_pem: bytes
    root_pem: bytes | None = None  # a trust anchor to verify our own output with


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "genguard DEV - UNTRUSTED"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
          ca: bool, path_len: int | None, days: int, leaf: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    if leaf:
        b = (b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([CLAIM_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                            critical=False))
    else:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def dev_credentials(keys_dir: Path) -> Credentials:
    """The embedded default: a dev root CA, intermediate and ES256 signer under ``keys_dir``,
    made once. Untrusted by anyone but a verifier told to trust this root."""
    files = {n: keys_dir / n for n in ("root.pem", "chain.pem", "signer.key")}
    if not all(p.exists() for p in files.values()):
        keys_dir.mkdir(parents=True, exist_ok=True)
        root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        root = _cert("genguard dev root CA", root_key, _name("genguard dev root CA"), root_key, True, 1, 3650, False)
        mid = _cert("genguard dev intermediate", mid_key, root.subject, root_key, True, 0, 1825, False)
        leaf = _cert("genguard dev signer", leaf_key, mid.subject, mid_key, False, None, 365, True)
        pem = serialization.Encoding.PEM
        files["root.pem"].write_bytes(root.public_bytes(pem))
        files["chain.pem"].write_bytes(leaf.public_bytes(pem) + mid.public_bytes(pem))
        files["signer.key"].touch(mode=0o600)
        files["signer.key"].write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    return Credentials(files["chain.pem"].read_bytes(), files["signer.key"].read_bytes(),
                       files["root.pem"].read_bytes())


def signer_from(creds: Credentials, tsa_url: str | None = None) -> c2pa.Signer:
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=b"es256", sign_cert=creds.chain_pem,
                                                    private_key=creds.key_pem, ta_url=(tsa_url or "").encode() or None))


def callback_signer(sign: Callable[[bytes], bytes], chain_pem: bytes, tsa_url: str | None = None) -> c2pa.Signer:
    """For keys that never leave a KMS or HSM: ``sign`` receives the bytes to sign, returns the signature."""
    return c2pa.Signer.from_callback(sign, c2pa.C2paSigningAlg.ES256, chain_pem.decode(), tsa_url)


def mime_of(path: Path) -> str:
    if (mime := MIME.get(path.suffix.lower())) is None:
        raise ValueError(f"{path.name}: C2PA signing here covers {', '.join(sorted(MIME))}")
    return mime


def manifest(moderation: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "claim_generator_info": [{"name": "genguard", "version": __version__}],
        "title": title,
        "assertions": [{"label": MODERATION_LABEL, "data": moderation}],
    }


def sign_media(src: Path, dest: Path, signer: c2pa.Signer, moderation: dict[str, Any],
               ingredient: Path | None = None, watermark: int | None = None) -> bytes:
    """Write ``dest`` (same format as ``src``, by suffix): ``src`` with an embedded, signed manifest
    (created by a trained model, and the moderation summary); ``ingredient`` is the original upload;
    ``watermark`` the invisible payload, recorded as a soft binding with a watermarked action. Returns the
    signed manifest store's bytes (kept server-side, so a stripped copy can be given its manifest back)."""
    spec = manifest(moderation, dest.name)
    if watermark is not None:
        value = base64.b64encode(watermark.to_bytes(4, "big")).decode()
        spec["assertions"].append({"label": "c2pa.soft-binding", "data": {
            "alg": SOFT_BINDING_ALG, "blocks": [{"scope": {}, "value": value}]}})
    builder = c2pa.Builder.from_json(json.dumps(spec))
    builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.TRAINED_ALGORITHMIC_MEDIA)
    if watermark is not None:
        agent = {"name": "genguard", "version": __version__}
        builder.add_action({"action": "c2pa.watermarked", "softwareAgent": agent})
    if ingredient is not None:
        with ingredient.open("rb") as f:
            builder.add_ingredient({"title": ingredient.name, "relationship": "componentOf"}, mime_of(ingredient), f)
    with src.open("rb") as source, dest.open("w+b") as out:
        return builder.sign(signer, mime_of(src), source, out)


@dataclass(slots=True)
class Provenance:
    present: bool
    state: str | None = None  # Valid, Trusted, Invalid
    codes: list[str] = field(default_factory=list)
    signer: str | None = None
    assertions: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def unreadable_code(e: c2pa.C2paError) -> str:
    """A stable, public code for why c2pa could not read a file (its error classes are private:
    ``_C2paOther``), e.g. ``c2pa.unreadable.other`` for boxes nested too deep to parse."""
    kind = next((name for name in dir(c2pa.C2paError) if getattr(c2pa.C2paError, name, None) is type(e)), "error")
    return f"c2pa.unreadable.{kind.lower()}"


def read(path: Path, trust_anchors: bytes | None = None) -> Provenance:
    """The manifest of ``path`` with its validation state and every validation code."""
    context = c2pa.Context.from_dict({"trust": {"trust_anchors": trust_anchors.decode()}}) if trust_anchors else None
    data = path.read_bytes()
    try:
        reader = c2pa.Reader.try_create(MIME.get(path.suffix.lower(), "video/mp4"), io.BytesIO(data), context=context)
    except c2pa.C2paError as e:  # a damaged manifest (or file) cannot even be parsed: invalid, never absent
        return Provenance(True, "Invalid", [unreadable_code(e)], error=str(e))
    if reader is None:
        return Provenance(False)
    with reader:
        store = json.loads(reader.json())
        active = store["manifests"][store["active_manifest"]]
        results = reader.get_validation_results() or {}
        codes = sorted({item["code"] for status in results.get("activeManifest", {}).values()
                        for item in status} if isinstance(results.get("activeManifest"), dict) else set())
        codes += [s["code"] for s in store.get("validation_status", []) if s["code"] not in codes]
        return Provenance(True, reader.get_validation_state(), codes,
                          (active.get("signature_info") or {}).get("common_name")
                          or (active.get("signature_info") or {}).get("issuer"),
                          {a["label"]: a.get("data") for a in active.get("assertions", [])})
