"""What the tests of training runs share: a copy task small enough to learn in tens of steps."""

# 6 symbols, 4 at a time (so the answer looks 4 tokens back), a 2-layer d_model 32 model, its own
# batch size and warm-up (so that a change of the CLI's defaults does not change what these runs do).
SMALL = ["--num-symbols", "6", "--seq-len", "4", "--d-model", "32", "--layers", "2", "--heads", "4",
         "--batch-size", "32", "--lr", "1e-2", "--warmup", "10", "--eval-every", "10", "--eval-size", "64"]
