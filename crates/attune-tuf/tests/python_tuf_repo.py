"""A TUF repository made by another implementation (python-tuf's Metadata API),
so attune-tuf's client is checked against metadata it did not write.

Usage: python_tuf_repo.py OUT_DIR
Writes OUT_DIR/metadata/ (1.root.json, root.json, timestamp.json,
N.snapshot.json, N.targets.json, N.packs.json) and OUT_DIR/targets/ with
consistent-snapshot names. Targets: index.json (top-level targets role) and
v1/index.json (delegated to role "packs" for paths v1/*). Prints the SHA-256
of 1.root.json.
"""

import hashlib
import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def main(out: str) -> None:
    meta_dir = os.path.join(out, "metadata")
    targets_dir = os.path.join(out, "targets")
    os.makedirs(os.path.join(targets_dir, "v1"), exist_ok=True)
    os.makedirs(meta_dir, exist_ok=True)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)

    signers = {role: CryptoSigner.generate_ed25519() for role in ["root", "targets", "snapshot", "timestamp", "packs"]}

    files = {
        "index.json": b'{"version": "1.0", "packs": []}\n',
        "v1/index.json": b'{"packs": {"core_utils": {"ref": "core_utils", "version": "1.0.0"}}}\n',
    }
    hashed = {}
    for name, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        hashed[name] = digest
        head, tail = os.path.split(name)
        for fname in (tail, f"{digest}.{tail}"):
            with open(os.path.join(targets_dir, head, fname), "wb") as f:
                f.write(content)

    root = Metadata(Root(expires=expires))
    for role in ["root", "targets", "snapshot", "timestamp"]:
        root.signed.add_key(signers[role].public_key, role)

    targets = Metadata(Targets(expires=expires))
    targets.signed.targets["index.json"] = TargetFile.from_file(
        "index.json", os.path.join(targets_dir, "index.json"), ["sha256"]
    )
    packs_key = signers["packs"].public_key
    targets.signed.delegations = Delegations(
        keys={packs_key.keyid: packs_key},
        roles={"packs": DelegatedRole("packs", [packs_key.keyid], 1, True, paths=["v1/*"])},
    )

    packs = Metadata(Targets(expires=expires))
    packs.signed.targets["v1/index.json"] = TargetFile.from_file(
        "v1/index.json", os.path.join(targets_dir, "v1", "index.json"), ["sha256", "sha512"]
    )

    snapshot = Metadata(Snapshot(expires=expires))
    snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
    snapshot.signed.meta["packs.json"] = MetaFile(version=packs.signed.version)

    timestamp = Metadata(Timestamp(expires=expires))
    timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)

    ser = JSONSerializer(compact=False)
    for md, role, fname in [
        (root, "root", "1.root.json"),
        (targets, "targets", f"{targets.signed.version}.targets.json"),
        (packs, "packs", f"{packs.signed.version}.packs.json"),
        (snapshot, "snapshot", f"{snapshot.signed.version}.snapshot.json"),
        (timestamp, "timestamp", "timestamp.json"),
    ]:
        md.sign(signers[role])
        md.to_file(os.path.join(meta_dir, fname), ser)
    root.to_file(os.path.join(meta_dir, "root.json"), ser)

    with open(os.path.join(meta_dir, "1.root.json"), "rb") as f:
        print(hashlib.sha256(f.read()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1])
