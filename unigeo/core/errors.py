"""Domain errors.

Exceptions are for bad configuration and unusable inputs as a whole (a boundary file with no
geometry, a raster without CRS). A bad *record* inside an otherwise usable input is never an
exception: it becomes a reject with a reason (see ``unigeo.sources.panoramas.validate_panoramas``).
Every message names the offending value and, where there is one, the fix.
"""

from __future__ import annotations


class UniGeoError(Exception):
    """Base class of every error UniGeo raises on purpose."""


class ConfigError(UniGeoError, ValueError):
    """The configuration (``sources.yaml`` or a command-line option) is wrong."""


class SourceError(UniGeoError, ValueError):
    """An input file cannot be used as a whole."""

    def __init__(self, path: str, problem: str, fix: str = "") -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        message = f"{path}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class MissingCRSError(SourceError):
    """A geospatial file has no coordinate reference system."""

    def __init__(self, path: str, fix: str = "") -> None:
        super().__init__(
            path,
            "has no coordinate reference system",
            fix or "write one into the file, e.g. `rio edit-info --crs EPSG:32619 FILE`",
        )


class EmptyGeometryError(SourceError):
    """A boundary file holds no usable polygon."""


class MissingDateError(SourceError):
    """A raster has no acquisition date in its tags or in the configuration."""


class AccessError(UniGeoError, OSError):
    """A remote URL that cannot be reached or read: no network, no credentials, no permission."""


class NotBuiltError(UniGeoError, NotImplementedError):
    """A command of the contract that this version does not provide yet."""


class ReconciliationError(UniGeoError, RuntimeError):
    """A finished build job whose outputs disagree (a kept sample missing from its shard, a shard its plan
    does not know): the build is not published. Each problem names the shard or split and the counts."""

    MAX_LISTED = 20  # problems the message lists before it counts the rest

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = problems[:self.MAX_LISTED]
        more = [f"... and {len(problems) - len(listed)} more"] if len(problems) > len(listed) else []
        super().__init__(f"{len(problems)} disagreement(s) between the ledger, the shard plan and the shards:\n  "
                         + "\n  ".join(listed + more))
