"""The ``aisuper`` command line: run the local platform and use it."""
