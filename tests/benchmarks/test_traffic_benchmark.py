"""The MNRE-like traffic benchmark: its grouping of the data, its verdicts, and a real run on the tiny bundle."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dfma.benchmarks import traffic
from dfma.benchmarks.traffic_workload import mnre_posts, pairs_per_post, sample_posts, synthetic_groups
from fixtures_bundle import tiny_bundle  # noqa: F401


def test_mnre_validation_keeps_its_pairs_per_image(mnre_dir):
    groups = mnre_posts(mnre_dir / "mnre_val.txt")
    counts = [len(g) for g in groups]
    assert sum(counts) == 1624
    assert 1.70 <= np.mean(counts) <= 1.78  # DFMA.md: 1.74 pairs per image in the validation split
    assert all(len({r.img_id for r in g}) == 1 for g in groups)


def test_sampled_posts_share_an_image_within_a_post_only():
    posts = sample_posts(synthetic_groups(50, seed=1), 10, seed=3, num_crops=3, image_wh=(60, 45))
    images = [r["image"] for p in posts for r in p.requests]
    for p in posts:
        assert len({r["image"] for r in p.requests}) == 1 and len(p.requests[0]["crops"]) == 3
    assert len(set(images)) == len(posts)  # no image repeats across posts
    assert pairs_per_post(posts)["requests"] == len(images)


def _row(key, stages, precision, vs_eager=None, vs_whole=None):
    return {"key": key, "stages": stages, "precision": precision, "vs_eager": vs_eager, "vs_whole": vs_whole}


def test_targets_are_judged_only_from_an_undisturbed_run():
    rows = [_row("eager", "eager", "fp32", 1.0), _row("two-stage-fp32", "two-stage", "fp32", 1.6, 1.4),
            _row("two-stage-int8", "two-stage", "int8", 4.0, 1.5),
            _row("two-stage-openvino-int8", "two-stage", "int8", 6.0, 1.5)]
    quiet = traffic._targets(rows, disturbed=False)
    assert [t["status"] for t in quiet] == ["met", "met"]
    assert quiet[1]["path"] == "two-stage-openvino-int8"  # the best INT8 stage graphs
    noisy = traffic._targets(rows, disturbed=True)
    assert [t["status"] for t in noisy] == ["unmeasured (disturbed)"] * 2
    missed = traffic._targets([_row("two-stage-fp32", "two-stage", "fp32", 1.2, 1.1)], disturbed=False)
    assert [t["status"] for t in missed] == ["missed", "unmeasured"]


@pytest.mark.parametrize("arrival", ["post", "request"])
def test_a_run_on_the_tiny_bundle(tiny_bundle, tmp_path, arrival):
    """A real run: every path opens, the stage graphs' logits equal the whole graph's, JSON and plot written."""
    code = traffic.main(["--bundle", str(tiny_bundle), "--posts", "4", "--warmup", "1", "--arrival", arrival,
                         "--paths", "eager,whole-fp32,two-stage-fp32", "--out", str(tmp_path), "--name", "t"])
    assert code == 0
    result = json.loads((tmp_path / "t.json").read_text())
    rows = {r["key"]: r for r in result["rows"]}
    assert set(rows) == {"eager", "whole-fp32", "two-stage-fp32"} and not result["skipped"]
    staged = rows["two-stage-fp32"]
    assert staged["max_abs_vs_whole"] <= 1e-5
    if rows["eager"]["weights"].startswith("random"):  # the fixture's weights are not a checkpoint eager can load
        assert "top1_vs_eager" not in staged
    else:
        assert staged["top1_vs_eager"] == 1.0
    assert staged["requests"] == rows["eager"]["requests"] == result["traffic"]["requests"]
    assert staged["vs_whole"] > 0 and staged["throughput_rps"] > 0 and staged["p99_ms"] >= staged["p50_ms"]
    cache = staged["image_cache"]
    assert cache["misses"] == result["traffic"]["posts"] + 1  # one per post (the warm-up post too)
    if arrival == "request":  # later pairs of a post hit the cache (the warm-up post's too)
        assert cache["hits"] >= result["traffic"]["requests"] - result["traffic"]["posts"]
    else:  # a post's pairs in one call: its image is encoded once inside the call, the cache never asked twice
        assert cache["hits"] == 0
    assert Path(tmp_path / "t.png").stat().st_size > 1000
