"""List every pretrained file the paper runs load: where it goes, its checksum, whether it's there.

``vem-plugins data weights [--verify] [--json]``. The third-party networks (VGG16, the FID
Inception, DRN-D-105, face parsing) come from the one table,
:data:`vem_plugins.authoring.compat.WEIGHTS`; this module adds the teachers the paper runs start
from (GAN Compression's and CAT's official ones, CAGC's StyleGAN2), which upstream loads from
paths its scripts pass, inside the checkout. Nothing is downloaded: the list says where to fetch
each file on a machine with internet access, and ``--verify`` checks the copies a user placed,
because a wrong or truncated download otherwise shows only as a poor FID much later.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from vem_plugins.authoring.compat import DRN_CITYSCAPES, WEIGHTS, Weights
from vem_plugins.commands import places

_HF = "https://huggingface.co/mit-han-lab/gan-compression/resolve/main/"
_CAT_DRIVE = "https://drive.google.com/drive/folders/1WQbqgqwJdVT6Q-8Bs-vp24jJ3v1dgjU9"
_NETS = {"G": ("generator", "--restore_teacher_G_path"), "D": ("discriminator", "--restore_D_path")}


def _gan_compression_teacher(model: str, task: str, net: str, side: str = "") -> Weights:
    """The ``mobile`` teacher ``scripts/<model>/<task>/distill.sh`` distils from: published as
    ``pretrained/<model>/<task>/mobile/latest_net_<net>.pth``, read from the teacher run's log
    folder (CycleGAN's under its ``_A`` name)."""
    file = f"latest_net_{net}{side}.pth"
    what, flag = _NETS[net]
    return Weights(file=file, url=f"{_HF}pretrained/{model}/{task}/mobile/latest_net_{net}.pth",
                   label=f"GAN Compression {task} teacher {net}",
                   purpose=f"the pretrained teacher {what} of scripts/{model}/{task}/distill.sh",
                   location=f"logs/{model}/{task}/mobile/checkpoints/{file}", flag=flag,
                   adapters=("gan-compression",))


def _cat_teacher(script: str, logs: str, file: str) -> Weights:
    """The inception teacher CAT's ``script`` distils from, in CAT's Google Drive folder."""
    net = "G" if "_net_G" in file else "D"
    what, flag = _NETS[net]
    return Weights(file=file, url=_CAT_DRIVE, label=f"CAT {Path(script).parent.name} teacher {net}",
                   purpose=f"the pretrained inception teacher {what} of {script}",
                   location=f"{logs}/inception/teacher/checkpoints/{file}", flag=flag,
                   adapters=("cat",))


def _cat_teachers(script: str, logs: str, files: tuple[str, str]) -> tuple[Weights, ...]:
    return tuple(_cat_teacher(script, logs, file) for file in files)


#: The teachers the paper runs start from (OMGD's and GCC's train online from scratch).
TEACHERS: tuple[Weights, ...] = (
    *(_gan_compression_teacher("cycle_gan", "horse2zebra", net, "_A") for net in "GD"),
    *(_gan_compression_teacher("pix2pix", task, net)
      for task in ("edges2shoes-r", "cityscapes") for net in "GD"),
    *_cat_teachers("scripts/cycle_gan/horse2zebra/train_inception_student_2p6B.sh",
                   "logs/cycle_gan/horse2zebra", ("best_A_net_G_A.pth", "best_A_net_D_A.pth")),
    *_cat_teachers("scripts/cycle_gan/zebra2horse/train_inception_student_2p6B.sh",
                   "logs/cycle_gan/horse2zebra", ("best_B_net_G_B.pth", "best_B_net_D_B.pth")),
    *_cat_teachers("scripts/pix2pix/cityscapes/train_inception_student_5p6B.sh",
                   "logs/pix2pix/cityscapes", ("best_net_G.pth", "best_net_D.pth")),
    *_cat_teachers("scripts/pix2pix/map2sat/train_inception_student_4p6B.sh",
                   "logs/pix2pix/map2sat", ("best_net_G.pth", "best_net_D.pth")),
    Weights(file="256px_full_size.pt",
            url="https://drive.google.com/file/d/1LuOvwRvIV-OXbvsW08LK0nVrEM1tBxoN/view",
            label="StyleGAN2 FFHQ 256 px",
            purpose="CAGC's full-size teacher (rosinality's format), pruned by prune.py --ckpt "
                    "and distilled from by train.py (train_hyperparams.py's teacher)",
            location="Model/full_size_model/256px_full_size.pt", flag="--teacher_ckpt",
            adapters=("cagc",)),
)

#: Every pretrained file of the paper runs: GCC looks for the DRN in its dataset folder.
FILES: tuple[Weights, ...] = (
    *WEIGHTS,
    DRN_CITYSCAPES._replace(location=f"database/cityscapes/{DRN_CITYSCAPES.file}",
                            adapters=("gcc",)),
    *TEACHERS,
)


def add_arguments(parser) -> None:
    parser.add_argument("--verify", action="store_true",
                        help="hash the files that are present and compare them with the "
                             "published checksums (exit status 1 on a mismatch)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    table = [(weights, _rows(weights, args.verify)) for weights in FILES]
    rows = [row for _, rows in table for row in rows]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(table, args.verify)
    return 1 if any(row["state"] == "checksum mismatch" for row in rows) else 0


def verify(path, checksum: str, progress: bool = True) -> tuple[bool, str]:
    """Whether the file at ``path`` matches ``checksum`` (``"sha256:<hex or prefix>"`` or
    ``"git-blob:<sha1>"``), and its actual checksum in the same form; a progress bar on stderr
    (on a terminal) while it hashes, since the files reach half a gigabyte."""
    from tqdm import tqdm

    kind, expected = checksum.split(":", 1)
    size = os.path.getsize(path)
    if kind == "sha256":
        digest = hashlib.sha256()
    elif kind == "git-blob":  # git's object id: the SHA-1 of a header and the content
        digest = hashlib.sha1(b"blob %d\0" % size)
    else:
        raise ValueError(f"unknown checksum kind {kind!r} in {checksum!r}")
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, leave=False,
                                     desc=Path(path).name, file=sys.stderr,
                                     disable=None if progress else True) as bar:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            bar.update(len(chunk))
    actual = digest.hexdigest()
    return actual.startswith(expected.lower()), f"{kind}:{actual}"


def checksum_text(weights: Weights) -> str:
    """The published checksum as the list shows it."""
    if weights.checksum:
        kind, value = weights.checksum.split(":", 1)
        short = kind == "sha256" and len(value) < 64
        return weights.checksum + (f" (the first {len(value)} hex digits: the file's name "
                                   "carries them)" if short else "")
    if weights.url.startswith(_HF):
        return "none recorded here (Hugging Face shows its sha256 on the file's page)"
    return "none published"


def _rows(weights: Weights, check: bool) -> list[dict]:
    """One row per place ``weights`` must be in, with its state there."""
    base = {"file": weights.file, "label": weights.label, "used_by": list(weights.adapters),
            "purpose": weights.purpose, "url": weights.url, "checksum": weights.checksum,
            "flag": weights.flag}
    rows = []
    for adapter, path in _places(weights):
        row = {**base, "adapter": adapter, "path": path, "state": "missing", "actual": None}
        if path is None:
            row.update(path=f"<{adapter} checkout>/{weights.location}", state="no checkout")
        elif os.path.isfile(path):
            row["state"] = "present"
            if check and weights.checksum:
                ok, row["actual"] = verify(path, weights.checksum)
                row["state"] = "verified" if ok else "checksum mismatch"
        rows.append(row)
    return rows


def _places(weights: Weights) -> list[tuple[str | None, str | None]]:
    """(adapter, path) for each installed checkout of each adapter that loads ``weights``
    (path None: that adapter has none); (None, path) for torch's hub cache."""
    if weights.location is None:
        return [(None, weights.path())]

    return [(adapter, weights.path(place) if place else None)
            for adapter in weights.adapters for place in places.checkouts(adapter) or [None]]


def _print(table: list[tuple[Weights, list[dict]]], checked: bool) -> None:

    for weights, rows in table:
        print(f"{weights.file}: {weights.label} ({', '.join(weights.adapters)})")
        print(f"  for       {weights.purpose}")
        print(f"  download  {weights.url}")
        print(f"  checksum  {checksum_text(weights)}")
        for row in rows:
            detail = f": expected {row['checksum']}, got {row['actual']}" \
                if row["state"] == "checksum mismatch" else ""
            print(f"  {row['state']:<17} {places.show(row['path'])}{detail}")
    states = [row["state"] for _, rows in table for row in rows]
    present = sum(s in ("present", "verified", "checksum mismatch") for s in states)
    print(f"{len(states)} places: {present} present ({states.count('verified')} verified, "
          f"{states.count('checksum mismatch')} with a wrong checksum), "
          f"{states.count('missing')} missing, {states.count('no checkout')} in checkouts not "
          f"installed" + ("" if checked else "; --verify checks the checksums"))
