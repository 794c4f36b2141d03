"""Runnable examples of convtrans (run from the repository root with ``python -m examples....``)."""
