"""Published VAE weights from the Hugging Face Hub: from its cache, or fetched online.

The book build runs offline; these functions are for Colab (tests load random-valued
files with the published key names, shapes and dtypes through the same code). Each one
either returns what was asked for or raises a RuntimeError whose message says why not
(no network, the Hub disabled by ``HF_HUB_OFFLINE``, ``huggingface_hub`` missing, a
gated repository), after at most a short connection attempt: nothing hangs.
"""

import os
import socket

import torch

from . import autoencoder_kl, checks

HUB_HOST = "huggingface.co"

# name -> (repository, file in diffusers' key layout, preset); neither is gated
PUBLISHED_VAES = {
    "sdxl": (
        "stabilityai/sdxl-vae",
        "diffusion_pytorch_model.safetensors",
        autoencoder_kl.sdxl_vae,
    ),
    "flux": (
        "black-forest-labs/FLUX.1-schnell",
        "vae/diffusion_pytorch_model.safetensors",
        autoencoder_kl.flux_vae,
    ),
}


def why_offline(host=HUB_HOST, timeout=3.0):
    """None when ``host`` answers on port 443 within ``timeout`` s, else why not."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        return f"{host} is not reachable ({error})"
    return None


def cached_file(name):
    """The path of a published VAE's file if the Hugging Face cache holds it, else None.

    Looks only in the cache (``HF_HUB_CACHE`` / ``HF_HOME``), never on the network.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    repo, filename, _ = PUBLISHED_VAES[name]
    try:
        return hf_hub_download(repo, filename, local_files_only=True)
    except Exception:  # not cached: LocalEntryNotFoundError and kin
        return None


def load_vae_file(name, path, device="cpu"):
    """The published VAE ``name`` (``PUBLISHED_VAES``) with the weights in ``path``.

    The preset is built on the "meta" device and receives the safetensors file's tensors
    directly, so the weights are held in memory once. Tensors stored in bf16 or float16
    (FLUX ships bf16) are converted to float32: the model is float32, and autocast is
    the caller's choice.
    Key names and shapes are checked against the preset (``checkpoints.load_renamed``).
    """
    checks.one_of(name, "name", PUBLISHED_VAES)
    from safetensors.torch import load_file

    _, _, preset = PUBLISHED_VAES[name]
    with torch.device("meta"):
        model = preset()
    state_dict = {
        key: tensor.float()
        for key, tensor in load_file(str(path), device=str(device)).items()
    }
    autoencoder_kl.load_diffusers_state_dict(model, state_dict)
    return model.eval()


def load_published_vae(name, device="cpu"):
    """A published VAE (``PUBLISHED_VAES``), an ``AutoencoderKL``: cached or fetched.

    Raises RuntimeError saying why when the file is not cached and cannot be downloaded.
    """
    checks.one_of(name, "name", PUBLISHED_VAES)
    path = cached_file(name)
    if path is None:
        reason = why_offline()
        if reason is not None:
            raise RuntimeError(f"cannot download the {name} VAE: {reason}")
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as error:
            raise RuntimeError(
                "huggingface_hub is not installed (pip install huggingface_hub)"
            ) from error
        repo, filename, _ = PUBLISHED_VAES[name]
        try:
            path = hf_hub_download(repo, filename)
        except Exception as error:  # network, authentication, a missing file
            raise RuntimeError(
                f"downloading {repo}/{filename} failed: {error}"
            ) from error
    return load_vae_file(name, path, device)
