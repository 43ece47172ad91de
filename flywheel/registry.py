"""Plug-ins by name, checked when they are registered: the one registry behind the
domains (flywheel/domain.py) and the kinds of student (flywheel/student/).

A registry holds the subclasses of one abstract base. Its protocol is the base's
abstract methods: a plug-in must implement each of them with the base's parameter names
(so a broken plug-in fails at import, with a message, not in the middle of a night's
run), and have a `name` attribute that is an identifier. Plug-ins are found by the
entry-point group of the registry (importlib.metadata), the project's own ones
included, so a registry imports no implementation.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """`base`'s subclasses by their `key` attribute (`name` for domains, `kind` for
    students), from the entry-point `group`; `checks` are further (attribute, test,
    what it must be) rules a plug-in's class must pass."""

    def __init__(self, base: T, *, key: str, group: str, what: str,
                 checks: tuple[tuple[str, Callable[[object], bool], str], ...] = ()):
        self.base, self.key, self.group, self.what, self.checks = base, key, group, what, checks
        self.protocol = tuple(n for n, v in vars(base).items() if getattr(v, "__isabstractmethod__", False))
        self._classes: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Add `cls` under its key, after checking it keeps the protocol (TypeError if not)."""
        where = f"{self.what} {cls.__module__}.{cls.__qualname__}"
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{where}: a {self.what} subclasses {self.base.__module__}.{self.base.__qualname__}")
        name = getattr(cls, self.key, None)
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{where}: {self.key!r} must be an identifier, not {name!r}")
        missing = sorted(m for m in self.protocol if getattr(cls, m) is getattr(self.base, m)
                         or getattr(getattr(cls, m), "__isabstractmethod__", False))
        if missing:
            raise TypeError(f"{where}: does not implement {', '.join(missing)}")
        for method in self.protocol:
            want = list(inspect.signature(getattr(self.base, method)).parameters)
            params = inspect.signature(getattr(cls, method)).parameters
            have = list(params)
            # the protocol's parameters, in its order, then only optional ones of the class's own
            extra = [params[n] for n in have[len(want):]]
            if have[:len(want)] != want or any(p.default is inspect.Parameter.empty for p in extra):
                raise TypeError(f"{where}: {method}({', '.join(have)}) does not match the protocol's "
                                f"{method}({', '.join(want)})")
        for attr, test, must in self.checks:
            if not test(getattr(cls, attr, None)):
                raise TypeError(f"{where}: {attr!r} must be {must}")
        if name in self._classes and self._classes[name].__qualname__ != cls.__qualname__:
            raise TypeError(f"{where}: the {self.key} {name!r} is taken by {self._classes[name].__module__}")
        self._classes[name] = cls
        return cls

    def declared(self) -> list[str]:
        """The names installed packages declare in the entry-point group."""
        return sorted(ep.name for ep in entry_points(group=self.group))

    def load(self, name: str) -> T | None:
        """The class registered as `name`, loading the entry point that declares it if
        needed; None when none does. An entry point that fails to load or to register
        raises ImportError naming it."""
        if name not in self._classes:
            for ep in entry_points(group=self.group):
                if ep.name != name:
                    continue
                try:
                    cls = ep.load()
                    if self._classes.get(name) is not cls:
                        self.register(cls)
                except (ImportError, AttributeError, TypeError, SyntaxError) as exc:
                    raise ImportError(f"entry point {self.group}:{name} ({ep.value}): "
                                      f"{' '.join(str(exc).split())}") from None
                break
        return self._classes.get(name)

    def all(self) -> dict[str, T]:
        """Every plug-in: registered so far, or declared by an installed package."""
        for name in self.declared():
            self.load(name)
        return dict(self._classes)

    def names(self) -> list[str]:
        return sorted(set(self.declared()) | set(self._classes))
