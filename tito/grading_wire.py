"""The wire between the grader's trusted judge and the untrusted runner (see :mod:`tito.grading`).

Only plain data crosses: a frame is ``b"TW"``, a 4-byte header length, a JSON header, then the
header's ``nblobs`` binary blobs (8-byte length each), every blob one ``.npy`` file read back with
``np.load(allow_pickle=False)``. Sizes are checked before anything is allocated (header at most
:data:`MAX_HEADER` bytes, blobs together at most :data:`MAX_BLOBS`), nesting depth at most
:data:`MAX_DEPTH`, array dtypes only booleans, numbers and fixed-width strings. Anything that is not
plain data stays on its side and travels as a reference: ``{"$r": n}`` for an object of the runner
(the judge holds a proxy), ``{"$cb": n}`` for a callable of the judge (the runner holds a stub
that asks the judge to call it).

Arrays are *mirrored*: an array that crossed once has an id on both sides; every later frame
carries the new contents of each mirrored array that changed on the sender's side since the last
frame (``sync``), so ``t.data is arr`` and in-place edits behave as in one process. ``drop`` lists
mirrors the judge no longer holds.

Standard library and NumPy only: the runner imports this inside the sandbox.
"""

from __future__ import annotations

import base64
import builtins
import io
import json
import os
import pathlib
import struct

import numpy as np

MAGIC = b"TW"
MAX_HEADER = 16 << 20
MAX_BLOBS = 256 << 20
MAX_DEPTH = 64
_UNTAGGED = object()          # _decode_tagged: the key is not one of the wire's own tags
_CONTAINER_TAGS = ("$l", "$t", "$d", "$s", "$fs", "$sl")
MAX_TEXT = 20_000                     # characters of a message, repr or str kept
ARRAY_KINDS = set("biufcUS")


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed frame of plain data."""


class PeerGone(Exception):
    """The other side closed its end (it exited or crashed)."""


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------

def _read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            raise PeerGone("the other side closed the pipe")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def read_frame(fd: int) -> tuple[dict, list[bytes]]:
    head = _read_exact(fd, 6)
    if head[:2] != MAGIC:
        raise ProtocolError(f"bad frame start {head[:2]!r}")
    (hlen,) = struct.unpack(">I", head[2:])
    if hlen > MAX_HEADER:
        raise ProtocolError(f"header of {hlen} bytes is over the {MAX_HEADER} byte limit")
    try:
        header = json.loads(_read_exact(fd, hlen).decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"header is not JSON: {type(e).__name__}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    n = header.get("nblobs", 0)
    if not isinstance(n, int) or not 0 <= n <= 100_000:
        raise ProtocolError(f"bad blob count {n!r}")
    blobs, total = [], 0
    for _ in range(n):
        (blen,) = struct.unpack(">Q", _read_exact(fd, 8))
        total += blen
        if total > MAX_BLOBS:
            raise ProtocolError(f"arrays of more than {MAX_BLOBS} bytes in one frame")
        blobs.append(_read_exact(fd, blen))
    return header, blobs


def write_frame(fd: int, header: dict, blobs: list[bytes]) -> None:
    header["nblobs"] = len(blobs)
    data = json.dumps(header, separators=(",", ":")).encode("utf-8")
    parts = [MAGIC, struct.pack(">I", len(data)), data]
    for b in blobs:
        parts += [struct.pack(">Q", len(b)), b]
    buf = memoryview(b"".join(parts))
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


# ---------------------------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------------------------

def plain_dtype(dt) -> bool:
    return dt.kind in ARRAY_KINDS and dt.fields is None and not dt.hasobject and dt.shape == ()


def array_blob(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)          # (ascontiguousarray would make 0-d arrays 1-d)
    return buf.getvalue()


def blob_array(b: bytes) -> np.ndarray:
    try:
        a = np.load(io.BytesIO(b), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any malformed blob is a protocol error
        raise ProtocolError(f"bad array blob: {type(e).__name__}: {str(e)[:200]}") from None
    if type(a) is not np.ndarray or not plain_dtype(a.dtype):
        raise ProtocolError("array blob of a dtype that is not plain data")
    return a


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


# ---------------------------------------------------------------------------------------------
# the codec
# ---------------------------------------------------------------------------------------------

_SAFE_BUILTIN_TYPES = {n: getattr(builtins, n) for n in (
    "int", "float", "complex", "bool", "str", "bytes", "bytearray", "list", "tuple", "dict",
    "set", "frozenset", "object", "type", "range", "slice")}


class Codec:
    """Encodes values of one side for the other and decodes what the other side sent.

    ``strong`` mirrors (the runner's) stay until dropped; weak ones (the judge's) are dropped
    when the local array is garbage collected."""

    def __init__(self, prefix: str, weak: bool):
        self.prefix = prefix
        self.weak = weak
        self.mirrors: dict[str, object] = {}       # id -> array (or weakref to it)
        self.snap: dict[str, np.ndarray] = {}       # id -> contents last sent or received
        self.by_obj: dict[int, str] = {}            # id(array) -> mirror id
        self.dying: dict[str, np.ndarray] = {}      # judge: dropped, not yet told
        self.pending_drops: list[str] = []
        self.counter = 0

    # -- hooks a side overrides ---------------------------------------------------------------
    def encode_other(self, v):                      # anything that is not plain data
        raise ProtocolError(f"cannot send a {type(v).__name__}")

    def decode_ref(self, tree: dict):
        raise ProtocolError("unexpected reference")

    # -- mirrors ------------------------------------------------------------------------------
    def _get(self, mid: str):
        ref = self.mirrors.get(mid)
        if ref is None:
            return None
        return ref() if self.weak else ref

    def _register(self, mid: str, a: np.ndarray) -> None:
        if self.weak and isinstance(a, np.random.Generator):
            self.mirrors[mid] = lambda g=a: g          # not weak-referenceable: kept
        elif self.weak:
            import weakref
            self.mirrors[mid] = weakref.ref(a, lambda _r, m=mid: self._died(m))
        else:
            self.mirrors[mid] = a
        self.snap[mid] = _rng_state(a) if isinstance(a, np.random.Generator) else a.copy()
        self.by_obj[id(a)] = mid
        recent = getattr(self, "recent", None)
        if recent is not None:
            recent.append(a)

    def _died(self, mid: str) -> None:
        snap = self.snap.pop(mid, None)
        self.mirrors.pop(mid, None)
        self.by_obj = {k: m for k, m in self.by_obj.items() if m != mid}
        if snap is not None:
            self.dying[mid] = snap
            self.pending_drops.append(mid)

    def drop(self, mids) -> None:
        for mid in mids:
            if not isinstance(mid, str):
                raise ProtocolError("bad drop entry")
            a = self._get(mid)
            self.mirrors.pop(mid, None)
            self.snap.pop(mid, None)
            if a is not None and self.by_obj.get(id(a)) == mid:
                del self.by_obj[id(a)]

    def _encode_array(self, a: np.ndarray, blobs: list) -> dict:
        if not plain_dtype(a.dtype):
            return self.encode_other(a)
        if type(a) is not np.ndarray:
            a = np.asarray(a).copy()
        mid = self.by_obj.get(id(a))
        if mid is not None and self._get(mid) is a:
            return {"$a": mid}
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        view = None
        if root is not a and type(root) is np.ndarray and root.flags.c_contiguous \
                and plain_dtype(root.dtype) and root.nbytes <= MAX_BLOBS // 2:
            # a view of another array: sent as (its base, offset, strides), so that the other
            # side's copy shares memory with its base as here (np.shares_memory, edits)
            off = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            view = {"base": self._encode_array(root, blobs), "o": off, "s": list(a.shape),
                    "st": list(a.strides), "dt": a.dtype.str}
        self.counter += 1
        mid = f"{self.prefix}{self.counter}"
        self._register(mid, a)
        if view is not None:
            return {"$a": mid, "view": view}
        blobs.append(array_blob(a))
        return {"$a": mid, "b": len(blobs) - 1}

    def _decode_view(self, mid: str, v) -> np.ndarray:
        if not isinstance(v, dict):
            raise ProtocolError("bad view")
        base = self._decode_array(v.get("base"), self._blobs)
        dt = np.dtype(str(v.get("dt")))
        shape, strides, off = v.get("s"), v.get("st"), v.get("o")
        if not (plain_dtype(dt) and isinstance(shape, list) and isinstance(strides, list)
                and len(shape) == len(strides) <= 32 and isinstance(off, int)
                and all(isinstance(x, int) and x >= 0 for x in shape)
                and all(isinstance(x, int) for x in strides) and base.flags.c_contiguous):
            raise ProtocolError("bad view")
        lo = hi = off
        for n, st in zip(shape, strides):
            if n == 0:
                lo, hi = off, off - dt.itemsize
                break
            lo += min(0, (n - 1) * st)
            hi += max(0, (n - 1) * st)
        if lo < 0 or hi + dt.itemsize > base.nbytes:
            raise ProtocolError("view outside its base")
        a = np.ndarray(tuple(shape), dt, buffer=base, offset=off, strides=tuple(strides))
        if self.weak:                 # the view must keep its base (the mirrored array) alive
            import weakref
            weakref.finalize(a, _keep, base)
        self._register(mid, a)
        return a

    def _encode_rng(self, g: np.random.Generator) -> dict:
        mid = self.by_obj.get(id(g))
        if mid is not None and self._get(mid) is g:
            return {"$g": mid}
        state = g.bit_generator.state
        if state.get("bit_generator") not in RNGS:
            return self.encode_other(g)
        self.counter += 1
        mid = f"{self.prefix}{self.counter}"
        self._register(mid, g)
        return {"$g": mid, "s": _rng_state(g)}

    def _decode_rng(self, tree: dict):
        mid = tree["$g"]
        g = self._get(mid) if isinstance(mid, str) else None
        if g is not None:
            return g
        if "s" not in tree or not isinstance(mid, str) or mid.startswith(self.prefix):
            raise ProtocolError("unknown random generator")
        g = np.random.Generator(getattr(np.random, _check_rng(tree["s"])["bit_generator"])())
        g.bit_generator.state = tree["s"]
        self._register(mid, g)
        return g

    def changed(self, blobs: list) -> list:
        """[mirror id, blob index] of every mirrored array changed since it last crossed
        ([mirror id, state] for a random generator)."""
        out = []
        for mid in list(self.mirrors):
            a = self._get(mid)
            if a is None:
                continue
            s = self.snap.get(mid)
            if isinstance(a, np.random.Generator):
                st = _rng_state(a)
                if st != s:
                    self.snap[mid] = st
                    out.append([mid, st])
                continue
            if s is not None and _same(a, s):
                continue
            self.snap[mid] = a.copy()
            blobs.append(array_blob(a))
            out.append([mid, len(blobs) - 1])
        return out

    def apply_sync(self, entries, blobs: list) -> None:
        if not isinstance(entries, list):
            raise ProtocolError("bad sync list")
        for e in entries:
            if not (isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                    and (isinstance(e[1], dict) or isinstance(e[1], int) and 0 <= e[1] < len(blobs))):
                raise ProtocolError("bad sync entry")
            a = self._get(e[0])
            if isinstance(a, np.random.Generator):
                a.bit_generator.state = _check_rng(e[1])
                self.snap[e[0]] = _rng_state(a)
                continue
            new = blob_array(blobs[e[1]])
            if a is None:
                if e[0] in self.dying:
                    self.dying[e[0]] = new
                continue
            if a.shape == new.shape and a.dtype == new.dtype and a.flags.writeable:
                a[...] = new
            self.snap[e[0]] = new
        if entries:                  # views of what changed changed too: not ours to send back
            for mid in list(self.mirrors):
                a = self._get(mid)
                if isinstance(a, np.ndarray) and not _same(a, self.snap.get(mid, a[:0])):
                    self.snap[mid] = a.copy()

    # -- values -------------------------------------------------------------------------------
    def encode(self, v, blobs: list, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ProtocolError("value nested too deeply")
        t = type(v)
        if v is None or t in (bool, int, str):
            return v
        if t is float:
            return v if v == v and v not in (float("inf"), float("-inf")) else {"$f": repr(v)}
        d = depth + 1
        if t is list:
            return {"$l": [self.encode(x, blobs, d) for x in v]}
        if t is tuple:
            return {"$t": [self.encode(x, blobs, d) for x in v]}
        if t is dict:
            return {"$d": [[self.encode(k, blobs, d), self.encode(x, blobs, d)] for k, x in v.items()]}
        if t in (set, frozenset):
            return {"$s" if t is set else "$fs": [self.encode(x, blobs, d) for x in v]}
        if t is bytes:
            return {"$b": base64.b64encode(v).decode("ascii")}
        if t is complex:
            return {"$c": [v.real, v.imag]}
        if t is slice:
            return {"$sl": [self.encode(x, blobs, d) for x in (v.start, v.stop, v.step)]}
        if v is Ellipsis:
            return {"$e": 1}
        if t is range:
            return {"$rg": [v.start, v.stop, v.step]}
        if isinstance(v, np.ndarray):
            return self._encode_array(v, blobs)
        if t is np.random.Generator:
            return self._encode_rng(v)
        if isinstance(v, np.generic) and plain_dtype(v.dtype):
            blobs.append(array_blob(np.asarray(v)))
            return {"$n": len(blobs) - 1}
        if isinstance(v, np.dtype) and plain_dtype(v):
            return {"$dt": v.str}
        if isinstance(v, type) and issubclass(v, np.generic) and v not in (np.generic, np.number) \
                and plain_dtype(np.dtype(v)):
            return {"$nt": np.dtype(v).str}
        if isinstance(v, type) and _SAFE_BUILTIN_TYPES.get(v.__name__) is v:
            return {"$bt": v.__name__}
        if isinstance(v, pathlib.PurePath):
            return {"$p": str(v)}
        return self.encode_other(v)

    def decode(self, tree, blobs: list, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ProtocolError("value nested too deeply")
        if tree is None or isinstance(tree, (bool, int, str, float)):
            return tree
        if isinstance(tree, list) or not isinstance(tree, dict) or len(tree) == 0:
            raise ProtocolError(f"bad value {str(tree)[:80]}")
        key = next(iter(tree))
        try:
            out = self._decode_tagged(key, tree, blobs, depth + 1)
        except ProtocolError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, RecursionError) as e:
            raise ProtocolError(f"bad {key} value: {type(e).__name__}") from None
        return self.decode_ref(tree) if out is _UNTAGGED else out

    def _decode_tagged(self, key: str, tree: dict, blobs: list, d: int):
        """The value under one of the wire's own tags; _UNTAGGED when `key` is not one (a reference)."""
        val = tree[key]
        if key in _CONTAINER_TAGS:
            return self._decode_container(key, val, blobs, d)
        if key == "$f":
            if val not in ("nan", "inf", "-inf"):
                raise ProtocolError("bad float")
            return float(val)
        if key == "$b":
            return base64.b64decode(val.encode("ascii"), validate=True)
        if key == "$c":
            return complex(float(val[0]), float(val[1]))
        if key == "$e":
            return Ellipsis
        if key == "$rg":
            return range(*(int(x) for x in val))
        if key == "$a":
            return self._decode_array(tree, blobs)
        if key == "$g":
            return self._decode_rng(tree)
        if key == "$n":
            return blob_array(blobs[val])[()]
        if key in ("$dt", "$nt"):
            dt = np.dtype(str(val))
            if not plain_dtype(dt):
                raise ProtocolError("bad dtype")
            return dt if key == "$dt" else dt.type
        if key == "$bt":
            if val not in _SAFE_BUILTIN_TYPES:
                raise ProtocolError("bad builtin type")
            return _SAFE_BUILTIN_TYPES[val]
        if key == "$p":
            return pathlib.Path(str(val))
        return _UNTAGGED

    def _decode_container(self, key: str, val, blobs: list, d: int):
        "A list, tuple, dict, set, frozenset or slice: its items decoded one level deeper."
        if key == "$d":
            return {self.decode(k, blobs, d): self.decode(x, blobs, d) for k, x in val}
        items = [self.decode(x, blobs, d) for x in val]
        if key == "$sl":
            return slice(*items)
        return {"$l": list, "$t": tuple, "$s": set, "$fs": frozenset}[key](items)

    def _decode_array(self, tree: dict, blobs: list) -> np.ndarray:
        mid = tree["$a"]
        if not isinstance(mid, str):
            raise ProtocolError("bad array id")
        if "view" in tree:
            if mid.startswith(self.prefix):
                raise ProtocolError("the other side sent an array under one of our ids")
            old = self._get(mid)
            if old is not None:
                return old
            self._blobs = blobs
            return self._decode_view(mid, tree["view"])
        if "b" in tree:
            a = blob_array(blobs[tree["b"]])
            if not mid or mid.startswith(self.prefix):
                raise ProtocolError("the other side sent an array under one of our ids")
            old = self._get(mid)
            if old is not None:
                return old
            self._register(mid, a)
            return a
        a = self._get(mid)
        if a is not None:
            recent = getattr(self, "recent", None)
            if recent is not None:
                recent.append(a)
            return a
        if mid in self.dying:                     # dropped here, but the other side had not heard
            a = self.dying.pop(mid).copy()
            if mid in self.pending_drops:
                self.pending_drops.remove(mid)
            self._register(mid, a)
            return a
        raise ProtocolError(f"unknown array {mid[:40]}")

    def take_drops(self) -> list[str]:
        out, self.pending_drops = self.pending_drops, []
        for mid in out:
            self.dying.pop(mid, None)
        return out


def _keep(*objects) -> None:
    """A finalizer that holds ``objects`` until the array it is attached to goes away."""


RNGS = ("PCG64", "PCG64DXSM", "SFC64", "Philox")


def _rng_state(g) -> dict:
    return json.loads(json.dumps(g.bit_generator.state))


def _check_rng(state) -> dict:
    """A random generator's state as plain data (ints and names only)."""
    def plain(x, depth=0):
        if depth > 4:
            return False
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v, depth + 1) for k, v in x.items())
        return isinstance(x, (int, str)) and not isinstance(x, bool) or isinstance(x, bool)
    if not (isinstance(state, dict) and state.get("bit_generator") in RNGS and plain(state)):
        raise ProtocolError("bad random generator state")
    return state


def short(text, limit: int = MAX_TEXT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"
