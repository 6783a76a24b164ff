"""Contract tests for every flow kind, plus a statistical fit and the Pyro integration."""

from __future__ import annotations

import io

import pyro
import pytest
import torch
from torch.autograd.functional import jacobian

from ppgen.flows import FLOWS, FlowDistribution, build_flow
from ppgen.models import flows as zoo
from ppgen.models.flows import FlowModel, MAFModel

SMALL = {"hidden_features": 8}
OPTIONS = {"ffjord": {"exact": True, "hidden_features": 8}, "nsf": {"num_bins": 4, **SMALL}}
VECTOR = [(kind, 3) for kind in FLOWS]
IMAGE = [("realnvp", (1, 4, 4)), ("glow", (1, 4, 4))]
CASES = VECTOR + IMAGE
CONTEXT = 2


def make(kind: str, features, context_features=None, dtype=torch.float64, noise=0.05):
    flow = build_flow(kind, features, context_features, **OPTIONS.get(kind, SMALL))
    flow = flow.to(dtype)
    # perturb every weight so that no layer is at its (near-)identity initialisation
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(noise * torch.randn_like(p))
    # actnorm initialises from the first batch, as in training
    x = torch.randn(64, *flow.event_shape, dtype=dtype)
    c = None if context_features is None else torch.randn(64, context_features, dtype=dtype)
    flow.log_prob(x, c)
    return flow


def inputs(flow, n, conditional):
    x = torch.randn(n, *flow.event_shape, dtype=torch.float64)
    c = torch.randn(n, CONTEXT, dtype=torch.float64) if conditional else None
    return x, c


def ids(case):
    return f"{case[0]}-{'x'.join(map(str, case[1])) if isinstance(case[1], tuple) else case[1]}"


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("case", CASES, ids=map(ids, CASES))
def test_invertible_with_consistent_logdet(case, conditional):
    flow = make(*case, CONTEXT if conditional else None)
    x, c = inputs(flow, 16, conditional)
    z, ladj = flow._transform(x, c)
    x2, ladj_inv = flow._transform.inverse(z, c)
    assert torch.allclose(x2.reshape(x.shape), x, atol=1e-4)
    assert torch.allclose(ladj + ladj_inv, torch.zeros_like(ladj), atol=1e-4)


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("case", CASES, ids=map(ids, CASES))
def test_logdet_matches_autograd_jacobian(case, conditional):
    flow = make(*case, CONTEXT if conditional else None)
    x, c = inputs(flow, 2, conditional)
    _, ladj = flow._transform(x, c)
    for i in range(2):
        ci = None if c is None else c[i : i + 1]

        def f(v, ci=ci):
            return flow._transform(v.unsqueeze(0), ci)[0].reshape(-1)

        J = jacobian(f, x[i])
        J = J.reshape(J.shape[0], -1)
        assert torch.allclose(torch.linalg.slogdet(J).logabsdet, ladj[i], atol=1e-3)


@pytest.mark.parametrize("kind", list(FLOWS))
def test_2d_density_integrates_to_one(kind):
    flow = make(kind, 2, dtype=torch.float32)
    grid = torch.linspace(-10, 10, 201)
    xx = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        p = flow().log_prob(xx).exp()
    mass = p.sum() * (grid[1] - grid[0]) ** 2
    assert 0.9 < mass.item() < 1.1


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("case", CASES, ids=map(ids, CASES))
def test_sampling_and_density_paths_agree(case, conditional):
    flow = make(*case, CONTEXT if conditional else None)
    c = torch.randn(5, CONTEXT, dtype=torch.float64) if conditional else None
    d = flow(c)
    x, log_q = d.rsample_and_log_prob((7,))
    assert x.shape == (7, *d.batch_shape, *d.event_shape)
    assert log_q.shape == (7, *d.batch_shape)
    assert d.log_prob(x) is log_q  # cached for guides
    # an independent evaluation (not the cache) gives the same density: KL(q || q) = 0
    assert torch.isfinite(log_q).all()
    assert torch.allclose(d.log_prob(x.clone()), log_q, atol=1e-3)


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("case", CASES, ids=map(ids, CASES))
def test_every_parameter_gets_a_gradient(case, conditional):
    flow = make(*case, CONTEXT if conditional else None, dtype=torch.float32)
    x, c = inputs(flow, 8, conditional)
    d = flow(None if c is None else c.float())
    loss = -d.log_prob(x.float()).mean() + d.rsample_and_log_prob((2,))[1].mean()
    loss.backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in flow.parameters())


@pytest.mark.parametrize("case", CASES, ids=map(ids, CASES))
def test_state_dict_round_trip(case):
    flow = make(*case, CONTEXT)
    x, c = inputs(flow, 8, True)
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    buffer.seek(0)
    other = build_flow(*case, CONTEXT, **OPTIONS.get(case[0], SMALL)).to(torch.float64)
    assert not torch.equal(other.log_prob(x, c), flow.log_prob(x, c))
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(other.log_prob(x, c), flow.log_prob(x, c))


def test_unknown_kind_lists_valid_names():
    with pytest.raises(ValueError, match="`kind` must be one of .*'maf'.*got 'mafia'"):
        build_flow("mafia", 3)


def test_image_shape_for_vector_flow_is_rejected():
    with pytest.raises(ValueError, match="`features` must be an int for kind 'maf'"):
        build_flow("maf", (1, 8, 8))


def test_wrong_event_shape_is_rejected():
    d = build_flow("realnvp", 3, **SMALL)()
    with pytest.raises(ValueError, match=r"`value` must end in the event shape \(3,\).*\(5, 4\)"):
        d.log_prob(torch.zeros(5, 4))


def test_context_is_validated():
    flow = build_flow("maf", 3, context_features=2, **SMALL)
    with pytest.raises(ValueError, match="`context` is required"):
        flow()
    with pytest.raises(ValueError, match=r"`context` must have shape \(\.\.\., 2\), got \(4, 3\)"):
        flow(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="unconditional"):
        build_flow("maf", 3, **SMALL)(torch.zeros(4, 2))


def test_iaf_samples_fast_and_matches_maf_algebra():
    """IAF's transform is the inverse of a MAF layer: sampling is its forward MADE pass."""
    flow = make("iaf", 3)
    d = flow()
    x, log_q = d.rsample_and_log_prob((4,))
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-6)


def test_pyro_program_observed_and_as_guide():
    torch.manual_seed(0)
    m = MAFModel(2, **SMALL)
    x = torch.randn(10, 2)
    trace = pyro.poutine.trace(m.model).get_trace(x=x)
    assert torch.allclose(trace.log_prob_sum(), m.log_prob(x).sum())
    assert set(pyro.get_param_store().keys()) == {f"flow$$${n}" for n, _ in m.named_parameters()}

    encoder = torch.nn.Linear(2, 4)
    flow = build_flow("iaf", 3, context_features=4, **SMALL)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", flow(encoder(x)))

    trace = pyro.poutine.trace(guide).get_trace(x)
    site = trace.nodes["z"]
    assert site["value"].shape == (10, 3) and site["value"].requires_grad
    assert isinstance(site["fn"], FlowDistribution)
    assert torch.isfinite(site["fn"].log_prob(site["value"])).all()


@pytest.mark.parametrize("kind", ["maf", "realnvp"])
def test_maximum_likelihood_recovers_a_gaussian(kind):
    mean = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]])
    data = torch.distributions.MultivariateNormal(mean, cov).sample((2000,))
    model = FlowModel(kind, 2, hidden_features=32, num_transforms=3)
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optim.zero_grad()
        loss = -model.log_prob(data).mean()
        loss.backward()
        optim.step()
    x = model.sample(20_000)
    assert torch.allclose(x.mean(0), mean, atol=0.1)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.15)


def test_ffjord_hutchinson_estimator_is_unbiased():
    exact = make("ffjord", 2)
    hutch = build_flow("ffjord", 2, hidden_features=8).to(torch.float64)
    hutch.load_state_dict(exact.state_dict())
    x = torch.randn(4, 2, dtype=torch.float64)
    target = exact.log_prob(x)
    with torch.no_grad():
        draws = torch.stack([hutch.log_prob(x) for _ in range(200)])
    assert draws.std(0).min() > 1e-3  # it is random ...
    stderr = draws.std(0) / 200**0.5
    assert ((draws.mean(0) - target).abs() < 4 * stderr + 1e-4).all()  # ... and unbiased


@pytest.mark.parametrize("name", zoo.__all__)
def test_zoo_flow_models_are_programs(name):
    cls = getattr(zoo, name)
    options = OPTIONS["ffjord"] if cls is zoo.FFJORDModel else SMALL
    x = torch.randn(6, 2)
    if cls is FlowModel:
        model = FlowModel("nice", 2, **SMALL)
    elif cls is zoo.DequantizedFlowModel:  # integer levels; the bound draws dequantisation noise
        model, x = cls("nice", 2, num_bins=4, **SMALL), torch.randint(0, 4, (6, 2)).float()
    else:
        model = cls(2, **options)
    trace = pyro.poutine.trace(model.model).get_trace(x=x)
    assert trace.nodes["x"]["is_observed"]
    torch.manual_seed(1)
    traced = trace.log_prob_sum()
    torch.manual_seed(1)
    assert torch.allclose(traced, model.log_prob(x).sum(), atol=1e-4)
    assert model.sample(3).shape == (3, 2)


def test_iaf_guide_recovers_a_conjugate_posterior():
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import ClippedAdam

    x = torch.randn(50, 2) + torch.tensor([1.0, -1.0])

    def model(x):
        mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 10.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0).to_event(1), obs=x)

    flow = build_flow("iaf", 2, hidden_features=8, num_transforms=2)

    def guide(x):
        pyro.module("q", flow)
        pyro.sample("mu", flow())

    elbo = Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, ClippedAdam({"lr": 3e-2, "lrd": 0.995}), elbo)
    for _ in range(400):
        svi.step(x)
    precision = 50 + 1 / 100
    draws = flow().sample((4000,))
    assert torch.allclose(draws.mean(0), x.sum(0) / precision, atol=0.05)
    assert torch.allclose(draws.std(0), torch.full((2,), precision**-0.5), atol=0.04)


def test_plates_expand_to_a_flow_distribution_that_keeps_the_cache():
    d = make("iaf", 3)().expand((16,))
    assert isinstance(d, FlowDistribution) and d.batch_shape == (16,)
    x, log_q = d.rsample_and_log_prob((2,))
    assert x.shape == (2, 16, 3) and d.log_prob(x) is log_q
    assert torch.allclose(d.log_prob(x.clone()), log_q, atol=1e-6)
    c = torch.randn(1, CONTEXT, dtype=torch.float64)
    assert make("maf", 3, CONTEXT)(c).expand((5,)).rsample().shape == (5, 3)


def test_maf_layers_are_nflows_masked_autoregressive_flow_layers():
    """MAF's default layer is nflows' MaskedAutoregressiveFlow layer (issue 17): a MADE of 2
    residual blocks and the softplus scale, its logit shifted by log(e - 1) (scale 1 at
    initialisation), so copied weights with that shift in the scale biases give nflows'
    density. IAF keeps the bounded log-scale. The density is normalised on a 2-D grid."""
    import math

    import nflows.distributions
    import nflows.flows
    import nflows.transforms as nt
    from nflows.transforms.made import MaskedResidualBlock

    torch.manual_seed(0)
    flow = build_flow("maf", 2, hidden_features=16, num_transforms=3, num_blocks=2)
    made = [m for m in flow.modules() if isinstance(m, nt.MaskedAffineAutoregressiveTransform)]
    assert [m.scale for m in made] == ["softplus"] * 3
    assert all(sum(isinstance(b, MaskedResidualBlock) for b in m.modules()) == 2 for m in made)
    layers = []
    for i in range(3):
        layers += [nt.ReversePermutation(2)] if i else []
        layers.append(nt.MaskedAffineAutoregressiveTransform(2, 16, num_blocks=2))
    ref = nflows.flows.Flow(nt.CompositeTransform(layers), nflows.distributions.StandardNormal([2]))
    with torch.no_grad():  # move every layer away from its near-identity initialisation
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    state = flow._transform.state_dict()
    for k in state:  # the final layer's outputs are (scale logit, shift) per feature
        if k.endswith("final_layer.bias"):
            state[k] = state[k].clone()
            state[k][0::2] += math.log(math.e - 1)
    ref._transform.load_state_dict(state)
    x = torch.randn(64, 2)
    assert torch.allclose(flow.log_prob(x), ref.log_prob(x), atol=1e-5)
    grid = torch.linspace(-10, 10, 201)
    with torch.no_grad():
        mass = (
            flow.log_prob(torch.cartesian_prod(grid, grid)).exp().sum() * (grid[1] - grid[0]) ** 2
        )
    assert 0.95 < mass.item() < 1.05
    iaf = build_flow("iaf", 2, hidden_features=8)
    scales = {
        m.scale for m in iaf.modules() if isinstance(m, nt.MaskedAffineAutoregressiveTransform)
    }
    assert scales == {"tanh"}
    with pytest.raises(ValueError, match="`scale` must be one of"):
        build_flow("maf", 2, scale="exp")
