"""The store contract: what every training-store backend implements, and the capabilities it declares.

:class:`TrainingStore` is an abstract base in the shape of zarr's
``zarr.abc.store.Store``: the operations every backend implements, and
``supports_*`` flags that callers branch on instead of on a backend's class.
The backends are siblings that implement it:

* :class:`~crewtrain_nb.store.PickleHandler` (``store/handler.py``), whose file
  mechanics (locks, snapshot cache, atomic replace, versions, audit hooks) are
  a component it holds (``store/_pickle_file.PickleFile``), as ``diskcache``
  keeps its ``Disk`` apart from its ``Cache``;
* :class:`~crewtrain_nb.store.SQLiteHandler` (``store/_sqlite.py``).

What the contract holds:

* CrewAI's handler API: ``initialize_file``, ``save``, ``load``, ``append``,
  ``save_trained_data``, ``clear``; plus ``peek`` (the data without a copy),
  ``batch`` (many writes as one), ``exists``, ``close``, ``versions``, ``restore``.
* The lazy read API: ``agents``, ``iterations``, ``get``, ``entry``,
  ``records``, ``len()``, ``stats`` (``supports_lazy_reads`` says whether they
  query the file or answer from a whole snapshot).
* :meth:`TrainingStore.change_token`: a value a cache keeps to tell whether the
  store may have changed since.
* Public attributes every backend has: ``file_path``, ``trusted``,
  ``lock_timeout``, ``allowed_classes``, ``read_retry_timeout``, and the
  capability-dependent ``lock_path`` (``None`` where the backend locks the
  store file itself), ``backups`` (``0`` without ``supports_versions``) and
  ``audit`` (``False`` without ``supports_audit``).
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import threading
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["DEFAULT_LOCK_TIMEOUT", "PICKLE_PROTOCOL", "StoreStats", "TrainingStore"]

#: Seconds to wait for another process's lock before :class:`~crewtrain_nb.StoreLockTimeout`.
DEFAULT_LOCK_TIMEOUT = 60.0
#: What CrewAI writes (Python's default on 3.8-3.13); every Python >= 3.4 reads it. Both backends pickle with it.
PICKLE_PROTOCOL = 4

_Store = TypeVar("_Store", bound="TrainingStore")


@dataclass(frozen=True)
class StoreStats:
    """Size of a store, from :meth:`~crewtrain_nb.PickleHandler.stats`.

    Attributes
    ----------
    records
        ``(agent, iteration)`` records (what ``len(handler)`` gives).
    agents
        Top-level entries, records or not (trained-agents entries count here).
    bytes
        Bytes on disk: the file, plus SQLite's write-ahead log (``-wal``) when there is one.
    changed
        Last modification of those files (UTC), ``None`` when the store does not exist yet.
    """

    records: int
    agents: int
    bytes: int
    changed: datetime.datetime | None


class TrainingStore(abc.ABC):
    """A training store: CrewAI's handler API, the lazy read API, capabilities and a change token.

    Subclasses call ``super().__init__()`` first. ``isinstance(handler,
    TrainingStore)`` holds for every backend; so do ``isinstance(handler,
    CrewTrainingHandler)`` and ``isinstance(handler, PickleHandler)``, the names
    CrewAI code checks (a backend that is no pickle handler is registered as a
    virtual subclass of them).
    """

    #: The store file, an absolute path (or an fsspec URL).
    file_path: str
    #: ``True``: the full unpickler (only for files you trust); ``False``: safe loading.
    trusted: bool
    #: Seconds a write waits for another writer's lock.
    lock_timeout: float
    #: Classes safe loading builds as the real objects.
    allowed_classes: tuple[type, ...]
    #: Seconds a read retries a file that a writer without a lock may be writing (``0``: read once).
    read_retry_timeout: float
    #: The lock file beside the store; ``None`` where the backend locks the store file itself.
    lock_path: str | None
    #: How many previous versions are kept (``0`` unless ``supports_versions``).
    backups: int
    #: Whether each write appends a line to the audit log (``False`` unless ``supports_audit``).
    audit: bool

    def __init__(self) -> None:
        self._state_lock = threading.RLock()
        #: How many ``batch()`` blocks are open (nested ones join the outermost).
        self._batch_depth = 0

    # -- capabilities (constant per backend) -------------------------------------------------

    @property
    @abc.abstractmethod
    def supports_lazy_reads(self) -> bool:
        """``True``: the lazy reads query the file and never read the whole store; ``False``: they answer
        from a snapshot of the whole store, read once and cached while the file is unchanged."""

    @property
    @abc.abstractmethod
    def supports_versions(self) -> bool:
        """Whether previous versions are kept (``backups=``) and :meth:`versions` / :meth:`restore` work."""

    @property
    @abc.abstractmethod
    def supports_audit(self) -> bool:
        """Whether ``audit=True`` keeps a hash-chained log of the writes."""

    @property
    @abc.abstractmethod
    def supports_any_object(self) -> bool:
        """Whether :meth:`save` takes any picklable object; ``False``: only a dict of agents."""

    # -- CrewAI's handler API -------------------------------------------------------------------

    @abc.abstractmethod
    def initialize_file(self) -> None:
        """Write an empty store (``{}``), replacing whatever the file held."""

    @abc.abstractmethod
    def save(self, data: Any) -> None:
        """Replace the whole store with ``data``, atomically."""

    @abc.abstractmethod
    def load(self) -> Any:
        """The stored object, a copy that is the caller's to mutate; ``{}`` when the file is missing or empty."""

    @abc.abstractmethod
    def append(self, train_iteration: int, agent_id: str, new_data: Any) -> None:
        """Store ``new_data`` as iteration ``train_iteration`` of agent ``agent_id`` (replacing one there)."""

    @abc.abstractmethod
    def save_trained_data(self, agent_id: str, trained_data: Any) -> None:
        """Store ``trained_data`` as the entry of ``agent_id``."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Empty the store."""

    # -- the rest of the store API ----------------------------------------------------------------

    @abc.abstractmethod
    def peek(self) -> Any:
        """The stored object *without* copying it: read-only."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the store file exists (inside :meth:`batch`: always, the batch writes it)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the handler holds open (descriptors, connections); the handler stays usable."""

    @abc.abstractmethod
    def versions(self) -> list[Any]:
        """The kept previous versions, newest first (see ``supports_versions``)."""

    @abc.abstractmethod
    def restore(self, version: Any) -> None:
        """Make a previous version the current store again (see ``supports_versions``)."""

    @abc.abstractmethod
    def change_token(self) -> Hashable:
        """A value that differs whenever the stored data may have changed, for caches.

        It changes at every write made through this handler (inside
        :meth:`batch` too) and whenever another process changed the file; a
        read never changes it. Compare tokens with ``==``; they mean nothing else.
        """

    @abc.abstractmethod
    def companion_paths(self) -> list[str]:
        """The files this backend keeps beside the store for locking and logging (they may not exist yet)."""

    @contextlib.contextmanager
    def batch(self: _Store) -> Iterator[_Store]:
        """Many writes as one: written at the end of the block, or not at all if it raises.

        Inside the block, writes change what ``load`` and the lazy reads see.
        A nested ``batch`` joins the outer one.

        Yields
        ------
        TrainingStore
            This handler.

        Examples
        --------
        >>> import tempfile, os
        >>> from crewtrain_nb import CrewTrainingHandler
        >>> handler = CrewTrainingHandler(os.path.join(tempfile.mkdtemp(), "run"))
        >>> with handler.batch():
        ...     for step in range(3):
        ...         handler.append(step, "agent-a", {"loss": 1 / (step + 1)})
        >>> sorted(handler.load()["agent-a"])
        [0, 1, 2]
        """
        with self._state_lock:
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield self
                finally:
                    self._batch_depth -= 1
                return
            with self._outermost_batch():
                yield self

    @abc.abstractmethod
    def _outermost_batch(self) -> contextlib.AbstractContextManager[None]:
        """The backend's outermost ``batch()``: set ``_batch_depth`` to 1 for the block, write at its end."""

    # -- the lazy read API --------------------------------------------------------------------------

    @abc.abstractmethod
    def agents(self) -> list[Any]:
        """The store's agent ids (top-level keys), in stored order."""

    @abc.abstractmethod
    def iterations(self, agent_id: str) -> list[int]:
        """The iterations of ``agent_id``, in stored order."""

    @abc.abstractmethod
    def get(self, agent_id: str, iteration: int) -> Any:
        """One record: ``load()[agent_id][iteration]``, without reading or copying the rest."""

    @abc.abstractmethod
    def entry(self, agent_id: str) -> Any:
        """The whole entry of ``agent_id``: its iterations dict, or the value stored for it."""

    @abc.abstractmethod
    def records(self, agent_id: str | None = None) -> Iterator[tuple[Any, int, Any]]:
        """``(agent_id, iteration, record)`` for one agent, or for every agent that has iterations."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of ``(agent, iteration)`` records."""

    @abc.abstractmethod
    def stats(self) -> StoreStats:
        """Records, agents, bytes on disk and last change of the store."""

    # -- shared behaviour ----------------------------------------------------------------------------

    def __bool__(self) -> bool:
        # ``__len__`` counts records; a handler of an empty store is still a handler.
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.file_path!r}, trusted={self.trusted})"

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
