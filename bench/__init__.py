"""Benchmarks of the pipeline (run as scripts, python bench/<name>.py); a package so that tests import them."""
