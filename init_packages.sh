#!/usr/bin/env bash
# Build the inference wheel (sdist + wheel) and copy it to the API and the training pipeline.
# Idempotent and reproducible: the same source gives a byte-identical wheel on every run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON="${PYTHON:-python3}"
PACKAGE_DIR="packages/inference"
DIST_DIR="${PACKAGE_DIR}/dist"
TARGETS=("cats_dogs_other/api/packages" "cats_dogs_other/train/packages")

# Wheel timestamps come from SOURCE_DATE_EPOCH: the last commit's time when there is one,
# else a fixed date, so rebuilding unchanged source never changes the wheel's bytes.
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || true)"
    SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"  # 2024-01-01T00:00:00Z
fi
export SOURCE_DATE_EPOCH

rm -rf "${DIST_DIR}"
"${PYTHON}" -m build --quiet --sdist --wheel --outdir "${DIST_DIR}" "${PACKAGE_DIR}"

shopt -s nullglob
wheels=("${DIST_DIR}"/kto_keras_inference-*.whl)
if [[ ${#wheels[@]} -ne 1 ]]; then
    echo "init_packages.sh: expected one wheel in ${DIST_DIR}, found ${#wheels[@]}" >&2
    exit 1
fi

for target in "${TARGETS[@]}"; do
    mkdir -p "${target}"
    rm -f "${target}"/kto_keras_inference-*
    cp "${wheels[0]}" "${target}/"
done

echo "built $(basename "${wheels[0]}") (sha256 $(sha256sum "${wheels[0]}" | cut -d' ' -f1))"
echo "copied to: ${TARGETS[*]}"
