"""Release: the moving visible mark on real encodes, and real C2PA signing and validation
(c2pa-python), with the dev PKI and with a foreign one."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.media import Limits, decode, probe
from pipeline.records import Job
from pipeline.release import wmkeys
from pipeline.release.invisible import encode_bits
from pipeline.release.produce import moderation_summary, release_file
from pipeline.release.provenance import (
    MODERATION_LABEL,
    callback_signer,
    dev_credentials,
    read,
    sign_media,
    signer_from,
)
from pipeline.release.verify import find_watermark
from pipeline.release.watermark import MarkStyle, apply_marks
from pipeline.settings import Settings
from tests.helpers import SINTEL, ffmpeg

JOB = Job(job_id="job-release-test", tenant="acme", sha256="ab" * 32, media_uri="", status="allowed",
          prompt="a secret prompt", decision={"action": "allow", "policy_id": "genguard-default",
                                              "policy_version": "0123456789abcdef", "model_versions": {"nsfw": "x"},
                                              "unscored": ["clip"]})


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


PAYLOAD = 0x5EC0DE42


@pytest.fixture(scope="module")
def keyring_settings(keys: Path) -> Settings:
    return Settings(var_dir=keys.parent / "var-wm")  # the dev keyring is made under its var/keys


@pytest.fixture(scope="module")
def released(keys: Path, keyring_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("released") / "out.mp4"
    ring = wmkeys.load(keyring_settings)
    done = release_file(SINTEL, dest, JOB, signer_from(dev_credentials(keys)), ring.key, payload=PAYLOAD)
    assert done.payload == PAYLOAD and len(done.manifest) > 1000
    return dest


def test_invisible_watermark_survives_reencode_and_manifest_strip(released: Path, keyring_settings: Settings,
                                                                  tmp_path: Path) -> None:
    ring = wmkeys.load(keyring_settings)
    assert find_watermark(released, ring)[0].payload == PAYLOAD
    reencoded = tmp_path / "reencoded.mp4"
    ffmpeg("-i", str(released), "-c:v", "libx264", "-crf", "23", "-preset", "veryfast", "-c:a", "copy",
           str(reencoded))
    assert not read(reencoded).present  # the manifest is gone...
    found, key_id = find_watermark(reencoded, ring)  # ...the watermark is not
    assert (found.payload, key_id) == (PAYLOAD, ring.current)
    assert np.mean(np.array(found.bits) == encode_bits(PAYLOAD)) == 1.0  # bit accuracy after CRF 23
    assert find_watermark(SINTEL, ring)[0].payload is None  # no false positive on the unmarked original


def test_watermark_key_is_a_secret_that_rotates(released: Path, keyring_settings: Settings, tmp_path: Path) -> None:
    """The dev keyring is private (0600); a payload cannot be read without the key it was embedded with;
    after a rotation old releases stay readable under their key id; the secret is in no repr."""
    path = wmkeys.path_of(keyring_settings)
    assert path.stat().st_mode & 0o777 == 0o600
    old = wmkeys.load(keyring_settings)
    stranger = wmkeys.Keyring("other", {"other": b"x" * 32})
    assert find_watermark(released, stranger) == (find_watermark(released, stranger)[0], None)
    assert find_watermark(released, stranger)[0].payload is None
    new_id = wmkeys.rotate(keyring_settings)
    ring = wmkeys.load(keyring_settings)
    assert ring.current == new_id != old.current and set(ring.keys) == {old.current, new_id}
    assert find_watermark(released, ring)[1] == old.current and path.stat().st_mode & 0o777 == 0o600
    assert old.key.hex() not in repr(ring) and old.key.hex() not in str(ring)
    broken = tmp_path / "broken.json"
    broken.write_text('{"current": "a", "keys": {"a": "zz' + old.key.hex() + '"}}')
    with pytest.raises(wmkeys.KeyringError, match=str(broken)) as e:
        wmkeys.load(Settings(watermark_key_path=broken))
    assert old.key.hex() not in str(e.value)
    with pytest.raises(wmkeys.KeyringError, match="does not exist"):
        wmkeys.load(Settings(watermark_key_path=tmp_path / "missing.json"))


def test_manifest_records_the_watermark(released: Path) -> None:
    found = read(released)
    binding = found.assertions["c2pa.soft-binding"]
    assert binding["alg"] == "org.genguard.ss48"
    assert base64.b64decode(binding["blocks"][0]["value"]) == PAYLOAD.to_bytes(4, "big")
    assert "c2pa.watermarked" in [a["action"] for a in found.assertions["c2pa.actions.v2"]["actions"]]


def test_release_is_trusted_against_the_dev_anchor(keys: Path, released: Path) -> None:
    creds = dev_credentials(keys)
    found = read(released, creds.root_pem)
    assert found.present and found.state == "Trusted"
    assert "signingCredential.trusted" in found.codes and "assertion.bmffHash.match" in found.codes
    assert found.signer == "genguard dev signer"
    actions = found.assertions["c2pa.actions.v2"]["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    moderation = found.assertions[MODERATION_LABEL]
    assert moderation["job_id"] == JOB.job_id and moderation["policy_version"] == "0123456789abcdef"
    assert moderation["unscored_signals"] == ["clip"] and "prompt" not in moderation  # no opt-in, no prompt
    assert creds.key_pem not in released.read_bytes()


def test_a_key_that_never_leaves_its_kms_signs_through_the_release_path(keys: Path, tmp_path: Path) -> None:
    """The KMS is mocked (none can run here): a callback that signs with the dev key in this process,
    as a KMS would with a key it never hands out. The release path must accept it and stay Trusted."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    creds = dev_credentials(keys)
    key = serialization.load_pem_private_key(creds.key_pem, password=None)
    calls: list[int] = []

    def kms_sign(data: bytes) -> bytes:
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr, call-arg]

    clip = tmp_path / "short.mp4"
    ffmpeg("-i", str(SINTEL), "-t", "1.5", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip))
    out = tmp_path / "kms.mp4"
    release_file(clip, out, JOB, callback_signer(kms_sign, creds.chain_pem), b"k" * 16, payload=PAYLOAD)
    found = read(out, creds.root_pem)
    assert calls, "the callback was never asked to sign"
    assert found.state == "Trusted" and found.signer == "genguard dev signer"
    assert found.assertions[MODERATION_LABEL]["job_id"] == JOB.job_id


def test_without_the_anchor_it_is_valid_but_untrusted(released: Path) -> None:
    found = read(released)
    assert found.state == "Valid" and "signingCredential.untrusted" in found.codes


def test_a_flipped_media_byte_is_a_hash_mismatch(keys: Path, released: Path, tmp_path: Path) -> None:
    data = bytearray(released.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.mp4"
    bad.write_bytes(bytes(data))
    found = read(bad, dev_credentials(keys).root_pem)
    assert found.state == "Invalid" and "assertion.bmffHash.mismatch" in found.codes


def test_a_foreign_chain_is_untrusted(keys: Path, tmp_path: Path) -> None:
    foreign = dev_credentials(tmp_path / "foreign-keys")  # another PKI, same shape
    out = tmp_path / "foreign.mp4"
    sign_media(SINTEL, out, signer_from(foreign), moderation_summary(JOB))
    assert read(out, dev_credentials(keys).root_pem).state == "Valid"  # valid signature, not our anchor
    assert "signingCredential.untrusted" in read(out, dev_credentials(keys).root_pem).codes
    assert read(out, foreign.root_pem).state == "Trusted"


def test_unsigned_and_remuxed_files_have_no_manifest(released: Path, tmp_path: Path) -> None:
    assert not read(SINTEL).present
    remuxed = tmp_path / "remux.mp4"
    ffmpeg("-i", str(released), "-c", "copy", str(remuxed))
    assert not read(remuxed).present  # why signing comes last


def test_release_keeps_audio_and_is_faststart_h264(released: Path) -> None:
    info = probe(released, Limits())
    assert (info.codec, info.audio_codec) == ("h264", "aac")
    assert info.duration_s == pytest.approx(probe(SINTEL, Limits()).duration_s, abs=0.1)
    head = released.read_bytes()
    assert head.find(b"moov") < head.find(b"mdat")


def test_the_mark_moves_across_corners(tmp_path: Path) -> None:
    src = tmp_path / "black.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:size=1280x720:rate=30:duration=8", "-c:v", "libx264", str(src))
    out = tmp_path / "marked.mp4"
    apply_marks(src, out, probe(src, Limits()), MarkStyle(period_s=3.0), tmp_path)

    def mark_centre(t: float) -> tuple[float, float]:
        frame = next(f for f in decode(out, Limits(sample_fps=2)).frames if abs(f.t - t) < 0.05)
        ys, xs = np.nonzero(frame.image.max(axis=2) > 60)
        assert len(xs) > 50, f"no mark at {t}s"
        return xs.mean() / frame.image.shape[1], ys.mean() / frame.image.shape[0]

    top_left, bottom_right, top_right = mark_centre(1.0), mark_centre(4.0), mark_centre(7.0)
    assert top_left[0] < 0.35 and top_left[1] < 0.3
    assert bottom_right[0] > 0.65 and bottom_right[1] > 0.7
    assert top_right[0] > 0.65 and top_right[1] < 0.3
    moving = mark_centre(2.5)  # between corners: mid-glide
    assert 0.2 < moving[0] < 0.8


def test_the_key_is_private(keys: Path) -> None:
    dev_credentials(keys)
    assert (keys / "signer.key").stat().st_mode & 0o077 == 0
    result = subprocess.run(["grep", "-r", "PRIVATE KEY", str(keys / "chain.pem")], capture_output=True)
    assert result.returncode == 1


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_images_sign_and_verify_too(keys: Path, tmp_path: Path, suffix: str) -> None:
    import skimage.data
    from PIL import Image

    src = tmp_path / f"astronaut{suffix}"
    Image.open(Path(skimage.data.__file__).parent / "astronaut.png").convert("RGB").save(src)
    out = tmp_path / f"signed{suffix}"
    sign_media(src, out, signer_from(dev_credentials(keys)), moderation_summary(JOB))
    found = read(out, dev_credentials(keys).root_pem)
    assert found.state == "Trusted" and found.assertions[MODERATION_LABEL]["job_id"] == JOB.job_id
    data = bytearray(out.read_bytes())
    data[-200] ^= 0xFF  # inside the image data, after the manifest
    (tmp_path / f"bad{suffix}").write_bytes(bytes(data))
    assert read(tmp_path / f"bad{suffix}", dev_credentials(keys).root_pem).state == "Invalid"


def test_tenant_mark_and_prompt_opt_in() -> None:
    from pipeline.release.produce import style_for
    from policies import engine

    root = Path(__file__).resolve().parent.parent
    acme = engine.load(root / "policies/default.yaml", root / "policies/tenants/acme.yaml").policy.release
    job = JOB.model_copy(update={"actor": "key_abc"})
    style = style_for(acme, job)
    assert style.text == "AI-generated · acme news · key_abc" and style.opacity == 0.5 and style.period_s == 4.0
    assert style_for(engine.load(root / "policies/default.yaml").policy.release, job).text == "AI-generated · acme"
    assert moderation_summary(job, include_prompt=True)["prompt"] == "a secret prompt"
    assert "prompt" not in moderation_summary(job)


def test_rotate_watermark_command_prints_only_the_id(settings: Settings, tmp_path: Path) -> None:
    """`genguard keys rotate-watermark` on a configured path with no keyring yet makes the first key,
    a second run adds one; neither prints a secret (the audit record goes to the real broker)."""
    path = tmp_path / "ring.json"
    env = {**os.environ, "GENGUARD_EMBEDDED_KAFKA_ADDR": settings.embedded_kafka_addr,
           "GENGUARD_VAR_DIR": str(tmp_path), "GENGUARD_WATERMARK_KEY_PATH": str(path)}
    outs = [subprocess.run([sys.executable, "-m", "pipeline.cli", "keys", "rotate-watermark"], env=env,
                           cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
            for _ in range(2)]
    assert [o.returncode for o in outs] == [0, 0], outs[-1].stderr
    ring = json.loads(path.read_text())
    assert len(ring["keys"]) == 2 and ring["current"] in outs[1].stdout
    assert not any(secret in o.stdout + o.stderr for secret in ring["keys"].values() for o in outs)
