"""Trace: a copy of a release, however it was stripped or attacked, is traced back to its job by the
strongest layer that survived (manifest, invisible watermark, frame fingerprints, audio fingerprint);
unrelated footage and other tenants' copies are not. Real footage (Sintel, narrated), real encodes,
real c2pa signing, real fpcalc."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.media import Limits
from pipeline.records import Job
from pipeline.release import provenance, wmkeys
from pipeline.release.produce import release_file, sign_with, trust_anchors
from pipeline.release.provenance import dev_credentials, sign_media, signer_from
from pipeline.release.trace import ReleaseIndex, index_release, trace
from pipeline.settings import Settings
from pipeline.store.releases import ReleaseStore
from tests import tsa
from tests.helpers import ROOT, SINTEL, clip, env_of, ffmpeg

JOB = Job(job_id="job-trace-test", tenant="acme", sha256="cd" * 32, media_uri="", status="allowed")


@pytest.fixture(scope="module")
def s(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings) -> Settings:
    return base_settings.model_copy(update={"var_dir": tmp_path_factory.mktemp("trace-var")})


@pytest.fixture(scope="module")
def released(s: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sintel with a narrator (a phone-style clip: picture and speech), released and indexed."""
    tmp = tmp_path_factory.mktemp("trace")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(tmp / "speech.wav"), "Every release is fingerprinted so "
                    "that a copy can be traced back to it, even without its manifest."], check=True)
    narrated, dest = tmp / "narrated.mp4", tmp / "released.mp4"
    ffmpeg("-i", str(SINTEL), "-i", str(tmp / "speech.wav"), "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
           "-c:a", "aac", str(narrated))
    ring = wmkeys.load(s)
    done = release_file(narrated, dest, JOB, sign_with(s), ring.key)
    job = JOB.model_copy(update={"watermark": f"{done.payload:08x}", "watermark_key": ring.current})
    record = index_release(ReleaseStore(s.releases_dir), job, dest, done.manifest, trust_anchors(s))
    assert len(record.frames) >= 15 and record.audio and record.manifest["state"] == "Trusted"
    return dest


def traced(s: Settings, path: Path, tenant: str | None = "acme") -> dict[str, Any]:
    index = ReleaseIndex(ReleaseStore(s.releases_dir))
    return asyncio.run(trace(path, index, wmkeys.load(s), trust_anchors(s), Limits(), tenant))


def attacked(src: Path, out: Path, *args: str) -> Path:
    ffmpeg("-i", str(src), "-map_metadata", "-1", *args, str(out))
    return out


def test_the_release_itself_traces_by_its_manifest(s: Settings, released: Path) -> None:
    found = traced(s, released)
    assert found["match"]["via"] == "manifest" and found["match"]["job_id"] == JOB.job_id
    assert found["match"]["confidence"] == 1.0 and found["match"]["manifest"]["state"] == "Trusted"
    assert {found["layers"][k]["job_id"] for k in ("manifest", "watermark", "frames", "audio")} == {JOB.job_id}


def test_a_stripped_reencode_traces_by_its_watermark(s: Settings, released: Path, tmp_path: Path) -> None:
    copy = attacked(released, tmp_path / "crf28.mp4", "-c:v", "libx264", "-crf", "28", "-c:a", "aac")
    found = traced(s, copy)
    assert found["layers"]["manifest"]["present"] is False
    assert found["match"]["via"] == "watermark" and found["match"]["job_id"] == JOB.job_id
    assert found["match"]["manifest"]["assertions"][provenance.MODERATION_LABEL]["job_id"] == JOB.job_id


def test_a_mirrored_silent_copy_traces_by_its_frames(s: Settings, released: Path, tmp_path: Path) -> None:
    copy = attacked(released, tmp_path / "mirror.mp4", "-an", "-vf", "hflip,scale=-2:360", "-c:v", "libx264")
    found = traced(s, copy)
    assert found["layers"]["watermark"]["present"] is False and found["layers"]["audio"] is None
    assert found["match"]["via"] == "frames" and found["match"]["job_id"] == JOB.job_id
    ranges = found["match"]["ranges"]
    assert ranges[0][0] < 0.5 and ranges[-1][1] > 4.0  # matched from start to end of the 5 s clip ...
    frames = found["layers"]["frames"]
    assert frames["frames_matched"] >= 0.7 * frames["frames_in_copy"] and frames["offset_s"] == 0  # ... at offset 0


def test_the_sound_alone_traces_by_its_fingerprint(s: Settings, released: Path, tmp_path: Path) -> None:
    copy = tmp_path / "new-picture.mp4"
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=640x360:rate=25", "-i", str(released), "-map", "0:v", "-map", "1:a",
           "-shortest", "-c:v", "libx264", "-c:a", "aac", str(copy))
    found = traced(s, copy)
    assert found["layers"]["frames"] is None
    assert found["match"]["via"] == "audio" and found["match"]["job_id"] == JOB.job_id
    assert found["layers"]["audio"]["bit_error"] < 0.15


def test_unrelated_footage_and_other_tenants_are_not_traced(s: Settings, released: Path, tmp_path: Path) -> None:
    unrelated = clip(tmp_path / "pattern.mp4", seconds=4, source="testsrc2")
    assert traced(s, unrelated)["traced"] is False
    found = traced(s, released, tenant="globex")  # even the original, manifest and all
    assert found["traced"] is False and found["layers"]["manifest"]["job_id"] is None
    assert traced(s, released, tenant=None)["match"]["tenant"] == "acme"  # an admin sees every tenant


def test_genguard_trace_and_verify_report_every_layer(s: Settings, released: Path, tmp_path: Path) -> None:
    copy = attacked(released, tmp_path / "mirror.mp4", "-vf", "hflip", "-c:v", "libx264", "-c:a", "aac")
    env = env_of(s)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "trace", str(copy), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["match"]["job_id"] == JOB.job_id
    unrelated = clip(tmp_path / "pattern.mp4", seconds=3)
    assert subprocess.run([sys.executable, "-m", "pipeline.cli", "trace", str(unrelated)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120).returncode == 1
    report = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(copy)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "no C2PA manifest" in report.stdout and f"frames fingerprint -> job {JOB.job_id}" in report.stdout
    assert f"audio fingerprint -> job {JOB.job_id}" in report.stdout


def test_verify_names_an_unparseable_file_and_reads_the_timestamp_from_the_file(s: Settings, released: Path,
                                                                               tmp_path: Path) -> None:
    box = struct.pack(">I4s", 8, b"free")
    for _ in range(300):  # boxes nested deeper than c2pa-rs will walk
        box = struct.pack(">I4s", 8 + len(box), b"moov") + box
    nested = tmp_path / "nested.mp4"
    nested.write_bytes(released.read_bytes() + box)
    found = provenance.read(nested)
    assert found.state == "Invalid" and found.codes == ["c2pa.unreadable.other"] and "nested" in found.error
    env = {**env_of(s), "GENGUARD_TSA_URL": "http://tsa.example/"}
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(nested)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120).stdout
    assert "manifest could not be read (c2pa.unreadable.other)" in out and "_C2pa" not in out
    # a TSA configured here says nothing about a file signed without one
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(released)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120).stdout
    assert "signed without a timestamp authority" in out


def test_verify_reads_a_trusted_timestamp_from_the_file(s: Settings, tmp_path: Path) -> None:
    """c2pa-rs-style fixture: a file timestamped by a real RFC 3161 authority (ours, on loopback)."""
    creds = dev_credentials(tmp_path / "keys")
    stamped = tmp_path / "stamped.mp4"
    with tsa.serve() as (url, authority):
        sign_media(SINTEL, stamped, signer_from(creds, url), {"decision": "allow"})
    assert authority.requests == 1
    both, dev_only = tmp_path / "both.pem", tmp_path / "dev.pem"
    both.write_bytes(creds.root_pem + authority.root_pem)
    dev_only.write_bytes(creds.root_pem)
    env = env_of(s)
    env.pop("GENGUARD_TSA_URL", None)  # nothing configured here: the file alone says it was timestamped

    def verify(trust: Path) -> str:
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(stamped), "--trust", str(trust)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = verify(both)
    assert "timeStamp.trusted" in out and "timestamp: trusted" in out and "without a timestamp" not in out
    out = verify(dev_only)
    assert "timestamp: present, not trusted (timeStamp.untrusted, timeStamp.validated)" in out
    assert "without a timestamp" not in out


def test_the_index_reads_only_what_the_store_adds(s: Settings, released: Path, tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases")
    index = ReleaseIndex(store)
    assert index.current().records == {}
    first = index_release(store, JOB.model_copy(update={"watermark": "0badf00d"}), released, None, None)
    built = index.current()
    assert list(built.records) == [JOB.job_id] and built.by_watermark == {"0badf00d": JOB.job_id}
    assert index.current() is built  # nothing new: not rebuilt
    index_release(store, JOB.model_copy(update={"job_id": "job-second"}), released, None, None)
    assert set(index.current().records) == {JOB.job_id, "job-second"}
    assert len(index.current().frame_job) == 2 * len(first.frames)
