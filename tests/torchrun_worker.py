"""One rank of the torchrun test (tests/test_torchrun.py): the epoch loss of a fixed model over an odd-sized data
set sharded by DistributedSampler, with LossMeter(max_items=real_items(sampler)); one JSON file per rank.

Run by `python -m torch.distributed.run --standalone --nproc_per_node=2 tests/torchrun_worker.py OUT N BATCH`."""
import json
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lossnotes import LossMeter, real_items
from conftest import let_gloo_workers_finish  # this script's folder, tests/, is on sys.path


def dataset(n: int) -> TensorDataset:
    "n items (x, y, index) of a tiny regression problem, the same on every rank (a seeded generator)."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    return TensorDataset(x, y, torch.arange(n))


def item_losses(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    "Squared error of a fixed linear model, elementwise (so an item's loss does not depend on its batch)."
    return (x[:, 0] * 0.75 - x[:, 1] * 1.5 + 0.25 - y) ** 2  # (batch,)


def main(out: str, n: int, batch_size: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        ds = dataset(n)
        sampler = DistributedSampler(ds, shuffle=True, seed=3)
        res = dict(rank=rank, world=world, epochs=[])
        padded = LossMeter()
        for epoch in range(2):
            sampler.set_epoch(epoch)  # a new shuffle, so a different item is repeated
            exact = LossMeter(max_items=real_items(sampler))  # the one extra line
            padded.reset()
            dyadic = LossMeter(max_items=real_items(sampler))
            seen = []
            for x, y, idx in DataLoader(ds, batch_size=batch_size, sampler=sampler):
                losses = item_losses(x, y)
                exact.update(losses)
                padded.update(losses.mean(), n=len(losses))  # counts the padding repeats
                dyadic.update((idx % 7).double() / 4)  # exactly representable losses: any order gives the same sum
                seen += idx.tolist()
            res['epochs'].append(dict(
                exact=exact.compute().item(), padded=padded.compute().item(), dyadic=dyadic.compute().item(),
                rank_only=exact.compute(sync=False).item(), real_items=real_items(sampler), seen=seen,
                count=exact.count))
        with open(f'{out}/rank{rank}.json', 'w') as f: json.dump(res, f)
    finally:
        let_gloo_workers_finish()  # the last all_reduce freed before the group goes (see conftest)
        dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
