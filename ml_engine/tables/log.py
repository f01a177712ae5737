"""The files of a Delta table's ``_delta_log`` directory, read as they are.

The run log (:mod:`ml_engine.catalog`) reads commit files itself to learn which batches a
commit touched and which versions the log still holds. A table given by a plain path is read
with Python's file functions; a table given by a URI (``s3a://``, ``abfss://``, ``gs://``,
``hdfs://``, ``file://``) through the Hadoop file system of the Spark session, the one Spark
reads the table's data with: the same schemes, credentials and settings.

Example::

    log = delta_log("s3a://bucket/tables/silver", spark)
    log.read(f"{0:020d}.json")  # the first commit's actions, one JSON object per line
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyspark.sql import SparkSession

# Commit files read at once from a remote file system (each read waits mostly on the store).
_PARALLEL_READS = 16


class DeltaLog:
    """A table's ``_delta_log`` directory on the local file system."""

    def __init__(self, path: str):
        self.dir = Path(path) / "_delta_log"

    def names(self) -> list[str] | None:
        """The names of the directory's entries; None when there is no log directory."""
        if not self.dir.is_dir():
            return None
        return [entry.name for entry in self.dir.iterdir()]

    def exists(self, name: str) -> bool:
        return (self.dir / name).is_file()

    def read(self, name: str) -> str | None:
        """The text of file ``name``; None when it does not exist."""
        try:
            return (self.dir / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def read_all(self, names: Sequence[str]) -> list[str | None]:
        """:meth:`read` of each of ``names``, in order."""
        return [self.read(n) for n in names]


class HadoopDeltaLog(DeltaLog):
    """A table's ``_delta_log`` directory read through the session's Hadoop file system."""

    def __init__(self, path: str, spark: SparkSession):
        sc = spark.sparkContext
        self._jvm = sc._jvm
        self._hpath = self._jvm.org.apache.hadoop.fs.Path
        self.dir = self._hpath(path.rstrip("/") + "/_delta_log")
        self._fs = self.dir.getFileSystem(sc._jsc.hadoopConfiguration())

    def names(self) -> list[str] | None:
        if not self._fs.isDirectory(self.dir):
            return None
        return [status.getPath().getName() for status in self._fs.listStatus(self.dir)]

    def exists(self, name: str) -> bool:
        return bool(self._fs.isFile(self._hpath(self.dir, name)))

    def read(self, name: str) -> str | None:
        file = self._hpath(self.dir, name)
        if not self._fs.isFile(file):
            return None
        stream = self._fs.open(file)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def read_all(self, names: Sequence[str]) -> list[str | None]:
        if len(names) < 2:
            return [self.read(n) for n in names]
        with ThreadPoolExecutor(min(_PARALLEL_READS, len(names))) as pool:
            return list(pool.map(self.read, names))


def delta_log(path: str, spark: SparkSession) -> DeltaLog:
    """The log of the table at ``path``: :class:`DeltaLog` for a plain path, else (any
    ``scheme://``, or ``file:``) :class:`HadoopDeltaLog`."""
    remote = "://" in path or path.startswith("file:")
    return HadoopDeltaLog(path, spark) if remote else DeltaLog(path)
