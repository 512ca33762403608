"""The ``isskit`` command line: a thin click layer over the :mod:`isskit` library."""
