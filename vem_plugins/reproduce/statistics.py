"""The intervals of ``vem-plugins reproduce``'s report: Student's t over seeds.

Both functions ignore nothing silently: a value that is not finite (a metric upstream could not
compute) is not a number to average, so callers pass only the seeds that produced one, and a
paired difference uses only the seeds both methods finished.
"""
from __future__ import annotations

import math
from typing import NamedTuple


class Interval(NamedTuple):
    """A mean over ``n`` values and the half-width of its two-sided ``level`` confidence
    interval (``nan`` with fewer than two values: one run says nothing about the spread)."""

    mean: float
    half_width: float
    n: int
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely on one side of 0."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def mean_interval(values, level: float = 0.95) -> Interval:
    """Mean and t-interval: mean ± t_{(1+level)/2, n-1} · s / √n, with s the sample standard
    deviation (n − 1 in the denominator)."""
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, 0, level)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, math.nan, n, level)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n), n,
                    level)


def paired_difference(ours: dict, theirs: dict, level: float = 0.95) -> Interval:
    """The interval of ours − theirs over the seeds both have (seed -> value dicts): the
    t-interval of the per-seed differences, which removes what a seed does to both methods."""
    seeds = sorted(set(ours) & set(theirs))
    return mean_interval([ours[s] - theirs[s] for s in seeds], level)
