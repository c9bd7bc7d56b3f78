"""Test files that :func:`nips_plugin.upstream.export_upstream` writes into a neuraloperator
source tree (``neuralop/models/tests/test_*.py``, ``neuralop/layers/tests/test_*.py``).

They are source text for the exported tree, not modules of this package: they import
``neuralop.models.NIPS`` and the exported layer modules, which exist only in that tree, so
do not import them here. Their names do not start with ``test_`` so that pytest does not
collect them from this package.
"""
