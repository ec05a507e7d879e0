"""Version policy: which versions of a model are served (Triton's / TF Serving's names).

* ``all``: every version folder;
* ``latest N``: the N highest version numbers;
* ``specific v1, v2, ...``: exactly those (absent ones are ignored).

Two spellings of one object: the setting ``AWNET_VERSION_POLICY`` (``all``, ``latest:2``,
``specific:1,3``) and the manifest's optional ``version_policy`` block, Triton's JSON shape
(``{"all": {}}``, ``{"latest": {"num_versions": 2}}``, ``{"specific": {"versions": [1, 3]}}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from artifact_contract.errors import ArtifactError

POLICY_KINDS = ("all", "latest", "specific")  # the keys of Triton's version_policy


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "all"
    num_versions: int = 1  # latest
    versions: tuple[int, ...] = ()  # specific

    def select(self, versions: Iterable[str | int]) -> set[str]:
        """The version strings this policy serves, out of those present."""
        present = sorted({int(v) for v in versions})
        if self.kind == "latest":
            chosen = present[-self.num_versions:]
        elif self.kind == "specific":
            chosen = [v for v in present if v in self.versions]
        else:
            chosen = present
        return {str(v) for v in chosen}

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "latest":
            return {"latest": {"num_versions": self.num_versions}}
        if self.kind == "specific":
            return {"specific": {"versions": list(self.versions)}}
        return {"all": {}}

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return "all"

    # --- parsing ----------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """``all`` | ``latest[:N]`` | ``specific:V[,V...]`` (``:`` or a space); ValueError."""
        raw = text.strip().lower()
        kind, _, arg = raw.replace(" ", ":", 1).partition(":")
        arg = arg.strip()
        if kind == "all" and not arg:
            return cls("all")
        if kind == "latest":
            n = arg or "1"
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"version policy {text!r}: latest needs a positive count, e.g. latest:2")
            return cls("latest", num_versions=int(n))
        if kind == "specific":
            parts = [p.strip() for p in arg.split(",") if p.strip()]
            if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise ValueError(f"version policy {text!r}: specific needs versions, e.g. specific:1,3")
            return cls("specific", versions=tuple(sorted({int(p) for p in parts})))
        raise ValueError(f"version policy {text!r} must be all, latest:N or specific:V1,V2")

    @classmethod
    def from_dict(cls, data: Any, where: Any = "manifest.json") -> VersionPolicy:
        """Triton's JSON shape; ``ArtifactError`` naming ``where`` otherwise."""
        bad = ArtifactError(
            f"{where}: version_policy must be {{\"all\": {{}}}}, {{\"latest\": {{\"num_versions\": N}}}} "
            f"or {{\"specific\": {{\"versions\": [V, ...]}}}}, got {data!r}"
        )
        if not isinstance(data, dict) or len(data) != 1:
            raise bad
        (kind, body), = data.items()
        if kind not in POLICY_KINDS or not isinstance(body, dict):
            raise bad
        if kind == "all":
            return cls("all")
        if kind == "latest":
            n = body.get("num_versions", 1)
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise bad
            return cls("latest", num_versions=n)
        vs = body.get("versions")
        if (not isinstance(vs, list) or not vs
                or not all(isinstance(v, int | str) and str(v).isdigit() and int(v) > 0 for v in vs)):
            raise bad
        return cls("specific", versions=tuple(sorted({int(v) for v in vs})))
