"""nips-plugin: NIPS, NAO and LinearNAO in-context neural operators for neuraloperator.

Importing the package registers the models in neuraloperator's zoo under the
names ``nips``, ``nao`` and ``linear_nao``, so ``neuralop.get_model`` builds them
from a config whose ``model.model_arch`` names them. Only the models and their
layers are imported here (torch and neuraloperator alone); the rest of the
package (data, baselines, training, evaluation, interpretation) loads on use.
"""
from .layers.context import pack_context, unpack_context, pack_responses, unpack_responses
from .models import NIPS, NAO, LinearNAO

__version__ = "0.1.0"


def __getattr__(name):
    # the predictor of trained runs needs the training code: loaded when first asked for
    if name == "InContextPredictor":
        from .interpret.predictor import InContextPredictor
        return InContextPredictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
