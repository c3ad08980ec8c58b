"""The release stage: an allowed job gets its marks and its signed manifest, once."""

from __future__ import annotations

import hashlib
import secrets

from pipeline.audit import events
from pipeline.records import Job, JobMessage, Topics
from pipeline.release import wmkeys
from pipeline.release.produce import release_file, sign_with, trust_anchors
from pipeline.release.trace import index_release
from pipeline.stages import StageContext
from pipeline.store.releases import ReleaseStore


async def release(st: StageContext, msg: JobMessage) -> Job | None:
    """Watermark and sign an allowed job; a redelivery reuses the file already signed, never a second one."""
    job = await st.claim("release", msg)
    if job is None or job.status != "allowed":
        return None
    dest = st.store.released_path(job.job_id)
    payload = job.watermark or f"{secrets.randbits(32):08x}"
    keyring = wmkeys.load(st.settings)
    key_id = job.watermark_key if job.watermark_key in keyring.keys else keyring.current
    # both before the file, so a retry embeds the same payload with the same key
    job = await st.jobs.update(job.job_id, watermark=payload, watermark_key=key_id)
    await st.jobs.map_watermark(payload, job.job_id)
    released = None
    if not dest.exists():
        signer = sign_with(st.settings)
        src = st.store.local_path(job.media_uri)
        tenant = st.policies.for_tenant(job.tenant).policy.release
        released = await st.run(lambda: release_file(src, dest, job, signer, keyring.keys[key_id], tenant,
                                                     int(payload, 16)), "release")
    releases = ReleaseStore(st.settings.releases_dir)
    if released is not None or releases.get(job.job_id) is None:  # a redelivery keeps the first index entry
        await st.run(lambda: index_release(releases, job, dest, released.manifest if released else None,
                                           trust_anchors(st.settings)), "index")
    job = await st.jobs.update(job.job_id, "released", released_uri=st.store.uri_of(dest))
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    await st.audit(events.video_released(job, digest, payload, f"worker:{st.settings.worker_name}"))
    await st.send(Topics.RELEASED, job)
    await st.done("release", job.job_id)
    return job
