"""Shim for tools that need a setup.py (Beam stages the package for Dataflow workers with it); metadata is in setup.cfg."""

from setuptools import setup

setup()
