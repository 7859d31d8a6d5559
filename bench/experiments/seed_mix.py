"""200 slices of the seed's mix at the seed's sizes (bench/README.md): `predict` with the U-Net only on slices called
stroke (about 1 in 3), untrained models (five classifiers at 224 px, U-Net resnet34 + self-attention at 256 px) and
their int8 copies; seconds and peak RSS for int8 (with and without bf16 float layers), bf16 and fp32, and the time of
loading the models. The stroke threshold is set so that a third of the slices are called stroke (the untrained
ensemble's probabilities mean nothing, the work does). Needs the `int8` extra.

    python bench/experiments/seed_mix.py --n 200
"""
import argparse, json, sys, tempfile, time, shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
sys.path.insert(0, str(Path(__file__).parent.parent))
from bench_predict import make_models, make_int8, premade, no_bf16, RSSSampler, stage, STAGES, log

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--n', type=int, default=200); p.add_argument('--size', type=int, default=224); p.add_argument('--seg-size', type=int, default=256)
    p.add_argument('--threads', type=int, default=None); p.add_argument('--paths', default='int8,int8_nobf16,bf16,fp32')
    p.add_argument('--out', default=None)
    a = p.parse_args(argv)
    from stroke_ct.data.synth import make_synth
    from stroke_ct.data.layout import resolve
    from stroke_ct.infer import load_models, cpu_plan
    from stroke_ct.predict import predict
    nthr = a.threads or cpu_plan(a.n, 16)[1]
    torch.set_num_threads(nthr)
    smp, work = RSSSampler(), Path(tempfile.mkdtemp(prefix='seed_mix_'))
    try:
        ns = a.n // 6
        df = resolve(make_synth(work/'data', n_normal=a.n - 2*ns, n_ischemic=ns, n_hemorrhagic=ns, seed=5, progress=False), work/'data')
        png = list(map(Path, df.png))
        args = argparse.Namespace(archs=('resnet50', 'resnet34', 'densenet121', 'vgg19_bn', 'mobilenet_v2'), size=a.size, seg_size=a.seg_size, seg_arch='resnet34')
        md = make_models(df, work, args)
        M = load_models(md)
        make_int8(M, premade(png[:16], M.all))
        with stage('load_models', smp): M = load_models(md)
        # threshold: a third called stroke (first call also warms up)
        r0 = predict(md, png, work/'p0', vote='soft', threshold=1.0, models=M, num_threads=nthr, progress=False)
        pr = pd.read_csv(work/'p0'/'stage1.csv').probability.values
        thr = float(np.quantile(pr, 2/3))
        log(f'[mix] {a.n} slices, {nthr} threads; threshold {thr:.4f} (a third called stroke); first call {r0["seconds"]} s ({r0["precision"]})')
        res = dict(n=a.n, threads=nthr, threshold=thr, load_models_s=STAGES['load_models']['seconds'], runs={})
        for path in a.paths.split(','):
            prec = 'int8' if path.startswith('int8') else path
            with stage(f'mix_{path}', smp) as st, (no_bf16() if path == 'int8_nobf16' else _null()):
                s = predict(md, png, work/path, vote='soft', threshold=thr, precision=prec, models=M, num_threads=nthr, progress=False)
            res['runs'][path] = dict(seconds_wall=st['seconds'], seconds_predict=s['seconds'], images_per_s=s['images_per_s'], n_segmented=s['n_segmented'],
                                     n_stroke=s['n_stroke'], peak_rss_mb=st['peak_rss_mb'], rss_start_mb=st['rss_start_mb'])
            log(f"[mix] {path:12s} {st['seconds']:6.1f} s wall ({s['images_per_s']} img/s), segmented {s['n_segmented']}, peak RSS {st['peak_rss_mb']} MB")
        res['env'] = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), torch=torch.__version__)
        if a.out: Path(a.out).write_text(json.dumps(res, indent=1))
        return res
    finally:
        smp.stop = True; shutil.rmtree(work, ignore_errors=True)

from contextlib import contextmanager
@contextmanager
def _null(): yield

if __name__ == '__main__': main()
