"""The security bench (bench/bench_security.py, issue 10) at tiny sizes: every part still
measures (as many inputs tried as asked, every authentic control seen, the events all
generated and drained) and every must-be-zero figure is zero. So `make bench` cannot print
zeros because it stopped looking."""

from __future__ import annotations

import pytest

from bench import bench_security as B

pytestmark = pytest.mark.micropython  # the detector parts run the firmware on the unix port

TINY = {
    "decoder_random": 300,
    "decoder_flip": 300,
    "gw_random": 40,
    "gw_mutated": 40,
    "gw_forged": 60,
    "gw_replay": 30,
    "gw_oversize": 10,
    "det_per_class": 3,
    "flood_copies": 400,
    "flood_windows": 60,
    "events": 8,
}


def test_tiny_campaign_measures_and_finds_nothing():
    r = B.campaign(TINY)
    assert r["seed"] == B.SEED
    dec, gw, det, ev = r["decoder"], r["gateway"], r["detector"], r["events"]
    # As many inputs tried as asked, in every part and class.
    assert (dec["random"], dec["flip"], dec["tried"]) == (300, 300, 600)
    assert gw["tried"] == {"random": 40, "mutated": 40, "forged": 60, "replay": 30,
                           "oversize": 10}  # fmt: skip
    assert gw["total"] == 180
    assert det["tried"] == {cls: 3 for cls in B.DET_CLASSES} and not det["skipped"]
    # The harness sees acceptance when it happens.
    assert gw["controls"] >= 3
    assert gw["controls_seen"] == gw["controls_rerouted"] == gw["controls"]
    assert det["controls"] > len(B.DET_CLASSES)
    assert det["controls_accepted"] == det["controls"]
    # The figures that must be zero are, and they are all of them.
    figs = B.figures(r)
    assert set(figs) == set(B.MUST_BE_ZERO)
    assert {k: v for k, v in figs.items() if v} == {}
    # Events: N asked, all generated, stored once each, nothing left pending.
    assert ev["generated"] >= TINY["events"] and not ev["still_pending"]
    assert ev["stored_once"] == ev["generated"]
    # The flood ran (the alarm went out in both runs of both links).
    for polled in (0, 1):
        assert r[f"flood_400_{polled}"]["alarm_sent"] is not None
        assert r[f"flood_0_{polled}"]["alarm_sent"] is not None
    bad = [row for row in B.rows(r) if row.get("ok") is False]
    assert bad == []


def test_same_seed_same_figures():
    """The fixed seed reproduces the whole campaign: every figure, every count behind it."""

    def figures_only(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in ("s", "wall_s")}

    assert figures_only(B.campaign(TINY)) == figures_only(B.campaign(TINY))
