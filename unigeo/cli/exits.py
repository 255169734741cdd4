"""What each command's exit status means: one table, shown in every command's ``--help`` and on the
documentation's exit-code page."""

from __future__ import annotations

USAGE = "a usage or configuration error (an unknown flag, an option out of range, a refused folder), found " \
        "before anything was written"

EXIT_STATUS: dict[str, dict[int, str]] = {
    "demo": {
        0: "the world was written, built, reported, audited, trained on and evaluated",
        1: "a step failed (its message names the step), or the audit found a violation",
        2: USAGE,
    },
    "synth": {
        0: "the world was written and read back through the source readers",
        1: "the world was written but does not read back",
        2: USAGE + "; an --out that holds files other than a synthetic world's, without --overwrite",
    },
    "plan": {
        0: "the plan was printed and nothing would leave a modality empty",
        1: "something would leave a modality empty (no raster epoch inside --years, no coverage of a metro, no "
           "panorama): each line names the input and the fix; an input URL could not be reached",
        2: USAGE + "; a bad sources.yaml or an unusable input file",
    },
    "build": {
        0: "built and published",
        1: "the build's inputs would leave a modality empty (the plan's raster checks, before anything is "
           "written); the build failed, or its shards did not hold what its ledger kept (the earlier build is "
           "kept); more than --max-reject-fraction of the panoramas were rejected (everything is written "
           "first); an input or output URL could not be reached or read (credentials, network)",
        2: USAGE + "; a bad sources.yaml, an unusable input file, a Beam pipeline option Beam refuses (a "
           "project id, a bucket name)",
    },
    "report": {
        0: "DIR/report/ was rebuilt",
        1: "DIR holds no build, or its tables do not read",
        2: USAGE,
    },
    "audit": {
        0: "no violation (the JSON's violations list is empty)",
        1: "at least one violation, listed in the JSON",
        2: USAGE,
    },
    "train": {
        0: "trained (or --resume of a finished run: nothing to do)",
        1: "the build or a shard could not be read (a one-line message names the shard and the sample), or "
           "training failed",
        2: USAGE + "; a RUN that holds a run without --resume or --overwrite; --resume with a flag that "
           "disagrees with the run's configuration",
    },
    "eval": {
        0: "evaluated; the table was printed and RUN/eval/ written",
        1: "the checkpoint, the build or a shard could not be read",
        2: USAGE,
    },
}


def epilog(command: str) -> str:
    """The exit statuses of ``command`` as a ``--help`` epilog (one paragraph; click rewraps it)."""
    return "Exit status: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_STATUS[command].items()) + "."
