"""Which models: the sets and their selection (entries), a model built on the meta device (build),
published accuracy (accuracy), and the reference tables kept with their provenance (reference/)."""
