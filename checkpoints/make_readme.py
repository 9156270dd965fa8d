"""Write checkpoints/README.md from the metadata inside the checkpoints.

Every ``*.safetensors`` here was written by ``training.save_model`` with its recipe
(command, data, steps, seed, hardware, wall time) and its measured metrics; this script
only lays them out as tables, so the README cannot drift from the files.

    python checkpoints/make_readme.py
"""

from __future__ import annotations

from pathlib import Path

from nstcourse.files import atomic_path
from nstcourse.superres import checkpoint_info, checkpoint_scales

HERE = Path(__file__).resolve().parent

INTRO = """# Course checkpoints

Models trained by this project's own code (`nstcourse train-sr`, recipes in
`nstcourse/sr_recipes.py`), stored as safetensors; the recipe and the measured metrics
are inside each file (`nstcourse.superres.checkpoint_info(path)`) and laid out below by
`python checkpoints/make_readme.py`. `bash checkpoints/train_sr.sh` retrains them all
(`STEPS_SCALE=10` for the longer runs a GPU affords). Metrics: Set5, the papers'
protocol (MATLAB-bicubic degradation, PSNR/SSIM on Y, an s-pixel shave), bicubic beside.

These were trained on a shared 2-core CPU in one session, with far smaller budgets than
the papers (SRCNN: ~10^8 back-propagations; VDSR: 80 epochs of 291 images at batch 64;
SRResNet: 10^6 updates on ImageNet); `benchmarks/sr_table.py` puts them beside the
papers' numbers and the data pack's reference checkpoints.
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


def main() -> None:
    rows, metrics = [], []
    for path in sorted(HERE.glob("*.safetensors")):
        row, rows_of_metrics = describe(path)
        rows.append(row)
        metrics.extend(rows_of_metrics)
    text = "\n".join(
        [
            INTRO,
            "## Recipes",
            "",
            "| file | model | command | data | steps | seed | hardware | wall time |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "## Metrics (PSNR-Y dB / SSIM-Y)",
            "",
            "| file | set | scale | model | bicubic |",
            "|---|---|---|---|---|",
            *metrics,
            "",
        ]
    )
    with atomic_path(HERE / "README.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {HERE / 'README.md'} ({len(rows)} checkpoints)")


if __name__ == "__main__":
    main()
