"""Training survives kill -9 and Ctrl-C at random moments: `python -m tinygrad_attn.train` is started,
stopped by SIGKILL or SIGINT at a seeded random moment (8 times: in start-up, or up to 0.12 s into
training, where it checkpoints every step, so that many stops land in a write), and started again
(--resume once there is a checkpoint). After every stop the checkpoint loads; every start removes
the temporary files a kill left; a Ctrl-C reports the step of the checkpoint it wrote; and the run,
finished, has exactly the history of a run never interrupted.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from tinygrad_attn import checkpoint, runs

# About 150 steps/s, so 8 stops of at most 0.12 s of training leave most of the 300 steps to the last start.
OPTIONS = ["--num-symbols", "6", "--min-len", "2", "--max-len", "5", "--d-model", "16", "--layers", "1", "--heads",
           "2", "--batch-size", "16", "--dropout", "0.1", "--lr", "1e-3", "--warmup", "5", "--steps", "300",
           "--eval-every", "1", "--eval-size", "4"]
KILLS = 8
# One BLAS thread for every process, so that the interrupted run and the reference round alike.
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", TINYGRAD_ATTN_MAKE="")


def start(out, resume):
    argv = ["--resume", "--out", str(out)] if resume else [*OPTIONS, "--out", str(out)]
    return subprocess.Popen([sys.executable, "-m", "tinygrad_attn.train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def test_kill_and_ctrl_c_at_random_moments_then_resume_gives_the_uninterrupted_history(tmp_path):
    reference = subprocess.run([sys.executable, "-m", "tinygrad_attn.train", *OPTIONS, "--out",
                                str(tmp_path / "reference")], capture_output=True, text=True, env=ENV)
    assert reference.returncode == 0, reference.stderr
    rng = np.random.default_rng(3)  # the same moments on every run; what they hit depends on the speed
    out, leftovers, signals = tmp_path / "cut", [], []
    for _ in range(KILLS):
        process = start(out, resume=(out / checkpoint.FILENAME).exists())
        if rng.random() < 0.25:  # in start-up: importing, building the model, cleaning the directory
            time.sleep(rng.uniform(0.0, 0.5))
        else:  # in training: after the first checkpoint (its line is the first output flushed)
            process.stdout.readline()
            previous = leftovers[-1] if leftovers else []
            assert not any((out / name).exists() for name in previous)  # this start removed them
            time.sleep(rng.uniform(0.0, 0.12))
        sig = signal.SIGINT if rng.random() < 0.5 else signal.SIGKILL
        process.send_signal(sig)
        stdout, stderr = process.communicate()
        signals.append((sig.name, process.returncode))
        # 130: the Ctrl-C checkpointed; -SIGINT: it came during Python's start-up, before the program ran
        assert process.returncode in ((130, -signal.SIGINT) if sig == signal.SIGINT else (-signal.SIGKILL,)), stderr
        if (out / checkpoint.FILENAME).exists():
            step = checkpoint.load(out)[2]["step"]  # whatever the moment, the checkpoint loads
            runs.load_run(out)
            if process.returncode == 130:
                assert f"the checkpoint of step {step} in {out} is intact" in stdout
        leftovers.append([name for name in os.listdir(out) if name.endswith(".tmp")] if out.exists() else [])
    final = start(out, resume=(out / checkpoint.FILENAME).exists())
    stdout, stderr = final.communicate()
    assert final.returncode == 0, stderr
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
    assert json.loads((out / "history.json").read_text()) == json.loads(
        (tmp_path / "reference" / "history.json").read_text())
    assert [name for name, _ in signals].count("SIGKILL") >= 2 and [code for _, code in signals].count(130) >= 2, \
        (signals, leftovers)
