"""int8 Linear layers quantise each row on its own: a row's output is the same alone or beside any others, and
a faint row keeps its precision next to a loud one (fbgemm's one scale for the whole batch would round it to
nothing)."""

from __future__ import annotations

import copy

import torch

from image2mood.models.precision import Int8Linear, int8_linears, stacked_linears


def _layer(bias: bool = True) -> tuple[torch.nn.Linear, Int8Linear]:
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 40, bias=bias)
    return linear, Int8Linear.from_linear(linear)


def _rows() -> torch.Tensor:
    """Rows far apart in loudness and sign: all negative, all positive, mixed, silent, faint, loud."""
    torch.manual_seed(1)
    mixed = torch.randn(6, 48)
    mixed[0] = -mixed[0].abs()
    mixed[1] = mixed[1].abs()
    mixed[3] = 0
    return mixed * torch.tensor([1.0, 2.0, 0.5, 1.0, 1e-3, 1e3])[:, None]


def test_a_rows_output_does_not_depend_on_the_rows_beside_it() -> None:
    _, layer = _layer()
    rows = _rows()
    with torch.inference_mode():
        together = layer(rows)
        for row in range(len(rows)):
            assert torch.equal(layer(rows[row:row + 1]), together[row:row + 1])
            assert torch.equal(layer(rows[[row, 5]])[0], together[row])  # beside the loudest only
        batched = layer(rows.reshape(2, 3, 48))  # any leading shape: the rows of a batch of sequences
    assert batched.shape == (2, 3, 40) and torch.equal(batched.reshape(6, 40), together)


def test_every_row_stays_close_to_fp32_however_faint_its_neighbours_are_loud() -> None:
    for bias in (True, False):
        linear, layer = _layer(bias)
        rows = _rows()
        with torch.inference_mode():
            want, got = linear(rows), layer(rows)
        scale = (want - (linear.bias if bias else 0)).abs().amax(1).clamp_min(1e-12)
        error = ((got - want).abs().amax(1) / scale)
        assert error[[0, 1, 2, 4, 5]].max() < 0.03, error  # 7-bit activations and int8 weights, each row its own
        assert torch.equal(got[3], linear.bias if bias else torch.zeros(40))  # a silent row gives the bias


def test_only_plain_linear_layers_are_replaced_and_the_module_still_runs() -> None:
    torch.manual_seed(2)
    module = torch.nn.ModuleDict({"attention": torch.nn.MultiheadAttention(16, 2, batch_first=True),
                                  "head": torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.GELU())}).bfloat16()
    int8_linears(module)
    assert isinstance(module["head"][0], Int8Linear) and module["head"][0].out_features == 8
    assert type(module["attention"].out_proj) is not Int8Linear  # MultiheadAttention reads out_proj.weight itself
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        out = module["head"](module["attention"](x, x, x)[0])
    assert out.shape == (2, 5, 8) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_stacked_layers_give_each_layers_output_side_by_side() -> None:
    torch.manual_seed(3)
    plain = [torch.nn.Linear(48, width) for width in (40, 24, 40)]
    int8 = [Int8Linear.from_linear(layer) for layer in plain]
    rows = _rows().reshape(2, 3, 48)
    with torch.inference_mode():
        for layers, equal in ((int8, torch.equal), (plain, lambda a, b: torch.allclose(a, b, atol=1e-5))):
            joined = stacked_linears(layers)
            assert isinstance(joined, type(layers[0])) and joined.out_features == 104
            assert equal(joined(rows), torch.cat([layer(rows) for layer in layers], -1))
    assert not any(parameter.requires_grad for parameter in stacked_linears(plain).parameters())


def test_per_sample_layers_give_each_sample_what_it_gets_alone() -> None:
    linear = _layer()[0]
    layer = Int8Linear.from_linear(linear, per_sample=True)
    samples = _rows().reshape(3, 2, 48)  # three samples of two tokens, far apart in loudness
    with torch.inference_mode():
        together, want = layer(samples), linear(samples)
        assert together.shape == (3, 2, 40)
        for sample in range(3):
            assert torch.equal(layer(samples[sample:sample + 1]), together[sample:sample + 1])
            assert torch.equal(layer(samples[sample]), together[sample])  # (tokens, features): one sample
        error = (together - want).abs().amax((1, 2)) / (want - linear.bias).abs().amax((1, 2))
        stacked = stacked_linears([layer, Int8Linear.from_linear(linear, per_sample=True)])(samples)
    assert error.max() < 0.03, error
    assert torch.equal(stacked, torch.cat([together, together], -1))


def test_the_fixed_scale_product_is_the_anchored_dynamic_product_bit_for_bit() -> None:
    """fbgemm multiplies at the fixed [-1, 1] scale directly; the anchor rows that other engines need give the
    same outputs. Many rows too: above 64, the rows' peaks come from another reduction."""
    linear, layer = _layer()
    assert layer.fixed_scale == (torch.backends.quantized.engine in ("x86", "fbgemm"))  # CI's CPUs: x86
    anchored = copy.deepcopy(layer)
    anchored.fixed_scale = False
    many = torch.randn(100, 48) * torch.rand(100, 1) * 10
    with torch.inference_mode():
        for rows in (_rows(), _rows()[:1], many):
            assert torch.equal(layer(rows), anchored(rows))


def test_an_engine_without_the_fixed_scale_product_keeps_rows_independent(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.quantized, "engine", "qnnpack")  # ARM's engine
    linear, layer = _layer()
    rows = _rows()
    with torch.inference_mode():
        together = layer(rows)
        alone = torch.cat([layer(rows[row:row + 1]) for row in range(len(rows))])
        want = linear(rows)
    assert not layer.fixed_scale and torch.equal(together, alone)
    assert torch.nn.functional.cosine_similarity(together[[0, 1, 2, 4, 5]], want[[0, 1, 2, 4, 5]]).min() > 0.999
