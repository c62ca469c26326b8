"""A finished run opened for use: its saved config and model read back (opened), evaluated on a
split (evaluate), applied to new inputs (predict), written as one file that runs without dl (export)."""
