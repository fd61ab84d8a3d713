"""Benchmarks (see bench/README.md). A package so the worker can import bench.celery_bench."""
