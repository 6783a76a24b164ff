"""The model zoo: one file per family."""

from ppgen.models._base import Model, deterministic
from ppgen.models.autoregressive import MADE, CharRNN, GatedPixelCNN, PixelCNN, WaveNet
from ppgen.models.conjugate import BetaBernoulli, GammaPoisson, NormalNormal
from ppgen.models.ebm import EBM, RBM, GaussianRBM
from ppgen.models.flows import (
    DequantizedFlowModel,
    FFJORDModel,
    FlowModel,
    GlowModel,
    IAFModel,
    MAFModel,
    NICEModel,
    NSFModel,
    PlanarModel,
    RadialModel,
    RealNVPModel,
)
from ppgen.models.gan import DCGAN, GAN, ConditionalGAN
from ppgen.models.hierarchical import EightSchools
from ppgen.models.hybrids import AAE, VAEGAN, BiGAN, PixelVAE
from ppgen.models.infogan import InfoGAN
from ppgen.models.lda import LDA, AmortizedLDA
from ppgen.models.mixture import (
    BernoulliMixture,
    DPMixture,
    GaussianMixture,
    Mixture,
    PoissonMixture,
    StudentTMixture,
)
from ppgen.models.ngram import NGramLM
from ppgen.models.regression import LinearRegression, LogisticRegression
from ppgen.models.sequential import DMM
from ppgen.models.vae import VAE, ConditionalVAE, ConvVAE, HierarchicalVAE
from ppgen.models.vqvae import VQVAE

__all__ = [
    "AAE",
    "BiGAN",
    "PixelVAE",
    "VAEGAN",
    "Model",
    "deterministic",
    "BetaBernoulli",
    "GammaPoisson",
    "NormalNormal",
    "EightSchools",
    "GaussianMixture",
    "Mixture",
    "StudentTMixture",
    "PoissonMixture",
    "BernoulliMixture",
    "DPMixture",
    "LDA",
    "AmortizedLDA",
    "NGramLM",
    "VAE",
    "ConvVAE",
    "ConditionalVAE",
    "HierarchicalVAE",
    "DMM",
    "VQVAE",
    "MADE",
    "PixelCNN",
    "GatedPixelCNN",
    "CharRNN",
    "WaveNet",
    "FlowModel",
    "MAFModel",
    "IAFModel",
    "NSFModel",
    "RealNVPModel",
    "NICEModel",
    "GlowModel",
    "PlanarModel",
    "RadialModel",
    "FFJORDModel",
    "DequantizedFlowModel",
    "GAN",
    "ConditionalGAN",
    "DCGAN",
    "InfoGAN",
    "LinearRegression",
    "LogisticRegression",
    "RBM",
    "GaussianRBM",
    "EBM",
]
