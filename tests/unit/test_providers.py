"""Provider offers: the tier check against the hardware, validation, heartbeats and what the allocator sees."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from runtime.providers import Hardware, OfferError, check_tier, heartbeat, mark_stopped, offers, register_offer

CPU_BOX = Hardware((), 16, 64.0)
GPU_BOX = Hardware((("NVIDIA GeForce RTX 3090", 24.0),), 8, 32.0)


def test_a_tier_needs_the_gpu_memory_it_promises():
    assert check_tier("cpu", CPU_BOX) == 64.0  # the CPU tier brings the machine's RAM
    assert check_tier("gpu-medium", GPU_BOX) == 24.0
    with pytest.raises(OfferError, match="tier gpu-small needs a CUDA GPU with at least 8 GB; this machine has none"):
        check_tier("gpu-small", CPU_BOX)
    with pytest.raises(OfferError, match="at least 48 GB; the largest here has 24 GB"):
        check_tier("gpu-large", GPU_BOX)
    with pytest.raises(OfferError, match="unknown compute tier 'tpu'"):
        check_tier("tpu", GPU_BOX)


@pytest.fixture()
def session(tmp_path, monkeypatch):
    from runtime.db import session_factory

    return session_factory(f"sqlite:///{tmp_path / 'app.db'}")()


def test_offers_are_online_while_heartbeats_arrive(session):
    from runtime import providers
    from runtime.db import ProviderRow

    row = register_offer(session, name="rig-1", tier="gpu-small", price_wei_per_s=10**12, hardware=GPU_BOX,
                         slots=2, region="eu", datasets=["ds-1"])  # fmt: skip
    session.commit()
    [offer] = offers(session)
    assert offer.alive and offer.tier == "gpu-small" and offer.memory_gb == 24.0 and offer.slots == 2
    assert offer.datasets == frozenset({"ds-1"}) and offer.region == "eu"
    row.heartbeat_at = row.heartbeat_at - providers.HEARTBEAT_DEADLINE - timedelta(seconds=1)
    session.commit()
    assert not offers(session)[0].alive  # silent for too long: offline
    heartbeat(session, row.id, ["ds-1", "ds-2"])
    session.commit()
    assert offers(session)[0].alive and offers(session)[0].datasets == frozenset({"ds-1", "ds-2"})
    mark_stopped(session, row.id)
    session.commit()
    assert not offers(session)[0].alive and session.get(ProviderRow, row.id).status == "stopped"


def test_bad_offers_are_refused_in_one_sentence(session):
    with pytest.raises(OfferError, match="the price must be above 0"):
        register_offer(session, name="x", tier="cpu", price_wei_per_s=0, hardware=CPU_BOX)
    with pytest.raises(OfferError, match="slots must be between 1 and 64"):
        register_offer(session, name="x", tier="cpu", price_wei_per_s=1, hardware=CPU_BOX, slots=0)
    with pytest.raises(OfferError, match="needs a CUDA GPU"):
        register_offer(session, name="x", tier="gpu-small", price_wei_per_s=1, hardware=CPU_BOX)
    assert offers(session) == []


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "100000"])
def test_a_bad_heartbeat_setting_stops_the_process_with_one_sentence(value):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import runtime.providers"], capture_output=True, text=True,
                          env={**os.environ, "AIB_HEARTBEAT_SECONDS": value})  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"AIB_HEARTBEAT_SECONDS is {value!r}: set it to a number of seconds from 0.5 to 600 (default 5)"
    )
