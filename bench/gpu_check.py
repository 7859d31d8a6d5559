"""The GPU path, checked and measured in one run (see bench/README.md, `gpu_check.sh`):

1. the quick demo (every stage: five classifiers, vote, U-Net, scoring, report) on the device, at the device's
   training precision (fp16 mixed precision on CUDA);
2. training throughput of the classifier and the U-Net through the project's learners (fastai, `Learner.set_precision`)
   against a plain PyTorch AMP loop on the same network and the same batch, side by side (images/s and their ratio);
3. `predict` at fp16 against fp32 on the demo's test split: stage-1 answers, probabilities and mask pixels.

`--device cpu` runs the same steps at toy sizes on the CPU (bf16 where the CPU has it, else fp32, instead of fp16): a
dry run of the script itself where no GPU is available.
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--device', default='cuda', help="'cuda' (default) or 'cpu' (a dry run at toy sizes)")
p.add_argument('--out', default='gpu_check_out', help='work folder (the demo run, predictions) and gpu_check.json')
p.add_argument('--steps', type=int, default=None, help='timed training steps per measurement (default 50 on CUDA, 4 on the CPU)')
a = p.parse_args()
cuda = a.device.startswith('cuda')
if cuda and not torch.cuda.is_available(): sys.exit('no CUDA device: run with --device cpu for a dry run')

from fastai.vision.all import set_seed
from stroke_ct.core import resolve_precision, scratch_dir
from stroke_ct.run import RunConfig
from stroke_ct.pipeline import demo
from stroke_ct.predict import predict
from stroke_ct.data.layout import resolve, read_manifest
from stroke_ct.data.synth import make_synth
from stroke_ct.loaders import cls_dls, seg_dls
from stroke_ct.classify import make_learner
from stroke_ct.segment import seg_learner

out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
prec = resolve_precision('auto', a.device)
steps = a.steps or (50 if cuda else 4)
res = dict(device=torch.cuda.get_device_name(0) if cuda else 'cpu', torch=torch.__version__, precision=prec)
def sync():
    if cuda: torch.cuda.synchronize()
print(f"device: {res['device']}, training precision: {prec}", flush=True)

# 1. the quick demo on the device
t = time.time()
cfg = RunConfig.preset('quick').set(device=a.device)
s = demo(out/'quick', quick=True, seed=0, config=cfg)
t1 = pd.read_csv(out/'quick'/'metrics'/'table1_training.csv')
res['demo'] = dict(seconds=round(time.time() - t, 1), ensemble_f1=s['ensemble_f1'], lesion_dice=s['lesion_dice'],
                   precisions=sorted(set(t1.precision)))
print('1. quick demo:', res['demo'], flush=True)

# 2. training throughput: the project's learner against a plain AMP loop, same network, same batch
size, usize, bs, ubs = (224, 256, 64, 8) if cuda else (64, 64, 8, 4)
ph = Path(scratch_dir())
make_synth(ph, n_normal=96, n_ischemic=48, n_hemorrhagic=48, seed=1, progress=False)
df = resolve(read_manifest(ph/'data_manifest.csv'), ph)

def plain_amp(model, xb, yb, loss_fn):
    "images/s of a plain PyTorch training loop: AdamW, autocast at the device's precision, GradScaler for fp16"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    dt = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(prec)
    scaler = torch.amp.GradScaler('cuda', enabled=prec == 'fp16')
    if cuda: model = model.to(memory_format=torch.channels_last); xb = xb.contiguous(memory_format=torch.channels_last)
    def step():
        with torch.autocast(xb.device.type, dtype=dt or torch.float32, enabled=dt is not None):
            loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
    for _ in range(3): step()
    sync(); t = time.perf_counter()
    for _ in range(steps): step()
    sync(); return steps*len(xb)/(time.perf_counter() - t)

def fastai_rate(learn):
    "images/s of the learner's own training: one epoch of `learn.fit`, its validation time left out"
    learn.fit(1, 1e-4)   # warm-up: cuDNN autotuning, allocator
    n = len(learn.dls.train)
    sync(); t = time.perf_counter(); learn.fit(1, 1e-4); sync()
    sec = time.perf_counter() - t - learn.valid_seconds
    return n*learn.dls.train.bs/sec

def _timed_valid(learn):
    "Record the validation time of each fit so that it can be subtracted"
    from fastai.vision.all import Callback
    class T(Callback):
        def before_validate(self): sync(); self.t = time.perf_counter()
        def after_validate(self): sync(); self.learn.valid_seconds = time.perf_counter() - self.t
    learn.add_cb(T()); learn.valid_seconds = 0.
    return learn

rows = []
for kind in ('classifier', 'unet'):
    set_seed(0)
    if kind == 'classifier':
        dls = cls_dls(df, size=size, bs=bs, device=a.device)
        learn = _timed_valid(make_learner(dls, 'resnet34', pretrained=False, precision='auto'))
    else:
        dls = seg_dls(df, size=usize, bs=ubs, device=a.device)
        learn = _timed_valid(seg_learner(dls, 'resnet34', pretrained=False, precision='auto'))
    fa = fastai_rate(learn)
    xb, yb = dls.one_batch()
    model = learn.model
    pl = plain_amp(model, xb.as_subclass(torch.Tensor).float(), yb.as_subclass(torch.Tensor).long(), torch.nn.CrossEntropyLoss())
    rows.append(dict(model=f"{kind} resnet34 {size if kind == 'classifier' else usize}px bs{bs if kind == 'classifier' else ubs}",
                     fastai_img_s=round(fa, 1), plain_amp_img_s=round(pl, 1), ratio=round(fa/pl, 3)))
    print('2.', rows[-1], flush=True)
res['throughput'] = rows

# 3. predict at the device's low precision against fp32, the demo's models on its test split
dm = resolve(read_manifest(out/'quick'/'data'/'data_manifest.csv'), out/'quick'/'data')
files = list(dm[dm.split == 'test'].png)
low = 'fp16' if cuda else ('bf16' if prec == 'bf16' else 'fp32')
runs = {}
for pr in ('fp32', low):
    d = out/f'pred_{pr}'
    runs[pr] = predict(out/'quick'/'models', files, d, precision=pr, device=a.device, segment_all=True, progress=False)
a32, alo = [pd.read_csv(out/f'pred_{pr}'/'stage1.csv', dtype={'image_id': str}).set_index('image_id').sort_index() for pr in ('fp32', low)]
pc = [c for c in a32.columns if c.startswith('prob')]   # the ensemble's and each model's
px = []
for i in a32.index:
    m1, m2 = [np.array(Image.open(out/f'pred_{pr}'/'masks'/f'{i}.png')) for pr in ('fp32', low)]
    px.append((m1 != m2).any(-1).mean() if m1.ndim == 3 else (m1 != m2).mean())
res['predict'] = dict(low=low, n=len(a32), stage1_agree=float((a32.stroke == alo.stroke).mean()),
                      max_prob_diff=float((a32[pc] - alo[pc]).abs().max().max()), mask_pixels_differ=float(np.mean(px)),
                      images_per_s={pr: runs[pr].get('images_per_s') for pr in runs})
print('3. predict:', res['predict'], flush=True)
(out/'gpu_check.json').write_text(json.dumps(res, indent=2, default=str))
print(f"wrote {out/'gpu_check.json'}")
