"""The preprocessing-op registry and the pipeline-string parser (big_vision's pp/registry.py).

A pipeline string such as ``'decode|resize(32)|flip_lr|value_range(-1, 1)'`` is parsed by `parse`
into a `Preprocess` callable. Each op is built by a registered *factory* that takes the op's
arguments (Python literals, positional or keyword) and returns a function ``op(image, rng)`` on one
HWC numpy image. Random ops draw only from ``rng``, the ``np.random.Generator`` grain hands to
``random_map`` for each record, so a run is reproducible from its seed and resumable mid-epoch.

The ops themselves live in `ops_image` and `ops_augment`, which import this module to register;
:mod:`input_pipeline.pp` imports both, so ``pp.parse`` knows every op.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable

import numpy as np

OpFn = Callable[[np.ndarray, np.random.Generator | None], np.ndarray]


@dataclasses.dataclass(frozen=True)
class _Registered:
    factory: Callable[..., OpFn]
    random: bool


_REGISTRY: dict[str, _Registered] = {}

def register(name: str, *, random: bool = False, aliases: tuple[str, ...] = ()):
    """Registers an op factory under ``name`` (and ``aliases``). ``random`` ops need an rng; the
    factory of a random op may return a function with ``random = False`` for arguments that make
    it deterministic (``gaussian_blur(1.0, p=1)``)."""

    def wrap(factory):
        for n in (name, *aliases):
            if n in _REGISTRY:
                raise ValueError(f"op {n!r} registered twice")
            _REGISTRY[n] = _Registered(factory, random)
        return factory

    return wrap


def known_ops() -> list[str]:
    return sorted(_REGISTRY)


@dataclasses.dataclass(frozen=True)
class Op:
    """One parsed op: its text (as written), whether it is random, and the built function."""

    text: str
    random: bool
    fn: OpFn


class Preprocess:
    """A parsed pipeline: applies its ops in order to one image, with one per-record rng."""

    def __init__(self, spec: str, ops: list[Op]):
        self.spec = spec
        self.ops = ops

    @property
    def is_random(self) -> bool:
        return any(op.random for op in self.ops)

    @property
    def random_ops(self) -> list[str]:
        """The text of each random op (for error messages)."""
        return [op.text for op in self.ops if op.random]

    def __call__(self, image, rng: np.random.Generator | None = None) -> np.ndarray:
        for op in self.ops:
            if op.random and rng is None:
                raise ValueError(f"op {op.text!r} is random and needs an rng (use random_map)")
            image = op.fn(image, rng)
        return image

    def __repr__(self) -> str:
        return f"Preprocess({self.spec!r})"


def parse(spec: str) -> Preprocess:
    """Parses ``'op1|op2(arg, key=value)|...'`` into a `Preprocess`.

    Arguments must be Python literals (numbers, strings, tuples, lists, None, True/False).

    Raises:
      ValueError: for a syntax error, an unknown op (listing the known ones) or bad arguments.
    """
    ops = []
    for text in (part.strip() for part in spec.split("|")):
        if not text:
            continue
        name, args, kwargs = parse_call(text)
        if name not in _REGISTRY:
            raise ValueError(f"unknown preprocessing op {name!r} in {spec!r}; known: {known_ops()}")
        entry = _REGISTRY[name]
        try:
            fn = entry.factory(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad arguments for op {text!r}: {e}") from None
        ops.append(Op(text, entry.random and getattr(fn, "random", True), fn))
    if not ops:
        raise ValueError(f"empty preprocessing pipeline {spec!r}")
    return Preprocess(spec, ops)


def parse_call(text: str) -> tuple[str, list, dict]:
    """``'name(1, k=2)'`` -> ``('name', [1], {'k': 2})``; arguments must be Python literals."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot parse preprocessing op {text!r}") from None
    if isinstance(node, ast.Name):
        return node.id, [], {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ValueError(f"op arguments must be literals in {text!r}") from None
        return node.func.id, args, kwargs
    raise ValueError(f"expected 'name' or 'name(args)', got {text!r}")
