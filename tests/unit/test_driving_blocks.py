"""Driving blocks on tiny data: deterministic road frames and the steering rule they are labelled with."""

from __future__ import annotations

import numpy as np

from blocks.driving.roads import RoadsParams, SyntheticRoads, render, steering_angle


def test_frames_are_deterministic_by_seed_and_hold_out_the_last_scenes():
    block = SyntheticRoads()
    a = block.generate(RoadsParams(scenes=50, test_fraction=0.2, height=16, width=32, seed=1))
    b = block.generate(RoadsParams(scenes=50, test_fraction=0.2, height=16, width=32, seed=1))
    c = block.generate(RoadsParams(scenes=50, test_fraction=0.2, height=16, width=32, seed=2))
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.train_x, c.train_x)
    assert a.train_x.shape == (40, 16, 32) and a.test_x.shape == (10, 16, 32) and a.size == (16, 32)
    assert 0.0 <= a.train_x.min() and a.train_x.max() <= 1.0
    assert -1.0 <= a.train_y.min() and a.train_y.max() <= 1.0 and a.train_y.std() > 0.1


def test_the_steering_rule_follows_the_bend_and_returns_to_the_lane_centre():
    assert steering_angle(0.0, 0.0, 0.0) == 0.0
    assert steering_angle(0.5, 0.0, 0.0) > 0  # a right bend: steer right
    assert steering_angle(0.0, 0.3, 0.0) < 0  # right of the centre: steer left
    assert steering_angle(0.0, 0.0, 0.2) < 0  # pointing right: steer left
    assert steering_angle(5.0, -5.0, -5.0) == 1.0  # clipped


def test_a_bend_to_the_right_is_drawn_to_the_right():
    def lane_centre_at_top_rows(curvature: float) -> float:
        rng = np.random.default_rng(0)
        # Re-draw until the random scene has the wanted curvature sign (the generator draws it itself).
        while True:
            img, _, scene = render(rng, 32, 64)
            if np.sign(scene["curvature"]) == np.sign(curvature) and abs(scene["curvature"]) > 0.6:
                break
        rows = img[13:17]  # just below the horizon
        bright = np.argwhere(rows > 0.8 * rows.max())
        return float(bright[:, 1].mean())

    assert lane_centre_at_top_rows(1.0) > 32 > lane_centre_at_top_rows(-1.0)


def test_the_preview_shows_frames_with_angles():
    rows = SyntheticRoads().preview(RoadsParams(height=16, width=32), None, rows=3, seed=4)
    assert len(rows) == 3 and all(r["image"].startswith("data:image/png;base64,") for r in rows)
    assert all(-1.0 <= r["steering_angle"] <= 1.0 for r in rows)
