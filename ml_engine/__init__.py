"""ml-engine: the life of a tabular model as Spark jobs over Delta tables, tracked in MLflow."""

__version__ = "0.1.0"
