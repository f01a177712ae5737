"""Bronze and silver take their columns from the schema file, so they follow it when it gains
a column: the jobs write them with ``add_columns`` (earlier batches read null in the new
column). A column whose type changed is refused here, before anything is written, with what to
do: its earlier batches hold the old type.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from ml_engine.results import JobError
from ml_engine.tables.base import DeltaTables, added_columns, retyped_columns


def columns_to_add(
    tables: DeltaTables, path: str, df: DataFrame, job: str, typed_by: str
) -> list[str]:
    """The columns of ``df`` the table at ``path`` lacks (none when there is no table yet),
    read from the table's log without a Spark job. ``typed_by``: where ``df``'s types come
    from, as the error names it (``the schema file schemas/x.yaml``).

    Raises:
        JobError: a column of ``df`` has another type than the table's; names the columns,
            the schema file and what to do.
    """
    if not tables.exists(path):
        return []
    table_schema = tables.schema(path)
    problem = type_change(table_schema, df.schema, path, job, typed_by)
    if problem:
        raise JobError(problem)
    return [f.name for f in added_columns(path, table_schema, df.schema)]


def type_change(
    table_schema: StructType, data_schema: StructType, path: str, job: str, typed_by: str
) -> str | None:
    """The refusal of a write whose columns have other types than the table's at ``path``
    (None when none has): the columns with both types, and what to do."""
    retyped = retyped_columns(table_schema, data_schema, data_label="now")
    if not retyped:
        return None
    return (
        f"{job}: column types of {typed_by} differ from those of the table {path} "
        f"({', '.join(retyped)}). A column keeps its type in a table, because its earlier "
        "batches hold the old one: give it the table's type again, or write every batch "
        "with the new types to new tables (--set storage.root=PATH). Nothing was written"
    )


def added_note(table: str, columns: list[str]) -> list[str]:
    """The note of a run that added ``columns`` to ``table`` (none when it added none)."""
    if not columns:
        return []
    return [
        f"{table}: column(s) {columns} of the schema file added to the table; its earlier "
        "batches read null in them"
    ]
