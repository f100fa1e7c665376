"""Two processes on the gloo backend: identical bases across ranks, ZeRO-1 sharding, save and resume."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

import lowrank

import distributed_workers as workers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed"),
]

WORLD_SIZE = 2


def _spawn(worker, tmp_path, tracker: str) -> list[dict]:
    init_file = tmp_path / "init"
    mp.spawn(worker, args=(WORLD_SIZE, str(init_file), str(tmp_path), tracker), nprocs=WORLD_SIZE, join=True)
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]


@pytest.mark.parametrize("tracker", lowrank.list_trackers())
def test_ddp_ranks_hold_identical_bases(tracker, tmp_path):
    first, second = _spawn(workers.ddp_bases, tmp_path, tracker)

    assert first["bases"].keys() == {"up.weight", "mid.weight", "down.weight"}
    for name in first["bases"]:
        assert torch.equal(first["bases"][name], second["bases"][name]), name
    for name in first["params"]:
        assert torch.equal(first["params"][name], second["params"][name]), name


@pytest.mark.parametrize("tracker", ["subtrack", "random"])
def test_zero_redundancy_matches_unsharded(tracker, tmp_path):
    results = _spawn(workers.zero_matches_unsharded, tmp_path, tracker)

    for rank, result in enumerate(results):
        for name, expected in result["unsharded"].items():
            torch.testing.assert_close(result["sharded"][name], expected, rtol=0, atol=0, msg=f"{name} on rank {rank}")
    owned = [set(result["owned"]) for result in results]
    assert owned[0].isdisjoint(owned[1])  # each matrix's low-rank state lives on one rank only
    assert owned[0] | owned[1] == {"up.weight", "mid.weight", "down.weight"}


def test_zero_save_and_resume_under_two_ranks(tmp_path):
    results = _spawn(workers.zero_save_and_resume, tmp_path, "subtrack")

    for rank, result in enumerate(results):
        assert result["losses"] == result["expected_losses"], rank
        for name, expected in result["expected"].items():
            assert torch.equal(result["resumed"][name], expected), f"{name} on rank {rank}"


def test_sharded_parameter_is_rejected(tmp_path):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        weight = torch.nn.Parameter(distribute_tensor(torch.randn(12, 20), mesh, [Shard(0)]))
        with pytest.raises(ValueError, match="'w' is a sharded DTensor"):
            lowrank.LowRankAdamW([{"params": [weight], "rank": 3, "names": ["w"]}])
    finally:
        torch.distributed.destroy_process_group()
