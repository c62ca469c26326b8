"""What a config may be and how it becomes objects: where its options are read from (places),
composing it with Hydra (compose), the typed schema of the root, trainer and split (schema),
constraints declared as data (constraints, own_settings, library_constraints), the checks at the
boundary (validate, no_effect), building a component from its `_target_` (build), and the defaults
and advice dl gives (recipes, advice, metric_names)."""
