"""python-tuf's client (ngclient.Updater) reading a repository that
attune-tuf's publisher made: the other direction of the interop check.

Usage: python_tuf_client.py BASE_URL ROOT_JSON TARGET OUT_FILE
BASE_URL serves metadata/ and targets/. Exits non-zero if python-tuf refuses.
"""

import os
import shutil
import sys
import tempfile

from tuf.ngclient import Updater


def main(base: str, root: str, target: str, out: str) -> None:
    work = tempfile.mkdtemp()
    try:
        meta = os.path.join(work, "metadata")
        os.makedirs(meta)
        with open(root, "rb") as f:
            trusted_root = f.read()
        updater = Updater(
            metadata_dir=meta,
            metadata_base_url=f"{base}/metadata/",
            target_base_url=f"{base}/targets/",
            target_dir=work,
            bootstrap=trusted_root,
        )
        updater.refresh()
        info = updater.get_targetinfo(target)
        if info is None:
            sys.exit(f"{target}: not found by python-tuf")
        path = updater.download_target(info, os.path.join(work, "target"))
        shutil.copy(path, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
