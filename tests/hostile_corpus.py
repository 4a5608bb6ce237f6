"""A corpus of hostile pickles, assembled opcode by opcode from the constants of :mod:`pickle`.

Each payload is built by a small assembler (:class:`Asm`) rather than typed as
a byte blob, so the intent of every opcode is readable, and each well-formed
payload is checked with :func:`pickletools.genops` to be a complete pickle. A
payload that safe loading let through would either run code (create the marker
file, call a refused function), read or write out of bounds inside numpy, or
allocate gigabytes from a few bytes.

Used by ``tests/test_hostile_pickles.py`` and ``tests/reliability_report.py``;
it imports nothing from crewtrain_nb.
"""

from __future__ import annotations

import copyreg
import pickle
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["EXTENSION_CODES", "HostilePayload", "hostile_payloads", "register_extension_codes"]

#: Extension codes the EXT payloads use; :func:`register_extension_codes` maps them as an attacker would hope.
EXTENSION_CODES: dict[int, tuple[str, str]] = {
    0x7A: ("os", "system"),  # EXT1
    0x1234: ("builtins", "eval"),  # EXT2
    0x12345: ("subprocess", "Popen"),  # EXT4
}


def register_extension_codes() -> None:
    """Fill :mod:`copyreg`'s extension registry with dangerous globals (in the loading process)."""
    for code, (module, name) in EXTENSION_CODES.items():
        if copyreg._inverted_registry.get(code) != (module, name):  # type: ignore[attr-defined]
            copyreg.add_extension(module, name, code)


@dataclass(frozen=True)
class HostilePayload:
    """One hostile pickle.

    Attributes
    ----------
    name
        What it tries, e.g. ``"os.system"``.
    protocol
        The pickle protocol its opcodes belong to (0-5).
    data
        The bytes.
    expected
        ``"unsafe"`` (refused with ``UnsafePickleError``) or ``"corrupt"`` (the
        bytes cannot be a pickle in this process: ``CorruptStoreError``).
    why
        Why it is dangerous, and for ``"corrupt"`` why it is invalid.
    """

    name: str
    protocol: int
    data: bytes
    expected: str
    why: str


class Asm:
    """Emit the opcodes of one protocol: globals, strings, ints, calls and containers."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol

    def glob(self, module: str, name: str) -> bytes:
        """Push ``module.name``: ``GLOBAL`` (text, protocols 0-3) or ``STACK_GLOBAL`` (4-5)."""
        if self.protocol < 4:
            return pickle.GLOBAL + f"{module}\n{name}\n".encode()
        return self.text(module) + self.text(name) + pickle.STACK_GLOBAL

    def text(self, value: str) -> bytes:
        """Push a ``str``: ``UNICODE`` (raw-unicode-escape text) for protocol 0, else ``BINUNICODE``."""
        if self.protocol == 0:
            return pickle.UNICODE + value.encode("raw-unicode-escape") + b"\n"
        encoded = value.encode("utf-8")
        if self.protocol >= 4 and len(encoded) < 256:
            return pickle.SHORT_BINUNICODE + bytes([len(encoded)]) + encoded
        return pickle.BINUNICODE + len(encoded).to_bytes(4, "little") + encoded

    def raw(self, value: bytes) -> bytes:
        """Push ``bytes`` (protocol 3+ ``BINBYTES``; below that ``_codecs.encode(text, 'latin1')``)."""
        if self.protocol >= 3:
            return pickle.BINBYTES + len(value).to_bytes(4, "little") + value
        return self.call(self.glob("_codecs", "encode"), self.text(value.decode("latin-1")), self.text("latin1"))

    def int(self, value: int) -> bytes:
        """Push an ``int``: ``INT`` text for protocol 0, ``BININT``/``LONG1`` otherwise."""
        if self.protocol == 0:
            return pickle.INT + str(value).encode() + b"\n"
        if -(2**31) <= value < 2**31:
            return pickle.BININT + value.to_bytes(4, "little", signed=True)
        encoded = pickle.encode_long(value)
        return pickle.LONG1 + bytes([len(encoded)]) + encoded

    def none(self) -> bytes:
        return pickle.NONE

    def false(self) -> bytes:
        return pickle.NEWFALSE if self.protocol >= 2 else pickle.INT + b"00\n"

    def tuple(self, *items: bytes) -> bytes:
        return pickle.MARK + b"".join(items) + pickle.TUPLE

    def list(self, *items: bytes) -> bytes:
        return pickle.MARK + b"".join(items) + pickle.LIST

    def dict(self, *pairs: tuple[bytes, bytes]) -> bytes:
        return pickle.MARK + b"".join(key + value for key, value in pairs) + pickle.DICT

    def set(self, *items: bytes) -> bytes:
        if self.protocol >= 4:
            return pickle.EMPTY_SET + pickle.MARK + b"".join(items) + pickle.ADDITEMS
        return self.call(self.glob("builtins", "set"), self.list(*items))

    def call(self, func: bytes, *args: bytes) -> bytes:
        """``func(*args)`` through ``REDUCE``."""
        return func + self.tuple(*args) + pickle.REDUCE

    def build(self, obj: bytes, state: bytes) -> bytes:
        """``obj`` then ``BUILD`` with ``state`` (``__setstate__(state)`` or ``__dict__.update``)."""
        return obj + state + pickle.BUILD

    def record(self, inner: bytes) -> bytes:
        """A CrewAI-shaped store whose one record hides ``inner`` in ``human_feedback``."""
        record = self.dict((self.text("initial_output"), self.text("fine")), (self.text("human_feedback"), inner))
        return self.dict((self.text("agent-1"), self.dict((self.int(0), record))))

    def program(self, body: bytes) -> bytes:
        """A complete pickle: ``PROTO`` (protocol 2+), ``body``, ``STOP``."""
        header = pickle.PROTO + bytes([self.protocol]) if self.protocol >= 2 else b""
        return header + body + pickle.STOP


def _checked(data: bytes) -> bytes:
    # Fails loudly if the assembler produced something that is not one complete pickle.
    ops = list(pickletools.genops(data))
    assert ops[-1][0].name == "STOP" and ops[-1][2] == len(data) - 1, "assembler bug: incomplete pickle"
    return data


def _calls(marker: str) -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
    """``(name, module, function, str arguments)`` of direct code-running calls."""
    touch = f"touch {marker}"
    create = f"open({marker!r}, 'w').close()"
    yield "os.system", "os", "system", (touch,)
    yield "posix.system", "posix", "system", (touch,)
    yield "builtins.eval", "builtins", "eval", (create,)
    yield "builtins.exec", "builtins", "exec", (create,)
    yield "__builtin__.eval (Python 2 name)", "__builtin__", "eval", (create,)
    yield "builtins.compile", "builtins", "compile", (create, "x", "exec")
    yield "builtins.__import__", "builtins", "__import__", ("antigravity",)
    yield "builtins.open", "builtins", "open", (marker, "w")
    yield "io.open", "io", "open", (marker, "w")
    yield "importlib.import_module", "importlib", "import_module", ("antigravity",)
    yield "runpy._run_code (blocklist bypass)", "runpy", "_run_code", (create, "{}")
    yield "timeit.timeit (blocklist bypass)", "timeit", "timeit", (create,)
    yield "code.InteractiveInterpreter", "code", "InteractiveInterpreter", ()
    yield "shutil.rmtree", "shutil", "rmtree", (marker,)


def _list_calls(marker: str) -> Iterator[tuple[str, str, str]]:
    """subprocess functions that take an argv list."""
    for function in ("Popen", "run", "call", "check_output"):
        yield f"subprocess.{function}", "subprocess", function


def hostile_payloads(marker: str) -> list[HostilePayload]:
    """Every payload of the corpus; those that would run code create ``marker`` if they ever ran.

    Parameters
    ----------
    marker
        Path of a file that must never appear.
    """
    payloads: list[HostilePayload] = []

    def add(name: str, protocol: int, body: bytes, why: str, expected: str = "unsafe", *, check: bool = True) -> None:
        data = Asm(protocol).program(body)
        payloads.append(HostilePayload(name, protocol, _checked(data) if check else data, expected, why))

    # Direct calls, each at a different protocol so every protocol 0-5 is covered.
    for index, (name, module, function, arguments) in enumerate(_calls(marker)):
        asm = Asm(index % 6)
        add(name, asm.protocol, asm.call(asm.glob(module, function), *map(asm.text, arguments)), "runs code")
    for index, (name, module, function) in enumerate(_list_calls(marker)):
        asm = Asm((index + 2) % 6)
        argv = asm.list(asm.text("touch"), asm.text(marker))
        add(name, asm.protocol, asm.call(asm.glob(module, function), argv), "runs a program")

    # The same os.system call in every protocol, hidden at each place a record can hold it.
    for protocol in range(6):
        asm = Asm(protocol)
        system = asm.call(asm.glob("os", "system"), asm.text(f"touch {marker}"))
        add("os.system inside a record", protocol, asm.record(system), "runs code while the store loads")
        add("os.system inside a set", protocol, asm.record(asm.set(system)), "set elements are built too")
        add(
            "os.system as a dict key",
            protocol,
            asm.record(asm.dict((system, asm.text("value")))),
            "dict keys are built too",
        )

    asm = Asm(2)
    getattr_system = asm.call(
        asm.glob("builtins", "getattr"),
        asm.call(asm.glob("builtins", "__import__"), asm.text("os")),
        asm.text("system"),
    )
    add(
        "builtins.getattr(__import__('os'), 'system')",
        2,
        getattr_system + asm.tuple(asm.text(f"touch {marker}")) + pickle.REDUCE,
        "fetches os.system without naming it",
    )

    inner = pickle.dumps({"ok": 1}, protocol=4)
    inner_hostile = Asm(4).program(Asm(4).call(Asm(4).glob("os", "system"), Asm(4).text(f"touch {marker}")))
    for protocol, blob in ((3, inner), (4, inner_hostile)):
        asm = Asm(protocol)
        add(
            f"pickle.loads nesting ({'benign' if blob is inner else 'hostile'} inner)",
            protocol,
            asm.call(asm.glob("pickle", "loads"), asm.raw(blob)),
            "a second, unrestricted unpickler",
        )
    asm = Asm(1)
    add(
        "_pickle.loads nesting",
        1,
        asm.call(asm.glob("_pickle", "loads"), asm.raw(inner_hostile)),
        "the C unpickler without restrictions",
    )

    # copyreg tricks.
    asm = Asm(1)
    add(
        "copyreg._reconstructor with subprocess.Popen",
        1,
        asm.call(
            asm.glob("copy_reg", "_reconstructor"),
            asm.glob("subprocess", "Popen"),
            asm.glob("builtins", "object"),
            asm.none(),
        ),
        "_reconstructor instantiates any class it is given",
    )
    asm = Asm(0)
    add(
        "copyreg._reconstructor with os.system as base",
        0,
        asm.call(
            asm.glob("copyreg", "_reconstructor"),
            asm.glob("uuid", "UUID"),
            asm.glob("os", "system"),
            asm.text(f"touch {marker}"),
        ),
        "_reconstructor calls base.__init__(obj, state)",
    )
    asm = Asm(2)
    add(
        "copyreg._reconstructor(dict, bytearray, 2**33)",
        2,
        asm.call(
            asm.glob("copyreg", "_reconstructor"),
            asm.glob("builtins", "dict"),
            asm.glob("builtins", "bytearray"),
            asm.int(2**33),
        ),
        "bytearray.__init__(obj, 2**33) zero-fills 8 GiB",
    )
    asm = Asm(2)
    add(
        "copyreg.__newobj__ (what __reduce_ex__ emits) with subprocess.Popen",
        2,
        asm.call(
            asm.glob("copyreg", "__newobj__"),
            asm.glob("subprocess", "Popen"),
            asm.list(asm.text("touch"), asm.text(marker)),
        ),
        "__reduce_ex__(2) of any object",
    )
    asm = Asm(2)
    add(
        "NEWOBJ with subprocess.Popen (__reduce_ex__ trick)",
        2,
        asm.glob("subprocess", "Popen") + asm.tuple(asm.list(asm.text("touch"), asm.text(marker))) + pickle.NEWOBJ,
        "cls.__new__ of any class",
    )
    asm = Asm(4)
    add(
        "NEWOBJ_EX with os.system-backed class",
        4,
        asm.glob("subprocess", "Popen")
        + asm.tuple(asm.list(asm.text("touch"), asm.text(marker)))
        + asm.dict()
        + pickle.NEWOBJ_EX,
        "cls.__new__(*args, **kwargs) of any class",
    )

    # functools / operator gadgets.
    asm = Asm(3)
    partial = asm.call(asm.glob("functools", "partial"), asm.glob("os", "system"), asm.text(f"touch {marker}"))
    add("functools.partial(os.system, ...)()", 3, partial + asm.tuple() + pickle.REDUCE, "a callable built from parts")
    asm = Asm(4)
    module = asm.call(asm.glob("importlib", "import_module"), asm.text("os"))
    getter = asm.call(asm.glob("operator", "attrgetter"), asm.text("system"))
    add("operator.attrgetter('system')(os)", 4, getter + asm.tuple(module) + pickle.REDUCE, "attribute access gadget")
    asm = Asm(5)
    caller = asm.call(asm.glob("operator", "methodcaller"), asm.text("system"), asm.text(f"touch {marker}"))
    os_module = asm.call(asm.glob("importlib", "import_module"), asm.text("os"))
    add(
        "operator.methodcaller('system', ...)(os)",
        5,
        caller + asm.tuple(os_module) + pickle.REDUCE,
        "method call gadget",
    )

    # Protocol 0/1 opcodes that name and call a global in one go.
    asm = Asm(0)
    add(
        "INST opcode: os.system",
        0,
        pickle.MARK + asm.text(f"touch {marker}") + pickle.INST + b"os\nsystem\n",
        "INST imports and calls module.name",
    )
    asm = Asm(1)
    add(
        "OBJ opcode: subprocess.Popen",
        1,
        pickle.MARK + asm.glob("subprocess", "Popen") + asm.list(asm.text("touch"), asm.text(marker)) + pickle.OBJ,
        "OBJ calls the class on the stack",
    )
    asm = Asm(0)
    source = f"\\u006fpen({marker!r}, 'w').close()"  # "open(...)" written with an escape
    add(
        "text GLOBAL builtins.eval of escaped source",
        0,
        asm.call(pickle.GLOBAL + b"builtins\neval\n", pickle.UNICODE + source.encode() + b"\n"),
        "escaped source text",
    )
    asm = Asm(4)
    escaped = Asm(0).text("\u006fs")  # "os" from raw-unicode-escape text: no b"os" literal needed
    add(
        "STACK_GLOBAL with a module name built from escapes",
        4,
        escaped + asm.text("system") + pickle.STACK_GLOBAL + asm.tuple(asm.text(f"touch {marker}")) + pickle.REDUCE,
        "module name never appears as plain bytes",
    )

    # BUILD on allowed types.
    asm = Asm(2)
    ordered = asm.call(asm.glob("collections", "OrderedDict"))
    inject = asm.dict((asm.text("__setstate__"), asm.glob("os", "system")))
    add(
        "BUILD injects __setstate__ into an OrderedDict",
        2,
        asm.build(asm.build(ordered, inject), asm.text(f"touch {marker}")),
        "a later BUILD calls inst.__setstate__",
    )
    asm = Asm(1)
    uuid_obj = asm.call(
        asm.glob("copy_reg", "_reconstructor"), asm.glob("uuid", "UUID"), asm.glob("builtins", "object"), asm.none()
    )
    evil_state = asm.dict((asm.text("int"), asm.call(asm.glob("builtins", "eval"), asm.text("1"))))
    add(
        "BUILD with __setstate__ on uuid.UUID carrying eval",
        1,
        asm.build(uuid_obj, evil_state),
        "UUID.__setstate__ receives a built object",
    )

    # Guards on allowed callables.
    asm = Asm(2)
    add(
        "builtins.bytearray(2**33)",
        2,
        asm.call(asm.glob("builtins", "bytearray"), asm.int(2**33)),
        "zero-fills 8 GiB from 20 bytes",
    )
    asm = Asm(3)
    add("builtins.bytes(2**40)", 3, asm.call(asm.glob("builtins", "bytes"), asm.int(2**40)), "a 1 TiB object")
    asm = Asm(4)
    add(
        "builtins.str(b'', 'hex') imports a codec module",
        4,
        asm.call(asm.glob("builtins", "str"), asm.raw(b"00"), asm.text("hex")),
        "codec lookup imports modules",
    )
    asm = Asm(0)
    add(
        "_codecs.encode with rot13",
        0,
        asm.call(asm.glob("_codecs", "encode"), asm.text("abc"), asm.text("rot13")),
        "runs a codec looked up by name",
    )

    # numpy's own loaders and constructors.
    for protocol in (2, 4):
        asm = Asm(protocol)
        add(
            "numpy.load",
            protocol,
            asm.call(asm.glob("numpy", "load"), asm.text(marker), asm.none(), pickle.NEWTRUE),
            "numpy.load(allow_pickle=True) unpickles without restrictions",
        )
    add(
        "numpy.lib.format.read_array",
        3,
        Asm(3).call(Asm(3).glob("numpy.lib.format", "read_array"), Asm(3).text(marker)),
        "reads pickled object arrays",
    )
    add(
        "numpy.frombuffer / ctypeslib (pointer gadgets)",
        4,
        Asm(4).call(Asm(4).glob("numpy.ctypeslib", "as_array"), Asm(4).int(0x1000), Asm(4).tuple(Asm(4).int(8))),
        "an array over an arbitrary address",
    )
    for core in ("numpy.core", "numpy._core"):
        payloads.extend(_numpy_payloads(core, marker))
    payloads.extend(_ext_payloads())
    payloads.extend(_placeholder_payloads(marker))

    asm = Asm(3)
    add("persistent id", 3, asm.text("anything") + pickle.BINPERSID, "persistent_load resolves ids to objects")
    return payloads


def _dtype(asm: Asm, spec: str) -> bytes:
    """``numpy.dtype(spec, False, True)``: how numpy pickles a dtype."""
    return asm.call(asm.glob("numpy", "dtype"), asm.text(spec), asm.false(), pickle.NEWTRUE)


def _empty_array(asm: Asm, core: str) -> bytes:
    """``_reconstruct(ndarray, (0,), b'b')``: the empty array numpy's pickles then fill with BUILD."""
    return asm.call(
        asm.glob(f"{core}.multiarray", "_reconstruct"),
        asm.glob("numpy", "ndarray"),
        asm.tuple(asm.int(0)),
        asm.raw(b"b"),
    )


def _numpy_payloads(core: str, marker: str) -> Iterator[HostilePayload]:
    asm = Asm(4)
    system = asm.call(asm.glob("os", "system"), asm.text(f"touch {marker}"))

    def payload(name: str, body: bytes, why: str) -> HostilePayload:
        return HostilePayload(f"{name} [{core}]", 4, _checked(asm.program(body)), "unsafe", why)

    # An object array whose list of elements carries the payload.
    state = asm.tuple(asm.int(1), asm.tuple(asm.int(1)), _dtype(asm, "O8"), pickle.NEWFALSE, asm.list(system))
    yield payload(
        "numpy object array carrying os.system",
        asm.build(_empty_array(asm, core), state),
        "object arrays hold arbitrary objects",
    )
    # A list shorter than the array: numpy reads past the end of the list (out-of-bounds read of heap pointers).
    short = asm.tuple(asm.int(1), asm.tuple(asm.int(64)), _dtype(asm, "O8"), pickle.NEWFALSE, asm.list(asm.int(1)))
    yield payload(
        "numpy object array with a short element list",
        asm.build(_empty_array(asm, core), short),
        "ndarray.__setstate__ reads past the list: objects from arbitrary heap memory",
    )
    # A dtype whose state overlaps an object field with an int field: writing the int forges a pointer.
    fields = asm.dict(
        (asm.text("a"), asm.tuple(_dtype(asm, "O8"), asm.int(0))),
        (asm.text("b"), asm.tuple(_dtype(asm, "i8"), asm.int(0))),
    )
    dtype_state = asm.tuple(
        asm.int(3),
        asm.text("|"),
        asm.none(),
        asm.tuple(asm.text("a"), asm.text("b")),
        fields,
        asm.int(16),
        asm.int(8),
        asm.int(0x3F),
    )
    overlapping = asm.build(_dtype(asm, "V16"), dtype_state)
    records = asm.list(asm.tuple(asm.int(0), asm.int(0x4141414141)))
    yield payload(
        "numpy dtype state with overlapping object fields",
        asm.build(
            _empty_array(asm, core), asm.tuple(asm.int(1), asm.tuple(asm.int(1)), overlapping, pickle.NEWFALSE, records)
        ),
        "type confusion: an int becomes an object pointer",
    )
    # The same object field, but flags claiming the dtype holds no objects: raw bytes become pointers.
    lying = asm.tuple(
        asm.int(3),
        asm.text("|"),
        asm.none(),
        asm.tuple(
            asm.text("a"),
        ),
        asm.dict((asm.text("a"), asm.tuple(_dtype(asm, "O8"), asm.int(0)))),
        asm.int(8),
        asm.int(8),
        asm.int(0),
    )
    yield payload(
        "numpy dtype state whose flags hide an object field",
        asm.build(
            _empty_array(asm, core),
            asm.tuple(
                asm.int(1),
                asm.tuple(asm.int(1)),
                asm.build(_dtype(asm, "V8"), lying),
                pickle.NEWFALSE,
                asm.raw(b"\x41" * 8),
            ),
        ),
        "8 raw bytes read as a PyObject pointer",
    )
    yield payload(
        "numpy _reconstruct of a 2**31-element object array",
        asm.call(
            asm.glob(f"{core}.multiarray", "_reconstruct"),
            asm.glob("numpy", "ndarray"),
            asm.tuple(asm.int(2**31)),
            _dtype(asm, "O8"),
        ),
        "fills 16 GiB with None",
    )
    yield payload(
        "numpy.ndarray called with a huge object shape",
        asm.call(asm.glob("numpy", "ndarray"), asm.tuple(asm.int(2**31)), asm.text("O")),
        "fills 16 GiB with None",
    )
    yield payload(
        "numpy dtype from a shape string (numpy parses it with compile)",
        _dtype(asm, "(67108864,)O"),
        "numpy's pickles only name simple type codes",
    )
    huge = 2**26
    subarray_state = asm.tuple(
        asm.int(3),
        asm.text("|"),
        asm.tuple(_dtype(asm, "O8"), asm.tuple(asm.int(huge))),
        asm.none(),
        asm.none(),
        asm.int(8 * huge),
        asm.int(8),
        asm.int(0x3F),
    )
    yield payload(
        "numpy object array of a huge subarray dtype",
        asm.build(
            _empty_array(asm, core),
            asm.tuple(
                asm.int(1),
                asm.tuple(asm.int(1)),
                asm.build(_dtype(asm, f"V{8 * huge}"), subarray_state),
                pickle.NEWFALSE,
                asm.list(asm.list()),
            ),
        ),
        "one element of 512 MiB, zero-filled",
    )
    yield payload(
        "numpy object scalar",
        asm.call(asm.glob(f"{core}.multiarray", "scalar"), _dtype(asm, "O8"), system),
        "an object scalar holds whatever it is given",
    )


def _ext_payloads() -> Iterator[HostilePayload]:
    for opcode, code in ((pickle.EXT1, 0x7A), (pickle.EXT2, 0x1234), (pickle.EXT4, 0x12345)):
        width = {pickle.EXT1: 1, pickle.EXT2: 2, pickle.EXT4: 4}[opcode]
        asm = Asm(2)
        module, name = EXTENSION_CODES[code]
        body = opcode + code.to_bytes(width, "little") + asm.tuple(asm.text("1")) + pickle.REDUCE
        data = _checked(asm.program(body))
        yield HostilePayload(
            f"EXT{width} opcode -> {module}.{name} (registered)",
            2,
            data,
            "unsafe",
            "copyreg's extension registry names a global by number",
        )
    asm = Asm(2)
    unregistered = _checked(asm.program(pickle.EXT1 + bytes([0x7B]) + asm.tuple() + pickle.REDUCE))
    yield HostilePayload(
        "EXT1 opcode with an unregistered code",
        2,
        unregistered,
        "corrupt",
        "no global has that number in this process: the bytes name nothing, so not a valid pickle",
    )


#: A class no process has: safe loading may keep an instance of it as a placeholder, but only when the opcodes
#: just create it (NEWOBJ) and fill it once (BUILD) with plain state.
_USER_CLASS = ("crew_models", "ResearchFacts")


def _placeholder_payloads(marker: str) -> Iterator[HostilePayload]:
    """Payloads that try to abuse the placeholder path: each uses a user's class other than as NEWOBJ + BUILD."""
    asm = Asm(4)
    system = asm.call(asm.glob("os", "system"), asm.text(f"touch {marker}"))
    user = asm.glob(*_USER_CLASS)
    other = asm.glob("crew_models", "Other")
    new = user + asm.tuple() + pickle.NEWOBJ  # what pickle writes for a pydantic model ...
    fields = asm.dict((asm.text("__dict__"), asm.dict((asm.text("title"), asm.text("t")))))
    made = asm.build(new, fields)  # ... then BUILD with its state: the one shape a placeholder may have

    def payload(name: str, body: bytes, why: str, protocol: int = 4) -> HostilePayload:
        return HostilePayload(f"placeholder: {name}", protocol, _checked(Asm(protocol).program(body)), "unsafe", why)

    yield payload(
        "BUILD state holding os.system",
        asm.record(asm.build(new, asm.dict((asm.text("__dict__"), system)))),
        "the state of a placeholder is built by the same checks",
    )
    yield payload(
        "BUILD state holding another class reference",
        asm.record(asm.build(new, asm.dict((asm.text("x"), other)))),
        "a class pushed as a value inside the state",
    )
    yield payload(
        "NEWOBJ with a callable among its args",
        asm.record(asm.build(user + asm.tuple(asm.glob("builtins", "dict")) + pickle.NEWOBJ, fields)),
        "a class's __new__ handed a callable",
    )
    yield payload(
        "NEWOBJ_EX with a class reference in its kwargs",
        asm.record(asm.build(user + asm.tuple() + asm.dict((asm.text("k"), other)) + pickle.NEWOBJ_EX, fields)),
        "a class's __new__ handed another class",
    )
    yield payload("the class called with REDUCE", asm.record(asm.call(user, asm.text("x"))), "runs the class's code")
    yield payload(
        "a placeholder used as a callable",
        asm.record(made + asm.tuple(asm.text(f"touch {marker}")) + pickle.REDUCE),
        "calls the object",
    )
    yield payload(
        "a placeholder used as the class of NEWOBJ",
        asm.record(asm.build(made + asm.tuple() + pickle.NEWOBJ, fields)),
        "an object where a class belongs",
    )
    yield payload(
        "BUILD on a placeholder twice",
        asm.record(asm.build(made, asm.dict((asm.text("__setstate__"), asm.text("x"))))),
        "a second BUILD changes an object already used",
    )
    yield payload("NEWOBJ without BUILD", asm.record(new), "an object no pickle of the class would leave unfilled")
    yield payload("BUILD on the class itself", asm.record(asm.build(user, fields)), "patches a class")
    yield payload("the class pushed as a value", asm.record(asm.list(user)), "the class itself in the data")
    yield payload("the class as a dict key", asm.record(asm.dict((user, asm.text("v")))), "hashes the class")
    yield payload("a placeholder inside a set", asm.record(asm.set(made)), "hashes the object")
    yield payload("a placeholder as a dict key", asm.record(asm.dict((made, asm.text("v")))), "hashes the object")
    yield payload(
        "the class passed to an allowed call",
        asm.record(asm.call(asm.glob("builtins", "list"), asm.tuple(user))),
        "a class handed to a constructor",
    )
    asm1 = Asm(1)
    yield payload(
        "copyreg._reconstructor with a state",
        asm1.record(
            asm1.call(
                asm1.glob("copy_reg", "_reconstructor"), asm1.glob(*_USER_CLASS), asm1.glob("builtins", "object"),
                asm1.text("state"),
            )
        ),  # fmt: skip
        "_reconstructor(cls, object, state) calls object.__init__ with the state",
        protocol=1,
    )
    asm2 = Asm(2)
    yield payload(
        "copyreg.__newobj__ of an allowed type",
        asm2.record(asm2.call(asm2.glob("copyreg", "__newobj__"), asm2.glob("builtins", "bytearray"))),
        "copyreg.__newobj__ is any class's constructor",
        protocol=2,
    )
    yield payload(
        "INST of a user's class",
        Asm(0).record(pickle.MARK + Asm(0).text("x") + pickle.INST + b"crew_models\nResearchFacts\n"),
        "INST calls the class",
        protocol=0,
    )
    yield payload(
        "a dunder name as the class",
        asm.record(asm.build(asm.glob("crew_models", "ResearchFacts.__init__") + asm.tuple() + pickle.NEWOBJ, fields)),
        "a method, not a class",
    )
