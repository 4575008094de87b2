"""Per-rollout seeded sampling: nucleus filtering and per-row generators."""

import torch

from rap.rap_core.engines.sampling import PerRowSampler, rollout_seed, top_p_filter


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    def kept(p):
        return (top_p_filter(probs, p) > 0).tolist()[0]
    assert kept(0.7) == [True, True, False, False]
    assert kept(0.5) == [True, False, False, False]  # 0.5 alone reaches the mass
    assert kept(0.81) == [True, True, True, False]
    assert kept(0.1) == [True, False, False, False]  # never empty
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def test_each_row_draws_from_its_own_stream():
    scores = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25]] * 3))
    seeds = [rollout_seed(0, "x", "mm", r) for r in range(3)]
    a = PerRowSampler(seeds, 1.0, 1.0, "cpu")
    b = PerRowSampler(seeds[1:2], 1.0, 1.0, "cpu")
    draws_a = [a(None, scores).argmax(-1).tolist() for _ in range(20)]
    draws_b = [b(None, scores[:1]).argmax(-1).tolist()[0] for _ in range(20)]
    assert [d[1] for d in draws_a] == draws_b  # row 1 alone == row 1 in a batch
    out = a(None, scores)
    assert (torch.isfinite(out).sum(-1) == 1).all()


def test_sampling_follows_temperature_and_nucleus():
    scores = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    sampler = PerRowSampler([7], 1.0, 0.8, "cpu")
    counts = torch.bincount(torch.stack([sampler(None, scores).argmax(-1)[0]
                                         for _ in range(2000)]), minlength=3)
    assert counts[2] == 0  # outside the 0.8 nucleus
    assert abs(counts[0] / 2000 - 2 / 3) < 0.05  # 0.6 / (0.6 + 0.3)
