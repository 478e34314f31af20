"""`kdtrack report` and `kdtrack runs`: cross-run comparison, declared by a dashboard file."""
