"""How often Python's cyclic garbage collector runs in a dl process.

Once torch, its compiler stack and scikit-learn are imported, a dl process holds a few million
objects, nearly all of them there for good. Python's default thresholds (700, 10, 10) run a full
collection, which walks every one of them, every few hundred thousand allocations: imports
allocate that many in a blink, and so do Hydra's compositions and a run's configs. Measured on
2 cores: importing what `dl train` imports took 4.1-4.2 CPU s with the collector off and 4.3-5.8 s
with the defaults; `benchmarks/startup.py` (`dl train` end to end against a plain script, minimum
of 3) gave ratios of 1.03 and 0.99 with these thresholds against 1.11 and 1.34 without,
interleaved. A first generation seventy times larger makes full collections rare; garbage is
still collected, reference counting frees nearly all of it anyway (tensors, batches, an epoch's
graph), and only cycles wait a little longer.
"""

import gc

THRESHOLDS = (50_000, 20, 20)  # the first generation's allocations, then how many collections of each before the next


def collect_less_often() -> None:
    gc.set_threshold(*THRESHOLDS)
