"""nips-plugin: NIPS, NAO and LinearNAO in-context neural operators for neuraloperator.

Importing the package registers the models in neuraloperator's zoo under the
names ``nips``, ``nao`` and ``linear_nao``, so ``neuralop.get_model`` builds them
from a config whose ``model.model_arch`` names them.
"""
from .layers.context import pack_context, unpack_context, pack_responses, unpack_responses
from .models import NIPS, NAO, LinearNAO
from .interpret.predictor import InContextPredictor

__version__ = "0.1.0"
