"""A real torchrun run: 2 gloo ranks on CPU, RunningBatchNorm inside DDP. DDP broadcasts rank 0's buffers before
each forward (collecting the module's buffers afresh each time), so rank 1's statistics after a step are rank 0's
from the step before merged with rank 1's own batch, not a merge of both ranks' batches (a single-process replay is
the oracle): the statistics are rank 0's."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from lossnotes import RunningBatchNorm
from torchrun_batchnorm_worker import STEPS, batch

WORLD = 2


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('torchrun_bn')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), str(ROOT / 'tests'), os.environ.get('PYTHONPATH', '')]),
           'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={WORLD}',
           str(ROOT / 'tests' / 'torchrun_batchnorm_worker.py'), str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, f'torchrun failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return [json.loads((out / f'rank{k}.json').read_text()) for k in range(WORLD)]


@pytest.mark.slow
def test_rank_1_merges_its_batch_into_rank_0s_broadcast_statistics(ranks):
    rank0 = RunningBatchNorm(3).double()  # rank 0 never receives anything: its own chain of batches
    for t in range(STEPS):
        replay = RunningBatchNorm(3).double()
        replay.load_state_dict(rank0.state_dict())  # what DDP broadcast to rank 1 before step t
        replay(batch(1, t))
        rank0(batch(0, t))
        for name in ('running_mean', 'running_var', 'count'):
            torch.testing.assert_close(torch.tensor(ranks[0]['steps'][t][name], dtype=torch.float64),
                                       getattr(rank0, name), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(torch.tensor(ranks[1]['steps'][t][name], dtype=torch.float64),
                                       getattr(replay, name), rtol=1e-12, atol=1e-12)
    own = RunningBatchNorm(3).double()  # what rank 1 would hold without the broadcast
    for t in range(STEPS): own(batch(1, t))
    assert (torch.tensor(ranks[1]['steps'][-1]['running_mean']) - own.running_mean).abs().max() > 1
