#!/usr/bin/env python3
"""The competition score's 3x3 dilation and erosion: `metrics._morph3` (nine shifted numpy views) against
`scipy.ndimage.binary_dilation` / `binary_erosion` with a 3x3 structure, side by side in one process.

    python bench/experiments/morph3.py [--n 300] [--size 512]

Prints whether both give the same masks on random masks of random sizes (every border mode the score uses) and the
time of one dilation plus one erosion of a 512x512 mask holding one lesion, for each.
"""
import argparse, time
import numpy as np
from scipy import ndimage
from stroke_ct.metrics import _morph3

S = np.ones((3, 3), bool)
def scipy_morph3(m, dilate, pad):
    return ndimage.binary_dilation(m, S, border_value=0) if dilate else ndimage.binary_erosion(m, S, border_value=int(pad))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=300); p.add_argument('--size', type=int, default=512); p.add_argument('--reps', type=int, default=200)
    a = p.parse_args()
    rng, same = np.random.default_rng(0), True
    for _ in range(a.n):
        h, w = rng.integers(1, 40, 2); m = rng.random((h, w)) < rng.random()
        for d, pad in [(True, False), (False, True), (False, False)]: same &= np.array_equal(_morph3(m, d, pad), scipy_morph3(m, d, pad))
    print(f'identical on {a.n} random masks x 3 border modes: {same}')
    m = np.zeros((a.size, a.size), bool); m[a.size*2//5:a.size*3//5, a.size*3//10:a.size//2] = True
    res = {}
    for name, f in [('numpy, nine shifted views (metrics._morph3)', _morph3), ('scipy.ndimage binary_dilation/erosion', scipy_morph3)]:
        f(m, True, False)
        t = time.perf_counter()
        for _ in range(a.reps): f(m, True, False); f(m, False, True)
        res[name] = (time.perf_counter() - t)/a.reps*1e3
        print(f'{name}: {res[name]:.2f} ms per dilation + erosion, {a.size}x{a.size}')
    v = list(res.values()); print(f'scipy / numpy time: {v[1]/v[0]:.1f}x')

if __name__ == '__main__': main()
