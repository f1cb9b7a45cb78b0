"""Does the default training recipe learn for every seed? Trains `python -m tinygrad_attn.train`
with seeds 0-9 (two at a time) and prints, per seed, the step it stopped at and its held-out
exact match; exits non-zero unless every seed reached 100%.

    python -m benchmarks.train_seeds                      the defaults, seeds 0-9
    python -m benchmarks.train_seeds --seeds 3 7 -- --lr 1e-3    other seeds, other options

Run it after changing a default of train.py; the README quotes its table.
"""

import argparse
import concurrent.futures
import io
import os
import sys
import tempfile

from tinygrad_attn import runtime, train


def run(seed, options, root):
    """One training run with `seed`, on one thread: (seed, step, exact match, seconds)."""
    runtime.set_num_threads(1)  # two runs at a time on two cores: more threads would only fight
    args = train.parse_args([*options, "--seed", str(seed), "--out", os.path.join(root, f"seed{seed}")])
    result = train.train(args, stream=io.StringIO())
    return seed, result["step"], result["exact_match"], result["seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_seeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)), help="the seeds to train")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time (one per core)")
    parser.add_argument("options", nargs="*", help="train.py options after --, the same for every seed")
    args = parser.parse_args(argv)
    print(f"train.py {' '.join(args.options) or '(defaults)'}, seeds {' '.join(map(str, args.seeds))}")
    print(f"{'seed':>4}  {'steps':>5}  {'held-out exact':>14}  {'seconds':>7}")
    with tempfile.TemporaryDirectory() as root, concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        results = sorted(pool.map(run, args.seeds, [args.options] * len(args.seeds), [root] * len(args.seeds)))
    for seed, step, exact, seconds in results:
        print(f"{seed:>4}  {step:>5}  {exact:>14.1%}  {seconds:>7.1f}")
    failed = [seed for seed, _, exact, _ in results if exact < 1.0]
    print(f"{len(results) - len(failed)} of {len(results)} seeds reached 100% held-out"
          + (f"; not seeds {' '.join(map(str, failed))}" if failed else ""))
    print(f"(load average {os.getloadavg()[0]:.2f}: the seconds are noisy; the steps are not)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
