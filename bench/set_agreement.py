"""How long multi-label agreement (modelsvc.set_agreement) takes at the dashboard's 300 bootstrap draws.

Timing only: the indicator arrays are generated (3 raters, each flipping 10% of the labels of a shared
answer, 35 labels as in the disaster-messages set); they measure compute cost, never agreement.

    python -m bench.set_agreement 200 500 1000
"""

from __future__ import annotations

import sys
import time

import numpy as np

from modelsvc.set_agreement import set_agreement_report


def main(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    for n in sizes:
        truth = rng.random((n, 1, 35)) < 0.08
        ind = (truth ^ (rng.random((n, 3, 35)) < 0.1)).astype(np.int64)
        wall, cpu = time.perf_counter(), time.process_time()
        set_agreement_report(ind, seed=0, n_boot=300)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"N={n} R=3 C=35 n_boot=300: wall {wall:.2f} s, cpu {cpu:.2f} s", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [200, 500, 1000])
