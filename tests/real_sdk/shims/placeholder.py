"""The placeholder every shimmed closed-SDK symbol is: importable, usable where Python needs a name at
import time (annotations, dict keys, a base class, an enum member read as a default), never run.

Calling a placeholder, indexing it (``kernel[grid]``) or instantiating a class derived from it raises
NotImplementedError naming the symbol, so a CPU-mode path that really needs the closed binary fails
loudly instead of getting a made-up result.
"""

from __future__ import annotations

import types


def not_here(name: str) -> NotImplementedError:
    return NotImplementedError(
        f"{name} is part of the closed Neuron SDK and only shimmed for NxDI's CPU mode (tests/real_sdk/shims): "
        "it cannot run here; run on a trn2 host with the Neuron SDK installed")


class Placeholder:
    """A closed-SDK symbol. Attributes are child placeholders (``Enum.MEMBER``, ``pb2.Message``)."""

    def __init__(self, name: str) -> None:
        self._shim_name = name
        self._shim_children: dict[str, Placeholder] = {}
        self._shim_base: type | None = None

    def __call__(self, *args, **kwargs):
        raise not_here(self._shim_name)

    def __getitem__(self, key):
        raise not_here(f"{self._shim_name}[...]")

    def __getattr__(self, attr: str) -> "Placeholder":
        if attr.startswith("__"):
            raise AttributeError(attr)
        children = self.__dict__["_shim_children"]
        if attr not in children:
            children[attr] = Placeholder(f"{self._shim_name}.{attr}")
        return children[attr]

    def __mro_entries__(self, bases: tuple) -> tuple[type]:
        """``class Mine(Placeholder)``: a real class whose construction raises."""
        if self._shim_base is None:
            name = self._shim_name

            def __init__(instance, *args, **kwargs):
                raise not_here(name)

            self._shim_base = type(name.rsplit(".", 1)[-1], (), {"__init__": __init__, "__module__": "shim"})
        return (self._shim_base,)

    def __repr__(self) -> str:
        return f"<closed Neuron SDK symbol {self._shim_name} (shim)>"


class ShimModule(types.ModuleType):
    """A shimmed module: only the names listed for it exist (anything else is an AttributeError, so a
    new import in the SDK sources shows up as an ImportError naming it)."""

    __path__: list[str] = []  # every shimmed module may have shimmed submodules
