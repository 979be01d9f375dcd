"""study: educational recommenders from learning-platform logs, in JAX."""
