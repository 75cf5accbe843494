"""Published VAE weights from the Hugging Face Hub, fetched only when a network is there.

The book build runs offline; these functions are for Colab. Each one either returns what
was asked for or raises a RuntimeError whose message says why not (no network, the Hub
disabled by ``HF_HUB_OFFLINE``, ``huggingface_hub`` missing, a gated repository), after
at most a short connection attempt: nothing hangs.
"""

import os
import socket

import torch

from . import autoencoder_kl

HUB_HOST = "huggingface.co"

# name -> (repository, file in diffusers' key layout, preset). Neither repository is gated.
PUBLISHED_VAES = {
    "sdxl": ("stabilityai/sdxl-vae", "diffusion_pytorch_model.safetensors", autoencoder_kl.sdxl_vae),
    "flux": ("black-forest-labs/FLUX.1-schnell", "vae/diffusion_pytorch_model.safetensors", autoencoder_kl.flux_vae),
}


def why_offline(host=HUB_HOST, timeout=3.0):
    """None when ``host`` answers on port 443 within ``timeout`` seconds, else the reason it does not."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        return f"{host} is not reachable ({error})"
    return None


def load_published_vae(name, device="cpu"):
    """Download a published VAE (``PUBLISHED_VAES``) and load it into oldschool's ``AutoencoderKL``.

    The preset is built on the "meta" device and receives the downloaded tensors directly,
    so the weights are held in memory once. Raises RuntimeError saying why when it cannot.
    """
    if name not in PUBLISHED_VAES:
        raise ValueError(f"unknown VAE {name!r}; known: {sorted(PUBLISHED_VAES)}")
    reason = why_offline()
    if reason is not None:
        raise RuntimeError(f"cannot download the {name} VAE: {reason}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:
        raise RuntimeError("huggingface_hub is not installed (pip install huggingface_hub)") from error
    repo, filename, preset = PUBLISHED_VAES[name]
    try:
        path = hf_hub_download(repo, filename)
    except Exception as error:  # network, authentication and missing-file errors all end here
        raise RuntimeError(f"downloading {repo}/{filename} failed: {error}") from error
    from safetensors.torch import load_file

    with torch.device("meta"):
        model = preset()
    state_dict = {key: tensor.float() for key, tensor in load_file(path, device=str(device)).items()}  # some ship bf16
    autoencoder_kl.load_diffusers_state_dict(model, state_dict)
    return model.eval()
