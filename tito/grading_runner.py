"""The untrusted step of ``tito grade``, run inside the sandbox::

    python -P -s -m tito.grading_runner IN_FD OUT_FD

Serves the trusted judge (:mod:`tito.grading_judge`): imports the student's package when asked,
makes the calls the judge asks for, and answers with plain data only (:mod:`tito.grading_wire`);
every object that is not plain data stays here and is answered by a reference number. Nothing
here decides anything: whatever this process sends, the judge checks it against the checkpoint's
own expectations, computed in the judge's process.
"""

from __future__ import annotations

import builtins
import copy
import importlib
import operator
import os
import sys

import numpy as np

from tito.grading_wire import (Codec, PeerGone, ProtocolError, plain_dtype, read_frame, short,
                               write_frame)

OPS = {name: getattr(operator, name) for name in (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_", "xor",
    "lshift", "rshift", "iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow",
    "imatmul", "iand", "ior", "ixor", "ilshift", "irshift", "neg", "pos", "abs", "invert", "lt", "le", "eq", "ne",
    "gt", "ge", "getitem", "setitem", "delitem", "contains", "index")}
def _plain(x):
    """The array form of an array-like object, for a comparison made by the judge."""
    if not (isinstance(x, np.ndarray) or hasattr(type(x), "__array__")):
        raise TypeError(f"a {type(x).__name__} is not array-like")
    a = np.asarray(x)
    if not plain_dtype(a.dtype):
        raise TypeError(f"a {type(x).__name__} is not an array of numbers")
    return a.copy()


OPS.update({
    "plain": _plain,
    "len": len, "iter": iter, "next": next, "bool": bool, "hash": hash, "repr": repr,
    "str": str, "float": float, "int": int, "complex": complex, "format": format,
    "isinstance": isinstance, "issubclass": issubclass, "divmod": divmod, "round": round,
    "array": lambda x, *a: np.asarray(x, *a), "dir": lambda x: sorted(dir(x)),
    "vars": lambda x: dict(vars(x)), "enter": lambda x: x.__enter__(),
    "exit": lambda x, *a: x.__exit__(*a), "reversed": reversed, "copy": copy.copy,
    "deepcopy": copy.deepcopy})


_MISSING = object()


class Callback:
    """A callable of the judge: calling it asks the judge to call it."""
    __slots__ = ("_id", "_runner")

    def __init__(self, cid, runner):
        self._id, self._runner = cid, runner

    def _ask(self, kind, *args, **kwargs):
        return self._runner.callback(self._id, kind, args, kwargs)

    def __call__(self, *args, **kwargs):
        return self._ask("call", *args, **kwargs)

    def __len__(self):
        return self._ask("len")

    def __getitem__(self, k):
        return self._ask("getitem", k)

    def __iter__(self):
        return self._ask("iter")

    def __next__(self):
        return self._ask("next")

    def __repr__(self):
        return f"<judge callable {self._id}>"

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._runner.callback(self._id, "method", args, kwargs, name)


class RunnerCodec(Codec):
    def __init__(self, runner):
        super().__init__("r", weak=False)
        self.runner = runner
        self.objects: dict[int, object] = {}
        self.handle_of: dict[int, int] = {}
        self.next_handle = 0
        self.callbacks: dict[int, Callback] = {}

    def handle(self, v) -> int:
        h = self.handle_of.get(id(v))
        if h is not None and self.objects.get(h) is v:
            return h
        self.next_handle += 1
        h = self.next_handle
        self.objects[h] = v
        self.handle_of[id(v)] = h
        return h

    def encode_other(self, v):
        if isinstance(v, Callback):
            return {"$cb": v._id}
        if isinstance(v, np.ndarray) and not plain_dtype(v.dtype):
            return {"$r": self.handle(v), "t": "ndarray"}
        tree = {"$r": self.handle(v), "t": short(type(v).__name__, 100)}
        if isinstance(v, type) and issubclass(v, BaseException):
            tree["ex"] = [[short(c.__module__, 200), short(c.__qualname__, 200),
                           self.handle(c)] for c in v.__mro__ if c is not object]
        elif isinstance(v, type):
            tree["cls"] = 1
        elif type(v).__name__ == "module":
            tree["mod"] = short(getattr(v, "__name__", ""), 200)
        return tree

    def decode_ref(self, tree):
        if "$r" in tree:
            h = tree["$r"]
            if h not in self.objects:
                raise ProtocolError(f"unknown object {h!r}")
            return self.objects[h]
        if "$cb" in tree:
            cid = tree["$cb"]
            if not isinstance(cid, int):
                raise ProtocolError("bad callback id")
            cb = self.callbacks.get(cid)
            if cb is None:
                cb = self.callbacks[cid] = Callback(cid, self.runner)
            return cb
        if "$mod" in tree:
            return importlib.import_module(str(tree["$mod"]))
        raise ProtocolError(f"unknown value {str(tree)[:80]}")


class Runner:
    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.codec = RunnerCodec(self)
        self.originals: dict = {}

    # -- frames -------------------------------------------------------------------------------
    def send(self, header: dict, blobs: list) -> None:
        header["sync"] = self.codec.changed(blobs)
        write_frame(self.fd_out, header, blobs)

    def receive(self) -> tuple[dict, list]:
        header, blobs = read_frame(self.fd_in)
        self.codec.drop(header.get("drop") or [])
        self.codec.apply_sync(header.get("sync") or [], blobs)
        self.apply_patches(header.get("patch") or [], blobs)
        err = header.get("np_err")
        if isinstance(err, dict):
            try:
                np.seterr(**{k: v for k, v in err.items() if k in ("divide", "over", "under", "invalid")})
            except (TypeError, ValueError):
                pass
        return header, blobs

    def reply(self, value) -> None:
        blobs: list = []
        try:
            tree = self.codec.encode(value, blobs)
        except ProtocolError as e:
            self.raise_(TypeError(f"cannot send the result: {e}"))
            return
        self.send({"op": "ret", "v": tree}, blobs)

    def raise_(self, exc: BaseException) -> None:
        blobs: list = []
        cls = type(exc)
        try:
            args = self.codec.encode(tuple(exc.args), blobs)
        except (ProtocolError, RecursionError):
            blobs = []
            args = None
        try:
            msg = short(str(exc))
        except Exception:                    # noqa: BLE001 - a __str__ that raises
            msg = f"<{cls.__name__} whose str() failed>"
        self.send({"op": "raise", "cls": self.codec.encode(cls, blobs), "args": args,
                   "msg": msg}, blobs)

    def apply_patches(self, patches, blobs) -> None:
        """The judge's monkeypatch of a library module, repeated here (or undone)."""
        if not isinstance(patches, list):
            raise ProtocolError("bad patch list")
        for entry in patches:
            if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, str) for x in entry[:2])):
                raise ProtocolError("bad patch")
            modname, attr, tree = entry
            mod = importlib.import_module(modname)
            key = (modname, attr)
            if isinstance(tree, dict) and tree.get("$orig") == 1:
                if key in self.originals:
                    orig = self.originals.pop(key)
                    if orig is _MISSING:
                        if hasattr(mod, attr):
                            delattr(mod, attr)
                    else:
                        setattr(mod, attr, orig)
                continue
            self.originals.setdefault(key, getattr(mod, attr, _MISSING))
            setattr(mod, attr, self.codec.decode(tree, blobs))

    # -- serving ------------------------------------------------------------------------------
    def serve(self, until_return: bool = False):
        """Answer requests; inside a callback, until the judge answers it."""
        while True:
            header, blobs = self.receive()
            op = header.get("op")
            if until_return and op == "ret":
                return self.codec.decode(header.get("v"), blobs)
            if until_return and op == "raise":
                raise self._judge_error(header)
            if op == "bye":
                return None
            try:
                value = self.execute(op, header, blobs)
            except ProtocolError:
                raise
            except BaseException as e:             # noqa: BLE001 - reported to the judge
                if isinstance(e, (PeerGone,)):
                    raise
                self.raise_(e)
                continue
            self.reply(value)

    def _judge_error(self, header) -> BaseException:
        name = str(header.get("name", "Exception"))
        cls = getattr(builtins, name, None)
        msg = str(header.get("msg", ""))
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(msg)
            except Exception:                      # noqa: BLE001
                pass
        return RuntimeError(f"{name}: {msg}")

    def execute(self, op, header, blobs):
        dec = lambda k: self.codec.decode(header.get(k), blobs)   # noqa: E731
        if op == "import":
            return importlib.import_module(str(header["name"]))
        if op == "getattr":
            return getattr(dec("o"), str(header["name"]))
        if op == "setattr":
            setattr(dec("o"), str(header["name"]), dec("v"))
            return None
        if op == "delattr":
            delattr(dec("o"), str(header["name"]))
            return None
        if op == "call":
            fn = dec("o")
            args = dec("a")
            kwargs = dec("k")
            return fn(*args, **kwargs)
        if op == "op":
            fn = OPS.get(str(header["name"]))
            if fn is None:
                raise ProtocolError(f"unknown operation {str(header['name'])[:40]}")
            return fn(*dec("a"))
        if op == "define_class":
            ns = dec("g")
            if not isinstance(ns, dict):
                raise ProtocolError("bad class namespace")
            ns.setdefault("__name__", "checkpoint")
            exec(compile(str(header["src"]), str(header.get("file", "<checkpoint>")), "exec"), ns)
            return ns[str(header["name"])]
        raise ProtocolError(f"unknown request {str(op)[:40]}")

    def callback(self, cid, kind, args, kwargs, name=None):
        blobs: list = []
        header = {"op": "cb", "id": cid, "kind": kind, "name": name,
                  "a": self.codec.encode(tuple(args), blobs),
                  "k": self.codec.encode(dict(kwargs), blobs)}
        self.send(header, blobs)
        return self.serve(until_return=True)


def main(argv: list[str]) -> int:
    fd_in, fd_out = int(argv[0]), int(argv[1])
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    runner = Runner(fd_in, fd_out)
    write_frame(fd_out, {"op": "hello", "pid": os.getpid()}, [])
    try:
        runner.serve()
    except PeerGone:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
