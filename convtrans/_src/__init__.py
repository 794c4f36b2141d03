"""convtrans internals: not public API; the public names are re-exported by ``convtrans``."""
