"""oldschool.hub: the published-VAE loader, on files shaped like the published ones.

The files on the Hub cannot be fetched here, so each test writes a safetensors file with the
published file's key names, shapes and dtypes and random values, into a Hugging Face cache
laid out as the Hub client lays it out, and loads it through ``hub.load_published_vae``: the
code path a Colab cell takes after its download. The key names and shapes come from diffusers'
own ``AutoencoderKL`` built (on the meta device) from the published ``vae/config.json``
settings below, not from our presets, so a preset or key-map slip fails here.
"""

import pytest
import torch

from oldschool import autoencoder_kl, checkpoints, hub

diffusers = pytest.importorskip("diffusers")
safetensors_torch = pytest.importorskip("safetensors.torch")

KL_F8 = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    norm_num_groups=32,
)
# name -> (published config.json settings, dtype of the published file, published parameter count).
# stabilityai/sdxl-vae's file is float32 (335 MB = 4 bytes x 83.65 M); FLUX.1-schnell's
# vae/diffusion_pytorch_model.safetensors is bf16 (168 MB = 2 bytes x 83.82 M).
PUBLISHED = {
    "sdxl": (
        dict(KL_F8, latent_channels=4, scaling_factor=0.13025),
        torch.float32,
        83_653_863,
    ),
    "flux": (
        dict(
            KL_F8,
            latent_channels=16,
            use_quant_conv=False,
            use_post_quant_conv=False,
            scaling_factor=0.3611,
            shift_factor=0.1159,
        ),
        torch.bfloat16,
        83_819_683,
    ),
}
REVISION = "0123456789abcdef0123456789abcdef01234567"


def published_state_dict(name, seed=0):
    """Random tensors under the published file's key names, shapes and dtype."""
    settings, dtype, _ = PUBLISHED[name]
    with torch.device("meta"):
        reference = diffusers.AutoencoderKL(**settings)
    g = torch.Generator().manual_seed(seed)
    return {
        key: (0.02 * torch.randn(tensor.shape, generator=g)).to(dtype)
        for key, tensor in reference.state_dict().items()
    }


def write_to_cache(cache, name, state_dict):
    """Save ``state_dict`` where huggingface_hub's cache keeps the published file of ``name``."""
    repo, filename, _ = hub.PUBLISHED_VAES[name]
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)
    path = folder / "snapshots" / REVISION / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors_torch.save_file(state_dict, str(path))
    return path


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be fetched
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_a_published_layout_file_loads_with_every_weight_in_place(name, hf_cache):
    settings, dtype, count = PUBLISHED[name]
    state = published_state_dict(name)
    assert (
        sum(t.numel() for t in state.values()) == count
    )  # the layout is the published one
    assert {t.dtype for t in state.values()} == {dtype}
    write_to_cache(hf_cache, name, state)

    model = hub.load_published_vae(name)
    ours = model.state_dict()
    for (
        key,
        tensor,
    ) in state.items():  # each published tensor sits, unchanged, under its renamed key
        mine = ours[checkpoints.rename_key(key, autoencoder_kl.DIFFUSERS_KEY_MAP)]
        assert mine.dtype == torch.float32 and torch.equal(mine, tensor.float()), key
    assert not any(p.is_meta for p in model.parameters())
    assert model.scaling_factor == settings["scaling_factor"]
    assert model.shift_factor == settings.get("shift_factor", 0.0)


def test_the_loaded_model_computes_as_diffusers_does_with_the_same_weights(hf_cache):
    state = published_state_dict("flux", seed=1)
    write_to_cache(hf_cache, "flux", state)
    model = hub.load_published_vae("flux")
    theirs = diffusers.AutoencoderKL(**PUBLISHED["flux"][0])
    theirs.load_state_dict({k: v.float() for k, v in state.items()})
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        q = model.encode(x)
        mean_theirs = theirs.eval().encode(x).latent_dist.mean
        assert q.mean.dtype == torch.float32
        assert torch.allclose(q.mean, mean_theirs, atol=1e-4, rtol=1e-4)
        assert torch.allclose(
            model.decode(q.mean),
            theirs.decode(mean_theirs).sample,
            atol=1e-4,
            rtol=1e-4,
        )


def test_a_renamed_key_or_a_wrong_shape_fails_by_name(hf_cache):
    state = published_state_dict("sdxl")
    key = "decoder.mid_block.attentions.0.to_q.weight"
    state["decoder.mid_block.attentions.0.q_proj.weight"] = state.pop(key)
    write_to_cache(hf_cache, "sdxl", state)
    with pytest.raises(
        ValueError, match=r"missing \(1\): decoder\.mid\.attention\.to_q\.weight"
    ):
        hub.load_published_vae("sdxl")

    state = published_state_dict(
        "flux"
    )  # a 4-channel decoder input in the 16-channel model
    state["decoder.conv_in.weight"] = state["decoder.conv_in.weight"][
        :, :4
    ].contiguous()
    write_to_cache(hf_cache, "flux", state)
    with pytest.raises(ValueError, match="shape mismatch"):
        hub.load_published_vae("flux")


def test_not_cached_and_offline_says_why(hf_cache):
    assert hub.cached_file("sdxl") is None
    with pytest.raises(
        RuntimeError, match="cannot download the sdxl VAE: HF_HUB_OFFLINE is set"
    ):
        hub.load_published_vae("sdxl")


def test_published_weights_are_not_fetched_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.why_offline() == "HF_HUB_OFFLINE is set"
    with pytest.raises(
        RuntimeError, match="cannot download the sdxl VAE: HF_HUB_OFFLINE is set"
    ):
        hub.load_published_vae("sdxl")
    with pytest.raises(ValueError, match="name must be one of .*got 'sd9'"):
        hub.load_published_vae("sd9")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    reason = hub.why_offline(
        host="host.invalid", timeout=1.0
    )  # a name that never resolves
    assert reason is not None and "host.invalid" in reason
