#!/usr/bin/env python
"""On-demand throughput, memory and answer-stability benchmark of `stroke_ct.predict.predict` (not a test).

In ONE process, on the same synthetic slices (`make_synth`, PNG and DICOM), it measures:
  (a) the raw forward throughput of the five classifiers and the U-Net on pre-made tensors: eager FP32 NCHW (the
      baseline), FP32 channels_last (predict's forced-FP32 path) and the fast path `predict` picks (bf16 autocast +
      channels_last where the CPU has native bf16); per-model share of the ensemble time;
  (b) `predict` end to end on PNG and on DICOM input, precision 'auto' and forced 'fp32';
  (c) a loop calling fastai `learn.predict` once per image and model (what users write), with fastai's overhead per
      image (learn.predict time - batch-of-one forward);
then the ratios b/a and b/c, peak memory (psutil RSS sampled per stage, incl. DataLoader workers; getrusage maxrss),
where the time goes, and whether the fast path changes answers (stage-1 answers, mask pixels, metrics vs bootstrap CIs).

Run from the repository root: `python bench/bench_predict.py --out bench_predict.json` (options: `--help`; bench/README.md)
See bench/README.md for options and the last measured figures.
"""
from __future__ import annotations
import argparse, json, os, resource, shutil, tempfile, threading, time, warnings
from contextlib import contextmanager
from pathlib import Path
import numpy as np, pandas as pd, psutil, torch

warnings.filterwarnings('ignore')
ARCHS = ('resnet50', 'resnet34', 'densenet121', 'vgg19_bn', 'mobilenet_v2')

def log(*a): print(*a, flush=True)
def load(): return [round(x, 2) for x in os.getloadavg()]

# ---------------------------------------------------------------- memory + timing per stage
class RSSSampler:
    "Samples RSS of this process + its children (DataLoader workers) every `dt` s; `peak` since the last `reset`"
    def __init__(self, dt=0.01):
        self.dt, self.p, self.peak, self.kpeak, self.stop = dt, psutil.Process(), 0, 0, False
        threading.Thread(target=self._run, daemon=True).start()
    def rss(self): return self.p.memory_info().rss
    def kids(self):
        r = 0
        for c in self.p.children(recursive=True):
            try: r += c.memory_info().rss
            except psutil.Error: pass
        return r
    def _run(self):
        while not self.stop:
            try: self.peak, self.kpeak = max(self.peak, self.rss()), max(self.kpeak, self.kids())
            except psutil.Error: pass
            time.sleep(self.dt)
    def reset(self): self.peak, self.kpeak = self.rss(), 0

MB = 2**20
STAGES = {}

@contextmanager
def stage(name, sampler):
    "Record wall seconds, load average at start/end, RSS at start and the peak during the stage"
    sampler.reset(); r0, l0, t0 = sampler.rss(), load(), time.perf_counter()
    rec = dict()
    yield rec
    rec.update(seconds=round(time.perf_counter() - t0, 3), load_start=l0, load_end=load(),
               rss_start_mb=round(r0/MB), peak_rss_mb=round(max(sampler.peak, sampler.rss())/MB))
    rec['peak_extra_mb'] = rec['peak_rss_mb'] - rec['rss_start_mb']
    rec['workers_peak_rss_mb'] = round(sampler.kpeak/MB)   # forked DataLoader workers (shares pages with this process)
    STAGES[name] = rec

# ---------------------------------------------------------------- models
def make_models(df, work, args):
    "Untrained models at the requested sizes, saved with classify/segment's save functions; returns models_dir"
    from fastai.vision.all import imagenet_stats
    from stroke_ct.metrics import SEG_CLASSES
    from stroke_ct.modelio import ModelRecord, EnsembleRecord, build_model, save_model, write_ensemble
    from stroke_ct.archs import HEAD_ARGS
    from stroke_ct.runlayout import ModelsLayout, mark_complete
    md, stats = ModelsLayout(Path(work)/'models'), [list(imagenet_stats[0]), list(imagenet_stats[1])]
    for a in args.archs:
        rec = ModelRecord('classifier', a, args.size, ['normal', 'stroke'], stats=stats, options=dict(HEAD_ARGS))
        save_model(build_model(rec), rec, md.classifier(a))
    rec = ModelRecord('unet', args.seg_arch, args.seg_size, SEG_CLASSES, stats=stats, options=dict(self_attention=True, last_cross=True))
    save_model(build_model(rec), rec, md.unet)
    write_ensemble(EnsembleRecord('hard', 0.5), md.ensemble)
    mark_complete(md.root, args.archs)   # a finished run's folder, as predict expects
    return md.root

def fastai_learners(df, M):
    "fastai Learners (vision_learner / unet_learner via make_learner / seg_learner) holding the same weights as `M`"
    from stroke_ct.loaders import cls_dls, seg_dls
    from stroke_ct.classify import make_learner
    from stroke_ct.segment import seg_learner
    cache, res = {}, []
    def nocache(dls):  # learn.predict must decode each file like a user's would, not hit the training cache
        dls.reader.cache = False; dls.reader.store.clear(); return dls
    for m in M.classifiers:
        inp = m.rec.input; key = (m.size, inp, m.window)
        if key not in cache: cache[key] = nocache(cls_dls(df, size=m.size, bs=8, augment=False, input=inp, window=m.window))
        learn = make_learner(cache[key], m.rec.arch, pretrained=False, precision='fp32', **m.rec.options)
        learn.model.load_state_dict(m.model.state_dict()); learn.model.eval()
        res.append((m, learn))
    u = M.unet
    if u is not None:
        sdl = nocache(seg_dls(df, size=u.size, bs=4, augment=False, input=u.rec.input, window=u.window))
        learn = seg_learner(sdl, u.rec.arch, pretrained=False, precision='fp32', **u.rec.options)
        learn.model.load_state_dict(u.model.state_dict()); learn.model.eval()
        res.append((u, learn))
    return res

# ---------------------------------------------------------------- int8 copies
def make_int8(M, X):
    "int8 copies (OpenVINO + NNCF) of untrained models, calibrated on the bench's own slices, kept whatever they change, with their best batch size"
    from stroke_ct.quantize import quantize_model, Int8Model, Int8Record, save_int8, best_batch_size, int8_check, cpu_has_vnni
    from stroke_ct.infer import model_input, AS_TRAINED
    full = cpu_has_vnni()   # as `quantize` makes them: all 8 bits where the CPU has VNNI
    for m in M.all:
        xs = [model_input(m, X[m.key][i:i+16], AS_TRAINED) for i in range(0, len(X[m.key]), 16)]
        qm = quantize_model(m, xs, full_range=full)
        bs, sec = best_batch_size(Int8Model(qm), torch.cat(xs)[:16])
        save_int8(qm, Int8Record(m.name, m.kind, m.rec.sha256, True, check=int8_check(m, Int8Model(qm), xs), bs=bs, bs_seconds=sec,
                               bounds=dict(max_prob_change=1, max_pixel_change=1, max_lesion_change=1), full_range=full),   # kept whatever they change: 1 is the most any measure can be
                  M.layout.int8_model(m))
        log(f'[int8] {m.name}: best batch size {bs} ({sec} s/slice)')

@contextmanager
def no_bf16():
    "Run as on a CPU without bf16: `auto` falls back to fp32 and the int8 copies keep their float layers in fp32"
    import stroke_ct.core as C, stroke_ct.quantize as Q
    old = C.cpu_has_bf16, Q.cpu_has_bf16
    C.cpu_has_bf16 = Q.cpu_has_bf16 = lambda: False
    try: yield
    finally: C.cpu_has_bf16, Q.cpu_has_bf16 = old

# ---------------------------------------------------------------- (a) raw forward on pre-made tensors
def premade(files, specs):
    "uint8 NHWC tensors per (window, size), decoded and resized exactly as predict's SliceDataset does"
    from stroke_ct.infer import SliceDataset, collate_slices
    ds = SliceDataset(files, [m.key for m in specs])
    b = collate_slices([ds[i] for i in range(len(ds))])
    assert not b['errors'], b['errors'][:3]
    return b['x']

# raw modes: (precision of the weights, channels_last, fold BatchNorm, bf16 autocast around an fp32 model)
def raw_modes(auto):
    return {'eager_fp32_nchw': ('fp32', False, False, False),            # the models as trained: the baseline
            'fp32_channels_last': ('fp32', True, False, False),
            'fp32_folded_channels_last': ('fp32', True, True, False),    # predict's fp32 path (CPUs without bf16)
            **({'bf16_autocast_channels_last': ('fp32', True, False, True)} if auto == 'bf16' else {}),  # predict's path before 2026-11-30
            f'fast_{auto}_folded_channels_last': (auto, True, True, False),  # predict's float 'auto' path
            'int8': ('int8', False, True, False), 'int8_nobf16': ('int8_nobf16', False, True, False)}  # the int8 copies (quantize)

def forward_time(m, X, bs, prec='fp32', cl=False, fold=False, autocast=False, reps=1):
    "Seconds for one pass of model `m` (as `predict` would prepare it) over all of X in batches of `bs` (best of `reps`), after warm-up"
    from stroke_ct.infer import inference_model, model_input, Plan
    if prec.startswith('int8'):
        from stroke_ct.quantize import Int8Model
        if m.int8 is None: return float('nan')
        net, cl = Int8Model(m.int8.model, bf16=prec == 'int8'), False   # 'int8_nobf16': float layers in fp32
        prec = 'int8'
    else: net = inference_model(m.model, prec, cl, 'cpu', fold) if (prec != 'fp32' or cl or fold) else m.model.eval()
    xs = [model_input(m, X[i:i+bs], Plan('cpu', prec, cl, fold)) for i in range(0, len(X), bs)]   # predict's input preparation, untimed
    best = float('inf')
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        net(xs[0]); net(xs[-1])   # warm-up: oneDNN primitives for both batch shapes
        for _ in range(reps):
            t0 = time.perf_counter()
            for x in xs: net(x).float()
            best = min(best, time.perf_counter() - t0)
    return best

# ---------------------------------------------------------------- (c) learn.predict loop
def fastai_loop(learners, pngs, dcms, ids):
    "Per image: learn.predict for every classifier and the U-Net (FP32 eager, what users write); seconds per model"
    per = {m.name: 0. for m, _ in learners}
    for fp, fd, i in zip(pngs, dcms, ids):
        item = pd.Series({'png': str(fp), 'dicom': str(fd), 'image_id': i})   # a manifest row, as cls_dls/seg_dls items are
        for m, learn in learners:
            t0 = time.perf_counter()
            with learn.no_bar(), learn.no_logging(): learn.predict(item)
            per[m.name] += time.perf_counter() - t0
    return per

# ---------------------------------------------------------------- stability
def read_stage1(out): return pd.read_csv(Path(out)/'stage1.csv', dtype={'image_id': str}).set_index('image_id')

def compare_runs(out_auto, out_fp32, names):
    "How many stage-1 answers, model votes and mask pixels differ between two predict outputs"
    from stroke_ct.data.masks import read_mask
    a, f = read_stage1(out_auto), read_stage1(out_fp32)
    f = f.loc[a.index]
    r = dict(n=len(a), stage1_diff=int((a.stroke != f.stroke).sum()),
             prob_max_abs_diff=float(np.nanmax(np.abs(a.probability - f.probability))),
             vote_diff={n: int((a[f'vote_{n}'] != f[f'vote_{n}']).sum()) for n in names},
             model_prob_max_abs_diff={n: float(np.nanmax(np.abs(a[f'prob_{n}'] - f[f'prob_{n}']))) for n in names})
    ma, mf = Path(out_auto)/'masks', Path(out_fp32)/'masks'
    if ma.is_dir() and mf.is_dir():
        px = tot = imgs = lesion_a = lesion_f = 0
        for i in a.index:
            pa, pf = read_mask(ma/f'{i}.png'), read_mask(mf/f'{i}.png')
            d = int((pa != pf).sum()); px += d; tot += pa.size; imgs += d > 0
            lesion_a += int((pa > 0).sum()); lesion_f += int((pf > 0).sum())
        r.update(mask_pixels_diff=px, mask_pixels_total=tot, mask_images_diff=imgs, lesion_pixels_auto=lesion_a, lesion_pixels_fp32=lesion_f)
    return r

def metric_shift(df, outs, n_boot=1000):
    "Binary and segmentation metrics of each predict output, bootstrap CIs, and whether auto's value leaves fp32's CI"
    from stroke_ct.metrics import binary_table, seg_report
    from stroke_ct.data.masks import read_mask
    from stroke_ct.data.dicom import read_slice
    from stroke_ct.test_split import truth_mask
    truth = df.set_index('image_id')
    res = {}
    for k, out in outs.items():
        s = read_stage1(out)
        t = truth.loc[s.index]
        bt = binary_table(t.stroke.astype(int).values, s.stroke.values, s.probability.values, n_boot=n_boot)
        ids = list(s.index)
        tr = [truth_mask(t.loc[i], read_slice(t.loc[i, 'png']).shape[:2]) for i in ids]
        pr = [read_mask(Path(out)/'masks'/f'{i}.png') for i in ids]
        _, ss = seg_report(pr, tr, ids, n_boot=n_boot)
        res[k] = dict(binary=bt.reset_index().to_dict('records'), seg=ss.reset_index().to_dict('records'))
    def moved(x, y):  # metrics whose value in x lies outside y's interval
        yd = {r['metric']: r for r in y}
        return [r['metric'] for r in x if r['metric'] in yd and np.isfinite(r['value']) and np.isfinite(yd[r['metric']]['lo'])
                and not (yd[r['metric']]['lo'] - 1e-12 <= r['value'] <= yd[r['metric']]['hi'] + 1e-12)]
    for x, y in (('png_auto', 'png_eager'), ('png_fp32', 'png_eager'), ('dicom_auto', 'dicom_fp32'), ('png_int8_nobf16', 'png_eager'), ('png_bf16', 'png_eager')):
        a, f = res.get(x), res.get(y)
        if a and f: res[f'{x}_vs_{y}_moved_outside_ci'] = {k: sorted(set(moved(a[k], f[k]) + moved(f[k], a[k]))) for k in ('binary', 'seg')}   # either value outside the other's interval
    return res

# ---------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=None, help='synthetic slices (half normal, a quarter each stroke kind; default 48), or the first n of --data')
    p.add_argument('--data', default=None, help='use this dataset folder (with data_manifest.csv, e.g. `stroke-ct demo` OUT/data) instead of new phantoms')
    p.add_argument('--split', default='test', help='with --data: the manifest split whose slices are used')
    p.add_argument('--size', type=int, default=64, help='classifier input size (demo 64, seed 224) when no --models')
    p.add_argument('--seg-size', type=int, default=128, help='U-Net input size (demo 128, seed 256) when no --models')
    p.add_argument('--seg-arch', default='resnet34')
    p.add_argument('--archs', default=','.join(ARCHS))
    p.add_argument('--models', default=None, help='a trained models folder (e.g. `stroke-ct demo` OUT/models)')
    p.add_argument('--bs', type=int, default=16)
    p.add_argument('--threads', type=int, default=None, help="torch threads for (a), (b) and (c) alike (default: the count predict's cpu_plan picks now)")
    p.add_argument('--n-fastai', type=int, default=24, help='slices for the learn.predict loop (0: all)')
    p.add_argument('--lite', action='store_true', help='only the four main predict runs (png/dicom x auto/fp32): for big sizes')
    p.add_argument('--reps', type=int, default=1, help='repeats of each raw-forward pass (best kept)')
    p.add_argument('--no-int8', action='store_true', help='skip the int8 path (otherwise: the models folder\'s int8 copies, or, for untrained models, new ones)')
    p.add_argument('--n-boot', type=int, default=1000)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--work', default=None, help='scratch folder (default: a temp dir, removed at the end)')
    p.add_argument('--out', default=None, help='write all figures as JSON here')
    args = p.parse_args(argv)
    args.archs = tuple(a for a in args.archs.split(',') if a)
    if args.n is None and not args.data: args.n = 48
    from stroke_ct.data.synth import make_synth
    from stroke_ct.data.layout import resolve
    from stroke_ct.core import resolve_precision, cpu_has_bf16
    from stroke_ct.infer import load_models, cpu_plan
    from stroke_ct.predict import predict

    T0, smp = time.perf_counter(), RSSSampler()
    import stroke_ct.loaders as L; L.progress_bar = lambda it, **k: it    # quiet preload bars
    dflt = torch.get_num_threads()
    nthr = args.threads or cpu_plan(args.n or 1000, args.bs)[1]
    torch.set_num_threads(nthr)
    env = dict(date=time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()), load_start=load(), cpus=os.cpu_count(), torch_threads=nthr, torch_default_threads=dflt,
               torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_has_bf16=cpu_has_bf16(),
               auto_precision=resolve_precision('auto', 'cpu'), args=vars(args))
    log(f"[bench] {env['date']}  load {env['load_start']}  cpus {env['cpus']}  torch threads {nthr}  "
        f"capability {env['cpu_capability']}  bf16 {env['cpu_has_bf16']} -> auto precision {env['auto_precision']}")
    work = Path(args.work or tempfile.mkdtemp(prefix='bench_predict_')); work.mkdir(parents=True, exist_ok=True)
    try:
        n = args.n
        if args.data:   # an existing dataset (e.g. `stroke-ct demo` OUT/data): the slices of one split of its manifest
            from stroke_ct.data.layout import read_manifest
            df = resolve(read_manifest(Path(args.data)/'data_manifest.csv'), args.data)
            df = df[df.split == args.split].reset_index(drop=True)
            if args.n: df = df.sample(n=min(args.n, len(df)), random_state=args.seed).reset_index(drop=True)  # a random subset
            n = args.n = len(df)
        else:
            with stage('synth', smp):
                df = make_synth(work/'data', n_normal=n - 2*(n//4), n_ischemic=n//4, n_hemorrhagic=n//4, seed=args.seed, progress=False)
            df = resolve(df, work/'data')
        png, dcm, ids = list(map(Path, df.png)), list(map(Path, df.dicom)), list(df.image_id)
        with stage('build_models', smp):
            md = Path(args.models) if args.models else make_models(df, work, args)
        trained = bool(args.models)
        with stage('load_models', smp): M = load_models(md)
        specs = M.all
        sizes = {m.name: m.size for m in specs}
        from stroke_ct.quantize import attach_int8, int8_engine
        has8 = False
        if not args.no_int8 and int8_engine():
            if not trained:
                with stage('quantize', smp): make_int8(M, premade(png[:16], specs))
            has8 = bool(attach_int8(M))
            log(f"[bench] int8 copies: {[m.name for m in specs if m.int8 is not None] or 'none (run `stroke-ct quantize RUN` first)'}; "
                f"batch sizes {dict((m.name, m.bs) for m in specs)}")
        int8_names = [m.name for m in specs if m.int8 is not None]   # the models the int8 and auto rows run in int8 (the rest at float precision)
        log(f"[bench] {n} slices; models {'from ' + str(md) if trained else '(untrained, pretrained=False)'}: "
            + ', '.join(f'{k}@{v}' for k, v in sizes.items()))
        # the Learners only need DataLoaders of the right shape: with --data the rows are all one split, so relabel them
        k = np.arange(len(df)) % 5 == 0
        ldf = df if not args.data else df.assign(split=np.where(k, 'valid', 'train'),
                                                 seg_split=np.where(df.stroke.astype(int) == 1, np.where(k, 'valid', 'train'), ''))
        with stage('build_learners', smp): learners = fastai_learners(ldf, M)

        # ---- decode cost (what predict's SliceDataset does per slice), PNG vs DICOM
        dec = {}
        for inp, files in (('png', png), ('dicom', dcm)):
            with stage(f'decode_{inp}', smp) as r: X = premade(files, specs)
            dec[inp] = r['seconds']
        X = premade(png, specs)
        from stroke_ct.data.masks import save_mask
        from stroke_ct.data.dicom import read_slice
        shapes = [read_slice(f).shape[:2] for f in png]
        with stage('write_masks', smp) as r:
            for f, hw in zip(png, shapes): save_mask(work/'masktest'/f'{f.stem}.png', np.zeros(hw, np.uint8))
        dec['write_masks'] = r['seconds']

        # ---- (a) raw forward
        auto = resolve_precision('auto', 'cpu')
        modes, FAST, F32 = raw_modes(auto), f'fast_{auto}_folded_channels_last', 'fp32_folded_channels_last'
        raw = {}
        if not has8: modes = {k: v for k, v in modes.items() if not k.startswith('int8')}
        for mode, (prec, cl, fold, ac) in modes.items():
            with stage(f'raw_{mode}', smp):
                raw[mode] = {m.name: forward_time(m, X[m.key], args.bs, prec, cl, fold, ac, args.reps) for m in specs}
            tot = sum(raw[mode].values())
            log(f"[a] {mode:28s} ensemble+unet {n/tot:7.2f} img/s   " + '  '.join(f'{k} {n/v:.1f}' for k, v in raw[mode].items()))
        from stroke_ct.infer import CPU_BS   # the eager models at predict's per-model CPU batch sizes: a stricter baseline
        with stage('raw_eager_fp32_cpu_bs', smp):
            raw['eager_fp32_cpu_bs'] = {m.name: forward_time(m, X[m.key], CPU_BS[m.kind], reps=args.reps) for m in specs}
        log(f"[a] {'eager_fp32_cpu_bs':28s} ensemble+unet {n/sum(raw['eager_fp32_cpu_bs'].values()):7.2f} img/s   "
            + '  '.join(f'{k} {n/v:.1f}' for k, v in raw['eager_fp32_cpu_bs'].items()))
        share = {k: round(v/sum(raw['eager_fp32_nchw'].values()), 3) for k, v in raw['eager_fp32_nchw'].items()}
        cls_t = {k: v for k, v in raw['eager_fp32_nchw'].items() if k != 'unet'}
        share_cls = {k: round(v/sum(cls_t.values()), 3) for k, v in cls_t.items()}
        share_fast = {k: round(v/sum(raw[FAST].values()), 3) for k, v in raw[FAST].items()}
        AUTO = 'int8' if has8 else FAST   # the raw counterpart of predict's auto path
        share_auto = {k: round(v/sum(raw[AUTO].values()), 3) for k, v in raw[AUTO].items()}
        # batch-of-one eager forward (for fastai's overhead)
        nf = min(args.n_fastai or n, n)
        with stage('raw_bs1_eager_fp32', smp):
            bs1 = {m.name: forward_time(m, X[m.key][:nf], 1) for m in specs}

        # ---- (b) predict end to end
        runs = {}
        pw, pt = cpu_plan(n, args.bs)
        log(f'[b] cpu_plan now: num_workers {pw}, num_threads {pt} (load {load()}); the runs below use {nthr} threads unless named')
        predict(md, png[:args.bs], work/'warm', bs=args.bs, num_threads=nthr, models=M, progress=False)   # warm-up, not timed
        other = 1 if nthr > 1 else dflt
        EAGER = dict(channels_last=False, fold_bn=False)   # the models exactly as trained: the reference for answers
        plan = [('png_auto', png, 'auto', True, nthr, {}), ('dicom_auto', dcm, 'auto', True, nthr, {}),
                ('png_fp32', png, 'fp32', True, nthr, {}), ('dicom_fp32', dcm, 'fp32', True, nthr, {}),
                ('png_eager', png, 'fp32', True, nthr, EAGER),
                *([('png_int8_nobf16', png, 'int8', True, nthr, dict(nobf16=True)), ('png_bf16', png, auto, True, nthr, {}),
                   ('png_auto_gated_lite', png, 'auto', False, nthr, {})] if has8 else []),
                ('png_auto_gated', png, 'auto', False, nthr, {}), ('png_eager_gated', png, 'fp32', False, nthr, EAGER),
                (f'png_auto_{other}threads', png, 'auto', True, other, {}), ('png_auto_1worker', png, 'auto', True, nthr, dict(num_workers=1)),
                ('png_auto_cpu_plan', png, 'auto', True, None, {})]
        if args.lite: plan = [o for o in plan if o[0] in ('png_auto', 'dicom_auto', 'png_fp32', 'dicom_fp32', 'png_eager', 'png_int8_nobf16', 'png_bf16', 'png_auto_gated_lite')]
        else: plan = [o for o in plan if o[0] != 'png_auto_gated_lite']
        for name, files, prec, seg_all, thr, kw in plan:
            kw = dict(kw); nb = kw.pop('nobf16', False)
            with stage(f'predict_{name}', smp) as r, (no_bf16() if nb else contextmanager(lambda: (yield))()):
                s = predict(md, files, work/name, bs=args.bs, precision=prec, segment_all=seg_all, num_threads=thr, models=M, progress=False, **kw)
            s = {k: s[k] for k in ('n_ok', 'n_failed', 'n_stroke', 'n_segmented', 'n_masks', 'seconds', 'images_per_s', 'precision',
                                   'channels_last', 'num_workers', 'num_threads')}
            s['images_per_s_wall'] = round(len(files) / r['seconds'], 2)
            runs[name] = s
            log(f"[b] predict {name:18s} {s['images_per_s']:7.2f} img/s (wall {s['images_per_s_wall']:.2f})  {s['precision']}, "
                f"threads {s['num_threads']}, workers {s['num_workers']}, segmented {s['n_segmented']}/{n}, peak RSS {r['peak_rss_mb']} MB")

        # ---- (c) learn.predict loop
        with stage('fastai_learn_predict', smp):
            fa = fastai_loop(learners, png[:nf], dcm[:nf], ids[:nf])
        fa_ips = nf / sum(fa.values())
        # the baseline again, after (b) and (c): the load drifts, so the ratios use the mean of both eager passes
        with stage('raw_eager_fp32_nchw_after', smp):
            raw['eager_fp32_nchw_after'] = {m.name: forward_time(m, X[m.key], args.bs, 'fp32', False, args.reps) for m in specs}
        tb, ta = sum(raw['eager_fp32_nchw'].values()), sum(raw['eager_fp32_nchw_after'].values())
        log(f"[a] eager_fp32_nchw again        ensemble+unet {n/ta:7.2f} img/s (before: {n/tb:.2f}); ratios use the mean time")
        overhead = {k: round((fa[k] - bs1[k]) / nf * 1000, 1) for k in fa}   # ms per image per model
        log(f"[c] fastai learn.predict loop {fa_ips:7.2f} img/s  (per image per model, ms: "
            + ', '.join(f'{k} {fa[k]/nf*1000:.0f} (forward {bs1[k]/nf*1000:.0f})' for k in fa) + ')')

        # ---- stability
        names = M.names
        stab = {f'{x} vs {y}': compare_runs(work/x, work/y, names) for x, y in
                (('png_auto', 'png_eager'), ('png_fp32', 'png_eager'), ('dicom_auto', 'dicom_fp32'), ('dicom_auto', 'png_auto'))}
        if not args.lite: stab['png_auto_gated vs png_eager_gated'] = compare_runs(work/'png_auto_gated', work/'png_eager_gated', names)
        if has8: stab.update({f'{x} vs png_eager': compare_runs(work/x, work/'png_eager', names) for x in ('png_int8_nobf16', 'png_bf16')})
        with stage('metrics', smp):
            mets = metric_shift(df, {k: work/k for k in ('png_auto', 'png_fp32', 'png_eager', 'dicom_auto', 'dicom_fp32',
                                                        *(('png_int8_nobf16', 'png_bf16') if has8 else ()))}, args.n_boot)

        # ---- summary
        a32 = n / ((tb + ta) / 2)
        afast = n / sum(raw[FAST].values())
        a32cl = n / sum(raw['fp32_channels_last'].values())
        a32f = n / sum(raw[F32].values())
        R = lambda k, w='images_per_s_wall': runs[k][w]
        fwd_auto = sum(raw[AUTO].values())
        ratios = {
            'b/a png auto (wall)': R('png_auto') / a32, 'b/a dicom auto (wall)': R('dicom_auto') / a32,
            'b/a png fp32 (wall)': R('png_fp32') / a32, 'b/a dicom fp32 (wall)': R('dicom_fp32') / a32,
            'b/a png auto (predict images_per_s)': R('png_auto', 'images_per_s') / a32,
            'b/a png fp32 (predict images_per_s)': R('png_fp32', 'images_per_s') / a32,
            **({} if args.lite else {f'b/a png auto {other} threads (wall)': R(f'png_auto_{other}threads') / a32,
                                     'b/a png auto, 1 decoding worker (wall)': R('png_auto_1worker') / a32,
                                     'b/a png auto cpu_plan threads (wall)': R('png_auto_cpu_plan') / a32,
                                     'b/a png auto gated (wall)': R('png_auto_gated') / a32, 'b/a png eager gated (wall)': R('png_eager_gated') / a32,
                                     'b/c png auto gated (wall)': R('png_auto_gated') / fa_ips}),
            'b/c png auto (wall)': R('png_auto') / fa_ips, 'b/c png fp32 (wall)': R('png_fp32') / fa_ips,
            **({'b/a png int8 without bf16 (wall)': R('png_int8_nobf16') / a32, 'b/a png bf16 (wall)': R('png_bf16') / a32,
                'b/c png int8 without bf16 (wall)': R('png_int8_nobf16') / fa_ips,
                'int8 raw / eager raw': n / sum(raw['int8'].values()) / a32, 'int8 (fp32 float layers) raw / eager raw': n / sum(raw['int8_nobf16'].values()) / a32,
                **({'b/a png auto gated (wall)': R('png_auto_gated_lite') / a32} if args.lite else {})} if has8 else {}),
            'b/a png eager (wall): predict overhead at the baseline settings': R('png_eager') / a32,
            'b/a\' png auto (wall), a\' = eager at CPU_BS batch sizes': R('png_auto') / (n / sum(raw['eager_fp32_cpu_bs'].values())),
            **({'b/a\' png int8 without bf16 (wall)': R('png_int8_nobf16') / (n / sum(raw['eager_fp32_cpu_bs'].values()))} if has8 else {}),
            'fast-path raw / eager raw': afast / a32, 'fp32 channels_last raw / eager raw': a32cl / a32,
            'fp32 folded channels_last raw / eager raw': a32f / a32,
            **({'bf16 autocast channels_last raw / eager raw (the old path)': n / sum(raw['bf16_autocast_channels_last'].values()) / a32}
               if 'bf16_autocast_channels_last' in raw else {}),
            'b png fp32 / raw fp32 folded (efficiency)': R('png_fp32') / a32f,
            'b png auto / raw auto path (efficiency)': R('png_auto') / (n / fwd_auto),
        }
        ratios = {k: round(v, 3) for k, v in ratios.items()}
        fwd_fast = sum(raw[AUTO].values())
        where = dict(share_of_eager_fp32_ensemble=share, share_of_eager_fp32_classifiers=share_cls, share_of_fast_path_ensemble=share_fast,
                     share_of_auto_path_ensemble=share_auto, auto_raw=AUTO,
                     decode_s_per_image=dict(png=round(dec['png']/n, 4), dicom=round(dec['dicom']/n, 4)),
                     write_mask_s_per_image=round(dec['write_masks']/n, 4),
                     png_auto_split_s=dict(total=STAGES['predict_png_auto']['seconds'], raw_forward_fast=round(fwd_fast, 3),
                                           decode_in_process=dec['png'], write_masks=dec['write_masks'],
                                           rest=round(STAGES['predict_png_auto']['seconds'] - fwd_fast - dec['png'] - dec['write_masks'], 3)),
                     fastai_overhead_ms_per_image_per_model=overhead,
                     fastai_ms_per_image_total=round(sum(fa.values())/nf*1000, 1),
                     eager_bs1_forward_ms_per_image_total=round(sum(bs1.values())/nf*1000, 1))
        log('\n[where time goes] share of raw eager-FP32 ensemble time: ' + ', '.join(f'{k} {v:.0%}' for k, v in sorted(share.items(), key=lambda o: -o[1])))
        log('                  share of raw eager-FP32 classifier time (no U-Net): ' + ', '.join(f'{k} {v:.0%}' for k, v in sorted(share_cls.items(), key=lambda o: -o[1])))
        log('                  share of raw fast-path time:          ' + ', '.join(f'{k} {v:.0%}' for k, v in sorted(share_fast.items(), key=lambda o: -o[1])))
        log(f'                  share of raw {AUTO} time (the auto path): ' + ', '.join(f'{k} {v:.0%}' for k, v in sorted(share_auto.items(), key=lambda o: -o[1])))
        log(f"                  decode per slice: PNG {dec['png']/n*1000:.0f} ms, DICOM {dec['dicom']/n*1000:.0f} ms (in-process, all windows/sizes); "
            f"writing one MASK PNG {dec['write_masks']/n*1000:.0f} ms")
        log(f"                  predict png_auto {where['png_auto_split_s']}")
        log(f"                  fastai learn.predict overhead per image per model (ms, beyond a batch-of-one forward): {overhead}")
        log('\n[ratios] ' + '\n         '.join(f'{k:42s} {v:6.2f}' for k, v in ratios.items()))
        log(f"[int8] models in int8 in the int8 and auto rows: {len(int8_names)} of {len(specs)} ({', '.join(int8_names) or 'none'}); the rest at float precision")
        log('\n[memory] peak RSS per stage (MB; extra = peak - start; workers: forked DataLoader workers, pages shared with this process):')
        for k, v in STAGES.items():
            if k.startswith(('raw_', 'predict_', 'fastai', 'load_', 'build_', 'decode')): log(f"         {k:34s} peak {v['peak_rss_mb']:6d}  extra {v['peak_extra_mb']:5d}  workers {v['workers_peak_rss_mb']:5d}  {v['seconds']:7.1f} s  load {v['load_start']} -> {v['load_end']}")
        ru = dict(self_maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024),
                  children_maxrss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024))
        log(f'         getrusage maxrss: {ru}')
        log('\n[stability] answers of each path against the reference (the models as trained, eager fp32):')
        for k, v in stab.items(): log(f'         {k}: {v}')
        for k in [k for k in mets if k.endswith('moved_outside_ci')]: log(f'         {k}: {mets[k]}')
        def brief(rs, keys): return {r['metric']: (round(r['value'], 3), round(r['lo'], 3), round(r['hi'], 3)) for r in rs if r['metric'] in keys}
        for k in ('png_auto', 'png_fp32', 'png_eager', *(('png_int8_nobf16', 'png_bf16') if has8 else ())):
            log(f"         {k} binary (value, lo, hi): {brief(mets[k]['binary'], ('accuracy', 'sensitivity', 'specificity', 'f1', 'roc_auc'))}")
            log(f"         {k} seg: {brief(mets[k]['seg'], ('mean_dice', 'competition_iou', 'pixel_accuracy'))}")
        env['load_end'] = load(); env['seconds'] = round(time.perf_counter() - T0, 1)
        log(f"\n[bench] done in {env['seconds']} s; load {env['load_start']} -> {env['load_end']}"
            + ('' if trained else '  (untrained models: throughput is real, answers/metrics are noise)'))
        res = dict(env=env, trained=trained, models=sizes, int8_models=int8_names, raw_seconds=raw, raw_images_per_s={k: round(n/sum(v.values()), 3) for k, v in raw.items()},
                   raw_bs1_seconds=bs1, predict=runs, fastai_seconds=fa, fastai_images_per_s=round(fa_ips, 3), n_fastai=nf,
                   ratios=ratios, where=where, stages=STAGES, getrusage=ru, stability=stab, metrics=mets)
        if args.out:
            from stroke_ct.core import write_json
            write_json(args.out, json.loads(json.dumps(res, default=lambda o: None if o is None else float(o) if isinstance(o, (np.floating, np.integer)) else str(o))))
            log(f'[bench] wrote {args.out}')
        return res
    finally:
        smp.stop = True
        if not args.work: shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__': main()
