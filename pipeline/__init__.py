"""The feature pipeline: raw sources to day-partitioned feature tables, in DuckDB SQL."""
