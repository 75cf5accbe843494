"""oldschool.autoencoder_kl: published parameter counts, shapes, the diffusers peer, loading."""

import pytest
import torch

from oldschool import autoencoder_kl as ak
from oldschool.gaussians import DiagonalGaussian

SMALL = dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "preset, expected",
    [
        (ak.sd_vae, 83_653_863),
        (ak.sdxl_vae, 83_653_863),
        (ak.sd3_vae, 83_819_683),
        (ak.flux_vae, 83_819_683),
    ],
)
def test_presets_have_the_published_parameter_counts(preset, expected):
    with torch.device("meta"):
        model = preset()
    assert _n_params(model) == expected
    table = ak.parameter_table(model)
    assert (
        table["total"] == expected == sum(v for k, v in table.items() if k != "total")
    )
    assert model.config.downsampling_factor == 8


def test_presets_carry_their_latent_factors():
    with torch.device("meta"):
        factors = {
            name: (f().scaling_factor, f().shift_factor)
            for name, f in ak.PRESETS.items()
        }
    assert factors == {
        "sd": (0.18215, 0.0),
        "sdxl": (0.13025, 0.0),
        "sd3": (1.5305, 0.0609),
        "flux": (0.3611, 0.1159),
    }


def test_shape_trace_of_a_512_image_on_meta():
    with torch.device("meta"):
        model = ak.sd3_vae()
        trace = dict(ak.shape_trace(model, torch.empty(1, 3, 512, 512)))
    assert trace["encoder.conv_out"] == (
        1,
        32,
        64,
        64,
    )  # mean and logvar, 16 channels each
    assert trace["decoder.conv_in"] == (1, 512, 64, 64)
    assert trace["decoder.conv_out"] == (1, 3, 512, 512)
    assert "quant_conv" not in trace


def test_encode_decode_shapes_and_posterior():
    torch.manual_seed(0)
    model = ak.AutoencoderKL(**SMALL, latent_channels=16).eval()
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    q = model.encode(x)
    assert isinstance(q, DiagonalGaussian) and q.mean.shape == (2, 16, 8, 12)
    x_hat, q2 = model(x, generator=torch.Generator().manual_seed(1))
    assert x_hat.shape == x.shape and x_hat.dtype == torch.float32
    assert torch.equal(q2.mean, q.mean)


def test_bad_inputs_are_refused_with_clear_messages():
    model = ak.AutoencoderKL(**SMALL)
    with pytest.raises(ValueError, match="divisible by the downsampling factor 2"):
        model.encode(torch.zeros(1, 3, 15, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.encode(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 4, h, w\)"):
        model.decode(torch.zeros(1, 16, 8, 8))
    with pytest.raises(ValueError, match="not divisible by norm_num_groups"):
        ak.AutoencoderKL(block_out_channels=(30, 64), norm_num_groups=8)


def _diffusers_pair(latent_channels=4, quant=True, seed=0):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(seed)
    theirs = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=latent_channels,
        use_quant_conv=quant,
        use_post_quant_conv=quant,
        **SMALL,
    ).eval()
    with (
        torch.no_grad()
    ):  # random GroupNorm affines too, so every parameter is exercised
        for name, p in theirs.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ours = ak.AutoencoderKL(
        latent_channels=latent_channels,
        use_quant_conv=quant,
        use_post_quant_conv=quant,
        **SMALL,
    )
    ak.load_diffusers_state_dict(ours, theirs.state_dict())
    return ours.eval(), theirs


def _max_rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("latent_channels, quant", [(4, True), (16, False)])
def test_same_outputs_as_diffusers_given_the_same_weights(
    latent_channels, quant, device
):
    ours, theirs = _diffusers_pair(latent_channels, quant)
    ours, theirs = ours.to(device), theirs.to(device)
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).to(device)
    z = torch.randn(2, latent_channels, 16, 16, generator=g).to(device)
    with torch.no_grad():
        q, q_ref = ours.encode(x), theirs.encode(x).latent_dist
        for a, b in (
            (q.mean, q_ref.mean),
            (q.logvar, q_ref.logvar),
            (ours.decode(z), theirs.decode(z).sample),
        ):
            assert _max_rel_err(a, b) <= 1e-5


def test_config_from_diffusers_config_dict():
    diffusers = pytest.importorskip("diffusers")
    theirs = diffusers.AutoencoderKL(
        latent_channels=16,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
        **SMALL,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    cfg = ak.AutoencoderKLConfig.from_diffusers(dict(theirs.config))
    assert (
        cfg.latent_channels == 16
        and cfg.block_out_channels == (32, 64)
        and cfg.shift_factor == 0.1159
    )
    assert _n_params(ak.AutoencoderKL(cfg)) == _n_params(theirs)
    with pytest.raises(ValueError, match="act_fn"):
        ak.AutoencoderKLConfig.from_diffusers({**theirs.config, "act_fn": "relu"})


def test_loading_reports_missing_unexpected_and_mismatched_keys():
    ours, theirs = _diffusers_pair()
    state = dict(theirs.state_dict())
    state.pop("decoder.conv_in.bias")
    state["encoder.extra.weight"] = torch.zeros(1)
    state["quant_conv.weight"] = torch.zeros(8, 8, 3, 3)
    with pytest.raises(ValueError) as info:
        ak.load_diffusers_state_dict(ours, state)
    message = str(info.value)
    assert "missing (1): decoder.conv_in.bias" in message
    assert "unexpected (1): encoder.extra.weight" in message
    assert "quant_conv.weight (8, 8, 3, 3) -> quant_conv.weight (8, 8, 1, 1)" in message


def test_old_attention_key_names_load_too():
    ours, theirs = _diffusers_pair()
    renames = {
        "to_q.": "query.",
        "to_k.": "key.",
        "to_v.": "value.",
        "to_out.0.": "proj_attn.",
    }
    state = {}
    for key, tensor in theirs.state_dict().items():
        for new, old in renames.items():
            key = key.replace(new, old)
        state[key] = tensor
    fresh = ak.AutoencoderKL(**SMALL)
    ak.load_diffusers_state_dict(fresh, state)
    for (name, a), b in zip(fresh.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


def test_load_from_a_safetensors_file_into_a_meta_model(tmp_path):
    from safetensors.torch import save_file

    ours, theirs = _diffusers_pair(16, quant=False)
    path = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(path))
    with torch.device("meta"):
        model = ak.AutoencoderKL(
            latent_channels=16, use_quant_conv=False, use_post_quant_conv=False, **SMALL
        )
    ak.load_diffusers_file(model, path)
    assert not any(p.is_meta for p in model.parameters())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.eval().encode(x).mean, ours.encode(x).mean)


def test_small_vae_keeps_the_default_init_unless_told():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(0)
        narrow = ak.small_vae(16, initial_logvar=-6.0).encode(x).logvar.mean().item()
        torch.manual_seed(0)
        default = ak.small_vae(16).encode(x).logvar
        torch.manual_seed(0)
        explicit = ak.small_vae(16, initial_logvar=None).encode(x).logvar
    assert abs(narrow + 6.0) < 1.0 and abs(default.mean().item()) < 1.0
    assert torch.equal(default, explicit)  # the default is PyTorch's initialization


def test_the_model_and_a_published_preset_run_on_meta():
    """encode, the posterior's draw and decode run with no storage, checks included."""
    meta = torch.device("meta")
    with meta:
        small, sdxl = ak.small_vae(16), ak.sdxl_vae()
    x_hat, q = small(torch.empty(2, 3, 16, 16, device=meta))
    assert x_hat.device.type == "meta" and q.mean.shape == (2, 16, 4, 4)
    z = sdxl.encode(torch.empty(1, 3, 64, 64, device=meta)).mean
    assert sdxl.decode(z).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, H, W\)"):
        sdxl.encode(torch.empty(1, 4, 64, 64, device=meta))  # the door works on meta
