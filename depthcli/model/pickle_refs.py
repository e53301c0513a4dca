"""The storages a ``torch.save`` pickle refers to, found without unpickling anything.

``torch.load`` takes each tensor's byte count from the pickle (``numel`` of a storage type) and
its bytes from the archive entry ``data/<key>``. Before anything is loaded, depthcli compares
the two (a mismatch would hand out bytes that are not the tensor's, see ``archive.py``), so it
needs the references first. ``pickletools.genops`` only decodes opcodes; this module runs them
symbolically: strings, ints, tuples, global *names* and the memo are tracked, everything else is
an opaque placeholder, and no object of the file's choosing is ever created or called.
"""
from __future__ import annotations

import pickletools
from dataclasses import dataclass


class PickleScanError(ValueError):
    """data.pkl is not a pickle, or names its storages in a way torch.save never writes."""


@dataclass(frozen=True)
class GlobalName:
    module: str
    name: str


@dataclass(frozen=True)
class StorageRef:
    key: str  # the archive entry is ``<prefix>/data/<key>``
    storage_type: GlobalName  # e.g. torch.FloatStorage
    numel: int  # elements of the storage type (bytes for UntypedStorage)


class _Opaque:
    """A value the scan does not model (a dict, a rebuilt tensor, ...)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<opaque>"


OPAQUE = _Opaque()
_MARK = object()
_TEXT_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
             "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def storage_refs(data: bytes) -> list[StorageRef]:
    """Every persistent id of ``data`` (a data.pkl), in order; raises :class:`PickleScanError`."""
    stack: list[object] = []
    marks: list[list[object]] = []
    memo: dict[int, object] = {}
    refs: list[StorageRef] = []

    def pop_mark() -> list[object]:
        nonlocal stack
        if not marks:
            raise PickleScanError("data.pkl: damaged pickle: no MARK for a MARK-based opcode")
        items, stack = stack, marks.pop()
        return items

    def pop(n: int = 1) -> list[object]:
        if len(stack) < n:
            raise PickleScanError("data.pkl: damaged pickle: stack underflow")
        items = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return items

    try:
        for op, arg, pos in pickletools.genops(data):
            name = op.name
            if name in _TEXT_OPS:
                stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
            elif name in _INT_OPS:
                stack.append(int(arg) if not isinstance(arg, bool) else arg)
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name == "MARK":
                marks.append(stack)
                stack = []
            elif name == "TUPLE":
                items = tuple(pop_mark())  # first: pop_mark rebinds ``stack``
                stack.append(items)
            elif name in _TUPLE_N:
                stack.append(tuple(pop(_TUPLE_N[name])))
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                stack.append(GlobalName(module, attr))
            elif name == "STACK_GLOBAL":
                module, attr = pop(2)
                stack.append(GlobalName(str(module), str(attr)))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):  # remember the top, keep it
                if not stack:
                    raise PickleScanError(f"data.pkl: damaged pickle: {name} on an empty stack")
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if int(arg) not in memo:
                    raise PickleScanError(f"data.pkl: damaged pickle: memo entry {arg} read before it is written")
                stack.append(memo[int(arg)])
            elif name == "DUP":
                stack.append(stack[-1] if stack else OPAQUE)
            elif name == "BINPERSID":
                refs.append(_storage_ref(pop()[0], pos))
                stack.append(OPAQUE)
            elif name == "PERSID":
                raise PickleScanError(f"data.pkl: a protocol-0 persistent id at byte {pos}, "
                                      f"which weights-only loading does not read")
            elif name == "STOP":
                break
            else:  # everything else: only its stack effect matters
                before, after = op.stack_before, op.stack_after
                if pickletools.markobject in before:
                    pop_mark()
                    pop(before.index(pickletools.markobject))
                else:
                    pop(len(before))
                stack.extend([OPAQUE] * len(after))
    except PickleScanError:
        raise
    except (ValueError, IndexError, TypeError) as e:  # genops on a damaged or cut pickle
        raise PickleScanError(f"data.pkl: damaged pickle: {e}") from None
    return refs


def _storage_ref(pid: object, pos: int) -> StorageRef:
    """``('storage', <storage type>, key, location, numel)``, as ``torch.save`` writes it."""
    if (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
            and isinstance(pid[1], GlobalName) and isinstance(pid[2], str)
            and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0):
        return StorageRef(key=pid[2], storage_type=pid[1], numel=pid[4])
    raise PickleScanError(f"data.pkl: a storage reference at byte {pos} that is not "
                          f"('storage', type, key, location, size): {_short(pid)}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
