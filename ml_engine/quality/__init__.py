"""Data quality: ingest validation, cleaning rules, data-quality metrics and quarantine."""
