#!/usr/bin/env python3
"""Does slice context (2.5D) help? The same U-Net trained on phantom series twice, side by side in one process: once
reading each slice alone (its grey image in all three input channels, as the 2D pipeline does), once reading the slice
above, the slice and the slice below as the three channels (2.5D, as the RSNA 2019 haemorrhage winners fed their CNNs).

    python bench/experiments/context25d.py [--series 48] [--slices 12] [--size 128] [--epochs 6] [--contrast 3 8] [--seeds 0 1]

The phantom series (`data.synth_series`) hold ellipsoid lesions that continue from slice to slice, with independent
noise on each slice; the ischemic ones are faint (`--contrast`: HU below the parenchyma), which is where a second and
third look at the same tissue should pay. Series are split by patient: 75% train, 25% test. Printed per seed and
input: lesion Dice per class on the test slices (pixels pooled), slice-level detection of each class (a slice counts
as found when the U-Net marks at least 20 pixels of the class), and training seconds.
"""
import argparse, time
import numpy as np, torch, torch.nn.functional as F
from stroke_ct.data.synth_series import phantom_series, _lesions, LESION_HU
from stroke_ct.data.dicom import window_u8
from stroke_ct.metrics import SEG_CLASSES
from stroke_ct.modelio import ModelRecord, build_model

def make(n, n_slices, size, contrast, seed):
    "Series of brain-windowed uint8 slices (n, S, H, W) and class maps"
    rng = np.random.default_rng([seed, 25])
    LESION_HU['ischemia'] = (-contrast[1], -contrast[0])
    X, Y = [], []
    kinds = [('hemorrhage',), ('ischemia',), ('ischemia', 'hemorrhage'), ()]
    for i in range(n):
        les = _lesions(rng, kinds[i % len(kinds)], (n_slices - 1)/2*2.5 - 2.5)
        hu, cls, _ = phantom_series(rng, les, n_slices, 2.5, size, 1.6)
        X.append(window_u8(hu.astype(np.float32), 'brain')); Y.append(cls)
    return np.stack(X), np.stack(Y)

def inputs(X, context):
    "(N*S, 3, H, W) float inputs: the slice three times, or its neighbours around it (edges repeat the slice)"
    if not context: x = np.repeat(X[:, :, None], 3, 2)
    else:
        up = np.concatenate([X[:, :1], X[:, :-1]], 1); dn = np.concatenate([X[:, 1:], X[:, -1:]], 1)
        x = np.stack([up, X, dn], 2)
    x = torch.from_numpy(x.reshape(-1, 3, *X.shape[2:])).float()/255
    return (x - .45)/.25

def train(x, y, size, epochs, seed, bs=16):
    torch.manual_seed(seed)
    m = build_model(ModelRecord('unet', 'resnet18', size, SEG_CLASSES, options=dict(self_attention=False, last_cross=True)))
    opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=1e-2)
    steps = epochs*((len(x) + bs - 1)//bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    w = torch.tensor([1., 3., 3.])
    g = torch.Generator().manual_seed(seed)
    m.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(bs):
            xb, yb = x[idx], y[idx]
            if torch.rand(1, generator=g) < .5: xb, yb = xb.flip(-1), yb.flip(-1)
            loss = F.cross_entropy(m(xb), yb, weight=w)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    return m.eval()

def score(m, x, y):
    with torch.inference_mode(): p = torch.cat([m(x[i:i+32]).argmax(1) for i in range(0, len(x), 32)])
    out = {}
    for c in (1, 2):
        t, q = y == c, p == c
        out[f'{SEG_CLASSES[c]} Dice'] = float(2*(t & q).sum()/max(1, int(t.sum() + q.sum())))
        has, found = t.flatten(1).any(1), q.flatten(1).sum(1) >= 20
        out[f'{SEG_CLASSES[c]} slices found'] = f'{int((has & found).sum())}/{int(has.sum())}'
        out[f'{SEG_CLASSES[c]} false slices'] = int((~has & found).sum())
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--series', type=int, default=48); p.add_argument('--slices', type=int, default=12); p.add_argument('--size', type=int, default=128)
    p.add_argument('--epochs', type=int, default=6); p.add_argument('--contrast', type=float, nargs=2, default=(3, 8))
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1]); p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f'{a.series} phantom series x {a.slices} slices, {a.size}px, ischemia {a.contrast[0]:g}-{a.contrast[1]:g} HU below parenchyma; '
          f'U-Net (resnet18 encoder, from scratch), {a.epochs} epochs, {a.threads} threads')
    for seed in a.seeds:
        X, Y = make(a.series, a.slices, a.size, a.contrast, seed)
        n_tr = int(.75*len(X))
        y_tr, y_te = (torch.from_numpy(Y[:n_tr].reshape(-1, a.size, a.size)).long(), torch.from_numpy(Y[n_tr:].reshape(-1, a.size, a.size)).long())
        for context in (False, True):
            t = time.time()
            m = train(inputs(X[:n_tr], context), y_tr, a.size, a.epochs, seed)
            s = score(m, inputs(X[n_tr:], context), y_te)
            print(f"seed {seed} {'2.5D (slice above, slice, slice below)' if context else '2D (the slice alone)     '}: "
                  + ', '.join(f'{k} {v:.3f}' if isinstance(v, float) else f'{k} {v}' for k, v in s.items()) + f'; trained in {time.time() - t:.0f} s', flush=True)

if __name__ == '__main__': main()
