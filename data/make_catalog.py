"""Write the ``datasets`` section of ``data/catalog.json`` from the data pack's PROVENANCE.tsv.

Usage (from the checkout)::

    python data/make_catalog.py ../shared/data/PROVENANCE.tsv

Every folder of the data pack that a notebook, command or benchmark reads (SR sets,
BSDS500 photos, horse2zebra) becomes one dataset record: its public source (repository
and commit), the raw-URL base its files are downloaded from, the licence the data pack's
MANIFEST states, and one line per file: [name inside the folder, bytes, sha256, path in
the source repository]. The hand-written ``images`` section is kept as it is, but each
image is checked against PROVENANCE (path, bytes, sha256) so that the two cannot drift.
Weights are not datasets (several are converted files with no public copy).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

CATALOG = Path(__file__).resolve().parent / "catalog.json"
RAW = "https://raw.githubusercontent.com/{repo}/{commit}/"

# (folder, description, licence): descriptions and licences from the data pack's MANIFEST.
DATASETS = (
    ("sr/Set5", "Set5 HR test images (5 PNG)", "research benchmark; licence not stated"),
    ("sr/Set14", "Set14 HR test images (14 PNG)", "research benchmark; licence not stated"),
    (
        "sr/BSD100",
        "BSD100 HR test images (BSDS500 val), cropped to a multiple of 4",
        "Berkeley Segmentation Dataset terms (non-commercial research and education)",
    ),
    (
        "sr/Urban100_subset20",
        "20 of the 100 Urban100 HR images, and the Flickr source list",
        "Flickr photos; per-image licences not recorded",
    ),
    (
        "sr/T91",
        "T91: the 91-image SRCNN training set (BMP)",
        "licence not stated (the source repository's code is MIT)",
    ),
    (
        "photos/bsds500_train",
        "BSDS500 train photos (BSD200), for training feed-forward nets",
        "Berkeley Segmentation Dataset terms (non-commercial research and education)",
    ),
    (
        "photos/bsds500_test",
        "BSDS500 test photos",
        "Berkeley Segmentation Dataset terms (non-commercial research and education)",
    ),
    (
        "unpaired/horse2zebra",
        "CycleGAN horse2zebra: 500 + 500 training images, the whole test sets (256 px JPEG)",
        "ImageNet images: ImageNet terms (non-commercial research) likely apply; not checked",
    ),
)


def read_provenance(path: Path) -> dict[str, dict[str, str]]:
    """PROVENANCE.tsv rows by data-pack path."""
    with open(path, encoding="utf-8", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f, delimiter="\t")}


def dataset_record(folder: str, description: str, licence: str, rows: dict) -> dict:
    """One dataset: its files are the PROVENANCE rows under ``folder``, one source each."""
    mine = sorted((p, row) for p, row in rows.items() if p.startswith(folder + "/"))
    if not mine:
        raise SystemExit(f"{folder}: no file under it in PROVENANCE.tsv")
    sources = {(row["source_repo"], row["source_commit"]) for _, row in mine}
    if len(sources) != 1:
        raise SystemExit(f"{folder}: files from {len(sources)} sources; split the dataset")
    ((repo, commit),) = sources
    return {
        "name": folder,
        "description": description,
        "source": f"{repo} @ {commit[:12]}",
        "licence": licence,
        "url_base": RAW.format(repo=repo, commit=commit),
        "files": [
            [p.removeprefix(folder + "/"), int(row["bytes"]), row["sha256"], row["source_path"]]
            for p, row in mine
        ],
    }


def check_images(images: list[dict], rows: dict) -> None:
    """Stop when a hand-written image entry disagrees with PROVENANCE."""
    for image in images:
        row = rows.get(image["path"])
        if row is None or (int(row["bytes"]), row["sha256"]) != (image["bytes"], image["sha256"]):
            raise SystemExit(f"catalog image {image['name']} disagrees with PROVENANCE.tsv")


def dump(catalog: dict) -> str:
    """JSON with one line per image field and one line per dataset file (readable diffs)."""
    text = json.dumps({k: v for k, v in catalog.items() if k != "datasets"}, indent=1)
    records = []
    for record in catalog["datasets"]:
        head = json.dumps({k: v for k, v in record.items() if k != "files"}, indent=2)
        files = ",\n".join(f"    {json.dumps(f)}" for f in record["files"])
        records.append(f'{head[:-2]},\n  "files": [\n{files}\n  ]\n }}')
    return text[:-2] + ',\n "datasets": [\n ' + ",\n ".join(records) + "\n ]\n}\n"


def main(provenance: str) -> None:
    rows = read_provenance(Path(provenance))
    catalog = json.loads(CATALOG.read_text(encoding="utf-8"))
    check_images(catalog["images"], rows)
    catalog["datasets"] = [dataset_record(*spec, rows) for spec in DATASETS]
    text = dump(catalog)
    if json.loads(text) != catalog:
        raise SystemExit("internal error: the written JSON does not read back the same")
    CATALOG.write_text(text, encoding="utf-8")
    count = sum(len(d["files"]) for d in catalog["datasets"])
    print(f"{CATALOG}: {len(catalog['images'])} images, {len(DATASETS)} datasets, {count} files")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
