"""What a job returns and how it fails: a small module every part of the engine may import.

The runner (:mod:`ml_engine.jobs`) and the command line (:mod:`ml_engine.cli`) turn these into
printed output and exit codes; library modules import only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 4
# drift_report with drift.fail_on_drift: the batch drifted (a scheduler can branch on it).
EXIT_DRIFT = 5
# Interrupted (Ctrl-C, SIGINT): 128 + the signal's number, as shells report it.
EXIT_INTERRUPTED = 130


class JobError(RuntimeError):
    """A job cannot finish; the message is the one-line reason printed on stderr."""


@dataclass
class JobResult:
    """What a job produced.

    Attributes:
        job: the job's name.
        outputs: output name -> path or URI.
        metrics: a few figures worth printing (JSON values).
        notes: sentences for the person reading the terminal (a gate decision, a drift verdict).
        exit_code: the process exit code the job asks for (0, or :data:`EXIT_DRIFT`).
    """

    job: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK
