"""Per-rollout seeded sampling: counter-based uniforms, two-level inverse CDF, nucleus by
rejection (no sort), and each row's draws independent of the rows beside it."""

import pytest
import torch

from rap.rap_core.engines.sampling import (BLOCK, CounterSampler, counter_uniforms,
                                           rollout_seed, sample_rows, top_p_filter)


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    def kept(p):
        return (top_p_filter(probs, p) > 0).tolist()[0]
    assert kept(0.7) == [True, True, False, False]
    assert kept(0.5) == [True, False, False, False]  # 0.5 alone reaches the mass
    assert kept(0.81) == [True, True, True, False]
    assert kept(0.1) == [True, False, False, False]  # never empty
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def draws(sampler, scores, steps=20):
    return [sampler(None, scores.clone()).argmax(-1).tolist() for _ in range(steps)]


def test_each_row_draws_from_its_own_stream():
    scores = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25]] * 3))
    seeds = [rollout_seed(0, "x", "mm", r) for r in range(3)]
    together = draws(CounterSampler(seeds, 1.0, 1.0, "cpu"), scores)
    alone = draws(CounterSampler(seeds[1:2], 1.0, 1.0, "cpu"), scores[:1])
    assert [d[1] for d in together] == [d[0] for d in alone]  # row 1 alone == in a batch
    assert len({tuple(d) for d in together}) > 1 and len({d[0] for d in together}) > 1
    out = CounterSampler(seeds, 1.0, 1.0, "cpu")(None, scores.clone())
    assert (out == float("inf")).sum(-1).eq(1).all()  # exactly one token marked per row


def test_rows_of_a_real_vocabulary_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    scores = torch.randn(6, 151936) * 3
    seeds = torch.tensor([rollout_seed(0, f"s{i}", "mm", 0) for i in range(6)])
    for top_p in (1.0, 0.95):
        batch = sample_rows(scores, seeds, 3, 0.7, top_p)
        single = [sample_rows(scores[i:i + 1], seeds[i:i + 1], 3, 0.7, top_p).item()
                  for i in range(6)]
        assert batch.tolist() == single


def test_sampling_follows_temperature_and_nucleus():
    scores = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).repeat(4000, 1)
    seeds = torch.arange(4000)
    counts = torch.bincount(sample_rows(scores, seeds, 0, 1.0, 0.8), minlength=3)
    assert counts[2] == 0  # outside the 0.8 nucleus
    assert abs(counts[0] / 4000 - 2 / 3) < 0.03  # 0.6 / (0.6 + 0.3)
    hot = torch.bincount(sample_rows(scores, seeds, 0, 2.0, 1.0), minlength=3) / 4000
    want = torch.softmax(scores[0] / 2.0, -1)
    assert torch.allclose(hot, want, atol=0.03)


def sampling_noise(reference: torch.Tensor, n: int) -> float:
    """Total variation of n multinomial draws from reference: what n draws can show."""
    torch.manual_seed(2)
    drawn = torch.multinomial(reference, n, replacement=True)
    return 0.5 * float((torch.bincount(drawn, minlength=reference.numel()) / n
                        - reference).abs().sum())


def test_nucleus_by_rejection_matches_the_sorted_nucleus():
    """Over a vocabulary of several blocks: the draws' frequencies follow the renormalised
    nucleus that a sort finds, and nothing outside it is ever drawn."""
    torch.manual_seed(1)
    logits = torch.randn(3 * BLOCK + 77) * 2.5
    reference = top_p_filter(torch.softmax(logits, -1)[None], 0.9)[0]
    reference /= reference.sum()
    n = 20000
    drawn = sample_rows(logits[None].expand(n, -1), torch.arange(n), 0, 1.0, 0.9)
    freq = torch.bincount(drawn, minlength=logits.numel()) / n
    assert freq[reference == 0].sum() == 0
    assert 0.5 * float((freq - reference).abs().sum()) < 1.3 * sampling_noise(reference, n)


def test_tokens_in_the_last_partial_block_are_drawn():
    scores = torch.full((2000, 2 * BLOCK + 5), -1e9)
    scores[:, -5:] = 0.0  # all the mass in the last, shorter block
    drawn = sample_rows(scores, torch.arange(2000), 0, 1.0, 1.0)
    assert set(drawn.tolist()) == set(range(2 * BLOCK, 2 * BLOCK + 5))


def test_uniforms_are_uniform_and_streams_independent():
    seeds = torch.tensor([rollout_seed(0, f"s{i}", "mm", 0) for i in range(20000)])
    u = counter_uniforms(seeds, 0)
    assert u.min() >= 0 and u.max() < 1
    bins = torch.histc(u.float(), 20, 0, 1)
    assert ((bins - 1000) ** 2 / 1000).sum() < 45  # chi-square, 19 dof: p ~ 0.001
    again = counter_uniforms(seeds, 1)
    assert abs(torch.corrcoef(torch.stack([u, again]))[0, 1]) < 0.03
    assert torch.equal(counter_uniforms(seeds, 0), u)  # a pure function


def test_suppressed_tokens_are_never_drawn_and_nan_is_refused():
    scores = torch.zeros(500, 4)
    sampler = CounterSampler(list(range(500)), 1.0, 1.0, "cpu", suppress=[1, 2])
    picked = sampler(None, scores.clone()).argmax(-1)
    assert set(picked.tolist()) == {0, 3}
    with pytest.raises(RuntimeError, match="NaN"):
        sample_rows(torch.tensor([[0.0, float("nan")]]), torch.tensor([1]), 0, 1.0, 1.0)


def test_the_gpu_path_never_syncs_yet_keeps_rows_apart_and_the_nucleus():
    """host_sync=False (a GPU's path, run here on the CPU): fixed rounds of whole-batch
    rejection; same nucleus, same independence of rows, and what it could not settle is
    counted instead of waited for."""
    from rap.rap_core.engines.sampling import Workspace
    torch.manual_seed(1)
    logits = torch.randn(3 * BLOCK + 77) * 2.5
    reference = top_p_filter(torch.softmax(logits, -1)[None], 0.9)[0]
    reference /= reference.sum()
    n = 20000
    space = Workspace()
    drawn = sample_rows(logits[None].expand(n, -1), torch.arange(n), 0, 1.0, 0.9, space,
                        host_sync=False)
    freq = torch.bincount(drawn, minlength=logits.numel()) / n
    outside = int(space.tail_draws)
    assert round(float(freq[reference == 0].sum()) * n) == outside <= n * 0.1 ** 3 * 3
    assert 0.5 * float((freq - reference).abs().sum()) < 1.3 * sampling_noise(reference, n)
    scores = torch.randn(6, 151936) * 3
    seeds = torch.arange(6) * 977
    batch = sample_rows(scores, seeds, 2, 1.0, 0.95, host_sync=False)
    assert batch.tolist() == [sample_rows(scores[i:i + 1], seeds[i:i + 1], 2, 1.0, 0.95,
                                          host_sync=False).item() for i in range(6)]
    sampler = CounterSampler([1], 1.0, 0.9, "cpu")
    sample_rows(torch.tensor([[0.0, float("nan")]]), torch.tensor([1]), 0, 1.0, 1.0,
                sampler.space, host_sync=False)
    with pytest.raises(RuntimeError, match="NaN"):
        sampler.check()
