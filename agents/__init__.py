"""pr-council's review engine: pure data in, pure data out."""
