"""obd, the order-book daemon: collects, keeps and serves L2 order-book snapshots."""

__version__ = "0.3.0"
