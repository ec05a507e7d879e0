"""The (de)serialisation every typed manifest block shares (``Manifest``, ``Robustness``, ...).

A leaf: the blocks subclass ``Block`` from here instead of from ``manifest``, so that a
block kept in its own module (``robustness``) needs nothing back from the manifest.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

NOT_SERIALISED = {"extra", "source"}  # kept on the object, never written as keys


def plain(value: Any) -> Any:
    """Tuples to lists, recursively: what JSON will hold."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Block:
    """Shared (de)serialisation of a dataclass block: fields in declaration order, None left
    out (unless named in ``always_written``), unknown keys kept in ``extra`` and written
    after the known ones."""

    always_written: ClassVar[frozenset[str]] = frozenset()  # written even when None
    extra: dict[str, Any]

    @classmethod
    def _split(cls, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        known = {f.name for f in fields(cls)} - NOT_SERIALISED  # type: ignore[arg-type]
        return ({k: v for k, v in data.items() if k in known},
                {k: v for k, v in data.items() if k not in known})  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in NOT_SERIALISED:
                continue
            value = getattr(self, f.name)
            if isinstance(value, Block):
                out[f.name] = value.to_dict()
            elif value is not None or f.name in self.always_written:
                out[f.name] = plain(value)
        out.update(plain(self.extra))
        return out
