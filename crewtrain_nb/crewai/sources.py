"""Open CrewAI's two files from whatever a user passes (a path, a handler, the dict), and check their shape.

Reading goes through the store's source dispatch (:func:`crewtrain_nb.store.open_source`), so safe
loading applies; the data comes back shared, never to be mutated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import StoreFormatError
from ..store import PickleHandler, Source, open_source
from .files import is_feedback_record, is_trained_entry

__all__ = ["read_trained", "read_training", "source_path"]


def _where(path: str | None, name: str) -> str:
    return f"{path}: " if path else f"{name}: "


def source_path(source: Source) -> str | None:
    """The file behind ``source`` (a path or a handler), without reading it; ``None`` for a dict."""
    if isinstance(source, PickleHandler):
        return source.file_path
    if isinstance(source, (str, os.PathLike)):
        return os.path.abspath(os.fspath(source))
    return None


def read_training(
    source: Source, *, trusted: bool = False, name: str = "training"
) -> tuple[Mapping[Any, Any], str | None]:
    """``(data, path)`` of a ``training_data.pkl``-shaped source: ``{agent_id: {iteration: record}}``.

    Raises
    ------
    StoreError
        The file does not exist or cannot be read (corrupt, unsafe).
    StoreFormatError
        The data is not training data (e.g. a trained-agents file); the message says which file to pass.
    """
    data, path = open_source(source, trusted=trusted)
    where = _where(path, name)
    if not isinstance(data, Mapping):
        raise StoreFormatError(f"{where}holds a {type(data).__name__}, not CrewAI training data", path=path)
    for agent, entry in data.items():
        if is_trained_entry(entry):
            raise StoreFormatError(
                f"{where}this is a trained-agents file ({{role: {{'suggestions', ...}}}}); pass training_data.pkl "
                "here and the trained file as trained=",
                path=path,
            )
        if not isinstance(entry, Mapping) or not all(isinstance(key, int) for key in entry):
            raise StoreFormatError(
                f"{where}agent {agent!r} is not a dict of iteration (int) -> record; expected CrewAI's "
                "training_data.pkl {agent_id: {iteration: {'initial_output', 'human_feedback', 'improved_output'}}}",
                path=path,
            )
        for iteration, record in entry.items():
            if not is_feedback_record(record):
                raise StoreFormatError(
                    f"{where}agent {agent!r}, iteration {iteration}: not a CrewAI feedback record "
                    "({'initial_output', 'human_feedback', 'improved_output'}); this looks like another kind of store",
                    path=path,
                )
    return data, path


def read_trained(
    source: Source, *, trusted: bool = False, name: str = "trained"
) -> tuple[Mapping[str, Any], str | None]:
    """``(data, path)`` of a ``trained_agents_data.pkl``-shaped source: ``{role: {"suggestions", ...}}``.

    Raises
    ------
    StoreError
        The file does not exist or cannot be read.
    StoreFormatError
        The data is not a trained-agents file (e.g. training data); the message says which file to pass.
    """
    data, path = open_source(source, trusted=trusted)
    where = _where(path, name)
    if not isinstance(data, Mapping):
        raise StoreFormatError(f"{where}holds a {type(data).__name__}, not a CrewAI trained-agents file", path=path)
    for role, entry in data.items():
        if isinstance(entry, Mapping) and entry and all(isinstance(key, int) for key in entry):
            raise StoreFormatError(
                f"{where}this is training data ({{agent_id: {{iteration: record}}}}, training_data.pkl); pass "
                "the trained file (trained_agents_data.pkl) here",
                path=path,
            )
        if not isinstance(role, str) or not is_trained_entry(entry):
            raise StoreFormatError(
                f"{where}entry {role!r} is not a trained agent {{'suggestions', 'quality', 'final_summary'}}; "
                "expected CrewAI's trained_agents_data.pkl {role: {...}} (training_data.pkl goes elsewhere)",
                path=path,
            )
    return data, path
