"""The 2019 fast.ai course's RunningBatchNorm (fastai/course-v3, nbs/dl2/07_batchnorm.ipynb), re-typed once, in
lesson 04's module: the reference that tests/test_batchnorm.py and benchmarks/bench_batchnorm.py compare the
library's layer with."""
from lossnotes.lessons.batchnorm import CourseRunningBatchNorm  # noqa: F401
