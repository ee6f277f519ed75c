"""pr-council's delivery: CLI, GitHub, HTTP and queue."""
