"""Raw sources: their schemas, the synthetic generator and day-partitioned file handling."""
