"""Behaviour policies the suite trains itself: SAC on a Gymnasium task, written out as the behaviour files that
`local:` datasets are built from (docs/datasets.md, "Making behaviour files")."""
