"""Errors raised by crewtrain_nb.

Every error the store raises is a :class:`StoreError`, so ``except StoreError``
catches all of them. Messages say what happened, to which file, and what the
user can do about it.
"""

from __future__ import annotations

import pickle

__all__ = [
    "CorruptStoreError",
    "DecryptionError",
    "RemoteStoreWarning",
    "StoreError",
    "StoreFormatError",
    "StoreKeyError",
    "StoreLockTimeout",
    "StoreNotFoundError",
    "StoreVersionError",
    "StoreWriteError",
    "UnsafePickleError",
]


class StoreError(Exception):
    """Base class of every error about a training store file.

    Parameters
    ----------
    message
        The full, human-readable message.
    path
        The store file the error is about, when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class CorruptStoreError(StoreError, pickle.UnpicklingError):
    """The file exists but is not a readable pickle (truncated, garbled, trailing bytes).

    Also a :class:`pickle.UnpicklingError`, as CrewAI's ``load()`` raises, and the
    message keeps the unpickler's own words (e.g. ``pickle data was truncated``),
    so code written against CrewAI's handler keeps working.
    """


class UnsafePickleError(StoreError):
    """The file asks to load a Python global that safe loading does not allow.

    Attributes
    ----------
    global_name
        ``"module.name"`` of the refused global.
    """

    def __init__(self, message: str, *, path: str | None = None, global_name: str = "") -> None:
        super().__init__(message, path=path)
        self.global_name = global_name


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A view was given a store file (or a handler of one) that does not exist (yet)."""


class StoreLockTimeout(StoreError, TimeoutError):
    """Another process held the store's lock for longer than ``lock_timeout``."""


class StoreWriteError(StoreError):
    """Writing the store failed; the previous file is unchanged."""


class StoreFormatError(StoreError, ValueError):
    """The data does not have the shape the operation needs (e.g. appending to a list)."""


class StoreKeyError(StoreError, ValueError):
    """The encryption key is malformed (not 32 bytes, not base64 of 32 bytes). The key is never quoted."""


class DecryptionError(StoreError):
    """An encrypted store cannot be decrypted: no key, a wrong key, or a file altered on disk.

    Also raised for a plain (unencrypted) file opened with a key, since a plain
    file in place of an encrypted one is a substitution. Nothing is loaded.
    """


class StoreVersionError(StoreError, LookupError):
    """``restore()`` was asked for a backup version that does not exist."""


class RemoteStoreWarning(UserWarning):
    """The store lives on an fsspec filesystem where atomic rename or cross-process locking is not guaranteed."""
