"""vem-plugins adapter for https://github.com/SJLeo/DMAD (pinned at f85989c): VEM in DMAD's
co-attention distillation.

Use::

    pip install -e examples/dmad    # registers the adapter
    vem-plugins install dmad        # the pin, patched, in third_party/dmad
    cd third_party/dmad
    python prune.py <the flags of scripts/pix2pix/edges2shoes/finetune.sh> --vem

What gains ``--vem``: the pix2pix models, ``Pix2PixModel`` (U-Net, 256 px) and
``MobilePix2PixModel`` (ResNet), wherever they train — the distillation stage ``prune.py
--finetune`` (the paper's co-attention distillation from ``--pretrain_path``) and plain
``train.py --model pix2pix|mobilepix2pix``. t is the paired target ``real_B``, as in the VEM
paper for paired data; the MI term joins ``loss_G`` before its ``backward()``. The mask search
(``train.py --mask``) and the CycleGAN models are not patched: ``--vem`` does nothing there.
The terms appear in DMAD's loss log (console and ``logger.log``) as ``G_mi``,
``G_energy_gap``, ``G_ebm_loss`` and ``G_mi_skipped``. The estimator is saved with every
``save_models`` as ``<checkpoints_dir>/<name>/latest_vem.pth`` (DMAD deletes its per-epoch
``checkpoints/`` folder at the end); resume it with ``--restore_vem_path``. Without ``--vem``
DMAD trains, logs, profiles and saves exactly as before.

Compatibility (``01-compat.patch``, :mod:`vem_dmad.compat`): at the pin, ``options/options.py``
defines ``--unmask_last_upconv`` twice and no entry point starts on any Python; the repeat is
ignored. Evaluation (FID, mIoU) needs the FID Inception weights
(``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), the dataset's
``real_stat_B.npz`` (DMAD's README links) or the DRN model; when one is missing the evaluation
is skipped with a message naming it (logged as nan) instead of stopping training, and the new
``--no_fid`` skips it on purpose. Left as upstream has them: the ``--model mobilepix2pix`` and
CycleGAN ``prune.py`` paths read an option ``--threshold`` that DMAD never defines, and
``train.py`` divides by zero on datasets of fewer than about 200 images per run.
"""
import json
from pathlib import Path

from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter, Smoke

HERE = Path(__file__).parent
PATCHES = HERE / "patches"
# DMAD's pix2pix recipe (scripts/pix2pix/edges2shoes/finetune.sh) shrunk: its U-Net needs 256 px;
# two iterations of batch 1 on CPU, evaluation off
_TINY = ("ARGS='--dataroot {data} --model pix2pix --mask --gpu_ids -1 --ngf 4 --pretrain_ngf 4 "
         "--gan_mode hinge --load_size 256 --no_flip --batch_size 1 --num_threads 0 "
         "--display_id -1 --no_html --print_freq 1 --n_epochs 1 --n_epochs_decay 0 --no_fid'")

ADAPTER = Adapter(
    name="dmad",
    url="https://github.com/SJLeo/DMAD",
    commit="f85989c9933f0369bae7e9e325c915dd6e83b707",
    # the patch series, applied in file-name order (e.g. 01-compat.patch, 02-vem.patch);
    # `vem-plugins refresh dmad` writes these files from your edits of the checkout
    patches=tuple(sorted(PATCHES.glob("*.patch"))),
    # sha256 at the pin of every upstream file a patch touches; refresh keeps this file current
    file_hashes=json.loads((PATCHES / "file_hashes.json").read_text()),
    # files of ours that upstream loads by name: path in the checkout -> source file, e.g.
    # {"models/vem_model.py": HERE / "files" / "models" / "vem_model.py"}
    added_files={},
    # pip names of what upstream imports on today's stack (vem-plugins check imports them)
    requirements=("scipy", "tqdm", "thop", "opencv-python-headless", "dominate"),
    # upstream scripts that gain --vem
    entry_points=("prune.py", "train.py"),
    # large upstream files that may be left out (install --skip-assets): path -> what it disables
    assets={},
    # random stand-in checkpoints (a mask-search model, a pretrained teacher), then DMAD's own
    # distillation stage for two iterations
    smoke=Smoke(dataset="aligned", size=256, count=2, log="{out}/finetune/logger.log",
                command=("bash", "-c", "set -e; " + _TINY + "; {python} -c \"from vem_dmad import "
                         "stand_ins; stand_ins.write('{out}', '$ARGS')\"; {python} prune.py $ARGS "
                         "--checkpoints_dir {out} --name finetune --finetune "
                         "--load_path {out}/stand_ins/mask/model_0.pth "
                         "--pretrain_path {out}/stand_ins/teacher/model_0.pth "
                         "--lambda_attention_distill 10 --lambda_discriminator_distill 1e-4 "
                         "--vem --ebm_width 8 --ebm_blocks 2 --ebm_steps 2")),
    version="0.1.0",
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
