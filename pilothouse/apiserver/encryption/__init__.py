"""Encryption at rest (``--encryption-provider-config``), as kube-apiserver does it.

``config`` reads and validates the EncryptionConfiguration file, ``transformers`` holds the ciphers
and Kubernetes' stored layout, ``store`` wraps the backend so that every configured resource is
encrypted on its way down and decrypted on its way up (gets, lists, watches alike), and ``stale``
marks entries an update must rewrite. The ciphers load only when a configuration is given.
"""

from __future__ import annotations

from pilothouse.apiserver.encryption.stale import StaleKeyValue, is_stale
from pilothouse.store.interface import Store

__all__ = ["StaleKeyValue", "is_stale", "wrap_store"]


def wrap_store(store: Store, config_path: str, automatic_reload: bool = False) -> Store:
    """``store`` itself without a configuration file; else the encrypting store over it (raises
    :class:`~pilothouse.apiserver.encryption.config.EncryptionConfigError` for a bad file)."""
    if not config_path:
        return store
    from pilothouse.apiserver.encryption.store import EncryptingStore

    return EncryptingStore(store, config_path, automatic_reload=automatic_reload)
