"""Pipeline stages, one module each; each registers its spec with the pipeline registry."""
