#!/usr/bin/env bash
# Wheels (Python 3.12, x86-64 Linux) that `boltz predict` and foldcp's runner import and the GPU
# image lacks, for bench/throughput.py on the device machine (no package index there).
#
#   bash bench/throughput_payload.sh .payload/tp_whl      # then carry that folder
#
# The GPU image has Python 3.12, torch, numpy, scipy, pandas, pyarrow, pytorch-lightning,
# torchmetrics, einops, tqdm, click, pyyaml, requests, numba, scikit-learn, matplotlib, attrs,
# typing-extensions (the package list of .library/device/KINDS.md). What the predict paths
# import beyond that was read from a trace of every module imported by `boltz predict`,
# `foldcp plan`, `foldcp predict` and bench/throughput.py's own steps (CPU runs, 2026-11-28):
#
#   boltz, einx, frozendict                  the model and `boltz predict` (the earlier carry)
#   rdkit                                    boltz.main, boltz.data.mol (~32 MB: most of it)
#   biopython                                boltz.data.parse.fasta (imported by boltz.main)
#   chembl_structure_pipeline                boltz.data.parse.schema
#   fairscale                                boltz.model.modules.transformers (Boltz-1 code
#                                            that boltz.main imports)
#   gemmi                                    boltz.data.parse.mmcif
#   mashumaro                                boltz.data.types
#   ihm, modelcif                            boltz.data.write.mmcif (the structure writer)
#   jsonschema, jsonschema-specifications,   foldcp.config (config validation)
#   referencing, rpds-py
#
# PyPI has only the source of fairscale 0.4.13, ihm 2.12 and modelcif 1.2 (the versions boltz
# and foldcp pin): they are built here into pure-Python wheels, which install on any Python 3.
# ihm without its optional C extension (a faster mmCIF reader; ihm falls back to Python, and
# the predict paths only write mmCIF).
#
# Left out on purpose: omegaconf (and its source-only antlr4 runtime): the benchmark's
# checkpoint stores training_args as Lightning's AttributeDict, so loading it imports only
# pytorch_lightning; orjson, cffi, wcwidth, jsonpointer, rfc3339-validator: optional imports
# (their importers carry on without them); hydra-core, wandb, dm-tree, types-requests: boltz
# requirements that nothing on these paths imports.
set -euo pipefail
dest=${1:?usage: bash bench/throughput_payload.sh DEST_FOLDER}
mkdir -p "$dest"
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
target="--python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none $plat"
python3 -m pip download -q --no-deps --only-binary=:all: $target -d "$dest" \
    boltz==2.2.1 einx==0.3.0 frozendict==2.5.1 \
    rdkit==2026.9.1 biopython==1.84 chembl_structure_pipeline==1.2.2 gemmi==0.6.5 \
    mashumaro==3.14 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
    referencing==0.37.0 rpds-py==0.30.0
build=$(mktemp -d); trap 'rm -rf "$build"' EXIT
[ -e "$dest"/fairscale-0.4.13-py3-none-any.whl ] && [ -e "$dest"/modelcif-1.2-py3-none-any.whl ] ||
    python3 -m pip wheel -q --no-deps -w "$dest" fairscale==0.4.13 modelcif==1.2
if [ ! -e "$dest"/ihm-2.12-py3-none-any.whl ]; then
    python3 -m pip download -q --no-deps --no-binary=:all: -d "$build" ihm==2.12
    tar -xzf "$build"/ihm-2.12.tar.gz -C "$build"
    # setup.py's own switch; a PEP 517 build would compile the extension for this Python
    (cd "$build"/ihm-2.12 && python3 setup.py -q --without-ext bdist_wheel -d "$build"/whl) \
        > "$build"/ihm-build.log 2>&1 || { cat "$build"/ihm-build.log >&2; exit 1; }
    cp "$build"/whl/ihm-2.12-py3-none-any.whl "$dest"/
fi
for wheel in "$dest"/*.whl; do
    case "$wheel" in
        *-py2.py3-none-any.whl|*-py3-none-any.whl|*-cp312-*manylinux*x86_64*.whl|*-abi3-*manylinux*x86_64*.whl) ;;
        *) echo "error: $wheel is not for CPython 3.12 on x86-64 Linux" >&2; exit 1 ;;
    esac
done
echo "wheels in $dest:"
du -k "$dest"/*.whl | sort -n | awk '{printf "  %8.1f MiB  %s\n", $1 / 1024, $2}'
total=$(du -ck "$dest"/*.whl | tail -n 1 | cut -f 1)
rdkit=$(du -ck "$dest"/rdkit-*.whl | tail -n 1 | cut -f 1)
awk -v t="$total" -v r="$rdkit" 'BEGIN { printf "total %.1f MiB (rdkit %.1f MiB, the rest %.1f MiB)\n", t / 1024, r / 1024, (t - r) / 1024 }'
# The wheels (38 MiB) and cuEquivariance's payload for stock's kernels (28 MiB,
# ../shared/bench/make_cueq_payload.sh) exceed the device's 64 MiB carry together. With
# SITE_TARBALL=FILE the wheels are also written installed, as one xz tarball (~22 MiB) without
# what no predict path reads: rdkit's Contrib (SA/NP score data), type stubs (.pyi,
# rdkit-stubs) and packages' tests/ folders. On the device: mkdir -p S && tar -xJf FILE -C S.
if [ -n "${SITE_TARBALL:-}" ]; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-deps --no-compile --target "$site" --only-binary=:all: \
        --python-version 3.12 --implementation cp $plat --platform any "$dest"/*.whl
    rm -rf "$site"/rdkit/Contrib "$site"/rdkit-stubs "$site"/bin
    find "$site" -name '*.pyi' -delete
    find "$site" -type d -name tests -prune -exec rm -rf {} +
    tar -C "$site" -cf - . | xz -T0 -6 > "$SITE_TARBALL.tmp" && mv "$SITE_TARBALL.tmp" "$SITE_TARBALL"
    rm -rf "$site"
    echo "installed site: $SITE_TARBALL ($(du -k "$SITE_TARBALL" | cut -f 1) KiB)"
fi
