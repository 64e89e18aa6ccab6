"""data/ and the result cache: every table's schema (schema), validated reads and locked,
all-or-nothing writes (tables), results keyed by model, settings and versions (cache)."""
