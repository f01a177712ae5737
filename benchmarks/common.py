"""Helpers the benchmarks share: deterministic generated columns and process facts.

The benchmarks run as scripts (``python benchmarks/bench_x.py``), so this directory is on
``sys.path`` and they import this module as ``common``.
"""

from __future__ import annotations

import argparse
import math
import os


def unit(salt: int):
    """A deterministic uniform [0, 1) per row: 53 bits of ``xxhash64(id, salt)``."""
    from pyspark.sql import functions as F

    h = F.xxhash64(F.col("id"), F.lit(salt))
    return F.shiftrightunsigned(h, 11).cast("double") / F.lit(float(2**53))


def normal(salt: int):
    """A deterministic standard normal per row (Box-Muller of two hashed uniforms)."""
    from pyspark.sql import functions as F

    return F.sqrt(-2.0 * F.log(unit(salt) + F.lit(1e-12))) * F.cos(
        2 * math.pi * unit(salt + 50_000)
    )


def add_java_options(parser: argparse.ArgumentParser) -> None:
    """``--java-options``: extra driver JVM options for the run (see :func:`java_options_conf`)."""
    parser.add_argument(
        "--java-options",
        default="",
        help="extra driver JVM options, e.g. -XX:+DontCompileHugeMethods to measure without "
        "the engine's -XX:-DontCompileHugeMethods",
    )


def java_options_conf(java_options: str) -> dict[str, str]:
    """The Spark setting that passes ``--java-options`` to the driver (none when empty); the
    engine's session adds its own options to it."""
    return {"spark.driver.extraJavaOptions": java_options} if java_options else {}


def load_average() -> str:
    """The load average, printed with measurements: above the core count they are not final."""
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
