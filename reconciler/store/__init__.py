"""The store: what the planner cannot observe, remembered per spec (SQLite by default).

Rules of this package: callers import from here, not from a backend module, so another
backend (DynamoDB for shared replicas) can be added behind the same names.
"""

from reconciler.store.sqlite import StateDirLock, StateDirLocked, Store, StoreError

__all__ = ["StateDirLock", "StateDirLocked", "Store", "StoreError"]
