"""Benchmarks of tinygrad_attn against PyTorch eager and a hand-written numpy model (issues 7 and 16).

bench.py is the entry point (`make bench`, or `python -m benchmarks.bench --help`) and holds
our side of the race; torch_twin.py and numpy_reference.py are the same model in PyTorch and
in plain numpy; autograd_side.py is what a side does, written once for ours and PyTorch's.
bpe_speed.py times byte-pair-encoding training and encoding on the text corpus.
kv_cache_memory.py writes the tables of docs/kv-cache-memory.md (every rung's cache, measured,
and at published sizes); mha_to_gqa.py converts the trained copy model to grouped-query
attention by mean-pooling and reports its held-out accuracy before, after and after uptraining.
train_seeds.py checks that train.py's default recipe reaches 100% held-out for seeds 0-9.
"""
