"""`kdtrack report`, `kdtrack claims` and `kdtrack runs`: cross-run comparison, declared by a dashboard
file. Read from the store once, then render: collect (runs as one table, those that count), gather
(those runs and the artifacts the chosen sections draw, one `sections.Fetched` value), sections (pure
builders of it), render (HTML and Markdown). dashboard reads dashboards/ and names sections' builders;
claims is the claim engine, verdicts its one chain from the store to the claims table."""
