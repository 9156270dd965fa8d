"""What the notebooks' graded exercises need at run time.

Every notebook's exercises are in nbgrader's format (``editions`` says how): a solution
cell, then a test cell that calls the student's function. ``unavailable`` makes the
package's own answer unusable while the student's code runs, so that a test cannot be
passed by calling the function it checks against.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any


class ExerciseError(RuntimeError):
    """The student's code used something an exercise asks them to write themselves."""


class _Blocked:
    """Stands in for an attribute: any use of it raises ``ExerciseError`` naming it."""

    def __init__(self, what: str) -> None:
        self.what = what

    def _refuse(self) -> ExerciseError:
        return ExerciseError(f"{self.what} is not available in this exercise: write it yourself")

    def __get__(self, instance: Any, owner: Any = None) -> Any:  # a class attribute
        raise self._refuse()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # a module's function
        raise self._refuse()


@contextlib.contextmanager
def unavailable(owner: Any, *names: str) -> Iterator[None]:
    """Inside the block, ``owner.<name>`` raises ``ExerciseError`` for each name: on a class,
    getting the attribute (a method, a property, ``__init__``, so also building one); on
    a module, calling the function; on a namespace dict (a notebook's ``globals()``, where
    ``from module import name`` put its own reference), calling ``owner[name]``. Restored
    on leaving, also after an exception.

    >>> import math
    >>> with unavailable(math, "sqrt"):
    ...     math.sqrt(4.0)
    Traceback (most recent call last):
    nstcourse.grading.ExerciseError: math.sqrt is not available in this exercise: write it yourself
    >>> math.sqrt(4.0)
    2.0

    Raises:
        AttributeError: ``owner`` has no attribute of one of the names (a typo in a test).
    """
    if isinstance(owner, dict):
        with _unavailable_in(owner, names):
            yield
        return
    label = owner.__name__ if isinstance(owner, (type, types.ModuleType)) else repr(owner)
    saved: dict[str, Any] = {}
    try:
        for name in names:
            if isinstance(owner, type):
                if name not in vars(owner) and not hasattr(owner, name):
                    raise AttributeError(f"{label} has no attribute {name!r}")
                saved[name] = vars(owner).get(name, _INHERITED)
            else:
                saved[name] = getattr(owner, name)  # AttributeError names it
            setattr(owner, name, _Blocked(f"{label}.{name}"))
        yield
    finally:
        for name, value in saved.items():
            if value is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


_INHERITED = object()  # the class had no attribute of its own: delete ours on leaving


@contextlib.contextmanager
def _unavailable_in(namespace: dict[str, Any], names: tuple[str, ...]) -> Iterator[None]:
    """``unavailable`` for a namespace dict such as a notebook's ``globals()``."""
    missing = [name for name in names if name not in namespace]
    if missing:
        raise AttributeError(f"the namespace has no {', '.join(map(repr, missing))}")
    saved = {name: namespace[name] for name in names}
    try:
        for name in names:
            namespace[name] = _Blocked(name)
        yield
    finally:
        namespace.update(saved)
