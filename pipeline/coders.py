"""Deterministic Beam coders of the build's key types (GroupByKey needs them); registered on import."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from unigeo.core.sample import SampleKey


class SampleKeyCoder(beam.coders.Coder):
    """Deterministic coder for ``SampleKey``."""

    def encode(self, value: SampleKey) -> bytes:
        return "\x00".join(value).encode("utf-8")

    def decode(self, encoded: bytes) -> SampleKey:
        return SampleKey(*encoded.decode("utf-8").split("\x00"))

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return SampleKey


beam.coders.registry.register_coder(SampleKey, SampleKeyCoder)
