"""Built-in detectors, one module per tactic. Importing a module registers its detectors."""
