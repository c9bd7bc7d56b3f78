"""Export NIPS, NAO and LinearNAO into a neuraloperator source tree (for an upstream pull request).

:func:`export_upstream` writes the models, the layers they need, tests in neuraloperator's
style (with the authors' recorded outputs as a small data file) and, where the tree has
them, ``api.rst`` entries and zencfg model configs. Needs ``black`` (``pip install
nips-plugin[upstream]``).
"""

from .export import export_upstream, format_summary

__all__ = ["export_upstream", "format_summary"]
