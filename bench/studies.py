#!/usr/bin/env python3
"""The long studies behind bench/README.md's tables: run by hand, never by the tests.

Each subcommand reruns one measurement that used to be a slow cell of a source notebook (the notebooks now hold only
quick examples and tests), prints its table and writes it as CSV under `--out` (default `bench/_out`, which is kept
out of git):

    python bench/studies.py synth-speed              # make_synth on 200 phantoms: wall and CPU seconds (under a minute)
    python bench/studies.py imbalance                # plain / weighted CE / balanced sampler (about 15 min on 2 cores)
    python bench/studies.py unet-losses              # CE / weighted CE / CE + Dice for the U-Net (about an hour on 2 cores)
    python bench/studies.py demo-seeds               # the full demo at seeds 0 1 2, bounds checked (about 35 min on 2 cores)
    python bench/studies.py predict-grid --models RUN/models   # predict images/s by workers, threads, precision
    python bench/studies.py gpu-twins                # the fp16 training twins on CUDA (a few minutes; needs a GPU)
    python bench/studies.py rescore RUN              # a finished run scored again by this code: every table compared

Only public `stroke_ct` APIs are used. Scratch data goes to a temporary folder removed at exit, or to `--work DIR`
(kept; a run folder there is resumed, not retrained, when the study is run again with the same settings).
"""
from __future__ import annotations
import argparse, importlib, os, shutil, sys, time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DEMO_BOUNDS = dict(f1=.85, lesion_dice=.50)   # what README.md promises for `stroke-ct demo` (any seed)


# ---------------------------------------------------------------------------------------------------- helpers
def _work(a, name:str)->Path:
    "The study's scratch folder: --work/<name> (kept), else a temporary folder removed when the process exits"
    if getattr(a, 'smoke', False): name += '_smoke'   # never mixed with a full study's data and runs in --work
    if a.work:
        w = Path(a.work)/name
        w.mkdir(parents=True, exist_ok=True)
        return w
    from stroke_ct.core import scratch_dir
    return Path(scratch_dir(f'studies-{name}-'))

def _save(a, df, name:str)->Path:
    "Print the table and write it as out/<name>.csv (the folder is made with a .gitignore that ignores everything)"
    import pandas as pd
    out = Path(a.out)
    if not out.exists():
        out.mkdir(parents=True)
        (out/'.gitignore').write_text('*\n')   # measurements stay out of git
    fn = out/f"{name}{'-smoke' if getattr(a, 'smoke', False) else ''}.csv"
    with pd.option_context('display.width', 200, 'display.max_columns', 30):
        print(df.to_string(index=False) if df.index.name is None else df.to_string())
    df.to_csv(fn, index=df.index.name is not None)
    print(f'wrote {fn}', flush=True)
    return fn

def rescore(a)->int:
    "Score a finished run again with the installed code (the vote and test-split stages on a copy) and compare every table"
    import json, numpy as np, pandas as pd
    from stroke_ct.run import Run
    from stroke_ct.ensemble import vote
    from stroke_ct.test_split import score_test_split
    src = Path(a.run)
    w = _work(a, f'rescore_{src.name}')/src.name
    shutil.rmtree(w, ignore_errors=True); shutil.copytree(src, w, ignore=shutil.ignore_patterns('data', 'checkpoints'))
    r = Run(w)
    vote(r); score_test_split(r)
    rows = []
    for f in ('metrics/table2_test.csv', 'metrics/test_votes.csv', 'metrics/seg_test.csv', 'metrics/seg_test_per_image.csv', 'metrics/seg_gating.csv'):
        x, y = pd.read_csv(src/f), pd.read_csv(w/f)
        same_shape = x.shape == y.shape and list(x.columns) == list(y.columns)
        num = x.select_dtypes('number').columns
        diff = float(np.nanmax(np.abs(x[num].to_numpy(float) - y[num].to_numpy(float)), initial=0)) if same_shape else float('nan')
        rows.append(dict(file=f, identical=bool(same_shape and x.equals(y)), same_shape=same_shape, max_abs_diff=diff))
    e = json.loads((src/'models/ensemble.json').read_text()) == json.loads((w/'models/ensemble.json').read_text())
    rows.append(dict(file='models/ensemble.json', identical=e, same_shape=True, max_abs_diff=0. if e else float('nan')))
    df = pd.DataFrame(rows)
    _save(a, df, f'rescore-{src.name}')
    return 0 if df.identical.all() else 1

def _resolved_synth(root, **kwargs):
    "make_synth(root, **kwargs) and its resolved manifest"
    from stroke_ct.data.synth import make_synth
    from stroke_ct.data.layout import resolve
    return resolve(make_synth(root, progress=False, **kwargs), root)


# ---------------------------------------------------------------------------------------------------- studies
def synth_speed(a)->int:
    "Wall and CPU seconds of `make_synth` (phantom, DICOM, three PNGs per slice); was the slow cell of 08_data.synth"
    import pandas as pd
    from stroke_ct.data.synth import make_synth
    d = _work(a, 'synth_speed')/'synth'
    if d.exists(): shutil.rmtree(d)
    n = a.n_normal + a.n_ischemic + a.n_hemorrhagic
    t0, c0 = time.perf_counter(), time.process_time()
    make_synth(d, a.n_normal, a.n_ischemic, a.n_hemorrhagic, seed=0, progress=False)
    dt, ct = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(d)
    _save(a, pd.DataFrame([dict(slices=n, wall_s=round(dt, 2), cpu_s=round(ct, 2), cpu_ms_per_slice=round(1000*ct/n, 1),
                                load_avg=round(os.getloadavg()[0], 2))]), 'synth-speed')
    return 0

def imbalance(a)->int:
    "Plain / class-weighted CE / balanced sampler on an imbalanced phantom set (90 normal, 30 stroke); was in 21_classify"
    import pandas as pd
    from stroke_ct.loaders import cls_dls, test_dl
    from stroke_ct.classify import train, class_weights
    from stroke_ct.metrics import binary_metrics
    n_normal, n_each, epochs, size = (30, 10, 1, 32) if a.smoke else (90, 15, 6, 64)
    imb = _resolved_synth(_work(a, 'imbalance')/'imbalanced', n_normal=n_normal, n_ischemic=n_each, n_hemorrhagic=n_each, seed=1)
    ev = imb[imb.split.isin(['valid', 'test'])]
    rows = []
    for name, bal, wl in [('plain', False, None), ('weighted CE', False, class_weights(imb)), ('balanced sampler', True, None)]:
        t = time.perf_counter()
        dl = cls_dls(imb, size=size, bs=16, balanced=bal, seed=0)
        l = train(dl, 'resnet34', epochs=epochs, lr=3e-3, pretrained=False, loss_weights=wl, seed=0)
        pe, ye = l.get_preds(dl=test_dl(dl, ev, split=None))
        m = binary_metrics(ye.numpy(), (pe[:, 1] >= .5).int().numpy(), pe[:, 1].float().numpy())
        rows.append(dict(variant=name, **{k: m[k] for k in ('sensitivity', 'specificity', 'balanced_accuracy', 'roc_auc')},
                         n_eval=m['n'], precision=l.precision, minutes=round((time.perf_counter() - t)/60, 1)))
        print(rows[-1], flush=True)
    _save(a, pd.DataFrame(rows).round(3), 'imbalance')
    return 0

def unet_losses(a)->int:
    "CE (fp32) / class-weighted CE / CE + soft lesion Dice for the U-Net on 320 phantoms; was in the scoring notebook"
    import pandas as pd
    from stroke_ct.data.synth import make_synth
    from stroke_ct.run import Run, RunConfig
    from stroke_ct.scoring import lesion_summary
    from stroke_ct.segment import train_unet
    from stroke_ct.test_split import score_test_split
    w = _work(a, 'unet_losses')
    if a.smoke:
        counts, sets = dict(n_normal=4, n_ischemic=12, n_hemorrhagic=12), ['unet.size=64', 'unet.bs=8', 'unet.epochs=1', 'eval.n_boot=20']
    else:
        counts, sets = dict(n_normal=20, n_ischemic=150, n_hemorrhagic=150), ['unet.size=128', 'unet.bs=16', 'unet.epochs=3', 'eval.n_boot=200']
    if not (w/'synth300'/'data_manifest.csv').exists(): make_synth(w/'synth300', seed=1, progress=False, **counts)
    base = RunConfig.preset('demo').set('classifiers.archs=resnet34', 'unet.arch=resnet34', 'unet.lr=2e-3', 'unet.self_attention=true',
                                        'unet.last_cross=true', 'seed=0', *sets)
    losses = {}
    for name, extra in [('ce, fp32', ['unet.class_weights=null', 'precision=fp32']), ('ce weighted, bf16', ['precision=bf16']),
                        ('dice_ce, bf16', ['unet.class_weights=null', 'unet.loss=dice_ce', 'precision=bf16'])]:
        t = time.perf_counter()
        r = Run(w/name.replace(', ', '_').replace(' ', '_'), w/'synth300', base.set(*extra))
        train_unet(r)   # a finished U-Net in --work is kept (resuming is the default)
        losses[name] = dict(lesion_summary(score_test_split(r)['results']['unet']['summary']), minutes=(time.perf_counter() - t)/60)
    _save(a, pd.DataFrame(losses).T.rename_axis('loss').round(3), 'unet-losses')
    return 0

def demo_seeds(a)->int:
    "The full demo (`stroke-ct demo`) at several seeds: ensemble, F1, lesion Dice, minutes; exit 1 if a bound fails"
    import pandas as pd
    from stroke_ct.pipeline import demo
    w = _work(a, 'demo_seeds')
    rows = []
    for s in a.seeds:
        d = w/f"{'quick' if a.quick else 'demo'}{s}"
        if d.exists(): shutil.rmtree(d)   # a fresh run each time: the time is part of the measurement
        r = demo(d, quick=a.quick, seed=s)
        f1, dice = r.get('ensemble_f1'), r.get('lesion_dice')
        ok = f1 is not None and dice is not None and f1 >= DEMO_BOUNDS['f1'] and dice >= DEMO_BOUNDS['lesion_dice']
        rows.append(dict(seed=s, ensemble=r.get('ensemble'), f1=f1, lesion_dice=dice, minutes=round(r['seconds']['total']/60, 1),
                         bounds_met=ok))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows).round(3)
    _save(a, df, 'demo-seeds-quick' if a.quick else 'demo-seeds')
    bounds = f"F1 >= {DEMO_BOUNDS['f1']}, lesion Dice >= {DEMO_BOUNDS['lesion_dice']}"
    if a.quick:
        print(f'quick preset: a smoke test, the bounds ({bounds}) are for the demo preset and not checked')
        return 0
    failed = df[~df.bounds_met].seed.tolist()
    if failed:
        print(f'FAILED: seeds {failed} miss the demo bounds ({bounds})', file=sys.stderr)
        return 1
    print(f'every seed meets the demo bounds ({bounds})')
    return 0

def predict_grid(a)->int:
    "predict images/s on 48 phantom slices (PNG and DICOM) by decoding workers, threads, precision, channels_last; was in 51_predict"
    import pandas as pd
    from stroke_ct.infer import load_models
    from stroke_ct.predict import predict
    mdir = Path(a.models)
    if not mdir.is_dir(): sys.exit(f'{mdir}: no models folder (train one: stroke-ct demo RUN --quick, then --models RUN/models)')
    M = load_models(mdir)
    w = _work(a, 'predict_grid')
    counts = dict(n_normal=8, n_ischemic=4, n_hemorrhagic=4) if a.smoke else dict(n_normal=24, n_ischemic=12, n_hemorrhagic=12)
    bman = _resolved_synth(w/'synth', seed=3, **counts)
    for k in ('png', 'dicom'):
        if (w/k).exists(): shutil.rmtree(w/k)
        (w/k).mkdir()
        for f in bman[k]: shutil.copy(f, w/k)
    preds = w/'pred'
    if preds.exists(): shutil.rmtree(preds)
    n = iter(range(10**6))
    predict(mdir, w/'png', preds/f'{next(n)}', models=M, num_workers=0, num_threads=1, progress=False)   # warm-up
    grid = [(0, 1, 'fp32', False), (0, 1, 'bf16', True), (0, 1, 'fp32', True), (0, 2, 'bf16', True), (1, 1, 'bf16', True), (2, 1, 'bf16', True)]
    res = []
    for k in ('png', 'dicom'):
        for nw, nt, prec, cl in grid[:2] if a.smoke else grid:
            r = predict(mdir, w/k, preds/f'{next(n)}', bs=16, models=M, num_workers=nw, num_threads=nt, precision=prec,
                        channels_last=cl, progress=False)
            res.append(dict(input=k, slices=len(bman), workers=nw, threads=nt, precision=r.get('precision', prec), channels_last=cl,
                            images_per_s=round(r['images_per_s'], 2)))
            print(res[-1], flush=True)
    _save(a, pd.DataFrame(res), 'predict-grid')
    return 0

def gpu_twins(a)->int:
    "fp16 mixed precision on CUDA: a classifier, the U-Net and the quick demo (the CUDA twins of 21_classify, 23_segment, 50_pipeline)"
    import numpy as np, pandas as pd, torch
    dev = a.device
    if dev.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('gpu-twins: no CUDA device visible (torch.cuda.is_available() is False): run it on a machine with a GPU; '
                 'bench/gpu_check.sh OUT --device cpu dry-runs the GPU path on a CPU')
    from stroke_ct.core import resolve_precision
    from stroke_ct.loaders import cls_dls, seg_dls
    from stroke_ct.classify import train
    from stroke_ct.segment import train_segmenter
    from stroke_ct.run import RunConfig
    from stroke_ct.pipeline import demo
    from stroke_ct.modelio import read_record
    prec = resolve_precision('auto', dev)             # fp16 on CUDA (a hidden --device cpu dry run: bf16 or fp32)
    cb = dict(fp16='MixedPrecision', bf16='BF16Autocast').get(prec)
    w = _work(a, 'gpu_twins')
    df = _resolved_synth(w/'synth', n_normal=24, n_ischemic=12, n_hemorrhagic=12, seed=0)
    checks = []
    def check(name, got, want):
        checks.append(dict(check=name, want=str(want), got=str(got), ok=got == want)); print(checks[-1], flush=True)

    t = time.perf_counter()
    g = train(cls_dls(df, size=64, bs=16, device=dev), 'resnet34', epochs=1, pretrained=False)
    check('classifier precision', g.precision, prec)
    names = {type(c).__name__ for c in g.cbs}
    check(f"classifier callback {cb or 'none (fp32)'}", cb in names if cb else not names & {'MixedPrecision', 'BF16Autocast'}, True)
    check('classifier device', next(g.model.parameters()).device.type, torch.device(dev).type)
    check('classifier valid loss finite', bool(np.isfinite(g.train_meta['final']['valid_loss'])), True)
    print(f'classifier: {time.perf_counter() - t:.1f} s', flush=True)

    t = time.perf_counter()
    gl = train_segmenter(seg_dls(df, size=64, bs=8, seed=0, device=dev), epochs=1, lr=1e-3, pretrained=False)
    check('U-Net precision', gl.seg_meta['precision'], prec)
    check('U-Net device', next(gl.model.parameters()).device.type, torch.device(dev).type)
    check('U-Net valid loss finite', bool(np.isfinite(gl.seg_meta['history'][0]['valid_loss'])), True)
    print(f'U-Net: {time.perf_counter() - t:.1f} s', flush=True)

    t = time.perf_counter()
    q = w/'quick_dev'
    if q.exists(): shutil.rmtree(q)
    gq = demo(q, quick=True, seed=0, config=RunConfig.preset('quick').set(device=dev))
    run = Path(gq['report']).parent
    check('quick demo: classifier precisions', sorted(set(pd.read_csv(run/'metrics'/'table1_training.csv').precision)), [prec])
    check('quick demo: U-Net precision', read_record(run/'models'/'unet').train['precision'], prec)
    print(f'quick demo: {time.perf_counter() - t:.1f} s', flush=True)

    df = pd.DataFrame(checks)
    _save(a, df, 'gpu-twins' if dev.startswith('cuda') else f'gpu-twins-{dev}')
    if not df.ok.all():
        print(f"FAILED: {', '.join(df[~df.ok].check)}", file=sys.stderr)
        return 1
    print(f'all {len(df)} checks passed on {torch.cuda.get_device_name(0) if dev.startswith("cuda") else dev}')
    return 0


# ---------------------------------------------------------------------------------------------------- command line
def parser()->argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.splitlines()[2:]))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--out', default=str(BENCH/'_out'), help='where the CSV tables go (default bench/_out)')
    common.add_argument('--work', default=None, help='keep scratch data and runs here (default: a temporary folder, removed)')
    common.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s own choice)')
    sub = p.add_subparsers(dest='cmd', required=True, metavar='STUDY')
    def add(name, fn, help, takes, smoke=False):
        sp = sub.add_parser(name, parents=[common], help=f'{help}; {takes}', description=f'{fn.__doc__}. Time: {takes}.')
        if smoke: sp.add_argument('--smoke', action='store_true', help=argparse.SUPPRESS)   # a few slices, one epoch: checks the code
        sp.set_defaults(fn=fn)
        return sp

    sp = add('synth-speed', synth_speed, 'wall and CPU seconds of make_synth for 200 phantoms (100/50/50)', 'under a minute')
    for k, v in dict(n_normal=100, n_ischemic=50, n_hemorrhagic=50).items():
        sp.add_argument(f"--{k.replace('_', '-')}", type=int, default=v, help=f'default {v}')
    add('imbalance', imbalance, 'sensitivity, specificity, balanced accuracy, ROC AUC: plain / weighted CE / balanced sampler',
        'about 15 minutes on 2 cores', smoke=True)
    add('unet-losses', unet_losses, 'lesion Dice and IoU of U-Nets trained with CE, weighted CE, CE + Dice',
        'about an hour on 2 cores', smoke=True)
    sp = add('demo-seeds', demo_seeds, 'ensemble, test F1, lesion Dice, minutes of the full demo per seed; exit 1 below '
             'F1 0.85 or Dice 0.50', 'about 12 minutes per seed on 2 cores (35 for 0 1 2), 2 with --quick')
    sp.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='default 0 1 2')
    sp.add_argument('--quick', action='store_true', help='the quick preset: a smoke test (bounds printed, not checked)')
    sp = add('predict-grid', predict_grid, 'predict images/s, PNG and DICOM, by decoding workers, threads, precision, channels_last',
             'a few minutes on 2 cores with the demo\'s models', smoke=True)
    sp.add_argument('--models', required=True, help="a finished run's models folder (RUN/models; e.g. from stroke-ct demo RUN --quick)")
    sp = add('rescore', rescore, "a finished run's vote and test-split stages again with this code, on a copy; every table compared "
             "with the run's own (exit 1 if any differs)", 'about a minute for the demo')
    sp.add_argument('run', help='a finished run folder (its data folder must still be where config.json says)')
    sp = add('gpu-twins', gpu_twins, 'fp16 training on CUDA (a classifier, the U-Net, the quick demo): precision, device, '
             'finite losses', 'a few minutes on a GPU; without one it exits with a message')
    sp.add_argument('--device', default='cuda', help=argparse.SUPPRESS)   # 'cpu': a dry run of the code path here
    return p

def main(argv=None)->int:
    a = parser().parse_args(argv)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    t = time.perf_counter()
    rc = a.fn(a)
    print(f'{a.cmd}: {time.perf_counter() - t:.0f} s', flush=True)
    return rc

if __name__ == '__main__': sys.exit(main())
