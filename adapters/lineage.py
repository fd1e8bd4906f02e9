"""Compatibility fixes shared by the pix2pix-lineage codebases (OMGD, GAN-Compression, CAT).

They descend from the same pytorch-CycleGAN-and-pix2pix code, so the same lines break on today's
stack in each: checkpoint loaders without ``map_location``, ``scipy.linalg.sqrtm(..., disp=False)``
(removed in SciPy 1.18) in the FID code, and pretrained weights fetched from the network at first
use (named by :mod:`vem_plugins.authoring.compat`'s weights table). Each adapter's ``compat``
module installs these where its upstream looks them up.
"""
import types

import numpy as np
import torch
from torch import nn


def load_network(net, load_path, verbose=True):
    """``utils.util.load_network``, loading on CPU first so GPU checkpoints restore anywhere."""
    if verbose:
        print("Load network at %s" % load_path)
    if isinstance(net, nn.DataParallel):
        net = net.module
    net.load_state_dict(torch.load(load_path, map_location="cpu", weights_only=True))
    return net


def load_optimizer(optimizer, load_path, verbose=True):
    """``utils.util.load_optimizer``; ``load_state_dict`` moves the state to the parameters."""
    if verbose:
        print("Load optimizer at %s" % load_path)
    optimizer.load_state_dict(torch.load(load_path, map_location="cpu", weights_only=True))
    return optimizer


def sqrtm(a, disp=True, blocksize=None):
    """``scipy.linalg.sqrtm`` accepting the ``disp`` argument SciPy 1.18 removes.

    With ``disp=False`` it returns ``(sqrtm, errest)`` as old SciPy did, errest being
    ||X @ X - A||_F^2 / ||A||_F.
    """
    from scipy import linalg
    root = linalg.sqrtm(a)
    if disp:
        return root
    return root, np.linalg.norm(root @ root - a, "fro") ** 2 / np.linalg.norm(a, "fro")


def scipy_linalg() -> types.ModuleType:
    """``scipy.linalg`` as the FID code should see it: SciPy's, with :func:`sqrtm` above."""
    from scipy import linalg
    proxy = types.ModuleType("scipy.linalg")
    proxy.__dict__.update(vars(linalg))
    proxy.sqrtm = sqrtm
    return proxy
