"""VEM inside CAT's inception distiller, reached without editing CAT's distiller files.

CAT's ``distillers/*.py`` grant no licence to modify them, so ``02-vem.patch`` only appends to
``options/distill_options.py`` (imported by ``distill.py`` before the distiller is built) ::

    from vem_plugins.adapters.cat.glue import install as _vem_plugins_install  # vem-plugins
    _vem_plugins_install()

and :func:`install` wraps four methods of ``distillers.inception_distiller.InceptionDistiller``
with the glue GAN-Compression's adapter uses (:mod:`~vem_plugins.adapters.gan_compression.glue`):

* ``modify_commandline_options``: the ``--vem``/``--mi``/``--lambda_mi``/``--ebm_*`` flags and
  ``--restore_vem_path`` (only for ``--distiller inception``; the SPADE distiller is not wired);
* ``__init__``: the runtime, restored from ``--restore_vem_path`` when given. The energy model
  sees images, so CAT's pruning (``shrink``, which replaces the student, ``optimizers`` and
  ``schedulers`` after ``__init__``) leaves it alone, and its optimiser lives inside it, outside
  upstream's lists;
* ``backward_G``: ``optimize_parameters`` calls ``optimizer_G.zero_grad()`` right before it, so the
  EBM step and the student's MI term happen inside it: the term is back-propagated first (keeping
  the student's graph), then upstream's own loss; the gradients add up as if the term were part of
  upstream's sum. t is ``real_B`` for aligned (pix2pix) data, the detached ``Tfake_B`` otherwise;
* ``save_networks``: ``<epoch>_vem.pth`` beside upstream's checkpoints.

The student CAT profiles (MACs), counts, saves and exports to ONNX is ``netG_student`` alone.
"""
from __future__ import annotations

import importlib

from vem_plugins.adapters.gan_compression import glue
from vem_plugins.authoring.compat import replace_once


def install() -> None:
    """Wire vem-plugins into CAT's ``InceptionDistiller`` (called from options/distill_options.py)."""
    cls = importlib.import_module("distillers.inception_distiller").InceptionDistiller

    def modify_commandline_options(setter):
        def wrapper(parser, is_train=True):
            return glue.add_options(setter(parser, is_train))
        return wrapper

    def init(original):
        def wrapper(self, opt, *args, **kwargs):
            original(self, opt, *args, **kwargs)
            glue.attach(self, opt)
        return wrapper

    def backward_G(original):
        def wrapper(self, *args, **kwargs):
            term = glue.student_term(self)
            if term is not None:
                term.backward(retain_graph=True)
            return original(self, *args, **kwargs)
        return wrapper

    def save_networks(original):
        def wrapper(self, epoch, *args, **kwargs):
            original(self, epoch, *args, **kwargs)
            glue.save(self, epoch)
        return wrapper

    replace_once(cls, "modify_commandline_options", modify_commandline_options)
    replace_once(cls, "__init__", init)
    replace_once(cls, "backward_G", backward_G)
    replace_once(cls, "save_networks", save_networks)
