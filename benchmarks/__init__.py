"""Benchmarks of the suite (method and results: docs/performance.md). Run them as modules from the repository
root: `python -m benchmarks.throughput`, `python -m benchmarks.update_profile`, `python -m benchmarks.gpu_check`.

- `common`: process set-up, synthetic data, our configured update, timing, tables
- `flops`: the matmuls one update runs (recorded from the real update) and the roofline
- `peer`: d3rlpy's update on the identical configuration
- `vectorized`: N seeds one after another against N seeds as one batched network
- `e2e`: the training loop's end-to-end overhead
- `throughput`, `update_profile`, `gpu_check`: the command-line benchmarks
"""
