"""Compressed (.pkl.gz/.bz2/.xz) and encrypted (AES-GCM) stores: same guarantees as plain ones."""

from __future__ import annotations

import base64
import bz2
import errno
import gzip
import logging
import lzma
import os
import pickle
import stat
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crewtrain_nb import (
    CorruptStoreError,
    CrewTrainingHandler,
    DecryptionError,
    StoreError,
    StoreKeyError,
    StoreWriteError,
    UnsafePickleError,
)
from crewtrain_nb.store import _atomic, _codec
from crewtrain_nb.store._codec import ENCRYPTED_MAGIC, KEY_ENV_VAR

from .test_store import temp_files
from .test_unpickle import hostile_payloads

#: Suffix -> how a user's own tools would open that file.
CODECS: dict[str, Callable[..., Any]] = {".pkl.gz": gzip.open, ".pkl.bz2": bz2.open, ".pkl.xz": lzma.open}
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".pkl.gz": gzip.compress,
    ".pkl.bz2": bz2.compress,
    ".pkl.xz": lzma.compress,
}


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


def fill(handler: CrewTrainingHandler, data: dict[str, Any]) -> None:
    for agent, records in data.items():
        for iteration, record in records.items():
            handler.append(iteration, agent, record)


# -- compression ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_compressed_round_trip_is_readable_by_the_stdlib(
    tmp_path: Path, training_data: dict[str, Any], suffix: str
) -> None:
    handler = CrewTrainingHandler(tmp_path / f"training_data{suffix}")
    assert handler.file_path == str(tmp_path / f"training_data{suffix}")
    fill(handler, training_data)
    assert handler.load() == training_data
    assert CrewTrainingHandler(handler.file_path).load() == training_data  # a fresh reader
    with CODECS[suffix](handler.file_path, "rb") as file:
        assert pickle.load(file) == training_data
    raw = Path(handler.file_path).read_bytes()
    assert len(raw) < len(pickle.dumps(training_data, protocol=4))
    assert stat.S_IMODE(os.stat(handler.file_path).st_mode) == 0o600
    handler.clear()
    with CODECS[suffix](handler.file_path, "rb") as file:
        assert pickle.load(file) == {}


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_compressed_files_written_by_other_tools_load(
    tmp_path: Path, training_data: dict[str, Any], suffix: str
) -> None:
    path = tmp_path / f"run{suffix}"
    with CODECS[suffix](path, "wb") as file:
        pickle.dump(training_data, file, protocol=2)
    assert CrewTrainingHandler(path).load() == training_data


def test_pkl_is_appended_only_when_no_known_suffix(tmp_path: Path) -> None:
    assert CrewTrainingHandler(tmp_path / "a.gz").file_path == str(tmp_path / "a.gz.pkl")
    assert CrewTrainingHandler(tmp_path / "a.pkl.gz").file_path == str(tmp_path / "a.pkl.gz")
    assert CrewTrainingHandler(tmp_path / "a.pkl.xz").file_path == str(tmp_path / "a.pkl.xz")
    assert CrewTrainingHandler(tmp_path / "a.pkl.bz2").file_path == str(tmp_path / "a.pkl.bz2")
    assert CrewTrainingHandler(tmp_path / "a.xz.pkl").file_path == str(tmp_path / "a.xz.pkl")
    plain = CrewTrainingHandler(tmp_path / "a.gz")
    plain.append(0, "a", {"x": 1})
    with open(plain.file_path, "rb") as file:
        assert pickle.load(file) == {"a": {0: {"x": 1}}}  # a plain pickle, as CrewAI reads


@pytest.mark.parametrize("suffix", sorted(CODECS))
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated-half"),
        pytest.param(lambda blob: blob[:-4], id="truncated-end"),
        pytest.param(lambda blob: blob[:8] + bytes(b ^ 0x5A for b in blob[8:40]) + blob[40:], id="garbled"),
        pytest.param(lambda blob: b"not compressed at all", id="text"),
    ],
)
def test_corrupt_compressed_file_raises_and_is_never_overwritten(
    tmp_path: Path, training_data: dict[str, Any], suffix: str, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / f"training_data{suffix}"
    path.write_bytes(damage(COMPRESSORS[suffix](pickle.dumps(training_data, protocol=4))))
    before = path.read_bytes()
    handler = CrewTrainingHandler(path)
    with pytest.raises(CorruptStoreError) as caught:
        handler.load()
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    assert "restore it from a backup" in str(caught.value)
    with pytest.raises(CorruptStoreError):
        handler.append(99, "new-agent", {"initial_output": "would erase the store"})
    assert path.read_bytes() == before


def _bomb(suffix: str, size: int) -> bytes:
    """``size`` zero bytes compressed, built in chunks so the test itself never holds them."""
    chunk = bytes(1 << 20)
    if suffix == ".pkl.gz":
        compressor: Any = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    elif suffix == ".pkl.bz2":
        compressor = bz2.BZ2Compressor(9)
    else:
        compressor = lzma.LZMACompressor()
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_decompression_bomb_is_refused_without_inflating_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bomb{suffix}"
    bomb_size = 64 << 20
    path.write_bytes(_bomb(suffix, bomb_size))
    assert path.stat().st_size < bomb_size // 100
    handler = CrewTrainingHandler(path, max_decompressed_size=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptStoreError, match="decompression bomb") as caught:
            handler.load()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(caught.value) and "max_decompressed_size" in str(caught.value)
    assert peak < 16 << 20  # the 64 MiB were never held
    # The same file with a cap above its size loads (it is a valid stream of zeros, not a pickle).
    with pytest.raises(CorruptStoreError, match="not a readable pickle"):
        CrewTrainingHandler(path, max_decompressed_size=bomb_size).load()


def test_default_decompression_cap_is_bounded() -> None:
    assert 256 << 20 <= _codec.DEFAULT_MAX_DECOMPRESSED_SIZE <= 4 << 30
    handler = CrewTrainingHandler("x.pkl.gz")
    assert handler._file.codec.max_decompressed_size == _codec.DEFAULT_MAX_DECOMPRESSED_SIZE
    with pytest.raises(TypeError, match="max_decompressed_size"):
        CrewTrainingHandler("x.pkl.gz", max_decompressed_size=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_hostile_pickle_inside_a_compressed_file_is_refused(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"training_data{suffix}"
    with CODECS[suffix](path, "wb") as file:
        pickle.dump({"agent": {0: {"x": hostile_payloads(marker)["os.system"]}}}, file)
    with pytest.raises(UnsafePickleError, match="os.system|posix.system"):
        CrewTrainingHandler(path).load()
    assert not marker.exists()


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_failing_compressed_save_leaves_the_old_file(
    tmp_path: Path, training_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl.xz")
    handler.save(training_data)
    before = Path(handler.file_path).read_bytes()

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(_atomic.os, step, failing)
        with pytest.raises(StoreWriteError):
            handler.append(77, "new-agent", {"initial_output": "lost?"})
    assert Path(handler.file_path).read_bytes() == before
    assert temp_files(tmp_path) == []
    assert handler.load() == training_data


# -- encryption -----------------------------------------------------------------


def test_encrypted_round_trip(tmp_path: Path, training_data: dict[str, Any], key: bytes) -> None:
    handler = CrewTrainingHandler(tmp_path / "secret.pkl", key=key)
    fill(handler, training_data)
    assert handler.load() == training_data
    raw = Path(handler.file_path).read_bytes()
    assert raw.startswith(ENCRYPTED_MAGIC + b"\x01")
    some_text = next(iter(next(iter(training_data.values())).values()))["initial_output"]
    assert some_text[:20].encode() not in raw
    # Never readable as a plain pickle, whatever the random ciphertext: the header's first byte is
    # no pickle opcode (with a printable one, about one file in 200 "loaded" as a bytes object).
    with pytest.raises(pickle.UnpicklingError, match="invalid load key"):
        pickle.loads(raw)
    assert stat.S_IMODE(os.stat(handler.file_path).st_mode) == 0o600
    # base64 text and the environment variable give the same key
    assert CrewTrainingHandler(handler.file_path, key=base64.b64encode(key).decode()).load() == training_data
    with pytest.raises(StoreKeyError, match="32 raw bytes"):
        CrewTrainingHandler(handler.file_path, key=base64.b64encode(key))  # bytes are the raw key, not base64


def test_key_from_the_environment(
    tmp_path: Path, training_data: dict[str, Any], key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, base64.b64encode(key).decode())
    handler = CrewTrainingHandler(tmp_path / "secret.pkl")
    handler.save(training_data)
    assert Path(handler.file_path).read_bytes().startswith(ENCRYPTED_MAGIC)
    assert CrewTrainingHandler(handler.file_path, key=key).load() == training_data
    # key=False ignores the variable: plain files stay readable and writable as plain pickles
    plain = CrewTrainingHandler(tmp_path / "plain.pkl", key=False)
    plain.save(training_data)
    with open(plain.file_path, "rb") as file:
        assert pickle.load(file) == training_data
    with pytest.raises(DecryptionError, match="key=False"):
        CrewTrainingHandler(plain.file_path).load()  # the variable is set: a plain file is refused


def test_each_write_uses_a_fresh_nonce(tmp_path: Path, key: bytes) -> None:
    handler = CrewTrainingHandler(tmp_path / "secret.pkl", key=key)
    handler.save({"a": 1})
    first = Path(handler.file_path).read_bytes()
    handler.save({"a": 1})
    second = Path(handler.file_path).read_bytes()
    assert first != second
    header = len(ENCRYPTED_MAGIC) + 1  # magic, then the format version
    assert first[header : header + 12] != second[header : header + 12]  # the nonce follows the header


def test_compress_then_encrypt(tmp_path: Path, training_data: dict[str, Any], key: bytes) -> None:
    handler = CrewTrainingHandler(tmp_path / "secret.pkl.gz", key=key)
    handler.save(training_data)
    raw = Path(handler.file_path).read_bytes()
    size = len(ENCRYPTED_MAGIC) + 1  # magic, then the format version
    header, nonce, sealed = raw[:size], raw[size : size + 12], raw[size + 12 :]
    inner = AESGCM(key).decrypt(nonce, sealed, header)
    assert inner.startswith(b"\x1f\x8b")  # gzip inside the encryption
    assert pickle.loads(gzip.decompress(inner)) == training_data
    assert handler.load() == training_data


def test_wrong_key_is_refused(tmp_path: Path, training_data: dict[str, Any], key: bytes) -> None:
    path = tmp_path / "secret.pkl"
    CrewTrainingHandler(path, key=key).save(training_data)
    with pytest.raises(DecryptionError, match="key is wrong or the file was altered") as caught:
        CrewTrainingHandler(path, key=os.urandom(32)).load()
    assert caught.value.path == str(path) and str(path) in str(caught.value)


@pytest.mark.parametrize("where", ["version", "nonce", "ciphertext", "tag", "truncated"])
def test_tampered_encrypted_file_is_refused(
    tmp_path: Path, training_data: dict[str, Any], key: bytes, where: str
) -> None:
    path = tmp_path / "secret.pkl"
    handler = CrewTrainingHandler(path, key=key)
    handler.save(training_data)
    raw = bytearray(path.read_bytes())
    if where == "truncated":
        raw = raw[:30]
    else:
        index = {"version": 7, "nonce": 10, "ciphertext": len(raw) // 2, "tag": len(raw) - 3}[where]
        raw[index] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(DecryptionError) as caught:
        CrewTrainingHandler(path, key=key).load()
    assert str(path) in str(caught.value)
    with pytest.raises(DecryptionError):
        CrewTrainingHandler(path, key=key).append(1, "x", {})  # nothing overwrites the evidence
    assert path.read_bytes() == bytes(raw)


def test_encrypted_file_without_a_key_is_refused(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "secret.pkl"
    CrewTrainingHandler(path, key=key).save({"a": 1})
    with pytest.raises(DecryptionError, match=KEY_ENV_VAR) as caught:
        CrewTrainingHandler(path).load()
    assert isinstance(caught.value, StoreError)
    with pytest.raises(DecryptionError):
        CrewTrainingHandler(path, key=False).load()


def test_plain_file_opened_with_a_key_is_refused(tmp_path: Path, training_data: dict[str, Any], key: bytes) -> None:
    path = tmp_path / "training_data.pkl"
    CrewTrainingHandler(path).save(training_data)
    with pytest.raises(DecryptionError, match="not encrypted"):
        CrewTrainingHandler(path, key=key).load()
    # save() does not read: this is how a plain store is encrypted
    CrewTrainingHandler(path, key=key).save(CrewTrainingHandler(path, key=False).load())
    assert CrewTrainingHandler(path, key=key).load() == training_data


def test_hostile_pickle_inside_an_encrypted_file_is_refused(tmp_path: Path, key: bytes) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "secret.pkl"
    trusted_writer = CrewTrainingHandler(path, key=key, trusted=True)
    trusted_writer.save({"agent": {0: {"x": hostile_payloads(marker)["os.system"]}}})
    with pytest.raises(UnsafePickleError):
        CrewTrainingHandler(path, key=key).load()
    assert not marker.exists()


BAD_KEYS: list[Any] = [
    pytest.param(b"k" * 16, id="16-bytes"),
    pytest.param(b"k" * 33, id="33-bytes"),
    pytest.param("not base64 at all!!", id="not-base64"),
    pytest.param(base64.b64encode(b"s" * 16).decode(), id="base64-of-16"),
    pytest.param(12345, id="int"),
    pytest.param(True, id="true"),
]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_bad_key_format_is_a_clear_error(tmp_path: Path, bad: Any) -> None:
    expected = TypeError if bad is True else StoreKeyError
    with pytest.raises(expected) as caught:
        CrewTrainingHandler(tmp_path / "secret.pkl", key=bad)
    if expected is StoreKeyError:
        assert str(tmp_path / "secret.pkl") in str(caught.value)
        assert str(bad) not in str(caught.value)


def test_bad_key_in_the_environment_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, "c2hvcnQ=")
    with pytest.raises(StoreKeyError, match=KEY_ENV_VAR) as caught:
        CrewTrainingHandler(tmp_path / "secret.pkl")
    assert "c2hvcnQ=" not in str(caught.value)


def test_the_key_never_appears_in_errors_reprs_or_logs(
    tmp_path: Path, key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text_key = base64.b64encode(key).decode()
    forms = {text_key, key.hex(), repr(key), str(key), text_key.rstrip("=")}
    seen: list[str] = []
    path = tmp_path / "secret.pkl"
    handler = CrewTrainingHandler(path, key=text_key)
    handler.save({"a": 1})
    seen += [repr(handler), str(handler), repr(handler._file.codec.key), str(handler._file.codec.key)]
    with pytest.raises(TypeError) as pickled:
        pickle.dumps(handler._file.codec.key)
    seen.append(str(pickled.value))
    for attempt in (
        lambda: CrewTrainingHandler(path, key=os.urandom(32)).load(),  # wrong key
        lambda: CrewTrainingHandler(path).load(),  # missing key
        lambda: CrewTrainingHandler(path, key=text_key[:-4]),  # bad format
        lambda: CrewTrainingHandler(path, key=key[:31]),  # bad length
        lambda: CrewTrainingHandler(tmp_path / "plain.pkl", key=key).load(),  # plain file with a key
    ):
        (tmp_path / "plain.pkl").write_bytes(pickle.dumps({}))
        with pytest.raises(StoreError) as caught:
            attempt()
        chain: BaseException | None = caught.value
        while chain is not None:
            seen += [str(chain), repr(chain)]
            chain = chain.__cause__ or chain.__context__
    seen += [record.getMessage() for record in caplog.records]
    for text in seen:
        for form in forms:
            assert form not in text


def test_missing_cryptography_names_the_extra(tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError, match=r"crewtrain-nb\[crypto\]"):
        CrewTrainingHandler(tmp_path / "secret.pkl", key=key)
