#!/usr/bin/env bash
# A non-editable install carries the official splits: build and install this checkout into an empty folder (no
# dependencies: they come from the environment), then, from outside the checkout, check that the installed package
# (not the checkout) reads the 6650-image manifest, and that `stroke-ct train` on a folder of official images uses
# the official splits instead of building its own.
set -euo pipefail
cd "$(dirname "$0")/.."
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
iso=$(python -c "import setuptools" 2>/dev/null && echo --no-build-isolation || true)   # build in place when setuptools is here
python -m pip install -q --no-deps $iso --target "$t/site" . >/dev/null 2>&1
cd "$t"
export PYTHONPATH="$t/site"
python - "$t" <<'PY'
import sys, pathlib
import stroke_ct
from stroke_ct.data.splits import official_manifest
t = pathlib.Path(sys.argv[1])
assert pathlib.Path(stroke_ct.__file__).resolve().is_relative_to(t.resolve()), f'imported {stroke_ct.__file__}, not the installed copy'
n = len(official_manifest())
print(f'installed package ({pathlib.Path(stroke_ct.__file__).parent}): official_manifest() has {n} images')
assert n == 6650
# a data folder of 36 official images (12 per subtype, official ids, the competition layout), no manifest of its own
from stroke_ct.testing import fake_layout
om = official_manifest()
fold = {'normal': 'TRAINING/INMEYOK', 'ischemic': 'TRAINING/ISKEMI', 'hemorrhagic': 'TRAINING/KANAMA'}
for (st, sp), g in om.groupby(['subtype', 'split']):
    for i in g.image_id.head({'train': 8, 'valid': 2, 'test': 2}[sp]): fake_layout(t/'data', [fold[st]], [i], size=32)
PY
"$t/site/bin/stroke-ct" train data run --preset quick --archs mobilenet_v2 --stage classifiers > train.log 2>&1 || { cat train.log; exit 1; }
grep -F "splits from official manifest (stroke_ct)" train.log
test ! -e run/data_manifest.csv
python - <<'PY'
import pandas as pd
from stroke_ct.data.splits import official_manifest
p = pd.read_csv('run/metrics/probs.csv', dtype={'image_id': str})
om = official_manifest().set_index('image_id')
assert len(p) == 36 and (p.split.values == om.loc[p.image_id, 'split'].values).all(), 'probs.csv splits differ from the official ones'
print(f'stroke-ct train used the official splits for {len(p)} official images')
PY
