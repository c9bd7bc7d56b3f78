"""In-context neural operators; importing registers them in neuraloperator's zoo."""

from .nips import NIPS
from .nao import NAO, LinearNAO
