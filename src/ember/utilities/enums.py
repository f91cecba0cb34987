"""``lightning.pytorch.utilities.enums``: string enums whose members compare equal to their values."""
from __future__ import annotations

from enum import Enum


class LightningEnum(str, Enum):
    """A ``str`` Enum: ``GradClipAlgorithmType.NORM == "norm"`` is True, case-insensitively, as in Lightning."""

    @classmethod
    def from_str(cls, value: str, source: str = "key") -> "LightningEnum":
        for member in cls:
            if (member.name if source == "key" else member.value).lower() == value.lower():
                return member
        raise ValueError(f"{value!r} is not a {cls.__name__}; valid {source}s are "
                         f"{[m.name if source == 'key' else m.value for m in cls]}.")

    def __eq__(self, other: object) -> bool:
        other = other.value if isinstance(other, Enum) else other
        return isinstance(other, str) and self.value.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.value.lower())

    def __str__(self) -> str:
        return self.value


class GradClipAlgorithmType(LightningEnum):
    """``Trainer(gradient_clip_algorithm=...)``: "norm" clips the total norm, "value" each gradient value."""

    VALUE = "value"
    NORM = "norm"

    @staticmethod
    def supported_type(val: str) -> bool:
        return any(x.value == val for x in GradClipAlgorithmType)

    @staticmethod
    def supported_types() -> list:
        return [x.value for x in GradClipAlgorithmType]


__all__ = ["GradClipAlgorithmType", "LightningEnum"]
