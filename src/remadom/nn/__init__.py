"""Building blocks: PoE fusion, likelihood heads, encoder/decoder networks, alignment losses."""

from .alignment import batch_mmd, mmd
from .likelihoods import LIKELIHOODS, LikelihoodHead, get_likelihood, register_likelihood
from .networks import ENCODER_INPUTS, ConditionalDecoder, EncoderInput, GaussianExpertEncoder
from .poe import kl_between_gaussians, kl_to_standard_normal, product_of_experts

__all__ = [
    "ENCODER_INPUTS",
    "LIKELIHOODS",
    "ConditionalDecoder",
    "EncoderInput",
    "GaussianExpertEncoder",
    "LikelihoodHead",
    "batch_mmd",
    "get_likelihood",
    "kl_between_gaussians",
    "kl_to_standard_normal",
    "mmd",
    "product_of_experts",
    "register_likelihood",
]
