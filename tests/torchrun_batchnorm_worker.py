"""One rank of tests/test_torchrun_batchnorm.py: a RunningBatchNorm inside DDP with gloo, each rank fed its own
batches; DDP broadcasts rank 0's buffers before every forward. Writes the statistics seen before and after each
step as JSON.

Run by `python -m torch.distributed.run --standalone --nproc_per_node=2 tests/torchrun_batchnorm_worker.py OUT`."""
import json
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from lossnotes import RunningBatchNorm
from conftest import let_gloo_workers_finish  # this script's folder, tests/, is on sys.path

STEPS = 4


def batch(rank: int, step: int) -> torch.Tensor:
    "Rank `rank`'s batch at `step`: a different mean per rank, so unsynchronised statistics differ."
    g = torch.Generator().manual_seed(100 * rank + step)
    return torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) + 5 * rank


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    try:
        torch.manual_seed(0)
        layer = RunningBatchNorm(3).double()
        ddp = DDP(nn.Sequential(layer))
        steps = []
        for t in range(STEPS):
            y = ddp(batch(rank, t))  # DDP first broadcasts rank 0's buffers into the layer's current ones
            y.square().sum().backward()
            steps.append({k: v.tolist() for k, v in layer.state_dict().items() if k.startswith(('running', 'count'))})
        with open(f'{out}/rank{rank}.json', 'w') as f: json.dump(dict(rank=rank, steps=steps), f)
    finally:
        ddp = layer = None  # the reducer goes first, while its group lives
        let_gloo_workers_finish()  # else a rank can abort at exit ('terminate called without an active exception')
        dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
