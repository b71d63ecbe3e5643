"""Helpers for tests and teaching: tiny random models of real architectures."""
