"""nips-plugin: NIPS, NAO and LinearNAO in-context neural operators for neuraloperator.

Importing the package registers the models in neuraloperator's zoo under the
names ``nips``, ``nao`` and ``linear_nao``.
"""
from .layers.context import pack_context, unpack_context, pack_responses, unpack_responses

__version__ = "0.1.0"
