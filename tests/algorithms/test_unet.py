"""Temporal U-Net and temporal value network: shapes for any horizon, conditions, capacity."""

import pytest
import torch

from algorithms.common.unet import LinearAttention, TemporalUnet, TemporalValue


@pytest.mark.parametrize("horizon", [1, 5, 17, 32, 33])
@pytest.mark.parametrize("dim_mults", [(1,), (1, 2), (1, 2, 4, 8)])
def test_unet_keeps_the_shape_for_odd_horizons_and_batch_axes(horizon, dim_mults):
    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=7, dim=8, dim_mults=dim_mults)
    x = torch.randn(3, 2, horizon, 7)
    t = torch.randint(0, 10, (3, 2))
    out = net(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("horizon", [1, 4, 31, 32, 100])
def test_value_gives_one_number_per_segment(horizon):
    net = TemporalValue(horizon, transition_dim=5, dim=8, dim_mults=(1, 2, 4))
    out = net(torch.randn(4, 3, horizon, 5), torch.randint(0, 10, (4, 3)))
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_unet_output_depends_on_the_step_and_the_kept_condition_only():
    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=3, dim=8, dim_mults=(1, 2), cond_dim=2)
    x = torch.randn(4, 12, 3)
    t = torch.full((4,), 3)
    value = torch.randn(4, 2)
    keep = {"value": value, "mask": torch.ones(4, 2)}
    assert not torch.allclose(net(x, t, keep), net(x, t + 5, keep))
    other = {"value": value + 1.0, "mask": torch.ones(4, 2)}
    assert not torch.allclose(net(x, t, keep), net(x, t, other))
    # A dropped component is ignored whatever its value: the "empty" condition is one input.
    half = {"value": value, "mask": torch.tensor([[1.0, 0.0]]).expand(4, 2)}
    half_other = {"value": value + torch.tensor([0.0, 5.0]), "mask": half["mask"]}
    torch.testing.assert_close(net(x, t, half), net(x, t, half_other))
    assert not torch.allclose(net(x, t, half), net(x, t, keep))


def fit(net: torch.nn.Module, inputs: tuple, target: torch.Tensor, steps: int, lr: float) -> tuple:
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = (net(*inputs) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_unet_overfits_a_tiny_batch():
    torch.manual_seed(0)
    net = TemporalUnet(transition_dim=4, dim=8, dim_mults=(1, 2))
    x, t = torch.randn(8, 13, 4), torch.randint(0, 20, (8,))
    target = torch.randn(8, 13, 4)
    first, last = fit(net, (x, t), target, steps=120, lr=1e-2)
    assert last < 0.05 * first


def test_value_overfits_a_tiny_batch():
    torch.manual_seed(0)
    net = TemporalValue(8, transition_dim=4, dim=16, dim_mults=(1, 4))
    x, t = torch.randn(16, 8, 4), torch.randint(0, 20, (16,))
    target = torch.randn(16)
    first, last = fit(net, (x, t), target, steps=100, lr=3e-3)
    assert last < 0.01 * first


def test_linear_attention_is_diffusers():
    """jannerm/diffuser ``models/helpers.py``: ``Residual(PreNorm(dim, LinearAttention(dim)))``,
    written out with its LayerNorm over channels and per-head einsums."""
    torch.manual_seed(0)
    attn = LinearAttention(16, heads=4, dim_head=32)
    x = torch.randn(3, 16, 10)
    var = torch.var(x, dim=1, unbiased=False, keepdim=True)
    h = (x - x.mean(dim=1, keepdim=True)) / (var + 1e-5).sqrt()
    q, k, v = (t.reshape(3, 4, 32, 10) for t in attn.to_qkv(h).chunk(3, dim=1))
    context = torch.einsum("bhdn,bhen->bhde", k.softmax(dim=-1), v)
    out = torch.einsum("bhde,bhdn->bhen", context, q * 32**-0.5).reshape(3, 128, 10)
    torch.testing.assert_close(attn(x), x + attn.to_out(out))


def test_attention_layers_sit_where_diffusers_do():
    net = TemporalUnet(5, dim=8, dim_mults=(1, 2, 4), attention=True)
    kinds = [type(level[3]).__name__ for level in (*net.downs, *net.ups)]
    assert (
        kinds == ["LinearAttention"] * 5 and type(net.mid_attention).__name__ == "LinearAttention"
    )
    x, t = torch.randn(2, 12, 5), torch.zeros(2, dtype=torch.long)
    assert net(x, t).shape == (2, 12, 5)
    plain = TemporalUnet(5, dim=8, dim_mults=(1, 2, 4))
    assert not any(type(m).__name__ == "LinearAttention" for m in plain.modules())


def test_mix_hook_sees_the_bottleneck_then_each_skip_read_and_edits_them():
    torch.manual_seed(0)
    net = TemporalUnet(3, dim=8, dim_mults=(1, 2, 4))
    x, t = torch.randn(2, 8, 3), torch.tensor([0, 1])
    seen = []

    def record(level, h, emb):
        seen.append((level, tuple(h.shape), tuple(emb.shape)))
        return h

    torch.testing.assert_close(net(x, t, mix=record), net(x, t))
    # bottleneck 32 channels at horizon 2, then the skips of widths 32 (horizon 2) and 16 (4)
    assert seen == [(0, (2, 32, 2), (2, 8)), (1, (2, 32, 2), (2, 8)), (2, (2, 16, 4), (2, 8))]
    zeroed = net(x, t, mix=lambda level, h, emb: h * 0 if level == 2 else h)
    assert not torch.allclose(zeroed, net(x, t))
