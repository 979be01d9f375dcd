"""Simulators and generators: synthetic data and the environments that policies are trained and judged in."""
