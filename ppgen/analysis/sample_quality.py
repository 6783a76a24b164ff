"""Sample quality of implicit models, which have no likelihood to report.

:func:`mode_coverage` (PacGAN's ring and grid, :mod:`ppgen.data.modes2d`), the unbiased
kernel :func:`mmd`, FID's :func:`frechet_distance`, and :func:`frechet_classifier_distance` in
the features of :class:`DigitsFeatures`, a digits classifier ppgen trains (nothing downloaded).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "c2st",
    "DigitsFeatures",
    "ModeCoverage",
    "digits_input",
    "digits_split",
    "frechet_classifier_distance",
    "frechet_distance",
    "gaussian_frechet_distance",
    "median_bandwidth",
    "mmd",
    "mode_coverage",
]


@dataclasses.dataclass(frozen=True)
class ModeCoverage:
    r"""The result of :func:`mode_coverage`.

    Attributes:
        modes_covered: Modes with at least ``min_count`` high-quality samples.
        n_modes: The number of modes ``K``.
        high_quality_rate: The fraction of samples within ``threshold`` sigma of their mode.
        counts: ``(K,)`` int: the high-quality samples assigned to each mode.
        reverse_kl: :math:`\mathrm{KL}(\hat p \,\|\, \mathcal{U}_K)` in nats, with
            :math:`\hat p` the normalised ``counts``; NaN when no sample is high quality.
    """

    modes_covered: int
    n_modes: int
    high_quality_rate: float
    counts: np.ndarray
    reverse_kl: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain Python values (``counts`` as a list), e.g. for JSON."""
        return {**dataclasses.asdict(self), "counts": self.counts.tolist()}


def _rows(x: ArrayLike, name: str, min_rows: int = 1) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0 or len(a) < min_rows:
        raise ValueError(f"`{name}` must hold at least {min_rows} rows, got shape {a.shape}.")
    return a.reshape(len(a), -1)


def _pair(x: ArrayLike, y: ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _rows(x, names[0], 2), _rows(y, names[1], 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"`{names[0]}` rows hold {a.shape[1]} values, `{names[1]}` {b.shape[1]}.")
    return a, b


def mode_coverage(
    samples: ArrayLike,
    centres: ArrayLike,
    sigma: float | ArrayLike,
    *,
    threshold: float = 3.0,
    min_count: int = 1,
) -> ModeCoverage:
    r"""Modes covered, high-quality rate and reverse KL of samples from a Gaussian mixture.

    PacGAN's rule (``MetricLogger`` in ``synthetic_data_experiments/PacGAN/pacgan/
    extensions.py`` of github.com/fjxmlzn/PacGAN, ``dis_thre=3``): each sample goes to the
    mode nearest in sigma-scaled distance :math:`\|x - \mu_k\| / \sigma_k`; it is *high
    quality* when that distance is below 3 (strictly); a mode is *covered* when at least one
    high-quality sample is assigned to it (``len(numpy.nonzero(detail_of_coverage)[0])``).
    ``min_count`` raises that bar; 1 is PacGAN's. The reverse KL compares the histogram of
    high-quality samples with the uniform mode distribution,

    .. math:: \mathrm{KL}(\hat p \,\|\, \mathcal{U}_K) = \sum_{k:\hat p_k > 0}
        \hat p_k \log (K \hat p_k) = \log K - H(\hat p),

    empty modes contributing 0 -- the ``KLD(p, q)`` of PacGAN's code (``if _p != 0``), and
    ``log K`` minus the "entropy of coverage" its 2-D logger records. Samples from the true
    mixture of well-separated modes are high quality with probability
    :math:`P(\chi^2_d < 9)`, :math:`1 - e^{-4.5} \approx 0.989` in 2-D. Non-finite samples
    are never high quality.

    Arguments:
        samples: ``(n, d)`` generated samples (PacGAN scores 2,500).
        centres: ``(K, d)`` mode centres, e.g. from :func:`ppgen.data.modes2d.mode_spec`.
        sigma: The standard deviation of every mode, or ``(K,)`` one per mode.
        threshold: The high-quality radius in units of sigma.
        min_count: The high-quality samples a mode needs to count as covered.

    Example:
        >>> centres = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> x = np.array([[0.0, 0.01], [0.99, 0.0], [1.0, 0.05], [0.5, 0.5]])  # 1, 1, 5, 71 sigma
        >>> r = mode_coverage(x, centres, sigma=0.01)
        >>> r.modes_covered, r.high_quality_rate, r.counts.tolist()
        (2, 0.5, [1, 1, 0, 0])
        >>> round(r.reverse_kl, 4) == round(math.log(4 / 2), 4)
        True
    """
    x, mu = _rows(samples, "samples"), _rows(centres, "centres")
    if x.shape[1] != mu.shape[1]:
        raise ValueError(f"`samples` have {x.shape[1]} dims but `centres` {mu.shape[1]}.")
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(mu),))
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"`sigma` must be positive and finite, got {sigma!r}.")
    if isinstance(min_count, bool) or not isinstance(min_count, int | np.integer) or min_count < 1:
        raise ValueError(f"`min_count` must be an int >= 1, got {min_count!r}.")
    K = len(mu)
    nearest, dist = np.empty(len(x), dtype=np.int64), np.empty(len(x))
    step = max(1, 2**22 // (K * x.shape[1]))  # ~32 MB of differences at a time
    for i in range(0, len(x), step):
        d2 = (((x[i : i + step, None, :] - mu[None]) / s[None, :, None]) ** 2).sum(-1)
        d2 = np.where(np.isnan(d2), np.inf, d2)
        k = d2.argmin(1)
        nearest[i : i + step] = k
        dist[i : i + step] = np.sqrt(d2[np.arange(len(k)), k])
    good = dist < threshold
    counts = np.bincount(nearest[good], minlength=K)
    p = counts[counts > 0] / max(counts.sum(), 1)
    reverse_kl = float(np.sum(p * np.log(K * p))) if len(p) else math.nan
    covered = int((counts >= min_count).sum())
    return ModeCoverage(covered, K, float(good.mean()), counts, reverse_kl)


def median_bandwidth(x: ArrayLike, y: ArrayLike, max_points: int = 2000) -> float:
    """The median heuristic: the median Euclidean distance between distinct pooled points.

    The pooled sample is ``x`` then ``y`` (rows flattened); above ``max_points`` rows an
    evenly spaced deterministic subset of them is used (Gretton et al., 2012, Sec. 8).

    Example:
        >>> median_bandwidth(np.array([[0.0], [1.0]]), np.array([[3.0]]))
        2.0
    """
    from scipy.spatial.distance import pdist

    z = np.concatenate([_rows(x, "x"), _rows(y, "y")])
    if len(z) > max_points:
        z = z[np.linspace(0, len(z) - 1, max_points).round().astype(np.int64)]
    h = float(np.median(pdist(z)))
    if not h > 0:
        raise ValueError("The median distance between the points is 0; pass a `bandwidth`.")
    return h


def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float) -> float:
    nb = (b**2).sum(1)
    step = max(1, 2**21 // len(b))
    total = 0.0
    for i in range(0, len(a), step):
        ai = a[i : i + step]
        d2 = np.maximum((ai**2).sum(1)[:, None] + nb[None] - 2.0 * ai @ b.T, 0.0)
        total += float(np.exp(-gamma * d2).sum())
    return total


def mmd(x: ArrayLike, y: ArrayLike, bandwidth: float | None = None) -> float:
    r"""The unbiased estimate of the squared maximum mean discrepancy, Gaussian kernel.

    .. math:: \widehat{\mathrm{MMD}}^2_u = \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{n(n-1)}\sum_{i \ne j} k(y_i, y_j) - \frac{2}{mn}\sum_{i,j} k(x_i, y_j),
        \qquad k(a, b) = \exp\left(-\frac{\|a - b\|^2}{2h^2}\right)

    (Gretton et al., 2012, JMLR, Eq. 3). Its expectation is exactly
    :math:`\mathrm{MMD}^2`, zero when the distributions agree, so it can be slightly
    negative. ``x`` is ``(m, ...)``, ``y`` is ``(n, ...)`` with the same trailing size,
    ``m, n >= 2``; rows are flattened, so images work. ``bandwidth`` is :math:`h`; with
    ``None`` it is :func:`median_bandwidth` of the pooled samples (the median heuristic).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(500, 2)), rng.normal(size=(500, 2))
        >>> abs(mmd(a, b)) < 0.01, mmd(a, b + 2.0) > 0.3
        (True, True)
    """
    a, b = _pair(x, y, ("x", "y"))
    h = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"`bandwidth` must be positive and finite, got {bandwidth!r}.")
    gamma, m, n = 0.5 / h**2, len(a), len(b)
    kxx = (_kernel_sum(a, a, gamma) - m) / (m * (m - 1))  # the diagonal is exp(0) = 1
    kyy = (_kernel_sum(b, b, gamma) - n) / (n * (n - 1))
    return kxx + kyy - 2.0 * _kernel_sum(a, b, gamma) / (m * n)


def gaussian_frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    r"""The squared Fréchet (2-Wasserstein) distance between two Gaussians,

    .. math:: d^2 = \|\mu_1 - \mu_2\|^2 + \mathrm{tr}\left(\Sigma_1 + \Sigma_2
        - 2 (\Sigma_1 \Sigma_2)^{1/2}\right).

    Follows ``calculate_frechet_distance`` of pytorch-fid (mseitzer/pytorch-fid, itself from
    TTUR, bioinf-jku/TTUR): ``scipy.linalg.sqrtm`` of the product; when that is not finite
    -- or, with SciPy >= 1.16, flagged singular (dead ReLU features) -- ``eps`` is added to
    both diagonals and the root taken again; an imaginary part from rounding is dropped when
    the diagonal's is below 1e-3, a larger one raises ``ValueError``. Unlike pytorch-fid, the
    traces use the offset covariances too (no :math:`-2d\epsilon` bias; equal inputs give 0).

    Example:
        >>> gaussian_frechet_distance([0.0, 0.0], np.eye(2), [3.0, 4.0], 4 * np.eye(2))
        27.0
    """
    from scipy import linalg

    m1, m2 = np.atleast_1d(np.asarray(mu1, float)), np.atleast_1d(np.asarray(mu2, float))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, float)), np.atleast_2d(np.asarray(sigma2, float))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (len(m1), len(m1)):
        raise ValueError(f"Means {m1.shape}, {m2.shape}, covariances {s1.shape}, {s2.shape}.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        covmean = linalg.sqrtm(s1 @ s2)
        singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
        if singular or not np.isfinite(covmean).all():
            s1, s2 = s1 + eps * np.eye(len(s1)), s2 + eps * np.eye(len(s1))
            covmean = linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}.")
        covmean = covmean.real
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance(feats_x: ArrayLike, feats_y: ArrayLike, eps: float = 1e-6) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

    Each of the ``(m, d)`` and ``(n, d)`` feature sets (``m, n >= 2``) gets its mean and
    unbiased covariance (``np.cov``); the distance is then :func:`gaussian_frechet_distance`
    (``eps`` is its diagonal offset for a singular product). Fed Inception features this is
    FID; fed :class:`DigitsFeatures` it is :func:`frechet_classifier_distance`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2)) + [3.0, 4.0]
        >>> round(frechet_distance(a, b))  # ||(3, 4)||^2
        25
    """
    a, b = _pair(feats_x, feats_y, ("feats_x", "feats_y"))
    cov = functools.partial(np.cov, rowvar=False)
    return gaussian_frechet_distance(a.mean(0), cov(a), b.mean(0), cov(b), eps=eps)


def digits_input(x: ArrayLike) -> np.ndarray:
    """Digit images as the ``(n, 64)`` float32 rows :class:`DigitsFeatures` reads.

    Accepts ``(n, 64)``, ``(n, 8, 8)`` or ``(n, 1, 8, 8)`` arrays (or torch tensors) on the
    digits' own scale, 0 (white) to 16 (black), and divides by 16. Values are not clipped:
    a generator that leaves [0, 16] is scored as it is.

    Example:
        >>> digits_input(np.full((2, 1, 8, 8), 16.0)).shape, float(digits_input([[8.0] * 64])[0, 0])
        ((2, 64), 0.5)
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    a = np.asarray(x, dtype=np.float32)
    if not (a.ndim >= 2 and a.shape[1:] in {(64,), (8, 8), (1, 8, 8)}):
        raise ValueError(f"Digits must be (n, 64), (n, 8, 8) or (n, 1, 8, 8); got {a.shape}.")
    return a.reshape(len(a), 64) / 16.0


def digits_split(
    test_fraction: float = 1 / 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (1,797 images, shipped with it), split stratified by class.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images ``(n, 64)`` float32 on the 0..16
        scale and int64 labels; ``test_fraction`` of each class, chosen by ``seed``, is held out.

    Example:
        >>> x_train, y_train, x_test, y_test = digits_split()
        >>> x_train.shape, x_test.shape, float(x_test.max())
        ((1198, 64), (599, 64), 16.0)
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: round(test_fraction * len(idx))]] = True
    x, y = x.astype(np.float32), y.astype(np.int64)
    return x[~test], y[~test], x[test], y[test]


class FeatureExtractor(Protocol):
    """Anything with a ``features(x) -> (n, d) array`` method."""

    def features(self, x: Any) -> np.ndarray: ...


class DigitsFeatures:
    """A small MLP classifier of the 8x8 digits, trained by ppgen, as a feature extractor.

    64 -> 128 -> 64 -> 10 with ReLUs, trained by Adam (lr 1e-3, batches of 64; the update
    is written out, as ``torch.optim`` imports ``torch._dynamo`` on first use, seconds) on
    the training part of :func:`digits_split`, on the CPU, with a seeded torch RNG forked
    from the global one (left untouched): a few seconds, the same weights on every run of
    one machine. :meth:`features` gives the 64 penultimate (post-ReLU) activations,
    :meth:`predict` the class; :attr:`accuracy` is measured on the held-out
    :attr:`test_images` (and :attr:`test_labels`). Inputs go through :func:`digits_input`.

    Example:
        >>> net = DigitsFeatures.default()
        >>> net.accuracy > 0.9, net.features(net.test_images[:3]).shape
        (True, (3, 64))
    """

    def __init__(self, seed: int = 0, epochs: int = 40, test_fraction: float = 1 / 3) -> None:
        import torch
        import torch.nn.functional as F
        from torch import nn

        xtr, ytr, self.test_images, self.test_labels = digits_split(test_fraction, seed)
        X, Y = torch.from_numpy(digits_input(xtr)), torch.from_numpy(ytr)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
            self._head = nn.Linear(64, 10)
            params = [*self._body.parameters(), *self._head.parameters()]
            mom = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
            t = 0
            for _ in range(epochs):
                perm = torch.randperm(len(X))
                for i in range(0, len(X), 64):
                    idx, t = perm[i : i + 64], t + 1
                    loss = F.cross_entropy(self._head(self._body(X[idx])), Y[idx])
                    grads = torch.autograd.grad(loss, params)
                    with torch.no_grad():  # Adam: betas (0.9, 0.999), eps 1e-8
                        for p, g, (m, v) in zip(params, grads, mom):
                            m.lerp_(g, 0.1)
                            v.mul_(0.999).addcmul_(g, g, value=0.001)
                            v_hat = (v / (1 - 0.999**t)).sqrt_().add_(1e-8)
                            p.sub_(1e-3 / (1 - 0.9**t) * m / v_hat)
        for p in params:
            p.requires_grad_(False)
        self.feature_dim = 64
        self.accuracy = float((self.predict(self.test_images) == self.test_labels).mean())

    @classmethod
    @functools.cache
    def default(cls) -> DigitsFeatures:
        """The ``seed=0`` network, trained once per process and cached."""
        return cls()

    def features(self, x: ArrayLike) -> np.ndarray:
        """The ``(n, 64)`` float64 penultimate-layer activations of digit images."""
        import torch

        return self._body(torch.from_numpy(digits_input(x))).double().numpy()

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The ``(n,)`` int64 predicted digit of each image."""
        import torch

        logits = self._head(self._body(torch.from_numpy(digits_input(x))))
        return logits.argmax(1).numpy().astype(np.int64)


def frechet_classifier_distance(
    x: ArrayLike, y: ArrayLike, features: FeatureExtractor | None = None
) -> float:
    """The Fréchet distance between two sets of images in a classifier's feature space.

    With ``features=None`` this is :class:`DigitsFeatures.default() <DigitsFeatures>`, for
    8x8 digits on the 0..16 scale (see :func:`digits_input`); any object with a
    ``features(x)`` method works. Compare generated images with held-out ones, e.g.
    ``DigitsFeatures.default().test_images``.

    Example:
        >>> test = DigitsFeatures.default().test_images
        >>> same = frechet_classifier_distance(test[::2], test[1::2])
        >>> noise = np.random.default_rng(0).uniform(0, 16, (300, 64))
        >>> bool(frechet_classifier_distance(test, noise) > 10 * same)
        True
    """
    net = DigitsFeatures.default() if features is None else features
    return frechet_distance(net.features(x), net.features(y))


def c2st(x: Any, y: Any, *, seed: int = 0, folds: int = 5, max_iter: int = 1000) -> float:
    """Classifier two-sample test: how well an MLP tells samples ``x`` from samples ``y``.

    The protocol of sbi's ``c2st`` (Lopez-Paz & Oquab 2017; Lueckmann et al. 2021's benchmark):
    rows standardised by ``y``'s mean and sd, scikit-learn's ``MLPClassifier`` with two hidden
    layers of ``10 * dim`` ReLU units (Adam, ``max_iter``), ``folds``-fold cross-validated
    accuracy. 0.5: the classifier cannot tell them apart (same distribution); 1.0: disjoint.
    Use equal sample sizes, so 0.5 is chance.

    Example: two draws of one Gaussian are indistinguishable, a shifted one is not.

        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
        >>> c2st(a, b, max_iter=200) < 0.6, c2st(a + 3.0, b, max_iter=200) > 0.95
        (True, True)
    """
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    x = np.asarray(x, float).reshape(len(x), -1)
    y = np.asarray(y, float).reshape(len(y), -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"c2st: x has {x.shape[1]} columns and y {y.shape[1]}; give equal widths.")
    mean, sd = y.mean(0), y.std(0) + 1e-12
    data = np.concatenate([(x - mean) / sd, (y - mean) / sd])
    target = np.concatenate([np.zeros(len(x)), np.ones(len(y))])
    d = data.shape[1]
    clf = MLPClassifier(
        hidden_layer_sizes=(10 * d, 10 * d), max_iter=max_iter, solver="adam", random_state=seed
    )
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a short max_iter stops before convergence on purpose
        warnings.simplefilter("ignore")
        scores = cross_val_score(clf, data, target, cv=cv, scoring="accuracy")
    return float(np.mean(scores))
