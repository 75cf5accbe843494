"""oldschool: the code behind *Old-School Generative Models: AE, VAE and Diffusion, derived and run*.

One idea per module; chapters import the modules they need, e.g.
``from oldschool import gaussians, autoencoders, train``.
"""

__version__ = "0.1.0"
