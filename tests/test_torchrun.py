"""A real torchrun run: 2 gloo ranks on CPU, an odd-sized data set and DistributedSampler; with real_items and
max_items every rank's LossMeter.compute() equals the single-process epoch loss over all items."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from conftest import ROOT
from torchrun_worker import dataset, item_losses

N, BATCH, WORLD = 101, 8, 2


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('torchrun')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
           'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={WORLD}',
           str(ROOT / 'tests' / 'torchrun_worker.py'), str(out), str(N), str(BATCH)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, f'torchrun failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return [json.loads((out / f'rank{k}.json').read_text()) for k in range(WORLD)]


@pytest.mark.slow
def test_every_rank_reports_the_single_process_epoch_loss(ranks):
    ds = dataset(N)
    x, y, _ = ds.tensors
    losses = item_losses(x, y).numpy()  # one process over all items
    oracle = math.fsum(losses) / N
    for epoch in range(2):
        for r in ranks:
            e = r['epochs'][epoch]
            assert e['exact'] == pytest.approx(oracle, rel=2e-16, abs=0)  # float64 precision
            assert e['exact'] == ranks[0]['epochs'][epoch]['exact']  # one all-reduce: bitwise the same on every rank
            assert e['dyadic'] == math.fsum(i % 7 / 4 for i in range(N)) / N  # exactly, with exact sums


@pytest.mark.slow
def test_the_padding_is_what_max_items_leaves_out(ranks):
    x, y, _ = dataset(N).tensors
    losses = item_losses(x, y).numpy()
    for epoch in range(2):
        shards = []
        for r in ranks:
            e = r['epochs'][epoch]
            ref = DistributedSampler(range(N), num_replicas=WORLD, rank=r['rank'], shuffle=True, seed=3)
            ref.set_epoch(epoch)
            assert e['seen'] == list(ref)  # the loader walked the real sampler's shard
            assert e['count'] == e['real_items'] == len(range(r['rank'], N, WORLD))
            shards.append(e['seen'])
            real = e['seen'][:e['real_items']]
            assert e['rank_only'] == pytest.approx(np.mean(losses[real]), rel=1e-15, abs=0)  # compute(sync=False)
        assert sorted(shards[0][:ranks[0]['epochs'][epoch]['real_items']]
                      + shards[1][:ranks[1]['epochs'][epoch]['real_items']]) == list(range(N))
        repeated = shards[1][-1]  # N odd: rank 1's last index is the sampler's padding, a repeat of the first item
        padded = (math.fsum(losses) + losses[repeated]) / (N + 1)
        assert ranks[0]['epochs'][epoch]['padded'] == pytest.approx(padded, rel=1e-15, abs=0)
        assert abs(padded - math.fsum(losses) / N) > 1e-6  # the padding shows without max_items
