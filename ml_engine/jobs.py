"""The job registry: one function per job, all with the same signature.

A job function takes ``(spark, cfg, tables)`` and returns a :class:`JobResult`; it reads its
inputs through ``tables``, calls pure transformations and writes its outputs. The command line
(``ml-engine run``) and ``jobs/<name>.py`` wrap it with config loading, session building and
exit codes (see :func:`main`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class JobError(RuntimeError):
    """A job cannot finish; the message is the one-line reason printed on stderr."""


class JobNotBuiltError(JobError):
    """The job is part of the design but not implemented yet."""


@dataclass
class JobResult:
    """What a job produced: output name -> path, and a few figures worth printing."""

    job: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
