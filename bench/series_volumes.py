"""Lesion volumes from a run's U-Net on phantom DICOM series, against the true (ellipsoid) volumes.

    python bench/series_volumes.py RUN [--n 6] [--slices 16] [--size 256] [--spacing .9] [--seed 7]

Writes N phantom series (`stroke-ct synth-series`), predicts them with RUN/models (`--segment-all`, so the volumes are
the U-Net's alone, not gated by the vote), and prints per series and class the true volume, the predicted one and the
relative error, plus the per-series answers."""
import argparse, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd

p = argparse.ArgumentParser(); p.add_argument('run'); p.add_argument('--n', type=int, default=6); p.add_argument('--slices', type=int, default=16)
p.add_argument('--size', type=int, default=256); p.add_argument('--spacing', type=float, default=.9); p.add_argument('--seed', type=int, default=7)
a = p.parse_args()
w = Path(tempfile.mkdtemp())
from stroke_ct.data.synth_series import make_phantom_series
from stroke_ct.predict import predict
truth = make_phantom_series(w/'ser', n_series=a.n, seed=a.seed, n_slices=a.slices, size=a.size, spacing=a.spacing)
t = time.time()
s = predict(Path(a.run)/'models', w/'ser'/'dicom', w/'pred', segment_all=True, progress=False)
print(f"{s['n_ok']} slices, {s['n_series']} series in {time.time() - t:.1f} s ({s['precision']})")
sr = pd.read_csv(w/'pred'/'series.csv').set_index('series_uid')
rows = []
for r in truth.itertuples():
    for c in ('hemorrhage', 'ischemia'):
        tv, pv = getattr(r, f'{c}_ml'), sr.loc[r.series_uid, f'{c}_ml']
        rows.append(dict(series=r.patient_id, cls=c, true_ml=round(tv, 2), predicted_ml=round(pv, 2),
                         error=f'{100*(pv/tv - 1):+.1f}%' if tv else ('0' if pv == 0 else f'{pv:.2f} mL on no lesion'),
                         series_stroke=int(sr.loc[r.series_uid, 'stroke'])))
df = pd.DataFrame(rows)
print(df.to_markdown(index=False))
err = np.array([abs(r.predicted_ml/r.true_ml - 1) for r in df.itertuples() if r.true_ml])
print(f'median |error| {100*np.median(err):.1f}%, worst {100*err.max():.1f}%, within 5%: {(err <= .05).sum()} of {len(err)}')
