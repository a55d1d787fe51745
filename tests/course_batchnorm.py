"""The 2019 fast.ai course's RunningBatchNorm (fastai/course-v3, nbs/dl2/07_batchnorm.ipynb), re-typed: the
reference that tests/test_batchnorm.py and benchmarks/bench_batchnorm.py compare the library's layer with."""
import math

import torch
from torch import nn


class CourseRunningBatchNorm(nn.Module):
    "The course's layer, as the course wrote it (graph breaks, batch size 1 divides by zero)."
    def __init__(self, nf, mom=0.1, eps=1e-5):
        super().__init__()
        self.mom, self.eps = mom, eps
        self.mults = nn.Parameter(torch.ones(nf, 1, 1))
        self.adds = nn.Parameter(torch.zeros(nf, 1, 1))
        for name in ('sums', 'sqrs'): self.register_buffer(name, torch.zeros(1, nf, 1, 1))
        for name in ('batch', 'count', 'step', 'dbias'): self.register_buffer(name, torch.tensor(0.))

    def update_stats(self, x):
        bs, nc, *_ = x.shape
        self.sums.detach_(); self.sqrs.detach_()
        dims = (0, 2, 3)
        s, ss = x.sum(dims, keepdim=True), (x * x).sum(dims, keepdim=True)
        c = self.count.new_tensor(x.numel() / nc)
        mom1 = self.dbias.new_tensor(1 - (1 - self.mom) / math.sqrt(bs - 1))
        self.sums.lerp_(s, mom1); self.sqrs.lerp_(ss, mom1); self.count.lerp_(c, mom1)
        self.dbias = self.dbias * (1 - mom1) + mom1
        self.batch += bs; self.step += 1

    def forward(self, x):
        if self.training: self.update_stats(x)
        sums, sqrs, c = self.sums, self.sqrs, self.count
        if self.step < 100: sums, sqrs, c = sums / self.dbias, sqrs / self.dbias, c / self.dbias
        means = sums / c
        vars = (sqrs / c).sub_(means * means)
        if bool(self.batch < 20): vars.clamp_min_(0.01)
        x = (x - means).div_((vars.add_(self.eps)).sqrt())
        return x.mul_(self.mults).add_(self.adds)
