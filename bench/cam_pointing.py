"""Pointing game for `stroke_ct.explain`: on the stroke slices a model calls stroke (true positives), does the peak of its
Grad-CAM map fall in the true lesion? Per classifier (called stroke: P >= 0.5), and for the ensemble (its own vote and
threshold; the map from `ensemble_map` over the models that voted stroke at that threshold), with a 95% percentile
bootstrap interval over slices (`pointing_share`). `tol`: 0 (peak in the lesion) and the
pointing game's 15 px at 224 px, as a share of the side. `chance` is the mean lesion area share: what a peak dropped uniformly
at random would score. Sets: the demo run's test split (phantoms, MASK files) and the real samples in ../shared/data/real
that have masks (bhsd, ct_stroke_mix; lesion = any non-black mask pixel). Models run as trained (fp32). The Grad-CAM layer
is `explain.cam_layer(spec, min_grid)`, the deepest candidate layer whose grid at the model's size is at least
`min_grid` on a side: `--min-grid 0` the last block of each body (the old fixed rule), the default `explain.MIN_GRID`
(4), or ImageNet's 7; the grid used is reported, and `--out` keeps each slice's hit for `--compare`.

    for g in 0 4 7; do flock /tmp/torch.lock python bench/cam_pointing.py --models RUN/models --data RUN/data --min-grid $g --out cam_pointing_$g.json; done
    python bench/cam_pointing.py --compare cam_pointing_0.json cam_pointing_4.json   # paired change, per model and tolerance
"""
import argparse, json, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
from stroke_ct.infer import load_models, slice_batches, classify_batch, combine_votes, AS_TRAINED
from stroke_ct.data.masks import read_mask
from fastai.callback.hook import hook_output
from stroke_ct.explain import MIN_GRID, cam_layer, class_maps, ensemble_map, peak_in_mask, pointing_share

TOLS = (0, 15/224)   # in the lesion; within the pointing game's 15 px at 224 px (as a share of the side)

def demo_set(data):
    df = pd.read_csv(Path(data)/'data_manifest.csv')
    df = df[(df.split == 'test') & (df.stroke == 1)]
    d = Path(data)/'TRAINING'
    return [(d/r.folder/'PNG'/f'{r.image_id}.png', lambda r=r: read_mask(d/r.folder/'MASK'/f'{r.image_id}.png')) for r in df.itertuples()]

def real_set(root):
    def lesion(fn): return np.asarray(Image.open(fn).convert('RGB')).max(-1) > 127
    out = []
    for sub in ('bhsd', 'ct_stroke_mix'):
        for fn in sorted((Path(root)/sub/'images').glob('*.png')):
            mk = Path(root)/sub/'masks'/fn.name
            if mk.exists(): out.append((fn, lambda mk=mk: lesion(mk)))
    return out

def grid_of(spec, layer):
    "Channels and grid of `layer`'s output at the model's input size"
    with torch.no_grad(), hook_output(layer) as h: spec.model.eval()(torch.zeros(1, 3, spec.size, spec.size))
    return 'x'.join(map(str, h.stored.shape[1:]))

def pointing(ms, items, layers, bs=8):
    cls, ens = ms.classifiers, ms.ensemble
    hits = {(k, t): [] for k in [m.name for m in cls] + ['ensemble'] for t in TOLS}
    area, secs, n = [], {m.name: 0. for m in cls}, 0
    zero = {m.name: [] for m in cls}   # per slice called stroke: is the map all zero (no positive evidence: points nowhere)?
    for i in range(0, len(items), bs):
        chunk = items[i:i+bs]
        b = next(iter(slice_batches([f for f, _ in chunk], [m.key for m in cls], bs=len(chunk))))
        masks = [mk() for _, mk in chunk]
        area += [float((np.asarray(k) > 0).mean()) for k in masks]
        with torch.inference_mode(): P = classify_batch(b, cls, AS_TRAINED)
        maps = {}
        for j, m in enumerate(cls):
            t = time.perf_counter(); maps[m.name] = class_maps(m, b['x'][m.key], layer=layers[m.name]); secs[m.name] += time.perf_counter() - t
            tp = P[j] >= 0.5
            zero[m.name] += [bool(k.max() == 0) for k in maps[m.name][tp]]
            for t in TOLS: hits[m.name, t] += list(peak_in_mask(maps[m.name][tp], [k for k, t_ in zip(masks, tp) if t_], t))
        n += len(chunk)
        stroke, _ = combine_votes(P, ms.names, ens.vote, ens.threshold, ens.weights)
        em = ensemble_map(maps, dict(zip(ms.names, P)), ens.threshold, ens.weights if ens.vote == 'weighted' else None)
        for t in TOLS: hits['ensemble', t] += list(peak_in_mask(em[stroke == 1], [k for k, s in zip(masks, stroke) if s], t))
    rows = [dict(model=k, tol=t, **pointing_share(h), chance=float(np.mean(area)), hits=[int(v) for v in h]) for (k, t), h in hits.items()]
    return rows, {k: v/max(n, 1) for k, v in secs.items()}, n, {k: float(np.mean(v)) if v else float('nan') for k, v in zero.items()}

def compare(fa, fb, n_boot=1000, seed=0):
    "Paired bootstrap over slices of the change in hit share from run `fa` to run `fb` (same models and slices: a model's stroke calls do not depend on the layer)"
    A, B = json.loads(Path(fa).read_text()), json.loads(Path(fb).read_text())
    print(f"change in pointing share, min_grid {A['min_grid']} -> {B['min_grid']}, paired 95% bootstrap over slices")
    for name in [k for k in A if isinstance(A[k], dict) and 'rows' in A[k] and k in B]:
        out = []
        for ra, rb in zip(A[name]['rows'], B[name]['rows']):
            assert (ra['model'], ra['tol']) == (rb['model'], rb['tol']) and ra['n'] == rb['n']
            d = np.array(rb['hits'], float) - np.array(ra['hits'], float)
            if d.size == 0: continue
            boots = np.random.default_rng(seed).choice(d, (n_boot, d.size)).mean(1)
            out.append(dict(model=ra['model'], tol=round(ra['tol'], 3), n=d.size, old=ra['value'], new=rb['value'], diff=d.mean(),
                            lo=np.quantile(boots, .025), hi=np.quantile(boots, .975)))
        print(f'\n{name}'); print(pd.DataFrame(out).round(3).to_string(index=False))

def main(a):
    if a.compare: return compare(*a.compare)
    torch.set_num_threads(a.threads)
    ms = load_models(a.models)
    layers = {m.name: cam_layer(m, a.min_grid) for m in ms.classifiers}   # chosen (and any dummy pass run) before timing
    grids = {m.name: grid_of(m, layers[m.name]) for m in ms.classifiers}
    print(f'min_grid {a.min_grid}: layer grids (channels x h x w) at the models\' sizes:', grids)
    out = {'min_grid': a.min_grid, 'grids': grids}
    for name, items in (('demo test split (phantoms)', demo_set(a.data)), ('real samples', real_set(a.real) if Path(a.real).is_dir() else [])):
        if not items: print(f'{name}: no slices with masks, skipped'); continue
        rows, secs, n, zero = pointing(ms, items, layers)
        out[name] = dict(n_stroke_slices=n, rows=rows, class_maps_s_per_slice=secs, all_zero_map_share=zero)
        print(f'\n{name}: {n} stroke slices'); print(pd.DataFrame(rows).drop(columns='hits').round(3).to_string(index=False)); print('class_maps s/slice (bs 8):', {k: round(v, 4) for k, v in secs.items()}); print('all-zero maps (share of slices called stroke):', {k: round(v, 2) for k, v in zero.items()})
    if a.out: Path(a.out).write_text(json.dumps(out, indent=1))

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--models', default='/tmp/ref_demo/models'); p.add_argument('--data', default='/tmp/ref_demo/data')
    p.add_argument('--real', default=str(Path(__file__).resolve().parents[2]/'shared'/'data'/'real'))
    p.add_argument('--min-grid', type=int, default=MIN_GRID, help='0: the last block (old rule)')
    p.add_argument('--compare', nargs=2, metavar=('OLD.json', 'NEW.json'), help='paired change between two runs\' --out files')
    p.add_argument('--threads', type=int, default=2); p.add_argument('--out', default='')
    main(p.parse_args())
