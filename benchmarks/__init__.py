"""Benchmarks for convtrans: ``python -m benchmarks.run`` (``make bench``)."""
