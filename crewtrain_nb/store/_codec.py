"""How a store's pickle is laid out on disk: plain, compressed, encrypted, or both.

The pickle bytes are *encoded* before the atomic write and *decoded* after the
read, so every guarantee of the handler (atomic replace, locking, safe loading)
holds for every layout.

* Compression is chosen by the file suffix: ``.pkl.gz``, ``.pkl.bz2``,
  ``.pkl.xz`` (stdlib ``gzip``, ``bz2``, ``lzma``). Decompression stops with
  :class:`~crewtrain_nb.CorruptStoreError` past ``max_decompressed_size``
  bytes, so a decompression bomb cannot exhaust memory.
* Encryption (optional, ``cryptography``) is AES-256-GCM with a fresh random
  96-bit nonce per write. The file is ``MAGIC | VERSION | nonce | ciphertext+tag``;
  the header is authenticated too. Compression happens first (encrypted bytes
  do not compress).
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from ..errors import CorruptStoreError, DecryptionError, StoreKeyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "COMPRESSED_SUFFIXES",
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "ENCRYPTED_MAGIC",
    "KEY_ENV_VAR",
    "StoreCodec",
    "StoreKey",
    "compression_for",
    "resolve_key",
]

#: Environment variable read when no ``key=`` is given: base64 of 32 bytes.
KEY_ENV_VAR = "CREWTRAIN_KEY"
#: First bytes of an encrypted store. It starts with ``0x00``, which is no pickle opcode: ``pickle.load``
#: of an encrypted file fails at the first byte, whatever the random ciphertext after it holds (a
#: printable first byte would be read as an opcode and, now and then, make the file "load" as junk).
ENCRYPTED_MAGIC = b"\x00CTNBENC"
_FORMAT_VERSION = 1
_HEADER = ENCRYPTED_MAGIC + bytes([_FORMAT_VERSION])
_NONCE_SIZE = 12  # 96 bits, what GCM is designed for
_TAG_SIZE = 16
_KEY_SIZE = 32  # AES-256

_GiB = 1 << 30
_CHUNK = 1 << 20

#: File suffix -> opener of a decompressing file object over a binary stream.
_OPENERS: dict[str, Callable[[IO[bytes]], io.BufferedIOBase]] = {
    ".pkl.gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".pkl.bz2": lambda raw: bz2.BZ2File(raw, mode="rb"),
    ".pkl.xz": lambda raw: lzma.LZMAFile(raw, mode="rb"),
}
_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    # mtime=0: the same data gives the same bytes (stable hashes in the audit log).
    ".pkl.gz": lambda data: gzip.compress(data, compresslevel=6, mtime=0),
    ".pkl.bz2": lambda data: bz2.compress(data, compresslevel=9),
    ".pkl.xz": lambda data: lzma.compress(data, preset=6),
}
#: The suffixes that select compression.
COMPRESSED_SUFFIXES: tuple[str, ...] = tuple(_OPENERS)
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


def _default_max_decompressed_size() -> int:
    # Half the machine's RAM, at most 4 GiB: a bomb fails before it can push
    # the machine into swap, and any real store still fits.
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4 * _GiB
    return max(256 << 20, min(4 * _GiB, physical // 2))


#: Default cap on the decompressed size of a compressed store: min(4 GiB, RAM / 2).
DEFAULT_MAX_DECOMPRESSED_SIZE: int = _default_max_decompressed_size()


def compression_for(path: str) -> str | None:
    """Return the compression suffix of ``path`` (e.g. ``".pkl.gz"``), or ``None`` for a plain store."""
    for suffix in COMPRESSED_SUFFIXES:
        if path.endswith(suffix):
            return suffix
    return None


class StoreKey:
    """A 32-byte AES key that never shows itself in a repr, str or error message."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "StoreKey(<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a StoreKey cannot be pickled; pass the key again where it is needed")

    def aead(self) -> AESGCM:
        """The AES-GCM cipher for this key (``cryptography`` must be installed)."""
        return _aesgcm_class()(self._secret)


def _aesgcm_class() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ImportError(
            "Encrypted stores need the 'cryptography' package: pip install 'crewtrain-nb[crypto]'"
        ) from exc
    return AESGCM


def resolve_key(key: object, *, path: str) -> StoreKey | None:
    """Turn ``key=`` (or ``CREWTRAIN_KEY`` when ``key`` is ``None``) into a :class:`StoreKey`.

    Parameters
    ----------
    key
        32 raw bytes, base64 text of 32 bytes, ``None`` (use the environment
        variable when it is set) or ``False`` (no encryption, even if it is set).
    path
        The store, for error messages.

    Raises
    ------
    StoreKeyError
        The key is not 32 bytes / not base64 of 32 bytes. The message never
        contains the key.
    ImportError
        A key is given but ``cryptography`` is not installed.
    """
    if key is False:
        return None
    source = "key="
    if key is None:
        key = os.environ.get(KEY_ENV_VAR) or None
        source = f"the {KEY_ENV_VAR} environment variable"
        if key is None:
            return None
    if isinstance(key, StoreKey):
        secret = key._secret
    elif isinstance(key, (bytes, bytearray, memoryview)):
        secret = bytes(key)
        if len(secret) != _KEY_SIZE:
            raise StoreKeyError(
                f"{path}: {source} must be {_KEY_SIZE} raw bytes (or base64 text of {_KEY_SIZE} bytes), "
                f"got {len(secret)} bytes. Make one with base64.b64encode(os.urandom(32)).",
                path=path,
            )
    elif isinstance(key, str):
        try:
            secret = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError):
            # ``from None``: the decoder's own message could quote the text.
            raise StoreKeyError(
                f"{path}: {source} is not valid base64 text. Give base64 of {_KEY_SIZE} random bytes, "
                "e.g. base64.b64encode(os.urandom(32)).decode().",
                path=path,
            ) from None
        if len(secret) != _KEY_SIZE:
            raise StoreKeyError(
                f"{path}: {source} decodes to {len(secret)} bytes; an AES-256 key is {_KEY_SIZE} bytes.",
                path=path,
            )
    else:
        raise StoreKeyError(
            f"{path}: {source} must be bytes or base64 text, got {type(key).__name__}.",
            path=path,
        )
    _aesgcm_class()  # fail now, not at the first save
    return StoreKey(secret)


class StoreCodec:
    """Encode pickle bytes for the disk and decode them back, for one store file.

    Parameters
    ----------
    path
        The store file; its suffix selects compression.
    key
        The encryption key, or ``None`` for an unencrypted store.
    max_decompressed_size
        Largest decompressed size accepted, in bytes.
    """

    __slots__ = ("compression", "key", "max_decompressed_size", "path")

    def __init__(self, path: str, *, key: StoreKey | None, max_decompressed_size: int) -> None:
        self.path = path
        self.compression = compression_for(path)
        self.key = key
        self.max_decompressed_size = max_decompressed_size

    @property
    def is_plain(self) -> bool:
        """``True`` when the disk bytes are the pickle itself (what CrewAI reads, and what a tail can extend)."""
        return self.compression is None and self.key is None

    def encode(self, payload: bytes) -> bytes:
        """Compress (by suffix) then encrypt (with a key) ``payload``."""
        if self.compression is not None:
            payload = _COMPRESSORS[self.compression](payload)
        if self.key is not None:
            nonce = os.urandom(_NONCE_SIZE)
            payload = _HEADER + nonce + self.key.aead().encrypt(nonce, payload, _HEADER)
        return payload

    def decode(self, stored: bytes) -> bytes:
        """Decrypt and decompress the bytes read from disk into the pickle bytes.

        Raises
        ------
        DecryptionError
            An encrypted file without a key, a wrong key or a tampered file,
            or a plain file where a key was given.
        CorruptStoreError
            A corrupt or truncated compressed stream, or one that inflates
            past ``max_decompressed_size``.
        """
        if stored.startswith(ENCRYPTED_MAGIC):
            stored = self._decrypt(stored)
        elif self.key is not None:
            raise DecryptionError(
                f"{self.path}: the file is not encrypted, but a key was given (key= or {KEY_ENV_VAR}). "
                "Refusing it, since anyone could have put a plain file in place of the encrypted one. "
                "To read a plain store, open it with key=False.",
                path=self.path,
            )
        if self.compression is not None:
            stored = self._decompress(stored)
        return stored

    def _decrypt(self, stored: bytes) -> bytes:
        if self.key is None:
            raise DecryptionError(
                f"{self.path}: the file is encrypted; pass key= or set {KEY_ENV_VAR} "
                "(base64 of the 32-byte key) to read it.",
                path=self.path,
            )
        header = stored[: len(_HEADER)]
        if header != _HEADER:
            raise DecryptionError(
                f"{self.path}: encrypted with format version {header[len(ENCRYPTED_MAGIC) :].hex() or 'none'}, "
                f"which this crewtrain_nb does not know (it writes version {_FORMAT_VERSION}); upgrade crewtrain_nb.",
                path=self.path,
            )
        body = stored[len(_HEADER) :]
        if len(body) < _NONCE_SIZE + _TAG_SIZE:
            raise DecryptionError(
                f"{self.path}: the encrypted file is truncated ({len(stored)} bytes); restore it from a backup.",
                path=self.path,
            )
        from cryptography.exceptions import InvalidTag

        try:
            return self.key.aead().decrypt(body[:_NONCE_SIZE], body[_NONCE_SIZE:], _HEADER)
        except InvalidTag:
            raise DecryptionError(
                f"{self.path}: decryption failed: the key is wrong or the file was altered. "
                "Nothing was loaded; check the key, or restore the file from a backup.",
                path=self.path,
            ) from None

    def _decompress(self, stored: bytes) -> bytes:
        assert self.compression is not None
        limit = self.max_decompressed_size
        chunks: list[bytes] = []
        total = 0
        try:
            with _OPENERS[self.compression](io.BytesIO(stored)) as stream:
                while True:
                    # Bounded reads: at most ``limit`` + one chunk is ever held.
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > limit:
                        raise CorruptStoreError(
                            f"{self.path}: decompresses to more than {limit} bytes (max_decompressed_size); "
                            "refusing it as a possible decompression bomb. If the store really is that "
                            "large, open it with a larger max_decompressed_size.",
                            path=self.path,
                        )
                    chunks.append(chunk)
        except _DECOMPRESS_ERRORS as exc:
            raise CorruptStoreError(
                f"{self.path}: not a readable {self.compression[5:]} stream ({type(exc).__name__}: {exc}). "
                "The file is left untouched; restore it from a backup or move it aside.",
                path=self.path,
            ) from exc
        return b"".join(chunks)
