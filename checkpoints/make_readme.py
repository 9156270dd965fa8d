"""Write checkpoints/README.md from the metadata inside the checkpoints.

Every ``*.safetensors`` here was written by ``training.save_model`` with its recipe
(command, data, steps, seed, hardware, wall time) and its measured metrics; this script
only lays them out as tables, so the README cannot drift from the files.

    python checkpoints/make_readme.py
"""

from __future__ import annotations

from pathlib import Path

from nstcourse.checkpoints import checkpoint_info
from nstcourse.files import atomic_path
from nstcourse.sr.models import checkpoint_scales
from nstcourse.style.recipes import RECIPES as STYLE_MODELS

HERE = Path(__file__).resolve().parent

INTRO = """# Course checkpoints

Models trained by this project's own code, stored as safetensors; the recipe and the
measured metrics are inside each file (`nstcourse.sr.models.checkpoint_info(path)`) and
laid out below by `python checkpoints/make_readme.py`.

- Super-resolution: `nstcourse train-sr`, recipes in `nstcourse/sr/recipes.py`;
  `bash checkpoints/train_sr.sh` retrains them all (`STEPS_SCALE=10` for the longer runs
  a GPU affords). Metrics: Set5, the papers' protocol (MATLAB-bicubic degradation,
  PSNR/SSIM on Y, an s-pixel shave), bicubic beside. The perceptual nets (Johnson et al.'s
  feature-loss SR) were started as `--steps 6000` and changed at step 2,029 (×4, to 12,000)
  and 2,032 (×8, to 4,000); the ×4 run was extended again at step 12,300 (to 20,000) and
  at 20,000 (to 30,000), its first 12,000 steps on one thread beside another job and most
  of the rest on two. Their learning rate is constant, so a run's first steps are the same
  whatever its length (`docs/experiments.md`).
- Feed-forward style: `nstcourse train-style`, recipes in `nstcourse/style/recipes.py`;
  `bash checkpoints/train_style.sh` retrains them all. Metrics: the training losses
  (weighted terms, mean of the last 100 steps) and the time to stylise one 512×512 image,
  taken when the file was written, on a shared machine while other training ran (so only
  a rough figure; `benchmarks/fast_style_speed.py` measures speed in one quiet run).
  `adain.safetensors` also carries the VGG-19 layers it was trained behind (`conv1_1` …
  `conv3_1` of the Caffe-convention file named, with its sha256, in its `vgg` metadata),
  so it gives the same pictures whichever VGG-19 is installed. The Johnson nets were
  trained with Adam at 5e-4, half the paper's rate: at 1e-3 they painted white blobs on
  bright, flat areas (`benchmarks/blob_causes.py`, `docs/experiments.md`). The first 500
  steps of the wave, scream and udnie runs are that script's `lr_half` runs (the same
  recipe and seed), whose work folders the command shown continued to 1,000 steps. The
  CIN net was trained at 1.25e-4, a quarter of that: at 5e-4 it painted flat patches of
  clipped colour (green, red, black). Its first 1,200 steps are `blob_causes.py --style
  cin`'s `lr_quarter` run, continued to 2,400 by the command shown; the wall time counts
  both.
- Unpaired translation: `nstcourse train-cyclegan`, recipe in
  `nstcourse/translate/recipes.py`; `bash checkpoints/train_cyclegan.sh` retrains it.
  Metrics: on the held-out test photos at the training scale, the share of translated
  images a horse/zebra probe (a linear classifier on VGG-19 feature statistics, fit on
  the training photos) calls the target domain, beside the same share of real photos of
  each domain (floor and ceiling); the cycle error ‖F(G(x)) − x‖₁ per pixel; the spread
  of G's outputs over the spread of its inputs (≈ 0: mode collapse).
  `nstcourse/translate/metrics.py` says what each one misses. The CycleGAN run was
  started as `--steps 16000` and shortened to 12,000 at step 4,200, before either
  schedule's decay began, so its first 4,200 steps are those of a 12,000-step run; it was
  resumed six times, part of it on one thread while other jobs shared the machine, which
  the wall time includes (`docs/experiments.md`).

These were trained on a shared 2-core CPU, with far smaller budgets than the papers
(SRCNN: ~10^8 back-propagations; VDSR: 80 epochs of 291 images at batch 64; SRResNet:
10^6 updates on ImageNet); `benchmarks/sr_table.py` puts them beside the papers' numbers
and the data pack's reference checkpoints. Runs with `--precision auto` trained in
bfloat16 mixed precision, which this CPU (AMX) runs natively.
"""


def describe(path: Path) -> tuple[str, list[str]]:
    """(one row of the recipe table, rows of the metrics table) for one checkpoint."""
    info = checkpoint_info(path)
    recipe = info["recipe"]
    scales = ", ".join(f"×{s}" for s in checkpoint_scales(info))
    data = " + ".join(recipe["data"]) + f" ({recipe['data_images']} images)"
    row = (
        f"| `{path.name}` | {info['model']} ({info['class']}) {scales} | "
        f"`{recipe['command']}` | {data} | "
        f"{recipe['steps']} × batch {recipe['batch_size']} | {recipe['seed']} | "
        f"{recipe['device']}, torch {recipe['torch']} | {recipe['wall_time_s'] / 60:.1f} min |"
    )
    metrics = []
    for set_name, by_scale in info["metrics"].items():
        if set_name == "train":
            continue
        for scale, m in by_scale.items():
            metrics.append(
                f"| `{path.name}` | {set_name} | {scale} | {m['psnr_y']:.2f} / {m['ssim_y']:.4f}"
                f" | {m['bicubic_psnr_y']:.2f} / {m['bicubic_ssim_y']:.4f} |"
            )
    return row, metrics


def describe_style(path: Path) -> tuple[str, str]:
    """(one row of the style recipe table, one row of its metrics table)."""
    info = checkpoint_info(path)
    recipe = info["recipe"]
    styles = ", ".join(Path(style).stem for style in recipe["styles"])
    images = recipe["max_images"] or "all"
    row = (
        f"| `{path.name}` | {info['model']} ({info['class']}) | {styles} | "
        f"`{recipe['command']}` | {recipe['data']} ({images} images), {recipe['crop']} px crops "
        f"| {recipe['steps']} × batch {recipe['batch_size']}, Adam {recipe['lr']:g} | "
        f"{recipe['seed']} | {recipe['device']}, torch {recipe['torch']} | "
        f"{recipe['wall_time_s'] / 60:.1f} min |"
    )
    train = info["metrics"]["train"]
    terms = ", ".join(
        f"{key.removesuffix('_mean_last_100')} {value:.4g}"
        for key, value in train.items()
        if key != "loss_mean_last_100"
    )
    speed = info["metrics"]["speed"]
    ms = speed[f"ms_per_{recipe['time_size']}px_image"]
    metrics = (
        f"| `{path.name}` | {train['loss_mean_last_100']:.4g} | {terms} | "
        f"{ms:.0f} ms ({speed['device']}) |"
    )
    return row, metrics


def describe_translation(path: Path) -> tuple[str, list[str]]:
    """(one row of the translation recipe table, rows of its metrics table: the test
    scores at every validation and at the end)."""
    info = checkpoint_info(path)
    recipe = info["recipe"]
    a, b = (f"{recipe['domain_' + k]} ({recipe['images_' + k]})" for k in "ab")
    data = f"{a} ↔ {b}"
    net = f"ResNet-{recipe['blocks']}, ngf {recipe['ngf']}, ndf {recipe['ndf']}"
    row = (
        f"| `{path.name}` | {info['model']} ({info['class']}), {net} | `{recipe['command']}` | "
        f"{data}, {recipe['crop']} px crops | {recipe['steps']} × batch {recipe['batch_size']} "
        f"({recipe['constant_steps']} constant + {recipe['decay_steps']} decaying) | "
        f"{recipe['seed']} | {recipe['device']} ({recipe['precision']}), torch {recipe['torch']} "
        f"| {recipe['wall_time_s'] / 3600:.2f} h |"
    )
    ref = recipe["probe_reference"]
    validations = info["metrics"]["train"]["validation"]
    metrics = [
        f"| `{path.name}` | {v['step']} | {v['b_share_of_G']:.2f} | {ref['b_share_of_real_a']:.2f}"
        f" / {ref['b_share_of_real_b']:.2f} | {v['a_share_of_F']:.2f} | {v['cycle_l1_a']:.3f} / "
        f"{v['cycle_l1_b']:.3f} | {v['spread_ratio_G']:.2f} |"
        for v in validations
    ]
    return row, metrics


def main() -> None:
    rows, metrics, style_rows, style_metrics = [], [], [], []
    translation_rows, translation_metrics = [], []
    for path in sorted(HERE.glob("*.safetensors")):
        if checkpoint_info(path)["model"] == "cyclegan":
            row, rows_of_metrics = describe_translation(path)
            translation_rows.append(row)
            translation_metrics.extend(rows_of_metrics)
        elif checkpoint_info(path)["model"] in STYLE_MODELS:
            row, metrics_row = describe_style(path)
            style_rows.append(row)
            style_metrics.append(metrics_row)
        else:
            row, rows_of_metrics = describe(path)
            rows.append(row)
            metrics.extend(rows_of_metrics)
    text = "\n".join(
        [
            INTRO,
            "## Super-resolution recipes",
            "",
            "| file | model | command | data | steps | seed | hardware | wall time |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "## Super-resolution metrics (PSNR-Y dB / SSIM-Y)",
            "",
            "| file | set | scale | model | bicubic |",
            "|---|---|---|---|---|",
            *metrics,
            "",
            "## Feed-forward style recipes",
            "",
            "| file | model | styles | command | data | steps, optimiser | seed | hardware "
            "| wall time |",
            "|---|---|---|---|---|---|---|---|---|",
            *style_rows,
            "",
            "## Feed-forward style metrics",
            "",
            "| file | final loss | weighted terms | time per image (512×512) |",
            "|---|---|---|---|",
            *style_metrics,
            "",
            "## Unpaired translation recipes",
            "",
            "| file | model | command | data | steps | seed | hardware | wall time |",
            "|---|---|---|---|---|---|---|---|",
            *translation_rows,
            "",
            "## Unpaired translation metrics (test photos, during training and at the end)",
            "",
            "| file | step | B share of G(test A) | floor / ceiling (real A / real B) "
            "| A share of F(test B) | cycle L1 A / B | spread ratio of G |",
            "|---|---|---|---|---|---|---|",
            *translation_metrics,
            "",
        ]
    )
    with atomic_path(HERE / "README.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    count = len(rows) + len(style_rows) + len(translation_rows)
    print(f"wrote {HERE / 'README.md'} ({count} checkpoints)")


if __name__ == "__main__":
    main()
