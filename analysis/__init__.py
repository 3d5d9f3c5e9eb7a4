"""Analysis of recorded runs: tidy scores, rliable aggregates, tables and figures (never imports torch)."""
