"""Column helpers that stay inside Spark's generated code.

Spark compiles most expressions into the generated code of a stage, but higher-order
functions (``filter``, ``transform``, ``aggregate``, and ``array_compact``, which Spark
rewrites to a ``filter``) are evaluated by interpreting their lambda for every element of
every row. In a wide job one such expression per column cost more than the rest of the
work (see benchmarks/), so per-row code here avoids them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

STRING = T.StringType()


def present(values: Sequence[Column], element_type: T.DataType = STRING) -> Column:
    """The array of the non-null ``values``, in order: ``array_compact(array(*values))``
    without the lambda. Values are assumed distinct (duplicates are removed).

    Args:
        values: Columns of ``element_type``.
        element_type: their type (for the empty array and the null to remove).
    """
    if not values:
        return F.array().cast(T.ArrayType(element_type))
    return F.array_except(F.array(*values), F.array(F.lit(None).cast(element_type)))
